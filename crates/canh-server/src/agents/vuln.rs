//! Vulnerabilities of enrolled hosts from OSV data imported offline.
//!
//! * Import: a zip of OSV JSON records (as osv.dev publishes one per ecosystem, e.g.
//!   `Debian/all.zip`, `Ubuntu/all.zip`), a directory of `*.json` records, or one record.
//!   Only `Debian:*` and `Ubuntu:*` affected entries are kept; withdrawn records are skipped.
//! * Matching: Debian and Ubuntu records name the **source** package and give `ECOSYSTEM`
//!   ranges in source versions, so an installed binary package is matched by its source name
//!   and source version, ordered the way dpkg orders versions (epochs, `~`, binNMU `+bN`).
//!   An installed version at or above the range's `fixed` version is not a finding.
//! * Patch tasks: one per host and vulnerable source package that has a fix; `open` →
//!   `in_progress` → `done` set by people, `verified` set when a later inventory shows the
//!   fixed version (or the package gone).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use debversion::Version;
use serde::{Deserialize, Serialize};

use super::AgentsError;

/// Largest single record accepted from an archive or directory (guards against zip bombs).
const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

/// An OSV record as published (only the fields used here).
#[derive(Debug, Deserialize)]
struct OsvRecord {
    id: String,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    upstream: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    affected: Vec<OsvAffected>,
}

#[derive(Debug, Deserialize)]
struct OsvAffected {
    package: OsvPackage,
    #[serde(default)]
    ranges: Vec<OsvRange>,
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct OsvPackage {
    ecosystem: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct OsvRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<RangeEvent>,
}

/// One event of an `ECOSYSTEM` range.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RangeEvent {
    /// First affected version (`0`: every version before the next event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    /// First fixed version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// Last affected version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
}

/// A stored advisory: an OSV record reduced to its Debian/Ubuntu entries.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Advisory {
    /// OSV id (`DSA-…`, `DLA-…`, `DEBIAN-CVE-…`, `USN-…`, `UBUNTU-CVE-…`).
    pub id: String,
    /// CVE ids from `aliases` and `upstream`.
    pub cves: Vec<String>,
    /// Summary (or the first line of the details).
    pub summary: String,
    /// `modified` of the record.
    pub modified: Option<String>,
    /// Affected source packages.
    pub affected: Vec<AffectedSource>,
}

/// A source package of one release affected by an advisory.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct AffectedSource {
    /// `Debian:12`, `Ubuntu:22.04:LTS`, …
    pub ecosystem: String,
    /// Source package name.
    pub name: String,
    /// `ECOSYSTEM` ranges (other range types are dropped).
    pub ranges: Vec<Vec<RangeEvent>>,
    /// Versions listed as affected.
    pub versions: Vec<String>,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    /// JSON documents read.
    pub records_read: usize,
    /// Advisories added or replaced.
    pub imported: usize,
    /// Records without a Debian or Ubuntu entry.
    pub other_ecosystems: usize,
    /// Withdrawn records (removed from the database when present).
    pub withdrawn: usize,
    /// Documents that are not OSV records (name and reason, first 20).
    pub invalid: Vec<String>,
    /// Count of invalid documents.
    pub invalid_count: usize,
    /// Advisories in the database after the import.
    pub total: usize,
}

