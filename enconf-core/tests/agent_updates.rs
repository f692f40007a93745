//! Agent updates. The badge follows the agent's signed apt repository: a real repository made
//! by `scripts/apt-repo.sh` (apt-ftparchive, gpg) is read with the real `gpgv`. Update jobs
//! follow an agent's upgrade. Servers' agents are stand-ins behind the transport: they report
//! a version, and upgrade as told (the agent's side of it is tested in the agent library and,
//! with apt and dpkg, in enconf-bin's package tests).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use enconf_core::apt::{RepoError, Repository};
use enconf_core::controller::{Controller, ControllerConfig};
use enconf_core::protocol::ServerInput;
use enconf_core::store::MemoryStore;
use enconf_core::transport::{
    AgentEndpoint, AgentRequest, AgentResponse, AgentTransport, Method, TransportError,
};
use serde_json::json;

const TOKEN: &str = "agent-token-0123456789abcdef";

/// How a stand-in agent's upgrade goes.
#[derive(Debug, Clone, PartialEq)]
enum Upgrade {
    /// None asked for yet.
    Idle,
    /// Asked: answers `running` for `polls` more questions, then is down (restarting) for
    /// `down` questions, then comes back at `to`.
    Runs {
        polls: u32,
        down: u32,
        to: String,
    },
    /// Asked: fails after one `running` answer with apt's words, the old version kept.
    Fails,
    Succeeded,
    Failed,
}

#[derive(Debug)]
struct Agent {
    url: String,
    version: String,
    upgrade: Upgrade,
    /// What the next upgrade does.
    plan: Upgrade,
    starts: u32,
}

/// Agents that answer their health check with a version, by URL, and upgrade as planned.
#[derive(Debug, Default)]
struct Agents(Mutex<Vec<Agent>>);

impl Agents {
    fn plan(&self, url: &str, plan: Upgrade) {
        let mut agents = self.0.lock().unwrap();
        let a = agents.iter_mut().find(|a| a.url == url).unwrap();
        a.plan = plan;
    }
}

#[async_trait]
impl AgentTransport for Agents {
    async fn send(
        &self,
        agent: &AgentEndpoint,
        request: AgentRequest,
    ) -> Result<AgentResponse, TransportError> {
        let url = agent.url.to_string();
        let mut agents = self.0.lock().unwrap();
        let Some((n, a)) = agents.iter_mut().enumerate().find(|(_, a)| a.url == url) else {
            return Err(TransportError::Unreachable("no such agent".into()));
        };
        let answer = |status: u16, body: serde_json::Value| {
            Ok(AgentResponse {
                status,
                body: body.to_string().into_bytes(),
            })
        };
        // A restarting agent answers nothing.
        if let Upgrade::Runs { polls: 0, down, to } = &mut a.upgrade {
            if *down > 0 {
                *down -= 1;
                return Err(TransportError::Unreachable("connection refused".into()));
            }
            a.version = to.clone();
            a.upgrade = Upgrade::Succeeded;
        }
        match (request.method, request.path.as_str()) {
            (Method::Get, "/v1/health") => answer(
                200,
                json!({"version": a.version, "hostname": "h", "uptime_s": 1, "agent_id": format!("{:032x}", n + 1)}),
            ),
            (Method::Post, "/v1/update") => {
                if matches!(a.upgrade, Upgrade::Runs { .. }) {
                    return answer(
                        409,
                        json!({"error": {"code": "job_running", "message": "an upgrade runs", "field": null}}),
                    );
                }
                a.starts += 1;
                a.upgrade = a.plan.clone();
                answer(202, json!({"status": "running"}))
            }
            (Method::Get, "/v1/update") => match &mut a.upgrade {
                Upgrade::Idle => answer(200, json!({"status": "idle"})),
                Upgrade::Runs { polls, .. } => {
                    *polls -= 1;
                    answer(200, json!({"status": "running"}))
                }
                Upgrade::Fails => {
                    a.upgrade = Upgrade::Failed;
                    answer(200, json!({"status": "running"}))
                }
                Upgrade::Succeeded => answer(200, json!({"status": "succeeded"})),
                Upgrade::Failed => answer(
                    200,
                    json!({"status": "failed", "output": "+ apt-get update\nE: The repository is not signed."}),
                ),
            },
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Whether the tools are here; under `CI=true` a missing one fails the test.
fn tools() -> bool {
    let missing: Vec<&str> = ["gpg", "gpgv", "apt-ftparchive", "dpkg-deb"]
        .into_iter()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "missing under CI: {missing:?} (apt-get install gnupg apt-utils)"
    );
    eprintln!("skipped: {missing:?} missing");
    false
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A gpg home with keys, and repositories made with them.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let f = Self { dir };
        for (uid, time) in [
            ("repo <repo@example.com>", None),
            ("stranger <stranger@example.com>", None),
            ("old <old@example.com>", Some("20200101T000000")),
        ] {
            let mut gpg = f.gpg();
            if let Some(t) = time {
                gpg.args(["--faked-system-time", t]);
            }
            run(gpg.args([
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                "ed25519",
                "sign",
                "never",
            ]));
        }
        f
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.dir.path().join("gnupg"))
            .args(["--batch", "--quiet", "--yes"]);
        c
    }

