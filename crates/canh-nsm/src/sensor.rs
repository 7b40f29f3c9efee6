//! The sensor engine: packets in, EVE records out.

use crate::NsmError;
use crate::blocklist::BlockList;
use crate::community_id::community_id_v1;
use crate::ddos::{DdosConfig, DdosDetector, DdosEvent, DdosStats, PacketMeta};
use crate::decode::{
    self, Frame, Ip, LinkInfo, LinkType, Timestamp, Transport as L4, decode_frame,
    decode_gre_inner, decode_transport, tcp_flags,
};
use crate::defrag::{Defrag, DefragOutcome, DefragStats};
use crate::eve;
use crate::flow::{EndReason, Flow, FlowKey, FlowStats, FlowTable, Timeouts, new_flow};
use crate::proto::{AppEvent, Direction, PROTOCOLS, ParseResult, Probe, ProtocolParser, Transport};
use crate::rules::buffers::AppData;
use crate::rules::engine::{FlowInfo, PacketInfo};
use crate::rules::{Alert, AppProto, DetectState, RuleSet};
use crate::stream::Chunk;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

/// Bytes kept per direction while detecting the protocol.
const DETECT_BUFFER: usize = 4096;
/// Tunnel nesting allowed (GRE in GRE, VXLAN in GRE, ...).
const MAX_TUNNEL_DEPTH: u8 = 3;

/// Sensor settings.
#[derive(Debug, Clone)]
pub struct SensorConfig {
    /// Memory budget for the flow table, in bytes: the flows and what they buffer (stream
    /// reassembly, data awaiting acknowledgement, application-layer state). Past it the
    /// oldest flows end with `flow.reason: forced`.
    pub flow_memcap: usize,
    /// Out-of-order bytes buffered per TCP direction.
    pub stream_buffer: usize,
    /// Bytes an application parser may leave unconsumed per direction.
    pub app_buffer: usize,
    /// Flow timeouts.
    pub timeouts: Timeouts,
    /// Parse TCP sessions whose handshake was not seen.
    pub midstream: bool,
    /// IP datagrams reassembled at the same time.
    pub defrag_max: usize,
    /// Community ID seed.
    pub community_id_seed: u16,
    /// Write a `stats` record at the end.
    pub stats_record: bool,
    /// Also treat this UDP port as VXLAN.
    pub vxlan_port: u16,
    /// Scan and flood detection (`None`: off).
    pub ddos: Option<DdosConfig>,
    /// Seconds a block-list entry stays after its source was last seen.
    pub block_ttl_secs: i64,
    /// Log Ethernet addresses in EVE records (`ether`), like Suricata's `ethernet: yes`.
    pub eve_ethernet: bool,
    /// Log every request header in `http.request_headers` (Suricata's `dump-all-headers`).
    pub http_request_headers: bool,
    /// Log every response header in `http.response_headers`.
    pub http_response_headers: bool,
    /// DNS record format and filters.
    pub dns_log: crate::proto::dns::DnsLogConfig,
    /// Extra ports per application protocol (`app_proto` name, port) on which detection
    /// trusts the port as well as the content (Suricata's `detection-ports`).
    pub detection_ports: Vec<(String, u16)>,
    /// Match content rules against the packets of TLS and SSH sessions after their handshake
    /// (Suricata's `encryption-handling: full`). Off by default, as Suricata's `track-only`:
    /// ciphertext holds nothing a content rule can find, and scanning it costs time.
    pub inspect_encrypted: bool,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            flow_memcap: 128 << 20,
            stream_buffer: 1 << 20,
            app_buffer: 1 << 20,
            timeouts: Timeouts::default(),
            midstream: false,
            defrag_max: 4096,
            community_id_seed: 0,
            stats_record: true,
            vxlan_port: decode::VXLAN_PORT,
            ddos: Some(DdosConfig::default()),
            block_ttl_secs: 3600,
            eve_ethernet: false,
            http_request_headers: false,
            http_response_headers: false,
            dns_log: crate::proto::dns::DnsLogConfig::default(),
            detection_ports: Vec::new(),
            inspect_encrypted: false,
        }
    }
}

/// Counters of a sensor run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SensorStats {
    /// Packets read.
    pub packets: u64,
    /// Captured bytes read.
    pub bytes: u64,
    /// IPv4 packets.
    pub ipv4: u64,
    /// IPv6 packets.
    pub ipv6: u64,
    /// Frames that were not IP.
    pub not_ip: u64,
    /// Decoder anomalies.
    pub decode_anomalies: u64,
    /// Application-layer anomalies.
    pub app_anomalies: u64,
    /// Tunnelled packets decoded (GRE, VXLAN).
    pub tunnelled: u64,
    /// Records written per event type.
    pub events: BTreeMap<String, u64>,
    /// Flow table counters.
    pub flows: FlowStats,
    /// Fragment reassembly counters.
    pub defrag: DefragStats,
    /// TCP segments buffered out of order.
    pub tcp_out_of_order: u64,
    /// TCP overlapping segments.
    pub tcp_overlaps: u64,
    /// TCP gaps.
    pub tcp_gaps: u64,
    /// The capture ended in the middle of a block.
    pub truncated_capture: bool,
    /// Scan/flood detector counters.
    pub ddos: DdosStats,
    /// Sources of detected scans and floods.
    pub blocklist: BlockList,
    /// Threshold entries dropped because the table was full.
    pub threshold_evictions: u64,
}

