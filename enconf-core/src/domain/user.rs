//! System user names of hosting accounts.

use super::rule::{Rule, text_type};

/// Longest user name `useradd` accepts.
const MAX_LEN: usize = 32;

/// Names a hosting account can never take: system accounts of Debian and of the services the
/// agent manages, and names whose owner would have powers an account must not get.
const RESERVED: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "nogroup",
    "messagebus",
    "sshd",
    "admin",
    "administrator",
    "operator",
    "staff",
    "sudo",
    "wheel",
    "adm",
    "shadow",
    "utmp",
    "tty",
    "disk",
    "kmem",
    "ftp",
    "www",
    "web",
    "nginx",
    "apache",
    "httpd",
    "php",
    "php-fpm",
    "mysql",
    "mariadb",
    "postgres",
    "postfix",
    "postdrop",
    "dovecot",
    "dovenull",
    "vmail",
    "opendkim",
    "clamav",
    "spamd",
    "redis",
    "memcache",
    "pdns",
    "bind",
    "named",
    "certbot",
    "enconf",
    "netcell",
    "polkitd",
    "tss",
    "uuidd",
    "tcpdump",
    "avahi",
];

/// Prefixes reserved for system and distribution accounts.
const RESERVED_PREFIXES: &[&str] = &["systemd-", "debian-"];

/// A Linux user name for a hosting account: a lowercase letter, then lowercase letters, digits,
/// `_` or `-`, at most 32 characters, and not a reserved system name.
///
/// ```
/// use enconf_core::domain::UserName;
/// assert!(UserName::parse("shop_42").is_ok());
/// assert!(UserName::parse("www-data").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

impl UserName {
    /// Validates a user name. No normalization: `Shop` is refused rather than lowercased, because
    /// the name is also a login the customer types.
    pub fn parse(input: &str) -> Result<Self, Rule> {
        let first = input.chars().next().ok_or(Rule::Empty)?;
        if input.len() > MAX_LEN {
            return Err(Rule::TooLong { max: MAX_LEN });
        }
        if let Some(c) = input
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
        {
            return Err(Rule::UserNameChar(c));
        }
        if !first.is_ascii_lowercase() {
            return Err(Rule::BadStart);
        }
        if RESERVED.contains(&input) || RESERVED_PREFIXES.iter().any(|p| input.starts_with(p)) {
            return Err(Rule::Reserved);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_type!(UserName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_linux_names() {
        for ok in [
            "a",
            "shop",
            "shop_42",
            "web-1",
            "a2345678901234567890123456789012",
        ] {
            assert_eq!(UserName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_reserved_names() {
        for name in [
            "root",
            "www-data",
            "nginx",
            "mysql",
            "postfix",
            "vmail",
            "systemd-network",
            "debian-tor",
        ] {
            assert_eq!(UserName::parse(name), Err(Rule::Reserved), "{name}");
        }
    }

    #[test]
    fn refuses_hostile_and_malformed_names() {
        let rule = |s: &str| UserName::parse(s).unwrap_err();
        assert_eq!(rule(""), Rule::Empty);
        assert_eq!(rule("shop\n"), Rule::UserNameChar('\n'));
        assert_eq!(rule("shop;rm"), Rule::UserNameChar(';'));
        assert_eq!(rule("{shop}"), Rule::UserNameChar('{'));
        assert_eq!(rule("sh\"op"), Rule::UserNameChar('"'));
        assert_eq!(rule("sh'op"), Rule::UserNameChar('\''));
        assert_eq!(rule("$shop"), Rule::UserNameChar('$'));
        assert_eq!(rule("sh op"), Rule::UserNameChar(' '));
        assert_eq!(rule("shop\0"), Rule::UserNameChar('\0'));
        assert_eq!(rule(".."), Rule::UserNameChar('.'));
        assert_eq!(rule("../x"), Rule::UserNameChar('.'));
        assert_eq!(rule("Shop"), Rule::UserNameChar('S'));
        assert_eq!(rule("shöp"), Rule::UserNameChar('ö'));
        assert_eq!(rule("1shop"), Rule::BadStart);
        assert_eq!(rule("-shop"), Rule::BadStart);
        assert_eq!(rule("_shop"), Rule::BadStart);
        assert_eq!(rule("shop$"), Rule::UserNameChar('$'));
        assert_eq!(rule(&"a".repeat(33)), Rule::TooLong { max: 32 });
    }
}
