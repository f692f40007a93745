//! Database and database-user names, hosts and password hashes as the API and the agent take
//! them: parsing never panics; what is accepted carries the account's prefix, is at most 64
//! characters of `[a-z0-9_-]`, quotes into an identifier with nothing to escape, reads back as
//! itself, and its GRANT pattern has every `_` escaped (so it matches only itself).
#![no_main]

use enconf_core::domain::UserName;
use enconf_core::domain::db::{DbHost, DbName, DbUserName, NativeHash};
use enconf_core::protocol::db::DbPut;
use libfuzzer_sys::fuzz_target;

/// Whether the MariaDB LIKE-style `pattern` (`_` any one character, `%` any run, `\` escapes)
/// matches `name`.
fn matches(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('\\', rest)) => match (rest.split_first(), name.split_first()) {
            (Some((p, rest)), Some((n, name))) => p == n && matches(rest, name),
            _ => false,
        },
        Some(('_', rest)) => !name.is_empty() && matches(rest, &name[1..]),
        Some(('%', rest)) => (0..=name.len()).any(|i| matches(rest, &name[i..])),
        Some((p, rest)) => name.first() == Some(p) && matches(rest, &name[1..]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.splitn(3, '\u{1f}');
    let (account, name, other) = (
        fields.next().unwrap_or("shop"),
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
    );
    let account = UserName::parse(account).unwrap_or_else(|_| UserName::parse("shop").unwrap());
    if let Ok(db) = DbName::parse(&account, name) {
        let s = db.as_str();
        assert!(s.len() <= 64, "{s:?}");
        assert!(
            db.belongs_to(&account),
            "{s:?} without the prefix of {account}"
        );
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
            "{s:?}"
        );
        assert_eq!(db.quoted(), format!("`{s}`"));
        assert_eq!(DbName::parse_full(s).as_ref(), Ok(&db), "{s:?} reads back");
        let pattern: Vec<char> = db.grant_key().chars().collect();
        let chars: Vec<char> = s.chars().collect();
        assert!(matches(&pattern, &chars), "{s:?}: its grant matches itself");
        // The same name with any `_` replaced matches no more.
        for (i, c) in chars.iter().enumerate() {
            if *c == '_' {
                let mut other = chars.clone();
                other[i] = 'x';
                assert!(
                    !matches(&pattern, &other),
                    "{s:?}: its grant opens {other:?}"
                );
            }
        }
    }
    if let Ok(user) = DbUserName::parse(&account, name) {
        assert!(user.as_str().len() <= 64 && user.belongs_to(&account));
    }
    let _ = DbName::parse_full(other);
    if let Ok(host) = DbHost::parse(other) {
        let quoted = host.quoted();
        assert!(
            !quoted[1..quoted.len() - 1].contains(['\'', '\\', '%', '_']),
            "{quoted}"
        );
    }
    if let Ok(hash) = NativeHash::parse(other) {
        assert!(!hash.expose_secret().contains(['\'', '\\']));
    }
    // A whole put as the agent reads it, built from the fields.
    if let Ok(put) = serde_json::from_str::<DbPut>(other) {
        let _ = put.validate("db.", &account);
    }
});
