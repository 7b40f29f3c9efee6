//! Regulation profiles: deadlines, hierarchy levels, severities, the seven steps and role
//! names are data, loaded from TOML and validated before use.

use crate::error::{Result, SoarError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// The profiles shipped with Canh (`profiles/` at the repository root).
pub const BUNDLED: &[(&str, &str)] = &[
    (
        "vn-tt20-2017",
        include_str!("../../../profiles/vn-tt20-2017.toml"),
    ),
    ("vn-2025", include_str!("../../../profiles/vn-2025.toml")),
];

/// The profile used for new incidents unless configured otherwise.
pub const DEFAULT_PROFILE: &str = "vn-tt20-2017";

/// The four severities every profile must define, lowest first.
pub const SEVERITY_IDS: [&str; 4] = ["low", "medium", "high", "emergency"];
/// The seven steps every profile must define, in order.
pub const STEP_IDS: [&str; 7] = [
    "record",
    "analyse",
    "contain",
    "collect_evidence",
    "remove_cause",
    "recover",
    "post_incident",
];
/// The roles every profile must name.
pub const ROLE_IDS: [&str; 5] = [
    "administrator",
    "soc_lead",
    "analyst",
    "agency_viewer",
    "auditor",
];

/// One regulation profile.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegulationProfile {
    /// Stable id, e.g. `vn-tt20-2017`.
    pub id: String,
    /// Raised on every change; incidents store it.
    pub version: i64,
    /// Name in Vietnamese.
    pub name_vi: String,
    /// Name in English.
    pub name_en: String,
    /// Reporting deadlines.
    pub deadlines: Deadlines,
    /// Levels of the agency tree.
    pub levels: Vec<Level>,
    /// The four severities.
    pub severities: Vec<Labelled>,
    /// The seven steps.
    pub steps: Vec<Labelled>,
    /// Display names of the fixed roles.
    pub roles: BTreeMap<String, RoleName>,
}

/// The three clocks of TT20 Đ9.2.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    /// Incident notice (thông báo sự cố).
    pub notice: Deadline,
    /// Initial report when beyond capacity (báo cáo ban đầu).
    pub initial_report: Deadline,
    /// Closing report after the response (báo cáo kết thúc ứng phó).
    pub closing_report: Deadline,
}

/// What starts a deadline clock.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// The incident's detection time.
    Detected,
    /// The moment the incident was flagged as beyond the operator's capacity.
    BeyondCapacity,
    /// The end of the response (leaving the recover step).
    ResponseEnded,
}

/// One deadline.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deadline {
    /// What starts the clock.
    pub after: Anchor,
    /// Hours allowed (> 0).
    pub hours: i64,
    /// False when the figure comes from a secondary source or a reading of "immediately".
    pub confirmed: bool,
    /// Legal source.
    #[serde(default)]
    pub source: String,
    /// Name in Vietnamese.
    pub name_vi: String,
    /// Name in English.
    pub name_en: String,
}

/// A level of the agency hierarchy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// Stable id (`province`, `district`, `commune`, `department`).
    pub id: String,
    /// Name in Vietnamese.
    pub name_vi: String,
    /// Name in English.
    pub name_en: String,
    /// Levels an agency of this level may sit under; empty = a root.
    pub parents: Vec<String>,
}

/// A severity or a step: id plus names and an optional definition.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Labelled {
    /// Stable id.
    pub id: String,
    /// Name in Vietnamese.
    pub name_vi: String,
    /// Name in English.
    pub name_en: String,
    /// Definition in Vietnamese.
    #[serde(default)]
    pub description_vi: String,
    /// Definition in English.
    #[serde(default)]
    pub description_en: String,
}

/// Display names of a role.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleName {
    /// Name in Vietnamese.
    pub name_vi: String,
    /// Name in English.
    pub name_en: String,
}

