//! The agent's apt repository, read as apt reads it: the deb822 `.sources` file that names it
//! and holds its keys ([`sources`]), the `InRelease` index checked with `gpgv` against those
//! keys only ([`gpgv`]), and the `Packages` lists whose SHA-256 the signed index gives
//! ([`index`]). [`Repository::newest`] answers the newest version of a package there, by
//! Debian version ordering; the controller's update badge follows it.
//!
//! Nothing is believed that the signature does not cover: the index is read from what `gpgv`
//! printed as signed, and each `Packages` file is used only when its size and digest match.

pub mod gpgv;
pub mod index;
pub mod sources;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use time::OffsetDateTime;

pub use debversion::Version as DebVersion;

use crate::client::https::HttpsClient;

/// The largest file read from a repository (a `Packages` list of thousands of versions fits).
const MAX_FILE_BYTES: usize = 32 << 20;

/// Why the repository's newest version is not known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The `.sources` file is not one this reader understands.
    #[error("the .sources file: {0}")]
    Sources(String),
    /// A file could not be fetched.
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    /// The index is not signed by one of the source's keys, or the signature is bad or expired.
    #[error("the repository is not trusted: {0}")]
    Untrusted(String),
    /// The signed index says it is no longer valid (`Valid-Until` passed).
    #[error("the repository's index expired at {0}")]
    Expired(String),
    /// An index or list does not parse, or a list does not match the signed digest.
    #[error("the repository's index: {0}")]
    Index(String),
    /// `gpgv` could not be run.
    #[error("cannot run gpgv: {0}")]
    Gpgv(String),
}

/// A repository to read: where it is and whose signatures count.
#[derive(Debug)]
pub struct Repository {
    source: sources::Source,
    /// The source's keys as a binary keyring, in a directory of its own (gpgv's home too).
    keys: tempfile::TempDir,
    client: HttpsClient,
    timeout: Duration,
    gpgv: PathBuf,
}

impl Repository {
    /// The repository of the deb822 `.sources` text (the file `scripts/apt-repo.sh` writes).
    pub fn new(sources_text: &str, timeout: Duration) -> Result<Self, RepoError> {
        let source = sources::Source::parse(sources_text)?;
        let keys = tempfile::Builder::new()
            .prefix("enconf-apt-keys")
            .tempdir()
            .map_err(|e| RepoError::Gpgv(format!("cannot make a keyring directory: {e}")))?;
        std::fs::write(keys.path().join("keyring.gpg"), &source.keyring)
            .map_err(|e| RepoError::Gpgv(format!("cannot write the keyring: {e}")))?;
        let client =
            crate::client::https::client(timeout / 2, None).map_err(|e| RepoError::Fetch {
                url: source.uri.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            source,
            keys,
            client,
            timeout,
            gpgv: PathBuf::from("gpgv"),
        })
    }

    /// Uses the `gpgv` program at `path` instead of the one on `PATH`.
    pub fn with_gpgv(mut self, path: &Path) -> Self {
        self.gpgv = path.to_path_buf();
        self
    }

    pub fn source(&self) -> &sources::Source {
        &self.source
    }

    /// The newest version of `package` in the repository, as of `now` (for `Valid-Until`);
    /// `None` when the repository does not hold it.
    pub async fn newest(
        &self,
        package: &str,
        now: OffsetDateTime,
    ) -> Result<Option<DebVersion>, RepoError> {
        let dist = format!("dists/{}", self.source.suite);
        let signed = self.fetch(&format!("{dist}/InRelease")).await?;
        let keyring = self.keys.path().join("keyring.gpg");
        let release_text = gpgv::verify(&self.gpgv, self.keys.path(), &keyring, &signed).await?;
        let release = index::Release::parse(&release_text)?;
        release.check_valid(now)?;
        let mut newest: Option<DebVersion> = None;
        for entry in release.package_lists(&self.source.components) {
            let body = self.fetch(&format!("{dist}/{}", entry.path)).await?;
            entry.check(&body)?;
            let text = std::str::from_utf8(&body)
                .map_err(|_| RepoError::Index(format!("{} is not UTF-8", entry.path)))?;
            if let Some(v) = index::newest_version(text, package)?
                && newest.as_ref().is_none_or(|n| v > *n)
            {
                newest = Some(v);
            }
        }
        Ok(newest)
    }

