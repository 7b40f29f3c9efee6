//! `canh sensor` end to end: a real capture in, `eve.json` out.

use std::path::Path;
use std::process::Command;

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/pcap/suricata-verify/tests/decode-teredo-01/input.pcap"
);

#[test]
fn sensor_writes_eve_json_for_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("logs");
    let status = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "-r", CAPTURE, "-l"])
        .arg(&log_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(log_dir.join("eve.json")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |t: &str| records.iter().filter(|r| r["event_type"] == t).count();
    assert!(count("flow") >= 5);
    assert!(count("dns") >= 10);
    assert!(count("http") >= 2);
    assert_eq!(count("stats"), 1);
    assert!(
        records
            .iter()
            .any(|r| r["event_type"] == "http" && r["http"]["hostname"] == "www.wireshark.org")
    );
}

#[test]
fn sensor_rejects_a_file_that_is_not_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("not-a-pcap.pcap");
    std::fs::write(&bogus, b"this is not a capture file at all").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "-r"])
        .arg(&bogus)
        .arg("-l")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a pcap or pcapng file"), "{err}");
    assert!(Path::new(&dir.path().join("eve.json")).is_file());
}

const ET_DNS_RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/et-open/rules/emerging-dns.rules"
);

#[test]
fn sensor_rules_check_names_unsupported_keywords() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("local.rules");
    std::fs::write(
        &rules,
        "alert http any any -> any any (msg:\"ok\"; http.uri; content:\"/x\"; sid:1;)\n\
         alert tcp any any -> any any (msg:\"xb\"; xbits:set,a,track ip_src; sid:2;)\n\
         # alert tcp any any -> any any (msg:\"disabled\"; sid:3;)\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "rules", "check"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sid 1: supported"), "{text}");
    assert!(
        text.contains("sid 2: unsupported (keyword xbits)"),
        "{text}"
    );
    assert!(text.contains("2 rules: 1 supported (50.0 %)"), "{text}");
    assert!(!text.contains("sid 3"), "{text}");
}

#[test]
fn sensor_rules_check_summarises_et_open_dns_rules() {
    let out = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "rules", "check", "--summary-only", ET_DNS_RULES])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    // "N rules: M supported (P %), ..."
    let pct: f64 = first
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(p, _)| p.parse().ok())
        .unwrap_or(0.0);
    assert!(pct >= 90.0, "{text}");
    assert!(first.contains("unsupported"), "{text}");
}

#[test]
fn sensor_matches_rules_and_writes_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("local.rules");
    std::fs::write(
        &rules,
        "alert dns any any -> any any (msg:\"wireshark lookup\"; dns.query; content:\"wireshark\"; nocase; sid:1000001; rev:2;)\n",
    )
    .unwrap();
    let log_dir = dir.path().join("logs");
    let status = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "-r", CAPTURE, "-S"])
        .arg(&rules)
        .arg("-l")
        .arg(&log_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(log_dir.join("eve.json")).unwrap();
    let alerts: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event_type"] == "alert")
        .collect();
    assert!(!alerts.is_empty());
    for a in &alerts {
        assert_eq!(a["alert"]["signature_id"], 1_000_001);
        assert_eq!(a["alert"]["rev"], 2);
        assert_eq!(a["alert"]["signature"], "wireshark lookup");
        assert_eq!(a["app_proto"], "dns");
        assert!(
            a["dns"]["queries"][0]["rrname"]
                .as_str()
                .unwrap()
                .contains("wireshark")
        );
    }
}

#[test]
fn sensor_writes_a_block_list_for_a_real_port_scan() {
    let scan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets/pcap/scans/esnet-masscan/tcp_0_1000_20190821.pcap"
    );
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "-r", scan, "-l"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let nft = std::fs::read_to_string(dir.path().join("blocklist.nft")).unwrap();
    assert!(nft.contains("table inet canh"));
    let feed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("blocklist.json")).unwrap())
            .unwrap();
    assert_eq!(feed["count"], 1);
    let ip = feed["entries"][0]["ip"].as_str().unwrap();
    assert!(nft.contains(ip));
}

/// `canh sensor -i IFACE` on a veth pair between two network namespaces made by the test.
/// Needs root and `ip netns`; otherwise each test prints why it is skipped and passes.
#[cfg(target_os = "linux")]
mod live {
    use serde_json::Value;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    const SENSOR_ADDR: &str = "10.250.0.1";
    const CLIENT_ADDR: &str = "10.250.0.2";