/// The imported advisories, indexed by ecosystem and source package.
#[derive(Clone, Debug, Default)]
pub struct VulnDb {
    advisories: BTreeMap<String, Advisory>,
    index: BTreeMap<(String, String), Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct DbFile {
    advisories: Vec<Advisory>,
}

fn convert(rec: OsvRecord) -> Option<Advisory> {
    let affected: Vec<AffectedSource> = rec
        .affected
        .into_iter()
        .filter(|a| {
            a.package.ecosystem.starts_with("Debian:") || a.package.ecosystem.starts_with("Ubuntu:")
        })
        .map(|a| AffectedSource {
            ecosystem: a.package.ecosystem,
            name: a.package.name,
            ranges: a
                .ranges
                .into_iter()
                .filter(|r| r.kind == "ECOSYSTEM")
                .map(|r| r.events)
                .collect(),
            versions: a.versions,
        })
        .collect();
    if affected.is_empty() {
        return None;
    }
    let mut cves: Vec<String> = rec
        .aliases
        .iter()
        .chain(&rec.upstream)
        .filter(|a| a.starts_with("CVE-"))
        .cloned()
        .collect();
    cves.sort();
    cves.dedup();
    let summary = rec
        .summary
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            rec.details
                .as_deref()
                .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Some(Advisory {
        id: rec.id,
        cves,
        summary,
        modified: rec.modified,
        affected,
    })
}

/// Why a range bound does not parse is not a reason to drop the record: such bounds are
/// ignored, and a version that does not parse never matches.
fn parse(v: &str) -> Option<Version> {
    v.trim().parse().ok()
}

/// Whether `v` lies in the range, and the range's fix for it.
///
/// Events are ordered by version (`introduced: 0` first), then walked: `introduced` opens,
/// `fixed` closes (exclusive), `last_affected` closes (inclusive).
pub fn range_contains(events: &[RangeEvent], v: &Version) -> Option<Option<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Introduced,
        Fixed,
        LastAffected,
    }
    let zero: Version = "0".parse().ok()?;
    let mut points: Vec<(Version, Kind, &str)> = Vec::new();
    for e in events {
        if let Some(i) = &e.introduced {
            let at = if i == "0" {
                Some(zero.clone())
            } else {
                parse(i)
            };
            if let Some(at) = at {
                points.push((at, Kind::Introduced, i));
            }
        }
        if let Some(f) = &e.fixed
            && let Some(at) = parse(f)
        {
            points.push((at, Kind::Fixed, f));
        }
        if let Some(l) = &e.last_affected
            && let Some(at) = parse(l)
        {
            points.push((at, Kind::LastAffected, l));
        }
    }
    points.sort_by(|a, b| a.0.cmp(&b.0));
    let mut open = false;
    for (i, (at, kind, _)) in points.iter().enumerate() {
        match kind {
            Kind::Introduced => {
                if !open && v >= at {
                    open = true;
                } else if v < at {
                    break;
                }
            }
            Kind::Fixed => {
                if open && v < at {
                    return Some(Some(points[i].2.to_owned()));
                }
                open = false;
            }
            Kind::LastAffected => {
                if open && v <= at {
                    let fix = points[i + 1..]
                        .iter()
                        .find(|p| p.1 == Kind::Fixed)
                        .map(|p| p.2.to_owned());
                    return Some(fix);
                }
                open = false;
            }
        }
    }
    // Open at the end: affected with no fix yet.
    open.then_some(None)
}

/// The ecosystems of a host, from `/etc/os-release` `ID` and `VERSION_ID`.
pub fn host_ecosystem_matches(os_id: &str, version_id: &str, ecosystem: &str) -> bool {
    match os_id {
        "debian" => {
            ecosystem == format!("Debian:{version_id}")
                // osv.dev spells some old releases with a minor part (`Debian:6.0`).
                || ecosystem == format!("Debian:{version_id}.0")
        }
        "ubuntu" => {
            let base = format!("Ubuntu:{version_id}");
            ecosystem == base || ecosystem.starts_with(&format!("{base}:"))
        }
        _ => false,
    }
}

/// An installed binary package as the agent reports it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct InstalledPackage {
    /// Binary package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture.
    #[serde(default)]
    pub arch: String,
    /// Source package.
    pub source: String,
    /// Source version (differs from `version` for binNMUs).
    pub source_version: String,
}

/// One advisory that applies to a package.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AdvisoryHit {
    /// OSV id.
    pub id: String,
    /// CVE ids.
    pub cves: Vec<String>,
    /// Summary.
    pub summary: String,
    /// Version that fixes it on this release (`None`: no fix published yet).
    pub fixed: Option<String>,
}

/// A vulnerable installed package.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VulnerablePackage {
    /// Binary package.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Source package.
    pub source: String,
    /// Installed source version (what is compared).
    pub source_version: String,
    /// Lowest version fixing every advisory that has a fix (the upgrade target).
    pub fixed_version: Option<String>,
    /// Advisories.
    pub advisories: Vec<AdvisoryHit>,
}

impl VulnDb {
    /// Number of advisories.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    /// Whether nothing is imported.
    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// Advisory by id.
    pub fn get(&self, id: &str) -> Option<&Advisory> {
        self.advisories.get(id)
    }

    /// Advisory counts per ecosystem.
    pub fn ecosystems(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for ((eco, _), ids) in &self.index {
            *out.entry(eco.clone()).or_insert(0) += ids.len();
        }
        out
    }

