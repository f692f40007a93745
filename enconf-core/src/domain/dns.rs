//! DNS: zones and records. Every value here is validated by its parser so that it can be
//! written into a zone file as it is: names are letters, digits, `-`, `_` and `*`; texts are
//! printable ASCII, quoted with `"` and `\` escaped; nothing can hold a newline, `;`, `(` or
//! `$` outside a quoted string.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::DomainName;
use super::rule::Rule;

/// The longest string of a TXT or CAA value (one length octet on the wire).
pub const MAX_STRING: usize = 255;
/// The longest TXT record, all strings together.
pub const MAX_TXT: usize = 4000;
/// The most records of their own an account may add to one zone.
pub const MAX_USER_RECORDS: usize = 1000;
/// TTL bounds, in seconds.
pub const MIN_TTL: u32 = 60;
pub const MAX_TTL: u32 = 86_400;
pub const DEFAULT_TTL: u32 = 3600;

/// A zone: the registrable domain (public suffix plus one label, by the Public Suffix List) of
/// an account's domain. `www.shop.example` and `shop.example` are in the zone `shop.example`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ZoneName(DomainName);

impl ZoneName {
    /// The zone `domain` belongs to; a public suffix itself (`co.uk`) has none.
    pub fn of(domain: &DomainName) -> Result<Self, Rule> {
        let zone = psl::domain_str(domain.as_str()).ok_or(Rule::PublicSuffix)?;
        Ok(Self(DomainName::parse(zone)?))
    }

    /// A zone name as given (in a path): a domain that is its own zone.
    pub fn parse(input: &str) -> Result<Self, Rule> {
        let name = DomainName::parse(input)?;
        let zone = Self::of(&name)?;
        if zone.0 != name {
            return Err(Rule::NotAZone(zone.to_string()));
        }
        Ok(zone)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// `name` relative to the zone (`@` for the apex), when it is inside it.
    pub fn relative(&self, name: &DomainName) -> Option<RecordName> {
        let name = name.as_str();
        if name == self.as_str() {
            return Some(RecordName::apex());
        }
        let label = name.strip_suffix(self.as_str())?.strip_suffix('.')?;
        RecordName::parse(label, self).ok()
    }
}

impl fmt::Display for ZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<String> for ZoneName {
    type Error = Rule;
    fn try_from(s: String) -> Result<Self, Rule> {
        Self::parse(&s)
    }
}

impl From<ZoneName> for String {
    fn from(z: ZoneName) -> String {
        z.0.to_string()
    }
}

/// The zones of a set of domains, each once, in order.
pub fn zones_of<'a>(
    domains: impl IntoIterator<Item = &'a DomainName>,
) -> Result<Vec<ZoneName>, (usize, Rule)> {
    let mut out = std::collections::BTreeSet::new();
    for (i, d) in domains.into_iter().enumerate() {
        out.insert(ZoneName::of(d).map_err(|r| (i, r))?);
    }
    Ok(out.into_iter().collect())
}

/// A record's owner name relative to its zone: `@` for the apex, or labels of letters, digits,
/// `-` and `_` (`_dmarc`, `_sip._tcp`), with `*` allowed as the whole first label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordName(String);

impl RecordName {
    pub fn apex() -> Self {
        Self("@".into())
    }

    pub fn is_apex(&self) -> bool {
        self.0 == "@"
    }

