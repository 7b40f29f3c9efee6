//! Names of the schema's fields that code refers to, so that a typo is a compile error.
//!
//! The full catalogue, with types and meanings, is `docs/schema.md`.

/// The raw input, as received.
pub const EVENT_ORIGINAL: &str = "event.original";
/// The parser that produced the event (a component id such as `syslog_rfc5424`).
pub const EVENT_MODULE: &str = "event.module";
/// The dataset within the module (`sshd`, `nginx.access`, …).
pub const EVENT_DATASET: &str = "event.dataset";
/// ECS category list (`authentication`, `network`, `process`, …).
pub const EVENT_CATEGORY: &str = "event.category";
/// ECS type list (`start`, `connection`, `denied`, …).
pub const EVENT_TYPE: &str = "event.type";
/// ECS kind (`event`, `alert`, `metric`, `state`).
pub const EVENT_KIND: &str = "event.kind";
/// `success`, `failure` or `unknown`.
pub const EVENT_OUTCOME: &str = "event.outcome";
/// Vendor event code (Windows event id, Cisco message id, …) as a string.
pub const EVENT_CODE: &str = "event.code";
/// Event action in the source's words (`ssh_login`, `deny`, …).
pub const EVENT_ACTION: &str = "event.action";
/// When Canh received the event.
pub const EVENT_INGESTED: &str = "event.ingested";
/// The human message.
pub const MESSAGE: &str = "message";
/// The agency the event belongs to.
pub const ORGANIZATION_ID: &str = "organization.id";
/// Host name of the machine the event is about.
pub const HOST_NAME: &str = "host.name";
/// Host IPs.
pub const HOST_IP: &str = "host.ip";
/// Source IP.
pub const SOURCE_IP: &str = "source.ip";
/// Source port.
pub const SOURCE_PORT: &str = "source.port";
/// Destination IP.
pub const DESTINATION_IP: &str = "destination.ip";
/// Destination port.
pub const DESTINATION_PORT: &str = "destination.port";
/// User name.
pub const USER_NAME: &str = "user.name";
/// Process name.
pub const PROCESS_NAME: &str = "process.name";
/// Process id.
pub const PROCESS_PID: &str = "process.pid";
/// Full command line.
pub const PROCESS_COMMAND_LINE: &str = "process.command_line";
/// Syslog facility (numeric).
pub const LOG_SYSLOG_FACILITY_CODE: &str = "log.syslog.facility.code";
/// Syslog severity (numeric).
pub const LOG_SYSLOG_SEVERITY_CODE: &str = "log.syslog.severity.code";
/// Syslog application name.
pub const LOG_SYSLOG_APPNAME: &str = "log.syslog.appname";
/// File the event was read from.
pub const LOG_FILE_PATH: &str = "log.file.path";
/// Address of the peer that sent the event to Canh.
pub const OBSERVER_INGRESS_ADDRESS: &str = "canh.source.address";
/// The Canh source (listener) that received the event, e.g. `syslog_udp`.
pub const CANH_SOURCE: &str = "canh.source.id";
/// Parse problem kept with a partially parsed event.
pub const CANH_PARSE_ERROR: &str = "canh.parse_error";
/// OCSF class id, kept for export.
pub const OCSF_CLASS_UID: &str = "canh.ocsf.class_uid";