    fn deb(&self, version: &str) -> PathBuf {
        let root = self.dir.path().join(format!("pkg-{version}"));
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            format!("Package: netcell-webpanel-agent\nVersion: {version}\nArchitecture: amd64\nMaintainer: enconf <t@example.com>\nDescription: test\n"),
        )
        .unwrap();
        // apt-ftparchive --arch takes only files named `*_<arch>.deb`.
        let deb = self
            .dir
            .path()
            .join(format!("netcell-webpanel-agent_{version}_amd64.deb"));
        run(Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zgzip"])
            .arg(&root)
            .arg(&deb));
        deb
    }

    /// A repository named `name` holding the package at `versions`, signed by `key`.
    fn repo(&self, name: &str, versions: &[&str], key: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/apt-repo.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script)
            .env("GNUPGHOME", self.dir.path().join("gnupg"))
            .arg("--out")
            .arg(&out)
            .arg("--url")
            .arg(format!("file://{}", out.display()))
            .args(["--key", key]);
        for v in versions {
            cmd.arg(self.deb(v));
        }
        run(&mut cmd);
        out
    }

    /// Signs `repo`'s Release again as InRelease with `key` and extra gpg arguments.
    fn sign(&self, repo: &Path, key: &str, extra: &[&str]) {
        let release = repo.join("dists/stable/Release");
        run(self
            .gpg()
            .args(extra)
            .args(["--local-user", key, "--clearsign", "--output"])
            .arg(repo.join("dists/stable/InRelease"))
            .arg(release));
    }
}

/// The repository of a `.sources` text, as the controller reads it.
fn repository(sources: &str) -> Repository {
    Repository::new(sources, Duration::from_secs(10)).unwrap()
}

fn sources(repo: &Path) -> String {
    std::fs::read_to_string(repo.join("netcell-webpanel-agent.sources")).unwrap()
}

async fn controller_with(repo: Repository, agents: &[(&str, &str)]) -> (Controller, Vec<u64>) {
    let (controller, ids, _) = controller_and_agents(repo, agents).await;
    (controller, ids)
}

async fn controller_and_agents(
    repo: Repository,
    agents: &[(&str, &str)],
) -> (Controller, Vec<u64>, Arc<Agents>) {
    let transport = Arc::new(Agents::default());
    let controller = Controller::new(
        Arc::new(MemoryStore::new_in_memory()),
        Arc::clone(&transport) as Arc<dyn AgentTransport>,
        ControllerConfig {
            health_timeout: Duration::from_secs(2),
            job_poll: Duration::from_millis(5),
            ..ControllerConfig::default()
        },
    )
    .with_agent_repository(repo);
    let mut ids = Vec::new();
    for (name, version) in agents {
        let url = format!("http://{name}.example.com:50000");
        transport.0.lock().unwrap().push(Agent {
            url: url.clone(),
            version: (*version).to_owned(),
            upgrade: Upgrade::Idle,
            plan: Upgrade::Idle,
            starts: 0,
        });
        let input: ServerInput = serde_json::from_value(json!({
            "name": name, "hostname": format!("{name}.example.com"),
            "agent_url": url, "agent_token": TOKEN, "roles": ["web"],
        }))
        .unwrap();
        let view = controller.add_server(&input).await.unwrap();
        assert_eq!(view.agent_version.as_deref(), Some(*version));
        ids.push(view.id.0);
    }
    (controller, ids, transport)
}

async fn badges(controller: &Controller) -> Vec<(String, bool)> {
    controller
        .servers()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.agent_version.unwrap(), s.update_available))
        .collect()
}

