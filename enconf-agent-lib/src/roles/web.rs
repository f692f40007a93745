//! The web role: an account's system user, its directories, its PHP-FPM pool and its nginx
//! server block. The user is the agent's own (see `crate::owners`): one that exists on the
//! machine without being the agent's is refused.

use enconf_core::domain::{AccountSpec, PhpVersion, Role, UserName};

use super::{AccountRole, DataFate, Installed, RoleStatus, status_of};
use crate::config::Layout;
use crate::executor::{ApplyError, Executor, Plan};
use crate::owners::Claim;
use crate::render::{AccountPaths, Renderer};
use crate::services::nginx::{self, NginxCheck};
use crate::services::php_fpm::{self, FpmCheck};
use crate::system::System;

/// The web role, with its templates filled in once.
#[derive(Debug)]
pub struct Web {
    renderer: Renderer,
}

impl Web {
    pub fn new(layout: &Layout) -> Self {
        Self {
            renderer: Renderer::new(layout),
        }
    }

    /// The PHP version an account's pool runs.
    pub fn php_version(&self, spec: &AccountSpec) -> PhpVersion {
        self.renderer.php_version(spec)
    }
}

/// The PHP versions this server offers: the default, and every version whose PHP-FPM program
/// is installed (`AGENT_PHP_FPM_BIN`), in order.
pub fn php_versions<S: System>(exec: &Executor<S>) -> Vec<PhpVersion> {
    let layout = exec.layout();
    let (dir, prefix, suffix) = layout.php_fpm_bin_pattern();
    let mut versions: Vec<PhpVersion> = exec
        .system()
        .list(&dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|name| {
            let middle = name.strip_prefix(&prefix)?.strip_suffix(&suffix)?;
            PhpVersion::parse(middle).ok()
        })
        .collect();
    if !versions.contains(&layout.php_default_version) {
        versions.push(layout.php_default_version);
    }
    versions.sort_by_key(|v| (v.major(), v.minor()));
    versions.dedup();
    versions
}

/// Whether this server offers PHP `v` (one of [`php_versions`]): one look at its program, not
/// a listing of their directory (which, per account, was a tenth of a batch's planning).
fn offers<S: System>(exec: &Executor<S>, v: PhpVersion) -> Result<bool, ApplyError> {
    let layout = exec.layout();
    Ok(v == layout.php_default_version
        || exec
            .system()
            .modified_secs(&layout.php_fpm_bin(v))?
            .is_some())
}

impl<S: System> AccountRole<S> for Web {
    fn role(&self) -> Role {
        Role::Web
    }

    fn plan_put(
        &self,
        exec: &Executor<S>,
        spec: &AccountSpec,
        installed: Option<&Installed>,
        plan: &mut Plan,
    ) -> Result<bool, ApplyError> {
        let layout = exec.layout();
        let php = self.php_version(spec);
        if !offers(exec, php)? {
            let offered = php_versions(exec);
            return Err(ApplyError::Invalid(
                enconf_core::domain::Rule::PhpNotOffered(
                    offered
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                )
                .at("php_version"),
            ));
        }
        let paths = AccountPaths::new(layout, &spec.username, php);
        let mut vhost = String::with_capacity(1024);
        self.renderer.vhost_into(&mut vhost, spec);
        let mut pool = String::with_capacity(1024);
        self.renderer.pool_into(&mut pool, spec);
        let (vhost, pool) = (vhost.into_bytes(), pool.into_bytes());
        let user_exists = match exec.owners().claim(&spec.username)? {
            Claim::Free => false,
            Claim::Ours(_) => true,
            Claim::Foreign(reason) => {
                return Err(ApplyError::UserTaken {
                    user: spec.username.clone(),
                    reason,
                });
            }
        };
        let system = exec.system();
        let same = user_exists
            && installed.is_some_and(|i| i.php_version == php && i.spec.roles.contains(Role::Web))
            && system.read(&paths.vhost)?.as_deref() == Some(&vhost[..])
            && system.read(&paths.pool)?.as_deref() == Some(&pool[..]);
        if same {
            return Ok(false);
        }
        if let Some(old) = installed
            && old.spec.roles.contains(Role::Web)
            && old.php_version != php
        {
            let old_paths = AccountPaths::new(layout, &spec.username, old.php_version);
            plan.remove(old_paths.pool);
            plan.reload(php_fpm::reload(layout, old.php_version));
        }
        if !user_exists {
            plan.add_user(spec.username.clone(), paths.home.clone());
        }
        for dir in paths.directories(&spec.username) {
            plan.dir(dir);
        }
        plan.check(NginxCheck {
            vhosts: [paths.vhost.clone()].into(),
        });
        plan.check(FpmCheck {
            version: php,
            pools: vec![paths.pool.clone()],
        });
        plan.write(paths.vhost, vhost, 0o644);
        plan.write(paths.pool, pool, 0o644);
        plan.reload(nginx::reload(layout));
        plan.reload(php_fpm::reload(layout, php));
        Ok(true)
    }

    fn plan_remove(
        &self,
        exec: &Executor<S>,
        installed: &Installed,
        plan: &mut Plan,
    ) -> Result<(), ApplyError> {
        let layout = exec.layout();
        let paths = AccountPaths::new(layout, &installed.spec.username, installed.php_version);
        // A removal only takes server blocks and pools away: nothing to validate.
        plan.remove(paths.vhost);
        plan.reload(nginx::reload(layout));
        plan_freeze(layout, installed, plan);
        Ok(())
    }

    fn removed(
        &self,
        exec: &Executor<S>,
        installed: &Installed,
        _data: DataFate,
    ) -> Result<(), ApplyError> {
        let user = &installed.spec.username;
        let owners = exec.owners();
        match owners.claim(user)? {
            Claim::Ours(found) => exec.system().remove_user(user, &found.home)?,
            Claim::Free => {}
            Claim::Foreign(reason) => {
                tracing::warn!(%user, "{reason}: the user, its group and its home are left alone");
            }
        }
        owners.forget(user)?;
        Ok(())
    }

    fn status(&self, exec: &Executor<S>) -> RoleStatus {
        status_of(exec, Role::Web)
    }
}

/// Adds to `plan` what stops the site's PHP (its pool goes; the server block stays, so its
/// static files are still served and PHP requests fail): no request can write to the site.
/// The next put of the account brings the pool back.
pub fn plan_freeze(layout: &Layout, installed: &Installed, plan: &mut Plan) {
    let paths = AccountPaths::new(layout, &installed.spec.username, installed.php_version);
    plan.remove(paths.pool);
    plan.reload(php_fpm::reload(layout, installed.php_version));
}

impl AccountPaths {
    /// The directories of an account: (path, owner, group, mode). The home is traversable by
    /// the web server; `public` is readable by it; `tmp` and `logs` are the account's own.
    fn directories(&self, user: &UserName) -> Vec<crate::executor::Dir> {
        let u = user.to_string();
        vec![
            (self.home.clone(), u.clone(), u.clone(), 0o711),
            (self.docroot.clone(), u.clone(), u.clone(), 0o755),
            (self.tmp.clone(), u.clone(), u.clone(), 0o700),
            (self.logs.clone(), u.clone(), u.clone(), 0o750),
        ]
    }
}
