//! Agent ⇄ server messages.
//!
//! The agent and the server share only these types. On the wire each message is one frame: a
//! 4-byte big-endian length followed by that many bytes of JSON ([`encode_frame`],
//! [`decode_frame_len`]). JSON keeps the stream readable with standard tools and needs no schema
//! compiler on either side; the length prefix lets a reader allocate once and refuse oversized
//! frames before reading them.
//!
//! ```
//! use canh_core::wire::{AgentMessage, Heartbeat, encode_frame, decode_frame_len, decode_body};
//! let msg = AgentMessage::Heartbeat(Heartbeat::default());
//! let frame = encode_frame(&msg).unwrap();
//! let len = decode_frame_len(frame[..4].try_into().unwrap()).unwrap();
//! let back: AgentMessage = decode_body(&frame[4..4 + len]).unwrap();
//! assert_eq!(back, msg);
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Event;

/// Version of this protocol; the server refuses agents that speak a newer one.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame body either side accepts (16 MiB).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Messages the agent sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// First message on the enrolment endpoint (server-authenticated TLS, no client cert).
    Enrol(EnrolRequest),
    /// First message on the mutual-TLS endpoint.
    Hello(Hello),
    /// A batch of spooled events.
    Events(EventBatch),
    /// Liveness and self-health.
    Heartbeat(Heartbeat),
    /// Asks for a fresh client certificate before the current one expires.
    Renew(RenewRequest),
    /// Outcome of a [`SignedCommand`].
    CommandResult(CommandResult),
}

/// Messages the server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to [`AgentMessage::Enrol`].
    Enrolled(EnrolResponse),
    /// Answer to [`AgentMessage::Hello`]: what the server already holds.
    Welcome(Welcome),
    /// Events up to `up_to` are durable on the server.
    Ack(Ack),
    /// Answer to [`AgentMessage::Renew`].
    Renewed(RenewResponse),
    /// A response action, signed by the server.
    Command(SignedCommand),
    /// The request was refused; the connection is closed after this frame.
    Error(WireError),
}

/// Enrolment: a one-time token plus a certificate signing request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// Protocol version the agent speaks.
    pub protocol: u32,
    /// The enrolment token created by an administrator.
    pub token: String,
    /// PKCS#10 request in PEM, for a key the agent generated and never sends.
    pub csr_pem: String,
    /// Host name of the endpoint.
    pub hostname: String,
    /// Agent software version.
    pub version: String,
    /// Operating system, e.g. `Debian GNU/Linux 12 (bookworm)`.
    #[serde(default)]
    pub os: String,
}

/// Enrolment accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrolResponse {
    /// The agent's id, also in its certificate (`urn:canh:agent:<id>`).
    pub agent_id: String,
    /// Client certificate, PEM.
    pub cert_pem: String,
    /// The CA that signed it, PEM (the agent pins its SHA-256).
    pub ca_pem: String,
    /// Start of the certificate's validity.
    pub not_before: DateTime<Utc>,
    /// End of the certificate's validity.
    pub not_after: DateTime<Utc>,
    /// Port of the mutual-TLS endpoint (same host as the enrolment endpoint).
    pub agent_port: u16,
    /// Ed25519 public key (hex) that signs response commands.
    pub command_key: String,
}

/// First message of a mutual-TLS session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version the agent speaks.
    pub protocol: u32,
    /// The agent's id (must match its certificate).
    pub agent_id: String,
    /// Agent software version.
    pub version: String,
}

/// Server greeting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Highest sequence number the server holds durably for this agent (0 = none).
    pub acked_seq: u64,
    /// Heartbeat interval the server expects, in seconds.
    pub heartbeat_secs: u64,
}

/// One event and its sequence number in the agent's spool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequencedEvent {
    /// Sequence number (starts at 1, strictly increasing per agent).
    pub seq: u64,
    /// The event.
    pub event: Event,
}

/// A batch of events in sequence order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    /// Events, in increasing `seq` order (sequence numbers may jump after a recorded gap).
    pub events: Vec<SequencedEvent>,
}

/// Acknowledgement: every event with `seq <= up_to` is durable on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Highest acknowledged sequence number.
    pub up_to: u64,
}

