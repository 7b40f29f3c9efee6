//! The regulation's four incident severities.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Incident and alert severity, as the regulation names them (low, medium, high, emergency).
///
/// ```
/// use canh_core::Severity;
/// assert_eq!("high".parse::<Severity>().unwrap(), Severity::High);
/// assert!(Severity::Emergency > Severity::Low);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Thấp.
    Low,
    /// Trung bình.
    Medium,
    /// Cao.
    High,
    /// Khẩn cấp.
    Emergency,
}

impl Severity {
    /// All levels, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Emergency,
    ];

    /// The stable id used in config, API and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Emergency => "emergency",
        }
    }

    /// The Vietnamese name shown to users.
    pub fn name_vi(self) -> &'static str {
        match self {
            Severity::Low => "Thấp",
            Severity::Medium => "Trung bình",
            Severity::High => "Cao",
            Severity::Emergency => "Khẩn cấp",
        }
    }

    /// The severity a Sigma rule level maps to (documented in `docs/schema.md`):
    /// informational and low → low, medium → medium, high → high, critical → emergency.
    pub fn from_sigma_level(level: &str) -> Option<Severity> {
        match level.to_ascii_lowercase().as_str() {
            "informational" | "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Emergency),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no severity.
#[derive(Debug, thiserror::Error)]
#[error("unknown severity {0:?} (expected low, medium, high or emergency)")]
pub struct SeverityError(String);

impl FromStr for Severity {
    type Err = SeverityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" | "thap" | "thấp" => Ok(Severity::Low),
            "medium" | "trung bình" => Ok(Severity::Medium),
            "high" | "cao" => Ok(Severity::High),
            "emergency" | "critical" | "khẩn cấp" => Ok(Severity::Emergency),
            _ => Err(SeverityError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_levels_map_to_the_four_severities() {
        assert_eq!(
            Severity::from_sigma_level("informational"),
            Some(Severity::Low)
        );
        assert_eq!(
            Severity::from_sigma_level("critical"),
            Some(Severity::Emergency)
        );
        assert_eq!(Severity::from_sigma_level("bogus"), None);
    }

    #[test]
    fn ids_round_trip() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>().unwrap(), s);
        }
    }
}
