//! Windows EVTX files → events.
//!
//! Each record is rendered to JSON by the `evtx` crate and flattened into an [`Event`]:
//!
//! | field | from |
//! |---|---|
//! | `@timestamp` | `System/TimeCreated/@SystemTime` |
//! | `event.code`, `winlog.event_id` | `System/EventID` (string, number) |
//! | `winlog.channel`, `winlog.computer_name`, `host.name` | `System/Channel`, `System/Computer` |
//! | `winlog.provider_name`, `winlog.provider_guid` | `System/Provider/@Name`, `@Guid` |
//! | `winlog.record_id` | `System/EventRecordID` |
//! | `winlog.process.pid`, `winlog.process.thread.id` | `System/Execution/@ProcessID`, `@ThreadID` |
//! | `winlog.user.identifier` | `System/Security/@UserID` |
//! | `winlog.event_data.<Name>` | every `EventData/Data` element, as a string (spaces removed from names) |
//! | `winlog.user_data.<Name>` | children of the element below `UserData` |
//!
//! A few ECS fields are filled for Sysmon 1 and Security 4688/4624/4625 (`process.*`,
//! `user.name`, `source.ip`). Detection does not rely on them: Sigma fields are mapped to
//! `winlog.event_data.*`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use canh_core::Event;
use chrono::{DateTime, Utc};
use evtx::{EvtxParser, ParserSettings};
use serde_json::Value;

/// Why an EVTX file or record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EvtxError {
    /// The file could not be opened or is not an EVTX file.
    #[error("failed to open EVTX file {path}")]
    Open {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: evtx::err::EvtxError,
    },
    /// A chunk or a record is damaged; reading goes on with the next one.
    #[error("damaged EVTX data")]
    Corrupt(#[source] evtx::err::EvtxError),
    /// A chunk could not be parsed; reading goes on with the next chunk.
    #[error("damaged EVTX chunk")]
    CorruptChunk(#[source] evtx::err::ChunkError),
}

/// How EVTX records become events.
#[derive(Clone, Debug, Default)]
pub struct EvtxOptions {
    /// Keep the record's JSON rendering in `event.original` (off by default: it costs time and
    /// memory when hunting).
    pub keep_original: bool,
}

/// Reads the records of the EVTX file at `path`, one chunk at a time (memory stays flat).
///
/// A damaged chunk or record comes out as an `Err` item and iteration continues.
pub fn read_file(
    path: impl AsRef<Path>,
    opts: &EvtxOptions,
) -> Result<impl Iterator<Item = Result<Event, EvtxError>>, EvtxError> {
    let path = path.as_ref();
    let open_err = |source| EvtxError::Open {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(|e| open_err(evtx::err::EvtxError::from(e)))?;
    let parser = EvtxParser::from_read_seek(BufReader::new(file)).map_err(open_err)?;
    let settings = Arc::new(ParserSettings::default());
    Ok(RecordIter {
        chunks: Box::new(parser.into_chunks()),
        settings,
        pending: VecDeque::new(),
        keep_original: opts.keep_original,
    })
}

struct RecordIter {
    chunks: Box<dyn Iterator<Item = evtx::err::Result<evtx::EvtxChunkData>> + Send>,
    settings: Arc<ParserSettings>,
    pending: VecDeque<Result<Event, EvtxError>>,
    keep_original: bool,
}

impl RecordIter {
    fn fill_from_chunk(&mut self, mut data: evtx::EvtxChunkData) {
        let mut chunk = match data.parse(self.settings.clone()) {
            Ok(c) => c,
            Err(e) => {
                self.pending.push_back(Err(EvtxError::CorruptChunk(e)));
                return;
            }
        };
        for record in chunk.iter() {
            let item = record
                .and_then(|r| r.into_json_value())
                .map(|r| {
                    let mut ev = record_json_to_event(&r.data);
                    if self.keep_original {
                        ev.set(canh_core::fields::EVENT_ORIGINAL, r.data.to_string());
                    }
                    ev
                })
                .map_err(EvtxError::Corrupt);
            self.pending.push_back(item);
        }
    }
}

impl Iterator for RecordIter {
    type Item = Result<Event, EvtxError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            match self.chunks.next()? {
                Ok(data) => self.fill_from_chunk(data),
                Err(e) => return Some(Err(EvtxError::Corrupt(e))),
            }
        }
    }
}

