//! The db role end to end: the controller (in process) drives a db agent with a real MariaDB
//! and two web agents on the sandbox, whose servers stand at 127.0.0.3 and 127.0.0.4.
//! Customers log in with the `mariadb` client over TCP from their web server's address (the
//! client binds it), or over the socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, Write};
use std::sync::Arc;

use common::TOKEN;
use common::mariadb::MariaDb;
use enconf_agent_lib::apply::Applier;
use enconf_agent_lib::server::{Agent, router};
use enconf_agent_lib::system::RealSystem;
use enconf_agent_lib::transport::InProcess;
use enconf_core::controller::{Controller, ControllerConfig};
use enconf_core::domain::{AccountId, AgentToken, AgentUrl, ServerId};
use enconf_core::protocol::db::{DatabaseInput, DbUserInput, DbUserPatch};
use enconf_core::protocol::{ErrorBody, ErrorCode};
use serde_json::json;

struct Cluster {
    controller: Controller,
    runtime: tokio::runtime::Runtime,
    db: MariaDb,
    db_server: ServerId,
    web: Vec<ServerId>,
    _dirs: Vec<tempfile::TempDir>,
}

fn cluster() -> Option<Cluster> {
    let db = MariaDb::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let transport = Arc::new(InProcess::new());
    let controller = Controller::new(
        Arc::new(enconf_core::store::MemoryStore::new_in_memory()),
        transport.clone(),
        ControllerConfig::default(),
    );
    let mut dirs = Vec::new();
    let mut web = Vec::new();
    for (i, ip) in ["127.0.0.3", "127.0.0.4"].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let applier = common::sandbox_applier(dir.path()).with_roles("web".parse().unwrap());
        let agent = runtime
            .block_on(async { Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, 1 << 22) });
        let url: AgentUrl = format!("http://127.0.0.1:{}", 50070 + i).parse().unwrap();
        transport.add(url.clone(), router(agent));
        let input = serde_json::from_value(json!({
            "name": format!("web{i}"), "hostname": format!("web{i}.host.example"),
            "agent_url": url.to_string(), "agent_token": TOKEN, "roles": ["web"],
            "ipv4": ip,
        }))
        .unwrap();
        web.push(runtime.block_on(controller.add_server(&input)).unwrap().id);
        dirs.push(dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = db.agent_settings();
    let mut extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Web servers elsewhere may connect (the web agents also report their own outbound
    // addresses, which are granted too).
    extra.push(("AGENT_DB_LISTEN", "0.0.0.0"));
    let config = common::config(dir.path(), &extra);
    // MariaDB's option directory: the agent writes where MariaDB listens into it at start.
    std::fs::create_dir(dir.path().join("mariadb")).unwrap();
    let applier = Applier::new(config.layout, RealSystem::new()).with_roles(config.roles);
    applier.start().unwrap();
    let options = std::fs::read_to_string(dir.path().join("mariadb/90-enconf.cnf")).unwrap();
    assert!(
        options.contains("[mariadbd]\nbind-address = 0.0.0.0\n"),
        "{options}"
    );
    let agent =
        runtime.block_on(async { Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, 1 << 22) });
    let url: AgentUrl = "http://127.0.0.1:50079".parse().unwrap();
    transport.add(url.clone(), router(agent));
    let input = serde_json::from_value(json!({
        "name": "db1", "hostname": "db1.host.example", "agent_url": url.to_string(),
        "agent_token": TOKEN, "roles": ["db"], "panel_url": "https://db1.host.example",
        "phpmyadmin_path": "/phpmyadmin",
    }))
    .unwrap();
    let server = runtime.block_on(controller.add_server(&input)).unwrap();
    assert!(server.reachable, "{server:?}");
    dirs.push(dir);
    Some(Cluster {
        controller,
        runtime,
        db,
        db_server: server.id,
        web,
        _dirs: dirs,
    })
}

