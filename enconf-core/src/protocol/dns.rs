//! Wire types of the dns role: the Management API's zones and records, and the zones the
//! controller sends each dns server's agent (whole, with their serial).

use serde::{Deserialize, Serialize};

use super::{Integer, required};
use crate::domain::dns::{
    Record, RecordData, RecordName, RecordSpec, RecordType, ZoneName, parse_ttl,
};
use crate::domain::{Rule, ServerId, ValidationError};

fn number(value: Option<Integer>, field: &str) -> Result<Option<u64>, ValidationError> {
    value
        .map(|n| {
            let n = n.whole().map_err(|r| r.at(field))?;
            u64::try_from(n).map_err(|_| {
                Rule::OutOfRange {
                    min: 0,
                    max: u64::from(u32::MAX),
                }
                .at(field)
            })
        })
        .transpose()
}

/// `RecordInput` of the contract.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    /// Relative to the zone (`www`), `@` for the apex, or absolute inside it.
    #[cfg_attr(feature = "controller", schema(example = "www"))]
    pub name: Option<String>,
    /// `A`, `AAAA`, `CNAME`, `MX`, `TXT`, `SRV` or `CAA`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "controller", schema(example = "A"))]
    pub kind: Option<String>,
    /// Seconds, 60 to 86,400; default 3,600.
    #[cfg_attr(feature = "controller", schema(value_type = Option<u32>))]
    pub ttl: Option<Integer>,
    /// As in a zone file, per type, without the priority: `192.0.2.1`, `mail.example.com.`,
    /// `"v=spf1 mx -all"`, `5 5060 sip.example.com.` (SRV: weight port target),
    /// `0 issue "letsencrypt.org"`.
    #[cfg_attr(feature = "controller", schema(example = "192.0.2.10"))]
    pub content: Option<String>,
    /// MX and SRV only: 0 to 65,535.
    #[cfg_attr(feature = "controller", schema(value_type = Option<u16>))]
    pub priority: Option<Integer>,
}

impl RecordInput {
    /// Validates a record of `zone`; `prefix` goes before field names.
    pub fn validate(&self, zone: &ZoneName, prefix: &str) -> Result<RecordSpec, ValidationError> {
        let field = |f: &str| format!("{prefix}{f}");
        let name = required(self.name.as_deref(), &field("name"))?;
        let name = RecordName::parse(name, zone).map_err(|r| r.at(field("name")))?;
        let kind = required(self.kind.as_deref(), &field("type"))?;
        let kind = RecordType::parse_user(kind).map_err(|r| r.at(field("type")))?;
        self.finish(name, kind, prefix)
    }

    /// Validates a record the controller made (`NS` allowed), for the agent.
    fn validate_any(&self, zone: &ZoneName, prefix: &str) -> Result<RecordSpec, ValidationError> {
        let field = |f: &str| format!("{prefix}{f}");
        let name = required(self.name.as_deref(), &field("name"))?;
        let name = RecordName::parse(name, zone).map_err(|r| r.at(field("name")))?;
        let kind = required(self.kind.as_deref(), &field("type"))?;
        let kind = match kind {
            "NS" => RecordType::Ns,
            other => RecordType::parse_user(other).map_err(|r| r.at(field("type")))?,
        };
        self.finish(name, kind, prefix)
    }

    fn finish(
        &self,
        name: RecordName,
        kind: RecordType,
        prefix: &str,
    ) -> Result<RecordSpec, ValidationError> {
        let field = |f: &str| format!("{prefix}{f}");
        let ttl = number(self.ttl, &field("ttl"))?;
        let ttl = parse_ttl(ttl).map_err(|r| r.at(field("ttl")))?;
        let priority = number(self.priority, &field("priority"))?;
        let content = required(self.content.as_deref(), &field("content"))?;
        let data = RecordData::parse(kind, content, priority).map_err(|(f, r)| r.at(field(f)))?;
        Ok(RecordSpec { name, ttl, data })
    }

    /// The input that gives `spec` back.
    pub fn from_spec(spec: &RecordSpec) -> Self {
        Self {
            name: Some(spec.name.to_string()),
            kind: Some(spec.data.record_type().to_string()),
            ttl: Some(Integer::from(u64::from(spec.ttl))),
            content: Some(spec.data.content()),
            priority: spec.data.priority().map(|p| Integer::from(u64::from(p))),
        }
    }
}

