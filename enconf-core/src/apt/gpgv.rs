//! Checking `InRelease` with `gpgv` (what apt itself runs), against the source's keys only.
//!
//! The verdict is read from gpgv's machine status lines, as apt reads them: trusted when at
//! least one signature is good and valid, and none is bad, expired, by an expired key or by
//! a revoked one. A signature by a key the source does not hold is ignored beside a good one
//! (a repository signed by an old and a new key while the keys rotate). Only what gpgv prints
//! as the signed text is used afterwards.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::RepoError;

/// How long gpgv may take.
const GPGV_TIMEOUT: Duration = Duration::from_secs(30);

/// gpgv's verdict from its `--status-fd` lines.
pub fn judge(status: &str) -> Result<(), RepoError> {
    let mut good = false;
    let mut valid = false;
    let mut unknown = false;
    for line in status.lines() {
        let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let keyword = rest.split(' ').next().unwrap_or_default();
        let refuse = |why: &str| Err(RepoError::Untrusted(why.to_owned()));
        match keyword {
            "GOODSIG" => good = true,
            "VALIDSIG" => valid = true,
            "BADSIG" => return refuse("a bad signature (the index was changed after signing)"),
            "EXPSIG" => return refuse("an expired signature"),
            "EXPKEYSIG" => return refuse("a signature by an expired key"),
            "REVKEYSIG" => return refuse("a signature by a revoked key"),
            "ERRSIG" | "NO_PUBKEY" => unknown = true,
            _ => {}
        }
    }
    match (good && valid, unknown) {
        (true, _) => Ok(()),
        (false, true) => Err(RepoError::Untrusted(
            "signed only by keys the source does not hold".into(),
        )),
        (false, false) => Err(RepoError::Untrusted("no signature".into())),
    }
}

/// The signed text of `signed` (an `InRelease` file) when `gpgv` (the program `program`, run
/// with its home in `home`) finds it trusted with the keys of `keyring` alone.
pub async fn verify(
    program: &Path,
    home: &Path,
    keyring: &Path,
    signed: &[u8],
) -> Result<String, RepoError> {
    let mut child = tokio::process::Command::new(program)
        .arg("--homedir")
        .arg(home)
        .arg("--keyring")
        .arg(keyring)
        .args(["--status-fd", "2", "--output", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RepoError::Gpgv(format!("{}: {e}", program.display())))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| RepoError::Gpgv("no stdin".into()))?;
    let input = signed.to_vec();
    // Written beside the reading, so a large index cannot fill both pipes.
    let writer = tokio::spawn(async move {
        // A gpgv that stops reading early (a broken file) says why on its status lines.
        let _ = stdin.write_all(&input).await;
    });
    let output = tokio::time::timeout(GPGV_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| RepoError::Gpgv("gpgv did not finish within 30 s".into()))?
        .map_err(|e| RepoError::Gpgv(e.to_string()))?;
    let _ = writer.await;
    let status = String::from_utf8_lossy(&output.stderr);
    judge(&status)?;
    String::from_utf8(output.stdout)
        .map_err(|_| RepoError::Index("the signed index is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 73978CAAE84D2A9A k1\n[GNUPG:] VALIDSIG F29A 2026-12-04 1796400189 0 4 0 22 8 01 F29A\n";

    #[test]
    fn verdicts() {
        judge(GOOD).unwrap();
        let rotating = format!(
            "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 1234 22 8 01 1796400189 9 AB\n[GNUPG:] NO_PUBKEY 1234\n{GOOD}"
        );
        judge(&rotating).unwrap();
        for (status, why) in [
            ("", "no signature"),
            ("gpgv: [GNUPG:] GOODSIG x\n", "no signature"),
            (
                "[GNUPG:] ERRSIG 1234\n[GNUPG:] NO_PUBKEY 1234\n",
                "does not hold",
            ),
            ("[GNUPG:] BADSIG 1234 k\n", "bad signature"),
            (
                "[GNUPG:] EXPSIG 1234 k\n[GNUPG:] VALIDSIG F29A\n",
                "expired signature",
            ),
            ("[GNUPG:] EXPKEYSIG 1234 k\n", "expired key"),
            ("[GNUPG:] REVKEYSIG 1234 k\n", "revoked"),
            ("[GNUPG:] GOODSIG 1234 k\n", "no signature"),
        ] {
            let e = judge(status).unwrap_err().to_string();
            assert!(e.contains(why), "{status:?}: {e}");
        }
        let mixed = format!("{GOOD}[GNUPG:] BADSIG 99 other\n");
        assert!(judge(&mixed).is_err());
    }
}
