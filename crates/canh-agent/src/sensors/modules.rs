//! Kernel module loads and unloads, from successive reads of `/proc/modules`.

use std::collections::BTreeMap;

use canh_core::Event;

use super::base_event;

/// Module name → size, from `/proc/modules`.
pub fn parse_modules(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let size = f.next()?.parse().ok()?;
            Some((name.to_owned(), size))
        })
        .collect()
}

/// Events for modules that appeared or disappeared between two snapshots.
pub fn diff(
    host: &str,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> Vec<Event> {
    let mut out = Vec::new();
    for (name, size) in after {
        if !before.contains_key(name) {
            let mut ev = base_event(host, "kernel_module", "driver", "start");
            ev.set("event.action", "module-loaded");
            ev.set("canh.kernel_module.name", name.as_str());
            ev.set("canh.kernel_module.size", *size);
            out.push(ev);
        }
    }
    for name in before.keys() {
        if !after.contains_key(name) {
            let mut ev = base_event(host, "kernel_module", "driver", "end");
            ev.set("event.action", "module-unloaded");
            ev.set("canh.kernel_module.name", name.as_str());
            out.push(ev);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn loaded_and_unloaded_modules_are_reported() {
        let a =
            parse_modules("ext4 1036288 1 - Live 0x0000000000000000\nvfat 20480 0 - Live 0x0\n");
        let b =
            parse_modules("ext4 1036288 1 - Live 0x0000000000000000\nrootkit 16384 0 - Live 0x0\n");
        let evs = diff("h", &a, &b);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].get_str("canh.kernel_module.name"), Some("rootkit"));
        assert_eq!(evs[0].get_str("event.action"), Some("module-loaded"));
        assert_eq!(evs[1].get_str("canh.kernel_module.name"), Some("vfat"));
        assert_eq!(evs[1].get_str("event.action"), Some("module-unloaded"));
    }

    #[test]
    fn real_proc_modules_parses() {
        let text = std::fs::read_to_string("/proc/modules").unwrap_or_default();
        let m = parse_modules(&text);
        assert_eq!(m.len(), text.lines().count());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            prop_assert!(parse_modules(&s).len() <= s.lines().count());
        }
    }
}
