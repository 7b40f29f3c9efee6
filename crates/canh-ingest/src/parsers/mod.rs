//! Log parsers: raw bytes of one record → one [`Event`].
//!
//! Every format is one file in this folder and one line in [`PARSERS`]. The registry drives
//! auto-detection ([`parse_auto`]), lookup by id ([`parser_by_id`]), the golden tests (one
//! `testdata/parsers/<id>/` folder per entry), the never-panics property tests and the fuzz
//! target.
//!
//! Syslog parsers hand the message body to the program parsers (`linux_auth`, `iptables`,
//! `fortigate`, `cisco_asa`, `pfsense`) through [`crate::dispatch`]; those are also registry
//! entries of their own, so that a source can name one directly.

use std::fmt;
use std::net::SocketAddr;

use canh_core::Event;
use chrono::{DateTime, FixedOffset, Offset, Utc};

pub mod apache;
pub mod cisco_asa;
pub mod ecs_json;
pub mod fortigate;
pub mod gelf;
pub mod iis;
pub mod iptables;
pub mod linux_auth;
pub mod nginx;
pub mod otlp_json;
pub mod pfsense;
pub mod splunk_hec;
pub mod suricata_eve;
pub mod syslog_rfc3164;
pub mod syslog_rfc5424;

/// How sure a parser is that it can read an input (auto-detection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Confidence {
    /// Not this format.
    No,
    /// Could be, among many others.
    Low,
    /// Looks like it.
    Medium,
    /// Shows a marker of the format.
    High,
    /// Unambiguous (a version field or a unique key).
    Certain,
}

/// A parser of one log format.
pub trait LogParser: Send + Sync + 'static {
    /// Stable id used in config, API, CLI and `event.module` (snake_case).
    fn id(&self) -> &'static str;
    /// One English sentence on what the parser reads.
    fn describe(&self) -> &'static str;
    /// How likely `raw` is in this format; cheap, looks at a prefix only.
    fn probe(&self, raw: &[u8]) -> Confidence;
    /// Parses one record.
    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError>;
    /// Parses a payload that may hold several records (OTLP export requests, HEC batches).
    ///
    /// The default parses one record.
    fn parse_many(&self, raw: &[u8], cx: &ParseCtx) -> Vec<Result<Event, ParseError>> {
        vec![self.parse(raw, cx)]
    }
}

/// Every parser, in auto-detection tie-break order.
pub static PARSERS: &[&dyn LogParser] = &[
    &syslog_rfc5424::SyslogRfc5424Parser,
    &syslog_rfc3164::SyslogRfc3164Parser,
    &linux_auth::LinuxAuthParser,
    &iptables::IptablesParser,
    &fortigate::FortigateParser,
    &cisco_asa::CiscoAsaParser,
    &pfsense::PfsenseParser,
    &nginx::NginxParser,
    &apache::ApacheParser,
    &iis::IisParser,
    &suricata_eve::SuricataEveParser,
    &gelf::GelfParser,
    &splunk_hec::SplunkHecParser,
    &otlp_json::OtlpJsonParser,
    &ecs_json::EcsJsonParser,
];

/// The parser with this id (aliases: `ndjson`/`json` → `ecs_json`, `syslog` → `syslog_rfc5424`).
pub fn parser_by_id(id: &str) -> Option<&'static dyn LogParser> {
    let id = match id {
        "ndjson" | "json" => "ecs_json",
        "syslog" | "rfc5424" => "syslog_rfc5424",
        "rfc3164" | "bsd_syslog" => "syslog_rfc3164",
        "iis_w3c" | "w3c" => "iis",
        "otlp" => "otlp_json",
        other => other,
    };
    PARSERS.iter().copied().find(|p| p.id() == id)
}

/// The parser that is most confident about `raw` (first in [`PARSERS`] on ties), if any is.
pub fn detect(raw: &[u8]) -> Option<&'static dyn LogParser> {
    let mut best: Option<(&'static dyn LogParser, Confidence)> = None;
    for p in PARSERS.iter().copied() {
        let c = p.probe(raw);
        if c == Confidence::No {
            continue;
        }
        if best.is_none_or(|(_, b)| c > b) {
            best = Some((p, c));
            if c == Confidence::Certain {
                break;
            }
        }
    }
    best.map(|(p, _)| p)
}

