//! FTP control channel: detection by content (a `220` greeting naming FTP, or on port 21 a
//! greeting or a login command), command/reply pairing with multi-line and preliminary (`1xx`)
//! replies, and the data-channel ports of `PORT`/`EPRT` (active) and `PASV`/`EPSV` (passive).
//! One EVE `ftp` record per command, written when its final reply arrives (or at flow end).

pub mod parser;

use crate::proto::heap::HeapSize;
use crate::proto::smtp::parser::{next_line, parse_reply_line};
use crate::proto::{
    AppEvent, Direction, ParseResult, Probe, ProtocolParser, ProtocolState, Transport,
};
use parser::{port_from_extended, port_from_tuple};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;

/// Longest command or reply line kept (Suricata's default `max-line-length`); longer ones are
/// cut and flagged as truncated.
const MAX_LINE: usize = 4096;
/// Longest line buffered while waiting for its end.
const MAX_BUFFERED_LINE: usize = 64 * 1024;
/// Commands kept waiting for their replies.
const MAX_PENDING: usize = 1024;
/// Reply lines kept per command.
const MAX_REPLY_LINES: usize = 256;

/// Commands that open a client's side of FTP on an FTP port.
const FIRST_COMMANDS: &[&[u8]] = &[
    b"USER", b"AUTH", b"FEAT", b"SYST", b"OPTS", b"PASS", b"QUIT", b"HELP", b"NOOP", b"PORT",
    b"PASV", b"EPSV", b"EPRT", b"TYPE", b"PWD", b"CWD", b"LIST", b"RETR", b"STOR",
];

/// The FTP protocol.
pub struct FtpProtocol;

fn client_command(data: &[u8], port_match: bool) -> Option<bool> {
    if !port_match {
        return Some(false);
    }
    let mut undecided = false;
    for v in FIRST_COMMANDS {
        let n = data.len().min(v.len() + 1);
        let head = data[..n].to_ascii_uppercase();
        if head.len() <= v.len() {
            undecided |= v.starts_with(&head);
        } else if head.starts_with(v) && matches!(head[v.len()], b' ' | b'\r' | b'\n') {
            return Some(true);
        }
    }
    if undecided { None } else { Some(false) }
}

impl ProtocolParser for FtpProtocol {
    fn id(&self) -> &'static str {
        "ftp"
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    fn ports(&self) -> &'static [u16] {
        &[21]
    }
    fn probe(&self, _t: Transport, dir: Direction, data: &[u8], port_match: bool) -> Probe {
        let r = match dir {
            Direction::ToServer => client_command(data, port_match),
            Direction::ToClient => crate::proto::smtp::server_greeting(data, b"FTP", port_match),
        };
        match r {
            Some(true) => Probe::Yes,
            Some(false) => Probe::No,
            None => Probe::NeedMore,
        }
    }
    fn new_state(&self, _t: Transport) -> Box<dyn ProtocolState> {
        Box::new(FtpState::default())
    }
}

/// One command and its replies.
#[derive(Debug, Default)]
struct Tx {
    id: u64,
    command: Option<String>,
    data: String,
    command_truncated: bool,
    replies: Vec<String>,
    codes: Vec<String>,
    reply_truncated: bool,
    dynamic_port: Option<u16>,
    active: Option<bool>,
    reply_received: bool,
}

impl Tx {
    fn eve(&self) -> Map<String, Value> {
        let mut o = Map::new();
        if let Some(c) = &self.command {
            o.insert("command".into(), json!(c));
            o.insert("command_data".into(), json!(self.data));
        }
        if !self.replies.is_empty() {
            o.insert("reply".into(), json!(self.replies));
        }
        if !self.codes.is_empty() {
            o.insert("completion_code".into(), json!(self.codes));
        }
        if let Some(p) = self.dynamic_port {
            o.insert("dynamic_port".into(), json!(p));
        }
        if let Some(active) = self.active {
            let mode = if active { "active" } else { "passive" };
            o.insert("mode".into(), json!(mode));
        }
        let received = if self.reply_received { "yes" } else { "no" };
        o.insert("reply_received".into(), json!(received));
        o.insert("command_truncated".into(), json!(self.command_truncated));
        o.insert("reply_truncated".into(), json!(self.reply_truncated));
        o
    }
}

impl HeapSize for Tx {
    fn heap_size(&self) -> usize {
        self.command.heap_size()
            + self.data.heap_size()
            + self.replies.heap_size()
            + self.codes.heap_size()
    }
}

#[derive(Debug, Default)]
struct FtpState {
    /// Commands waiting for their final reply, oldest first.
    pending: VecDeque<Tx>,
    next_id: u64,
    /// Code of the multi-line reply being read.
    multi: Option<u16>,
}

/// Cuts a line to [`MAX_LINE`] bytes; true if it was longer.
fn cut(line: &[u8]) -> (String, bool) {
    let long = line.len() > MAX_LINE;
    let kept = &line[..line.len().min(MAX_LINE)];
    (String::from_utf8_lossy(kept).into_owned(), long)
}

