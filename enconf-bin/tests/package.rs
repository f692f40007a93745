//! The agent's Debian package, `netcell-webpanel-agent`: built by `cargo deb` from the agent
//! this test run built, then inspected (name, version, files, unit, conffiles), its
//! maintainer scripts checked with shellcheck and run against a throwaway root
//! (`DPKG_ROOT`, with `systemctl` and the debhelper tools replaced by a recorder), and its
//! unit checked by `systemd-analyze verify`.
//!
//! Needs `cargo deb`, `dpkg-deb`, `shellcheck`, `systemd-analyze` and `unshare`; each is a
//! failure under `CI=true` when missing, a skip elsewhere.
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

fn have(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} is missing under CI=true"
        );
        eprintln!("skipped: {program} is missing");
    }
    ok
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

/// Builds the package from the agent binary cargo built for this test, into `dir`.
fn build(dir: &Path) -> PathBuf {
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
        .arg("--output")
        .arg(dir)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("CARGO_TARGET_DIR", target));
    let name = format!("{PACKAGE}_{}-1_amd64.deb", env!("CARGO_PKG_VERSION"));
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
    let tools = [
        ("cargo-deb", &["--version"][..]),
        ("dpkg-deb", &["--version"]),
        ("shellcheck", &["--version"]),
        ("systemd-analyze", &["--version"]),
        ("unshare", &["--version"]),
    ];
    if !tools.iter().all(|(t, probe)| have(t, probe)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path());

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
