//! MariaDB, for the db role: what an account's databases and users are on this server's
//! MariaDB, made so from the account's record.
//!
//! The executor journals the account's record (`<state_dir>/accounts/<user>.json`) like any
//! file; the record's reload, [`sync`], makes MariaDB hold what it says. It reads the files
//! only, so it is the same forward, in a rollback (the old record back) and after a crash.
//!
//! - **What is the account's**: a ledger per account (`<state_dir>/db/<user>.json`, written
//!   by [`sync`]) names the databases and users the agent made for it. Only those are ever
//!   dropped; a database or user of that name made by anyone else (or kept from a deleted
//!   account) is refused before anything changes ([`conflicts`]).
//! - **Names** are validated by an allowlist (see `enconf_core::domain::db`) and quoted all the
//!   same; values go as parameters wherever MariaDB takes them (every `SELECT`). Password
//!   hashes go in the text (`IDENTIFIED BY PASSWORD '*…'`: MariaDB takes no parameter there);
//!   they are hidden from every log and error ([`Sql::shown`]).
//! - **Grants** are on escaped patterns (`shop\_data`): `_` is a wildcard there.
//! - **Access ends at once**: when a user is dropped or loses a database, its open sessions are
//!   killed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use enconf_core::domain::db::{DbHost, DbName, DbSpec};
use serde::{Deserialize, Serialize};

use crate::config::Layout;
use crate::executor::{ApplyError, Reload};
use crate::roles::Installed;
use crate::sql::{Rows, Sql};
use crate::system::System;

/// What the agent made on MariaDB for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub databases: BTreeSet<String>,
    pub users: BTreeSet<String>,
    /// The account was deleted: its databases are kept (and its users locked) until a final
    /// backup of them exists. The user name cannot take them over.
    #[serde(default)]
    pub kept: bool,
}

pub fn ledger_path(layout: &Layout, user: &str) -> PathBuf {
    layout.state_dir.join("db").join(format!("{user}.json"))
}

pub fn read_ledger<S: System>(
    system: &S,
    layout: &Layout,
    user: &str,
) -> Result<Ledger, ApplyError> {
    match system.read(&ledger_path(layout, user))? {
        None => Ok(Ledger::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ApplyError::State(format!("db ledger of {user}: {e}"))),
    }
}

fn write_ledger<S: System>(
    system: &S,
    layout: &Layout,
    user: &str,
    ledger: &Ledger,
) -> Result<(), ApplyError> {
    let bytes = serde_json::to_vec_pretty(ledger).map_err(|e| ApplyError::State(e.to_string()))?;
    system.write_atomic(&ledger_path(layout, user), &bytes, 0o600)?;
    Ok(())
}

/// The reload that makes MariaDB hold what the account `user`'s record says.
pub fn reload(user: &str) -> Reload {
    Reload::Database {
        user: user.to_owned(),
    }
}

/// A string literal (user names and hosts; the allowlists leave nothing to escape).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `'user'@'host'`.
fn account(user: &str, host: &str) -> String {
    format!("{}@{}", literal(user), literal(host))
}

/// A backtick-quoted identifier.
fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn run<S: System>(
    system: &S,
    layout: &Layout,
    statements: &[Sql],
) -> Result<Vec<Rows>, ApplyError> {
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    system
        .sql(&layout.db_socket, &layout.db_admin_user, statements)
        .map_err(|e| ApplyError::Rejected {
            validator: "mariadb".into(),
            message: e.to_string(),
        })
}

fn column(rows: &Rows, i: usize) -> impl Iterator<Item = String> + '_ {
    rows.iter().filter_map(move |r| r.get(i).cloned().flatten())
}

/// What MariaDB has of these names: databases, and each user's host rows with their
/// authentication string, and each (user, host)'s database grants.
#[derive(Debug, Default)]
struct Found {
    databases: BTreeSet<String>,
    /// user → host → authentication string.
    users: BTreeMap<String, BTreeMap<String, String>>,
    /// (user, host) → escaped database patterns.
    grants: BTreeMap<(String, String), BTreeSet<String>>,
}