/// The next line of `data`, or the buffered bytes as one line if they exceed the buffer.
fn take_line(data: &[u8]) -> Option<(&[u8], usize)> {
    next_line(data).or_else(|| (data.len() > MAX_BUFFERED_LINE).then_some((data, data.len())))
}

impl FtpState {
    fn new_tx(&mut self) -> Tx {
        self.next_id += 1;
        Tx {
            id: self.next_id - 1,
            ..Tx::default()
        }
    }

    fn log(tx: &Tx, out: &mut Vec<AppEvent>) {
        out.push(AppEvent {
            event_type: "ftp",
            direction: None,
            body: tx.eve(),
            tx_id: Some(tx.id),
            http: None,
        });
    }

    fn command(&mut self, line: &[u8]) {
        let (text, truncated) = cut(line);
        let (verb, args) = match text.find(' ') {
            Some(p) => (&text[..p], &text[p + 1..]),
            None => (text.as_str(), ""),
        };
        let mut tx = self.new_tx();
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "PORT" => {
                tx.dynamic_port = port_from_tuple(args);
                tx.active = Some(true);
            }
            "EPRT" => {
                tx.dynamic_port = port_from_extended(args);
                tx.active = Some(true);
            }
            _ => {}
        }
        tx.command = Some(verb);
        tx.data = args.to_string();
        tx.command_truncated = truncated;
        if self.pending.len() < MAX_PENDING {
            self.pending.push_back(tx);
        }
    }

    fn parse_client(&mut self, data: &[u8]) -> ParseResult {
        let mut at = 0;
        while at < data.len() {
            let Some((line, used)) = take_line(&data[at..]) else {
                return ParseResult::Incomplete {
                    consumed: at,
                    needed: 1,
                };
            };
            at += used;
            if !line.is_empty() {
                self.command(line);
            }
        }
        ParseResult::Consumed
    }

    fn reply_line(&mut self, line: &[u8], out: &mut Vec<AppEvent>) {
        let (text, truncated) = cut(line);
        let parsed = parse_reply_line(line);
        let last = match (self.multi, &parsed) {
            // Inside a multi-line reply, only `<code> ` ends it.
            (Some(code), Some(r)) => r.code == code && !r.more,
            (Some(_), None) => false,
            (None, Some(r)) => !r.more,
            (None, None) => true,
        };
        let code = parsed.as_ref().map(|r| r.code).or(self.multi);
        let shown = match &parsed {
            Some(r) => cut(r.text).0,
            None => text,
        };
        if self.multi.is_none() && !last {
            self.multi = code;
        }
        if self.pending.is_empty() {
            // A reply nobody asked for (the greeting): a transaction without a command.
            let tx = self.new_tx();
            self.pending.push_back(tx);
        }
        let Some(tx) = self.pending.front_mut() else {
            return;
        };
        tx.reply_truncated |= truncated;
        if tx.replies.len() < MAX_REPLY_LINES {
            tx.replies.push(shown.clone());
        }
        if !last {
            return;
        }
        self.multi = None;
        let code = code.unwrap_or(0);
        tx.codes.push(code.to_string());
        tx.reply_received = true;
        match (tx.command.as_deref(), code) {
            (Some("PASV"), 227) => {
                tx.dynamic_port = port_from_tuple(&shown);
                tx.active = Some(false);
            }
            (Some("EPSV"), 229) => {
                tx.dynamic_port = port_from_extended(&shown);
                tx.active = Some(false);
            }
            _ => {}
        }
        if (100..200).contains(&code) {
            // A preliminary reply: the final one follows.
            return;
        }
        if let Some(done) = self.pending.pop_front() {
            Self::log(&done, out);
        }
    }

    fn parse_server(&mut self, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        let mut at = 0;
        while at < data.len() {
            let Some((line, used)) = take_line(&data[at..]) else {
                return ParseResult::Incomplete {
                    consumed: at,
                    needed: 1,
                };
            };
            at += used;
            self.reply_line(line, out);
        }
        ParseResult::Consumed
    }
}

impl ProtocolState for FtpState {
    fn heap_bytes(&self) -> usize {
        self.pending.heap_size()
    }
    fn parse(&mut self, dir: Direction, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        match dir {
            Direction::ToServer => self.parse_client(data),
            Direction::ToClient => self.parse_server(data, out),
        }
    }

