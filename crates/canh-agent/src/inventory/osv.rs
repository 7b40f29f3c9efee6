//! Matching installed packages against OSV records of the `Debian:N` ecosystem.
//!
//! Debian's OSV records name the **source** package and give `ECOSYSTEM` ranges in source
//! versions, so a package is matched by its source name and its source version compared with
//! dpkg ordering; an installed version at or above `fixed` is not a finding.

use serde::Deserialize;

use super::Package;
use super::debversion::DebVersion;

/// The part of an OSV record used here.
#[derive(Clone, Debug, Deserialize)]
pub struct OsvRecord {
    /// Record id (`DEBIAN-CVE-…`, `DSA-…`, `DLA-…`).
    pub id: String,
    /// Other ids (often empty for `DEBIAN-CVE-*`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Upstream ids (the CVE for `DEBIAN-CVE-*`).
    #[serde(default)]
    pub upstream: Vec<String>,
    /// Summary.
    #[serde(default)]
    pub summary: String,
    /// Affected packages.
    #[serde(default)]
    pub affected: Vec<Affected>,
}

/// One affected package.
#[derive(Clone, Debug, Deserialize)]
pub struct Affected {
    /// Ecosystem and name.
    pub package: OsvPackage,
    /// Version ranges.
    #[serde(default)]
    pub ranges: Vec<Range>,
    /// Explicitly listed affected versions.
    #[serde(default)]
    pub versions: Vec<String>,
}

/// Package coordinates.
#[derive(Clone, Debug, Deserialize)]
pub struct OsvPackage {
    /// `Debian:12`, …
    pub ecosystem: String,
    /// Source package name.
    pub name: String,
}

/// A range.
#[derive(Clone, Debug, Deserialize)]
pub struct Range {
    /// `ECOSYSTEM` for Debian.
    #[serde(rename = "type")]
    pub kind: String,
    /// Events in order.
    #[serde(default)]
    pub events: Vec<RangeEvent>,
}

/// `introduced` / `fixed` / `last_affected`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RangeEvent {
    /// First affected version (`0` = all before).
    pub introduced: Option<String>,
    /// First fixed version.
    pub fixed: Option<String>,
    /// Last affected version.
    pub last_affected: Option<String>,
}

/// A vulnerable installed package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// OSV id.
    pub id: String,
    /// CVE ids found in `aliases`/`upstream`.
    pub cves: Vec<String>,
    /// Binary package.
    pub package: String,
    /// Installed (source) version compared.
    pub installed: String,
    /// Fixed version, when one exists.
    pub fixed: Option<String>,
}

fn in_range(v: &DebVersion, r: &Range) -> bool {
    if r.kind != "ECOSYSTEM" {
        return false;
    }
    let mut affected = false;
    for ev in &r.events {
        if let Some(i) = &ev.introduced {
            let start = i == "0" || i.parse::<DebVersion>().is_ok_and(|iv| *v >= iv);
            if start {
                affected = true;
            }
        }
        if let Some(f) = &ev.fixed
            && f.parse::<DebVersion>().is_ok_and(|fv| *v >= fv)
        {
            affected = false;
        }
        if let Some(l) = &ev.last_affected
            && l.parse::<DebVersion>().is_ok_and(|lv| *v > lv)
        {
            affected = false;
        }
    }
    affected
}

/// Findings for `packages` on a host running Debian `release` (e.g. `12`).
pub fn match_packages(records: &[OsvRecord], packages: &[Package], release: &str) -> Vec<Finding> {
    let ecosystem = format!("Debian:{release}");
    let mut out = Vec::new();
    for rec in records {
        for aff in rec
            .affected
            .iter()
            .filter(|a| a.package.ecosystem == ecosystem)
        {
            for p in packages.iter().filter(|p| p.source == aff.package.name) {
                let Ok(v) = p.source_version.parse::<DebVersion>() else {
                    continue;
                };
                let listed = aff.versions.iter().any(|x| x == &p.source_version);
                if !listed && !aff.ranges.iter().any(|r| in_range(&v, r)) {
                    continue;
                }
                let fixed = aff
                    .ranges
                    .iter()
                    .flat_map(|r| r.events.iter())
                    .find_map(|e| e.fixed.clone());
                let cves = rec
                    .aliases
                    .iter()
                    .chain(&rec.upstream)
                    .filter(|a| a.starts_with("CVE-"))
                    .cloned()
                    .collect();
                out.push(Finding {
                    id: rec.id.clone(),
                    cves,
                    package: p.name.clone(),
                    installed: p.source_version.clone(),
                    fixed,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<OsvRecord> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/osv");
        let mut recs = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                recs.push(serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap());
            }
        }
        recs.sort_by(|a: &OsvRecord, b| a.id.cmp(&b.id));
        recs
    }

    fn pkg(name: &str, source: &str, version: &str, source_version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: source.into(),
            source_version: source_version.into(),
        }
    }

    #[test]
    fn findings_follow_source_package_and_dpkg_ordering() {
        let pkgs = vec![
            pkg("libssl3", "openssl", "3.0.11-1~deb12u2", "3.0.11-1~deb12u2"),
            pkg("openssl", "openssl", "3.0.11-1~deb12u2", "3.0.11-1~deb12u2"),
            pkg("bash", "bash", "5.2.15-2+b8", "5.2.15-2+b8"),
            pkg(
                "libxml2",
                "libxml2",
                "2.9.14+dfsg-1.3~deb12u1",
                "2.9.14+dfsg-1.3~deb12u1",
            ),
            pkg("zlib1g", "zlib", "1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1"),
        ];
        let f = match_packages(&records(), &pkgs, "12");
        let ids: Vec<(&str, &str)> = f
            .iter()
            .map(|x| (x.id.as_str(), x.package.as_str()))
            .collect();
        // openssl: fixed 3.0.15-1~deb12u1 > installed → both binaries of the source flagged.
        assert!(ids.contains(&("synthetic-DEBIAN-CVE-2024-5535", "libssl3")));
        assert!(ids.contains(&("synthetic-DEBIAN-CVE-2024-5535", "openssl")));
        // bash: binNMU 5.2.15-2+b8 ≥ fixed 5.2.15-2 → no finding.
        assert!(!ids.iter().any(|(_, p)| *p == "bash"));
        // libxml2: record only for Debian:11 → no finding on 12.
        assert!(!ids.iter().any(|(_, p)| *p == "libxml2"));
        // zlib: epoch 1 installed vs fixed without epoch → installed is newer → no finding.
        assert!(!ids.iter().any(|(_, p)| *p == "zlib1g"));
        assert_eq!(f.len(), 2);
        let cve = &f[0].cves;
        assert_eq!(cve, &vec!["CVE-2024-5535".to_owned()]);
        assert_eq!(f[0].fixed.as_deref(), Some("3.0.15-1~deb12u1"));
    }

    #[test]
    fn an_installed_fixed_version_is_not_a_finding() {
        let pkgs = vec![pkg(
            "libssl3",
            "openssl",
            "3.0.15-1~deb12u1",
            "3.0.15-1~deb12u1",
        )];
        assert!(match_packages(&records(), &pkgs, "12").is_empty());
    }
}