fn find<S: System>(
    system: &S,
    layout: &Layout,
    databases: &BTreeSet<String>,
    users: &BTreeSet<String>,
) -> Result<Found, ApplyError> {
    let mut statements = Vec::new();
    if !databases.is_empty() {
        statements.push(Sql::with(
            format!(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({})",
                placeholders(databases.len())
            ),
            databases.iter().cloned(),
        ));
    }
    if !users.is_empty() {
        statements.push(Sql::with(
            format!(
                "SELECT User, Host, authentication_string FROM mysql.user WHERE User IN ({})",
                placeholders(users.len())
            ),
            users.iter().cloned(),
        ));
        statements.push(Sql::with(
            format!(
                "SELECT User, Host, Db FROM mysql.db WHERE User IN ({})",
                placeholders(users.len())
            ),
            users.iter().cloned(),
        ));
    }
    let mut results = run(system, layout, &statements)?.into_iter();
    let mut found = Found::default();
    if !databases.is_empty() {
        found.databases = column(&results.next().unwrap_or_default(), 0).collect();
    }
    if !users.is_empty() {
        for row in results.next().unwrap_or_default() {
            if let [Some(user), Some(host), auth] = row.as_slice() {
                found
                    .users
                    .entry(user.clone())
                    .or_default()
                    .insert(host.clone(), auth.clone().unwrap_or_default());
            }
        }
        for row in results.next().unwrap_or_default() {
            if let [Some(user), Some(host), Some(db)] = row.as_slice() {
                found
                    .grants
                    .entry((user.clone(), host.clone()))
                    .or_default()
                    .insert(db.clone());
            }
        }
    }
    Ok(found)
}

/// Refuses names `want` would take that exist on MariaDB but are not the account's (made by
/// someone else, or kept from a deleted account of the same user name).
pub fn conflicts<S: System>(
    system: &S,
    layout: &Layout,
    user: &str,
    want: &DbSpec,
) -> Result<(), ApplyError> {
    let ledger = read_ledger(system, layout, user)?;
    check_kept(&ledger, user, want)?;
    let new_dbs: BTreeSet<String> = want
        .databases
        .iter()
        .map(ToString::to_string)
        .filter(|d| !ledger.databases.contains(d))
        .collect();
    let new_users: BTreeSet<String> = want
        .users
        .iter()
        .map(|u| u.name.to_string())
        .filter(|u| !ledger.users.contains(u))
        .collect();
    if new_dbs.is_empty() && new_users.is_empty() {
        return Ok(());
    }
    let found = find(system, layout, &new_dbs, &new_users)?;
    if let Some(name) = found.databases.iter().next() {
        return Err(ApplyError::DbTaken {
            name: name.clone(),
            reason:
                "a database of that name exists on this server and was not made for this account"
                    .into(),
        });
    }
    if let Some(name) = found.users.keys().next() {
        return Err(ApplyError::DbTaken {
            name: name.clone(),
            reason: "a database user of that name exists on this server and was not made for this account".into(),
        });
    }
    Ok(())
}

/// A kept ledger (a deleted account's databases, waiting for their final backup) is not the
/// account's: an account of the same user name may exist, but not take them over.
fn check_kept(ledger: &Ledger, user: &str, want: &DbSpec) -> Result<(), ApplyError> {
    if !ledger.kept || want.is_empty() {
        return Ok(());
    }
    let name = ledger
        .databases
        .iter()
        .chain(&ledger.users)
        .next()
        .cloned()
        .unwrap_or_default();
    Err(ApplyError::DbTaken {
        name,
        reason: format!(
            "it is kept from a deleted account named {user} until a final backup of it exists"
        ),
    })
}