impl SensorStats {
    /// The body of the `stats` EVE record (decoder, flow, defrag, tcp, app layer, detect and
    /// ddos counters).
    pub fn record_body(&self) -> Value {
        let s = self;
        json!({
            "decoder": {
                "pkts": s.packets,
                "bytes": s.bytes,
                "ipv4": s.ipv4,
                "ipv6": s.ipv6,
                "not_ip": s.not_ip,
                "tunnelled": s.tunnelled,
                "anomalies": s.decode_anomalies,
                "truncated_capture": s.truncated_capture,
            },
            "flow": {
                "total": s.flows.created,
                "timeout": s.flows.timed_out,
                "memcap_evictions": s.flows.evicted,
                "peak": s.flows.peak,
            },
            "defrag": {
                "reassembled": s.defrag.reassembled,
                "timeouts": s.defrag.timeouts,
                "evicted": s.defrag.evicted,
                "overlaps": s.defrag.overlaps,
                "too_large": s.defrag.too_large,
            },
            "tcp": {
                "out_of_order": s.tcp_out_of_order,
                "overlaps": s.tcp_overlaps,
                "gaps": s.tcp_gaps,
            },
            "app_layer": { "anomalies": s.app_anomalies },
            "detect": {
                "alerts": s.events.get("alert").copied().unwrap_or(0),
                "threshold_evictions": s.threshold_evictions,
            },
            "ddos": {
                "destinations_dropped": s.ddos.destinations_dropped,
                "destinations_evicted": s.ddos.destinations_evicted,
                "sources_dropped": s.ddos.sources_dropped,
                "source_replacements": s.ddos.source_replacements,
                "peak_destinations": s.ddos.peak_destinations,
                "peak_sources": s.ddos.peak_sources,
                "blocklist": s.blocklist.len(),
            },
        })
    }
}

/// The network sensor engine.
pub struct Sensor<W: Write> {
    cfg: SensorConfig,
    out: W,
    flows: FlowTable,
    defrag: Defrag,
    stats: SensorStats,
    last_ts: Timestamp,
    last_expire: i64,
    pcap_cnt: u64,
    scratch: Vec<AppEvent>,
    rules: Option<Arc<RuleSet>>,
    detect: DetectState,
    alerts: Vec<Alert>,
    ddos: Option<DdosDetector>,
    ddos_events: Vec<DdosEvent>,
    /// Ethernet addresses of the packet being processed and its direction in its flow.
    cur_ether: eve::PacketEther,
}

/// What the current packet contributes to its flow.
struct PacketView<'a> {
    ts: Timestamp,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    link: LinkInfo,
    wire_len: u64,
    l4: L4<'a>,
}

impl<W: Write> Sensor<W> {
    /// A sensor writing EVE lines to `out`.
    pub fn new(cfg: SensorConfig, out: W) -> Self {
        let block_ttl = cfg.block_ttl_secs;
        Self {
            flows: FlowTable::new(cfg.flow_memcap),
            defrag: Defrag::new(cfg.defrag_max, 60),
            out,
            last_ts: Timestamp::default(),
            last_expire: i64::MIN,
            pcap_cnt: 0,
            scratch: Vec::new(),
            rules: None,
            detect: DetectState::default(),
            alerts: Vec::new(),
            ddos: cfg.ddos.clone().map(DdosDetector::new),
            ddos_events: Vec::new(),
            cur_ether: None,
            cfg,
            stats: SensorStats {
                blocklist: BlockList::with_ttl(block_ttl),
                ..SensorStats::default()
            },
        }
    }

    /// Matches these signatures on every packet and application event (EVE `alert`).
    pub fn with_rules(mut self, rules: Arc<RuleSet>) -> Self {
        self.rules = Some(rules);
        self
    }

    /// Time of the last packet.
    pub fn last_timestamp(&self) -> Timestamp {
        self.last_ts
    }

    /// Records that the capture ended mid-block.
    pub fn note_truncated_capture(&mut self) {
        self.stats.truncated_capture = true;
    }

    /// Counters so far.
    pub fn stats(&self) -> &SensorStats {
        &self.stats
    }

    fn write(&mut self, rec: &Value) -> Result<(), NsmError> {
        let et = rec
            .get("event_type")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        self.write_as(et, rec)
    }

    /// Writes one record of type `event_type`, serialised straight to the output.
    fn write_as<T: serde::Serialize + ?Sized>(
        &mut self,
        event_type: &str,
        rec: &T,
    ) -> Result<(), NsmError> {
        match self.stats.events.get_mut(event_type) {
            Some(n) => *n += 1,
            None => {
                self.stats.events.insert(event_type.to_string(), 1);
            }
        }
        serde_json::to_writer(&mut self.out, rec).map_err(|e| NsmError::Output(e.into()))?;
        self.out.write_all(b"\n").map_err(NsmError::Output)
    }