    fn insert(&mut self, adv: Advisory) {
        self.remove(&adv.id);
        for a in &adv.affected {
            let ids = self
                .index
                .entry((a.ecosystem.clone(), a.name.clone()))
                .or_default();
            if !ids.contains(&adv.id) {
                ids.push(adv.id.clone());
            }
        }
        self.advisories.insert(adv.id.clone(), adv);
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some(old) = self.advisories.remove(id) else {
            return false;
        };
        for a in &old.affected {
            let key = (a.ecosystem.clone(), a.name.clone());
            if let Some(ids) = self.index.get_mut(&key) {
                ids.retain(|x| x != id);
                if ids.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
        true
    }

    /// Adds one JSON document (an OSV record) to the database.
    fn add_document(&mut self, name: &str, bytes: &[u8], report: &mut ImportReport) {
        report.records_read += 1;
        match serde_json::from_slice::<OsvRecord>(bytes) {
            Ok(rec) if rec.withdrawn.is_some() => {
                report.withdrawn += 1;
                self.remove(&rec.id);
            }
            Ok(rec) => match convert(rec) {
                Some(adv) => {
                    report.imported += 1;
                    self.insert(adv);
                }
                None => report.other_ecosystems += 1,
            },
            Err(e) => {
                report.invalid_count += 1;
                if report.invalid.len() < 20 {
                    report.invalid.push(format!("{name}: {e}"));
                }
            }
        }
    }

    /// Imports OSV records from bytes: a zip archive (by its magic) or one JSON record.
    pub fn import_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<ImportReport, AgentsError> {
        let mut report = ImportReport::default();
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
                .map_err(|e| AgentsError::Invalid(format!("{name}: not a readable zip: {e}")))?;
            for i in 0..zip.len() {
                let mut entry = zip
                    .by_index(i)
                    .map_err(|e| AgentsError::Invalid(format!("{name}: entry {i}: {e}")))?;
                if !entry.is_file() || !entry.name().ends_with(".json") {
                    continue;
                }
                let entry_name = entry.name().to_owned();
                let mut buf = Vec::new();
                (&mut entry)
                    .take(MAX_RECORD_BYTES + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| AgentsError::Invalid(format!("{name}: {entry_name}: {e}")))?;
                if buf.len() as u64 > MAX_RECORD_BYTES {
                    report.invalid_count += 1;
                    report
                        .invalid
                        .push(format!("{entry_name}: record too large"));
                    continue;
                }
                self.add_document(&entry_name, &buf, &mut report);
            }
        } else {
            self.add_document(name, bytes, &mut report);
        }
        report.total = self.len();
        Ok(report)
    }

    /// Imports a zip, a `*.json` record, or a directory (searched recursively for `*.json`).
    pub fn import_path(&mut self, path: &Path) -> Result<ImportReport, AgentsError> {
        let meta =
            std::fs::metadata(path).map_err(super::io(format!("reading {}", path.display())))?;
        if !meta.is_dir() {
            let bytes =
                std::fs::read(path).map_err(super::io(format!("reading {}", path.display())))?;
            return self.import_bytes(&path.display().to_string(), &bytes);
        }
        let mut report = ImportReport::default();
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries =
                std::fs::read_dir(&dir).map_err(super::io(format!("listing {}", dir.display())))?;
            let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            for p in files {
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "json") {
                    let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                    if len > MAX_RECORD_BYTES {
                        report.invalid_count += 1;
                        report
                            .invalid
                            .push(format!("{}: record too large", p.display()));
                        continue;
                    }
                    let bytes =
                        std::fs::read(&p).map_err(super::io(format!("reading {}", p.display())))?;
                    self.add_document(&p.display().to_string(), &bytes, &mut report);
                }
            }
        }
        report.total = self.len();
        Ok(report)
    }

    /// Loads the database file (empty when missing).
    pub fn load(path: &Path) -> Result<Self, AgentsError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(super::io(format!("reading {}", path.display()))(e)),
        };
        let file: DbFile = serde_json::from_slice(&bytes)
            .map_err(|e| AgentsError::Invalid(format!("{}: {e}", path.display())))?;
        let mut db = Self::default();
        for adv in file.advisories {
            db.insert(adv);
        }
        Ok(db)
    }

    /// Writes the database file atomically.
    pub fn save(&self, path: &Path) -> Result<(), AgentsError> {
        let file = DbFile {
            advisories: self.advisories.values().cloned().collect(),
        };
        let json = serde_json::to_vec(&file).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        super::write_atomic(path, &json, 0o644)
    }

    /// Vulnerable packages of a host running `os_id` `version_id` (os-release `ID`,
    /// `VERSION_ID`), ordered by package name.
    pub fn match_host(
        &self,
        os_id: &str,
        version_id: &str,
        packages: &[InstalledPackage],
    ) -> Vec<VulnerablePackage> {
        let ecosystems: Vec<&String> = self
            .index
            .keys()
            .map(|(eco, _)| eco)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|eco| host_ecosystem_matches(os_id, version_id, eco))
            .collect();
        let mut out = Vec::new();
        for p in packages {
            let Some(installed) = parse(&p.source_version) else {
                continue;
            };
            let mut hits: Vec<AdvisoryHit> = Vec::new();
            for eco in &ecosystems {
                let Some(ids) = self.index.get(&((*eco).clone(), p.source.clone())) else {
                    continue;
                };
                for id in ids {
                    let Some(adv) = self.advisories.get(id) else {
                        continue;
                    };
                    for a in adv
                        .affected
                        .iter()
                        .filter(|a| &a.ecosystem == *eco && a.name == p.source)
                    {
                        let listed = a
                            .versions
                            .iter()
                            .any(|x| parse(x).is_some_and(|xv| xv == installed));
                        let in_range = a.ranges.iter().find_map(|r| range_contains(r, &installed));
                        let fixed = match (in_range, listed) {
                            (Some(fix), _) => fix,
                            (None, true) => None,
                            (None, false) => continue,
                        };
                        if hits.iter().any(|h| h.id == adv.id) {
                            continue;
                        }
                        hits.push(AdvisoryHit {
                            id: adv.id.clone(),
                            cves: adv.cves.clone(),
                            summary: adv.summary.clone(),
                            fixed,
                        });
                    }
                }
            }
            if hits.is_empty() {
                continue;
            }
            hits.sort_by(|a, b| a.id.cmp(&b.id));
            let fixed_version = hits
                .iter()
                .filter_map(|h| h.fixed.as_deref())
                .filter_map(|f| parse(f).map(|v| (v, f)))
                .max_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, f)| f.to_owned());
            out.push(VulnerablePackage {
                name: p.name.clone(),
                version: p.version.clone(),
                source: p.source.clone(),
                source_version: p.source_version.clone(),
                fixed_version,
                advisories: hits,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Status of a patch task.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PatchStatus {
    /// Found, nobody on it yet.
    Open,
    /// Someone is patching.
    InProgress,
    /// Reported patched, not yet confirmed by an inventory.
    Done,
    /// A later inventory shows the fixed version (or the package removed).
    Verified,
}

/// Upgrading one source package on one host.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct PatchTask {
    /// Task id.
    pub id: u64,
    /// Host.
    pub agent_id: String,
    /// Source package to upgrade.
    pub source: String,
    /// Binary packages of that source installed on the host.
    pub packages: Vec<String>,
    /// Source version installed when the task was last updated.
    pub installed_version: String,
    /// Version to reach.
    pub target_version: String,
    /// Advisories it closes.
    pub advisories: Vec<String>,
    /// Status.
    pub status: PatchStatus,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Who changed the status last (`inventory` for verification).
    pub updated_by: String,
    /// Free-text note.
    #[serde(default)]
    pub note: String,
}

/// Per vulnerable source: binaries, installed source version, target, advisories.
type Wanted = (Vec<String>, String, String, Vec<String>);

/// Every patch task.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PatchBook {
    next_id: u64,
    tasks: Vec<PatchTask>,
}

