//! The dns role of an account: its zones (one per registrable domain), kept in the store and
//! served whole by every dns server of the account, each through its own agent.
//!
//! - **Records enconf makes** (`managed`): NS (the dns servers), A/AAAA of each domain (the web
//!   server's addresses), MX to the mail server's mail hostname, SPF and DMARC TXT, and the
//!   DKIM TXT the mail server reports. They are computed again when the account is created,
//!   changed or moved, and the serial moves only when they changed.
//! - **The account's own records** are checked against the zone in the store's transaction.
//! - **A change reaches every dns server or none.** All of them must be online first (`503`
//!   naming the one that is not); the change is recorded, sent to each; when one refuses or
//!   cannot be reached, the record is put back (with a newer serial) and the servers already
//!   changed get the zone as it was.
//! - **DNSSEC**: one ECDSA P-256 key per zone, made here, sealed in the store and sent to every
//!   dns server (so they all serve the same DNSKEY and one DS fits all); the DS is computed
//!   here from the key.

use time::OffsetDateTime;

use super::roles::{Parts, spec_for};
use super::{Controller, ControllerError, Result};
use crate::domain::dns::{
    RecordData, RecordName, RecordSpec, ZoneData, ZoneKey, ZoneName, ds_record, split_txt,
};
use crate::domain::{Account, AccountId, DomainName, Role, Rule, Server};
use crate::protocol::dns::{RecordInput, RecordView, ZonePatch, ZoneView};
use crate::protocol::mail::DkimRecord;
use crate::store::{ZoneRow, ZoneWithKey};
use crate::transport::{AgentClient, AgentEndpoint};

/// The TTL of the records enconf makes.
const MANAGED_TTL: u32 = 3600;
/// SPF of a domain whose mail the account's servers send.
const SPF: &str = "v=spf1 a mx ~all";
/// DMARC: report-free monitoring, so mail sent by other services the customer uses is not
/// lost before they have set up their own records.
const DMARC: &str = "v=DMARC1; p=none";

/// Today as `YYYYMMDD`, the base of zone serials.
pub(super) fn today() -> u32 {
    let d = OffsetDateTime::now_utc().date();
    let year = u32::try_from(d.year()).unwrap_or(0);
    year * 10_000 + u32::from(u8::from(d.month())) * 100 + u32::from(d.day())
}

/// Parses a zone named in a path.
pub fn path_zone(zone: &str) -> Result<ZoneName> {
    ZoneName::parse(zone).map_err(|r| r.at("zone").into())
}

/// A new signing key: ECDSA P-256 (DNSSEC algorithm 13), PKCS#8 PEM.
fn new_key() -> Result<ZoneKey> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .map_err(|_| ControllerError::Internal("making a zone key failed".into()))?;
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    ZoneKey::parse(&pem).map_err(|e| ControllerError::Internal(format!("zone key: {e}")))
}

/// The DS records of a zone signed with `key_pem`.
fn ds_of(zone: &ZoneName, key_pem: Option<&str>) -> Vec<String> {
    let Some(pem) = key_pem else {
        return Vec::new();
    };
    let public = pem::parse(pem).ok().and_then(|p| {
        let rng = ring::rand::SystemRandom::new();
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            p.contents(),
            &rng,
        )
        .ok()
        .map(|k| ring::signature::KeyPair::public_key(&k).as_ref().to_vec())
    });
    public
        .and_then(|p| ds_record(zone, &p))
        .into_iter()
        .collect()
}

fn record(name: RecordName, data: RecordData) -> RecordSpec {
    RecordSpec {
        name,
        ttl: MANAGED_TTL,
        data,
    }
}

fn txt(text: &str) -> RecordData {
    RecordData::Txt {
        strings: split_txt(text),
    }
}

/// `label` put before `name` (`_dmarc` + `www` → `_dmarc.www`; before the apex: `_dmarc`).
fn below(label: &str, name: &RecordName, zone: &ZoneName) -> Option<RecordName> {
    let joined = match name.is_apex() {
        true => label.to_owned(),
        false => format!("{label}.{name}"),
    };
    RecordName::parse(&joined, zone).ok()
}

/// What enconf makes in the zone of an account, given its servers.
#[derive(Debug, Default)]
struct Place {
    ns: Vec<DomainName>,
    ipv4: Option<std::net::Ipv4Addr>,
    ipv6: Option<std::net::Ipv6Addr>,
    mail_host: Option<DomainName>,
}