impl Cluster {
    /// An account with a site on `web` and its databases on the db server.
    fn account(&self, user: &str, web: usize) -> AccountId {
        let input = serde_json::from_value(json!({
            "username": user, "domains": [format!("{user}.example")], "roles": ["web", "db"],
            "servers": {"web": self.web[web].0},
        }))
        .unwrap();
        let account = self
            .runtime
            .block_on(self.controller.create_account(&input))
            .unwrap();
        AccountId(account.id)
    }

    fn database(&self, id: AccountId, name: &str) -> Result<String, ErrorBody> {
        let input: DatabaseInput = serde_json::from_value(json!({ "name": name })).unwrap();
        self.runtime
            .block_on(self.controller.create_database(id, &input))
            .map(|d| d.name)
            .map_err(ErrorBody::from)
    }

    fn user(
        &self,
        id: AccountId,
        name: &str,
        password: &str,
        dbs: &[&str],
    ) -> Result<Vec<String>, ErrorBody> {
        let input: DbUserInput =
            serde_json::from_value(json!({ "name": name, "password": password, "databases": dbs }))
                .unwrap();
        self.runtime
            .block_on(self.controller.create_db_user(id, &input))
            .map(|u| u.hosts)
            .map_err(ErrorBody::from)
    }

    fn size(&self, id: AccountId, name: &str) -> Option<u64> {
        self.runtime
            .block_on(self.controller.databases(id))
            .unwrap()
            .into_iter()
            .find(|d| d.name == name)
            .and_then(|d| d.size_bytes)
    }
}

fn refused(r: Result<(), common::mariadb::Refused>, code: &str) {
    match r {
        Ok(()) => panic!("allowed; expected error {code}"),
        Err(e) => assert!(e.0.contains(code), "expected {code}, got {}", e.0),
    }
}

