//! Host inventory: installed Debian packages (with their source package), OS and kernel,
//! listening ports, local users, disk encryption; and vulnerability matching of packages
//! against OSV `Debian:N` records by source package with dpkg version ordering.

pub mod debversion;
pub mod osv;

use std::path::Path;

use canh_core::Event;
use serde::Serialize;

use crate::sensors::base_event;

/// One installed binary package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Package {
    /// Binary package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// Source package name (the binary name when the source has the same name).
    pub source: String,
    /// Source package version (differs from `version` for binNMUs).
    pub source_version: String,
}

/// Parses `/var/lib/dpkg/status`, keeping packages whose status is `install ok installed`.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut arch = String::new();
        let mut source = None;
        let mut installed = false;
        for line in para.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k {
                "Package" => name = Some(v.to_owned()),
                "Version" => version = Some(v.to_owned()),
                "Architecture" => arch = v.to_owned(),
                "Source" => source = Some(v.to_owned()),
                "Status" => installed = v.ends_with(" installed") && v.starts_with("install "),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            continue;
        };
        if !installed {
            continue;
        }
        // `Source: name (version)` when the source version differs (binNMU).
        let (source, source_version) = match source {
            Some(s) => match s.split_once(" (") {
                Some((n, rest)) => (n.to_owned(), rest.trim_end_matches(')').to_owned()),
                None => (s, version.clone()),
            },
            None => (name.clone(), version.clone()),
        };
        out.push(Package {
            name,
            version,
            arch,
            source,
            source_version,
        });
    }
    out
}

/// Reads installed packages from `path` (normally `/var/lib/dpkg/status`).
pub fn installed_packages(path: &Path) -> std::io::Result<Vec<Package>> {
    Ok(parse_dpkg_status(&std::fs::read_to_string(path)?))
}

/// `VERSION_ID` and `ID` from an os-release text.
pub fn os_release(text: &str) -> (Option<String>, Option<String>) {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_owned())
        })
    };
    (get("ID"), get("VERSION_ID"))
}

/// A mount and whether it sits on dm-crypt (LUKS).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MountCrypt {
    /// Mount point.
    pub mount_point: String,
    /// Device.
    pub device: String,
    /// Whether the device is a dm-crypt mapping (`CRYPT-` uuid prefix in sysfs).
    pub encrypted: bool,
    /// `LUKS1`/`LUKS2`/`PLAIN` when encrypted.
    pub crypt_type: Option<String>,
}

/// Disk encryption status of block-device mounts, from `/proc/mounts` and `/sys/block/dm-*`.
pub fn disk_encryption(sys_block: &Path, mounts: &str) -> Vec<MountCrypt> {
    let mut dm = std::collections::HashMap::new();
    if let Ok(entries) = std::fs::read_dir(sys_block) {
        for e in entries.flatten() {
            let d = e.path().join("dm");
            let (Ok(name), Ok(uuid)) = (
                std::fs::read_to_string(d.join("name")),
                std::fs::read_to_string(d.join("uuid")),
            ) else {
                continue;
            };
            let kernel = e.file_name().to_string_lossy().into_owned();
            dm.insert(name.trim().to_owned(), uuid.trim().to_owned());
            dm.insert(kernel, uuid.trim().to_owned());
        }
    }
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, mp) = (f.next()?, f.next()?);
            if !dev.starts_with("/dev/") {
                return None;
            }
            let key = dev
                .strip_prefix("/dev/mapper/")
                .or_else(|| dev.strip_prefix("/dev/"))?;
            let uuid = dm.get(key);
            let crypt_type = uuid
                .and_then(|u| u.strip_prefix("CRYPT-"))
                .map(|rest| rest.split('-').next().unwrap_or(rest).to_owned());
            Some(MountCrypt {
                mount_point: mp.replace("\\040", " "),
                device: dev.to_owned(),
                encrypted: crypt_type.is_some(),
                crypt_type,
            })
        })
        .collect()
}

/// Local accounts (name, uid, shell) from an `/etc/passwd` text.
pub fn local_users(passwd: &str) -> Vec<(String, u32, String)> {
    passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                f.first()?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(6)?.to_string(),
            ))
        })
        .collect()
}

/// One `inventory` event describing the host (packages go in separate events).
pub fn host_event(host: &str) -> Event {
    let mut ev = base_event(host, "inventory", "host", "info");
    ev.set("event.action", "host-inventory");
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let (id, version) = os_release(&os);
    ev.set_opt("host.os.family", id);
    ev.set_opt("host.os.version", version);
    ev.set("host.os.name", crate::os_name());
    ev.set_opt(
        "host.os.kernel",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned()),
    );
    let listening: Vec<String> = crate::sensors::network::snapshot(Path::new("/proc"))
        .into_iter()
        .filter(|s| s.transport == "tcp" && s.state == crate::sensors::network::TCP_LISTEN)
        .map(|s| format!("{}:{}", s.local.0, s.local.1))
        .collect();
    ev.set("canh.inventory.listening_tcp", listening);
    let users: Vec<serde_json::Value> =
        local_users(&std::fs::read_to_string("/etc/passwd").unwrap_or_default())
            .into_iter()
            .map(|(n, uid, shell)| serde_json::json!({"name": n, "id": uid, "shell": shell}))
            .collect();
    ev.set("canh.inventory.users", users);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let crypt = disk_encryption(Path::new("/sys/block"), &mounts);
    ev.set(
        "canh.inventory.disk_encryption",
        serde_json::to_value(crypt).unwrap_or_default(),
    );
    ev
}

