//! USB and other device attach/detach, and kernel module loads, from kernel uevents
//! (`NETLINK_KOBJECT_UEVENT`, multicast group 1: what the kernel itself sends, before udev).
//!
//! A kernel uevent is one datagram: `ACTION@DEVPATH\0` then `KEY=VALUE\0` pairs
//! (`ACTION`, `DEVPATH`, `SUBSYSTEM`, `SEQNUM`, and per subsystem `DEVTYPE`, `PRODUCT`,
//! `DEVNAME`, …). Messages from udev itself (group 2) start with `libudev\0` and are ignored.

#![allow(unsafe_code)] // netlink socket calls through libc

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use canh_core::Event;
use serde_json::json;

use super::{Emit, SensorError, base_event};

/// A parsed kernel uevent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `bind`, `unbind`, …
    pub action: String,
    /// `/devices/…` or `/module/NAME`.
    pub devpath: String,
    /// Every `KEY=VALUE` pair.
    pub env: BTreeMap<String, String>,
}

impl Uevent {
    /// A key's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }
}

/// Parses one kernel uevent datagram; `None` for udev (`libudev`) messages and malformed
/// input.
pub fn parse_uevent(buf: &[u8]) -> Option<Uevent> {
    if buf.starts_with(b"libudev\0") {
        return None;
    }
    let mut parts = buf.split(|&b| b == 0).filter(|p| !p.is_empty());
    let header = std::str::from_utf8(parts.next()?).ok()?;
    let (action, devpath) = header.split_once('@')?;
    let mut env = BTreeMap::new();
    for p in parts {
        let Ok(s) = std::str::from_utf8(p) else {
            continue;
        };
        if let Some((k, v)) = s.split_once('=') {
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    if action.is_empty() || !devpath.starts_with('/') {
        return None;
    }
    Some(Uevent {
        action: action.to_owned(),
        devpath: devpath.to_owned(),
        env,
    })
}

/// The event for a uevent worth reporting: USB devices, block disks and partitions,
/// Thunderbolt devices, and kernel modules. Other uevents (interfaces, ttys, …) give `None`.
pub fn uevent_event(host: &str, u: &Uevent) -> Option<Event> {
    let subsystem = u.get("SUBSYSTEM")?;
    if subsystem == "module" {
        let name = u.devpath.strip_prefix("/module/")?;
        let (kind, action) = match u.action.as_str() {
            "add" => ("start", "module-loaded"),
            "remove" => ("end", "module-unloaded"),
            _ => return None,
        };
        let mut ev = base_event(host, "kernel_module", "driver", kind);
        ev.set("event.action", action);
        ev.set("canh.kernel_module.name", name);
        ev.set("canh.kernel_module.source", "uevent");
        return Some(ev);
    }
    let wanted = match subsystem {
        "usb" => u.get("DEVTYPE") == Some("usb_device"),
        "block" => matches!(u.get("DEVTYPE"), Some("disk" | "partition")),
        "thunderbolt" => true,
        _ => false,
    };
    if !wanted {
        return None;
    }
    let (kind, action) = match u.action.as_str() {
        "add" => ("creation", "device-attached"),
        "remove" => ("deletion", "device-detached"),
        "change" => ("change", "device-changed"),
        _ => return None,
    };
    let mut ev = base_event(host, "device", "host", kind);
    ev.set("event.category", json!(["host", "configuration"]));
    ev.set("event.action", action);
    ev.set("canh.device.subsystem", subsystem);
    ev.set("canh.device.devpath", u.devpath.as_str());
    ev.set_opt("canh.device.type", u.get("DEVTYPE"));
    ev.set_opt("canh.device.name", u.get("DEVNAME"));
    ev.set_opt("canh.device.driver", u.get("DRIVER"));
    ev.set_opt(
        "canh.device.seqnum",
        u.get("SEQNUM").and_then(|s| s.parse::<u64>().ok()),
    );
    // `PRODUCT=vendor/product/bcdDevice` in hex without leading zeros.
    if let Some(p) = u.get("PRODUCT") {
        let mut f = p.split('/');
        if let (Some(v), Some(pr)) = (f.next(), f.next())
            && let (Ok(v), Ok(pr)) = (u16::from_str_radix(v, 16), u16::from_str_radix(pr, 16))
        {
            ev.set("canh.device.vendor_id", format!("{v:04x}"));
            ev.set("canh.device.product_id", format!("{pr:04x}"));
        }
    }
    if u.get("ID_BUS") == Some("usb") || subsystem == "usb" {
        ev.set("canh.device.bus", "usb");
    }
    Some(ev)
}

/// A socket receiving kernel uevents.
pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    /// Opens and binds the socket to the kernel's uevent group.
    pub fn open() -> Result<Self, SensorError> {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: `raw` is a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid; fields are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = 1;
        // SAFETY: `addr` is a valid sockaddr_nl of the given length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 250_000,
        };
        // SAFETY: SO_RCVTIMEO takes a timeval of this size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast::<libc::c_void>(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(Self { fd })
    }

    /// Receives one uevent from the kernel; `Ok(None)` after the receive timeout (250 ms) or
    /// for a datagram not sent by the kernel.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<Uevent>, SensorError> {
        // SAFETY: zeroed sockaddr_nl is valid; recvfrom writes at most `len` bytes.
        let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `buf` is writable for its length; `from`/`len` describe a valid address.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
                0,
                (&raw mut from).cast::<libc::sockaddr>(),
                &raw mut len,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e.into()),
            };
        }
        // Only the kernel (port id 0) is trusted.
        if from.nl_pid != 0 {
            return Ok(None);
        }
        let n = usize::try_from(n).unwrap_or(0).min(buf.len());
        Ok(parse_uevent(&buf[..n]))
    }
}

