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
    publish_at(
        repo,
        &format!("file://{}", repo.display()),
        home,
        keys,
        debs,
    );
}

/// `scripts/apt-repo.sh` into `repo`, to be served at `url`, signed by `keys`.
fn publish_at(repo: &Path, url: &str, home: &Path, keys: &[&str], debs: &[&Path]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/apt-repo.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .arg("--out")
        .arg(repo)
        .arg("--url")
        .arg(url)
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

    // Nor one whose signature has expired (made in 2020 with a key the source holds, valid
    // for a day).
    let gpg = || {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &home)
            .args(["--batch", "--yes", "--quiet"]);
        c
    };
    run(gpg()
        .args(["--faked-system-time", "20200101T000000"])
        .args(["--passphrase", "", "--quick-gen-key"])
        .args(["past <past@enconf.invalid>", "ed25519", "sign", "never"]));
    run(gpg()
        .args(["--faked-system-time", "20200102T000000"])
        .args(["--default-sig-expire", "1d"])
        .args([
            "--local-user",
            "past@enconf.invalid",
            "--clearsign",
            "--output",
        ])
        .arg(&in_release)
        .arg(repo.join("dists/stable/Release")));
    let with_past = sources_for(&sources_old, &home, &["past@enconf.invalid"]);
    let (ok, said) = apt_update(dir.path(), &with_past);
    assert!(!ok && said.contains("EXPSIG"), "{said}");

    // Nor one without a signature.
    std::fs::remove_file(&in_release).unwrap();
    let (ok, said) = apt_update(dir.path(), &sources_old);
    assert!(!ok, "{said}");
}

/// A throwaway root: an overlay over this machine's `/` whose changes land in `dir/upper`,
/// entered with `chroot` in a mount namespace of its own, with `dir/share` at
/// `/srv/enconf-test` and an empty `/run/systemd/system` (the maintainer scripts act as on a
/// systemd host; `systemctl`, the debhelper tools and `systemd-run` are recorders there).
struct Root {
    dir: PathBuf,
}

const SHARE: &str = "/srv/enconf-test";

/// Run once in a new root: the recorders (`systemd-run` runs its command at once, not in a
/// unit of its own), and no apt source but the agent's (once the installation script adds
/// it).
const ROOT_SETUP: &str = r#"set -e
for tool in systemctl deb-systemd-helper deb-systemd-invoke; do
    printf '#!/bin/sh\necho "%s $*" >>/srv/enconf-test/calls.log\nexit 0\n' "$tool" >"/usr/bin/$tool"
    chmod 0755 "/usr/bin/$tool"
done
{
    echo '#!/bin/sh'
    echo 'while [ "$#" -gt 0 ]; do'
    echo '    case "$1" in --*) echo "systemd-run $1" >>/srv/enconf-test/calls.log; shift ;; *) break ;; esac'
    echo 'done'
    echo 'exec "$@"'
} >/usr/bin/systemd-run
chmod 0755 /usr/bin/systemd-run
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
mkdir -p /var/lib/netcell-webpanel-agent
"#;