/// Turns one record's JSON rendering (as the `evtx` crate writes it, `{"Event": {...}}`) into
/// an event. Missing parts are left out; the time defaults to the Unix epoch.
pub fn record_json_to_event(record: &Value) -> Event {
    let root = record.get("Event").unwrap_or(record);
    let system = root.get("System");
    let sys = |k: &str| system.and_then(|s| s.get(k));
    let sys_attr = |k: &str, a: &str| sys(k).and_then(|v| attr(v, a));

    let time = sys_attr("TimeCreated", "SystemTime")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.with_timezone(&Utc));
    let mut ev = Event::new(time);
    ev.set("event.module", "windows");

    let event_id = sys("EventID")
        .and_then(text)
        .and_then(|s| s.parse::<u64>().ok());
    if let Some(id) = event_id {
        ev.set("event.code", id.to_string());
        ev.set("winlog.event_id", id);
    }
    set_text(&mut ev, "winlog.channel", sys("Channel"));
    set_text(
        &mut ev,
        "winlog.provider_name",
        sys_attr("Provider", "Name"),
    );
    set_text(
        &mut ev,
        "winlog.provider_guid",
        sys_attr("Provider", "Guid"),
    );
    set_text(&mut ev, "winlog.computer_name", sys("Computer"));
    set_text(&mut ev, "host.name", sys("Computer"));
    set_text(
        &mut ev,
        "winlog.user.identifier",
        sys_attr("Security", "UserID"),
    );
    set_num(&mut ev, "winlog.record_id", sys("EventRecordID"));
    set_num(
        &mut ev,
        "winlog.process.pid",
        sys_attr("Execution", "ProcessID"),
    );
    set_num(
        &mut ev,
        "winlog.process.thread.id",
        sys_attr("Execution", "ThreadID"),
    );
    set_num(&mut ev, "winlog.version", sys("Version"));
    set_num(&mut ev, "winlog.level", sys("Level"));
    set_num(&mut ev, "winlog.task", sys("Task"));
    set_num(&mut ev, "winlog.opcode", sys("Opcode"));
    set_text(&mut ev, "winlog.keywords", sys("Keywords"));

    if let Some(data) = root.get("EventData") {
        flatten_data(&mut ev, "winlog.event_data", data);
    }
    if let Some(Value::Object(user)) = root.get("UserData") {
        // UserData holds one provider-defined element; its children are the fields.
        for (k, inner) in user {
            if k == "#attributes" {
                continue;
            }
            flatten_data(&mut ev, "winlog.user_data", inner);
        }
    }
    fill_ecs(&mut ev, event_id, sys("Channel").and_then(Value::as_str));
    ev
}

fn attr<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get("#attributes").and_then(|a| a.get(name))
}

/// The text of a rendered value: strings as they are, numbers and booleans printed,
/// `{"#text": x}` unwrapped, arrays joined (for the rare multi-text element).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(o) => o.get("#text").and_then(text),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().filter_map(text).collect();
            Some(parts.join(""))
        }
        Value::Null => None,
    }
}

fn set_text(ev: &mut Event, name: &str, v: Option<&Value>) {
    if let Some(s) = v.and_then(text) {
        ev.set(name, s);
    }
}

fn set_num(ev: &mut Event, name: &str, v: Option<&Value>) {
    let n = v.and_then(|v| v.as_u64().or_else(|| text(v).and_then(|s| s.parse().ok())));
    if let Some(n) = n {
        ev.set(name, n);
    }
}

