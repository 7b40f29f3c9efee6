//! Configuration checks (CIS-style) kept as data: a TOML policy of checks, each one rule over
//! a file, a file's permissions, a sysctl or the package list, evaluated under a root
//! directory (`/` on a host, a temporary tree in tests). Results travel to the server as one
//! `config-assessment` event with the inventory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use canh_core::Event;
use serde::{Deserialize, Serialize};

use crate::sensors::base_event;

/// The policy shipped in the agent.
pub const BUILTIN_POLICY: &str = include_str!("../policy/canh-linux-baseline.toml");

/// `event.action` of the results event.
pub const CONFIG_ASSESSMENT: &str = "config-assessment";

/// Policy failures.
#[derive(Debug, thiserror::Error)]
pub enum ScaError {
    /// The policy file could not be read.
    #[error("reading policy {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The policy is not valid.
    #[error("invalid policy: {0}")]
    Invalid(String),
}

/// A policy: a named list of checks.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Policy id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Policy version.
    #[serde(default)]
    pub version: String,
    /// Checks.
    #[serde(rename = "check")]
    pub checks: Vec<Check>,
}

/// One check.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Check {
    /// Check id.
    pub id: String,
    /// Title (English).
    pub title: String,
    /// Title (Vietnamese).
    #[serde(default)]
    pub title_vi: String,
    /// Benchmark reference.
    #[serde(default)]
    pub reference: String,
    /// The rule.
    #[serde(flatten)]
    pub rule: Rule,
}

/// What a missing file means.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IfMissing {
    /// The check fails.
    #[default]
    Fail,
    /// The check does not apply (e.g. no SSH server installed).
    NotApplicable,
}

/// A rule.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Rule {
    /// The first value of `key` in a `Key value` / `key = value` file.
    ConfigValue {
        /// File.
        path: PathBuf,
        /// Key (case-insensitive).
        key: String,
        /// Passing values (case-insensitive).
        allowed: Vec<String>,
        /// Value in effect when the key is absent.
        #[serde(default)]
        default: Option<String>,
        /// Missing file.
        #[serde(default)]
        if_missing: IfMissing,
    },
    /// Permissions and ownership of a file.
    FileMode {
        /// File.
        path: PathBuf,
        /// Highest allowed permission bits, octal (`"0640"`).
        max_mode: String,
        /// Required owner uid.
        #[serde(default)]
        owner: Option<u32>,
        /// Allowed group ids (empty: any).
        #[serde(default)]
        groups: Vec<u32>,
        /// Missing file.
        #[serde(default)]
        if_missing: IfMissing,
    },
    /// A kernel parameter under `/proc/sys`.
    Sysctl {
        /// Dotted key (`net.ipv4.ip_forward`).
        key: String,
        /// Passing values.
        allowed: Vec<String>,
    },
    /// A package must be installed.
    PackageInstalled {
        /// Binary package name.
        name: String,
    },
    /// A package must not be installed.
    PackageAbsent {
        /// Binary package name.
        name: String,
    },
}

/// Outcome of a check.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Compliant.
    Pass,
    /// Not compliant.
    Fail,
    /// Does not apply to this host.
    NotApplicable,
}

/// The result of one check.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CheckResult {
    /// Check id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Vietnamese title.
    pub title_vi: String,
    /// Reference.
    pub reference: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub evidence: String,
}

/// Results of a policy on a host.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Assessment {
    /// Policy id.
    pub policy_id: String,
    /// Policy name.
    pub policy_name: String,
    /// Checks passed.
    pub passed: usize,
    /// Checks failed.
    pub failed: usize,
    /// Checks not applicable.
    pub not_applicable: usize,
    /// Per-check results.
    pub results: Vec<CheckResult>,
}