impl RegulationProfile {
    /// Parses and validates a profile; errors name the offending key.
    pub fn from_toml(text: &str) -> Result<Self> {
        let profile: RegulationProfile = toml::from_str(text)
            .map_err(|e| SoarError::Invalid(format!("regulation profile: {e}")))?;
        profile.validate()?;
        Ok(profile)
    }

    /// Loads a profile file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| SoarError::io(path, e))?;
        Self::from_toml(&text).map_err(|e| match e {
            SoarError::Invalid(m) => SoarError::Invalid(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(SoarError::Invalid(format!("{key}: {why}")));
        if self.id.is_empty()
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("id", "must be non-empty ASCII letters, digits and '-'");
        }
        if self.version < 1 {
            return bad("version", "must be >= 1");
        }
        for (key, d) in [
            ("deadlines.notice", &self.deadlines.notice),
            ("deadlines.initial_report", &self.deadlines.initial_report),
            ("deadlines.closing_report", &self.deadlines.closing_report),
        ] {
            if d.hours <= 0 {
                return bad(&format!("{key}.hours"), "must be > 0");
            }
        }
        let ids: Vec<&str> = self.severities.iter().map(|s| s.id.as_str()).collect();
        if ids != SEVERITY_IDS {
            return bad(
                "severities",
                "must define low, medium, high, emergency in this order",
            );
        }
        let ids: Vec<&str> = self.steps.iter().map(|s| s.id.as_str()).collect();
        if ids != STEP_IDS {
            return bad(
                "steps",
                "must define the seven steps record … post_incident in order",
            );
        }
        for (i, s) in self.severities.iter().enumerate() {
            if s.description_vi.trim().is_empty() || s.description_en.trim().is_empty() {
                return bad(
                    &format!("severities[{i}].description_vi"),
                    "definitions are required",
                );
            }
        }
        let mut seen = HashSet::new();
        for (i, level) in self.levels.iter().enumerate() {
            if !seen.insert(level.id.as_str()) {
                return bad(&format!("levels[{i}].id"), "duplicate level");
            }
        }
        if !self.levels.iter().any(|l| l.parents.is_empty()) {
            return bad("levels", "needs at least one root level (parents = [])");
        }
        for (i, level) in self.levels.iter().enumerate() {
            for p in &level.parents {
                if !seen.contains(p.as_str()) {
                    return bad(
                        &format!("levels[{i}].parents"),
                        &format!("unknown level {p:?}"),
                    );
                }
            }
        }
        for role in ROLE_IDS {
            if !self.roles.contains_key(role) {
                return bad(&format!("roles.{role}"), "missing");
            }
        }
        if let Some(k) = self.roles.keys().find(|k| !ROLE_IDS.contains(&k.as_str())) {
            return bad(&format!("roles.{k}"), "unknown role");
        }
        Ok(())
    }

    /// The level with this id.
    pub fn level(&self, id: &str) -> Option<&Level> {
        self.levels.iter().find(|l| l.id == id)
    }
}

/// The loaded profiles and the one used for new incidents.
#[derive(Clone, Debug)]
pub struct ProfileSet {
    profiles: Vec<Arc<RegulationProfile>>,
    active: Arc<RegulationProfile>,
}

impl ProfileSet {
    /// The bundled profiles, `active` (by id) used for new incidents.
    pub fn bundled(active: &str) -> Result<Self> {
        let mut profiles = Vec::new();
        for (_, text) in BUNDLED {
            profiles.push(RegulationProfile::from_toml(text)?);
        }
        Self::new(profiles, active)
    }

    /// The bundled profiles plus every `*.toml` in `dir` (a file with the same id and version as
    /// another profile is refused).
    pub fn with_dir(dir: &Path, active: &str) -> Result<Self> {
        let mut profiles = Vec::new();
        for (_, text) in BUNDLED {
            profiles.push(RegulationProfile::from_toml(text)?);
        }
        let entries = std::fs::read_dir(dir).map_err(|e| SoarError::io(dir, e))?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        {
            let p = RegulationProfile::load(path)?;
            // A file identical to a bundled profile is not a duplicate.
            if profiles.iter().any(|q| q == &p) {
                continue;
            }
            profiles.push(p);
        }
        Self::new(profiles, active)
    }

