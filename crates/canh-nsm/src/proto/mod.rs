//! Application protocols: the [`ProtocolParser`] trait and the [`PROTOCOLS`] registry.
//!
//! A protocol is one folder `src/proto/<id>/` with `mod.rs` (detection and per-flow state) and
//! `parser.rs` (pure parsing), plus one line in [`PROTOCOLS`].

pub mod dhcp;
pub mod dns;
pub mod ftp;
pub mod heap;
pub mod http1;
pub mod smtp;
pub mod ssh;
pub mod tls;

use serde_json::{Map, Value};

/// Direction of data in a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    ToServer,
    /// Server to client.
    ToClient,
}

impl Direction {
    /// The other direction.
    pub fn flip(self) -> Self {
        match self {
            Self::ToServer => Self::ToClient,
            Self::ToClient => Self::ToServer,
        }
    }

    /// 0 for to-server, 1 for to-client.
    pub fn index(self) -> usize {
        match self {
            Self::ToServer => 0,
            Self::ToClient => 1,
        }
    }
}

/// Transport a protocol runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A reassembled TCP stream.
    Tcp,
    /// One UDP datagram at a time.
    Udp,
}

/// Outcome of probing the first bytes of a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// This is the protocol.
    Yes,
    /// This is not the protocol.
    No,
    /// Not enough bytes to tell.
    NeedMore,
}

/// Result of feeding bytes to a parser (Suricata `AppLayerResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseResult {
    /// Every byte was used.
    Consumed,
    /// `consumed` bytes were used; call again with the rest plus at least `needed` more.
    Incomplete {
        /// Bytes used from the start of the input.
        consumed: usize,
        /// Bytes still needed to progress (0 if unknown).
        needed: usize,
    },
    /// The data is not this protocol any more; stop parsing this direction.
    Error,
    /// The protocol hands the connection over after `consumed` bytes (an HTTP CONNECT
    /// tunnel was set up): what follows, both ways, is detected afresh.
    Upgrade {
        /// Bytes used from the start of the input.
        consumed: usize,
    },
}

/// An application-layer record, written as one EVE line.
#[derive(Debug, Clone, PartialEq)]
pub struct AppEvent {
    /// EVE `event_type` and the key of the body: `dns`, `http`, `tls`, `ssh`.
    pub event_type: &'static str,
    /// Log it with source/destination of this direction (`None`: the flow's direction).
    pub direction: Option<Direction>,
    /// The protocol object. For `smtp`, its `email` member is written beside it, as Suricata
    /// does.
    pub body: Map<String, Value>,
    /// Transaction id, if the protocol numbers transactions.
    pub tx_id: Option<u64>,
    /// Raw HTTP data for signature inspection (not logged).
    pub http: Option<Box<crate::rules::HttpRaw>>,
}

/// Per-flow parsing state of one protocol.
pub trait ProtocolState: Send {
    /// Parses bytes of one direction. UDP protocols get exactly one datagram per call.
    fn parse(&mut self, dir: Direction, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult;
    /// `len` bytes of this direction were lost. Returns false if parsing cannot continue.
    fn gap(&mut self, _dir: Direction, _len: u64) -> bool {
        false
    }
    /// The flow ends: log what is still pending.
    fn close(&mut self, _out: &mut Vec<AppEvent>) {}
    /// Heap bytes the state holds beyond its own size (pending transactions, buffered
    /// handshake bytes, strings kept for the log), estimated with [`heap::HeapSize`]. Counted
    /// in the flow table's memory budget after every packet of the flow, so it must be cheap:
    /// a walk over what the state keeps, never over bytes already parsed.
    fn heap_bytes(&self) -> usize;
    /// Whether the session is encrypted from here on (TLS application data after the
    /// handshake, SSH after both sides' NEWKEYS). Content rules then no longer inspect the
    /// flow's packets, as with Suricata's default `encryption-handling: track-only`.
    fn payload_encrypted(&self) -> bool {
        false
    }
}

/// A protocol: how to detect it and how to start parsing it.
pub trait ProtocolParser: Sync + 'static {
    /// Stable id, used as EVE `app_proto` (`dns`, `http`, `tls`, `ssh`).
    fn id(&self) -> &'static str;
    /// Name written as EVE `app_proto` (Suricata's name; `http` for `http1`).
    fn app_proto(&self) -> &'static str {
        self.id()
    }
    /// Transports it runs over.
    fn transports(&self) -> &'static [Transport];
    /// Ports that make detection prefer this protocol when content is ambiguous.
    fn ports(&self) -> &'static [u16];
    /// Looks at the first bytes of a direction. `port_match` tells if either port is one of
    /// [`ProtocolParser::ports`].
    fn probe(&self, transport: Transport, dir: Direction, data: &[u8], port_match: bool) -> Probe;
    /// Whether the first payload of a flow (a UDP datagram, or TCP data of a session picked up
    /// midstream), sent from `sport`, is a server's reply (the flow's client is then its
    /// destination).
    fn is_server_reply(&self, _transport: Transport, _payload: &[u8], _sport: u16) -> bool {
        false
    }
    /// Fresh per-flow state.
    fn new_state(&self, transport: Transport) -> Box<dyn ProtocolState>;
}

/// Every protocol Canh parses. Order matters only when two probes both say yes.
pub static PROTOCOLS: &[&dyn ProtocolParser] = &[
    &http1::Http1Protocol,
    &tls::TlsProtocol,
    &ssh::SshProtocol,
    &smtp::SmtpProtocol,
    &ftp::FtpProtocol,
    &dns::DnsProtocol,
    &dhcp::DhcpProtocol,
];

/// Looks up a protocol by id.
pub fn by_id(id: &str) -> Option<&'static dyn ProtocolParser> {
    PROTOCOLS.iter().copied().find(|p| p.id() == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_ids_are_unique_snake_case() {
        let mut ids: Vec<&str> = PROTOCOLS.iter().map(|p| p.id()).collect();
        for id in &ids {
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), PROTOCOLS.len());
        assert!(by_id("dns").is_some());
    }
}