impl Policy {
    /// Parses a policy.
    pub fn parse(text: &str) -> Result<Self, ScaError> {
        let p: Self = toml::from_str(text).map_err(|e| ScaError::Invalid(e.to_string()))?;
        for c in &p.checks {
            if let Rule::FileMode { max_mode, .. } = &c.rule {
                u32::from_str_radix(max_mode, 8).map_err(|_| {
                    ScaError::Invalid(format!(
                        "check {}: max_mode {max_mode:?} is not octal",
                        c.id
                    ))
                })?;
            }
        }
        Ok(p)
    }

    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Self, ScaError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// The policy shipped in the agent.
    pub fn builtin() -> Result<Self, ScaError> {
        Self::parse(BUILTIN_POLICY)
    }

    /// Evaluates every check with paths taken under `root`.
    pub fn evaluate(&self, root: &Path) -> Assessment {
        let dpkg = std::fs::read_to_string(under(root, Path::new("/var/lib/dpkg/status")))
            .ok()
            .map(|t| crate::inventory::parse_dpkg_status(&t));
        let results: Vec<CheckResult> = self
            .checks
            .iter()
            .map(|c| {
                let (status, evidence) = evaluate(&c.rule, root, dpkg.as_deref());
                CheckResult {
                    id: c.id.clone(),
                    title: c.title.clone(),
                    title_vi: c.title_vi.clone(),
                    reference: c.reference.clone(),
                    status,
                    evidence,
                }
            })
            .collect();
        let count = |s: Status| results.iter().filter(|r| r.status == s).count();
        Assessment {
            policy_id: self.id.clone(),
            policy_name: self.name.clone(),
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            not_applicable: count(Status::NotApplicable),
            results,
        }
    }
}

fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn missing(if_missing: IfMissing, path: &Path) -> (Status, String) {
    let status = match if_missing {
        IfMissing::Fail => Status::Fail,
        IfMissing::NotApplicable => Status::NotApplicable,
    };
    (status, format!("{} not found", path.display()))
}

/// Lines of a config file with `Include` directives expanded in place (one level of
/// `dir/*.suffix` globs, sorted, as sshd does).
fn config_lines(root: &Path, path: &Path, depth: u8) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(under(root, path)).ok()?;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        let mut parts = t.splitn(2, char::is_whitespace);
        let first = parts.next().unwrap_or_default();
        if first.eq_ignore_ascii_case("include") && depth < 4 {
            for pattern in parts.next().unwrap_or_default().split_whitespace() {
                let pattern = if pattern.starts_with('/') {
                    PathBuf::from(pattern)
                } else {
                    path.parent().unwrap_or(Path::new("/")).join(pattern)
                };
                for inc in expand_glob(root, &pattern) {
                    if let Some(lines) = config_lines(root, &inc, depth + 1) {
                        out.extend(lines);
                    }
                }
            }
            continue;
        }
        out.push(t.to_owned());
    }
    Some(out)
}

/// `dir/prefix*suffix` → matching files (sorted); a path without `*` → itself.
fn expand_glob(root: &Path, pattern: &Path) -> Vec<PathBuf> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((pre, suf)) = name.split_once('*') else {
        return vec![pattern.to_path_buf()];
    };
    let dir = pattern.parent().unwrap_or(Path::new("/"));
    let mut out: Vec<PathBuf> = std::fs::read_dir(under(root, dir))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    n.starts_with(pre) && n.ends_with(suf) && n.len() >= pre.len() + suf.len()
                })
                .map(|n| dir.join(n))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn first_value(lines: &[String], key: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        if l.starts_with('#') || l.is_empty() {
            return None;
        }
        let (k, v) = match l.split_once('=') {
            Some((k, v)) if !k.trim().contains(char::is_whitespace) => (k.trim(), v.trim()),
            _ => {
                let mut p = l.splitn(2, char::is_whitespace);
                (p.next()?.trim(), p.next().unwrap_or_default().trim())
            }
        };
        k.eq_ignore_ascii_case(key)
            .then(|| v.trim_matches('"').to_owned())
    })
}