    /// The file at `path` under the source's URI (`http`, `https` or `file`).
    async fn fetch(&self, path: &str) -> Result<Vec<u8>, RepoError> {
        let url = format!("{}/{path}", self.source.uri.trim_end_matches('/'));
        let failed = |message: String| RepoError::Fetch {
            url: url.clone(),
            message,
        };
        if let Some(file) = url.strip_prefix("file://") {
            // Sized before it is read: a huge file is refused, not loaded.
            let size = tokio::fs::metadata(file)
                .await
                .map_err(|e| failed(e.to_string()))?
                .len();
            if size > MAX_FILE_BYTES as u64 {
                return Err(failed("too large".into()));
            }
            return tokio::fs::read(file)
                .await
                .map_err(|e| failed(e.to_string()));
        }
        let request = hyper::Request::get(&url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| failed(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| failed(crate::client::https::chain(&e)))?;
            if !response.status().is_success() {
                return Err(failed(format!("HTTP {}", response.status())));
            }
            Limited::new(response.into_body(), MAX_FILE_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .map_err(|e| failed(e.to_string()))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {} s", self.timeout.as_secs())))?
    }
}

/// The Debian ordering of an agent's version: semver `1.0.0-rc.1` is packaged as `1.0.0~rc.1`
/// (a pre-release sorts before its release); build metadata is not part of it.
pub fn debian_upstream(v: &semver::Version) -> Option<DebVersion> {
    let mut s = format!("{}.{}.{}", v.major, v.minor, v.patch);
    if !v.pre.is_empty() {
        s.push('~');
        s.push_str(v.pre.as_str());
    }
    s.parse().ok()
}

/// Whether an agent at `agent` should be updated to the packaged version `newest`: true only
/// when the package's upstream version is newer by Debian ordering (`1.10.0` > `1.9.0`,
/// `1.0.0~rc1` < `1.0.0`). An older or equal package is never offered: no downgrade. An agent
/// whose version is unknown is not flagged.
pub fn update_available(agent: Option<&semver::Version>, newest: &DebVersion) -> bool {
    let Some(agent) = agent.and_then(debian_upstream) else {
        return false;
    };
    let upstream = DebVersion {
        epoch: newest.epoch,
        upstream_version: newest.upstream_version.clone(),
        debian_revision: None,
    };
    upstream > agent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sv(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }
    fn dv(s: &str) -> DebVersion {
        s.parse().unwrap()
    }

    #[test]
    fn debian_ordering_decides() {
        assert!(update_available(Some(&sv("1.9.0")), &dv("1.10.0-1")));
        assert!(!update_available(Some(&sv("1.10.0")), &dv("1.9.0-1")));
        assert!(!update_available(Some(&sv("1.0.0")), &dv("1.0.0~rc1-1")));
        assert!(update_available(Some(&sv("1.0.0-rc1")), &dv("1.0.0-1")));
        assert!(update_available(
            Some(&sv("1.0.0-rc.1")),
            &dv("1.0.0~rc.2-1")
        ));
        assert!(!update_available(Some(&sv("1.0.0")), &dv("1.0.0-1")));
        assert!(!update_available(Some(&sv("1.0.0")), &dv("1.0.0-7")));
        assert!(!update_available(
            Some(&sv("1.0.0+build.3")),
            &dv("1.0.0-1")
        ));
        assert!(update_available(Some(&sv("9.0.0")), &dv("1:1.0.0-1")));
        assert!(!update_available(None, &dv("9.0.0-1")));
    }
}
