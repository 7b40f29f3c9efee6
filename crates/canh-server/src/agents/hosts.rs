//! Per-host inventory received from agents, and what it means: vulnerable packages, patch tasks
//! and configuration-check results.
//!
//! The agent sends its inventory as ordinary events on the event stream (so it is also
//! searchable): `event.action: package-inventory` carries every installed package with its
//! source package, and `event.action: config-assessment` the configuration-check results.
//! After a batch is stored, the latest of each is kept per host under
//! `<data>/agents/inventory/<agent_id>.json` and the host's findings and patch tasks are
//! recomputed.

use std::path::{Path, PathBuf};

use canh_core::Event;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use super::vuln::{
    ImportReport, InstalledPackage, PatchStatus, PatchTask, VulnDb, VulnerablePackage,
};
use super::{AgentService, AgentsError, Inner, lock};

/// `event.action` of the package inventory event.
pub const PACKAGE_INVENTORY: &str = "package-inventory";
/// `event.action` of the configuration-check event.
pub const CONFIG_ASSESSMENT: &str = "config-assessment";

/// The latest inventory of a host.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct HostInventory {
    /// When the package list arrived.
    pub packages_at: Option<DateTime<Utc>>,
    /// os-release `ID` (`debian`, `ubuntu`).
    pub os_id: String,
    /// os-release `VERSION_ID` (`12`, `22.04`).
    pub os_version: String,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Installed packages.
    pub packages: Vec<InstalledPackage>,
    /// When the configuration checks arrived.
    pub config_checks_at: Option<DateTime<Utc>>,
    /// Configuration-check results as the agent sent them.
    pub config_checks: Value,
}

/// A host's vulnerable packages.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HostVulnerabilities {
    /// Agent.
    pub agent_id: String,
    /// os-release `ID` and `VERSION_ID` the matching used.
    pub os: String,
    /// When the package list the matching used arrived (`None`: no inventory yet).
    pub inventory_at: Option<DateTime<Utc>>,
    /// Packages installed.
    pub packages_installed: usize,
    /// Advisories in the database.
    pub advisories_known: usize,
    /// Vulnerable packages.
    pub vulnerable: Vec<VulnerablePackage>,
}

/// Where the vulnerability database of a data directory lives.
pub fn vulndb_path(data_dir: &Path) -> PathBuf {
    data_dir.join("agents").join("vulndb.json")
}

/// Imports OSV records into a data directory no server is running on (`canh vuln import`).
/// A server recomputes findings when it next starts.
pub fn import_offline(data_dir: &Path, source: &Path) -> Result<ImportReport, AgentsError> {
    let path = vulndb_path(data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(super::io(format!("creating {}", dir.display())))?;
    }
    let mut db = VulnDb::load(&path)?;
    let report = db.import_path(source)?;
    db.save(&path)?;
    Ok(report)
}

fn packages_from(ev: &Event) -> Option<Vec<InstalledPackage>> {
    let v = ev.get("canh.inventory.packages")?;
    serde_json::from_value(v.clone()).ok()
}

impl Inner {
    fn inventory_path(&self, agent_id: &str) -> PathBuf {
        self.dir.join("inventory").join(format!("{agent_id}.json"))
    }

