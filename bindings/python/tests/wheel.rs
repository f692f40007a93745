//! The Python package as a panel gets it: maturin builds the one abi3 wheel, `pip install`
//! puts it in a fresh venv, and pytest runs `tests/test_enconf.py` there (the shared table,
//! typed errors, the certificate check, the preview, and a client against a running
//! controller); then the README's Python example runs, and mypy checks the package and the
//! example against the type stubs.
//!
//! It needs `python3` with `venv`, maturin (`target/maturin/bin/maturin`, which `.ci/run`
//! installs, or one on `PATH`) and PyPI for pytest. Missing under `CI=true`, that is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use enconf_bindings_testkit::cases::{cases, expected};
use enconf_bindings_testkit::{ADMIN_TOKEN, AGENT_TOKEN, Stack};
use enconf_core::domain::DomainName;
use enconf_core::ssl::cert;

/// pytest and mypy, in the test venv.
const PYTEST: &str = "pytest==9.2.0";
const MYPY: &str = "mypy==2.4.1";

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `found`, or `None` (said on stderr) when the tool is missing; missing under `CI=true` fails.
fn required(what: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is missing under CI=true"
        );
        eprintln!("skipped: {what} is missing");
    }
    found
}

/// Maturin: the one `.ci/run` installs in `target/maturin`, else one on `PATH`.
fn maturin() -> Option<PathBuf> {
    let local = crate_dir().join("../../target/maturin/bin/maturin");
    let on_path = || {
        Command::new("maturin")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
            .then(|| PathBuf::from("maturin"))
    };
    required(
        "maturin (target/maturin/bin/maturin or on PATH)",
        local.exists().then_some(local).or_else(on_path),
    )
}

fn python() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/python3");
    required("/usr/bin/python3", p.exists().then_some(p))
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

/// Builds the wheel into `dist` and answers its path. Maturin's cargo gets a target
/// directory of its own: the one of the `cargo test` running this is locked.
fn build_wheel(maturin: &Path, dist: &Path) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-wheel");
    run(Command::new(maturin)
        .args(["build", "--locked", "--profile", "dev", "--quiet", "--out"])
        .arg(dist)
        .current_dir(crate_dir())
        .env("CARGO_TARGET_DIR", &target)
        // Debug information only slows the link of a module the tests do not debug.
        .env("CARGO_PROFILE_DEV_DEBUG", "0"));
    let wheels: Vec<PathBuf> = std::fs::read_dir(dist)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "{wheels:?}");
    wheels.into_iter().next().unwrap()
}

/// The shared table with what the Rust rules answer, as `test_enconf.py` reads it.
fn write_cases(path: &Path) {
    let table: Vec<serde_json::Value> = cases()
        .into_iter()
        .map(|(kind, input)| {
            let (status, code, field, message) = expected(kind, &input);
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            serde_json::json!({
                "kind": (kind as char).to_string(),
                "input_hex": hex,
                "status": status,
                "code": code,
                "field": (field != "-").then_some(field),
                "message": message,
            })
        })
        .collect();
    std::fs::write(path, serde_json::to_vec_pretty(&table).unwrap()).unwrap();
}

fn write_certificates(dir: &Path) {
    let now = time::OffsetDateTime::now_utc();
    for (name, hosts) in [
        ("shop", &["shop.example", "www.shop.example"][..]),
        ("other", &["other.example"][..]),
    ] {
        let hosts: Vec<DomainName> = hosts
            .iter()
            .map(|h| DomainName::parse(h).unwrap())
            .collect();
        let bundle = cert::self_signed(&hosts, now).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), &bundle.chain_pem).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), &bundle.key_pem).unwrap();
    }
}

/// The fenced block of the README after `<!-- example: python -->`.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(crate_dir().join("../../README.md")).unwrap();
    let marker = "<!-- example: python -->\n```python\n";
    let start = readme.find(marker).expect("the README holds the example") + marker.len();
    let end = start + readme[start..].find("```\n").unwrap();
    readme[start..end].to_owned()
}

#[test]
fn the_wheel_installs_in_a_fresh_venv_and_passes_its_tests_against_a_controller() {
    let (Some(maturin), Some(python)) = (maturin(), python()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    let wheel = build_wheel(&maturin, &dist);
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("enconf-{}-cp39-abi3-", env!("CARGO_PKG_VERSION"))),
        "one wheel for every Python from 3.9: {name}"
    );

    let venv = dir.path().join("venv");
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv));
    let bin = venv.join("bin");
    run(Command::new(bin.join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(&wheel)
        .args([PYTEST, MYPY]));

    let cases_file = dir.path().join("cases.json");
    write_cases(&cases_file);
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    write_certificates(&certs);

    let stack = Stack::start().unwrap();
    let env = [
        ("ENCONF_URL", stack.controller_url.as_str()),
        ("ENCONF_ADMIN_TOKEN", ADMIN_TOKEN),
        ("AGENT_URL", stack.agent_url.as_str()),
        ("AGENT_TOKEN", AGENT_TOKEN),
    ];
    let out = run(Command::new(bin.join("python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(crate_dir().join("tests/test_enconf.py"))
        // From the venv's package, not from the source tree.
        .current_dir(dir.path())
        .envs(env)
        .env("ENCONF_CASES", &cases_file)
        .env("ENCONF_CERT_DIR", &certs));
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    let summary = report.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped"),
        "{summary}"
    );

    // The README's example, against a controller that has no server yet.
    let fresh = Stack::start().unwrap();
    let script = dir.path().join("example.py");
    std::fs::write(&script, readme_example()).unwrap();
    let out = run(Command::new(bin.join("python"))
        .arg(&script)
        .current_dir(dir.path())
        .env("ENCONF_URL", &fresh.controller_url)
        .env("ENCONF_ADMIN_TOKEN", ADMIN_TOKEN));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "domains[1]: domains[1] must not contain the character ' '\n0 servers\n"
    );

    // The stubs agree with the package, and a panel's code (the example) checks against them.
    for target in [&["-p", "enconf"][..], &[script.to_str().unwrap()][..]] {
        run(Command::new(bin.join("python"))
            .args(["-m", "mypy", "--strict", "--no-incremental"])
            .args(target)
            .current_dir(dir.path()));
    }
}