impl Root {
    fn new(dir: &Path) -> Self {
        for sub in ["upper", "work", "merged", "share"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let root = Self {
            dir: dir.to_path_buf(),
        };
        root.ok(&["/bin/sh", "-c", ROOT_SETUP]);
        root
    }

    fn share(&self) -> PathBuf {
        self.dir.join("share")
    }

    /// A file of the root as what ran in it left it.
    fn changed(&self, path: &str) -> PathBuf {
        self.dir.join("upper").join(path.trim_start_matches('/'))
    }

    /// Runs `argv` in the root.
    fn run(&self, argv: &[&str]) -> Output {
        // Everything it writes goes to `upper`: this machine's files are not touched.
        let enter = format!(
            "set -e
m=\"$ROOT_DIR/merged\"
mount -t overlay overlay -o \"lowerdir=/,upperdir=$ROOT_DIR/upper,workdir=$ROOT_DIR/work\" \"$m\"
mount --bind /proc \"$m/proc\"
mount --bind /dev \"$m/dev\"
mount -t tmpfs tmpfs \"$m/run\"
mkdir -p \"$m/run/systemd/system\" \"$m{SHARE}\"
mount --bind \"$ROOT_DIR/share\" \"$m{SHARE}\"
exec chroot \"$m\" \"$@\""
        );
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
            .arg(enter)
            .arg("sh")
            .args(argv)
            .env_clear()
            .env("ROOT_DIR", &self.dir)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .output()
            .unwrap()
    }

    fn ok(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(
            out.status.success(),
            "{argv:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The installed version and dpkg's status of the agent's package.
    fn installed(&self) -> String {
        self.ok(&["dpkg-query", "-W", "-f=${Version} ${Status}", PACKAGE])
    }

    /// What the recorders saw since the last call.
    fn calls(&self) -> String {
        let log = self.share().join("calls.log");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        calls
    }
}

fn stamp(path: &Path) -> (u64, std::time::SystemTime, Vec<u8>) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.ino(), m.modified().unwrap(), std::fs::read(path).unwrap())
}

#[test]
fn apt_installs_the_agent_from_the_signed_repository_and_the_agent_upgrades_itself() {
    use enconf_core::protocol::agent::UpgradeStatus;
    if !have_all(&[
        "cargo-deb",
        "dpkg-deb",
        "apt-ftparchive",
        "gpg",
        "apt-get",
        "unshare",
        "shellcheck",
    ]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(&dir.path().join("root"));
    let dist = dir.path().join("dist");
    let versions = ["0.9.0-1", "0.10.0-1", "0.11.0-1", "0.12.0-1"];
    let debs: Vec<PathBuf> = versions.iter().map(|v| build(&dist, Some(v))).collect();
    let home = dir.path().join("gnupg");
    let fpr = keys(&home, &["repo"]).remove(0);
    let repo = root.share().join("repo");
    let url = format!("file://{SHARE}/repo");
    publish_at(&repo, &url, &home, &[&fpr], &[&debs[0]]);
    let sources = std::fs::read_to_string(repo.join("netcell-webpanel-agent.sources")).unwrap();

    // The controller's installation script, run as root on the new server: the source is
    // added, the package installed from it by apt, the config written, the service enabled
    // and started.
    let token = "install-token-0123456789abcdef";
    let input: enconf_core::protocol::ServerInput = serde_json::from_value(serde_json::json!({
        "name": "web1", "hostname": "web1.example.com",
        "agent_url": "http://web1.example.com:50000", "agent_token": token, "roles": ["web"],
    }))
    .unwrap();
    let (spec, _) = input.validate().unwrap();
    let script = enconf_core::controller::install::script(&spec, token, Some(&sources), None);
    std::fs::write(root.share().join("install.sh"), script).unwrap();
    let out = run(Command::new("shellcheck")
        .args(["--shell=sh"])
        .arg(root.share().join("install.sh")));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    root.ok(&["sh", "/srv/enconf-test/install.sh"]);
    assert_eq!(root.installed(), "0.9.0-1 install ok installed");
    let config = root.changed("/etc/netcell-webpanel-agent/config.env");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let agent = AgentConfig::load(Some(&config), |_| None).unwrap();
    assert_eq!(agent.token.expose_secret(), token);
    let source_file = root.changed("/etc/apt/sources.list.d/netcell-webpanel-agent.sources");
    assert_eq!(std::fs::read_to_string(&source_file).unwrap(), sources);
    let calls = root.calls();
    assert!(
        calls.contains(&format!("deb-systemd-helper enable {UNIT}")),
        "{calls}"
    );
    assert!(
        calls.ends_with(&format!(
            "systemctl enable {PACKAGE}\nsystemctl restart {PACKAGE}\n"
        )),
        "{calls}"
    );

    // Run again: nothing changes.
    let before = (stamp(&config), stamp(&source_file));
    root.ok(&["sh", "/srv/enconf-test/install.sh"]);
    assert_eq!((stamp(&config), stamp(&source_file)), before);
    assert_eq!(root.calls(), format!("systemctl enable --now {PACKAGE}\n"));
    assert_eq!(root.installed(), "0.9.0-1 install ok installed");

    // Version N+1 is published; the agent's upgrade command (what POST /v1/update hands to
    // systemd-run) upgrades only its package from its source, keeps config.env, and the
    // package restarts the running agent.
    publish_at(&repo, &url, &home, &[&fpr], &[&debs[1]]);
    let state_dir = Path::new("/var/lib/netcell-webpanel-agent");
    let system = enconf_agent_lib::system::RealSystem::new();
    let upgrade = || {
        let (program, args) = enconf_agent_lib::upgrade::command(&system, state_dir);
        let mut argv = vec![program.to_str().unwrap()];
        argv.extend(args.iter().map(String::as_str));
        let out = root.run(&argv);
        let state =
            enconf_agent_lib::upgrade::state(&system, &root.changed(state_dir.to_str().unwrap()))
                .unwrap();
        (out, state)
    };
    let (out, state) = upgrade();
    assert_eq!(state.status, UpgradeStatus::Succeeded, "{out:?} {state:?}");
    assert_eq!(root.installed(), "0.10.0-1 install ok installed");
    assert_eq!(stamp(&config), before.0, "config.env is kept on upgrade");
    let calls = root.calls();
    assert!(
        calls.starts_with(
            "systemd-run --unit=netcell-webpanel-agent-upgrade\nsystemd-run --collect\n"
        ),
        "{calls}"
    );
    assert!(
        calls.contains(&format!("deb-systemd-invoke try-restart {UNIT}")),
        "{calls}"
    );

    // An upgrade interrupted while configuring (dpkg killed with its journal in
    // /var/lib/dpkg/updates: apt refuses to run until `dpkg --configure -a`) is finished by
    // the next try.
    publish_at(&repo, &url, &home, &[&fpr], &[&debs[2]]);
    let interrupt = format!(
        "set -e
dpkg --unpack {SHARE}/repo/pool/main/{PACKAGE}_0.11.0-1_amd64.deb
dpkg-query -s {PACKAGE} | sed 's/^Status: .*/Status: install ok half-configured/' \
    >/var/lib/dpkg/updates/0001"
    );
    root.ok(&["sh", "-c", &interrupt]);
    let refused = root.run(&["apt-get", "install", "-y", PACKAGE]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("dpkg --configure -a"),
        "{said}"
    );
    assert_eq!(root.installed(), "0.11.0-1 install ok half-configured");
    let (out, state) = upgrade();
    assert_eq!(state.status, UpgradeStatus::Succeeded, "{out:?} {state:?}");
    assert_eq!(root.installed(), "0.11.0-1 install ok installed");
    assert_eq!(root.ok(&["dpkg", "--audit"]), "");
    root.calls();

    // A tampered index: the upgrade fails, says why, and the old version stays installed.
    publish_at(&repo, &url, &home, &[&fpr], &[&debs[3]]);
    let in_release = repo.join("dists/stable/InRelease");
    let signed = std::fs::read_to_string(&in_release).unwrap();
    std::fs::write(
        &in_release,
        signed.replacen("Origin: enconf", "Origin: enc0nf", 1),
    )
    .unwrap();
    let (_, state) = upgrade();
    assert_eq!(state.status, UpgradeStatus::Failed);
    let output = state.output.unwrap();
    assert!(
        output.contains("BADSIG") || output.contains("not signed"),
        "{output}"
    );
    assert_eq!(root.installed(), "0.11.0-1 install ok installed");
    assert!(!root.calls().contains("try-restart"));
}
