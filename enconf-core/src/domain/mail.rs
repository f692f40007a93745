//! Mail: addresses, quotas and password hashes of mailboxes and aliases.
//!
//! Every value that reaches a Postfix map, a Dovecot passwd-file or an OpenDKIM table is one of
//! these types, built only by its parser: an address holds letters, digits and `.-_+@` and
//! nothing else (no `:`, white space, control characters, quotes), so it cannot break a line or
//! a field of any of those files.

use std::fmt;
use std::num::NonZeroU32;

use super::name::DomainName;
use super::rule::{Rule, string_serde};

/// Longest local part (RFC 5321).
const MAX_LOCAL_LEN: usize = 64;
/// Longest password taken at the API.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Shortest password taken at the API.
pub const MIN_PASSWORD_LEN: usize = 8;

/// A mail address `local@domain`, lowercase. The local part is letters, digits, `.`, `-`,
/// `_` and `+` (no leading or trailing dot, no `..`, at most 64 octets); the domain is a
/// [`DomainName`] (an internationalized one in its Punycode form).
///
/// ```
/// use enconf_core::domain::MailAddress;
/// let a = MailAddress::parse("Info@Bücher.Example").unwrap();
/// assert_eq!(a.to_string(), "info@xn--bcher-kva.example");
/// assert!(MailAddress::parse("a:b@example.com").is_err());
/// assert!(MailAddress::parse("x@example.com\nother").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailAddress {
    local: String,
    domain: DomainName,
}

impl MailAddress {
    pub fn parse(input: &str) -> Result<Self, Rule> {
        if input.is_empty() {
            return Err(Rule::Empty);
        }
        let Some((local, domain)) = input.rsplit_once('@') else {
            return Err(Rule::MailAddressFormat);
        };
        let local = parse_local(local)?;
        let domain = DomainName::parse(domain)?;
        Ok(Self { local, domain })
    }

    /// The part before `@`.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The part after `@`.
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }
}

/// Checks a local part by its allowlist and lowercases it.
fn parse_local(local: &str) -> Result<String, Rule> {
    if local.is_empty() {
        return Err(Rule::MailAddressFormat);
    }
    if let Some(c) = local
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+')))
    {
        return Err(Rule::LocalPartChar(c));
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(Rule::LocalPartTooLong { max: MAX_LOCAL_LEN });
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(Rule::LocalPartDots);
    }
    Ok(local.to_ascii_lowercase())
}

impl fmt::Display for MailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl std::str::FromStr for MailAddress {
    type Err = Rule;
    fn from_str(s: &str) -> Result<Self, Rule> {
        Self::parse(s)
    }
}

string_serde!(MailAddress);

/// A mailbox's quota in megabytes (1 MB to 1 TiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaMb(NonZeroU32);

impl QuotaMb {
    /// The largest quota: 1 TiB.
    pub const MAX: u32 = 1_048_576;

    pub fn new(mb: u64) -> Result<Self, Rule> {
        let out_of_range = Rule::OutOfRange {
            min: 1,
            max: u64::from(Self::MAX),
        };
        let mb = u32::try_from(mb).map_err(|_| out_of_range.clone())?;
        match NonZeroU32::new(mb) {
            Some(n) if mb <= Self::MAX => Ok(Self(n)),
            _ => Err(out_of_range),
        }
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl serde::Serialize for QuotaMb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.get())
    }
}

impl<'de> serde::Deserialize<'de> for QuotaMb {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        Self::new(n).map_err(serde::de::Error::custom)
    }
}

/// A password as given at the API, checked for length and never kept: it only lives to be
/// hashed. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct MailPassword(String);

impl MailPassword {
    /// 8 to 1,024 characters, without control characters (a newline in a password is a
    /// mistake of the client, never what the person typed).
    pub fn parse(input: &str) -> Result<Self, Rule> {
        let chars = input.chars().count();
        if chars < MIN_PASSWORD_LEN {
            return Err(Rule::TooShort {
                min: MIN_PASSWORD_LEN,
            });
        }
        if chars > MAX_PASSWORD_LEN {
            return Err(Rule::TooLong {
                max: MAX_PASSWORD_LEN,
            });
        }
        if input.chars().any(char::is_control) {
            return Err(Rule::ControlChar);
        }
        Ok(Self(input.to_owned()))
    }

    /// The password, for hashing.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MailPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailPassword(***)")
    }
}