/// Runs the device sensor until `stop` is set.
pub fn run(
    sock: UeventSocket,
    host: String,
    emit: Emit,
    stop: Arc<AtomicBool>,
) -> Result<(), SensorError> {
    let mut buf = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if let Some(u) = sock.recv(&mut buf)?
            && let Some(ev) = uevent_event(&host, &u)
        {
            emit(vec![ev]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn datagram(header: &str, pairs: &[&str]) -> Vec<u8> {
        let mut b = header.as_bytes().to_vec();
        b.push(0);
        for p in pairs {
            b.extend_from_slice(p.as_bytes());
            b.push(0);
        }
        b
    }

    /// Synthetic: the kernel uevent of a USB flash drive plugged into port 1-2, laid out as
    /// `lib/kobject_uevent.c` builds it (values typical of a mass-storage stick).
    fn synthetic_usb_add() -> Vec<u8> {
        datagram(
            "add@/devices/pci0000:00/0000:00:14.0/usb1/1-2",
            &[
                "ACTION=add",
                "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2",
                "SUBSYSTEM=usb",
                "MAJOR=189",
                "MINOR=1",
                "DEVNAME=bus/usb/001/002",
                "DEVTYPE=usb_device",
                "PRODUCT=781/5581/100",
                "TYPE=0/0/0",
                "BUSNUM=001",
                "DEVNUM=002",
                "SEQNUM=4721",
            ],
        )
    }

    #[test]
    fn usb_stick_attach_is_reported() {
        let u = parse_uevent(&synthetic_usb_add()).unwrap();
        assert_eq!(u.action, "add");
        assert_eq!(u.get("SUBSYSTEM"), Some("usb"));
        let ev = uevent_event("h", &u).unwrap();
        assert_eq!(ev.get_str("event.action"), Some("device-attached"));
        assert_eq!(ev.get_str("canh.device.vendor_id"), Some("0781"));
        assert_eq!(ev.get_str("canh.device.product_id"), Some("5581"));
        assert_eq!(ev.get_str("canh.device.name"), Some("bus/usb/001/002"));
        assert_eq!(ev.get_str("canh.device.bus"), Some("usb"));
        assert_eq!(
            ev.get("canh.device.seqnum").and_then(|v| v.as_u64()),
            Some(4721)
        );
    }

    #[test]
    fn interfaces_ttys_and_udev_messages_are_ignored() {
        let iface = datagram(
            "add@/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0",
            &[
                "ACTION=add",
                "SUBSYSTEM=usb",
                "DEVTYPE=usb_interface",
                "SEQNUM=4722",
            ],
        );
        assert!(uevent_event("h", &parse_uevent(&iface).unwrap()).is_none());
        let tty = datagram(
            "add@/devices/virtual/tty/tty9",
            &["ACTION=add", "SUBSYSTEM=tty"],
        );
        assert!(uevent_event("h", &parse_uevent(&tty).unwrap()).is_none());
        let mut udev = b"libudev\0".to_vec();
        udev.extend(synthetic_usb_add());
        assert!(parse_uevent(&udev).is_none());
    }

    #[test]
    fn disk_and_module_events() {
        let disk = datagram(
            "add@/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sdb",
            &[
                "ACTION=add",
                "SUBSYSTEM=block",
                "DEVTYPE=disk",
                "DEVNAME=sdb",
                "SEQNUM=4730",
            ],
        );
        let ev = uevent_event("h", &parse_uevent(&disk).unwrap()).unwrap();
        assert_eq!(ev.get_str("canh.device.name"), Some("sdb"));
        assert_eq!(ev.get_str("canh.device.type"), Some("disk"));
        let rm = datagram(
            "remove@/module/usb_storage",
            &[
                "ACTION=remove",
                "DEVPATH=/module/usb_storage",
                "SUBSYSTEM=module",
                "SEQNUM=4800",
            ],
        );
        let ev = uevent_event("h", &parse_uevent(&rm).unwrap()).unwrap();
        assert_eq!(ev.get_str("event.action"), Some("module-unloaded"));
        assert_eq!(ev.get_str("canh.kernel_module.name"), Some("usb_storage"));
        let add = datagram(
            "add@/module/usb_storage",
            &["ACTION=add", "SUBSYSTEM=module"],
        );
        let ev = uevent_event("h", &parse_uevent(&add).unwrap()).unwrap();
        assert_eq!(ev.get_str("event.action"), Some("module-loaded"));
    }

    /// The real socket: ask the kernel to send a `change` uevent for a virtual device (a
    /// synthetic uevent, `SYNTH_UUID`), and receive it. Needs root; skipped otherwise.
    #[test]
    fn real_kernel_uevent_arrives() {
        let sock = match UeventSocket::open() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("SKIPPED: uevent socket unavailable: {e}");
                return;
            }
        };
        // A virtual misc device (no hardware behind it); udev, if running, only re-reads it.
        let Some(dev) = std::fs::read_dir("/sys/devices/virtual/misc")
            .ok()
            .and_then(|rd| {
                let mut v: Vec<_> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| std::fs::metadata(p.join("uevent")).is_ok())
                    .collect();
                v.sort();
                v.into_iter().next()
            })
        else {
            eprintln!("SKIPPED: no virtual misc device with a uevent file");
            return;
        };
        let uuid = "5d9e2a7c-0c1b-4f7e-9a53-6a7c11d2e001";
        if let Err(e) = std::fs::write(dev.join("uevent"), format!("change {uuid} CANH=1")) {
            eprintln!("SKIPPED: cannot trigger a uevent ({e})");
            return;
        }
        let mut buf = vec![0u8; 16 * 1024];
        // Bounded wait (hang guard, not a timing assertion): 40 × 250 ms receive timeouts.
        let mut got = None;
        for _ in 0..40 {
            if let Some(u) = sock.recv(&mut buf).unwrap()
                && u.get("SYNTH_UUID") == Some(uuid)
            {
                got = Some(u);
                break;
            }
        }
        let u = got.expect("the synthetic uevent arrives");
        assert_eq!(u.action, "change");
        assert_eq!(u.get("SUBSYSTEM"), Some("misc"));
        // A misc device is not reported (only USB, block, Thunderbolt and modules are).
        assert!(uevent_event("h", &u).is_none());
        assert_eq!(u.get("SYNTH_ARG_CANH"), Some("1"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Some(u) = parse_uevent(&bytes) {
                let _ = uevent_event("h", &u);
                prop_assert!(u.devpath.starts_with('/'));
            }
        }
    }
}