/// `Record` of the contract.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordView {
    /// Unique in the zone; managed records have none of their own (0).
    pub id: u64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub ttl: u32,
    pub content: String,
    pub priority: Option<u16>,
    /// Made by enconf (NS, the web and mail records, SPF, DMARC, DKIM); follows the account
    /// and cannot be changed by hand.
    pub managed: bool,
}

impl RecordView {
    pub fn new(id: u64, spec: &RecordSpec, managed: bool) -> Self {
        Self {
            id,
            name: spec.name.to_string(),
            kind: spec.data.record_type().to_string(),
            ttl: spec.ttl,
            content: spec.data.content(),
            priority: spec.data.priority(),
            managed,
        }
    }
}

impl From<&Record> for RecordView {
    fn from(r: &Record) -> Self {
        Self::new(r.id, &r.spec, r.managed)
    }
}

/// `Zone` of the contract.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneView {
    pub name: String,
    pub serial: u32,
    pub dnssec: bool,
    /// The DS records to give the registrar (empty when not signed).
    pub ds: Vec<String>,
    /// The dns servers that serve the zone.
    #[cfg_attr(feature = "controller", schema(value_type = Vec<u64>))]
    pub servers: Vec<ServerId>,
    /// Every one of them answered with the zone's serial.
    pub in_sync: bool,
    /// Every record (`GET …/zones/{zone}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<RecordView>>,
}

/// `PATCH /api/v1/accounts/{id}/dns/zones/{zone}`.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonePatch {
    pub dnssec: Option<bool>,
}

/// A zone as the controller sends it to a dns server, whole: the agent makes PowerDNS serve
/// exactly this.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonePut {
    pub name: String,
    pub serial: u32,
    pub records: Vec<RecordInput>,
    /// The signing key (PKCS#8 PEM, ECDSA P-256), the same on every dns server; absent: the
    /// zone is not signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnssec_key_pem: Option<String>,
}

impl std::fmt::Debug for ZonePut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZonePut")
            .field("name", &self.name)
            .field("serial", &self.serial)
            .field("records", &self.records.len())
            .field("dnssec", &self.dnssec_key_pem.is_some())
            .finish()
    }
}

/// The most records a zone sent to an agent holds (the account's and enconf's).
pub const MAX_ZONE_RECORDS: usize = crate::domain::dns::MAX_USER_RECORDS + 500;

impl ZonePut {
    pub fn from_zone(zone: &crate::domain::dns::ZoneData) -> Self {
        Self {
            name: zone.name.to_string(),
            serial: zone.serial,
            records: zone.records.iter().map(RecordInput::from_spec).collect(),
            dnssec_key_pem: zone.key.as_ref().map(|k| k.pem().to_owned()),
        }
    }

    /// Validates a zone sent to the agent; `prefix` names it (`zones[0].`).
    pub fn validate(&self, prefix: &str) -> Result<crate::domain::dns::ZoneData, ValidationError> {
        let name = ZoneName::parse(&self.name).map_err(|r| r.at(format!("{prefix}name")))?;
        if self.records.len() > MAX_ZONE_RECORDS {
            return Err(Rule::TooMany {
                max: MAX_ZONE_RECORDS,
            }
            .at(format!("{prefix}records")));
        }
        let mut records: Vec<RecordSpec> = Vec::with_capacity(self.records.len());
        for (i, r) in self.records.iter().enumerate() {
            let at = format!("{prefix}records[{i}].");
            let spec = r.validate_any(&name, &at)?;
            crate::domain::dns::check_beside(&spec, records.iter())
                .map_err(|(f, rule)| rule.at(format!("{at}{f}")))?;
            records.push(spec);
        }
        let key = self
            .dnssec_key_pem
            .as_deref()
            .map(crate::domain::dns::ZoneKey::parse)
            .transpose()
            .map_err(|r| r.at(format!("{prefix}dnssec_key_pem")))?;
        Ok(crate::domain::dns::ZoneData {
            name,
            serial: self.serial,
            records,
            key,
        })
    }
}

/// `GET /v1/dns/{username}` on an agent: the serial each zone of the account is served with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentZones {
    pub zones: std::collections::BTreeMap<String, u32>,
}