fn flatten_data(ev: &mut Event, prefix: &str, data: &Value) {
    let Value::Object(map) = data else {
        if let Some(s) = text(data) {
            ev.set(&format!("{prefix}.Data"), s);
        }
        return;
    };
    for (k, v) in map {
        if k == "#attributes" {
            continue;
        }
        // Some providers (Defender) put spaces in names ("Threat Name"); Sigma rules and
        // other tools name these fields without them ("ThreatName").
        let name = if k == "#text" {
            "Data".to_owned()
        } else {
            k.replace(' ', "")
        };
        let key = format!("{prefix}.{name}");
        match v {
            // Unnamed <Data> elements come out as a list: keep every value.
            Value::Array(items) => {
                let vals: Vec<Value> = items.iter().filter_map(text).map(Value::String).collect();
                ev.set(&key, Value::Array(vals));
            }
            Value::Object(o) if !o.contains_key("#text") => {
                // A nested element (rare in UserData): flatten one more level.
                for (k2, v2) in o {
                    if k2 == "#attributes" {
                        continue;
                    }
                    if let Some(s) = text(v2) {
                        ev.set(&format!("{key}.{k2}"), s);
                    }
                }
            }
            other => {
                ev.set(
                    &key,
                    text(other).map_or(Value::String(String::new()), Value::String),
                );
            }
        }
    }
}

fn data_str<'a>(ev: &'a Event, name: &str) -> Option<&'a str> {
    ev.fields
        .get(&format!("winlog.event_data.{name}"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "-")
}

fn copy(ev: &mut Event, from: &str, to: &str) {
    if let Some(v) = data_str(ev, from).map(str::to_owned) {
        ev.set(to, v);
    }
}

