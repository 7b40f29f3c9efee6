//! An event prepared for matching: every field's text, original and lower-cased, computed once.

use std::borrow::Cow;

use canh_core::Event;
use serde_json::Value;

/// One field of a prepared event.
#[derive(Debug)]
pub(crate) struct PreparedField<'a> {
    pub(crate) name: &'a str,
    /// `None` for JSON `null`; arrays give one text per element.
    pub(crate) orig: Vec<Cow<'a, str>>,
    pub(crate) lower: Vec<String>,
    pub(crate) is_null: bool,
}

/// An event with its fields' texts ready for matching.
#[derive(Debug)]
pub struct PreparedEvent<'a> {
    pub(crate) event: &'a Event,
    /// Sorted by name (the event map is ordered), so lookups are binary searches.
    pub(crate) fields: Vec<PreparedField<'a>>,
}

fn push_text<'a>(v: &'a Value, orig: &mut Vec<Cow<'a, str>>) {
    match v {
        Value::String(s) => orig.push(Cow::Borrowed(s)),
        Value::Number(n) => orig.push(Cow::Owned(n.to_string())),
        Value::Bool(b) => orig.push(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Array(items) => {
            for item in items {
                if !item.is_array() {
                    push_text(item, orig);
                }
            }
        }
        Value::Object(_) => orig.push(Cow::Owned(v.to_string())),
        Value::Null => {}
    }
}

impl<'a> PreparedEvent<'a> {
    /// Prepares `event` for matching.
    pub fn new(event: &'a Event) -> Self {
        let mut fields = Vec::with_capacity(event.fields.len());
        for (name, v) in &event.fields {
            let mut orig = Vec::new();
            push_text(v, &mut orig);
            let lower = orig.iter().map(|s| s.to_lowercase()).collect();
            fields.push(PreparedField {
                name,
                orig,
                lower,
                is_null: v.is_null(),
            });
        }
        // serde_json's default map is ordered by key, but stay correct if a caller enabled
        // `preserve_order` somewhere in the build.
        if !fields.windows(2).all(|w| w[0].name <= w[1].name) {
            fields.sort_by(|a, b| a.name.cmp(b.name));
        }
        PreparedEvent { event, fields }
    }

    pub(crate) fn field(&self, name: &str) -> Option<&PreparedField<'a>> {
        self.fields
            .binary_search_by(|f| f.name.cmp(name))
            .ok()
            .map(|i| &self.fields[i])
    }

    /// The underlying event.
    pub fn event(&self) -> &'a Event {
        self.event
    }
}

/// Whether `name` is searched by field-less (keyword) detections.
///
/// Keywords are matched against `message`, `event.original` and, for Windows events, every
/// `winlog.event_data.*` / `winlog.user_data.*` value (the rendered message text of an EVTX
/// record is not available offline, so its inserts are searched instead).
pub(crate) fn is_keyword_field(name: &str) -> bool {
    name == "message"
        || name == "event.original"
        || name.starts_with("winlog.event_data.")
        || name.starts_with("winlog.user_data.")
}