    /// Parses a name given for `zone`: relative (`www`, `@`), or absolute inside the zone
    /// (`www.shop.example.`, also without the final dot). A name outside the zone is refused.
    pub fn parse(input: &str, zone: &ZoneName) -> Result<Self, Rule> {
        if input.is_empty() {
            return Err(Rule::Empty);
        }
        if input.len() > 253 {
            return Err(Rule::TooLong { max: 253 });
        }
        if let Some(c) = input.chars().find(|c| c.is_control()) {
            return Err(if c.is_ascii() {
                Rule::ForbiddenChar(c)
            } else {
                Rule::ControlChar
            });
        }
        let lower = input.to_ascii_lowercase();
        if lower == "@" || lower == zone.as_str() || lower == format!("{zone}.") {
            return Ok(Self::apex());
        }
        let suffix = format!(".{zone}");
        let relative = match lower.strip_suffix('.') {
            Some(absolute) => absolute
                .strip_suffix(&suffix)
                .ok_or_else(|| Rule::OutsideZone(zone.to_string()))?,
            None => lower.strip_suffix(&suffix).unwrap_or(&lower),
        };
        if relative.len() + suffix.len() > 253 {
            return Err(Rule::TooLong { max: 253 });
        }
        for (i, label) in relative.split('.').enumerate() {
            if label.is_empty() {
                return Err(Rule::EmptyLabel);
            }
            if label.len() > 63 {
                return Err(Rule::LabelTooLong);
            }
            if label == "*" {
                if i == 0 {
                    continue;
                }
                return Err(Rule::ForbiddenChar('*'));
            }
            if let Some(c) = label
                .chars()
                .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
            {
                return Err(Rule::ForbiddenChar(c));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(Rule::LabelHyphenEdge);
            }
        }
        Ok(Self(relative.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's absolute form in `zone`, without the final dot.
    pub fn absolute(&self, zone: &ZoneName) -> String {
        match self.is_apex() {
            true => zone.to_string(),
            false => format!("{}.{zone}", self.0),
        }
    }
}

impl fmt::Display for RecordName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The record types a zone holds. `NS` is made by enconf only; the others can be added by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Srv,
    Caa,
    Ns,
}

impl RecordType {
    /// A type an account may add itself.
    pub fn parse_user(input: &str) -> Result<Self, Rule> {
        match input.to_ascii_uppercase().as_str() {
            "A" => Ok(Self::A),
            "AAAA" => Ok(Self::Aaaa),
            "CNAME" => Ok(Self::Cname),
            "MX" => Ok(Self::Mx),
            "TXT" => Ok(Self::Txt),
            "SRV" => Ok(Self::Srv),
            "CAA" => Ok(Self::Caa),
            _ => Err(Rule::RecordType),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Mx => "MX",
            Self::Txt => "TXT",
            Self::Srv => "SRV",
            Self::Caa => "CAA",
            Self::Ns => "NS",
        }
    }

    /// Whether a record of the type carries a `priority`.
    pub fn has_priority(self) -> bool {
        matches!(self, Self::Mx | Self::Srv)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record's data, by type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
pub enum RecordData {
    A {
        address: Ipv4Addr,
    },
    Aaaa {
        address: Ipv6Addr,
    },
    Cname {
        target: DomainName,
    },
    Mx {
        priority: u16,
        host: DomainName,
    },
    /// The character strings, unescaped (each at most 255 octets).
    Txt {
        strings: Vec<String>,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: DomainName,
    },
    Caa {
        flags: u8,
        tag: String,
        value: String,
    },
    Ns {
        host: DomainName,
    },
}

impl RecordData {
    pub fn record_type(&self) -> RecordType {
        match self {
            Self::A { .. } => RecordType::A,
            Self::Aaaa { .. } => RecordType::Aaaa,
            Self::Cname { .. } => RecordType::Cname,
            Self::Mx { .. } => RecordType::Mx,
            Self::Txt { .. } => RecordType::Txt,
            Self::Srv { .. } => RecordType::Srv,
            Self::Caa { .. } => RecordType::Caa,
            Self::Ns { .. } => RecordType::Ns,
        }
    }

    /// Parses `content` (as in a zone file, without the priority) for `kind`; the field
    /// at fault is `content` or `priority`.
    pub fn parse(
        kind: RecordType,
        content: &str,
        priority: Option<u64>,
    ) -> Result<Self, (&'static str, Rule)> {
        let c = |rule: Rule| ("content", rule);
        if content.is_empty() {
            return Err(c(Rule::Empty));
        }
        if content.len() > MAX_TXT * 2 {
            return Err(c(Rule::TooLong { max: MAX_TXT }));
        }
        if let Some(ch) = content.chars().find(|ch| ch.is_control()) {
            return Err(c(if ch.is_ascii() {
                Rule::ForbiddenChar(ch)
            } else {
                Rule::ControlChar
            }));
        }
        let priority = match (kind.has_priority(), priority) {
            (true, None) => return Err(("priority", Rule::Required)),
            (true, Some(p)) => Some(
                u16::try_from(p)
                    .map_err(|_| ("priority", Rule::OutOfRange { min: 0, max: 65535 }))?,
            ),
            (false, Some(_)) => return Err(("priority", Rule::PriorityNotTaken)),
            (false, None) => None,
        };
        let content = content.trim();
        Ok(match kind {
            RecordType::A => Self::A {
                address: content.parse().map_err(|_| c(Rule::BadAddress))?,
            },
            RecordType::Aaaa => Self::Aaaa {
                address: content.parse().map_err(|_| c(Rule::BadAddress))?,
            },
            RecordType::Cname => Self::Cname {
                target: host(content).map_err(c)?,
            },
            RecordType::Ns => Self::Ns {
                host: host(content).map_err(c)?,
            },
            RecordType::Mx => Self::Mx {
                priority: priority.unwrap_or_default(),
                host: host(content).map_err(c)?,
            },
            RecordType::Txt => Self::Txt {
                strings: txt_strings(content).map_err(c)?,
            },
            RecordType::Srv => {
                let mut parts = content.split_ascii_whitespace();
                let (Some(weight), Some(port), Some(target), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(c(Rule::RecordFormat("weight port target")));
                };
                let number = |s: &str| {
                    s.parse::<u16>()
                        .map_err(|_| c(Rule::RecordFormat("weight port target")))
                };
                Self::Srv {
                    priority: priority.unwrap_or_default(),
                    weight: number(weight)?,
                    port: number(port)?,
                    target: host(target).map_err(c)?,
                }
            }
            RecordType::Caa => {
                let format = Rule::RecordFormat("flags tag \"value\"");
                let (flags, rest) = content.split_once(' ').ok_or_else(|| c(format.clone()))?;
                let (tag, value) = rest
                    .trim_start()
                    .split_once(' ')
                    .ok_or_else(|| c(format.clone()))?;
                let flags: u8 = flags.parse().map_err(|_| c(format.clone()))?;
                let tag = tag.to_ascii_lowercase();
                if tag.is_empty()
                    || tag.len() > 15
                    || !tag
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                {
                    return Err(c(format));
                }
                let mut strings = txt_strings(value.trim()).map_err(c)?;
                if strings.len() != 1 {
                    return Err(c(format));
                }
                Self::Caa {
                    flags,
                    tag,
                    value: strings.remove(0),
                }
            }
        })
    }

    /// The priority of an MX or SRV record.
    pub fn priority(&self) -> Option<u16> {
        match self {
            Self::Mx { priority, .. } | Self::Srv { priority, .. } => Some(*priority),
            _ => None,
        }
    }

    /// The content as the API shows it (the zone-file form, without the priority).
    pub fn content(&self) -> String {
        match self {
            Self::A { address } => address.to_string(),
            Self::Aaaa { address } => address.to_string(),
            Self::Cname { target: h } | Self::Ns { host: h } | Self::Mx { host: h, .. } => {
                format!("{h}.")
            }
            Self::Txt { strings } => quoted(strings),
            Self::Srv {
                weight,
                port,
                target,
                ..
            } => format!("{weight} {port} {target}."),
            Self::Caa { flags, tag, value } => {
                format!("{flags} {tag} {}", quoted(std::slice::from_ref(value)))
            }
        }
    }

    /// The record data in a zone file (with the priority).
    pub fn rdata(&self) -> String {
        match self.priority() {
            Some(p) => format!("{p} {}", self.content()),
            None => self.content(),
        }
    }
}

/// A target host name: a domain name, never an address.
fn host(input: &str) -> Result<DomainName, Rule> {
    if input.parse::<std::net::IpAddr>().is_ok() {
        return Err(Rule::AddressNotHost);
    }
    DomainName::parse(input)
}

/// The strings of a TXT value: either one unquoted string, or `"…"` strings separated by
/// spaces (with `\"` and `\\` inside). Printable ASCII only; each string at most 255 octets.
fn txt_strings(input: &str) -> Result<Vec<String>, Rule> {
    if let Some(c) = input.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(Rule::ForbiddenChar(c));
    }
    let mut out = Vec::new();
    if !input.starts_with('"') {
        if let Some(c) = input.chars().find(|c| *c == '"' || *c == '\\') {
            return Err(Rule::ForbiddenChar(c));
        }
        out.push(input.to_owned());
    } else {
        let mut chars = input.chars().peekable();
        loop {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            match chars.next() {
                None => break,
                Some('"') => {}
                Some(_) => return Err(Rule::RecordFormat("\"text\" \"text\"")),
            }
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(Rule::RecordFormat("\"text\" \"text\"")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\')) => s.push(c),
                        _ => return Err(Rule::RecordFormat("\"text\" \"text\"")),
                    },
                    Some(c) => s.push(c),
                }
            }
            out.push(s);
        }
    }
    let mut total = 0;
    for s in &out {
        if s.len() > MAX_STRING {
            return Err(Rule::StringTooLong);
        }
        total += s.len();
    }
    if out.is_empty() || total == 0 {
        return Err(Rule::Empty);
    }
    if total > MAX_TXT {
        return Err(Rule::TooLong { max: MAX_TXT });
    }
    Ok(out)
}

/// Strings split into pieces of at most 255 octets (a DKIM key is longer than one).
pub fn split_txt(text: &str) -> Vec<String> {
    text.as_bytes()
        .chunks(MAX_STRING)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

fn quoted(strings: &[String]) -> String {
    strings
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A TTL within 60 s to one day.
pub fn parse_ttl(ttl: Option<u64>) -> Result<u32, Rule> {
    match ttl {
        None => Ok(DEFAULT_TTL),
        Some(t) if (u64::from(MIN_TTL)..=u64::from(MAX_TTL)).contains(&t) => Ok(t as u32),
        Some(_) => Err(Rule::OutOfRange {
            min: u64::from(MIN_TTL),
            max: u64::from(MAX_TTL),
        }),
    }
}

/// One record of a zone, validated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordSpec {
    pub name: RecordName,
    pub ttl: u32,
    pub data: RecordData,
}

impl RecordSpec {
    /// The record's line in a zone file whose `$ORIGIN` is the zone.
    pub fn zone_line(&self) -> String {
        format!(
            "{} {} IN {} {}\n",
            self.name,
            self.ttl,
            self.data.record_type(),
            self.data.rdata()
        )
    }
}

/// A record with its id (unique in its zone) and whether enconf made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub spec: RecordSpec,
    pub managed: bool,
}

/// Whether `new` may sit beside `others` in one zone: no CNAME at the apex, a CNAME alone at its
/// name, not the same record twice. The error names the field at fault.
pub fn check_beside<'a>(
    new: &RecordSpec,
    others: impl IntoIterator<Item = &'a RecordSpec>,
) -> Result<(), (&'static str, Rule)> {
    let cname = new.data.record_type() == RecordType::Cname;
    if cname && new.name.is_apex() {
        return Err(("name", Rule::CnameAtApex));
    }
    for other in others {
        if other.name != new.name {
            continue;
        }
        if cname || other.data.record_type() == RecordType::Cname {
            return Err(("name", Rule::CnameConflict));
        }
        if other.data == new.data {
            return Err(("content", Rule::DuplicateRecord));
        }
    }
    Ok(())
}