    pub(crate) fn load_inventory(&self, agent_id: &str) -> Option<HostInventory> {
        let bytes = std::fs::read(self.inventory_path(agent_id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save_inventory(&self, agent_id: &str, inv: &HostInventory) -> Result<(), AgentsError> {
        let json = serde_json::to_vec(inv).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        super::write_atomic(&self.inventory_path(agent_id), &json, 0o640)
    }

    fn save_patches(&self, book: &super::vuln::PatchBook) -> Result<(), AgentsError> {
        let json =
            serde_json::to_vec_pretty(book).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        super::write_atomic(&self.dir.join("patch_tasks.json"), &json, 0o640)
    }

    pub(crate) fn findings(&self, inv: &HostInventory) -> Vec<VulnerablePackage> {
        let db = self.vulndb.read().unwrap_or_else(|e| e.into_inner());
        db.match_host(&inv.os_id, &inv.os_version, &inv.packages)
    }

    /// Recomputes one host's patch tasks from its stored inventory.
    pub(crate) fn reconcile_host(&self, agent_id: &str) -> Result<(), AgentsError> {
        match self.load_inventory(agent_id) {
            Some(inv) => self.reconcile_inventory(agent_id, &inv),
            None => Ok(()),
        }
    }

    /// Recomputes one host's patch tasks from `inv`.
    fn reconcile_inventory(&self, agent_id: &str, inv: &HostInventory) -> Result<(), AgentsError> {
        let findings = self.findings(inv);
        let mut book = lock(&self.patches);
        if book.reconcile(agent_id, &findings, &inv.packages, Utc::now()) {
            self.save_patches(&book)?;
        }
        Ok(())
    }

    /// Recomputes every host's patch tasks.
    pub(crate) fn reconcile_all(&self) -> Result<(), AgentsError> {
        let ids: Vec<String> = lock(&self.registry).agents.keys().cloned().collect();
        for id in ids {
            self.reconcile_host(&id)?;
        }
        Ok(())
    }

    /// Takes inventory events out of a stored batch.
    pub(crate) fn observe_inventory(&self, agent_id: &str, events: &[Event]) {
        let mut inv: Option<HostInventory> = None;
        let mut packages_changed = false;
        for ev in events {
            let action = ev.get_str("event.action");
            if action == Some(PACKAGE_INVENTORY) {
                let Some(packages) = packages_from(ev) else {
                    warn!(%agent_id, "package inventory without a readable package list");
                    continue;
                };
                let cur =
                    inv.get_or_insert_with(|| self.load_inventory(agent_id).unwrap_or_default());
                cur.packages = packages;
                cur.packages_at = Some(ev.timestamp);
                cur.os_id = ev.get_str("host.os.family").unwrap_or_default().to_owned();
                cur.os_version = ev.get_str("host.os.version").unwrap_or_default().to_owned();
                cur.kernel = ev.get_str("host.os.kernel").map(str::to_owned);
                packages_changed = true;
            } else if action == Some(CONFIG_ASSESSMENT) {
                let cur =
                    inv.get_or_insert_with(|| self.load_inventory(agent_id).unwrap_or_default());
                cur.config_checks = ev.get("canh.sca").cloned().unwrap_or(Value::Null);
                cur.config_checks_at = Some(ev.timestamp);
            }
        }
        let Some(inv) = inv else { return };
        // The patch tasks first: a reader who sees the new inventory sees its tasks too.
        if packages_changed {
            info!(%agent_id, packages = inv.packages.len(), "package inventory received");
            if let Err(e) = self.reconcile_inventory(agent_id, &inv) {
                warn!(%agent_id, error = %e, "patch tasks not updated");
            }
        }
        if let Err(e) = self.save_inventory(agent_id, &inv) {
            warn!(%agent_id, error = %e, "inventory not saved");
        }
    }
}

/// Whether an event is part of the inventory the server keeps per host.
pub(crate) fn is_inventory(ev: &Event) -> bool {
    matches!(
        ev.get_str("event.action"),
        Some(PACKAGE_INVENTORY | CONFIG_ASSESSMENT)
    )
}

impl AgentService {
    fn known(&self, agent_id: &str) -> Result<(), AgentsError> {
        if lock(&self.inner.registry).agents.contains_key(agent_id) {
            Ok(())
        } else {
            Err(AgentsError::NotFound(agent_id.to_owned()))
        }
    }

    /// Imports OSV records (zip, directory or one JSON file) and recomputes every host.
    pub fn import_vulnerabilities(&self, source: &Path) -> Result<ImportReport, AgentsError> {
        let report = {
            let mut db = self.inner.vulndb.write().unwrap_or_else(|e| e.into_inner());
            let report = db.import_path(source)?;
            db.save(&self.inner.dir.join("vulndb.json"))?;
            report
        };
        self.inner.reconcile_all()?;
        Ok(report)
    }

    /// Imports OSV records sent as bytes (a zip or one JSON record) and recomputes every host.
    pub fn import_vulnerability_bytes(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<ImportReport, AgentsError> {
        let report = {
            let mut db = self.inner.vulndb.write().unwrap_or_else(|e| e.into_inner());
            let report = db.import_bytes(name, bytes)?;
            db.save(&self.inner.dir.join("vulndb.json"))?;
            report
        };
        self.inner.reconcile_all()?;
        Ok(report)
    }

    /// Advisory counts per ecosystem.
    pub fn vulnerability_db_status(&self) -> std::collections::BTreeMap<String, usize> {
        self.inner
            .vulndb
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .ecosystems()
    }

    /// The latest inventory of a host (`None` before its first inventory).
    pub fn host_inventory(&self, agent_id: &str) -> Result<Option<HostInventory>, AgentsError> {
        self.known(agent_id)?;
        Ok(self.inner.load_inventory(agent_id))
    }

    /// A host's vulnerable packages with their fixed versions.
    pub fn vulnerabilities(&self, agent_id: &str) -> Result<HostVulnerabilities, AgentsError> {
        self.known(agent_id)?;
        let inv = self.inner.load_inventory(agent_id).unwrap_or_default();
        let vulnerable = self.inner.findings(&inv);
        let advisories_known = self
            .inner
            .vulndb
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        Ok(HostVulnerabilities {
            agent_id: agent_id.to_owned(),
            os: format!("{} {}", inv.os_id, inv.os_version)
                .trim()
                .to_owned(),
            inventory_at: inv.packages_at,
            packages_installed: inv.packages.len(),
            advisories_known,
            vulnerable,
        })
    }

    /// Patch tasks of a host (every host when `None`), newest first.
    pub fn patch_tasks(&self, agent_id: Option<&str>) -> Vec<PatchTask> {
        lock(&self.inner.patches).list(agent_id)
    }

    /// Sets a patch task's status by hand (`open`, `in_progress`, `done`).
    pub fn set_patch_status(
        &self,
        id: u64,
        status: PatchStatus,
        by: &str,
        note: Option<String>,
    ) -> Result<PatchTask, AgentsError> {
        let mut book = lock(&self.inner.patches);
        let t = book.set_status(id, status, by, note, Utc::now())?;
        self.inner.save_patches(&book)?;
        info!(task = id, status = ?status, by, "patch task updated");
        Ok(t)
    }
}