/// Fills the ECS fields for the few events hunters and dashboards look at first.
fn fill_ecs(ev: &mut Event, event_id: Option<u64>, channel: Option<&str>) {
    let Some(id) = event_id else { return };
    let channel = channel.unwrap_or_default().to_owned();
    match (channel.as_str(), id) {
        ("Microsoft-Windows-Sysmon/Operational", 1) => {
            ev.set("event.category", "process");
            copy(ev, "CommandLine", "process.command_line");
            copy(ev, "Image", "process.executable");
            copy(ev, "ProcessId", "process.pid");
            copy(ev, "ParentImage", "process.parent.executable");
            copy(ev, "ParentCommandLine", "process.parent.command_line");
            copy(ev, "User", "user.name");
        }
        ("Security", 4688) => {
            ev.set("event.category", "process");
            copy(ev, "CommandLine", "process.command_line");
            copy(ev, "NewProcessName", "process.executable");
            copy(ev, "ParentProcessName", "process.parent.executable");
            copy(ev, "SubjectUserName", "user.name");
        }
        ("Security", 4624 | 4625) => {
            ev.set("event.category", "authentication");
            ev.set(
                "event.outcome",
                if id == 4624 { "success" } else { "failure" },
            );
            copy(ev, "TargetUserName", "user.name");
            copy(ev, "TargetDomainName", "user.domain");
            copy(ev, "IpAddress", "source.ip");
            copy(ev, "WorkstationName", "source.domain");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datasets() -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/datasets"
        ))
    }

    #[test]
    fn sysmon_image_load_record_becomes_winlog_fields() {
        let dir = datasets().join(
            "sigma/regression_data/rules-threat-hunting/windows/image_load/\
             image_load_win_werfaultsecure_dbgcore_dbghelp_load",
        );
        let path = dir.join("8a2f4b1c-3d5e-4f7a-9b2c-1e4f6d8a9c2b.evtx");
        let events: Vec<Event> = read_file(&path, &EvtxOptions::default())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(!events.is_empty());
        let ev = events
            .iter()
            .find(|e| e.get_str("winlog.event_data.ImageLoaded").is_some())
            .unwrap();
        let f = &ev.fields;
        assert_eq!(f["winlog.channel"], "Microsoft-Windows-Sysmon/Operational");
        assert_eq!(f["winlog.provider_name"], "Microsoft-Windows-Sysmon");
        assert_eq!(f["event.module"], "windows");
        assert!(f["winlog.event_id"].is_u64());
        assert_eq!(f["event.code"], f["winlog.event_id"].to_string().as_str());
        assert!(f["winlog.record_id"].is_u64());
        // Numbers in EventData are kept as rendered text.
        assert!(f["winlog.event_data.ProcessId"].is_string());
        assert!(ev.get_str("host.name").is_some());
        assert!(ev.timestamp.timestamp() > 1_600_000_000);
    }

    #[test]
    fn security_4625_fills_ecs_authentication_fields() {
        let rec = serde_json::json!({"Event": {
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing",
                    "Guid": "{54849625-5478-4994-A5BA-3E3B0328C30D}"}},
                "EventID": 4625, "EventRecordID": 42,
                "TimeCreated": {"#attributes": {"SystemTime": "2019-03-19T23:34:22.123Z"}},
                "Channel": "Security", "Computer": "DC01",
                "Execution": {"#attributes": {"ProcessID": 600, "ThreadID": 700}},
                "Security": null
            },
            "EventData": {"TargetUserName": "admin", "IpAddress": "10.0.0.9", "LogonType": 3}
        }});
        let ev = record_json_to_event(&rec);
        assert_eq!(ev.get_str("event.code"), Some("4625"));
        assert_eq!(ev.get_str("user.name"), Some("admin"));
        assert_eq!(ev.get_str("source.ip"), Some("10.0.0.9"));
        assert_eq!(ev.get_str("winlog.event_data.LogonType"), Some("3"));
        assert_eq!(ev.get_str("event.outcome"), Some("failure"));
        assert_eq!(ev.get("winlog.process.thread.id"), Some(&Value::from(700)));
        assert_eq!(ev.timestamp.to_rfc3339(), "2019-03-19T23:34:22.123+00:00");
    }

    #[test]
    fn user_data_is_flattened_one_level_below_its_root() {
        let rec = serde_json::json!({"Event": {"System": {"EventID": 1102, "Channel": "Security"},
            "UserData": {"LogFileCleared": {"#attributes": {"xmlns": "x"},
                "SubjectUserName": "bob", "SubjectDomainName": "CORP"}}}});
        let ev = record_json_to_event(&rec);
        assert_eq!(ev.get_str("winlog.user_data.SubjectUserName"), Some("bob"));
        assert_eq!(
            ev.get_str("winlog.user_data.SubjectDomainName"),
            Some("CORP")
        );
    }

    #[test]
    fn truncated_file_yields_errors_not_panics() {
        let path = datasets().join("evtx/DeepBlueCLI/many-events-application.evtx");
        let bytes = std::fs::read(&path).unwrap();
        let dir = tempfile_dir();
        for cut in [100usize, 4096, 70_000, bytes.len() / 2] {
            let p = dir.join(format!("cut-{cut}.evtx"));
            std::fs::write(&p, &bytes[..cut.min(bytes.len())]).unwrap();
            if let Ok(it) = read_file(&p, &EvtxOptions::default()) {
                let n = it.take(100_000).count();
                assert!(n < 100_000);
            }
        }
        let good = read_file(&path, &EvtxOptions::default())
            .unwrap()
            .filter(Result::is_ok)
            .count();
        assert!(good > 0);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("canh-evtx-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    proptest::proptest! {
        #[test]
        fn record_json_to_event_never_panics(s in ".{0,64}", n in 0u64..100_000) {
            let rec = serde_json::json!({"Event": {"System": {"EventID": s,
                "EventRecordID": n, "TimeCreated": {"#attributes": {"SystemTime": s}}},
                "EventData": {"A": s, "B": [s, n], "C": {"#text": s}}}});
            let ev = record_json_to_event(&rec);
            proptest::prop_assert_eq!(ev.get_str("event.module"), Some("windows"));
        }
    }
}