/// Parses one record with the parser that recognises it best.
pub fn parse_auto(raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    match detect(raw) {
        Some(p) => p.parse(raw, cx),
        None => Err(ParseError::Unrecognised),
    }
}

/// Like [`parse_auto`], for payloads that may hold several records.
pub fn parse_auto_many(raw: &[u8], cx: &ParseCtx) -> Vec<Result<Event, ParseError>> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return vec![Err(ParseError::Empty)];
    }
    match detect(raw) {
        Some(p) => p.parse_many(raw, cx),
        None => vec![Err(ParseError::Unrecognised)],
    }
}

/// Why a record could not be parsed. The caller dead-letters the raw bytes with this reason.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("empty record")]
    Empty,
    /// No parser recognises the record.
    #[error("no parser recognises the record")]
    Unrecognised,
    /// The record is not in the parser's format.
    #[error("not a valid {format} record: {reason}")]
    Invalid {
        /// Parser id.
        format: &'static str,
        /// What is wrong, in a few words.
        reason: String,
    },
    /// JSON that does not parse.
    #[error("invalid JSON in {format} record")]
    Json {
        /// Parser id.
        format: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON object that cannot become an event (bad `@timestamp`, too deep).
    #[error("JSON object cannot become an event")]
    Event(#[from] canh_core::event::EventError),
}

impl ParseError {
    pub(crate) fn invalid(format: &'static str, reason: impl fmt::Display) -> Self {
        ParseError::Invalid {
            format,
            reason: reason.to_string(),
        }
    }
}

/// What a parser knows about where and when a record arrived.
#[derive(Clone, Debug)]
pub struct ParseCtx {
    received: DateTime<Utc>,
    received_text: String,
    peer: Option<SocketAddr>,
    source_id: Option<String>,
    default_year: Option<i32>,
    timezone: FixedOffset,
    keep_original: bool,
    w3c_fields: Option<Vec<String>>,
}

impl ParseCtx {
    /// A context for records received at `received`: no peer, no source id, RFC 3164 times in
    /// UTC with the year guessed from `received`, `event.original` kept.
    pub fn new(received: DateTime<Utc>) -> Self {
        Self {
            received,
            received_text: crate::timefmt::rfc3339_millis(received),
            peer: None,
            source_id: None,
            default_year: None,
            timezone: Utc.fix(),
            keep_original: true,
            w3c_fields: None,
        }
    }

    /// Sets the address of the sender (`canh.source.address`).
    pub fn with_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Sets the id of the receiving source (`canh.source.id`).
    pub fn with_source_id(mut self, id: impl Into<String>) -> Self {
        self.source_id = Some(id.into());
        self
    }

    /// Sets the year for RFC 3164 timestamps, which have none.
    pub fn with_default_year(mut self, year: i32) -> Self {
        self.default_year = Some(year);
        self
    }

    /// Sets the time zone of RFC 3164 and other zone-less timestamps (default UTC).
    pub fn with_timezone(mut self, tz: FixedOffset) -> Self {
        self.timezone = tz;
        self
    }

    /// Whether to keep the raw record in `event.original` (default yes).
    pub fn with_keep_original(mut self, keep: bool) -> Self {
        self.keep_original = keep;
        self
    }

    /// The W3C `#Fields:` list in effect for IIS records (see [`iis::W3cReader`]).
    pub fn with_w3c_fields(mut self, fields: Vec<String>) -> Self {
        self.w3c_fields = Some(fields);
        self
    }

    /// When the record was received.
    pub fn received(&self) -> DateTime<Utc> {
        self.received
    }

    /// The receipt time as RFC 3339 text (`event.ingested`).
    pub fn received_text(&self) -> &str {
        &self.received_text
    }

    /// The sender's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The receiving source's id.
    pub fn source_id(&self) -> Option<&str> {
        self.source_id.as_deref()
    }

    /// The year configured for RFC 3164 timestamps.
    pub fn default_year(&self) -> Option<i32> {
        self.default_year
    }

    /// The time zone for zone-less timestamps.
    pub fn timezone(&self) -> FixedOffset {
        self.timezone
    }

    /// Whether `event.original` is kept.
    pub fn keep_original(&self) -> bool {
        self.keep_original
    }

    /// The W3C field list, if one was given.
    pub fn w3c_fields(&self) -> Option<&[String]> {
        self.w3c_fields.as_deref()
    }
}

impl Default for ParseCtx {
    fn default() -> Self {
        Self::new(Utc::now())
    }
}