/// A grant for `host` needs MariaDB to listen beyond loopback (`AGENT_DB_LISTEN`).
pub fn check_hosts(layout: &Layout, want: &DbSpec) -> Result<(), ApplyError> {
    if !layout.db_listen.is_loopback() {
        return Ok(());
    }
    let remote = want.users.iter().flat_map(|u| &u.hosts).find(|h| match h {
        DbHost::Localhost => false,
        DbHost::Ip(ip) => !ip.is_loopback(),
    });
    match remote {
        None => Ok(()),
        Some(host) => Err(ApplyError::Rejected {
            validator: "mariadb".into(),
            message: format!(
                "MariaDB listens only on loopback here (AGENT_DB_LISTEN={}), so a web server at {host} could not reach it: set AGENT_DB_LISTEN to an address it can reach",
                layout.db_listen
            ),
        }),
    }
}

/// Ends the sessions of `users` (after their access changed).
fn kill_sessions<S: System>(
    system: &S,
    layout: &Layout,
    users: &BTreeSet<String>,
) -> Result<(), ApplyError> {
    if users.is_empty() {
        return Ok(());
    }
    let ids = run(
        system,
        layout,
        &[Sql::with(
            format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER IN ({})",
                placeholders(users.len())
            ),
            users.iter().cloned(),
        )],
    )?;
    let kills: Vec<Sql> = ids
        .first()
        .map(|rows| column(rows, 0).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|id| id.chars().all(|c| c.is_ascii_digit()))
        .map(|id| Sql::new(format!("KILL CONNECTION {id}")))
        .collect();
    // A session may end by itself between the two statements: one at a time, errors logged.
    for kill in kills {
        if let Err(e) = run(system, layout, std::slice::from_ref(&kill)) {
            tracing::debug!(error = %e, "a session had ended already");
        }
    }
    Ok(())
}

/// Makes MariaDB hold what the account `user`'s record says, and records that in the ledger.
/// Without a record (the account is gone, or has no db role here) nothing changes: a deleted
/// account's databases stay (see [`lock`]).
pub fn sync<S: System>(system: &S, layout: &Layout, user: &str) -> Result<(), ApplyError> {
    let record = crate::roles::record_path(layout, user);
    let Some(bytes) = system.read(&record)? else {
        return Ok(());
    };
    let installed: Installed = serde_json::from_slice(&bytes)
        .map_err(|e| ApplyError::State(format!("record of {user}: {e}")))?;
    if !installed.spec.roles.contains(enconf_core::domain::Role::Db) {
        return Ok(());
    }
    let want = &installed.spec.db;
    let mut ledger = read_ledger(system, layout, user)?;
    if ledger.kept {
        // Nothing of a kept ledger is touched (see `check_kept`).
        return check_kept(&ledger, user, want);
    }
    let want_dbs: BTreeSet<String> = want.databases.iter().map(ToString::to_string).collect();
    let want_users: BTreeSet<String> = want.users.iter().map(|u| u.name.to_string()).collect();
    let all_dbs: BTreeSet<String> = want_dbs.union(&ledger.databases).cloned().collect();
    let all_users: BTreeSet<String> = want_users.union(&ledger.users).cloned().collect();
    let found = find(system, layout, &all_dbs, &all_users)?;

    // Made from now on: record first, so that a failure half-way leaves them the account's.
    ledger.databases.extend(want_dbs.iter().cloned());
    ledger.users.extend(want_users.iter().cloned());
    write_ledger(system, layout, user, &ledger)?;

    let mut statements = Vec::new();
    let mut cut_off: BTreeSet<String> = BTreeSet::new();
    for db in want_dbs.difference(&found.databases) {
        statements.push(Sql::new(format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            ident(db)
        )));
    }
    for u in &want.users {
        let name = u.name.as_str();
        let rows = found.users.get(name);
        let hash = u.hash.expose_secret();
        let hosts: BTreeSet<String> = u.hosts.iter().map(ToString::to_string).collect();
        for host in &hosts {
            match rows.and_then(|r| r.get(host)) {
                None => statements.push(Sql::new(format!(
                    "CREATE USER {} IDENTIFIED BY PASSWORD '{hash}'",
                    account(name, host)
                ))),
                Some(auth) if auth != hash => statements.push(Sql::new(format!(
                    "ALTER USER {} IDENTIFIED BY PASSWORD '{hash}' ACCOUNT UNLOCK",
                    account(name, host)
                ))),
                Some(_) => {}
            }
            let want_grants: BTreeSet<String> = u.databases.iter().map(DbName::grant_key).collect();
            let have = found
                .grants
                .get(&(name.to_owned(), host.clone()))
                .cloned()
                .unwrap_or_default();
            for gone in have.difference(&want_grants) {
                statements.push(Sql::new(format!(
                    "REVOKE ALL PRIVILEGES ON {}.* FROM {}",
                    ident(gone),
                    account(name, host)
                )));
                cut_off.insert(name.to_owned());
            }
            for db in u
                .databases
                .iter()
                .filter(|d| !have.contains(&d.grant_key()))
            {
                statements.push(Sql::new(format!(
                    "GRANT ALL PRIVILEGES ON {}.* TO {}",
                    db.grant_pattern(),
                    account(name, host)
                )));
            }
        }
        for host in rows.into_iter().flat_map(BTreeMap::keys) {
            if !hosts.contains(host) {
                statements.push(Sql::new(format!("DROP USER {}", account(name, host))));
                cut_off.insert(name.to_owned());
            }
        }
    }
    for gone in ledger.users.difference(&want_users) {
        for host in found.users.get(gone).into_iter().flat_map(BTreeMap::keys) {
            statements.push(Sql::new(format!(
                "DROP USER IF EXISTS {}",
                account(gone, host)
            )));
        }
        cut_off.insert(gone.clone());
    }
    for gone in ledger.databases.difference(&want_dbs) {
        statements.push(Sql::new(format!("DROP DATABASE IF EXISTS {}", ident(gone))));
    }
    run(system, layout, &statements)?;
    kill_sessions(system, layout, &cut_off)?;
    ledger.databases = want_dbs;
    ledger.users = want_users;
    write_ledger(system, layout, user, &ledger)?;
    if !statements.is_empty() {
        tracing::info!(
            account = user,
            statements = statements.len(),
            "databases applied"
        );
    }
    Ok(())
}

