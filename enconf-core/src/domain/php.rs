//! PHP versions.

use std::fmt;
use std::str::FromStr;

use super::rule::{Rule, string_serde};

/// A PHP version as `major.minor` (`8.2`), the form Debian's packages and PHP-FPM paths use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhpVersion {
    major: u8,
    minor: u8,
}

impl PhpVersion {
    pub fn new(major: u8, minor: u8) -> Result<Self, Rule> {
        if !(5..=9).contains(&major) || minor > 99 {
            return Err(Rule::PhpVersionFormat);
        }
        Ok(Self { major, minor })
    }

    pub fn parse(input: &str) -> Result<Self, Rule> {
        let (major, minor) = input.split_once('.').ok_or(Rule::PhpVersionFormat)?;
        let number = |s: &str| -> Result<u8, Rule> {
            let canonical = !s.is_empty()
                && s.len() <= 2
                && s.bytes().all(|b| b.is_ascii_digit())
                && !(s.len() > 1 && s.starts_with('0'));
            if !canonical {
                return Err(Rule::PhpVersionFormat);
            }
            s.parse().map_err(|_| Rule::PhpVersionFormat)
        };
        Self::new(number(major)?, number(minor)?)
    }

    pub fn major(self) -> u8 {
        self.major
    }

    pub fn minor(self) -> u8 {
        self.minor
    }
}

impl fmt::Display for PhpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for PhpVersion {
    type Err = Rule;
    fn from_str(s: &str) -> Result<Self, Rule> {
        Self::parse(s)
    }
}

string_serde!(PhpVersion);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["5.6", "7.4", "8.0", "8.2", "8.10"] {
            assert_eq!(PhpVersion::parse(ok).unwrap().to_string(), ok);
        }
        for bad in [
            "", "8", "8.", ".2", "8.2.1", "08.2", "8.02", "4.4", "10.0", "8.2\n", "8;2", "8.2;",
            " 8.2", "8.x", "8.2 ", "${v}", "8.-1", "+8.2", "8.100",
        ] {
            assert_eq!(
                PhpVersion::parse(bad),
                Err(Rule::PhpVersionFormat),
                "{bad:?}"
            );
        }
    }
}
