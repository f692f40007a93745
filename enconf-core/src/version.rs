//! Agent versions and the "update available" rule.

use std::cmp::Ordering;

use semver::Version;

/// This release of enconf. The controller takes it as the newest agent version it knows unless
/// configured otherwise.
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// [`RELEASE`] as a [`Version`].
pub fn release() -> Version {
    // Proven invariant: Cargo only accepts semver package versions.
    Version::parse(RELEASE).unwrap_or_else(|_| Version::new(0, 0, 0))
}

/// Whether an agent at `agent` should be updated to `newest`: true when it is older by semver
/// precedence (pre-releases sort before their release; build metadata is ignored). An agent
/// whose version is unknown is not flagged.
pub fn update_available(agent: Option<&Version>, newest: &Version) -> bool {
    agent.is_some_and(|v| v.cmp_precedence(newest) == Ordering::Less)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn older_agents_need_an_update() {
        let newest = v("1.4.0");
        assert!(update_available(Some(&v("1.3.9")), &newest));
        assert!(update_available(Some(&v("0.9.0")), &newest));
        assert!(update_available(Some(&v("1.4.0-rc.1")), &newest));
        assert!(!update_available(Some(&v("1.4.0")), &newest));
        assert!(!update_available(Some(&v("1.4.0+build.7")), &newest));
        assert!(
            !update_available(Some(&v("1.10.0")), &newest),
            "numeric, not lexical"
        );
        assert!(!update_available(Some(&v("2.0.0")), &newest));
        assert!(!update_available(None, &newest));
    }

    #[test]
    fn release_parses() {
        assert_eq!(release().to_string(), RELEASE);
    }
}