/// After the account `user` went from this server (deleted, or its db role moved): its
/// databases stay, its users are locked (they can no longer log in; their sessions end), and
/// the ledger says they are kept.
pub fn lock<S: System>(system: &S, layout: &Layout, user: &str) -> Result<(), ApplyError> {
    let mut ledger = read_ledger(system, layout, user)?;
    if ledger.databases.is_empty() && ledger.users.is_empty() {
        return Ok(());
    }
    let found = find(system, layout, &BTreeSet::new(), &ledger.users)?;
    let statements: Vec<Sql> = found
        .users
        .iter()
        .flat_map(|(u, hosts)| {
            hosts
                .keys()
                .map(move |h| Sql::new(format!("ALTER USER {} ACCOUNT LOCK", account(u, h))))
        })
        .collect();
    run(system, layout, &statements)?;
    kill_sessions(system, layout, &ledger.users)?;
    ledger.kept = true;
    write_ledger(system, layout, user, &ledger)?;
    tracing::info!(
        account = user,
        databases = ledger.databases.len(),
        users = ledger.users.len(),
        "the account's databases are kept and its database users locked until a final backup"
    );
    Ok(())
}

/// After the account `user` went from this server and a final backup of its databases
/// exists: its users are dropped (their sessions end), then its databases, and the ledger
/// goes. The names are free again.
pub fn drop_all<S: System>(system: &S, layout: &Layout, user: &str) -> Result<(), ApplyError> {
    let ledger = read_ledger(system, layout, user)?;
    if ledger.databases.is_empty() && ledger.users.is_empty() {
        system.remove(&ledger_path(layout, user))?;
        return Ok(());
    }
    let found = find(system, layout, &ledger.databases, &ledger.users)?;
    let mut statements: Vec<Sql> = found
        .users
        .iter()
        .flat_map(|(u, hosts)| {
            hosts
                .keys()
                .map(move |h| Sql::new(format!("DROP USER IF EXISTS {}", account(u, h))))
        })
        .collect();
    statements.extend(
        ledger
            .databases
            .iter()
            .map(|d| Sql::new(format!("DROP DATABASE IF EXISTS {}", ident(d)))),
    );
    run(system, layout, &statements)?;
    kill_sessions(system, layout, &ledger.users)?;
    system.remove(&ledger_path(layout, user))?;
    tracing::info!(
        account = user,
        databases = ledger.databases.len(),
        users = ledger.users.len(),
        "the account's databases and database users are dropped: a final backup of them exists"
    );
    Ok(())
}

