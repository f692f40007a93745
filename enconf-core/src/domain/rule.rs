//! Validation errors: which rule a value broke, and at which field.

use std::fmt;

/// A rule a value broke. The `Display` text is the human message the API returns; the variant is
/// what callers and tests match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rule {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters long")]
    TooLong { max: usize },
    #[error("must be at least {min} characters long")]
    TooShort { min: usize },
    #[error("must not contain the character {0:?}")]
    ForbiddenChar(char),
    #[error("must not contain control characters")]
    ControlChar,
    #[error("must not contain invisible or text-direction characters (U+{0:04X})")]
    InvisibleChar(u32),
    #[error("must not start or end with white space")]
    SurroundingSpace,
    #[error("has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("has a label longer than 63 characters")]
    LabelTooLong,
    #[error("has a label that starts or ends with a hyphen")]
    LabelHyphenEdge,
    #[error("must be a fully qualified name with at least two labels")]
    NotFullyQualified,
    #[error("must not have an all-numeric top-level label")]
    NumericTopLevel,
    #[error("is not a valid internationalized domain name")]
    Idna,
    #[error("must start with a lowercase letter")]
    BadStart,
    #[error(
        "must be lowercase letters, digits, '_' and '-', starting with a letter ({0:?} is not one)"
    )]
    UserNameChar(char),
    #[error("is a reserved name")]
    Reserved,
    #[error("must start with '/'")]
    NotAbsolute,
    #[error("must not contain '.' or '..' segments")]
    DotSegment,
    #[error("must not contain empty segments ('//')")]
    EmptySegment,
    #[error("must name a path below '/'")]
    RootPath,
    #[error("must use the http or https scheme")]
    Scheme,
    #[error("must not contain a user name or password")]
    UserInfo,
    #[error("must name a host")]
    MissingHost,
    #[error("must name a port (agents listen on 50000 by default)")]
    MissingPort,
    #[error("has an invalid port (1 to 65535)")]
    BadPort,
    #[error("has an invalid IP address")]
    BadAddress,
    #[error("must not have a path, query or fragment")]
    UnexpectedPath,
    #[error("must not have a query or fragment")]
    QueryOrFragment,
    #[error("must look like \"8.2\" (major.minor)")]
    PhpVersionFormat,
    #[error("is not a PHP version the server offers ({0})")]
    PhpNotOffered(String),
    #[error("must be a positive integer")]
    NotPositive,
    #[error("must be a whole number")]
    NotWhole,
    #[error("is not a known role (web, mail, dns, db, backup)")]
    UnknownRole,
    #[error("lists the same role twice")]
    DuplicateRole,
    #[error("is the same as {0}")]
    DuplicateOf(String),
    #[error("must hold at most {max} entries")]
    TooMany { max: usize },
    #[error("must be visible ASCII characters without spaces")]
    TokenCharset,
    #[error("is required")]
    Required,
    #[error("must look like daily=7,weekly=4,monthly=6 (each 0 to 1000, not all 0)")]
    RetentionFormat,
    #[error("is not a bcrypt hash")]
    HashFormat,
    #[error("must be one of files, databases, mail")]
    UnknownPart,
    #[error("is already in the list")]
    Repeated,
    #[error("is not in that snapshot")]
    NotInSnapshot,
    #[error("belongs to an account without the backup role")]
    NoBackupRole,
    #[error("does not name an existing server")]
    UnknownServer,
    #[error("is not an account id (a positive integer)")]
    AccountIdFormat,
    #[error("pins a role the account does not use (see roles)")]
    RoleNotUsed,
    #[error(
        "cannot be moved by a migration: its servers are chosen by the account's zones and backup policy"
    )]
    NotMovable,
    #[error("give either target_server_id or targets, not both")]
    EitherTarget,
    #[error("is not a cursor this list gave (take it from the Link header)")]
    BadCursor,
    #[error("is not a parameter of this list")]
    UnknownParameter,
    #[error("moves its data through the account's backups: give the account the backup role first")]
    DataNeedsBackup,
    #[error("cannot be pinned: every active dns server serves the account's zones")]
    DnsNotPinned,
    #[error("must be one of letsencrypt, custom, selfsigned")]
    UnknownMode,
    #[error("is only given with mode custom")]
    OnlyWithCustom,
    #[error("letsencrypt needs ACME configured on the controller (ENCONF_ACME_DIRECTORY)")]
    AcmeNotConfigured,
    #[error("must be 64 hex digits (a 256-bit key)")]
    SecretKeyFormat,
    #[error("must be between {min} and {max}")]
    OutOfRange { min: u64, max: u64 },
    #[error("must be an address like local@example.com")]
    MailAddressFormat,
    #[error("may hold letters, digits, '.', '-', '_' and '+' before the '@' ({0:?} is not one)")]
    LocalPartChar(char),
    #[error("must not start or end with '.', nor hold '..', before the '@'")]
    LocalPartDots,
    #[error("must have at most {max} characters before the '@'")]
    LocalPartTooLong { max: usize },
    #[error(
        "is not a password hash in a scheme the mail server reads ({{ARGON2ID}} or {{SHA512-CRYPT}})"
    )]
    HashScheme,
    #[error("is not one of the account's domains")]
    NotAccountDomain,
    #[error("must not deliver to itself")]
    AliasToItself,
    #[error("would make a loop of aliases: {0}")]
    AliasLoop(String),
    #[error("must match the address in the path")]
    PathMismatch,
    #[error("belongs to an account without the mail role")]
    NoMailRole,
    #[error("is a public suffix (like co.uk): it has no zone of its own")]
    PublicSuffix,
    #[error("is not a zone; its zone is {0}")]
    NotAZone(String),
    #[error("is outside the zone {0}")]
    OutsideZone(String),
    #[error("must be one of A, AAAA, CNAME, MX, TXT, SRV, CAA")]
    RecordType,
    #[error("is only given for MX and SRV records")]
    PriorityNotTaken,
    #[error("must look like {0}")]
    RecordFormat(&'static str),
    #[error("must name a host, not an address")]
    AddressNotHost,
    #[error("has a string longer than 255 octets; split it into \"quoted\" strings")]
    StringTooLong,
    #[error("cannot be a CNAME at the zone's apex")]
    CnameAtApex,
    #[error("already has other records; a CNAME must be alone at its name")]
    CnameConflict,
    #[error("is already a record of the zone")]
    DuplicateRecord,
    #[error("belongs to an account without the dns role")]
    NoDnsRole,
    #[error("is made by enconf and follows the account; it cannot be changed by hand")]
    ManagedRecord,
    #[error(
        "must be lowercase letters, digits and '_' after the account's prefix ({0:?} is not one)"
    )]
    DbNameChar(char),
    #[error("needs a name after the account's prefix {0:?}")]
    EmptyAfterPrefix(String),
    #[error("belongs to an account without the db role")]
    NoDbRole,
    #[error("is not one of the account's databases")]
    NotAccountDatabase,
    #[error("must be \"localhost\" or an IP address")]
    DbHost,
    #[error("must be a MariaDB native password hash ('*' and 40 uppercase hexadecimal digits)")]
    NativeHash,
    #[error(
        "must be https unless it is on this machine (the agent's token would cross the network in \
         clear; the controller issues the agent's certificate): plain HTTP needs \
         ENCONF_ALLOW_PLAIN_HTTP_AGENTS"
    )]
    PlainHttp,
    #[error("must be owner, admin, operator or viewer")]
    UnknownAdminRole,
    #[error("must be a kind and an id, as server:3")]
    ObjectFormat,
    #[error("must be an administrator's id")]
    AdminIdFormat,
}

