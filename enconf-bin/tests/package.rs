//! The agent's Debian package, `netcell-webpanel-agent`: built by `cargo deb` from the agent
//! this test run built, then inspected (name, version, files, unit, conffiles), its
//! maintainer scripts checked with shellcheck and run against a throwaway root
//! (`DPKG_ROOT`, with `systemctl` and the debhelper tools replaced by a recorder), and its
//! unit checked by `systemd-analyze verify`.
//!
//! The repository made by `scripts/apt-repo.sh` is trusted by `apt-get update --error-on=any`
//! only with a good signature of a key in its `.sources` file, through a key rotation.
//!
//! Needs `cargo deb`, `dpkg-deb`, `shellcheck`, `systemd-analyze`, `unshare`, and for the
//! repository `apt-ftparchive`, `gpg` and `apt-get`; each is a failure under `CI=true` when
//! missing, a skip elsewhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use enconf_agent_lib::config::AgentConfig;

const PACKAGE: &str = "netcell-webpanel-agent";
const UNIT: &str = "netcell-webpanel-agent.service";

/// Whether every program answers `--version`; those that do not are named, and missing under
/// `CI=true` is a failure.
fn have_all(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| {
            !Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "missing under CI=true: {missing:?}"
    );
    eprintln!("skipped: missing {missing:?}");
    false
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).unwrap()
}

/// Builds the package from the agent binary cargo built for this test, into `dir`, as
/// `version` (the crate's, `-1`, when `None`).
fn build(dir: &Path, version: Option<&str>) -> PathBuf {
    let agent = Path::new(env!("CARGO_BIN_EXE_enconf-agent"));
    // `<target>/debug/enconf-agent`: cargo deb maps the asset `target/release/...` there.
    let target = agent.parent().unwrap().parent().unwrap();
    run(Command::new("cargo")
        .args([
            "deb",
            "-p",
            "enconf-bin",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
        ])
        .args(version.map(|v| format!("--deb-version={v}")))
        .arg("--output")
        .arg(dir)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("CARGO_TARGET_DIR", target));
    let version = version.map_or_else(|| format!("{}-1", env!("CARGO_PKG_VERSION")), str::to_owned);
    let name = format!("{PACKAGE}_{version}_amd64.deb");
    let deb = dir.join(name);
    assert!(deb.exists(), "{}", deb.display());
    deb
}