fn evaluate(
    rule: &Rule,
    root: &Path,
    dpkg: Option<&[crate::inventory::Package]>,
) -> (Status, String) {
    let verdict = |ok: bool| if ok { Status::Pass } else { Status::Fail };
    match rule {
        Rule::ConfigValue {
            path,
            key,
            allowed,
            default,
            if_missing,
        } => {
            let Some(lines) = config_lines(root, path, 0) else {
                return missing(*if_missing, path);
            };
            let (value, from) = match first_value(&lines, key) {
                Some(v) => (v, "set"),
                None => match default {
                    Some(d) => (d.clone(), "default"),
                    None => return (Status::Fail, format!("{key} not set in {}", path.display())),
                },
            };
            let ok = allowed.iter().any(|a| a.eq_ignore_ascii_case(&value));
            (verdict(ok), format!("{key} {value} ({from})"))
        }
        Rule::FileMode {
            path,
            max_mode,
            owner,
            groups,
            if_missing,
        } => {
            let Ok(meta) = std::fs::metadata(under(root, path)) else {
                return missing(*if_missing, path);
            };
            let max = u32::from_str_radix(max_mode, 8).unwrap_or(0);
            let mode = meta.mode() & 0o7777;
            let mode_ok = mode & !max == 0;
            let owner_ok = owner.is_none_or(|o| meta.uid() == o);
            let group_ok = groups.is_empty() || groups.contains(&meta.gid());
            (
                verdict(mode_ok && owner_ok && group_ok),
                format!("mode {mode:04o} uid {} gid {}", meta.uid(), meta.gid()),
            )
        }
        Rule::Sysctl { key, allowed } => {
            let rel = format!("proc/sys/{}", key.replace('.', "/"));
            match std::fs::read_to_string(root.join(rel)) {
                Ok(v) => {
                    let v = v.trim().to_owned();
                    (verdict(allowed.contains(&v)), format!("{key} = {v}"))
                }
                Err(_) => (Status::NotApplicable, format!("{key} not present")),
            }
        }
        Rule::PackageInstalled { name } | Rule::PackageAbsent { name } => {
            let Some(pkgs) = dpkg else {
                return (Status::NotApplicable, "no dpkg database".into());
            };
            let found = pkgs.iter().find(|p| &p.name == name);
            let want = matches!(rule, Rule::PackageInstalled { .. });
            let evidence = match found {
                Some(p) => format!("{name} {} installed", p.version),
                None => format!("{name} not installed"),
            };
            (verdict(found.is_some() == want), evidence)
        }
    }
}

