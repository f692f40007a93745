//! The signed `Release` index (its `Valid-Until` and the SHA-256 of each list) and the
//! `Packages` lists it covers.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::{DebVersion, RepoError};

fn bad(message: impl Into<String>) -> RepoError {
    RepoError::Index(message.into())
}

/// One file the index vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the suite's directory, e.g. `main/binary-amd64/Packages`.
    pub path: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl Entry {
    /// Whether `body` is the file the index vouches for.
    pub fn check(&self, body: &[u8]) -> Result<(), RepoError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, body);
        if body.len() as u64 != self.size || digest.as_ref() != self.sha256 {
            return Err(bad(format!(
                "{} does not match the signed index (size or SHA-256)",
                self.path
            )));
        }
        Ok(())
    }
}

/// The parts of a `Release` file this reader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub valid_until: Option<OffsetDateTime>,
    pub sha256: Vec<Entry>,
}

/// An RFC 2822 date as Debian archives write it (`UTC` as the zone, which RFC 2822 spells
/// `+0000`).
fn date(s: &str) -> Result<OffsetDateTime, RepoError> {
    let s = s.trim();
    let normal = match s.strip_suffix(" UTC") {
        Some(head) => format!("{head} +0000"),
        None => s.to_owned(),
    };
    OffsetDateTime::parse(&normal, &Rfc2822).map_err(|e| bad(format!("date {s:?}: {e}")))
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    crate::secret::unhex(s)?.try_into().ok()
}

impl Release {
    /// Parses the signed text of `InRelease` (what `gpgv` printed as signed).
    pub fn parse(text: &str) -> Result<Self, RepoError> {
        let doc: deb822_fast::Deb822 = text
            .parse()
            .map_err(|e| bad(format!("Release is not deb822: {e:?}")))?;
        let stanza = doc.iter().next().ok_or_else(|| bad("Release is empty"))?;
        let valid_until = stanza.get("Valid-Until").map(date).transpose()?;
        let mut sha256 = Vec::new();
        for line in stanza.get("SHA256").unwrap_or_default().lines() {
            let mut words = line.split_whitespace();
            let (Some(hash), Some(size), Some(path), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(bad(format!("a SHA256 line of Release: {line:?}")));
            };
            let sha256_bytes =
                hex32(hash).ok_or_else(|| bad(format!("a SHA256 digest of Release: {hash:?}")))?;
            let size = size
                .parse()
                .map_err(|_| bad(format!("a size of Release: {size:?}")))?;
            sha256.push(Entry {
                path: path.to_owned(),
                size,
                sha256: sha256_bytes,
            });
        }
        if sha256.is_empty() {
            return Err(bad("Release lists no SHA256 digests"));
        }
        Ok(Self {
            valid_until,
            sha256,
        })
    }

    /// Refuses an index whose `Valid-Until` is before `now` (a replayed old index).
    pub fn check_valid(&self, now: OffsetDateTime) -> Result<(), RepoError> {
        match self.valid_until {
            Some(until) if until < now => Err(RepoError::Expired(
                until
                    .format(&Rfc2822)
                    .unwrap_or_else(|_| until.unix_timestamp().to_string()),
            )),
            _ => Ok(()),
        }
    }

    /// The uncompressed `Packages` lists of `components`, every architecture.
    pub fn package_lists<'a>(
        &'a self,
        components: &'a [String],
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        self.sha256.iter().filter(move |e| {
            let mut parts = e.path.split('/');
            matches!(
                (parts.next(), parts.next(), parts.next(), parts.next()),
                (Some(c), Some(arch), Some("Packages"), None)
                    if components.iter().any(|k| k == c) && arch.starts_with("binary-")
            )
        })
    }
}

/// The newest `Version` of `package` in a `Packages` list, by Debian ordering.
pub fn newest_version(text: &str, package: &str) -> Result<Option<DebVersion>, RepoError> {
    let doc: deb822_fast::Deb822 = text
        .parse()
        .map_err(|e| bad(format!("Packages is not deb822: {e:?}")))?;
    let mut newest: Option<DebVersion> = None;
    for stanza in doc.iter() {
        if stanza.get("Package").map(str::trim) != Some(package) {
            continue;
        }
        let raw = stanza
            .get("Version")
            .ok_or_else(|| bad(format!("{package} without a Version")))?;
        let version: DebVersion = raw
            .trim()
            .parse()
            .map_err(|_| bad(format!("{package}: version {raw:?}")))?;
        if newest.as_ref().is_none_or(|n| version > *n) {
            newest = Some(version);
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "Origin: enconf\nDate: Fri, 04 Dec 2026 16:03:09 UTC\nValid-Until: Fri, 11 Dec 2026 16:03:09 UTC\nMD5Sum:\n 0123 1 main/binary-amd64/Packages\nSHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages.gz\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 contrib/binary-amd64/Packages\n";

    #[test]
    fn release_lists_and_validity() {
        let r = Release::parse(RELEASE).unwrap();
        let main = ["main".to_owned()];
        let lists: Vec<_> = r.package_lists(&main).map(|e| e.path.as_str()).collect();
        assert_eq!(lists, ["main/binary-amd64/Packages"]);
        r.sha256[0].check(b"").unwrap();
        assert!(r.sha256[0].check(b"x").is_err());
        let until = r.valid_until.unwrap();
        r.check_valid(until - time::Duration::SECOND).unwrap();
        assert!(matches!(
            r.check_valid(until + time::Duration::SECOND),
            Err(RepoError::Expired(_))
        ));
    }

    #[test]
    fn newest_by_debian_ordering() {
        let list = "Package: netcell-webpanel-agent\nVersion: 1.9.0-1\n\nPackage: other\nVersion: 9.0\n\nPackage: netcell-webpanel-agent\nVersion: 1.10.0-1\n\nPackage: netcell-webpanel-agent\nVersion: 1.10.0~rc1-1\n";
        let v = newest_version(list, "netcell-webpanel-agent")
            .unwrap()
            .unwrap();
        assert_eq!(v.to_string(), "1.10.0-1");
        assert!(newest_version(list, "absent").unwrap().is_none());
        assert!(
            newest_version(
                "Package: netcell-webpanel-agent\n",
                "netcell-webpanel-agent"
            )
            .is_err()
        );
    }
}