/// Recorders for the tools the maintainer scripts call; each appends its name and arguments
/// to `log`.
fn recorders(dir: &Path, log: &Path) -> PathBuf {
    let bin = dir.join("recorders");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["systemctl", "deb-systemd-helper", "deb-systemd-invoke"] {
        let path = bin.join(tool);
        let script = format!(
            // Success for every call (`was-enabled` too: as for a new installation).
            "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit 0\n",
            log.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// Runs a maintainer script against `root` as dpkg would without a chroot, in a mount
/// namespace whose `/run/systemd/system` exists (so the scripts act as on a systemd host).
fn maintainer_script(
    control: &Path,
    script: &str,
    args: &[&str],
    root: &Path,
    recorders: &Path,
    env: &[(&str, &str)],
) -> Output {
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", recorders.display());
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec sh \"$@\"")
        .arg("sh")
        .arg(control.join(script))
        .args(args)
        .env_clear()
        .env("PATH", path)
        .env("DPKG_ROOT", root)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn the_agent_package_installs_keeps_and_purges_its_config_and_restarts_on_upgrade() {
    if !have_all(&[
        "cargo-deb",
        "dpkg-deb",
        "shellcheck",
        "systemd-analyze",
        "unshare",
    ]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path(), None);

    // The control fields.
    let fields = stdout(Command::new("dpkg-deb").arg("-f").arg(&deb));
    assert!(
        fields.contains(&format!("Package: {PACKAGE}\n")),
        "{fields}"
    );
    assert!(
        fields.contains(&format!("Version: {}-1\n", env!("CARGO_PKG_VERSION"))),
        "{fields}"
    );
    assert!(fields.contains("Depends: libc6"), "{fields}");
    assert!(fields.contains("util-linux"), "{fields}");

    // The files: the agent and its unit, nothing under /etc.
    let files = stdout(Command::new("dpkg-deb").arg("-c").arg(&deb));
    assert!(files.contains(" ./usr/bin/enconf-agent\n"), "{files}");
    assert!(
        files.contains(&format!(" ./usr/lib/systemd/system/{UNIT}\n")),
        "{files}"
    );
    assert!(!files.contains("./etc/"), "{files}");

    // The maintainer scripts: no conffiles (config.env is never one), shellcheck-clean.
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert!(!control.join("conffiles").exists());
    let scripts: Vec<PathBuf> = ["postinst", "prerm", "postrm"]
        .iter()
        .map(|s| control.join(s))
        .collect();
    let out = run(Command::new("shellcheck").args(&scripts));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The unit, in the unpacked tree: `systemd-analyze verify` exits 0 even on typos, so any
    // output is a failure.
    let tree = dir.path().join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    // The targets the unit names (multi-user.target, sysinit.target...), from this system.
    run(Command::new("cp")
        .args(["-rn", "/usr/lib/systemd/system/."])
        .arg(tree.join("usr/lib/systemd/system")));
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", tree.display()))
        .arg(format!("/usr/lib/systemd/system/{UNIT}"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.is_empty(), "{said}");

    // Installation: config.env is written, mode 0600, with a token the agent accepts; the
    // unit is enabled, not started.
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let log = dir.path().join("calls.log");
    let bin = recorders(dir.path(), &log);
    let config = root.join("etc/netcell-webpanel-agent/config.env");
    let out = maintainer_script(&control, "postinst", &["configure"], &root, &bin, &[]);
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read_to_string(&config).unwrap();
    let agent = AgentConfig::load(Some(&config), |_| None).unwrap();
    assert_eq!(agent.token.expose_secret().len(), 64, "{written}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains(&format!("deb-systemd-helper enable {UNIT}")),
        "{calls}"
    );
    assert!(
        !calls.contains("start"),
        "a new installation is not started: {calls}"
    );

    // Upgrade from 0.0.9: the admin's config.env is kept as it is, and the agent restarted
    // (try-restart: only when it runs).
    let edited = format!("{written}AGENT_ROLES='web,mail'\n");
    std::fs::write(&config, &edited).unwrap();
    std::fs::write(&log, "").unwrap();
    let out = maintainer_script(
        &control,
        "postinst",
        &["configure", "0.0.9-1"],
        &root,
        &bin,
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains(&format!("deb-systemd-invoke try-restart {UNIT}")),
        "{calls}"
    );

    // Purge removes it (and the directory).
    let out = maintainer_script(&control, "postrm", &["purge"], &root, &bin, &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(!config.exists());
    assert!(!root.join("etc/netcell-webpanel-agent").exists());

    // A token given at installation is used; one that would break the file is refused and
    // nothing is written.
    let given = [("AGENT_TOKEN", "given-token-0123456789")];
    let out = maintainer_script(&control, "postinst", &["configure"], &root, &bin, &given);
    assert!(out.status.success(), "{out:?}");
    let agent = AgentConfig::load(Some(&config), |_| None).unwrap();
    assert_eq!(agent.token.expose_secret(), "given-token-0123456789");
    std::fs::remove_file(&config).unwrap();
    let hostile = [("AGENT_TOKEN", "x'\nAGENT_BIND='0.0.0.0")];
    let out = maintainer_script(&control, "postinst", &["configure"], &root, &bin, &hostile);
    assert!(!out.status.success());
    assert!(!config.exists());
}

/// A throwaway gpg home with a signing key per name; answers the fingerprints.
fn keys(home: &Path, names: &[&str]) -> Vec<String> {
    std::fs::create_dir_all(home).unwrap();
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).unwrap();
    names
        .iter()
        .map(|name| {
            run(Command::new("gpg")
                .env("GNUPGHOME", home)
                .args(["--batch", "--quiet", "--passphrase", "", "--quick-gen-key"])
                .arg(format!("{name} <{name}@enconf.invalid>"))
                .args(["ed25519", "sign", "1d"]));
            let listing = stdout(
                Command::new("gpg")
                    .env("GNUPGHOME", home)
                    .args(["--batch", "--with-colons", "--list-secret-keys"])
                    .arg(format!("{name}@enconf.invalid")),
            );
            let fpr = listing.lines().find(|l| l.starts_with("fpr:")).unwrap();
            fpr.split(':').nth(9).unwrap().to_owned()
        })
        .collect()
}

/// `scripts/apt-repo.sh` into `repo`, signed by `keys`.
fn publish(repo: &Path, home: &Path, keys: &[&str], debs: &[&Path]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/apt-repo.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .arg("--out")
        .arg(repo)
        .arg("--url")
        .arg(format!("file://{}", repo.display()))
        .env("GNUPGHOME", home);
    for key in keys {
        cmd.args(["--key", key]);
    }
    run(cmd.args(debs));
}

/// apt with its own state, cache and sources (`sources`, one `.sources` file), as root would
/// run it on a server; answers whether `apt-get update --error-on=any` succeeded, and what
/// it said.
fn apt_update(dir: &Path, sources: &str) -> (bool, String) {
    let apt = dir.join("apt");
    let _ = std::fs::remove_dir_all(&apt);
    for sub in [
        "sources",
        "state/lists/partial",
        "cache/archives/partial",
        "trusted",
    ] {
        std::fs::create_dir_all(apt.join(sub)).unwrap();
    }
    std::fs::write(apt.join("status"), "").unwrap();
    std::fs::write(apt.join("sources/netcell-webpanel-agent.sources"), sources).unwrap();
    let out = Command::new("apt-get")
        .args(apt_options(&apt))
        .args(["update", "--error-on=any"])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn apt_options(apt: &Path) -> Vec<String> {
    let d = apt.display();
    [
        "Dir::Etc::SourceList=/dev/null".to_owned(),
        format!("Dir::Etc::SourceParts={d}/sources"),
        format!("Dir::State={d}/state"),
        format!("Dir::State::status={d}/status"),
        format!("Dir::Cache={d}/cache"),
        format!("Dir::Etc::TrustedParts={d}/trusted"),
        "Dir::Etc::Trusted=/dev/null".to_owned(),
        "APT::Sandbox::User=root".to_owned(),
        "Debug::NoLocking=1".to_owned(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_owned(), o])
    .collect()
}

/// The version apt would install.
fn candidate(dir: &Path) -> String {
    let policy = stdout(
        Command::new("apt-cache")
            .args(apt_options(&dir.join("apt")))
            .args(["policy", PACKAGE]),
    );
    let line = policy.lines().find(|l| l.contains("Candidate:")).unwrap();
    line.split_whitespace().nth(1).unwrap().to_owned()
}

/// `sources` with its Signed-By keys replaced by those of `keys`.
fn sources_for(sources: &str, home: &Path, keys: &[&str]) -> String {
    let head = &sources[..sources.find("Signed-By:").unwrap()];
    let armored = stdout(
        Command::new("gpg")
            .env("GNUPGHOME", home)
            .args(["--batch", "--armor", "--export"])
            .args(keys),
    );
    let mut out = format!("{head}Signed-By:\n");
    for line in armored.lines() {
        out.push_str(if line.is_empty() { " ." } else { " " });
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_signed_repository_is_trusted_only_with_a_good_signature_through_a_key_rotation() {
    if !have_all(&["cargo-deb", "dpkg-deb", "apt-ftparchive", "gpg", "apt-get"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    let v1 = build(&dist, Some("0.9.0-1"));
    let v2 = build(&dist, Some("0.10.0-1"));
    let home = dir.path().join("gnupg");
    let fprs = keys(&home, &["old", "new", "stranger"]);
    let (old, new, stranger) = (fprs[0].as_str(), fprs[1].as_str(), fprs[2].as_str());
    let repo = dir.path().join("repo");

    // Version N, signed with the old key: trusted with the .sources the script wrote.
    publish(&repo, &home, &[old], &[&v1]);
    let sources_old = std::fs::read_to_string(repo.join("netcell-webpanel-agent.sources")).unwrap();
    let (ok, said) = apt_update(dir.path(), &sources_old);
    assert!(ok, "{said}");
    assert_eq!(candidate(dir.path()), "0.9.0-1");

    // Version N+1 during a rotation, signed with both keys: a server that holds either key
    // trusts it, and 0.10.0 is newer than 0.9.0 (Debian ordering, not text).
    publish(&repo, &home, &[old, new], &[&v2]);
    for keys in [&[old][..], &[new], &[old, new]] {
        let (ok, said) = apt_update(dir.path(), &sources_for(&sources_old, &home, keys));
        assert!(ok, "{keys:?}: {said}");
        assert_eq!(candidate(dir.path()), "0.10.0-1");
    }

    // A key the repository is not signed with is not trusted.
    let (ok, said) = apt_update(dir.path(), &sources_for(&sources_old, &home, &[stranger]));
    assert!(!ok, "{said}");

    // A tampered index is not trusted.
    let in_release = repo.join("dists/stable/InRelease");
    let signed = std::fs::read_to_string(&in_release).unwrap();
    let tampered = signed.replacen("Origin: enconf", "Origin: enc0nf", 1);
    assert_ne!(tampered, signed);
    std::fs::write(&in_release, tampered).unwrap();
    std::fs::remove_file(repo.join("dists/stable/Release.gpg")).unwrap();
    let (ok, said) = apt_update(dir.path(), &sources_old);
    assert!(!ok && said.contains("BADSIG"), "{said}");

    // Nor one without a signature.
    std::fs::remove_file(&in_release).unwrap();
    let (ok, said) = apt_update(dir.path(), &sources_old);
    assert!(!ok, "{said}");
}