fn managed_records(
    zone: &ZoneName,
    account: &Account,
    place: &Place,
    dkim: &[(RecordName, String)],
) -> Vec<RecordSpec> {
    let mut out: Vec<RecordSpec> = place
        .ns
        .iter()
        .map(|h| record(RecordName::apex(), RecordData::Ns { host: h.clone() }))
        .collect();
    for domain in account.spec.domains.iter() {
        let Some(name) = zone.relative(domain) else {
            continue;
        };
        if account.spec.roles.contains(Role::Web) {
            if let Some(address) = place.ipv4 {
                out.push(record(name.clone(), RecordData::A { address }));
            }
            if let Some(address) = place.ipv6 {
                out.push(record(name.clone(), RecordData::Aaaa { address }));
            }
        }
        if let Some(host) = &place.mail_host {
            out.push(record(
                name.clone(),
                RecordData::Mx {
                    priority: 10,
                    host: host.clone(),
                },
            ));
            out.push(record(name.clone(), txt(SPF)));
            if let Some(dmarc) = below("_dmarc", &name, zone) {
                out.push(record(dmarc, txt(DMARC)));
            }
        }
    }
    for (name, value) in dkim {
        out.push(record(name.clone(), txt(value)));
    }
    out
}

/// A zone's records and key as a dns server is sent them.
fn zone_data(z: &ZoneWithKey) -> ZoneData {
    ZoneData {
        name: z.zone.name.clone(),
        serial: z.zone.serial,
        records: z.zone.all().cloned().collect(),
        key: z.key_pem.as_deref().and_then(|k| ZoneKey::parse(k).ok()),
    }
}

impl Controller {
    /// The zones of `account` as its dns servers are sent them (none without the dns role).
    pub(super) async fn zones_of(&self, account: &Account) -> Result<Vec<ZoneData>> {
        if !account.spec.roles.contains(Role::Dns) {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .zones(account.id)
            .await?
            .iter()
            .map(zone_data)
            .collect())
    }

    /// Computes the records enconf makes in each zone of `account` and records them. `dkim`:
    /// the DKIM records of its mail domains as the mail server reports them (`None`: keep the
    /// ones the zones have). `true` when a zone changed.
    pub(super) async fn refresh_managed(
        &self,
        account: &Account,
        dkim: Option<&[DkimRecord]>,
    ) -> Result<bool> {
        if !account.spec.roles.contains(Role::Dns) {
            return Ok(false);
        }
        let mut place = Place::default();
        for &id in account.servers.of(Role::Dns) {
            place.ns.push(self.store.server(id).await?.spec.hostname);
        }
        if let Some(id) = account.servers.one(Role::Web) {
            let web = self.store.server(id).await?;
            place.ipv4 = web.ipv4();
            place.ipv6 = web.ipv6();
        }
        if let Some(id) = account.servers.one(Role::Mail) {
            let mail = self.store.server(id).await?;
            place.mail_host = Some(mail.spec.mail_hostname.unwrap_or(mail.spec.hostname));
        }
        let mut changed = false;
        for zone in self.store.zones(account.id).await? {
            let name = &zone.zone.name;
            let dkim_records: Vec<(RecordName, String)> = match dkim {
                Some(list) => list
                    .iter()
                    .filter_map(|d| {
                        let owner = RecordName::parse(&format!("{}.", d.name), name).ok()?;
                        Some((owner, d.value.clone()))
                    })
                    .collect(),
                None => zone
                    .zone
                    .managed
                    .iter()
                    .filter(|r| r.name.as_str().contains("._domainkey"))
                    .filter_map(|r| match &r.data {
                        RecordData::Txt { strings } => Some((r.name.clone(), strings.concat())),
                        _ => None,
                    })
                    .collect(),
            };
            let managed = managed_records(name, account, &place, &dkim_records);
            let row = self
                .store
                .set_managed(account.id, name, managed, today())
                .await?;
            changed |= row.serial != zone.zone.serial;
        }
        Ok(changed)
    }

    /// After the account's mail domains may have changed: the mail server's DKIM records into
    /// the zones, sent to the dns servers when that changed them. Best effort: logged when it
    /// cannot be done now (the zone shows `in_sync: false` until it is).
    pub(super) async fn follow_mail(&self, account: &Account) {
        if !account.spec.roles.contains(Role::Dns) {
            return;
        }
        let dkim = match account.servers.one(Role::Mail) {
            None => Some(Vec::new()),
            Some(id) => match self.store.server(id).await {
                Ok(server) => {
                    let endpoint = AgentEndpoint::from(&server);
                    let client = AgentClient::new(&*self.transport, &endpoint);
                    match client.dkim(&account.spec.username).await {
                        Ok(list) => Some(list),
                        Err(e) => {
                            tracing::warn!(account = %account.id, server = %id, error = %e, "the DKIM records could not be read; the zones keep theirs");
                            None
                        }
                    }
                }
                Err(_) => None,
            },
        };
        let outcome = async {
            if self.refresh_managed(account, dkim.as_deref()).await? {
                self.push_zones(account.id).await?;
            }
            Ok::<(), ControllerError>(())
        }
        .await;
        if let Err(e) = outcome {
            tracing::warn!(account = %account.id, error = %e, "the zones could not follow the account; a reconciliation of its dns servers brings them up to date");
        }
    }