/// Agent liveness and self-health.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Agent software version.
    pub version: String,
    /// When the agent sent it.
    pub sent_at: Option<DateTime<Utc>>,
    /// Events spooled but not yet acknowledged.
    pub queue_depth: u64,
    /// Bytes on disk used by the spool.
    pub spool_bytes: u64,
    /// Events dropped since the agent started (spool quota), each drop also reported as a gap.
    pub dropped_events: u64,
    /// Sensors that are running (`process`, `file`, `network`, …).
    pub active_sensors: Vec<String>,
    /// Whether the host is network-isolated.
    pub isolated: bool,
}

/// Certificate renewal over the mutual-TLS session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// PKCS#10 request in PEM for a new key.
    pub csr_pem: String,
}

/// A new client certificate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenewResponse {
    /// Client certificate, PEM.
    pub cert_pem: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

/// A response command and the server's Ed25519 signature over `body` (its exact bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignedCommand {
    /// JSON of a [`CommandBody`]; signed as these exact bytes, so no re-serialisation is needed.
    pub body: String,
    /// Ed25519 signature of `body`, hex.
    pub signature: String,
}

/// What a signed command says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandBody {
    /// Unique id; the agent refuses an id it has already run.
    pub id: String,
    /// The agent this is meant for; others refuse it.
    pub agent_id: String,
    /// Issue time.
    pub issued_at: DateTime<Utc>,
    /// The agent refuses the command after this time.
    pub expires_at: DateTime<Utc>,
    /// The action.
    pub action: ResponseAction,
}

/// Response actions an agent can carry out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ResponseAction {
    /// Send SIGKILL to a process (`start_time` in clock ticks guards against pid reuse).
    KillProcess {
        /// Process id.
        pid: u32,
        /// Start time of the process (field 22 of `/proc/PID/stat`), when known.
        start_time: Option<u64>,
    },
    /// Move a file into quarantine.
    QuarantineFile {
        /// Absolute path.
        path: String,
    },
    /// Put a quarantined file back.
    RestoreFile {
        /// Quarantine entry id (the file's SHA-256 plus time).
        entry: String,
    },
    /// Isolate the host from the network except the management channel.
    IsolateHost {
        /// Extra addresses to keep reachable (the server's own address is always kept).
        allow: Vec<String>,
    },
    /// Undo [`ResponseAction::IsolateHost`].
    ReleaseHost,
}

/// Outcome of a command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command's id.
    pub id: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// What happened, for the analyst.
    pub message: String,
}

/// A refusal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireError {
    /// Stable code: `bad_token`, `revoked`, `unknown_agent`, `protocol`, `internal`.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireCodecError {
    /// A frame is longer than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    /// The JSON does not match the message types.
    #[error("malformed frame")]
    Json(#[from] serde_json::Error),
}

/// Serialises `msg` as one frame: 4-byte big-endian length, then JSON.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireCodecError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(WireCodecError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    // The length fits in u32: it is at most MAX_FRAME_BYTES, checked above.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads a frame header and checks the length against [`MAX_FRAME_BYTES`].
pub fn decode_frame_len(header: [u8; 4]) -> Result<usize, WireCodecError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(WireCodecError::TooLarge(len));
    }
    Ok(len)
}

/// Parses a frame body.
pub fn decode_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, WireCodecError> {
    Ok(serde_json::from_slice(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_are_tagged_by_type() {
        let msg = ServerMessage::Ack(Ack { up_to: 7 });
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"type":"ack","up_to":7}"#);
    }

    #[test]
    fn event_batch_round_trips_through_a_frame() {
        let mut ev = Event::new(Utc::now());
        ev.set("process.pid", 42);
        let msg = AgentMessage::Events(EventBatch {
            events: vec![SequencedEvent { seq: 1, event: ev }],
        });
        let frame = encode_frame(&msg).unwrap();
        let len = decode_frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        let back: AgentMessage = decode_body(&frame[4..]).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn oversized_header_is_refused() {
        assert!(matches!(
            decode_frame_len(u32::MAX.to_be_bytes()),
            Err(WireCodecError::TooLarge(_))
        ));
    }

    #[test]
    fn command_action_is_tagged() {
        let a = ResponseAction::KillProcess {
            pid: 5,
            start_time: None,
        };
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.starts_with(r#"{"action":"kill_process""#));
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let a: Result<AgentMessage, _> = decode_body(&bytes);
            let s: Result<ServerMessage, _> = decode_body(&bytes);
            prop_assert!(a.is_err() || s.is_err() || !bytes.is_empty());
        }
    }
}