/// MariaDB's option file as the agent writes it: where it listens (`AGENT_DB_LISTEN`).
pub fn option_file(layout: &Layout) -> String {
    format!(
        "# Managed by enconf: where MariaDB listens (AGENT_DB_LISTEN). Do not edit: the agent\n\
         # rewrites this file. MariaDB reads it when it starts.\n[mariadbd]\nbind-address = {}\n",
        layout.db_listen
    )
}

/// Start-up on a db server: MariaDB's option file says `AGENT_DB_LISTEN` (written through the
/// executor when it differs, and only where MariaDB's configuration directory exists); a
/// running MariaDB that listens elsewhere is reported (it reads the file when restarted).
pub fn setup<S: System>(exec: &crate::executor::Executor<S>) -> Result<(), ApplyError> {
    let (system, layout) = (exec.system(), exec.layout());
    let path = &layout.mariadb_config;
    let wanted = option_file(layout).into_bytes();
    let dir_exists = match path.parent() {
        Some(dir) => system.modified_secs(dir)?.is_some(),
        None => false,
    };
    if dir_exists && system.read(path)?.as_deref() != Some(&wanted[..]) {
        let mut plan = crate::executor::Plan::default();
        plan.write(path.clone(), wanted, 0o644);
        exec.execute(plan)?;
        tracing::warn!(path = %path.display(), listen = %layout.db_listen, "MariaDB's listening address was written: restart MariaDB to apply it");
    }
    match run(system, layout, &[Sql::new("SELECT @@bind_address")]) {
        Ok(rows) => {
            // No row: nothing answered (the sandbox records statements and answers none).
            let running = rows
                .first()
                .and_then(|r| r.first())
                .and_then(|r| r.first().cloned().flatten());
            if let Some(running) = running
                && !running
                    .split(',')
                    .any(|a| a.trim() == layout.db_listen.to_string())
            {
                tracing::warn!(running = %running, configured = %layout.db_listen, "MariaDB does not listen where AGENT_DB_LISTEN says: restart it");
            }
        }
        Err(e) => tracing::warn!(error = %e, "MariaDB cannot be asked now"),
    }
    Ok(())
}

/// What each of `databases` takes on disk (data and indexes), by name; a database that does
/// not exist is absent, one without tables is 0.
pub fn sizes<S: System>(
    system: &S,
    layout: &Layout,
    databases: &[DbName],
) -> Result<BTreeMap<String, u64>, ApplyError> {
    if databases.is_empty() {
        return Ok(BTreeMap::new());
    }
    let names: Vec<String> = databases.iter().map(ToString::to_string).collect();
    let results = run(
        system,
        layout,
        &[
            Sql::with(
                format!(
                    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({})",
                    placeholders(names.len())
                ),
                names.iter().cloned(),
            ),
            Sql::with(
                format!(
                    "SELECT TABLE_SCHEMA, CAST(SUM(DATA_LENGTH + INDEX_LENGTH) AS UNSIGNED) FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ({}) GROUP BY TABLE_SCHEMA",
                    placeholders(names.len())
                ),
                names.iter().cloned(),
            ),
        ],
    )?;
    let mut out: BTreeMap<String, u64> = results
        .first()
        .map(|rows| column(rows, 0).map(|d| (d, 0)).collect())
        .unwrap_or_default();
    for row in results.get(1).into_iter().flatten() {
        if let [Some(db), Some(size)] = row.as_slice() {
            out.insert(db.clone(), size.parse().unwrap_or(0));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_what_would_end_the_quote() {
        assert_eq!(literal("shop_u"), "'shop_u'");
        assert_eq!(literal("a'b\\"), "'a''b\\\\'");
        assert_eq!(account("shop_u", "127.0.0.1"), "'shop_u'@'127.0.0.1'");
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