    /// The account's dns servers, every one online (`503` naming the first that is not).
    async fn dns_servers(&self, account: &Account) -> Result<Vec<Server>> {
        let mut out = Vec::new();
        for &id in account.servers.of(Role::Dns) {
            let server = self.store.server(id).await?;
            Self::require_online(&server)?;
            out.push(server);
        }
        Ok(out)
    }

    /// Sends the account's zones, as recorded, to every dns server of the account (each gets
    /// the account with the roles it serves for it). On the first failure, returns the
    /// servers already done with the error.
    async fn send_zones(
        &self,
        account: &Account,
        parts: &Parts,
        servers: &[Server],
    ) -> std::result::Result<(), (Vec<usize>, usize, crate::transport::TransportError)> {
        let mut done = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            let endpoint = AgentEndpoint::from(server);
            let client = AgentClient::new(&*self.transport, &endpoint);
            let spec = spec_for(account, account.servers.roles_on(server.id), parts);
            if let Err(e) = client.put_account(&spec).await {
                if e.is_offline() {
                    self.mark_unreachable(server, &e).await;
                }
                return Err((done, i, e));
            }
            done.push(i);
        }
        Ok(())
    }

    /// Sends the account's zones to all its dns servers (all online first).
    pub(super) async fn push_zones(&self, id: AccountId) -> Result<()> {
        let account = self.store.account(id).await?;
        let servers = self.dns_servers(&account).await?;
        let parts = self.parts_of(&account, account.spec.roles).await?;
        self.send_zones(&account, &parts, &servers)
            .await
            .map_err(|(_, i, e)| {
                let server = servers.get(i).map_or(crate::domain::ServerId(0), |s| s.id);
                Self::agent_error(server, e)
            })
    }

    /// Changes one zone of the account through `change` (a store write) and sends it to every
    /// dns server, or to none (see the module documentation).
    async fn change_zone(
        &self,
        id: AccountId,
        zone: &ZoneName,
        change: impl AsyncFnOnce() -> std::result::Result<ZoneRow, crate::store::StoreError>,
    ) -> Result<ZoneRow> {
        let account = self.store.account(id).await?;
        if !account.spec.roles.contains(Role::Dns) {
            return Err(Rule::NoDnsRole.at("zone").into());
        }
        let servers = self.dns_servers(&account).await?;
        let before = self
            .store
            .zones(id)
            .await?
            .into_iter()
            .find(|z| &z.zone.name == zone);
        let row = change().await?;
        let parts = self.parts_of(&account, account.spec.roles).await?;
        if let Err((done, failed, e)) = self.send_zones(&account, &parts, &servers).await {
            tracing::warn!(account = %id, %zone, error = %e, "a zone change did not reach every dns server; it is undone");
            if let Some(before) = before
                && let Err(store) = self.store.restore_zone(before, today()).await
            {
                tracing::error!(account = %id, error = %store, "could not put the zone back");
            }
            let mut undo: Vec<Server> = done
                .iter()
                .filter_map(|i| servers.get(*i).cloned())
                .collect();
            if e.maybe_applied()
                && let Some(s) = servers.get(failed)
            {
                undo.push(s.clone());
            }
            let restored = self
                .parts_of(&account, account.spec.roles)
                .await
                .unwrap_or(parts);
            if !undo.is_empty()
                && let Err((_, _, again)) = self.send_zones(&account, &restored, &undo).await
            {
                tracing::error!(account = %id, error = %again, "could not put a refused zone change back; the next reconciliation reports it");
            }
            let server = servers
                .get(failed)
                .map_or(crate::domain::ServerId(0), |s| s.id);
            return Err(Self::agent_error(server, e));
        }
        Ok(row)
    }

    /// Whether every dns server of the account serves each zone with its recorded serial.
    async fn served_serials(
        &self,
        account: &Account,
    ) -> Vec<std::collections::BTreeMap<String, u32>> {
        let mut out = Vec::new();
        for &id in account.servers.of(Role::Dns) {
            let Ok(server) = self.store.server(id).await else {
                out.push(Default::default());
                continue;
            };
            if !server.health.reachable {
                out.push(Default::default());
                continue;
            }
            let endpoint = AgentEndpoint::from(&server);
            let client = AgentClient::new(&*self.transport, &endpoint);
            match client.dns(&account.spec.username).await {
                Ok(z) => out.push(z.zones),
                Err(e) => {
                    tracing::warn!(server = %id, error = %e, "a dns server did not say what it serves");
                    out.push(Default::default());
                }
            }
        }
        out
    }

    fn zone_view(
        account: &Account,
        z: &ZoneWithKey,
        served: &[std::collections::BTreeMap<String, u32>],
        records: bool,
    ) -> ZoneView {
        let name = z.zone.name.to_string();
        ZoneView {
            serial: z.zone.serial,
            dnssec: z.zone.dnssec(),
            ds: ds_of(&z.zone.name, z.key_pem.as_deref()),
            servers: account.servers.of(Role::Dns).to_vec(),
            in_sync: served.iter().all(|s| s.get(&name) == Some(&z.zone.serial)),
            records: records.then(|| {
                z.zone
                    .managed
                    .iter()
                    .map(|r| RecordView::new(0, r, true))
                    .chain(z.zone.records.iter().map(RecordView::from))
                    .collect()
            }),
            name,
        }
    }

    async fn dns_account(&self, id: AccountId) -> Result<Account> {
        let account = self.store.account(id).await?;
        if !account.spec.roles.contains(Role::Dns) {
            return Err(Rule::NoDnsRole.at("zone").into());
        }
        Ok(account)
    }

    /// The account's zones.
    pub async fn dns_zones(&self, id: AccountId) -> Result<Vec<ZoneView>> {
        let account = self.dns_account(id).await?;
        let served = self.served_serials(&account).await;
        Ok(self
            .store
            .zones(id)
            .await?
            .iter()
            .map(|z| Self::zone_view(&account, z, &served, false))
            .collect())
    }

    /// One zone of the account, with its records.
    pub async fn dns_zone(&self, id: AccountId, zone: &ZoneName) -> Result<ZoneView> {
        let account = self.dns_account(id).await?;
        let z = self
            .store
            .zones(id)
            .await?
            .into_iter()
            .find(|z| &z.zone.name == zone)
            .ok_or_else(|| crate::store::StoreError::AddressNotFound {
                kind: crate::store::Kind::Zone,
                address: zone.to_string(),
            })?;
        let served = self.served_serials(&account).await;
        Ok(Self::zone_view(&account, &z, &served, true))
    }

    /// Adds a record of the account's own to a zone.
    pub async fn add_dns_record(
        &self,
        id: AccountId,
        zone: &ZoneName,
        input: &RecordInput,
    ) -> Result<RecordView> {
        let spec = input.validate(zone, "")?;
        let mut new_id = 0;
        let stored = spec.clone();
        self.change_zone(id, zone, async || {
            let (row, rid) = self.store.add_record(id, zone, stored, today()).await?;
            new_id = rid;
            Ok(row)
        })
        .await?;
        tracing::info!(account = %id, %zone, record = new_id, "dns record added");
        Ok(RecordView::new(new_id, &spec, false))
    }

    /// Replaces (`Some`) or deletes (`None`) a record of the account's own.
    pub async fn change_dns_record(
        &self,
        id: AccountId,
        zone: &ZoneName,
        record: u64,
        input: Option<&RecordInput>,
    ) -> Result<Option<RecordView>> {
        if record == 0 {
            return Err(Rule::ManagedRecord.at("record_id").into());
        }
        let spec = input.map(|i| i.validate(zone, "")).transpose()?;
        let stored = spec.clone();
        self.change_zone(id, zone, async || {
            self.store
                .change_record(id, zone, record, stored, today())
                .await
        })
        .await?;
        tracing::info!(account = %id, %zone, record, deleted = spec.is_none(), "dns record changed");
        Ok(spec.map(|s| RecordView::new(record, &s, false)))
    }

    /// Signs a zone, or stops signing it.
    pub async fn patch_dns_zone(
        &self,
        id: AccountId,
        zone: &ZoneName,
        patch: &ZonePatch,
    ) -> Result<ZoneView> {
        if let Some(sign) = patch.dnssec {
            let current = self
                .store
                .zones(id)
                .await?
                .into_iter()
                .find(|z| &z.zone.name == zone)
                .map(|z| z.zone.dnssec());
            if current.is_some() && current != Some(sign) {
                let key = match sign {
                    true => Some(new_key()?.pem().to_owned()),
                    false => None,
                };
                self.change_zone(id, zone, async || {
                    self.store.set_zone_key(id, zone, key, today()).await
                })
                .await?;
                tracing::info!(account = %id, %zone, dnssec = sign, "zone signing changed");
            }
        }
        self.dns_zone(id, zone).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_gives_a_ds_record() {
        let zone = ZoneName::parse("shop.example").unwrap();
        let key = new_key().unwrap();
        let ds = ds_of(&zone, Some(key.pem()));
        assert_eq!(ds.len(), 1);
        assert!(ds[0].starts_with("shop.example. IN DS "), "{ds:?}");
        assert!(ds[0].contains(" 13 2 "), "{ds:?}");
    }
}
