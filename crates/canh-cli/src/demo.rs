//! `canh server --demo`: a small set of sample events so that a first look at Canh has data.
//!
//! The lines are written in the formats real devices send (sshd via syslog, nginx access logs,
//! FortiGate key=value, iptables), with times spread over the last hour, and go through the
//! same pipeline as any other input.

use canh_server::Node;
use canh_server::pipeline::Frame;
use chrono::{Duration, Utc};

/// Sends the demo events through the node's pipeline; returns how many frames were sent.
pub(crate) async fn load(node: &Node) -> anyhow::Result<usize> {
    let now = Utc::now();
    let mut frames = Vec::new();
    let hosts = ["web-01", "mail-01", "dc-01", "portal-02"];
    let attackers = ["203.0.113.45", "198.51.100.23", "192.0.2.77"];
    for i in 0..240i64 {
        let t = now - Duration::seconds(3600 - i * 15);
        let ts = t.format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let host = hosts[(i % 4) as usize];
        let ip = attackers[(i % 3) as usize];
        let line = match i % 6 {
            0 | 1 => format!(
                "<38>1 {ts} {host} sshd {} - - Failed password for invalid user admin from {ip} port {} ssh2",
                1000 + i,
                40000 + i
            ),
            2 => format!(
                "<86>1 {ts} {host} sshd {} - - Accepted publickey for vanhanh from 10.20.1.{} port 50{:03} ssh2",
                1000 + i,
                i % 250,
                i
            ),
            3 => format!(
                "{ip} - - [{}] \"GET /wp-login.php?id={i} HTTP/1.1\" 404 153 \"-\" \"Mozilla/5.0 (compatible; scanner)\"",
                t.format("%d/%b/%Y:%H:%M:%S +0000")
            ),
            4 => format!(
                "date={} time={} devname=\"FGT-TINH\" devid=\"FG100F0000000001\" logid=\"0000000013\" type=\"traffic\" subtype=\"forward\" level=\"notice\" srcip={ip} srcport={} dstip=10.20.0.{} dstport=443 proto=6 action=\"deny\" policyid=7 service=\"HTTPS\"",
                t.format("%Y-%m-%d"),
                t.format("%H:%M:%S"),
                50000 + i,
                i % 20
            ),
            _ => format!(
                "<4>{} {host} kernel: [12345.678] IPTABLES-DROP: IN=eth0 OUT= MAC=00:00 SRC={ip} DST=10.20.0.5 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=1 DF PROTO=TCP SPT={} DPT=3389 WINDOW=1024 RES=0x00 SYN URGP=0",
                t.format("%b %e %H:%M:%S"),
                30000 + i
            ),
        };
        frames.push(Frame::auto("demo", None, line.into_bytes()));
    }
    let n = frames.len();
    node.state.pipeline.ingest(frames).await?;
    Ok(n)
}