/// A password hash in a scheme Dovecot reads: `{ARGON2ID}$argon2id$v=19$…` or
/// `{SHA512-CRYPT}$6$…`. What it may hold is checked (the scheme, then the characters of the
/// PHC and crypt encodings: letters, digits, `$ = , . / +`), so it cannot break a passwd-file
/// line. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// The schemes Dovecot is given.
    pub const SCHEMES: &[&str] = &["{ARGON2ID}", "{SHA512-CRYPT}"];

    pub fn parse(input: &str) -> Result<Self, Rule> {
        let Some(rest) = Self::SCHEMES.iter().find_map(|s| input.strip_prefix(s)) else {
            return Err(Rule::HashScheme);
        };
        if rest.is_empty() || rest.len() > 512 {
            return Err(Rule::HashScheme);
        }
        if let Some(c) = rest.chars().find(|&c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '$' | '=' | ',' | '.' | '/' | '+' | '-'))
        }) {
            return Err(Rule::ForbiddenChar(c));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for PasswordHash {
    type Err = Rule;
    fn from_str(s: &str) -> Result<Self, Rule> {
        Self::parse(s)
    }
}

string_serde!(PasswordHash);

/// The destinations of an alias: 1 to 100 addresses, each once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<MailAddress>", into = "Vec<MailAddress>")]
pub struct Destinations(Vec<MailAddress>);

impl Destinations {
    pub const MAX: usize = 100;

    /// Validates the list as given at the API; errors name the item at fault
    /// (`destinations[1]`).
    pub fn parse<S: AsRef<str>>(field: &str, inputs: &[S]) -> Result<Self, super::ValidationError> {
        let list = inputs
            .iter()
            .enumerate()
            .map(|(i, s)| MailAddress::parse(s.as_ref()).map_err(|r| r.at(format!("{field}[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        Self::try_from(list).map_err(|ListError(i, rule)| match i {
            Some(i) => rule.at(format!("{field}[{i}]")),
            None => rule.at(field),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &MailAddress> {
        self.0.iter()
    }

    pub fn contains(&self, address: &MailAddress) -> bool {
        self.0.contains(address)
    }
}

impl TryFrom<Vec<MailAddress>> for Destinations {
    type Error = ListError;
    fn try_from(list: Vec<MailAddress>) -> Result<Self, Self::Error> {
        if list.is_empty() {
            return Err(ListError(None, Rule::Empty));
        }
        if list.len() > Self::MAX {
            return Err(ListError(None, Rule::TooMany { max: Self::MAX }));
        }
        for (i, a) in list.iter().enumerate() {
            if let Some(first) = list[..i].iter().position(|b| b == a) {
                return Err(ListError(
                    Some(i),
                    Rule::DuplicateOf(format!("destinations[{first}]")),
                ));
            }
        }
        Ok(Self(list))
    }
}

impl From<Destinations> for Vec<MailAddress> {
    fn from(d: Destinations) -> Self {
        d.0
    }
}

/// Why a list of destinations was refused: the item at fault (`None`: the list) and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError(pub Option<usize>, pub Rule);

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(i) => write!(f, "item {i} {}", self.1),
            None => write!(f, "{}", self.1),
        }
    }
}

/// A mailbox as the controller records it: the hash of its password, never the password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mailbox {
    pub address: MailAddress,
    pub password_hash: PasswordHash,
    /// `None`: the mail server's default quota.
    pub quota: Option<QuotaMb>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

/// An alias: mail to `address` goes to each destination (inside or outside the account).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Alias {
    pub address: MailAddress,
    pub destinations: Destinations,
}

/// The first loop the aliases `aliases` make (`a -> b -> a`), as the addresses along it:
/// each alias that is a destination of another is followed. An alias to itself is one.
pub fn alias_loop(aliases: &[Alias]) -> Option<Vec<MailAddress>> {
    use std::collections::BTreeMap;
    let next: BTreeMap<&MailAddress, &Destinations> = aliases
        .iter()
        .map(|a| (&a.address, &a.destinations))
        .collect();
    // Depth-first search with colours: 1 on the path, 2 done.
    let mut colour: BTreeMap<&MailAddress, u8> = BTreeMap::new();
    for start in next.keys() {
        if colour.contains_key(start) {
            continue;
        }
        let mut path: Vec<(&MailAddress, Vec<&MailAddress>)> = Vec::new();
        colour.insert(start, 1);
        path.push((
            start,
            next[start]
                .iter()
                .filter(|d| next.contains_key(d))
                .collect(),
        ));
        while let Some((node, pending)) = path.last_mut() {
            let node = *node;
            match pending.pop() {
                None => {
                    colour.insert(node, 2);
                    path.pop();
                }
                Some(d) => match colour.get(d) {
                    Some(1) => {
                        let from = path.iter().position(|(n, _)| *n == d).unwrap_or(0);
                        let mut cycle: Vec<MailAddress> =
                            path[from..].iter().map(|(n, _)| (*n).clone()).collect();
                        cycle.push(d.clone());
                        return Some(cycle);
                    }
                    Some(_) => {}
                    None => {
                        colour.insert(d, 1);
                        path.push((d, next[d].iter().filter(|x| next.contains_key(x)).collect()));
                    }
                },
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_by_their_allowlist() {
        let ok = |i: &str, want: &str| assert_eq!(MailAddress::parse(i).unwrap().to_string(), want);
        ok("info@example.com", "info@example.com");
        ok(
            "First.Last+tag_x-y@Example.COM",
            "first.last+tag_x-y@example.com",
        );
        ok("a@bücher.example", "a@xn--bcher-kva.example");
        ok(
            &format!("{}@example.com", "a".repeat(64)),
            &format!("{}@example.com", "a".repeat(64)),
        );
        let bad = |i: &str, want: Rule| assert_eq!(MailAddress::parse(i), Err(want), "{i:?}");
        bad("", Rule::Empty);
        bad("example.com", Rule::MailAddressFormat);
        bad("@example.com", Rule::MailAddressFormat);
        bad("a:b@example.com", Rule::LocalPartChar(':'));
        bad("a b@example.com", Rule::LocalPartChar(' '));
        bad("a\nb@example.com", Rule::LocalPartChar('\n'));
        bad("a;b@example.com", Rule::LocalPartChar(';'));
        bad("\"a\"@example.com", Rule::LocalPartChar('"'));
        bad("a{b}@example.com", Rule::LocalPartChar('{'));
        bad("ä@example.com", Rule::LocalPartChar('ä'));
        bad(".a@example.com", Rule::LocalPartDots);
        bad("a.@example.com", Rule::LocalPartDots);
        bad("a..b@example.com", Rule::LocalPartDots);
        bad(
            &format!("{}@example.com", "a".repeat(65)),
            Rule::LocalPartTooLong { max: 64 },
        );
        bad("a@b@example.com", Rule::LocalPartChar('@'));
        bad("a@example.com\n", Rule::ForbiddenChar('\n'));
        bad("a@exa mple.com", Rule::ForbiddenChar(' '));
        bad("a@localhost", Rule::NotFullyQualified);
    }

    #[test]
    fn quotas_and_passwords_have_bounds() {
        assert_eq!(QuotaMb::new(1).unwrap().get(), 1);
        assert_eq!(QuotaMb::new(1_048_576).unwrap().get(), 1_048_576);
        for n in [0, 1_048_577, u64::MAX] {
            assert!(
                matches!(QuotaMb::new(n), Err(Rule::OutOfRange { .. })),
                "{n}"
            );
        }
        assert!(MailPassword::parse("seven77").is_err());
        assert!(MailPassword::parse("eight888").is_ok());
        assert!(MailPassword::parse("ünïcødé!").is_ok());
        assert!(MailPassword::parse(&"x".repeat(1025)).is_err());
        assert_eq!(MailPassword::parse("with\nnewline"), Err(Rule::ControlChar));
        assert_eq!(
            format!("{:?}", MailPassword::parse("secret-password").unwrap()),
            "MailPassword(***)"
        );
    }

    #[test]
    fn hashes_hold_only_their_encodings() {
        let h = "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g";
        assert_eq!(PasswordHash::parse(h).unwrap().as_str(), h);
        assert!(PasswordHash::parse("{SHA512-CRYPT}$6$salt$abc./").is_ok());
        assert_eq!(PasswordHash::parse("{PLAIN}secret"), Err(Rule::HashScheme));
        assert_eq!(PasswordHash::parse("$argon2id$x"), Err(Rule::HashScheme));
        assert_eq!(
            PasswordHash::parse("{ARGON2ID}$a:b"),
            Err(Rule::ForbiddenChar(':'))
        );
        assert_eq!(
            PasswordHash::parse("{ARGON2ID}$a\nb"),
            Err(Rule::ForbiddenChar('\n'))
        );
        assert!(!format!("{:?}", PasswordHash::parse(h).unwrap()).contains("argon"));
    }

    fn alias(address: &str, to: &[&str]) -> Alias {
        Alias {
            address: MailAddress::parse(address).unwrap(),
            destinations: Destinations::parse("destinations", to).unwrap(),
        }
    }

    #[test]
    fn alias_loops_are_found() {
        let show = |l: Option<Vec<MailAddress>>| {
            l.map(|l| {
                l.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" -> ")
            })
        };
        assert_eq!(alias_loop(&[alias("a@x.example", &["b@x.example"])]), None);
        assert_eq!(
            show(alias_loop(&[alias("a@x.example", &["a@x.example"])])).as_deref(),
            Some("a@x.example -> a@x.example")
        );
        assert_eq!(
            show(alias_loop(&[
                alias("a@x.example", &["out@y.example", "b@x.example"]),
                alias("b@x.example", &["c@x.example"]),
                alias("c@x.example", &["a@x.example"]),
            ]))
            .as_deref(),
            Some("a@x.example -> b@x.example -> c@x.example -> a@x.example")
        );
        // A diamond is not a loop.
        assert_eq!(
            alias_loop(&[
                alias("a@x.example", &["b@x.example", "c@x.example"]),
                alias("b@x.example", &["d@x.example"]),
                alias("c@x.example", &["d@x.example"]),
                alias("d@x.example", &["box@x.example"]),
            ]),
            None
        );
    }

    #[test]
    fn destinations_are_a_short_list_without_repeats() {
        assert!(Destinations::parse("destinations", &["a@example.com", "b@example.org"]).is_ok());
        let e = Destinations::parse::<&str>("destinations", &[]).unwrap_err();
        assert_eq!((e.field.as_str(), e.rule), ("destinations", Rule::Empty));
        let e =
            Destinations::parse("destinations", &["a@example.com", "A@example.com"]).unwrap_err();
        assert_eq!(e.field, "destinations[1]");
        let e =
            Destinations::parse("destinations", &["a@example.com", "b:c@example.com"]).unwrap_err();
        assert_eq!(e.field, "destinations[1]");
    }
}