#[tokio::test]
async fn the_badge_follows_the_signed_repository_by_debian_ordering() {
    if !tools() {
        return;
    }
    let f = Fixture::new();
    let repo = f.repo("r1", &["1.9.0-1", "1.10.0-1"], "repo@example.com");
    let (controller, _) = controller_with(
        repository(&sources(&repo)),
        &[
            ("a", "1.9.0"),
            ("b", "1.10.0"),
            ("c", "1.11.0"),
            ("d", "1.10.0-rc.1"),
        ],
    )
    .await;
    // Nothing is offered before the repository was read.
    assert!(badges(&controller).await.iter().all(|(_, b)| !b));
    let newest = controller.refresh_agent_release().await.unwrap().unwrap();
    assert_eq!(
        newest.to_string(),
        "1.10.0-1",
        "1.10.0 > 1.9.0, not by string"
    );
    assert_eq!(
        badges(&controller).await,
        [
            ("1.9.0".into(), true),
            ("1.10.0".into(), false),
            ("1.11.0".into(), false), // a downgrade is never offered
            ("1.10.0-rc.1".into(), true),
        ]
    );

    // 1.0.0~rc1 is older than 1.0.0: an agent at 1.0.0 is not offered the release candidate.
    let rc = f.repo("r2", &["1.0.0~rc1-1"], "repo@example.com");
    let (controller, _) = controller_with(
        repository(&sources(&rc)),
        &[("e", "1.0.0"), ("f", "0.9.0"), ("g", "1.0.0-rc1")],
    )
    .await;
    assert_eq!(
        controller
            .refresh_agent_release()
            .await
            .unwrap()
            .unwrap()
            .to_string(),
        "1.0.0~rc1-1"
    );
    assert_eq!(
        badges(&controller).await,
        [
            ("1.0.0".into(), false),
            ("0.9.0".into(), true),
            ("1.0.0-rc1".into(), false),
        ]
    );
}

#[tokio::test]
async fn an_untrusted_repository_is_refused_and_changes_nothing() {
    if !tools() {
        return;
    }
    let f = Fixture::new();
    let repo = f.repo("r", &["1.0.0-1"], "repo@example.com");
    let good_sources = sources(&repo);
    let (controller, _) = controller_with(repository(&good_sources), &[("a", "0.9.0")]).await;
    let newest = controller.refresh_agent_release().await.unwrap();
    assert_eq!(newest.unwrap().to_string(), "1.0.0-1");
    assert!(badges(&controller).await[0].1);
    let inrelease = repo.join("dists/stable/InRelease");
    let packages = repo.join("dists/stable/main/binary-amd64/Packages");
    let signed = std::fs::read_to_string(&inrelease).unwrap();
    let list = std::fs::read_to_string(&packages).unwrap();

    let expect = |what: &'static str| {
        let controller = controller.clone();
        async move {
            let e = controller.refresh_agent_release().await.unwrap_err();
            assert!(e.to_string().contains(what), "{what}: {e}");
            // What was known stays: the server still shows its update.
            assert_eq!(
                controller.newest_agent_package().unwrap().to_string(),
                "1.0.0-1"
            );
            e
        }
    };

    // The signed text changed after signing.
    std::fs::write(
        &inrelease,
        signed.replacen("Suite: stable", "Suite: stablx", 1),
    )
    .unwrap();
    assert!(matches!(
        expect("bad signature").await,
        RepoError::Untrusted(_)
    ));
    // A list that is not the one the index vouches for (a newer version slipped in).
    std::fs::write(&inrelease, &signed).unwrap();
    std::fs::write(
        &packages,
        list.replace("Version: 1.0.0-1", "Version: 9.0.0-1"),
    )
    .unwrap();
    assert!(matches!(
        expect("does not match the signed index").await,
        RepoError::Index(_)
    ));
    std::fs::write(&packages, &list).unwrap();
    // No signature at all: the unsigned Release is not read instead.
    std::fs::remove_file(&inrelease).unwrap();
    assert!(matches!(expect("InRelease").await, RepoError::Fetch { .. }));
    // Signed by someone else's key.
    f.sign(&repo, "stranger@example.com", &[]);
    assert!(matches!(
        expect("keys the source does not hold").await,
        RepoError::Untrusted(_)
    ));
    // An expired signature (made in 2020, valid for a day) by a key the source holds.
    let old = Fixture::sources_with_key(&f, &good_sources, "old@example.com");
    let (old_controller, _) = controller_with(repository(&old), &[("b", "0.9.0")]).await;
    f.sign(
        &repo,
        "old@example.com",
        &[
            "--faked-system-time",
            "20200102T000000",
            "--default-sig-expire",
            "1d",
        ],
    );
    let e = old_controller.refresh_agent_release().await.unwrap_err();
    assert!(e.to_string().contains("expired signature"), "{e}");
    assert!(old_controller.newest_agent_package().is_none());
    assert!(!badges(&old_controller).await[0].1);
    // An index whose Valid-Until has passed (a replay of an old, validly signed index).
    let release = repo.join("dists/stable/Release");
    let text = std::fs::read_to_string(&release).unwrap();
    std::fs::write(
        &release,
        text.replacen(
            "Date:",
            "Valid-Until: Sat, 01 Jan 2022 00:00:00 UTC\nDate:",
            1,
        ),
    )
    .unwrap();
    f.sign(&repo, "repo@example.com", &[]);
    assert!(matches!(expect("expired at").await, RepoError::Expired(_)));
    // Signed properly again: trusted again.
    std::fs::write(&release, &text).unwrap();
    f.sign(&repo, "repo@example.com", &[]);
    controller.refresh_agent_release().await.unwrap();
}

