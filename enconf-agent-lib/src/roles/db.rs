//! The db role: the account's databases and database users on this server's MariaDB.
//!
//! The controller sends them whole with the account (names, password hashes, grants, the
//! hosts each user may connect from). The account's record is the plan's file; its reload
//! ([`mariadb::sync`]) makes MariaDB hold what it says, so a rollback or a crash recovery
//! (the old record back) is the same operation. Before anything changes, a name the account
//! would take that exists on MariaDB but is not the account's is refused (`409`), and so is a
//! grant for another host when MariaDB listens only on loopback (`AGENT_DB_LISTEN`).
//!
//! Removing the account (or the role) here drops nothing: its databases are kept and its users
//! locked until a final backup of them exists ([`mariadb::lock`]).

use enconf_core::domain::{AccountSpec, Role};

use super::{AccountRole, DataFate, Installed, RoleStatus, status_of};
use crate::executor::{ApplyError, Executor, Plan};
use crate::services::mariadb;
use crate::system::System;

/// The db role.
#[derive(Debug, Default)]
pub struct Db;

impl<S: System> AccountRole<S> for Db {
    fn role(&self) -> Role {
        Role::Db
    }

    fn plan_put(
        &self,
        exec: &Executor<S>,
        account: &AccountSpec,
        installed: Option<&Installed>,
        plan: &mut Plan,
    ) -> Result<bool, ApplyError> {
        let had = installed
            .filter(|i| i.spec.roles.contains(Role::Db))
            .map(|i| &i.spec.db);
        if had.unwrap_or(&Default::default()) == &account.db {
            return Ok(false);
        }
        account
            .db
            .check(&account.username, "db.")
            .map_err(ApplyError::Invalid)?;
        mariadb::check_hosts(exec.layout(), &account.db)?;
        mariadb::conflicts(
            exec.system(),
            exec.layout(),
            account.username.as_str(),
            &account.db,
        )?;
        plan.reload(mariadb::reload(account.username.as_str()));
        Ok(true)
    }

    fn plan_remove(
        &self,
        _exec: &Executor<S>,
        _installed: &Installed,
        _plan: &mut Plan,
    ) -> Result<(), ApplyError> {
        Ok(())
    }

    fn removed(
        &self,
        exec: &Executor<S>,
        installed: &Installed,
        data: DataFate,
    ) -> Result<(), ApplyError> {
        let user = installed.spec.username.as_str();
        match data {
            DataFate::Keep => mariadb::lock(exec.system(), exec.layout(), user),
            DataFate::Remove => mariadb::drop_all(exec.system(), exec.layout(), user),
        }
    }

    fn status(&self, exec: &Executor<S>) -> RoleStatus {
        status_of(exec, Role::Db)
    }
}