#[test]
fn each_account_reaches_its_own_databases_from_its_web_server_and_nothing_else() {
    let Some(c) = cluster() else { return };
    let alpha = c.account("alpha", 0);
    let beta = c.account("beta", 0);
    assert_eq!(c.database(alpha, "data").unwrap(), "alpha_data");
    assert_eq!(c.database(beta, "beta_data").unwrap(), "beta_data");
    let hosts = c.user(alpha, "u", "alpha-secret-1", &["data"]).unwrap();
    assert_eq!(
        hosts[..2],
        ["localhost", "127.0.0.3"],
        "the web server is another machine"
    );
    c.user(beta, "beta_u", "beta-secret-1", &["beta_data"])
        .unwrap();

    // Each user creates a table in its own database, from its web server's address.
    c.db.customer(Some("127.0.0.3"), "alpha_u", "alpha-secret-1",
        "CREATE TABLE alpha_data.t (id INT PRIMARY KEY, v TEXT); INSERT INTO alpha_data.t VALUES (1, 'x')")
        .unwrap();
    c.db.customer(
        Some("127.0.0.3"),
        "beta_u",
        "beta-secret-1",
        "CREATE TABLE beta_data.t (id INT)",
    )
    .unwrap();
    // ... and is refused on the other account's (1142: table access; 1044: database access).
    refused(
        c.db.customer(
            Some("127.0.0.3"),
            "alpha_u",
            "alpha-secret-1",
            "SELECT * FROM beta_data.t",
        ),
        "1142",
    );
    refused(
        c.db.customer(
            Some("127.0.0.3"),
            "alpha_u",
            "alpha-secret-1",
            "CREATE TABLE beta_data.x (id INT)",
        ),
        "1142",
    );
    // `_` is escaped in the grant: a database whose name differs only there stays closed.
    c.db.admin("CREATE DATABASE alphaxdata");
    refused(
        c.db.customer(
            Some("127.0.0.3"),
            "alpha_u",
            "alpha-secret-1",
            "CREATE TABLE alphaxdata.t (id INT)",
        ),
        "1142",
    );
    // On the db server itself (its socket: phpMyAdmin's way in) it may log in too, but not
    // from an address it was not granted (1130).
    c.db.customer(
        None,
        "alpha_u",
        "alpha-secret-1",
        "SELECT * FROM alpha_data.t",
    )
    .unwrap();
    refused(
        c.db.customer(Some("127.0.0.4"), "alpha_u", "alpha-secret-1", "SELECT 1"),
        "1130",
    );
    refused(
        c.db.customer(Some("127.0.0.3"), "alpha_u", "wrong-password", "SELECT 1"),
        "1045",
    );
    // The grant is on the escaped pattern; the hash, not the password, reached the server.
    let grants = c.db.admin("SHOW GRANTS FOR 'alpha_u'@'127.0.0.3'");
    assert!(
        grants.iter().any(|g| g.contains("ON `alpha\\_data`.*")),
        "{grants:?}"
    );

    // The size is reported (InnoDB: a table takes at least a page).
    assert!(c.size(alpha, "alpha_data").unwrap() > 0);
    assert_eq!(c.size(beta, "beta_data").map(|s| s > 0), Some(true));

    // A password change takes effect.
    let patch: DbUserPatch =
        serde_json::from_value(json!({ "password": "alpha-secret-2" })).unwrap();
    c.runtime
        .block_on(c.controller.patch_db_user(alpha, "u", &patch))
        .unwrap();
    refused(
        c.db.customer(Some("127.0.0.3"), "alpha_u", "alpha-secret-1", "SELECT 1"),
        "1045",
    );
    c.db.customer(
        Some("127.0.0.3"),
        "alpha_u",
        "alpha-secret-2",
        "SELECT * FROM alpha_data.t",
    )
    .unwrap();

    // The db server has every account's databases as recorded (compared by fingerprint).
    let report = c
        .runtime
        .block_on(c.controller.reconcile(c.db_server))
        .unwrap();
    assert_eq!(report.in_sync, ["alpha", "beta"], "{report:?}");
    assert!(report.differing.is_empty(), "{report:?}");

    // Deleting a user ends its open session and its logins at once.
    let mut open =
        c.db.client(Some("127.0.0.3"), "beta_u", "beta-secret-1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut input = open.stdin.take().unwrap();
    writeln!(input, "SELECT 'before', COUNT(*) FROM beta_data.t;").unwrap();
    input.flush().unwrap();
    let mut stdout = std::io::BufReader::new(open.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "before\t0", "the session is open");
    c.runtime
        .block_on(c.controller.delete_db_user(beta, "beta_u"))
        .unwrap();
    writeln!(input, "SELECT 'after', COUNT(*) FROM beta_data.t;").unwrap();
    drop(input);
    let out = open.wait_with_output().unwrap();
    let rest = format!("{line}{}", String::from_utf8_lossy(&out.stdout));
    assert!(!rest.contains("after"), "the session was killed: {rest}");
    assert!(!out.status.success());
    refused(
        c.db.customer(Some("127.0.0.3"), "beta_u", "beta-secret-1", "SELECT 1"),
        "1045",
    );
    assert_eq!(
        c.db.admin("SELECT COUNT(*) FROM mysql.user WHERE User = 'beta_u'"),
        ["0"]
    );

    // The web role moves to the server at .4: the grants follow.
    let migrate = serde_json::from_value(json!({ "target_server_id": c.web[1].0 })).unwrap();
    c.runtime
        .block_on(c.controller.migrate_account(alpha, &migrate))
        .unwrap();
    c.db.customer(
        Some("127.0.0.4"),
        "alpha_u",
        "alpha-secret-2",
        "SELECT * FROM alpha_data.t",
    )
    .unwrap();
    refused(
        c.db.customer(Some("127.0.0.3"), "alpha_u", "alpha-secret-2", "SELECT 1"),
        "1130",
    );

    // The web server's address changes: the grants follow (off the request).
    let patch = serde_json::from_value(json!({ "ipv4": "127.0.0.5" })).unwrap();
    c.runtime
        .block_on(c.controller.patch_server(c.web[1], &patch))
        .unwrap();
    common::services::wait_for("the grant for the new address", || {
        c.db.customer(Some("127.0.0.5"), "alpha_u", "alpha-secret-2", "SELECT 1")
            .is_ok()
    });
    refused(
        c.db.customer(Some("127.0.0.4"), "alpha_u", "alpha-secret-2", "SELECT 1"),
        "1130",
    );

    // Deleting a database drops it and its grants.
    c.runtime
        .block_on(c.controller.delete_database(beta, "data"))
        .unwrap();
    assert!(c.db.admin("SHOW DATABASES LIKE 'beta\\_data'").is_empty());

    // Deleting the account keeps its databases (until a final backup) and locks its users.
    let kept = c
        .runtime
        .block_on(c.controller.delete_account(alpha))
        .unwrap()
        .expect("the answer says what was kept");
    assert_eq!(kept.databases, ["alpha_data"]);
    assert_eq!(kept.database_users, ["alpha_u"]);
    assert_eq!(c.db.admin("SELECT COUNT(*) FROM alpha_data.t"), ["1"]);
    refused(
        c.db.customer(Some("127.0.0.5"), "alpha_u", "alpha-secret-2", "SELECT 1"),
        "4151",
    );
    // A new account of that user name does not take them over.
    let again = c.account("alpha", 0);
    let err = c.database(again, "data").unwrap_err();
    assert_eq!(err.error.code, ErrorCode::Duplicate, "{err:?}");
    assert!(err.error.message.contains("kept"), "{err:?}");
}

#[test]
fn hostile_names_are_refused_and_nothing_reaches_the_server() {
    let Some(c) = cluster() else { return };
    let id = c.account("shop", 0);
    c.database(id, "data").unwrap();
    c.user(id, "app", "shop-secret-1", &["data"]).unwrap();
    let before = c.db.inventory();
    let long = "a".repeat(60);
    for name in [
        "",
        "shop_",
        long.as_str(),
        "da`ta",
        "da'ta",
        "da\"ta",
        "da%ta",
        "da/ta",
        "da ta",
        "da\nta",
        "da\u{0}ta",
        "Data",
        "x;DROP DATABASE shop_data",
    ] {
        let err = c.database(id, name).unwrap_err();
        assert_eq!(err.error.code, ErrorCode::Invalid, "{name:?}: {err:?}");
        assert_eq!(err.error.field.as_deref(), Some("name"), "{name:?}");
        let err = c.user(id, name, "shop-secret-1", &[]).unwrap_err();
        assert_eq!(err.error.field.as_deref(), Some("name"), "{name:?}");
    }
    // A grant on a database that is not the account's, a short password.
    let err = c
        .user(id, "other", "shop-secret-1", &["beta_data"])
        .unwrap_err();
    assert_eq!(err.error.field.as_deref(), Some("databases[0]"), "{err:?}");
    let err = c.user(id, "other", "short", &[]).unwrap_err();
    assert_eq!(err.error.field.as_deref(), Some("password"), "{err:?}");
    // A name taken by a database that is not the account's is refused by the agent, and the
    // record is put back.
    c.db.admin("CREATE DATABASE shop_foreign");
    let err = c.database(id, "foreign").unwrap_err();
    assert_eq!(err.error.code, ErrorCode::Duplicate, "{err:?}");
    let listed: Vec<String> = c
        .runtime
        .block_on(c.controller.databases(id))
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(listed, ["shop_data"]);
    c.db.admin("DROP DATABASE shop_foreign");
    assert_eq!(c.db.inventory(), before, "MariaDB is as it was");
    // The same database again is a duplicate of the account's own.
    let err = c.database(id, "shop_data").unwrap_err();
    assert_eq!(err.error.code, ErrorCode::Duplicate);
}