    /// A set from explicit profiles.
    pub fn new(profiles: Vec<RegulationProfile>, active: &str) -> Result<Self> {
        let mut seen = HashSet::new();
        for p in &profiles {
            if !seen.insert((p.id.clone(), p.version)) {
                return Err(SoarError::Invalid(format!(
                    "regulation profile {} version {} defined twice",
                    p.id, p.version
                )));
            }
        }
        let profiles: Vec<Arc<RegulationProfile>> = profiles.into_iter().map(Arc::new).collect();
        let active = profiles
            .iter()
            .filter(|p| p.id == active)
            .max_by_key(|p| p.version)
            .cloned()
            .ok_or_else(|| {
                SoarError::Invalid(format!("soar.profile: unknown profile {active:?}"))
            })?;
        Ok(Self { profiles, active })
    }

    /// The profile for new incidents.
    pub fn active(&self) -> &Arc<RegulationProfile> {
        &self.active
    }

    /// A profile by id and version.
    pub fn get(&self, id: &str, version: i64) -> Option<&Arc<RegulationProfile>> {
        self.profiles
            .iter()
            .find(|p| p.id == id && p.version == version)
    }

    /// Every loaded profile.
    pub fn all(&self) -> &[Arc<RegulationProfile>] {
        &self.profiles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_profiles_load_and_validate() {
        let set = ProfileSet::bundled(DEFAULT_PROFILE).unwrap();
        assert_eq!(set.active().id, "vn-tt20-2017");
        assert_eq!(set.active().deadlines.notice.hours, 120);
        assert!(set.active().deadlines.notice.confirmed);
        let new = set.all().iter().find(|p| p.id == "vn-2025").unwrap();
        assert!(!new.deadlines.notice.confirmed);
        assert!(new.level("district").is_none());
        assert_eq!(
            new.level("commune").unwrap().parents,
            vec!["province".to_string()]
        );
        assert_eq!(
            set.active().level("commune").unwrap().parents,
            vec!["district".to_string()]
        );
    }

    #[test]
    fn negative_deadline_is_refused_naming_the_key() {
        let text = BUNDLED[0].1.replacen("hours = 120", "hours = -5", 1);
        let err = RegulationProfile::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("deadlines.notice.hours"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused_naming_it() {
        let text =
            BUNDLED[0]
                .1
                .replacen("confirmed = true", "confirmed = true\nrecipient = \"x\"", 1);
        let err = RegulationProfile::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("recipient"), "{err}");
    }

    #[test]
    fn unknown_parent_level_and_missing_role_are_refused() {
        let text = BUNDLED[0]
            .1
            .replacen("parents = [\"district\"]", "parents = [\"huyen\"]", 1);
        let err = RegulationProfile::from_toml(&text).unwrap_err().to_string();
        assert!(
            err.contains("levels[3].parents") && err.contains("huyen"),
            "{err}"
        );
        let text = BUNDLED[0]
            .1
            .replacen("[roles.auditor]", "[roles.nobody]", 1);
        let err = RegulationProfile::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("roles.auditor"), "{err}");
    }

    #[test]
    fn unknown_active_profile_is_refused() {
        let err = ProfileSet::bundled("vn-1999").unwrap_err().to_string();
        assert!(err.contains("vn-1999"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn profile_parser_never_panics(text in "\\PC{0,400}") {
            let _ = RegulationProfile::from_toml(&text);
        }

        #[test]
        fn profile_parser_never_panics_on_mutated_profiles(cut in 0usize..4000, junk in "\\PC{0,20}") {
            let base = BUNDLED[0].1;
            let at = base.char_indices().map(|(i, _)| i).nth(cut % base.chars().count()).unwrap_or(0);
            let text = format!("{}{junk}{}", &base[..at], &base[at..]);
            let _ = RegulationProfile::from_toml(&text);
        }
    }
}