impl Fixture {
    /// `sources` with its Signed-By replaced by `key`'s public key.
    fn sources_with_key(&self, sources: &str, key: &str) -> String {
        let head = sources.split("Signed-By:").next().unwrap();
        let armored = run(self.gpg().args(["--armor", "--export", key]));
        let mut s = format!("{head}Signed-By:\n");
        for line in armored.lines() {
            s.push(' ');
            s.push_str(if line.is_empty() { "." } else { line });
            s.push('\n');
        }
        s
    }
}

async fn finished(controller: &Controller, job: u64) -> enconf_core::protocol::backup::JobView {
    for _ in 0..2000 {
        let view = controller
            .job(enconf_core::domain::job::JobId(job))
            .await
            .unwrap();
        if view.finished_at.is_some() {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("job {job} did not finish");
}

#[tokio::test]
async fn an_update_job_follows_the_agent_through_its_restart() {
    if !tools() {
        return;
    }
    let f = Fixture::new();
    let repo = f.repo("r", &["1.9.0-1", "1.10.0-1"], "repo@example.com");
    let (controller, ids, agents) = controller_and_agents(
        repository(&sources(&repo)),
        &[
            ("a", "1.9.0"),
            ("b", "1.9.0"),
            ("c", "1.10.0"),
            ("d", "2.0.0"),
        ],
    )
    .await;
    let server = |i: usize| enconf_core::domain::ServerId(ids[i]);
    let url = |name: &str| format!("http://{name}.example.com:50000");

    // a: running twice, down (restarting) three times, back at 1.10.0.
    agents.plan(
        &url("a"),
        Upgrade::Runs {
            polls: 2,
            down: 3,
            to: "1.10.0".into(),
        },
    );
    // The job reads the repository itself: no refresh was needed before.
    let job = controller.update_server(server(0)).await.unwrap();
    assert_eq!(job.version.as_deref(), Some("1.10.0-1"));
    assert_eq!(serde_json::to_value(&job).unwrap()["kind"], "update");
    assert_eq!(job.server_id, Some(server(0)));
    // A second update of the same server while the first runs is refused.
    let again = controller.update_server(server(0)).await.unwrap_err();
    assert_eq!(
        enconf_core::protocol::ErrorBody::from(again).error.code,
        enconf_core::protocol::ErrorCode::JobRunning
    );
    let done = finished(&controller, job.id).await;
    assert_eq!(
        (done.status, done.error.as_deref()),
        (enconf_core::domain::job::JobStatus::Succeeded, None)
    );
    let a = controller.server(server(0)).await.unwrap();
    assert_eq!(
        (a.agent_version.as_deref(), a.update_available, a.reachable),
        (Some("1.10.0"), false, true),
        "the new version is recorded"
    );

    // b: the upgrade fails: the job says why, the old version stays and is still offered.
    agents.plan(&url("b"), Upgrade::Fails);
    let job = controller.update_server(server(1)).await.unwrap();
    let done = finished(&controller, job.id).await;
    assert_eq!(done.status, enconf_core::domain::job::JobStatus::Failed);
    let error = done.error.unwrap();
    assert!(
        error.contains("The repository is not signed") && error.contains("keeps its version"),
        "{error}"
    );
    let b = controller.server(server(1)).await.unwrap();
    assert_eq!(
        (b.agent_version.as_deref(), b.update_available),
        (Some("1.9.0"), true)
    );
    // Tried again (the repository mended), it goes through.
    agents.plan(
        &url("b"),
        Upgrade::Runs {
            polls: 0,
            down: 0,
            to: "1.10.0".into(),
        },
    );
    let job = controller.update_server(server(1)).await.unwrap();
    assert_eq!(finished(&controller, job.id).await.error, None);

    // c is at the newest, d newer: nothing is offered, no job, the agent is not asked.
    for i in [2, 3] {
        let e = enconf_core::protocol::ErrorBody::from(
            controller.update_server(server(i)).await.unwrap_err(),
        );
        assert_eq!(
            (e.status(), e.error.code),
            (409, enconf_core::protocol::ErrorCode::UpToDate),
            "{e:?}"
        );
    }
    let starts: Vec<u32> = agents.0.lock().unwrap().iter().map(|a| a.starts).collect();
    assert_eq!(starts, [1, 2, 0, 0]);
}