/// `event.action` of the package inventory event (the server keeps the latest per host and
/// matches it against OSV advisories).
pub const PACKAGE_INVENTORY: &str = "package-inventory";

/// One `package-inventory` event carrying every installed package with its source package,
/// plus the os-release `ID`/`VERSION_ID` the server needs to pick the OSV ecosystem.
pub fn package_inventory_event(
    host: &str,
    packages: &[Package],
    os_release_text: &str,
    kernel: Option<&str>,
) -> Event {
    let mut ev = base_event(host, "inventory", "package", "info");
    ev.set("event.action", PACKAGE_INVENTORY);
    let (id, version) = os_release(os_release_text);
    ev.set_opt("host.os.family", id);
    ev.set_opt("host.os.version", version);
    ev.set_opt("host.os.kernel", kernel.map(str::to_owned));
    ev.set("canh.inventory.package_count", packages.len());
    ev.set(
        "canh.inventory.packages",
        serde_json::to_value(packages).unwrap_or_default(),
    );
    ev
}

/// The package inventory of this host (`dpkg_status` is normally `/var/lib/dpkg/status`).
pub fn local_package_inventory(host: &str, dpkg_status: &Path) -> std::io::Result<Event> {
    let packages = installed_packages(dpkg_status)?;
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok();
    Ok(package_inventory_event(
        host,
        &packages,
        &os,
        kernel.as_deref().map(str::trim),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STATUS: &str = "Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b8

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.15-1~deb12u1
Description: Secure Sockets Layer toolkit
 multi-line description: with a colon

Package: removed-thing
Status: deinstall ok config-files
Version: 1.0-1

Package: libfoo1
Status: install ok installed
Source: foo (1.2-3)
Version: 1.2-3+b1
";

    #[test]
    fn dpkg_status_gives_installed_packages_with_sources() {
        let p = parse_dpkg_status(STATUS);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].source, "bash");
        assert_eq!(p[1].source, "openssl");
        assert_eq!(p[1].source_version, "3.0.15-1~deb12u1");
        assert_eq!(p[2].source, "foo");
        assert_eq!(p[2].source_version, "1.2-3");
        assert_eq!(p[2].version, "1.2-3+b1");
    }

    #[test]
    fn real_dpkg_status_parses_when_present() {
        let Ok(pkgs) = installed_packages(Path::new("/var/lib/dpkg/status")) else {
            eprintln!("SKIPPED: no dpkg database");
            assert!(std::fs::metadata("/var/lib/dpkg/status").is_err());
            return;
        };
        assert!(pkgs.iter().any(|p| p.name == "dpkg"));
        assert!(
            pkgs.iter()
                .all(|p| p.version.parse::<debversion::DebVersion>().is_ok()),
            "all versions parse"
        );
    }

    #[test]
    fn os_release_fields() {
        let (id, ver) = os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        assert_eq!(id.as_deref(), Some("debian"));
        assert_eq!(ver.as_deref(), Some("12"));
    }

    #[test]
    fn dm_crypt_mounts_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let dm0 = dir.path().join("dm-0/dm");
        std::fs::create_dir_all(&dm0).unwrap();
        std::fs::write(dm0.join("name"), "root_crypt\n").unwrap();
        std::fs::write(dm0.join("uuid"), "CRYPT-LUKS2-0123abcd-root_crypt\n").unwrap();
        let dm1 = dir.path().join("dm-1/dm");
        std::fs::create_dir_all(&dm1).unwrap();
        std::fs::write(dm1.join("name"), "vg-data\n").unwrap();
        std::fs::write(dm1.join("uuid"), "LVM-xyz\n").unwrap();
        let mounts = "/dev/mapper/root_crypt / ext4 rw 0 0\n/dev/mapper/vg-data /data xfs rw 0 0\n/dev/sda1 /boot ext2 rw 0 0\nproc /proc proc rw 0 0\n";
        let m = disk_encryption(dir.path(), mounts);
        assert_eq!(m.len(), 3);
        assert!(m[0].encrypted);
        assert_eq!(m[0].crypt_type.as_deref(), Some("LUKS2"));
        assert!(!m[1].encrypted);
        assert!(!m[2].encrypted);
    }

    #[test]
    fn host_event_describes_this_host() {
        let ev = host_event("h");
        assert!(ev.get_str("host.os.kernel").is_some());
        assert!(
            ev.get("canh.inventory.users")
                .and_then(|v| v.as_array())
                .is_some_and(|u| !u.is_empty())
        );
    }

    #[test]
    fn package_inventory_event_carries_sources_and_release() {
        let pkgs = parse_dpkg_status(STATUS);
        let ev = package_inventory_event(
            "h",
            &pkgs,
            "ID=debian\nVERSION_ID=\"12\"\n",
            Some("6.1.0-18-amd64"),
        );
        assert_eq!(ev.get_str("event.action"), Some(PACKAGE_INVENTORY));
        assert_eq!(ev.get_str("host.os.family"), Some("debian"));
        assert_eq!(ev.get_str("host.os.version"), Some("12"));
        let list = ev
            .get("canh.inventory.packages")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[2]["source"], "foo");
        assert_eq!(list[2]["source_version"], "1.2-3");
        assert_eq!(list[2]["version"], "1.2-3+b1");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "(.{0,40}\n){0,10}") {
            let p = parse_dpkg_status(&s);
            prop_assert!(p.len() <= s.len());
            let _ = disk_encryption(Path::new("/nonexistent"), &s);
            let _ = local_users(&s);
        }
    }
}
