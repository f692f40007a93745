//! The backup role's values: how many snapshots a repository keeps, the secrets of an
//! account's repository, and what a backup or a restore covers.
//!
//! An account's backups are [restic](https://restic.net) snapshots in one repository per
//! account on its backup server. A *backup set* is what one backup job made: one snapshot of
//! the files (web root and Maildirs) of each server that holds some of the account, and one of
//! each database dump, all tagged with the set's id; the API's `Snapshot` is a set.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{RandomError, Rule};

/// How many snapshots pruning keeps: the newest of each of the last `daily` days, `weekly`
/// weeks and `monthly` months (restic's `--keep-daily` and the others). Default 7, 4, 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub daily: u16,
    pub weekly: u16,
    pub monthly: u16,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            daily: 7,
            weekly: 4,
            monthly: 6,
        }
    }
}

impl Retention {
    /// The most of each that can be asked for.
    pub const MAX: u16 = 1000;

    /// Parses `daily=7,weekly=4,monthly=6` (each part optional; missing ones keep the
    /// default). At least one snapshot is always kept: all three at zero is refused.
    pub fn parse(input: &str) -> Result<Self, Rule> {
        let mut out = Self::default();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or(Rule::RetentionFormat)?;
            let n: u16 = value
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= Self::MAX)
                .ok_or(Rule::RetentionFormat)?;
            match key.trim() {
                "daily" => out.daily = n,
                "weekly" => out.weekly = n,
                "monthly" => out.monthly = n,
                _ => return Err(Rule::RetentionFormat),
            }
        }
        if out.daily == 0 && out.weekly == 0 && out.monthly == 0 {
            return Err(Rule::RetentionFormat);
        }
        Ok(out)
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "daily={},weekly={},monthly={}",
            self.daily, self.weekly, self.monthly
        )
    }
}

/// A secret of an account's repository: 256 random bits as 64 hex digits. Never logged
/// (`Debug` is redacted); the controller keeps it sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RepoSecret(String);

impl RepoSecret {
    pub fn generate() -> Result<Self, RandomError> {
        super::AgentToken::generate().map(|t| Self(t.expose_secret().to_owned()))
    }

    /// A secret as sent: 32 to 128 characters of `[0-9a-zA-Z]`.
    pub fn parse(input: &str) -> Result<Self, Rule> {
        if !(32..=128).contains(&input.len()) || !input.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Rule::TokenCharset);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RepoSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RepoSecret(<redacted>)")
    }
}

/// The two secrets of an account's repository: `key` encrypts it (restic's password; whoever
/// has it reads every snapshot), `access` is the account's password at the backup server's
/// HTTP endpoint (which serves it append-only, and only its own repository).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoKeys {
    pub key: RepoSecret,
    pub access: RepoSecret,
}

impl RepoKeys {
    pub fn generate() -> Result<Self, RandomError> {
        Ok(Self {
            key: RepoSecret::generate()?,
            access: RepoSecret::generate()?,
        })
    }
}

/// What the backup server is sent for an account: the hash of its access password (bcrypt,
/// as the HTTP server's password file takes it). The password itself goes only to the
/// account's servers, with each backup or restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSpec {
    pub access_hash: String,
}

impl BackupSpec {
    /// A bcrypt hash (`$2a$`, `$2b$` or `$2y$`, 60 characters of its alphabet): what may go
    /// into a password file line.
    pub fn check(&self) -> Result<(), Rule> {
        let h = &self.access_hash;
        let ok = h.len() == 60
            && (h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$"))
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'$' | b'.' | b'/'));
        match ok {
            true => Ok(()),
            false => Err(Rule::HashFormat),
        }
    }
}

/// The parts of an account a backup or a restore covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The web root (the account's home on its web server).
    Files,
    /// A dump of each database.
    Databases,
    /// The Maildirs of the account's domains.
    Mail,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Files, Part::Databases, Part::Mail];

    pub fn as_str(self) -> &'static str {
        match self {
            Part::Files => "files",
            Part::Databases => "databases",
            Part::Mail => "mail",
        }
    }

    pub fn parse(input: &str) -> Result<Self, Rule> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == input)
            .ok_or(Rule::UnknownPart)
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retention_parses_and_refuses() {
        assert_eq!(Retention::parse("").unwrap(), Retention::default());
        let r = Retention::parse("daily=14, monthly=12").unwrap();
        assert_eq!((r.daily, r.weekly, r.monthly), (14, 4, 12));
        assert_eq!(Retention::parse(&r.to_string()).unwrap(), r);
        for bad in [
            "daily",
            "daily=x",
            "hourly=3",
            "daily=0,weekly=0,monthly=0",
            "daily=1001",
            "daily=-1",
        ] {
            assert!(Retention::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_redacted_and_checked() {
        let keys = RepoKeys::generate().unwrap();
        assert!(!format!("{keys:?}").contains(keys.key.expose_secret()));
        assert_ne!(keys.key, keys.access);
        assert!(RepoSecret::parse(keys.access.expose_secret()).is_ok());
        assert!(RepoSecret::parse("short").is_err());
        assert!(RepoSecret::parse(&format!("{}:x", "a".repeat(40))).is_err());
    }

    #[test]
    fn only_a_bcrypt_hash_goes_into_the_password_file() {
        let good = BackupSpec {
            access_hash: format!("$2b$05${}", "a".repeat(53)),
        };
        assert!(good.check().is_ok());
        for bad in [
            format!("$2b$05${}\n", "a".repeat(52)),
            format!("$2b$05${}:", "a".repeat(52)),
            "{SHA}abc".to_owned(),
        ] {
            assert!(BackupSpec { access_hash: bad }.check().is_err());
        }
    }
}