    /// Processes one captured frame. `_origlen` is the length on the wire.
    pub fn process(
        &mut self,
        ts: Timestamp,
        link: LinkType,
        data: &[u8],
        _origlen: u32,
    ) -> Result<(), NsmError> {
        self.pcap_cnt += 1;
        self.cur_ether = None;
        self.stats.packets += 1;
        self.stats.bytes += data.len() as u64;
        if ts > self.last_ts {
            self.last_ts = ts;
        }
        if ts.secs > self.last_expire {
            self.last_expire = ts.secs;
            self.expire(ts)?;
        }
        match decode_frame(link, data) {
            Err(a) => self.decode_anomaly(ts, a.event),
            Ok(Frame::NotIp) => {
                self.stats.not_ip += 1;
                Ok(())
            }
            Ok(Frame::Ip(info, ip)) => self.handle_ip(ts, info, ip, data.len() as u64, 0),
        }
    }

    fn decode_anomaly(&mut self, ts: Timestamp, event: &str) -> Result<(), NsmError> {
        self.stats.decode_anomalies += 1;
        let rec = eve::anomaly_record(ts, self.pcap_cnt, "decode", event, None);
        self.write(&rec)
    }

    fn handle_ip(
        &mut self,
        ts: Timestamp,
        info: LinkInfo,
        ip: Ip<'_>,
        wire_len: u64,
        depth: u8,
    ) -> Result<(), NsmError> {
        match ip.src {
            IpAddr::V4(_) => self.stats.ipv4 += 1,
            IpAddr::V6(_) => self.stats.ipv6 += 1,
        }
        if let Some(frag) = ip.frag {
            let outcome = self
                .defrag
                .add(ts, ip.src, ip.dst, ip.proto, frag, ip.payload);
            self.stats.defrag = self.defrag.stats;
            return match outcome {
                DefragOutcome::Pending => Ok(()),
                DefragOutcome::Invalid(ev) => self.decode_anomaly(ts, ev),
                DefragOutcome::Complete(buf) => match decode_transport(ip.proto, &buf) {
                    Err(a) => self.decode_anomaly(ts, a.event),
                    Ok(l4) => {
                        let view = PacketView {
                            ts,
                            src: ip.src,
                            dst: ip.dst,
                            proto: ip.proto,
                            link: info,
                            wire_len,
                            l4,
                        };
                        self.handle_l4(view, depth)
                    }
                },
            };
        }
        match decode_transport(ip.proto, ip.payload) {
            Err(a) => self.decode_anomaly(ts, a.event),
            Ok(l4) => {
                let view = PacketView {
                    ts,
                    src: ip.src,
                    dst: ip.dst,
                    proto: ip.proto,
                    link: info,
                    wire_len,
                    l4,
                };
                self.handle_l4(view, depth)
            }
        }
    }

    fn handle_l4(&mut self, pkt: PacketView<'_>, depth: u8) -> Result<(), NsmError> {
        // Tunnels: the inner packet makes its own flow (GRE: only the inner one; VXLAN, Geneve
        // and Teredo keep their outer UDP flow too, as Suricata does).
        match pkt.l4 {
            L4::Gre { ethertype, payload } if depth < MAX_TUNNEL_DEPTH => {
                // A tunnelled packet counts its own bytes (from the inner header on).
                let inner_len = payload.len() as u64;
                return match decode_gre_inner(ethertype, payload) {
                    Ok(Frame::Ip(info, ip)) => {
                        self.stats.tunnelled += 1;
                        self.handle_ip(pkt.ts, info, ip, inner_len, depth + 1)
                    }
                    Ok(Frame::NotIp) => Ok(()),
                    Err(a) => self.decode_anomaly(pkt.ts, a.event),
                };
            }
            L4::Udp { dport, payload, .. }
                if dport == self.cfg.vxlan_port && depth < MAX_TUNNEL_DEPTH =>
            {
                if let Some(inner) = decode::decode_vxlan(payload) {
                    let ts = pkt.ts;
                    self.handle_flow(pkt)?;
                    let mut info = LinkInfo::default();
                    return match decode::decode_ethernet(inner, &mut info) {
                        Ok(Frame::Ip(info, ip)) => {
                            self.stats.tunnelled += 1;
                            self.handle_ip(ts, info, ip, inner.len() as u64, depth + 1)
                        }
                        Ok(Frame::NotIp) => Ok(()),
                        Err(a) => self.decode_anomaly(ts, a.event),
                    };
                }
            }
            L4::Udp { dport, payload, .. }
                if dport == decode::GENEVE_PORT && depth < MAX_TUNNEL_DEPTH =>
            {
                if let Some((proto, inner)) = decode::decode_geneve(payload) {
                    let ts = pkt.ts;
                    self.handle_flow(pkt)?;
                    return match decode_gre_inner(proto, inner) {
                        Ok(Frame::Ip(info, ip)) => {
                            self.stats.tunnelled += 1;
                            self.handle_ip(ts, info, ip, inner.len() as u64, depth + 1)
                        }
                        Ok(Frame::NotIp) => Ok(()),
                        Err(a) => self.decode_anomaly(ts, a.event),
                    };
                }
            }
            L4::Udp {
                sport,
                dport,
                payload,
            } if (sport == decode::TEREDO_PORT || dport == decode::TEREDO_PORT)
                && depth < MAX_TUNNEL_DEPTH =>
            {
                // Teredo keeps its outer UDP flow (as Suricata does) and adds the inner one.
                if let Some(inner) = decode::decode_teredo(payload) {
                    let ts = pkt.ts;
                    self.handle_flow(pkt)?;
                    return match decode::decode_ipv6(inner) {
                        Ok(ip) => {
                            self.stats.tunnelled += 1;
                            let len = inner.len() as u64;
                            self.handle_ip(ts, LinkInfo::default(), ip, len, depth + 1)
                        }
                        Err(a) => self.decode_anomaly(ts, a.event),
                    };
                }
            }
            _ => {}
        }
        self.handle_flow(pkt)
    }

