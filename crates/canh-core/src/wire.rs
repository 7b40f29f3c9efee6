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
    /// Where an agent upgrade stands (trial passed, installed, failed); the server answers
    /// [`ServerMessage::UpgradeAck`] once it has recorded it.
    UpgradeReport(UpgradeReport),
    /// First and only message of a download connection (mutual TLS, no [`Hello`]): asks for
    /// the binary of a published release. The server answers [`ServerMessage::ReleaseData`]
    /// followed by the raw bytes, then closes.
    FetchRelease(FetchRelease),
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
    /// The server recorded an [`AgentMessage::UpgradeReport`].
    UpgradeAck(UpgradeAck),
    /// Header of a release download: exactly `size` raw bytes follow this frame.
    ReleaseData(ReleaseData),
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
    /// Install a published agent release. The manifest carries its own signature (made with
    /// the same key over [`RELEASE_SIGNING_CONTEXT`] followed by the manifest bytes); the
    /// agent checks it, the target, the size and the SHA-256 before anything else.
    UpgradeAgent {
        /// The signed release manifest.
        manifest: SignedManifest,
        /// Install even when the release is older than the running agent.
        #[serde(default)]
        allow_downgrade: bool,
    },
}

/// Prefix of the bytes a release signature covers, so that a release signature and a command
/// signature (same key) can never stand for each other.
pub const RELEASE_SIGNING_CONTEXT: &[u8] = b"canh-agent-release-v1\n";

/// What a release of the agent is: signed by the server when an administrator publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    /// Version (semantic versioning, e.g. `0.2.0`).
    pub version: String,
    /// Platform, `<os>-<arch>` as Rust names them, e.g. `linux-x86_64`.
    pub target: String,
    /// SHA-256 of the binary, hex.
    pub sha256: String,
    /// Size of the binary in bytes.
    pub size: u64,
    /// When it was published.
    pub created: DateTime<Utc>,
}

/// A [`ReleaseManifest`] and the server's Ed25519 signature over
/// [`RELEASE_SIGNING_CONTEXT`] followed by `body` (its exact bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// JSON of a [`ReleaseManifest`].
    pub body: String,
    /// Ed25519 signature, hex.
    pub signature: String,
}

/// Asks for the binary whose SHA-256 is `sha256` (it must be a published release).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRelease {
    /// SHA-256 of the binary, hex (from the signed manifest).
    pub sha256: String,
}

/// Header of a release download.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseData {
    /// SHA-256 of the bytes that follow, hex.
    pub sha256: String,
    /// Number of raw bytes that follow this frame.
    pub size: u64,
}

/// Stage of an agent upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeOutcome {
    /// The new binary runs as a trial next to the old one and reached the server.
    TrialPassed,
    /// The new binary replaced the old one and runs.
    Installed,
    /// The upgrade was abandoned and the previous binary runs again.
    Failed,
}

/// Where an agent upgrade stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeReport {
    /// The release version the upgrade was to.
    pub version: String,
    /// The version that ran before.
    pub previous_version: String,
    /// The stage reached.
    pub outcome: UpgradeOutcome,
    /// Why it failed (for [`UpgradeOutcome::Failed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The server recorded an upgrade report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeAck {
    /// The version of the report recorded.
    pub version: String,
    /// The outcome recorded.
    pub outcome: UpgradeOutcome,
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

    #[test]
    fn upgrade_messages_round_trip() {
        let msg = AgentMessage::UpgradeReport(UpgradeReport {
            version: "0.2.0".into(),
            previous_version: "0.1.0".into(),
            outcome: UpgradeOutcome::Failed,
            reason: Some("exited".into()),
        });
        let json = serde_json::to_string(&msg).unwrap();
        assert!(json.starts_with(r#"{"type":"upgrade_report""#), "{json}");
        assert!(json.contains(r#""outcome":"failed""#), "{json}");
        assert_eq!(serde_json::from_str::<AgentMessage>(&json).unwrap(), msg);
        let a = ResponseAction::UpgradeAgent {
            manifest: SignedManifest {
                body: "{}".into(),
                signature: "00".into(),
            },
            allow_downgrade: false,
        };
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.starts_with(r#"{"action":"upgrade_agent""#), "{json}");
        let frame = encode_frame(&ServerMessage::ReleaseData(ReleaseData {
            sha256: "ab".into(),
            size: 3,
        }))
        .unwrap();
        let back: ServerMessage = decode_body(&frame[4..]).unwrap();
        assert!(matches!(back, ServerMessage::ReleaseData(d) if d.size == 3));
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
