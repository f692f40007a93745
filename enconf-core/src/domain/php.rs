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

/// Per-account PHP limits, written into the account's PHP-FPM pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "PhpSettingsRaw", into = "PhpSettingsRaw")]
pub struct PhpSettings {
    memory_limit_mb: u32,
    upload_max_mb: u32,
    max_execution_time_s: u32,
    max_children: u32,
}

/// The unchecked form of [`PhpSettings`] (wire and storage); missing fields take the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhpSettingsRaw {
    pub memory_limit_mb: Option<u32>,
    pub upload_max_mb: Option<u32>,
    pub max_execution_time_s: Option<u32>,
    pub max_children: Option<u32>,
}

impl PhpSettings {
    pub const MEMORY_LIMIT_MB: std::ops::RangeInclusive<u32> = 16..=16_384;
    pub const UPLOAD_MAX_MB: std::ops::RangeInclusive<u32> = 1..=10_240;
    pub const MAX_EXECUTION_TIME_S: std::ops::RangeInclusive<u32> = 1..=3_600;
    pub const MAX_CHILDREN: std::ops::RangeInclusive<u32> = 1..=200;

    /// Validates raw settings; the error names the field (`php.memory_limit_mb`).
    pub fn from_raw(raw: PhpSettingsRaw, prefix: &str) -> Result<Self, super::ValidationError> {
        let d = Self::default();
        let check = |v: Option<u32>, default: u32, range: std::ops::RangeInclusive<u32>, name| {
            let v = v.unwrap_or(default);
            if range.contains(&v) {
                Ok(v)
            } else {
                Err(Rule::OutOfRange {
                    min: u64::from(*range.start()),
                    max: u64::from(*range.end()),
                }
                .at(format!("{prefix}{name}")))
            }
        };
        Ok(Self {
            memory_limit_mb: check(
                raw.memory_limit_mb,
                d.memory_limit_mb,
                Self::MEMORY_LIMIT_MB,
                "memory_limit_mb",
            )?,
            upload_max_mb: check(
                raw.upload_max_mb,
                d.upload_max_mb,
                Self::UPLOAD_MAX_MB,
                "upload_max_mb",
            )?,
            max_execution_time_s: check(
                raw.max_execution_time_s,
                d.max_execution_time_s,
                Self::MAX_EXECUTION_TIME_S,
                "max_execution_time_s",
            )?,
            max_children: check(
                raw.max_children,
                d.max_children,
                Self::MAX_CHILDREN,
                "max_children",
            )?,
        })
    }

    pub fn memory_limit_mb(self) -> u32 {
        self.memory_limit_mb
    }
    pub fn upload_max_mb(self) -> u32 {
        self.upload_max_mb
    }
    pub fn max_execution_time_s(self) -> u32 {
        self.max_execution_time_s
    }
    pub fn max_children(self) -> u32 {
        self.max_children
    }
}

impl Default for PhpSettings {
    fn default() -> Self {
        Self {
            memory_limit_mb: 128,
            upload_max_mb: 64,
            max_execution_time_s: 30,
            max_children: 5,
        }
    }
}

impl TryFrom<PhpSettingsRaw> for PhpSettings {
    type Error = super::ValidationError;
    fn try_from(raw: PhpSettingsRaw) -> Result<Self, Self::Error> {
        Self::from_raw(raw, "")
    }
}

impl From<PhpSettings> for PhpSettingsRaw {
    fn from(s: PhpSettings) -> Self {
        Self {
            memory_limit_mb: Some(s.memory_limit_mb),
            upload_max_mb: Some(s.upload_max_mb),
            max_execution_time_s: Some(s.max_execution_time_s),
            max_children: Some(s.max_children),
        }
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn settings_ranges() {
        let s = PhpSettings::from_raw(PhpSettingsRaw::default(), "php.").unwrap();
        assert_eq!(s, PhpSettings::default());
        let raw = PhpSettingsRaw {
            memory_limit_mb: Some(256),
            ..Default::default()
        };
        assert_eq!(
            PhpSettings::from_raw(raw, "php.")
                .unwrap()
                .memory_limit_mb(),
            256
        );
        let raw = PhpSettingsRaw {
            max_children: Some(0),
            ..Default::default()
        };
        let e = PhpSettings::from_raw(raw, "php.").unwrap_err();
        assert_eq!(e.field, "php.max_children");
        assert_eq!(e.rule, Rule::OutOfRange { min: 1, max: 200 });
        assert!(serde_json::from_str::<PhpSettings>(r#"{"memory_limit_mb": 1}"#).is_err());
        assert!(serde_json::from_str::<PhpSettings>(r#"{"memory_limit": 1}"#).is_err());
    }
}
