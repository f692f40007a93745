//! What each role means for an account on the controller's side: the part of the account a
//! server serving the role is sent. The account flow ([`super::accounts`]) builds what one
//! server gets from the parts of the roles the account has there, in role order.
//!
//! Adding a role's controller side is adding a [`RolePart`] here (and, for its own API, a
//! module beside it); see ARCHITECTURE.md.

use super::{Controller, Result};
use crate::domain::db::DbSpec;
use crate::domain::dns::ZoneData;
use crate::domain::{Account, AccountSpec, PhpSettings, Role, RoleSet};

/// One role's part of what a server is sent for an account.
pub(super) trait RolePart: Send + Sync + std::fmt::Debug {
    fn role(&self) -> Role;

    /// Adds the role's part of `account` to `spec`, what a server serving the role gets.
    fn add_part(&self, account: &Account, spec: &mut AccountSpec);
}

/// The web role: the account's PHP version and limits.
#[derive(Debug)]
struct Web;

impl RolePart for Web {
    fn role(&self) -> Role {
        Role::Web
    }

    fn add_part(&self, account: &Account, spec: &mut AccountSpec) {
        spec.php_version = account.spec.php_version;
        spec.php = account.spec.php;
    }
}

/// Roles whose part is the account itself (user name and domains): mail (its mailboxes go
/// through their own agent API) and backup; and dns and db, whose zones and databases live in
/// the store apart from the account and are filled in by [`spec_for`] from [`Parts`].
#[derive(Debug)]
struct Base(Role);

impl RolePart for Base {
    fn role(&self) -> Role {
        self.0
    }

    fn add_part(&self, _account: &Account, _spec: &mut AccountSpec) {}
}

fn role_parts() -> [Box<dyn RolePart>; 5] {
    [
        Box::new(Web),
        Box::new(Base(Role::Mail)),
        Box::new(Base(Role::Dns)),
        Box::new(Base(Role::Db)),
        Box::new(Base(Role::Backup)),
    ]
}

/// What the roles that live apart from the account record hold for it: its zones (dns), its
/// databases and users (db), as recorded, and its repository's access hash (backup).
#[derive(Debug, Clone, Default)]
pub(super) struct Parts {
    pub zones: Vec<ZoneData>,
    pub db: DbSpec,
    pub backup: Option<crate::domain::backup::BackupSpec>,
}

impl Controller {
    /// What of `account`'s zones and databases a server serving `roles` of it is sent (only
    /// what those roles need is read from the store).
    pub(super) async fn parts_of(&self, account: &Account, roles: RoleSet) -> Result<Parts> {
        Ok(Parts {
            zones: match roles.contains(Role::Dns) {
                true => self.zones_of(account).await?,
                false => Vec::new(),
            },
            db: match roles.contains(Role::Db) {
                true => self.db_spec(account).await?,
                false => DbSpec::default(),
            },
            backup: match roles.contains(Role::Backup) {
                true => Some(self.backup_spec(account).await?),
                false => None,
            },
        })
    }
}

/// What a server serving `roles` of `account` is sent: the account's user name and domains,
/// those roles, each role's part, and what `parts` holds for the roles among them.
pub(super) fn spec_for(account: &Account, roles: RoleSet, parts: &Parts) -> AccountSpec {
    let mut spec = AccountSpec {
        username: account.spec.username.clone(),
        domains: account.spec.domains.clone(),
        php_version: None,
        php: PhpSettings::default(),
        roles,
        zones: match roles.contains(Role::Dns) {
            true => parts.zones.clone(),
            false => Vec::new(),
        },
        db: match roles.contains(Role::Db) {
            true => parts.db.clone(),
            false => DbSpec::default(),
        },
        backup: match roles.contains(Role::Backup) {
            true => parts.backup.clone(),
            false => None,
        },
    };
    for part in role_parts().iter().filter(|p| roles.contains(p.role())) {
        part.add_part(account, &mut spec);
    }
    spec
}