impl Rule {
    /// Attaches the name of the field at fault.
    pub fn at(self, field: impl Into<String>) -> ValidationError {
        ValidationError {
            field: field.into(),
            rule: self,
        }
    }
}

/// A field that failed validation: the error the API answers with `422 invalid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The API field name, with an index for list items (`domains[1]`).
    pub field: String,
    /// The rule that was broken.
    pub rule: Rule,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.rule)
    }
}

/// A name shown to people: 1 to `max` characters of plain text ([`check_plain_text`]).
pub(crate) fn check_display_name(s: &str, max: usize) -> Result<(), Rule> {
    if s.is_empty() {
        return Err(Rule::Empty);
    }
    if s.chars().count() > max {
        return Err(Rule::TooLong { max });
    }
    check_plain_text(s)
}

/// Rejects control characters (including NUL, newline and DEL), invisible and text-direction
/// characters (see [`is_invisible`]) and leading or trailing white space: the checks every
/// free-text field shown to people shares.
pub(crate) fn check_plain_text(s: &str) -> Result<(), Rule> {
    if s.chars().any(char::is_control) {
        return Err(Rule::ControlChar);
    }
    if let Some(c) = s.chars().find(|c| is_invisible(*c)) {
        return Err(Rule::InvisibleChar(u32::from(c)));
    }
    if s.trim() != s {
        return Err(Rule::SurroundingSpace);
    }
    Ok(())
}

/// Characters that change how the text around them is shown without being seen themselves:
/// bidirectional embeddings, overrides, isolates and marks (a name that reads differently from
/// what it is, "Trojan Source"), zero-width spaces and joiners, word joiners and invisible
/// operators, the byte-order mark, soft hyphens, fillers and tag characters. Variation
/// selectors stay allowed (emoji use them).
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFEFF
            | 0xFFA0
            | 0xFFF9..=0xFFFB
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE007F
    )
}

/// Implements `Serialize` as the string form and `Deserialize` through the type's parser, so a
/// stored or received value is validated again on the way in.
macro_rules! string_serde {
    ($ty:ty) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_serde;

/// For a newtype over `String` with `parse(&str) -> Result<Self, Rule>` and `as_str()`:
/// `Display`, `FromStr`, `AsRef<str>` and the validating serde impls.
macro_rules! text_type {
    ($ty:ty) => {
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl ::std::str::FromStr for $ty {
            type Err = $crate::domain::Rule;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
        $crate::domain::rule::string_serde!($ty);
    };
}
pub(crate) use text_type;
