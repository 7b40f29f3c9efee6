//! OTLP logs in protobuf (`application/x-protobuf`): decoded and re-expressed in the OTLP JSON
//! encoding, so that one parser (`otlp_json`) maps both encodings to events.
//!
//! The message definitions follow `opentelemetry/proto/logs/v1/logs.proto` and
//! `common/v1/common.proto` (field numbers and types); only what logs use is declared.

use serde_json::{Value, json};

/// `ExportLogsServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceRequest {
    /// Logs grouped by resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

/// `ResourceLogs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceLogs {
    /// The resource (service, host).
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Logs grouped by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
    /// Schema URL.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// Attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Dropped attributes.
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// `ScopeLogs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeLogs {
    /// The instrumentation scope.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// Records.
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
    /// Schema URL.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `InstrumentationScope`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// Attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
}

/// `LogRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRecord {
    /// Event time.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// Time the collector saw it.
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    /// Severity number (1–24).
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    /// Severity text.
    #[prost(string, tag = "3")]
    pub severity_text: String,
    /// Body.
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    /// Attributes.
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    /// Dropped attributes.
    #[prost(uint32, tag = "7")]
    pub dropped_attributes_count: u32,
    /// Flags.
    #[prost(fixed32, tag = "8")]
    pub flags: u32,
    /// Trace id (16 bytes).
    #[prost(bytes = "vec", tag = "9")]
    pub trace_id: Vec<u8>,
    /// Span id (8 bytes).
    #[prost(bytes = "vec", tag = "10")]
    pub span_id: Vec<u8>,
    /// Event name.
    #[prost(string, tag = "12")]
    pub event_name: String,
}

/// `KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `AnyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// The value.
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<any_value::Value>,
}

/// The `AnyValue` oneof.
pub mod any_value {
    /// One of the value kinds.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// String.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// Boolean.
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        /// Integer.
        #[prost(int64, tag = "3")]
        IntValue(i64),
        /// Float.
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        /// Array.
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        /// Map.
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        /// Bytes.
        #[prost(bytes, tag = "7")]
        BytesValue(Vec<u8>),
    }
}

/// `ArrayValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    /// Items.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// `KeyValueList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueList {
    /// Entries.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// Decodes a protobuf export request and returns its OTLP JSON encoding.
pub fn protobuf_to_json(bytes: &[u8]) -> Result<Vec<u8>, prost::DecodeError> {
    let req = <ExportLogsServiceRequest as prost::Message>::decode(bytes)?;
    let resource_logs: Vec<Value> = req
        .resource_logs
        .iter()
        .map(|rl| {
            json!({
                "resource": {"attributes": kvs(rl.resource.as_ref().map_or(&[][..], |r| &r.attributes))},
                "schemaUrl": rl.schema_url,
                "scopeLogs": rl.scope_logs.iter().map(|sl| json!({
                    "scope": sl.scope.as_ref().map(|s| json!({"name": s.name, "version": s.version, "attributes": kvs(&s.attributes)})),
                    "logRecords": sl.log_records.iter().map(record).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({"resourceLogs": resource_logs})
        .to_string()
        .into_bytes())
}

fn record(r: &LogRecord) -> Value {
    let mut o = serde_json::Map::new();
    if r.time_unix_nano != 0 {
        o.insert("timeUnixNano".into(), json!(r.time_unix_nano.to_string()));
    }
    if r.observed_time_unix_nano != 0 {
        o.insert(
            "observedTimeUnixNano".into(),
            json!(r.observed_time_unix_nano.to_string()),
        );
    }
    if r.severity_number != 0 {
        o.insert("severityNumber".into(), json!(r.severity_number));
    }
    if !r.severity_text.is_empty() {
        o.insert("severityText".into(), json!(r.severity_text));
    }
    if let Some(b) = &r.body {
        o.insert("body".into(), any(b));
    }
    o.insert("attributes".into(), kvs(&r.attributes));
    if !r.trace_id.is_empty() {
        o.insert("traceId".into(), json!(hex(&r.trace_id)));
    }
    if !r.span_id.is_empty() {
        o.insert("spanId".into(), json!(hex(&r.span_id)));
    }
    if !r.event_name.is_empty() {
        o.insert("eventName".into(), json!(r.event_name));
    }
    Value::Object(o)
}

fn kvs(items: &[KeyValue]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|kv| json!({"key": kv.key, "value": kv.value.as_ref().map_or(json!({}), any)}))
            .collect(),
    )
}

fn any(v: &AnyValue) -> Value {
    use any_value::Value as V;
    match &v.value {
        None => json!({}),
        Some(V::StringValue(s)) => json!({"stringValue": s}),
        Some(V::BoolValue(b)) => json!({"boolValue": b}),
        // The JSON encoding carries 64-bit integers as strings.
        Some(V::IntValue(i)) => json!({"intValue": i.to_string()}),
        Some(V::DoubleValue(d)) => json!({"doubleValue": d}),
        Some(V::ArrayValue(a)) => {
            json!({"arrayValue": {"values": a.values.iter().map(any).collect::<Vec<_>>()}})
        }
        Some(V::KvlistValue(l)) => json!({"kvlistValue": {"values": kvs(&l.values)}}),
        Some(V::BytesValue(b)) => {
            use base64::Engine as _;
            json!({"bytesValue": base64::engine::general_purpose::STANDARD.encode(b)})
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn protobuf_request_becomes_otlp_json() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("svc".into())),
                        }),
                    }],
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: vec![LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        severity_number: 13,
                        severity_text: "WARN".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("hello".into())),
                        }),
                        attributes: vec![KeyValue {
                            key: "n".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(7)),
                            }),
                        }],
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let json: Value =
            serde_json::from_slice(&protobuf_to_json(&req.encode_to_vec()).unwrap()).unwrap();
        let rec = &json["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(rec["body"]["stringValue"], "hello");
        assert_eq!(rec["timeUnixNano"], "1700000000000000000");
        assert_eq!(rec["attributes"][0]["value"]["intValue"], "7");
        assert_eq!(
            json["resourceLogs"][0]["resource"]["attributes"][0]["key"],
            "service.name"
        );
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        assert!(protobuf_to_json(&[0xff, 0xff, 0xff, 0x01]).is_err());
    }
}