/// The `config-assessment` event for an assessment.
pub fn assessment_event(host: &str, a: &Assessment) -> Event {
    let mut ev = base_event(host, "configuration", "configuration", "info");
    ev.set("event.action", CONFIG_ASSESSMENT);
    ev.set(
        "event.outcome",
        if a.failed == 0 { "success" } else { "failure" },
    );
    ev.set("canh.sca", serde_json::to_value(a).unwrap_or_default());
    ev.set(
        "message",
        format!(
            "{}: {} passed, {} failed, {} not applicable",
            a.policy_name, a.passed, a.failed, a.not_applicable
        ),
    );
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn status(a: &Assessment, id: &str) -> (Status, String) {
        let r = a.results.iter().find(|r| r.id == id).unwrap();
        (r.status, r.evidence.clone())
    }

    /// A hardened and a weak host tree; each check flips between them.
    #[test]
    fn builtin_policy_on_fixture_trees() {
        let policy = Policy::builtin().unwrap();
        assert_eq!(policy.checks.len(), 10);

        let good = tempfile::tempdir().unwrap();
        let g = good.path();
        write(
            g,
            "etc/ssh/sshd_config",
            "Include /etc/ssh/sshd_config.d/*.conf\n# PermitRootLogin yes\nPermitRootLogin yes\n",
        );
        // The drop-in comes first (Include at the top), so its value wins, as in sshd.
        write(
            g,
            "etc/ssh/sshd_config.d/50-hardening.conf",
            "PermitRootLogin no\nPasswordAuthentication no\n",
        );
        write(g, "etc/shadow", "root:*:19000:0:99999:7:::\n");
        std::fs::set_permissions(g.join("etc/shadow"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        write(g, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
        std::fs::set_permissions(g.join("etc/passwd"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        write(g, "proc/sys/net/ipv4/ip_forward", "0\n");
        write(g, "proc/sys/net/ipv4/conf/all/accept_redirects", "0\n");
        write(g, "proc/sys/kernel/randomize_va_space", "2\n");
        write(
            g,
            "var/lib/dpkg/status",
            "Package: unattended-upgrades\nStatus: install ok installed\nVersion: 2.9.1+nmu3\n\n",
        );
        let a = policy.evaluate(g);
        let uid = owner_uid(g);
        for r in &a.results {
            // Ownership checks need root-owned files; a non-root test run can't create them.
            if r.id.ends_with("-permissions") && uid != 0 {
                continue;
            }
            assert_eq!(r.status, Status::Pass, "{}: {}", r.id, r.evidence);
        }
        assert_eq!(
            status(&a, "ssh-permit-root-login").1,
            "PermitRootLogin no (set)"
        );
        assert_eq!(
            status(&a, "ssh-permit-empty-passwords").1,
            "PermitEmptyPasswords no (default)"
        );

        let weak = tempfile::tempdir().unwrap();
        let w = weak.path();
        write(w, "etc/ssh/sshd_config", "PermitRootLogin = yes\n");
        write(w, "etc/shadow", "root:*:19000:0:99999:7:::\n");
        std::fs::set_permissions(w.join("etc/shadow"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        write(w, "proc/sys/net/ipv4/ip_forward", "1\n");
        write(
            w,
            "var/lib/dpkg/status",
            "Package: telnetd\nStatus: install ok installed\nVersion: 0.17+2.4-2\n\n",
        );
        let a = policy.evaluate(w);
        assert_eq!(status(&a, "ssh-permit-root-login").0, Status::Fail);
        // Not set: OpenSSH's default (yes) is in effect.
        assert_eq!(
            status(&a, "ssh-password-authentication"),
            (Status::Fail, "PasswordAuthentication yes (default)".into())
        );
        assert_eq!(status(&a, "shadow-permissions").0, Status::Fail);
        assert!(status(&a, "shadow-permissions").1.starts_with("mode 0644"));
        assert_eq!(status(&a, "passwd-permissions").0, Status::Fail);
        assert_eq!(status(&a, "sysctl-ip-forward").0, Status::Fail);
        assert_eq!(status(&a, "sysctl-aslr").0, Status::NotApplicable);
        assert_eq!(status(&a, "unattended-upgrades").0, Status::Fail);
        assert_eq!(status(&a, "no-telnet-server").0, Status::Fail);
        assert_eq!(a.passed + a.failed + a.not_applicable, 10);

        let ev = assessment_event("h", &a);
        assert_eq!(ev.get_str("event.action"), Some(CONFIG_ASSESSMENT));
        assert_eq!(ev.get_str("event.outcome"), Some("failure"));
        assert_eq!(ev.get("canh.sca").unwrap()["failed"], a.failed);
    }

    fn owner_uid(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().uid()
    }

    #[test]
    fn missing_ssh_config_is_not_applicable() {
        let policy = Policy::builtin().unwrap();
        let a = policy.evaluate(Path::new("/nonexistent-root"));
        assert_eq!(status(&a, "ssh-permit-root-login").0, Status::NotApplicable);
        assert_eq!(status(&a, "shadow-permissions").0, Status::Fail);
        assert_eq!(status(&a, "unattended-upgrades").0, Status::NotApplicable);
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(
            Policy::parse("id='x'\nname='y'\n[[check]]\nid='a'\ntitle='t'\ntype='nope'\n").is_err()
        );
        let bad_mode = "id='x'\nname='y'\n[[check]]\nid='a'\ntitle='t'\ntype='file_mode'\npath='/a'\nmax_mode='9z'\n";
        assert!(
            Policy::parse(bad_mode)
                .unwrap_err()
                .to_string()
                .contains("octal")
        );
    }

    #[test]
    fn the_real_host_evaluates() {
        let a = Policy::builtin().unwrap().evaluate(Path::new("/"));
        assert_eq!(a.results.len(), 10);
        // This host has /etc/passwd and a kernel; those checks give a verdict.
        let (s, _) = status(&a, "passwd-permissions");
        assert_ne!(s, Status::NotApplicable);
    }
}
