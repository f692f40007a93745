//! PowerDNS (authoritative, gsqlite3 backend): the agent keeps each zone it serves as a zone
//! file (`AGENT_DNS_ZONES_DIR/<zone>.zone`, and the signing key beside it, `<zone>.key`,
//! 0600), written through the executor like any configuration, and [`sync`] makes PowerDNS
//! serve exactly what the file says:
//!
//! - `pdnsutil load-zone` replaces the zone's records in one backend transaction (or creates
//!   the zone); a missing file is `pdnsutil delete-zone`;
//! - the key file present and no key in PowerDNS: `import-zone-key-pem` (the same key on every
//!   dns server), then `rectify-zone`; no key file: the zone's keys are removed;
//! - `pdnsutil check-zone` must pass, or the apply fails and the journal puts the previous
//!   file back (and `sync` runs again on it);
//! - `pdns_control rediscover` (the running server's zone cache) and `purge <zone>$` (its
//!   packet cache), so the next query is answered from the new records.
//!
//! A sync reads only the files, so it is the same whether it goes forward or rolls back, and
//! the journal can run it again after a crash.

use std::path::PathBuf;

use enconf_core::domain::dns::{ZoneData, ZoneName, zone_file};

use crate::config::Layout;
use crate::executor::{ApplyError, Reload, rejected};
use crate::system::{System, SystemError};

/// The first line of each zone file: which account the zone belongs to.
const OWNER_PREFIX: &str = "; enconf account: ";

pub fn zone_path(layout: &Layout, zone: &ZoneName) -> PathBuf {
    layout.dns_zones_dir.join(format!("{zone}.zone"))
}

pub fn key_path(layout: &Layout, zone: &ZoneName) -> PathBuf {
    layout.dns_zones_dir.join(format!("{zone}.key"))
}

/// The reload that brings PowerDNS to the zone's files.
pub fn reload(zone: &ZoneName) -> Reload {
    Reload::Zone {
        zone: zone.to_string(),
    }
}

/// The zone file of `zone` for the account `user`.
pub fn zone_text(user: &str, zone: &ZoneData) -> String {
    format!(
        "{OWNER_PREFIX}{user}\n{}",
        zone_file(&zone.name, zone.serial, &zone.records)
    )
}

/// The account a zone file belongs to.
pub fn owner_of(text: &str) -> Option<&str> {
    text.lines().next()?.strip_prefix(OWNER_PREFIX)
}

/// The serial of a zone file's SOA.
pub fn serial_of(text: &str) -> Option<u32> {
    let soa = text.lines().find(|l| l.contains(" IN SOA "))?;
    soa.split_ascii_whitespace().nth(6)?.parse().ok()
}

fn pdnsutil(system: &dyn System, layout: &Layout, args: &[&str]) -> Result<String, SystemError> {
    let dir = format!("--config-dir={}", layout.pdns_config_dir.display());
    let mut all = vec![dir.as_str()];
    all.extend_from_slice(args);
    system.run(&layout.pdnsutil_bin, &all)
}

/// The ids of the zone's DNSSEC keys in PowerDNS.
fn key_ids(system: &dyn System, layout: &Layout, zone: &str) -> Result<Vec<String>, ApplyError> {
    let listed = pdnsutil(system, layout, &["list-keys", zone])
        .map_err(|e| rejected("pdnsutil list-keys", e))?;
    Ok(listed
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_ascii_whitespace().collect();
            (cols.first().map(|c| c.trim_end_matches('.')) == Some(zone))
                .then(|| cols.get(6).map(|id| (*id).to_owned()))
                .flatten()
        })
        .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
        .collect())
}

/// Makes PowerDNS serve `zone` as its files say (see the module documentation).
pub fn sync(system: &dyn System, layout: &Layout, zone: &str) -> Result<(), ApplyError> {
    // The name comes from the journal too: checked before it reaches a command.
    let zone_name = ZoneName::parse(zone)
        .map_err(|r| ApplyError::State(format!("zone {zone:?} in a reload: {r}")))?;
    let file = zone_path(layout, &zone_name);
    let key = key_path(layout, &zone_name);
    let file_arg = file.display().to_string();
    match system.read(&file)? {
        Some(_) => {
            pdnsutil(system, layout, &["load-zone", zone, &file_arg])
                .map_err(|e| rejected("pdnsutil load-zone", e))?;
            let keys = key_ids(system, layout, zone)?;
            if system.read(&key)?.is_some() {
                if keys.is_empty() {
                    let key_arg = key.display().to_string();
                    pdnsutil(
                        system,
                        layout,
                        &["import-zone-key-pem", zone, &key_arg, "13", "ksk"],
                    )
                    .map_err(|e| rejected("pdnsutil import-zone-key-pem", e))?;
                }
                pdnsutil(system, layout, &["rectify-zone", zone])
                    .map_err(|e| rejected("pdnsutil rectify-zone", e))?;
            } else {
                for id in &keys {
                    pdnsutil(system, layout, &["remove-zone-key", zone, id])
                        .map_err(|e| rejected("pdnsutil remove-zone-key", e))?;
                }
            }
            pdnsutil(system, layout, &["check-zone", zone])
                .map_err(|e| rejected("pdnsutil check-zone", e))?;
        }
        None => match pdnsutil(system, layout, &["delete-zone", zone]) {
            Ok(_) => {}
            Err(SystemError::Command { output, .. }) if output.contains("not found") => {}
            Err(e) => return Err(rejected("pdnsutil delete-zone", e)),
        },
    }
    let dir = format!("--config-dir={}", layout.pdns_config_dir.display());
    let purge = format!("{zone}$");
    for args in [
        vec![dir.as_str(), "rediscover"],
        vec![dir.as_str(), "purge", &purge],
    ] {
        // The records are in the backend: a server that is not running serves them when it
        // starts. Said, not failed.
        if let Err(e) = system.run(&layout.pdns_control_bin, &args) {
            tracing::warn!(%zone, error = %e, "PowerDNS's caches were not refreshed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use enconf_core::domain::dns::{RecordData, RecordName, RecordSpec};

    #[test]
    fn a_zone_file_names_its_account_and_serial() {
        let zone = ZoneData {
            name: ZoneName::parse("shop.example").unwrap(),
            serial: 2026120203,
            records: vec![RecordSpec {
                name: RecordName::apex(),
                ttl: 3600,
                data: RecordData::Ns {
                    host: "ns1.host.example".parse().unwrap(),
                },
            }],
            key: None,
        };
        let text = zone_text("shop", &zone);
        assert_eq!(owner_of(&text), Some("shop"));
        assert_eq!(serial_of(&text), Some(2026120203));
    }
}