    fn handle_flow(&mut self, pkt: PacketView<'_>) -> Result<(), NsmError> {
        let (sport, dport) = match pkt.l4 {
            L4::Tcp(t) => (t.sport, t.dport),
            L4::Udp { sport, dport, .. } | L4::Sctp { sport, dport } => (sport, dport),
            _ => (0, 0),
        };
        if let Some(det) = self.ddos.as_mut() {
            let flags = match pkt.l4 {
                L4::Tcp(t) => t.flags,
                _ => 0,
            };
            let meta = PacketMeta {
                ts: pkt.ts.secs,
                src: pkt.src,
                dst: pkt.dst,
                proto: pkt.proto,
                sport,
                dport,
                flags,
                len: pkt.wire_len,
            };
            self.ddos_events.clear();
            det.observe(&meta, &mut self.ddos_events);
            if !self.ddos_events.is_empty() {
                self.write_ddos(pkt.ts.secs)?;
            }
        }
        let vlans = pkt.link.vlans;
        let key = match pkt.l4 {
            L4::Esp { spi } => FlowKey::esp(pkt.src, pkt.dst, spi, vlans),
            _ => FlowKey::new(pkt.src, sport, pkt.dst, dport, pkt.proto, vlans),
        };
        // A flow whose timeout passed ends here: this packet starts a new one.
        if let Some(old) = self.flows.take_timed_out(&key, pkt.ts, &self.cfg.timeouts) {
            self.end_flow(old, EndReason::Timeout)?;
        }
        if self.flows.get_mut(&key).is_none() {
            let flow = self.create_flow(&pkt, sport, dport);
            self.flows.insert(key, flow);
            self.evict_over_budget(&key)?;
        }
        let cfg_midstream = self.cfg.midstream;
        let Some(flow) = self.flows.get_mut(&key) else {
            return Ok(());
        };
        let mut dir = if (pkt.src, sport) == flow.client && (pkt.dst, dport) == flow.server {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        // Midstream: the first data of the session may show the flow was taken the wrong way
        // round (a reply sent "to the server").
        if let L4::Tcp(t) = pkt.l4
            && dir == Direction::ToServer
            && flow.midstream
            && !t.payload.is_empty()
            && flow.app.proto.is_none()
            && flow.streams.iter().all(|s| s.next_seq().is_none())
            && PROTOCOLS.iter().any(|p| {
                p.transports().contains(&Transport::Tcp)
                    && p.is_server_reply(Transport::Tcp, t.payload, t.sport)
            })
        {
            flow.swap_direction();
            dir = Direction::ToClient;
        }
        let i = dir.index();
        if self.cfg.eve_ethernet
            && let Some(e) = pkt.link.ether
        {
            flow.add_macs(&e, dir == Direction::ToServer);
            self.cur_ether = Some((e, dir));
        }
        flow.pkts[i] += 1;
        flow.bytes[i] += pkt.wire_len;
        if pkt.ts > flow.end {
            flow.end = pkt.ts;
        }
        let mut events = std::mem::take(&mut self.scratch);
        let mut anomalies: Vec<&'static str> = Vec::new();
        match pkt.l4 {
            L4::Tcp(t) => {
                flow.update_tcp(dir, t.flags);
                if t.flags & tcp_flags::SYN != 0 {
                    flow.streams[i].set_start(t.seq.wrapping_add(1));
                }
                // This segment acknowledges the other direction's data: release it.
                if t.flags & tcp_flags::ACK != 0 {
                    let chunks = release_acked(flow, dir.flip(), Some(t.ack));
                    feed_tcp_chunks(
                        flow,
                        dir.flip(),
                        chunks,
                        &self.cfg,
                        &mut events,
                        &mut anomalies,
                    );
                }
                let usable = flow.streams[i].started() || cfg_midstream || flow.midstream;
                if !t.payload.is_empty() && t.flags & tcp_flags::RST == 0 && usable {
                    // Data on a SYN (TCP Fast Open) follows the SYN's sequence number.
                    let seq = if t.flags & tcp_flags::SYN != 0 {
                        t.seq.wrapping_add(1)
                    } else {
                        t.seq
                    };
                    let mut chunks = Vec::new();
                    let start = flow.streams[i].next_seq().unwrap_or(seq);
                    flow.streams[i].add(seq, t.payload, &mut chunks);
                    hold(flow, dir, start, chunks);
                    if flow.held_bytes[i] > self.cfg.stream_buffer {
                        // Never acknowledged (one-sided capture): stop waiting.
                        let chunks = release_acked(flow, dir, None);
                        feed_tcp_chunks(flow, dir, chunks, &self.cfg, &mut events, &mut anomalies);
                    }
                }
            }
            L4::Udp { payload, .. } if !payload.is_empty() => {
                feed_udp(flow, &self.cfg, dir, payload, &mut events, &mut anomalies);
            }
            L4::Icmp { itype, code, .. } if flow.icmp[i].is_none() => {
                flow.icmp[i] = Some((itype, code));
            }
            _ => {}
        }
        let mut alert_recs = Vec::new();
        if let Some(rules) = &self.rules {
            let (payload, tcp_flags, icmp) = match pkt.l4 {
                L4::Tcp(t) => (t.payload, Some(t.flags), None),
                L4::Udp { payload, .. } => (payload, None, None),
                L4::Icmp {
                    itype,
                    code,
                    payload,
                    ..
                } => (payload, None, Some((itype, code))),
                _ => (&[][..], None, None),
            };
            let info = PacketInfo {
                ts_secs: pkt.ts.secs,
                src: pkt.src,
                dst: pkt.dst,
                sport,
                dport,
                proto: pkt.proto,
                dir,
                established: flow.state() != crate::flow::FlowState::New,
                first_in_dir: flow.pkts[i] == 1,
                payload,
                inspect_payload: self.cfg.inspect_encrypted
                    || !flow
                        .app
                        .state
                        .as_ref()
                        .is_some_and(|s| s.payload_encrypted()),
                tcp_flags,
                icmp,
                app: flow.app.proto.and_then(|p| app_proto_of(p.app_proto())),
            };
            self.alerts.clear();
            rules
                .engine
                .match_packet(&mut self.detect, &info, &mut flow.detect, &mut self.alerts);
            for a in &self.alerts {
                if let Some(rule) = rules.engine.rules.get(a.rule as usize) {
                    let at = eve::PacketRef {
                        ts: pkt.ts,
                        pcap_cnt: self.pcap_cnt,
                        ether: self.cur_ether,
                    };
                    alert_recs.push(eve::alert_record(at, flow, dir, rules, rule, None));
                }
            }
        }
        let closed = pkt.proto == 6 && flow.state() == crate::flow::FlowState::Closed;
        let ts = pkt.ts;
        for rec in &alert_recs {
            self.write(rec)?;
        }
        self.emit_app(ts, &key, &mut events, &anomalies)?;
        self.scratch = events;
        if closed {
            // A closed TCP session keeps its flow (for late packets) until the closed timeout;
            // flush reassembly now so the application layer sees everything.
            if let Some(flow) = self.flows.get_mut(&key) {
                let mut events = std::mem::take(&mut self.scratch);
                let mut anomalies = Vec::new();
                flush_streams(flow, &self.cfg, &mut events, &mut anomalies);
                self.emit_app(ts, &key, &mut events, &anomalies)?;
                self.scratch = events;
            }
        }
        // The packet may have grown or shrunk what the flow buffers.
        self.flows.recount(&key);
        self.evict_over_budget(&key)
    }

    /// Ends the oldest flows (EVE `flow.reason: forced`) while the flow table holds more than
    /// its memory budget; `keep` is the flow of the packet being processed.
    fn evict_over_budget(&mut self, keep: &FlowKey) -> Result<(), NsmError> {
        while let Some(evicted) = self.flows.pop_over_budget(keep) {
            self.end_flow(evicted, EndReason::Forced)?;
        }
        Ok(())
    }

    fn create_flow(&self, pkt: &PacketView<'_>, sport: u16, dport: u16) -> Flow {
        let mut client = (pkt.src, sport);
        let mut server = (pkt.dst, dport);
        let mut midstream = false;
        if let L4::Tcp(t) = pkt.l4 {
            let syn = t.flags & tcp_flags::SYN != 0;
            let ack = t.flags & tcp_flags::ACK != 0;
            if syn && ack {
                std::mem::swap(&mut client, &mut server);
            }
            midstream = !syn && self.cfg.midstream;
        }
        if let L4::Udp { payload, .. } = pkt.l4 {
            // A capture may start with a server's reply: let protocols say so.
            let reply = PROTOCOLS.iter().any(|p| {
                p.transports().contains(&Transport::Udp)
                    && p.is_server_reply(Transport::Udp, payload, sport)
            });
            if reply {
                std::mem::swap(&mut client, &mut server);
            }
        }
        let mut flow = new_flow(
            client,
            server,
            pkt.proto,
            pkt.link.vlan_ids(),
            pkt.ts,
            self.cfg.stream_buffer,
        );
        flow.midstream = midstream;
        if let L4::Esp { spi } = pkt.l4 {
            flow.spi = Some(spi);
        }
        let (cs, cd) = match pkt.l4 {
            L4::Icmp { itype, code, .. } => (u16::from(itype), u16::from(code)),
            _ => (client.1, server.1),
        };
        let (a, b) = match pkt.l4 {
            L4::Icmp { .. } => (pkt.src, pkt.dst),
            _ => (client.0, server.0),
        };
        flow.community_id = community_id_v1(self.cfg.community_id_seed, a, b, pkt.proto, cs, cd);
        flow
    }

    fn emit_app(
        &mut self,
        ts: Timestamp,
        key: &FlowKey,
        events: &mut Vec<AppEvent>,
        anomalies: &[&'static str],
    ) -> Result<(), NsmError> {
        if events.is_empty() && anomalies.is_empty() {
            return Ok(());
        }
        let mut recs = Vec::with_capacity(events.len() + anomalies.len());
        let at = eve::PacketRef {
            ts,
            pcap_cnt: self.pcap_cnt,
            ether: self.cur_ether,
        };
        if let Some(flow) = self.flows.get_mut(key) {
            flow.app_events += events.len() as u64;
            for ev in events.drain(..) {
                if ev.event_type == "anomaly" {
                    // A parser's own event (libhtp's, for HTTP): logged as it is, not matched.
                    self.stats.app_anomalies += 1;
                    recs.push(eve::app_record(at, flow, ev));
                    continue;
                }
                if let Some(rules) = &self.rules {
                    let parts = DetectParts {
                        rules,
                        detect: &mut self.detect,
                        alerts: &mut self.alerts,
                    };
                    detect_app(parts, at, flow, &ev, &mut recs);
                }
                for ev in log_forms(ev, &self.cfg) {
                    recs.push(eve::app_record(at, flow, ev));
                }
            }
            for a in anomalies {
                recs.push(eve::anomaly_record(
                    ts,
                    self.pcap_cnt,
                    "applayer",
                    a,
                    Some(flow),
                ));
            }
        }
        self.stats.app_anomalies += anomalies.len() as u64;
        for rec in &recs {
            self.write(rec)?;
        }
        Ok(())
    }

    fn expire(&mut self, now: Timestamp) -> Result<(), NsmError> {
        self.defrag.expire(now);
        let expired = self.flows.expire(now, &self.cfg.timeouts);
        for flow in expired {
            self.end_flow(*flow, EndReason::Timeout)?;
        }
        Ok(())
    }

    fn end_flow(&mut self, mut flow: Flow, reason: EndReason) -> Result<(), NsmError> {
        let mut events = Vec::new();
        let mut anomalies = Vec::new();
        flush_streams(&mut flow, &self.cfg, &mut events, &mut anomalies);
        if let Some(state) = flow.app.state.as_mut() {
            state.close(&mut events);
        }
        let ts = flow.end;
        let at = eve::PacketRef {
            ts,
            pcap_cnt: 0,
            ether: None,
        };
        for ev in events {
            let mut recs = Vec::new();
            if let Some(rules) = &self.rules {
                let parts = DetectParts {
                    rules,
                    detect: &mut self.detect,
                    alerts: &mut self.alerts,
                };
                detect_app(parts, at, &mut flow, &ev, &mut recs);
            }
            for ev in log_forms(ev, &self.cfg) {
                recs.push(eve::app_record(at, &flow, ev));
            }
            for rec in &recs {
                self.write(rec)?;
            }
        }
        for a in anomalies {
            self.stats.app_anomalies += 1;
            let rec = eve::anomaly_record(ts, 0, "applayer", a, Some(&flow));
            self.write(&rec)?;
        }
        for s in &flow.streams {
            self.stats.tcp_out_of_order += s.stats.out_of_order;
            self.stats.tcp_overlaps += s.stats.overlaps;
            self.stats.tcp_gaps += s.stats.gaps;
        }
        self.write_as(
            "flow",
            &eve::FlowRecord {
                flow: &flow,
                reason,
            },
        )
    }

    fn write_ddos(&mut self, now: i64) -> Result<(), NsmError> {
        let events = std::mem::take(&mut self.ddos_events);
        for ev in &events {
            match ev {
                DdosEvent::Flood(f) => {
                    for (ip, _) in &f.top_sources {
                        let reason = f.vectors.first().map_or("flood", |(v, _)| v.name());
                        self.stats.blocklist.add(*ip, reason, now);
                    }
                }
                DdosEvent::Scan(s) => self.stats.blocklist.add(s.source, s.kind.name(), now),
            }
            let rec = eve::ddos_record(ev);
            self.write(&rec)?;
        }
        self.ddos_events = events;
        self.stats.blocklist.expire(now);
        Ok(())
    }

    /// Ends every flow (reason `shutdown`), writes the `stats` record and returns the counters.
    pub fn finish(mut self) -> Result<SensorStats, NsmError> {
        if let Some(det) = self.ddos.as_mut() {
            self.ddos_events.clear();
            det.close_window(&mut self.ddos_events);
            self.stats.ddos = det.stats;
            if !self.ddos_events.is_empty() {
                self.write_ddos(self.last_ts.secs)?;
            }
        }
        self.stats.threshold_evictions = self.detect.threshold_evictions;
        for flow in self.flows.drain_all() {
            self.end_flow(*flow, EndReason::Shutdown)?;
        }
        self.stats.flows = self.flows.stats;
        self.stats.defrag = self.defrag.stats;
        if self.cfg.stats_record {
            let rec = self.stats_record();
            self.write(&rec)?;
        }
        self.out.flush().map_err(NsmError::Output)?;
        Ok(self.stats)
    }

    fn stats_record(&self) -> Value {
        json!({
            "timestamp": self.last_ts.to_eve(),
            "event_type": "stats",
            "stats": self.stats.record_body(),
        })
    }
}

/// The records an application event is logged as, given the logger options.
fn log_forms(ev: AppEvent, cfg: &SensorConfig) -> Vec<AppEvent> {
    match ev.event_type {
        "http" => vec![with_http_headers(ev, cfg)],
        "dns" => cfg
            .dns_log
            .records(ev.body, ev.direction)
            .into_iter()
            .map(|r| AppEvent {
                event_type: "dns",
                direction: r.dir,
                body: r.body,
                tx_id: ev.tx_id,
                http: None,
            })
            .collect(),
        _ => vec![ev],
    }
}

/// Adds the `request_headers` / `response_headers` arrays to an `http` event when configured.
fn with_http_headers(mut ev: AppEvent, cfg: &SensorConfig) -> AppEvent {
    let Some(raw) = ev.http.as_deref() else {
        return ev;
    };
    let list = |head: Option<&crate::proto::http1::parser::Head>| -> Option<Value> {
        let headers = &head?.headers;
        if headers.is_empty() {
            return None;
        }
        let items = headers
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        Some(Value::Array(items))
    };
    let req = list(raw.request.as_ref()).filter(|_| cfg.http_request_headers);
    let resp = list(raw.response.as_ref()).filter(|_| cfg.http_response_headers);
    if let Some(v) = req {
        ev.body.insert("request_headers".into(), v);
    }
    if let Some(v) = resp {
        ev.body.insert("response_headers".into(), v);
    }
    ev
}

/// The detection fields of a sensor, borrowed together.
struct DetectParts<'a> {
    rules: &'a RuleSet,
    detect: &'a mut DetectState,
    alerts: &'a mut Vec<Alert>,
}

fn app_proto_of(name: &str) -> Option<AppProto> {
    match name {
        "http" => Some(AppProto::Http),
        "dns" => Some(AppProto::Dns),
        "tls" => Some(AppProto::Tls),
        _ => None,
    }
}

/// Runs application rules on one event and appends the alert records.
fn detect_app(
    parts: DetectParts<'_>,
    at: eve::PacketRef,
    flow: &mut Flow,
    ev: &AppEvent,
    recs: &mut Vec<Value>,
) {
    let Some(proto) = app_proto_of(ev.event_type) else {
        return;
    };
    let data = AppData {
        proto,
        body: &ev.body,
        http: ev.http.as_deref(),
        direction: ev.direction,
    };
    let info = FlowInfo {
        ts_secs: at.ts.secs,
        client: flow.client,
        server: flow.server,
        established: flow.state() != crate::flow::FlowState::New,
    };
    parts.alerts.clear();
    parts
        .rules
        .engine
        .match_app(parts.detect, &data, &info, &mut flow.detect, parts.alerts);
    for a in parts.alerts.iter() {
        if let Some(rule) = parts.rules.engine.rules.get(a.rule as usize) {
            recs.push(eve::alert_record(
                at,
                flow,
                a.dir,
                parts.rules,
                rule,
                Some((ev.event_type, &ev.body)),
            ));
        }
    }
}

fn flush_streams(
    flow: &mut Flow,
    cfg: &SensorConfig,
    events: &mut Vec<AppEvent>,
    anomalies: &mut Vec<&'static str>,
) {
    for dir in [Direction::ToServer, Direction::ToClient] {
        let mut chunks = release_acked(flow, dir, None);
        flow.streams[dir.index()].flush(&mut chunks);
        if !chunks.is_empty() {
            feed_tcp_chunks(flow, dir, chunks, cfg, events, anomalies);
        }
    }
}

fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// Queues in-order chunks of `dir` starting at sequence `start` until the peer acknowledges them.
fn hold(flow: &mut Flow, dir: Direction, start: u32, chunks: Vec<Chunk>) {
    let i = dir.index();
    let mut seq = start;
    for c in chunks {
        let len = match &c {
            Chunk::Data(d) => d.len(),
            Chunk::Gap(n) => *n as usize,
        };
        if let Chunk::Data(d) = &c {
            flow.held_bytes[i] += d.len();
        }
        flow.held[i].push_back((seq, c));
        seq = seq.wrapping_add(len as u32);
    }
}

/// Takes the held chunks of `dir` acknowledged by `ack` (all of them for `None`).
fn release_acked(flow: &mut Flow, dir: Direction, ack: Option<u32>) -> Vec<Chunk> {
    let i = dir.index();
    let mut out = Vec::new();
    while let Some((seq, chunk)) = flow.held[i].pop_front() {
        let len = match &chunk {
            Chunk::Data(d) => d.len(),
            Chunk::Gap(n) => *n as usize,
        };
        let acked = match ack {
            None => len,
            Some(a) => seq_diff(a, seq).clamp(0, len as i64) as usize,
        };
        if acked == len {
            if let Chunk::Data(d) = &chunk {
                flow.held_bytes[i] -= d.len();
            }
            out.push(chunk);
            continue;
        }
        match chunk {
            Chunk::Data(mut d) if acked > 0 => {
                let rest = d.split_off(acked);
                flow.held_bytes[i] -= acked;
                out.push(Chunk::Data(d));
                flow.held[i].push_front((seq.wrapping_add(acked as u32), Chunk::Data(rest)));
            }
            other => flow.held[i].push_front((seq, other)),
        }
        break;
    }
    out
}

/// Whether either port of the flow is one of the protocol's usual ports or one configured
/// for it.
fn port_match(flow: &Flow, p: &dyn ProtocolParser, cfg: &SensorConfig) -> bool {
    let ports = p.ports();
    let usual = ports.contains(&flow.server.1) || ports.contains(&flow.client.1);
    usual
        || cfg.detection_ports.iter().any(|(id, port)| {
            id == p.app_proto() && (*port == flow.server.1 || *port == flow.client.1)
        })
}

fn feed_tcp_chunks(
    flow: &mut Flow,
    dir: Direction,
    chunks: Vec<Chunk>,
    cfg: &SensorConfig,
    events: &mut Vec<AppEvent>,
    anomalies: &mut Vec<&'static str>,
) {
    let i = dir.index();
    for chunk in chunks {
        match chunk {
            Chunk::Gap(len) => {
                flow.app.pending[i].clear();
                let keep_going = match flow.app.state.as_mut() {
                    Some(state) => state.gap(dir, len),
                    None => false,
                };
                if !keep_going {
                    flow.app.stopped[i] = true;
                }
            }
            Chunk::Data(data) => feed_tcp(flow, dir, &data, cfg, events, anomalies),
        }
    }
}

fn feed_tcp(
    flow: &mut Flow,
    dir: Direction,
    data: &[u8],
    cfg: &SensorConfig,
    events: &mut Vec<AppEvent>,
    anomalies: &mut Vec<&'static str>,
) {
    let i = dir.index();
    if flow.app.stopped[i] {
        return;
    }
    if flow.app.proto.is_none() {
        if flow.app.detect_failed[i] {
            return;
        }
        flow.app.pending[i].extend_from_slice(data);
        detect_tcp(flow, dir, cfg, events, anomalies);
        return;
    }
    flow.app.pending[i].extend_from_slice(data);
    run_parser(flow, dir, cfg, events, anomalies);
}

/// Tries to detect the protocol of a TCP flow from the bytes buffered in `dir`.
fn detect_tcp(
    flow: &mut Flow,
    dir: Direction,
    cfg: &SensorConfig,
    events: &mut Vec<AppEvent>,
    anomalies: &mut Vec<&'static str>,
) {
    let i = dir.index();
    let buf = &flow.app.pending[i];
    let mut need_more = false;
    let mut found = None;
    for p in PROTOCOLS.iter().copied() {
        if !p.transports().contains(&Transport::Tcp) {
            continue;
        }
        match p.probe(Transport::Tcp, dir, buf, port_match(flow, p, cfg)) {
            Probe::Yes => {
                found = Some(p);
                break;
            }
            Probe::NeedMore => need_more = true,
            Probe::No => {}
        }
    }
    let Some(p) = found else {
        if !need_more || buf.len() >= DETECT_BUFFER {
            flow.app.detect_failed[i] = true;
            flow.app.pending[i] = Vec::new();
        }
        return;
    };
    flow.app.proto = Some(p);
    flow.app.state = Some(p.new_state(Transport::Tcp));
    flow.app.detect_failed = [false; 2];
    // Parse what this direction buffered, then what the other one did.
    run_parser(flow, dir, cfg, events, anomalies);
    run_parser(flow, dir.flip(), cfg, events, anomalies);
}

fn run_parser(
    flow: &mut Flow,
    dir: Direction,
    cfg: &SensorConfig,
    events: &mut Vec<AppEvent>,
    anomalies: &mut Vec<&'static str>,
) {
    let i = dir.index();
    if flow.app.stopped[i] || flow.app.pending[i].is_empty() {
        return;
    }
    let Some(state) = flow.app.state.as_mut() else {
        return;
    };
    let buf = std::mem::take(&mut flow.app.pending[i]);
    match state.parse(dir, &buf, events) {
        ParseResult::Consumed => {}
        ParseResult::Incomplete { consumed, .. } => {
            let rest = buf.get(consumed..).unwrap_or(&[]);
            if rest.len() > cfg.app_buffer {
                anomalies.push("applayer.buffer_limit_reached");
                flow.app.stopped[i] = true;
            } else {
                flow.app.pending[i] = rest.to_vec();
            }
        }
        ParseResult::Error => {
            anomalies.push("applayer.parser_error");
            flow.app.stopped[i] = true;
        }
        ParseResult::Upgrade { consumed } => {
            // A tunnel: detect what it carries, starting with the bytes after the hand-over
            // and whatever the other side has buffered.
            flow.app.orig = flow.app.orig.or(flow.app.proto.map(|p| p.app_proto()));
            flow.app.proto = None;
            flow.app.state = None;
            flow.app.detect_failed = [false; 2];
            flow.app.stopped = [false; 2];
            flow.app.pending[i] = buf.get(consumed..).unwrap_or(&[]).to_vec();
            for d in [dir, dir.flip()] {
                if flow.app.proto.is_none() && !flow.app.pending[d.index()].is_empty() {
                    detect_tcp(flow, d, cfg, events, anomalies);
                }
            }
        }
    }
}

fn feed_udp(
    flow: &mut Flow,
    cfg: &SensorConfig,
    dir: Direction,
    payload: &[u8],
    events: &mut Vec<AppEvent>,
    anomalies: &mut Vec<&'static str>,
) {
    let i = dir.index();
    if flow.app.proto.is_none() {
        if flow.app.detect_failed[i] {
            return;
        }
        let found = PROTOCOLS.iter().copied().find(|p| {
            p.transports().contains(&Transport::Udp)
                && p.probe(Transport::Udp, dir, payload, port_match(flow, *p, cfg)) == Probe::Yes
        });
        let Some(p) = found else {
            flow.app.detect_failed[i] = true;
            return;
        };
        flow.app.proto = Some(p);
        flow.app.state = Some(p.new_state(Transport::Udp));
        flow.app.detect_failed = [false; 2];
    }
    let Some(state) = flow.app.state.as_mut() else {
        return;
    };
    match state.parse(dir, payload, events) {
        ParseResult::Consumed | ParseResult::Upgrade { .. } => {}
        ParseResult::Incomplete { .. } | ParseResult::Error => {
            anomalies.push("applayer.malformed_data");
        }
    }
}