impl PatchBook {
    /// Tasks of one host (every host when `None`), newest first.
    pub fn list(&self, agent_id: Option<&str>) -> Vec<PatchTask> {
        let mut v: Vec<PatchTask> = self
            .tasks
            .iter()
            .filter(|t| agent_id.is_none_or(|a| t.agent_id == a))
            .cloned()
            .collect();
        v.sort_by_key(|t| std::cmp::Reverse(t.id));
        v
    }

    /// Changes a task's status by hand (`open`, `in_progress` or `done`).
    pub fn set_status(
        &mut self,
        id: u64,
        status: PatchStatus,
        by: &str,
        note: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<PatchTask, AgentsError> {
        if status == PatchStatus::Verified {
            return Err(AgentsError::Invalid(
                "verified is set by the next inventory, not by hand".into(),
            ));
        }
        let t = self
            .tasks
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| AgentsError::NotFound(format!("patch task {id}")))?;
        if t.status == PatchStatus::Verified {
            return Err(AgentsError::Invalid("the task is already verified".into()));
        }
        t.status = status;
        t.updated_at = now;
        t.updated_by = by.to_owned();
        if let Some(n) = note {
            t.note = n;
        }
        Ok(t.clone())
    }

    /// Brings the host's tasks in line with its findings from a fresh inventory: new tasks for
    /// newly vulnerable sources, targets raised, and tasks whose source now meets the target
    /// (or is gone) verified. Returns whether anything changed.
    pub fn reconcile(
        &mut self,
        agent_id: &str,
        findings: &[VulnerablePackage],
        packages: &[InstalledPackage],
        now: DateTime<Utc>,
    ) -> bool {
        let mut changed = false;
        // Per source: binaries, installed source version, highest target, advisories.
        let mut wanted: BTreeMap<&str, Wanted> = BTreeMap::new();
        for f in findings {
            let Some(target) = &f.fixed_version else {
                continue;
            };
            let e = wanted.entry(f.source.as_str()).or_insert_with(|| {
                (
                    Vec::new(),
                    f.source_version.clone(),
                    target.clone(),
                    Vec::new(),
                )
            });
            if !e.0.contains(&f.name) {
                e.0.push(f.name.clone());
            }
            if parse(target) > parse(&e.2) {
                e.2 = target.clone();
            }
            for a in f.advisories.iter().filter(|a| a.fixed.is_some()) {
                if !e.3.contains(&a.id) {
                    e.3.push(a.id.clone());
                }
            }
        }
        for t in self
            .tasks
            .iter_mut()
            .filter(|t| t.agent_id == agent_id && t.status != PatchStatus::Verified)
        {
            if let Some((bins, installed, target, advs)) = wanted.remove(t.source.as_str()) {
                let raise = parse(&target) > parse(&t.target_version);
                if raise || t.installed_version != installed || t.packages != bins {
                    if raise {
                        t.target_version = target;
                    }
                    t.installed_version = installed;
                    t.packages = bins;
                    for a in advs {
                        if !t.advisories.contains(&a) {
                            t.advisories.push(a);
                        }
                    }
                    t.updated_at = now;
                    changed = true;
                }
                continue;
            }
            // No longer vulnerable: check the installed version really reaches the target.
            let installed = packages
                .iter()
                .filter(|p| p.source == t.source)
                .filter_map(|p| parse(&p.source_version).map(|v| (v, p.source_version.clone())))
                .min_by(|a, b| a.0.cmp(&b.0));
            let target = parse(&t.target_version);
            let reached = match (&installed, &target) {
                (None, _) => true,
                (Some((v, _)), Some(tv)) => v >= tv,
                (Some(_), None) => false,
            };
            if reached {
                t.status = PatchStatus::Verified;
                t.updated_at = now;
                t.updated_by = "inventory".into();
                match installed {
                    Some((_, text)) => t.installed_version = text,
                    None => t.note = "package no longer installed".into(),
                }
                changed = true;
            }
        }
        for (source, (packages, installed, target, advisories)) in wanted {
            self.next_id += 1;
            self.tasks.push(PatchTask {
                id: self.next_id,
                agent_id: agent_id.to_owned(),
                source: source.to_owned(),
                packages,
                installed_version: installed,
                target_version: target,
                advisories,
                status: PatchStatus::Open,
                created_at: now,
                updated_at: now,
                updated_by: "inventory".into(),
                note: String::new(),
            });
            changed = true;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn ev(i: Option<&str>, f: Option<&str>, l: Option<&str>) -> RangeEvent {
        RangeEvent {
            introduced: i.map(Into::into),
            fixed: f.map(Into::into),
            last_affected: l.map(Into::into),
        }
    }

    #[test]
    fn ranges_follow_dpkg_ordering() {
        let r = [
            ev(Some("0"), None, None),
            ev(None, Some("2.36-9+deb12u3"), None),
        ];
        assert_eq!(
            range_contains(&r, &v("2.36-9+deb12u2")),
            Some(Some("2.36-9+deb12u3".into()))
        );
        assert_eq!(range_contains(&r, &v("2.36-9+deb12u3")), None);
        assert_eq!(range_contains(&r, &v("2.36-9+deb12u10")), None);
        // `~` sorts before the end: an rc is older than the fix.
        let r = [ev(Some("0"), None, None), ev(None, Some("1.0"), None)];
        assert!(range_contains(&r, &v("1.0~rc1")).is_some());
        // Epoch dominates.
        let r = [
            ev(Some("0"), None, None),
            ev(None, Some("1:9.2p1-2+deb12u3"), None),
        ];
        assert!(range_contains(&r, &v("9.9p1-1")).is_some());
        assert!(range_contains(&r, &v("1:9.2p1-2+deb12u3")).is_none());
        // binNMU of the fixed version is fixed.
        let r = [ev(Some("0"), None, None), ev(None, Some("5.2.15-2"), None)];
        assert!(range_contains(&r, &v("5.2.15-2+b8")).is_none());
        // Introduced later than installed.
        let r = [ev(Some("2.0-1"), None, None), ev(None, Some("2.0-3"), None)];
        assert!(range_contains(&r, &v("1.9-1")).is_none());
        assert!(range_contains(&r, &v("2.0-2")).is_some());
        // last_affected is inclusive, no fix known.
        let r = [ev(Some("0"), None, None), ev(None, None, Some("1.2-1"))];
        assert_eq!(range_contains(&r, &v("1.2-1")), Some(None));
        assert_eq!(range_contains(&r, &v("1.2-2")), None);
        // Open range: every version affected, no fix.
        let r = [ev(Some("0"), None, None)];
        assert_eq!(range_contains(&r, &v("99")), Some(None));
    }

    #[test]
    fn ecosystems_of_hosts() {
        assert!(host_ecosystem_matches("debian", "12", "Debian:12"));
        assert!(!host_ecosystem_matches("debian", "12", "Debian:11"));
        assert!(!host_ecosystem_matches("debian", "1", "Debian:12"));
        assert!(host_ecosystem_matches(
            "ubuntu",
            "22.04",
            "Ubuntu:22.04:LTS"
        ));
        assert!(!host_ecosystem_matches(
            "ubuntu",
            "22.04",
            "Ubuntu:Pro:22.04:LTS"
        ));
        assert!(!host_ecosystem_matches("ubuntu", "22.04", "Ubuntu:22.10"));
        assert!(!host_ecosystem_matches("fedora", "40", "Debian:12"));
    }

    #[test]
    fn withdrawn_and_foreign_records_are_not_imported() {
        let mut db = VulnDb::default();
        let r = db
            .import_bytes(
                "a.json",
                br#"{"id":"GHSA-x","affected":[{"package":{"ecosystem":"npm","name":"a"}}]}"#,
            )
            .unwrap();
        assert_eq!((r.imported, r.other_ecosystems), (0, 1));
        let rec = br#"{"id":"DSA-1-1","affected":[{"package":{"ecosystem":"Debian:12","name":"a"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.0-2"}]}]}]}"#;
        db.import_bytes("b.json", rec).unwrap();
        assert_eq!(db.len(), 1);
        let w = br#"{"id":"DSA-1-1","withdrawn":"2024-01-01T00:00:00Z","affected":[]}"#;
        let r = db.import_bytes("c.json", w).unwrap();
        assert_eq!(r.withdrawn, 1);
        assert!(db.is_empty());
        let r = db.import_bytes("d.json", b"not json").unwrap();
        assert_eq!(r.invalid_count, 1);
    }

    proptest! {
        #[test]
        fn import_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut db = VulnDb::default();
            let _ = db.import_bytes("x", &bytes);
            let mut zipish = b"PK\x03\x04".to_vec();
            zipish.extend_from_slice(&bytes);
            prop_assert!(db.import_bytes("z", &zipish).is_err() || db.len() < 1000);
        }

        #[test]
        fn range_check_never_panics(i in "[0-9a-z.:~+-]{0,12}", f in "[0-9a-z.:~+-]{0,12}", x in "[0-9][0-9a-z.~+]{0,10}") {
            let r = [ev(Some(&i), None, None), ev(None, Some(&f), Some(&i))];
            if let Ok(xv) = x.parse::<Version>() {
                let _ = range_contains(&r, &xv);
            }
        }
    }
}
