//! The deb822 `.sources` file of the agent's repository: `Types: deb`, one `URIs`, one
//! `Suites`, its `Components`, and the public keys inline in `Signed-By` (an indented armored
//! block, `.` for its empty lines), as `scripts/apt-repo.sh` writes it and apt reads it.

use base64::Engine as _;

use super::RepoError;

/// A parsed source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `http://…`, `https://…` or `file:///…`, without a trailing `/`.
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    /// The `Signed-By` keys, dearmored and concatenated: a keyring `gpgv` reads.
    pub keyring: Vec<u8>,
    /// The `.sources` text as given, for installation scripts.
    pub text: String,
}

fn bad(message: impl Into<String>) -> RepoError {
    RepoError::Sources(message.into())
}

/// A suite or component: a plain name, so no path can be made of it.
fn plain_name(what: &str, s: &str) -> Result<String, RepoError> {
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(bad(format!("{what} {s:?} is not a plain name")))
    }
}

impl Source {
    /// Parses the first `deb` stanza of `text`.
    pub fn parse(text: &str) -> Result<Self, RepoError> {
        let doc: deb822_fast::Deb822 = text
            .parse()
            .map_err(|e| bad(format!("not deb822: {e:?}")))?;
        let stanza = doc
            .iter()
            .find(|p| {
                p.get("Types")
                    .is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
            })
            .ok_or_else(|| bad("no stanza with Types: deb"))?;
        if stanza
            .get("Enabled")
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("no"))
        {
            return Err(bad("the source is disabled (Enabled: no)"));
        }
        let uri = stanza
            .get("URIs")
            .and_then(|u| u.split_whitespace().next())
            .ok_or_else(|| bad("no URIs"))?;
        let scheme_ok = ["http://", "https://", "file:///"]
            .iter()
            .any(|s| uri.starts_with(s) && uri.len() > s.len());
        if !scheme_ok || uri.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(bad(format!(
                "URIs {uri:?}: an http, https or file URI is needed"
            )));
        }
        let suite = stanza
            .get("Suites")
            .and_then(|s| s.split_whitespace().next())
            .ok_or_else(|| bad("no Suites"))?;
        let suite = plain_name("suite", suite)?;
        let components = stanza
            .get("Components")
            .map(|c| {
                c.split_whitespace()
                    .map(|c| plain_name("component", c))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        if components.is_empty() {
            return Err(bad("no Components (a flat repository is not supported)"));
        }
        let signed_by = stanza
            .get("Signed-By")
            .ok_or_else(|| bad("no Signed-By: the repository's keys must be named"))?;
        let keyring = dearmor(signed_by)?;
        Ok(Self {
            uri: uri.trim_end_matches('/').to_owned(),
            suite,
            components,
            keyring,
            text: text.to_owned(),
        })
    }
}

/// The binary keys of every armored `PUBLIC KEY BLOCK` in `value` (deb822's `.` lines are
/// empty ones). A file name in `Signed-By` is refused: the keys must travel with the source.
pub fn dearmor(value: &str) -> Result<Vec<u8>, RepoError> {
    const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
    const END: &str = "-----END PGP PUBLIC KEY BLOCK-----";
    let mut keyring = Vec::new();
    let mut lines = value
        .lines()
        .map(|l| match l.trim() {
            "." => "",
            l => l,
        })
        .peekable();
    let mut blocks = 0;
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        if line != BEGIN {
            return Err(bad(
                "Signed-By must hold the armored public keys inline (not a file name)",
            ));
        }
        // Armor headers (`Comment: …`) up to the empty line.
        for header in lines.by_ref() {
            if header.is_empty() {
                break;
            }
            if !header.contains(": ") {
                return Err(bad("Signed-By: a key block without its empty line"));
            }
        }
        let mut data = String::new();
        let mut ended = false;
        for body in lines.by_ref() {
            if body == END {
                ended = true;
                break;
            }
            // The CRC-24 line (`=abcd`) is optional and covered by the signature check anyway.
            if body.starts_with('=') {
                continue;
            }
            data.push_str(body);
        }
        if !ended {
            return Err(bad("Signed-By: a key block without its END line"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_bytes())
            .map_err(|e| bad(format!("Signed-By: a key block is not base64: {e}")))?;
        if bytes.is_empty() {
            return Err(bad("Signed-By: an empty key block"));
        }
        keyring.extend_from_slice(&bytes);
        blocks += 1;
    }
    if blocks == 0 {
        return Err(bad("Signed-By holds no key"));
    }
    Ok(keyring)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = " -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n bWRhdGE=\n =abcd\n -----END PGP PUBLIC KEY BLOCK-----\n";

    fn source(extra: &str) -> String {
        format!(
            "Types: deb\nURIs: https://repo.example.com/agent/\nSuites: stable\nComponents: main\n{extra}Signed-By:\n{KEY}"
        )
    }

    #[test]
    fn reads_what_apt_repo_writes() {
        let s = Source::parse(&source("")).unwrap();
        assert_eq!(s.uri, "https://repo.example.com/agent");
        assert_eq!(s.suite, "stable");
        assert_eq!(s.components, ["main"]);
        assert_eq!(s.keyring, b"mdata");
    }

    #[test]
    fn refuses_what_would_escape_or_trust_nothing() {
        for (text, what) in [
            (source("").replace("stable", "../x"), "suite"),
            (source("").replace("main", "main/../../x"), "component"),
            (source("").replace("https://repo.example.com/agent/", "ftp://x/"), "URIs"),
            (source("Enabled: no\n"), "disabled"),
            (
                "Types: deb\nURIs: http://x/\nSuites: stable\nComponents: main\n".into(),
                "Signed-By",
            ),
            (
                "Types: deb\nURIs: http://x/\nSuites: stable\nComponents: main\nSigned-By: /usr/share/keyrings/x.gpg\n".into(),
                "inline",
            ),
            (source("").replace(" -----END PGP PUBLIC KEY BLOCK-----\n", ""), "END"),
            ("Types: deb-src\nURIs: http://x/\n".into(), "Types: deb"),
        ] {
            let e = Source::parse(&text).unwrap_err().to_string();
            assert!(e.contains(what), "{what}: {e}");
        }
    }
}
