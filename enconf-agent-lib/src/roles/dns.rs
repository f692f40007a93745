//! The dns role: the account's zones, each served whole by this server's PowerDNS.
//!
//! The controller sends every zone of the account whole (records, serial, signing key), so
//! each dns server serves the same answers without zone transfers between them. Per zone the
//! agent writes a zone file (and the key, 0600) through the executor; the zone's reload
//! ([`pdns::sync`]) loads it into PowerDNS, signs it, and runs `pdnsutil check-zone` before the
//! answer. A zone file names its account: a zone of another account on this server is refused
//! (`409`), never overwritten.

use enconf_core::domain::dns::{ZoneData, ZoneName};
use enconf_core::domain::{AccountSpec, Role};

use super::{AccountRole, Installed, RoleStatus, status_of};
use crate::executor::{ApplyError, Executor, Plan};
use crate::services::pdns;
use crate::system::System;

/// The dns role.
#[derive(Debug, Default)]
pub struct Dns;

/// Adds to `plan` what makes `zone` as `user` has it; `false` when it already is.
fn plan_zone<S: System>(
    exec: &Executor<S>,
    user: &str,
    zone: &ZoneData,
    plan: &mut Plan,
) -> Result<bool, ApplyError> {
    let layout = exec.layout();
    let path = pdns::zone_path(layout, &zone.name);
    let text = pdns::zone_text(user, zone);
    let live = exec.system().read(&path)?;
    if let Some(live) = &live
        && let Some(owner) = pdns::owner_of(&String::from_utf8_lossy(live))
        && owner != user
    {
        return Err(ApplyError::ZoneTaken {
            zone: zone.name.to_string(),
            owner: owner.to_owned(),
        });
    }
    let mut changed = false;
    if live.as_deref() != Some(text.as_bytes()) {
        plan.write(path, text.into_bytes(), 0o644);
        changed = true;
    }
    let key = pdns::key_path(layout, &zone.name);
    let live_key = exec.system().read(&key)?;
    let want = zone.key.as_ref().map(|k| k.pem().as_bytes());
    if live_key.as_deref() != want {
        match want {
            Some(pem) => plan.write(key, pem.to_vec(), 0o600),
            None => plan.remove(key),
        }
        changed = true;
    }
    if changed {
        plan.dir((
            layout.dns_zones_dir.clone(),
            "root".into(),
            "root".into(),
            0o700,
        ));
        plan.reload(pdns::reload(&zone.name));
    }
    Ok(changed)
}

/// Adds to `plan` the removal of a zone's files (when this account's).
fn plan_gone<S: System>(
    exec: &Executor<S>,
    user: &str,
    zone: &ZoneName,
    plan: &mut Plan,
) -> Result<(), ApplyError> {
    let layout = exec.layout();
    let path = pdns::zone_path(layout, zone);
    match exec.system().read(&path)? {
        Some(live) if pdns::owner_of(&String::from_utf8_lossy(&live)) == Some(user) => {
            plan.remove(path);
            if exec.system().read(&pdns::key_path(layout, zone))?.is_some() {
                plan.remove(pdns::key_path(layout, zone));
            }
            plan.reload(pdns::reload(zone));
        }
        _ => {}
    }
    Ok(())
}

impl<S: System> AccountRole<S> for Dns {
    fn role(&self) -> Role {
        Role::Dns
    }

    fn plan_put(
        &self,
        exec: &Executor<S>,
        account: &AccountSpec,
        installed: Option<&Installed>,
        plan: &mut Plan,
    ) -> Result<bool, ApplyError> {
        let user = account.username.as_str();
        let mut changed = false;
        for zone in &account.zones {
            changed |= plan_zone(exec, user, zone, plan)?;
        }
        if let Some(old) = installed {
            for zone in old
                .spec
                .zones
                .iter()
                .filter(|z| !account.zones.iter().any(|n| n.name == z.name))
            {
                plan_gone(exec, user, &zone.name, plan)?;
                changed = true;
            }
        }
        Ok(changed)
    }

    fn plan_remove(
        &self,
        exec: &Executor<S>,
        installed: &Installed,
        plan: &mut Plan,
    ) -> Result<(), ApplyError> {
        for zone in &installed.spec.zones {
            plan_gone(exec, installed.spec.username.as_str(), &zone.name, plan)?;
        }
        Ok(())
    }

    fn status(&self, exec: &Executor<S>) -> RoleStatus {
        status_of(exec, Role::Dns)
    }
}

/// The serial each zone of an installed account is served with, read from its zone file.
pub fn served<S: System>(
    exec: &Executor<S>,
    installed: &Installed,
) -> Result<std::collections::BTreeMap<String, u32>, ApplyError> {
    let mut out = std::collections::BTreeMap::new();
    for zone in &installed.spec.zones {
        if let Some(text) = exec
            .system()
            .read(&pdns::zone_path(exec.layout(), &zone.name))?
            && let Some(serial) = pdns::serial_of(&String::from_utf8_lossy(&text))
        {
            out.insert(zone.name.to_string(), serial);
        }
    }
    Ok(out)
}
