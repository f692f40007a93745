//! What each role means for an account on the controller's side: the part of the account a
//! server serving the role is sent. The account flow ([`super::accounts`]) builds what one
//! server gets from the parts of the roles the account has there, in role order.
//!
//! Adding a role's controller side is adding a [`RolePart`] here (and, for its own API, a
//! module beside it); see ARCHITECTURE.md.

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

/// Roles whose part is the account itself (user name and domains): mail, db and backup until
/// their own parts exist (mail's mailboxes go through their own agent API).
#[derive(Debug)]
struct Base(Role);

impl RolePart for Base {
    fn role(&self) -> Role {
        self.0
    }

    fn add_part(&self, _account: &Account, _spec: &mut AccountSpec) {}
}

/// The dns role: the account's zones, whole (`zones` is filled by [`spec_for`] from the
/// store, where they live apart from the account).
#[derive(Debug)]
struct Dns;

impl RolePart for Dns {
    fn role(&self) -> Role {
        Role::Dns
    }

    fn add_part(&self, _account: &Account, _spec: &mut AccountSpec) {}
}

fn parts() -> [Box<dyn RolePart>; 5] {
    [
        Box::new(Web),
        Box::new(Base(Role::Mail)),
        Box::new(Dns),
        Box::new(Base(Role::Db)),
        Box::new(Base(Role::Backup)),
    ]
}

/// What a server serving `roles` of `account` is sent: the account's user name and domains,
/// those roles, each role's part, and (dns) `zones`, the account's zones as recorded.
pub(super) fn spec_for(account: &Account, roles: RoleSet, zones: &[ZoneData]) -> AccountSpec {
    let mut spec = AccountSpec {
        username: account.spec.username.clone(),
        domains: account.spec.domains.clone(),
        php_version: None,
        php: PhpSettings::default(),
        roles,
        zones: match roles.contains(Role::Dns) {
            true => zones.to_vec(),
            false => Vec::new(),
        },
    };
    for part in parts().iter().filter(|p| roles.contains(p.role())) {
        part.add_part(account, &mut spec);
    }
    spec
}