    /// DNS responder on UDP 53 and HTTP server on TCP 8080, in the sensor's namespace.
    const SERVER_PY: &str = r#"
import http.server, socket, sys, threading
ADDR = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"canh live capture test\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer((ADDR, 8080), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((ADDR, 53))
print("ready", flush=True)
while True:
    q, peer = u.recvfrom(2048)
    end = 12
    while q[end] != 0:
        end += q[end] + 1
    end += 5
    ans = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton(ADDR)
    u.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:end] + ans, peer)
"#;

    /// N DNS queries (each from its own port), then M HTTP requests (each its own connection).
    const CLIENT_PY: &str = r#"
import socket, sys
server, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    name = "host%d.canh-live.example" % i
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    s.sendto(bytes([0x12, i & 0xFF, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]) + qname + b"\x00\x01\x00\x01", (server, 53))
    s.recvfrom(2048)
    s.close()
for i in range(m):
    c = socket.create_connection((server, 8080), timeout=10)
    c.sendall(("GET /canh/probe%d.txt HTTP/1.1\r\nHost: canh-live.example\r\nUser-Agent: canh-test\r\nConnection: close\r\n\r\n" % i).encode())
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200"), data[:40]
    c.close()
print("done", flush=True)
"#;

    fn run(cmd: &[&str]) -> Result<(), String> {
        let out = Command::new(cmd[0])
            .args(&cmd[1..])
            .output()
            .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}: {}",
                cmd.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
            })
            .unwrap_or(false)
    }

    /// Two namespaces joined by a veth pair; deleted on drop.
    struct NetnsPair {
        sensor: String,
        client: String,
    }

    impl NetnsPair {
        /// `None` (with the reason printed) when the test cannot run here.
        fn create(test: &str) -> Option<Self> {
            static SEQ: AtomicU32 = AtomicU32::new(0);
            if !is_root() {
                eprintln!("skipping {test}: needs root for network namespaces and AF_PACKET");
                return None;
            }
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let id = format!("{}-{n}", std::process::id());
            let pair = Self {
                sensor: format!("canh-s-{id}"),
                client: format!("canh-c-{id}"),
            };
            if let Err(e) = run(&["ip", "netns", "add", &pair.sensor]) {
                eprintln!("skipping {test}: `ip netns` unavailable ({e})");
                return None;
            }
            if let Err(e) = run(&["ip", "netns", "add", &pair.client]) {
                eprintln!("skipping {test}: `ip netns` unavailable ({e})");
                let _ = run(&["ip", "netns", "del", &pair.sensor]);
                return None;
            }
            let (s, c) = (pair.sensor.as_str(), pair.client.as_str());
            let steps: [&[&str]; 9] = [
                &[
                    "ip", "-n", s, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
                    "netns", c,
                ],
                &[
                    "ip",
                    "-n",
                    s,
                    "addr",
                    "add",
                    "10.250.0.1/24",
                    "dev",
                    "veth0",
                ],
                &[
                    "ip",
                    "-n",
                    c,
                    "addr",
                    "add",
                    "10.250.0.2/24",
                    "dev",
                    "veth1",
                ],
                &["ip", "-n", s, "link", "set", "veth0", "up"],
                &["ip", "-n", c, "link", "set", "veth1", "up"],
                &["ip", "-n", s, "link", "set", "lo", "up"],
                &["ip", "-n", c, "link", "set", "lo", "up"],
                &[
                    "ip",
                    "netns",
                    "exec",
                    s,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                ],
                &[
                    "ip",
                    "netns",
                    "exec",
                    c,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                ],
            ];
            for step in steps {
                run(step).unwrap();
            }
            Some(pair)
        }
    }

    impl Drop for NetnsPair {
        fn drop(&mut self) {
            let _ = run(&["ip", "netns", "del", &self.sensor]);
            let _ = run(&["ip", "netns", "del", &self.client]);
        }
    }

    /// Children killed on drop (before the namespaces go).
    struct Procs(Vec<Child>);

    impl Drop for Procs {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ok() {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn records(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    struct Run {
        records: Vec<Value>,
        stderr: String,
    }

    /// Starts the sensor in the sensor namespace, runs the client from the other one,
    /// waits until `ready` holds on the EVE records (flushed while running), stops it with
    /// `signal` (`INT` or `TERM`).
    fn capture(
        ns: &NetnsPair,
        signal: &str,
        extra: &[&str],
        dns: u32,
        http: u32,
        ready: impl Fn(&[Value]) -> bool,
    ) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let log_dir: PathBuf = dir.path().join("logs");
        let eve = log_dir.join("eve.json");
        let err_path = dir.path().join("sensor.err");
        let mut procs = Procs(Vec::new());
        let mut server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.sensor,
                "python3",
                "-c",
                SERVER_PY,
                SENSOR_ADDR,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = server.stdout.take().unwrap();
        procs.0.push(server);
        let mut line = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut line).unwrap();
        assert_eq!(&line, b"ready\n");
        let sensor = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.sensor,
                env!("CARGO_BIN_EXE_canh"),
                "sensor",
                "-i",
                "veth0",
                "-l",
            ])
            .arg(&log_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let pid = sensor.id().to_string();
        procs.0.push(sensor);
        // eve.json is created once every socket is bound.
        wait_for("the sensor to start", || {
            eve.is_file() || procs.0[1].try_wait().unwrap().is_some()
        });
        let client = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.client,
                "python3",
                "-c",
                CLIENT_PY,
                SENSOR_ADDR,
            ])
            .args([dns.to_string(), http.to_string()])
            .output()
            .unwrap();
        assert!(
            client.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&client.stderr)
        );
        // Records reach the file while the sensor runs (flushed at least once a second).
        wait_for("EVE records while running", || {
            procs.0[1].try_wait().unwrap().is_some() || ready(&records(&eve))
        });
        assert!(
            procs.0[1].try_wait().unwrap().is_none(),
            "sensor exited early"
        );
        run(&["kill", &format!("-{signal}"), &pid]).unwrap();
        let mut status = None;
        wait_for("the sensor to stop", || {
            status = procs.0[1].try_wait().unwrap();
            status.is_some()
        });
        let stderr = std::fs::read_to_string(&err_path).unwrap();
        assert!(status.unwrap().success(), "sensor failed: {stderr}");
        Run {
            records: records(&eve),
            stderr,
        }
    }

    fn of_type<'a>(recs: &'a [Value], t: &str) -> Vec<&'a Value> {
        recs.iter().filter(|r| r["event_type"] == t).collect()
    }

    fn flows_to_port(recs: &[Value], port: u64) -> Vec<&Value> {
        of_type(recs, "flow")
            .into_iter()
            .filter(|r| r["dest_port"] == port || r["src_port"] == port)
            .collect()
    }

    fn has_dns_query(recs: &[Value], name: &str) -> bool {
        of_type(recs, "dns").iter().any(|r| {
            r["dns"]["queries"]
                .as_array()
                .is_some_and(|q| q.iter().any(|q| q["rrname"] == name))
                || r["dns"]["rrname"] == name
        })
    }

    #[test]
    fn sensor_live_logs_dns_and_http_on_veth() {
        let Some(ns) = NetnsPair::create("sensor_live_logs_dns_and_http_on_veth") else {
            return;
        };
        let r = capture(&ns, "INT", &[], 1, 1, |recs| {
            has_dns_query(recs, "host0.canh-live.example")
                && of_type(recs, "http")
                    .iter()
                    .any(|h| h["http"]["url"] == "/canh/probe0.txt")
        });
        let recs = &r.records;
        let dns = flows_to_port(recs, 53);
        assert_eq!(dns.len(), 1, "{dns:?}");
        let f = dns[0];
        assert_eq!(f["src_ip"], CLIENT_ADDR);
        assert_eq!(f["dest_ip"], SENSOR_ADDR);
        assert_eq!(f["proto"], "UDP");
        assert_eq!(f["app_proto"], "dns");
        assert_eq!(f["flow"]["pkts_toserver"], 1);
        assert_eq!(f["flow"]["pkts_toclient"], 1);
        assert!(has_dns_query(recs, "host0.canh-live.example"));
        let http = of_type(recs, "http");
        assert_eq!(http.len(), 1, "{http:?}");
        assert_eq!(http[0]["http"]["hostname"], "canh-live.example");
        assert_eq!(http[0]["http"]["url"], "/canh/probe0.txt");
        assert_eq!(http[0]["http"]["http_user_agent"], "canh-test");
        assert_eq!(http[0]["src_ip"], CLIENT_ADDR);
        assert_eq!(http[0]["dest_port"], 8080);
        let tcp = flows_to_port(recs, 8080);
        assert_eq!(tcp.len(), 1, "{tcp:?}");
        assert_eq!(tcp[0]["app_proto"], "http");
        assert_eq!(tcp[0]["src_ip"], CLIENT_ADDR);
        assert!(tcp[0]["flow"]["pkts_toclient"].as_u64().unwrap() >= 2);
        // Kernel timestamps of this run, not of a file.
        let year = chrono::Utc::now().format("%Y").to_string();
        assert!(f["flow"]["start"].as_str().unwrap().starts_with(&year));
        let stats = of_type(recs, "stats");
        assert_eq!(stats.len(), 1);
        let cap = &stats[0]["stats"]["capture"];
        assert_eq!(cap["workers"], 1);
        assert!(cap["kernel_packets"].as_u64().unwrap() >= 4, "{cap}");
        assert!(stats[0]["stats"]["decoder"]["pkts"].as_u64().unwrap() >= 4);
        assert!(r.stderr.contains("capturing on veth0"), "{}", r.stderr);
    }

    #[test]
    fn sensor_live_bpf_filter_keeps_only_udp() {
        let Some(ns) = NetnsPair::create("sensor_live_bpf_filter_keeps_only_udp") else {
            return;
        };
        // `tcpdump -ddd 'ip and udp'` for Ethernet, then the same filter as an expression.
        let dir = tempfile::tempdir().unwrap();
        let bpf = dir.path().join("udp.bpf");
        std::fs::write(
            &bpf,
            "6\n40 0 0 12\n21 0 3 2048\n48 0 0 23\n21 0 1 17\n6 0 0 262144\n6 0 0 0\n",
        )
        .unwrap();
        let bpf = bpf.to_str().unwrap();
        for filter in [["--bpf-file", bpf], ["--bpf", "ip and udp"]] {
            // The client has finished (HTTP included) before this wait starts.
            let r = capture(&ns, "TERM", &filter, 2, 2, |recs| {
                has_dns_query(recs, "host1.canh-live.example")
            });
            let recs = &r.records;
            assert_eq!(flows_to_port(recs, 53).len(), 2, "{filter:?}");
            assert!(has_dns_query(recs, "host0.canh-live.example"));
            assert!(of_type(recs, "http").is_empty(), "TCP passed {filter:?}");
            assert!(
                flows_to_port(recs, 8080).is_empty(),
                "TCP passed {filter:?}"
            );
            assert!(
                of_type(recs, "flow").iter().all(|f| f["proto"] == "UDP"),
                "only UDP may pass {filter:?}"
            );
            let stats = of_type(recs, "stats");
            assert_eq!(
                stats[0]["stats"]["decoder"]["not_ip"], 0,
                "ARP passed {filter:?}"
            );
        }
        // A bad expression is refused before capturing, with libpcap's reason.
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.sensor, env!("CARGO_BIN_EXE_canh")])
            .args(["sensor", "-i", "veth0", "--bpf", "udp and and", "-l"])
            .arg(dir.path().join("bad"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("syntax error"), "{err}");
    }

    #[test]
    fn sensor_live_two_workers_keep_both_directions_in_one_flow() {
        let Some(ns) =
            NetnsPair::create("sensor_live_two_workers_keep_both_directions_in_one_flow")
        else {
            return;
        };
        let (dns, http) = (12u32, 6u32);
        let r = capture(&ns, "INT", &["--workers", "2"], dns, http, |recs| {
            has_dns_query(recs, &format!("host{}.canh-live.example", dns - 1))
                && of_type(recs, "http").len() == http as usize
        });
        let recs = &r.records;
        let udp = flows_to_port(recs, 53);
        let tcp = flows_to_port(recs, 8080);
        assert_eq!(udp.len(), dns as usize, "{udp:?}");
        assert_eq!(tcp.len(), http as usize, "{tcp:?}");
        for f in udp.iter().chain(&tcp) {
            assert_eq!(f["src_ip"], CLIENT_ADDR, "{f}");
            assert!(f["flow"]["pkts_toserver"].as_u64().unwrap() >= 1, "{f}");
            assert!(
                f["flow"]["pkts_toclient"].as_u64().unwrap() >= 1,
                "split flow: {f}"
            );
        }
        for i in 0..dns {
            assert!(has_dns_query(recs, &format!("host{i}.canh-live.example")));
        }
        let stats = of_type(recs, "stats");
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0]["stats"]["capture"]["workers"], 2);
        // 18 flows hashed over 2 workers: both get some (all on one: 2^-17).
        let per_worker = stats[0]["stats"]["capture"]["worker_pkts"]
            .as_array()
            .unwrap();
        assert_eq!(per_worker.len(), 2);
        assert!(
            per_worker.iter().all(|n| n.as_u64().unwrap() > 0),
            "{per_worker:?}"
        );
    }

    #[test]
    fn sensor_live_names_a_missing_interface() {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_canh"))
            .args(["sensor", "-i", "canh-nosuch0", "-l"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        if is_root() {
            assert!(err.contains("no such interface: canh-nosuch0"), "{err}");
        } else {
            assert!(err.contains("CAP_NET_RAW"), "{err}");
        }
        assert!(!dir.path().join("eve.json").try_exists().unwrap());
    }
}