/// The SOA timers (refresh, retry, expire, negative TTL), in seconds.
const SOA_TIMERS: &str = "10800 3600 1209600 3600";

/// A zone's file: `$ORIGIN`, the SOA (the first `NS` host as primary), then every record.
pub fn zone_file(zone: &ZoneName, serial: u32, records: &[RecordSpec]) -> String {
    let primary = records
        .iter()
        .find_map(|r| match &r.data {
            RecordData::Ns { host } => Some(host.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| format!("ns.{zone}"));
    let mut out = format!(
        "$ORIGIN {zone}.\n@ {DEFAULT_TTL} IN SOA {primary}. hostmaster.{zone}. {serial} {SOA_TIMERS}\n"
    );
    for r in records {
        out.push_str(&r.zone_line());
    }
    out
}

/// The next serial after `serial` on `today` (`YYYYMMDD`): `YYYYMMDDnn` while changes of the
/// day fit in two digits, then one more each time; it always increases.
pub fn next_serial(serial: u32, today: u32) -> u32 {
    let dated = today.saturating_mul(100).saturating_add(1);
    dated.max(serial.saturating_add(1))
}

/// The DNSKEY flags of a key that signs everything (a CSK, flagged as a KSK).
const CSK_FLAGS: u16 = 257;
/// DNSSEC algorithm 13: ECDSA P-256 with SHA-256.
pub const ALGORITHM_ECDSAP256: u8 = 13;

/// The DS record (SHA-256 digest) of a zone signed with the ECDSA P-256 key whose public point
/// is `public` (65 octets, uncompressed), as a registrar takes it:
/// `zone. IN DS <keytag> 13 2 <hex>`.
pub fn ds_record(zone: &ZoneName, public: &[u8]) -> Option<String> {
    let point = public.strip_prefix(&[4u8])?;
    if point.len() != 64 {
        return None;
    }
    let mut rdata = Vec::with_capacity(68);
    rdata.extend_from_slice(&CSK_FLAGS.to_be_bytes());
    rdata.push(3);
    rdata.push(ALGORITHM_ECDSAP256);
    rdata.extend_from_slice(point);
    // RFC 4034, appendix B.
    let mut acc: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        acc += match i % 2 {
            0 => u32::from(*b) << 8,
            _ => u32::from(*b),
        };
    }
    acc += (acc >> 16) & 0xFFFF;
    let tag = acc & 0xFFFF;
    let mut wire = Vec::new();
    for label in zone.as_str().split('.') {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire.extend_from_slice(&rdata);
    let digest = ring::digest::digest(&ring::digest::SHA256, &wire);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{zone}. IN DS {tag} {ALGORITHM_ECDSAP256} 2 {hex}"))
}

/// A zone's signing key: an ECDSA P-256 private key in PKCS#8 PEM, the same on every dns
/// server of the zone. Its `Debug` is redacted; it is never logged or answered.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ZoneKey(String);

impl ZoneKey {
    const BEGIN: &'static str = "-----BEGIN PRIVATE KEY-----";
    const END: &'static str = "-----END PRIVATE KEY-----";

    /// Accepts a PEM block of base64 lines and nothing else (PowerDNS reads the key itself).
    pub fn parse(pem: &str) -> Result<Self, Rule> {
        if pem.len() > 4096 {
            return Err(Rule::TooLong { max: 4096 });
        }
        let mut lines = pem.trim_end().lines();
        if lines.next() != Some(Self::BEGIN) {
            return Err(Rule::RecordFormat("a PKCS#8 PEM private key"));
        }
        let mut body = 0;
        let mut ended = false;
        for line in lines {
            if ended {
                return Err(Rule::RecordFormat("a PKCS#8 PEM private key"));
            }
            if line == Self::END {
                ended = true;
                continue;
            }
            if line.is_empty()
                || line.len() > 76
                || !line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
            {
                return Err(Rule::RecordFormat("a PKCS#8 PEM private key"));
            }
            body += line.len();
        }
        if !ended || body == 0 {
            return Err(Rule::RecordFormat("a PKCS#8 PEM private key"));
        }
        Ok(Self(format!("{}\n", pem.trim_end())))
    }

    pub fn pem(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ZoneKey(<redacted>)")
    }
}

impl TryFrom<String> for ZoneKey {
    type Error = Rule;
    fn try_from(s: String) -> Result<Self, Rule> {
        Self::parse(&s)
    }
}

impl From<ZoneKey> for String {
    fn from(k: ZoneKey) -> String {
        k.0
    }
}

/// A zone as a dns server serves it: every record (enconf's and the account's), the serial,
/// and the signing key when it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneData {
    pub name: ZoneName,
    pub serial: u32,
    pub records: Vec<RecordSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ZoneKey>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ZoneName {
        ZoneName::parse("shop.example").unwrap()
    }

    #[test]
    fn zones_follow_the_public_suffix_list() {
        let of = |d: &str| ZoneName::of(&DomainName::parse(d).unwrap());
        assert_eq!(of("www.shop.example").unwrap().as_str(), "shop.example");
        assert_eq!(of("a.b.shop.co.uk").unwrap().as_str(), "shop.co.uk");
        assert_eq!(of("co.uk").unwrap_err(), Rule::PublicSuffix);
        assert!(matches!(
            ZoneName::parse("www.shop.example"),
            Err(Rule::NotAZone(_))
        ));
    }

    #[test]
    fn names_stay_inside_the_zone() {
        let z = zone();
        let p = |s: &str| RecordName::parse(s, &z);
        assert_eq!(p("@").unwrap(), RecordName::apex());
        assert_eq!(p("shop.example.").unwrap(), RecordName::apex());
        assert_eq!(p("WWW").unwrap().as_str(), "www");
        assert_eq!(p("www.shop.example.").unwrap().as_str(), "www");
        assert_eq!(p("_sip._tcp").unwrap().as_str(), "_sip._tcp");
        assert_eq!(p("*.dev").unwrap().as_str(), "*.dev");
        assert!(matches!(p("www.other.example."), Err(Rule::OutsideZone(_))));
        for bad in [
            "a b", "a;b", "a\nb", "a..b", "a.*", "-a", "a\"b", "(", "$ORIGIN",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn contents_are_checked_per_type() {
        let p = |t: RecordType, c: &str, prio: Option<u64>| RecordData::parse(t, c, prio);
        assert_eq!(
            p(RecordType::Mx, "192.0.2.1", Some(10)).unwrap_err(),
            ("content", Rule::AddressNotHost)
        );
        assert_eq!(
            p(RecordType::Mx, "mail.example", None).unwrap_err(),
            ("priority", Rule::Required)
        );
        assert_eq!(
            p(RecordType::A, "192.0.2.1", Some(1)).unwrap_err(),
            ("priority", Rule::PriorityNotTaken)
        );
        let long = "x".repeat(256);
        assert_eq!(
            p(RecordType::Txt, &long, None).unwrap_err(),
            ("content", Rule::StringTooLong)
        );
        let split = format!("\"{}\" \"{}\"", "x".repeat(255), "y");
        assert!(p(RecordType::Txt, &split, None).is_ok());
        assert!(p(RecordType::Txt, "a\nb", None).is_err());
        assert!(p(RecordType::Txt, "unterminated \"", None).is_err());
        let txt = p(RecordType::Txt, r#""say \"hi\"" "x\\y""#, None).unwrap();
        assert_eq!(txt.content(), r#""say \"hi\"" "x\\y""#);
        let srv = p(RecordType::Srv, "5 5060 sip.example.com.", Some(10)).unwrap();
        assert_eq!(srv.rdata(), "10 5 5060 sip.example.com.");
        let caa = p(RecordType::Caa, "0 issue \"letsencrypt.org\"", None).unwrap();
        assert_eq!(caa.content(), "0 issue \"letsencrypt.org\"");
        assert!(p(RecordType::Caa, "0 issue \"a\" \"b\"", None).is_err());
        assert!(p(RecordType::Aaaa, "192.0.2.1", None).is_err());
    }

    #[test]
    fn a_cname_stands_alone() {
        let z = zone();
        let rec = |name: &str, t: RecordType, c: &str| RecordSpec {
            name: RecordName::parse(name, &z).unwrap(),
            ttl: 3600,
            data: RecordData::parse(t, c, t.has_priority().then_some(10)).unwrap(),
        };
        let a = rec("www", RecordType::A, "192.0.2.1");
        let cname = rec("www", RecordType::Cname, "other.example");
        assert_eq!(
            check_beside(&cname, [&a]).unwrap_err(),
            ("name", Rule::CnameConflict)
        );
        assert_eq!(
            check_beside(&a, [&cname]).unwrap_err(),
            ("name", Rule::CnameConflict)
        );
        assert_eq!(
            check_beside(&rec("@", RecordType::Cname, "x.example"), []).unwrap_err(),
            ("name", Rule::CnameAtApex)
        );
        assert_eq!(
            check_beside(&a, [&a.clone()]).unwrap_err(),
            ("content", Rule::DuplicateRecord)
        );
        assert!(check_beside(&rec("blog", RecordType::Cname, "x.example"), [&a]).is_ok());
    }

    #[test]
    fn serials_always_increase() {
        assert_eq!(next_serial(0, 20261202), 2026120201);
        assert_eq!(next_serial(2026120201, 20261202), 2026120202);
        assert_eq!(next_serial(2026120299, 20261202), 2026120300);
        assert_eq!(next_serial(2026120300, 20261203), 2026120301);
    }

    #[test]
    fn zone_files_quote_what_they_hold() {
        let z = zone();
        let records = vec![
            RecordSpec {
                name: RecordName::apex(),
                ttl: 3600,
                data: RecordData::Ns {
                    host: DomainName::parse("ns1.host.example").unwrap(),
                },
            },
            RecordSpec {
                name: RecordName::apex(),
                ttl: 300,
                data: RecordData::parse(RecordType::Txt, r#""a;b" "c\"d""#, None).unwrap(),
            },
        ];
        let text = zone_file(&z, 7, &records);
        assert_eq!(
            text,
            "$ORIGIN shop.example.\n@ 3600 IN SOA ns1.host.example. hostmaster.shop.example. 7 10800 3600 1209600 3600\n\
             @ 3600 IN NS ns1.host.example.\n@ 300 IN TXT \"a;b\" \"c\\\"d\"\n"
        );
    }
}