    fn close(&mut self, out: &mut Vec<AppEvent>) {
        while let Some(tx) = self.pending.pop_front() {
            Self::log(&tx, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(st: &mut FtpState, dir: Direction, data: &[u8], out: &mut Vec<AppEvent>) {
        let r = st.parse(dir, data, out);
        assert_eq!(r, ParseResult::Consumed);
    }

    #[test]
    fn probes() {
        let p = FtpProtocol;
        let t = Transport::Tcp;
        let banner = b"220 (vsFTPd 3.0.3)\r\n";
        assert_eq!(p.probe(t, Direction::ToClient, banner, false), Probe::Yes);
        let smtp = b"220 mx ESMTP\r\n";
        assert_eq!(p.probe(t, Direction::ToClient, smtp, true), Probe::No);
        let plain = b"220 welcome\r\n";
        assert_eq!(p.probe(t, Direction::ToClient, plain, true), Probe::Yes);
        assert_eq!(
            p.probe(t, Direction::ToServer, b"USER a\r\n", true),
            Probe::Yes
        );
        assert_eq!(
            p.probe(t, Direction::ToServer, b"USER a\r\n", false),
            Probe::No
        );
        assert_eq!(
            p.probe(t, Direction::ToServer, b"US", true),
            Probe::NeedMore
        );
    }

    #[test]
    fn session_with_passive_and_active_transfers() {
        let mut st = FtpState::default();
        let mut out = Vec::new();
        let d = (Direction::ToServer, Direction::ToClient);
        feed(
            &mut st,
            d.1,
            b"220-Welcome\r\n more\r\n220 ready\r\n",
            &mut out,
        );
        feed(&mut st, d.0, b"USER anonymous\r\nPASS x\r\n", &mut out);
        feed(&mut st, d.1, b"331 Please\r\n230 ok\r\n", &mut out);
        feed(&mut st, d.0, b"PASV\r\n", &mut out);
        feed(
            &mut st,
            d.1,
            b"227 Entering Passive Mode (10,0,0,2,134,21).\r\n",
            &mut out,
        );
        feed(&mut st, d.0, b"RETR index.html\r\n", &mut out);
        feed(&mut st, d.1, b"150 Opening\r\n", &mut out);
        assert_eq!(out.len(), 4);
        feed(&mut st, d.1, b"226 Transfer complete\r\n", &mut out);
        feed(&mut st, d.0, b"PORT 10,0,0,1,232,157\r\nEPSV\r\n", &mut out);
        feed(
            &mut st,
            d.1,
            b"200 ok\r\n229 Entering Extended Passive Mode (|||58612|)\r\n",
            &mut out,
        );
        st.close(&mut out);
        let f: Vec<&Map<String, Value>> = out.iter().map(|e| &e.body).collect();
        assert_eq!(f.len(), 7);
        assert_eq!(f[0]["reply"], json!(["Welcome", " more", "ready"]));
        assert_eq!(f[0]["completion_code"], json!(["220"]));
        assert!(f[0].get("command").is_none());
        assert_eq!(f[1]["command"], "USER");
        assert_eq!(f[1]["command_data"], "anonymous");
        assert_eq!(f[3]["dynamic_port"], 34325);
        assert_eq!(f[3]["mode"], "passive");
        assert_eq!(f[4]["completion_code"], json!(["150", "226"]));
        assert_eq!(f[4]["reply_received"], "yes");
        assert_eq!(f[5]["dynamic_port"], 59549);
        assert_eq!(f[5]["mode"], "active");
        assert_eq!(f[6]["dynamic_port"], 58612);
        let ids: Vec<_> = out.iter().filter_map(|e| e.tx_id).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn long_command_is_cut_and_unanswered_is_logged() {
        let mut st = FtpState::default();
        let mut out = Vec::new();
        let mut line = b"RETR ".to_vec();
        line.extend(std::iter::repeat_n(b'a', 5000));
        line.extend_from_slice(b"\r\n");
        feed(&mut st, Direction::ToServer, &line, &mut out);
        st.close(&mut out);
        assert_eq!(out.len(), 1);
        let b = &out[0].body;
        assert_eq!(b["command_truncated"], true);
        assert_eq!(b["command_data"].as_str().map(str::len), Some(4091));
        assert_eq!(b["reply_received"], "no");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(chunks in proptest::collection::vec(
            (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..300)), 0..12)
        ) {
            let mut st = FtpState::default();
            let mut out = Vec::new();
            for (to_server, c) in &chunks {
                let dir = if *to_server { Direction::ToServer } else { Direction::ToClient };
                let _ = st.parse(dir, c, &mut out);
            }
            st.close(&mut out);
            proptest::prop_assert!(out.len() <= chunks.len() * 300 + 1);
        }

        #[test]
        fn never_panics_on_dialogue(text in "(USER|PASV|PORT|EPRT|EPSV|[0-9]{3}[ -]|[(),|0-9a-z ]|\r\n){0,60}") {
            let mut st = FtpState::default();
            let mut out = Vec::new();
            let _ = st.parse(Direction::ToServer, text.as_bytes(), &mut out);
            let _ = st.parse(Direction::ToClient, text.as_bytes(), &mut out);
            st.close(&mut out);
            proptest::prop_assert!(out.len() <= text.len() + 1);
        }
    }
}
