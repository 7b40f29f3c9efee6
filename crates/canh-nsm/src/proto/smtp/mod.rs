//! SMTP: detection by content (server `220` greeting naming SMTP, client `EHLO`/`HELO`),
//! command/reply pairing with pipelining and multi-line replies, the envelope (HELO name,
//! `MAIL FROM`, `RCPT TO`), the headers and attachment names of the message (`DATA` or
//! `BDAT`), and the hand-over to TLS after `STARTTLS`. One EVE `smtp` record per transaction
//! (envelope), written when the server answers the end of the message, when the envelope is
//! reset (`RSET`, a new `EHLO`), at `STARTTLS` or when the flow ends.

pub mod parser;

use crate::proto::heap::HeapSize;
use crate::proto::{
    AppEvent, Direction, ParseResult, Probe, ProtocolParser, ProtocolState, Transport,
};
use parser::{
    HeaderReader, command_path, header_param, next_line, parse_command, parse_reply_line,
    split_addresses,
};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;

/// Longest command or reply line buffered before it is cut.
const MAX_LINE: usize = 4096;
/// Longest message line buffered before it is handled in pieces.
const MAX_DATA_LINE: usize = 64 * 1024;
/// Commands kept waiting for their replies.
const MAX_PENDING: usize = 1024;
/// Longest attachment name logged (bytes), as Suricata's MIME decoder keeps.
const MAX_FILENAME: usize = 255;
/// Most recipients and attachment names kept per transaction.
const MAX_ITEMS: usize = 256;

/// `BDAT <size> [LAST]` arguments; `None` if malformed (the server rejects it and no chunk
/// follows).
fn bdat_args(args: &str) -> Option<(u64, bool)> {
    let mut words = args.split_whitespace();
    let size = words.next()?.parse::<u64>().ok()?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
}

/// The SMTP protocol.
pub struct SmtpProtocol;

/// Commands that start a client's side of SMTP on an SMTP port.
const FIRST_COMMANDS: &[&[u8]] = &[
    b"EHLO",
    b"HELO",
    b"MAIL",
    b"RCPT",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"AUTH",
    b"STARTTLS",
    b"VRFY",
];

/// Whether the first line of `data` is a client greeting (`EHLO`/`HELO`, or on an SMTP port
/// another SMTP command); `None` if not known yet.
fn client_greeting(data: &[u8], port_match: bool) -> Option<bool> {
    let verbs = if port_match {
        FIRST_COMMANDS
    } else {
        &FIRST_COMMANDS[..2]
    };
    let mut undecided = false;
    for v in verbs {
        let n = data.len().min(v.len() + 1);
        let head = data[..n].to_ascii_uppercase();
        if head.len() <= v.len() {
            undecided |= v.starts_with(&head);
        } else if head.starts_with(v) && matches!(head[v.len()], b' ' | b'\t' | b'\r' | b'\n') {
            return Some(true);
        }
    }
    if undecided { None } else { Some(false) }
}

/// Whether `data` starts with a server greeting that is SMTP's (`port_match`: on an SMTP port
/// any `220` greeting not naming FTP is); `None` if not known yet.
pub(crate) fn server_greeting(data: &[u8], word: &[u8], port_match: bool) -> Option<bool> {
    let n = data.len().min(4);
    if data[..n] != b"220 "[..n] && data[..n] != b"220-"[..n] {
        return Some(false);
    }
    let Some((line, _)) = next_line(data) else {
        return if data.len() > 512 { Some(false) } else { None };
    };
    let upper = line.to_ascii_uppercase();
    let has = |w: &[u8]| upper.windows(w.len()).any(|x| x == w);
    let other: &[u8] = if word == b"SMTP" { b"FTP" } else { b"SMTP" };
    Some(has(word) || (port_match && !has(other)))
}

impl ProtocolParser for SmtpProtocol {
    fn id(&self) -> &'static str {
        "smtp"
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    fn ports(&self) -> &'static [u16] {
        &[25, 587, 2525]
    }
    fn probe(&self, _t: Transport, dir: Direction, data: &[u8], port_match: bool) -> Probe {
        let r = match dir {
            Direction::ToServer => client_greeting(data, port_match),
            Direction::ToClient => server_greeting(data, b"SMTP", port_match),
        };
        match r {
            Some(true) => Probe::Yes,
            Some(false) => Probe::No,
            None => Probe::NeedMore,
        }
    }
    fn new_state(&self, _t: Transport) -> Box<dyn ProtocolState> {
        Box::new(SmtpState::default())
    }
}

/// The message of a transaction, read line by line.
#[derive(Debug, Default)]
struct Message {
    headers: HeaderReader,
    in_body: bool,
    boundaries: Vec<String>,
    /// Headers of the MIME part being read.
    part: Option<HeaderReader>,
    attachments: Vec<String>,
    done: bool,
}

impl HeapSize for Message {
    fn heap_size(&self) -> usize {
        self.headers.heap_size()
            + self.boundaries.heap_size()
            + self.part.heap_size()
            + self.attachments.heap_size()
    }
}

impl Message {
    fn add_boundary(&mut self, content_type: Option<&str>) {
        if let Some(b) = content_type.and_then(|ct| header_param(ct, "boundary"))
            && !b.is_empty()
            && self.boundaries.len() < 64
        {
            self.boundaries.push(b);
        }
    }

    fn line(&mut self, line: &[u8]) {
        if self.done {
            return;
        }
        if !self.in_body {
            if self.headers.line(line) {
                self.in_body = true;
                let ct = self.headers.get("content-type").map(str::to_string);
                self.add_boundary(ct.as_deref());
            }
            return;
        }
        if let Some(rest) = line.strip_prefix(b"--") {
            let rest = rest.strip_suffix(b"--").unwrap_or(rest);
            let rest = rest.trim_ascii_end();
            if self.boundaries.iter().any(|b| b.as_bytes() == rest) {
                self.part = Some(HeaderReader::default());
                return;
            }
        }
        let Some(part) = self.part.as_mut() else {
            return;
        };
        if part.line(line) {
            let ct = part.get("content-type").map(str::to_string);
            let name = part
                .get("content-disposition")
                .and_then(|cd| header_param(cd, "filename"))
                .or_else(|| ct.as_deref().and_then(|ct| header_param(ct, "name")));
            if let Some(mut n) = name
                && self.attachments.len() < MAX_ITEMS
            {
                let mut cut = n.len().min(MAX_FILENAME);
                while !n.is_char_boundary(cut) {
                    cut -= 1;
                }
                n.truncate(cut);
                self.attachments.push(n);
            }
            self.add_boundary(ct.as_deref());
            self.part = None;
        }
    }

    fn finish(&mut self) {
        self.headers.flush();
        self.done = true;
    }

    fn eve(&self) -> Value {
        let mut o = Map::new();
        let status = if self.done {
            "PARSE_DONE"
        } else if self.in_body {
            "BODY_STARTED"
        } else {
            "HEADERS_STARTED"
        };
        o.insert("status".into(), json!(status));
        let h = &self.headers;
        if let Some(v) = h.get("from") {
            o.insert("from".into(), json!(v));
        }
        for (name, key) in [("to", "to"), ("cc", "cc")] {
            let list = h.get(name).map(split_addresses).unwrap_or_default();
            if !list.is_empty() {
                o.insert(key.into(), json!(list));
            }
        }
        for (name, key) in [
            ("subject", "subject"),
            ("date", "date"),
            ("message-id", "message_id"),
            ("x-mailer", "x_mailer"),
        ] {
            if let Some(v) = h.get(name) {
                o.insert(key.into(), json!(v));
            }
        }
        let received: Vec<&str> = h.get_all("received").collect();
        if !received.is_empty() {
            o.insert("received".into(), json!(received));
        }
        if !self.attachments.is_empty() {
            o.insert("attachment".into(), json!(self.attachments));
        }
        Value::Object(o)
    }
}

/// One transaction: an envelope and its message.
#[derive(Debug, Default)]
struct Tx {
    id: u64,
    /// A `MAIL`, `RCPT`, `DATA` or `BDAT` was seen: the envelope has started.
    started: bool,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    msg: Option<Message>,
}

impl HeapSize for Tx {
    fn heap_size(&self) -> usize {
        self.mail_from.heap_size() + self.rcpt_to.heap_size() + self.msg.heap_size()
    }
}

/// What a reply answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// `EHLO`/`HELO` sent inside an envelope: a positive reply resets it.
    Helo(String),
    Data,
    /// The end of a message (`.` or the last `BDAT` chunk).
    DataEnd,
    StartTls,
    Other,
}

impl HeapSize for Pending {
    fn heap_size(&self) -> usize {
        match self {
            Self::Helo(name) => name.heap_size(),
            _ => 0,
        }
    }
}

#[derive(Debug, Default)]
struct SmtpState {
    helo: Option<String>,
    cur: Option<Tx>,
    /// Transactions whose message ended, waiting for the server's answer.
    ended: VecDeque<Tx>,
    next_id: u64,
    pending: VecDeque<Pending>,
    data_mode: bool,
    /// Bytes of the current `BDAT` chunk still to come, and whether it is the last one.
    bdat_left: u64,
    bdat_last: bool,
    /// Part of a message line split across `BDAT` chunks.
    bdat_line: Vec<u8>,
    starttls_wait: bool,
}

impl SmtpState {
    fn tx(&mut self) -> &mut Tx {
        let next = &mut self.next_id;
        self.cur.get_or_insert_with(|| {
            *next += 1;
            Tx {
                id: *next - 1,
                ..Tx::default()
            }
        })
    }

    fn expect(&mut self, p: Pending) {
        if self.pending.len() < MAX_PENDING {
            self.pending.push_back(p);
        }
    }

    /// Writes the current transaction, if any.
    fn log(&mut self, out: &mut Vec<AppEvent>) {
        if let Some(tx) = self.cur.take() {
            self.log_tx(tx, out);
        }
    }

    fn log_tx(&self, tx: Tx, out: &mut Vec<AppEvent>) {
        let mut smtp = Map::new();
        if let Some(h) = &self.helo {
            smtp.insert("helo".into(), json!(h));
        }
        if let Some(m) = &tx.mail_from {
            smtp.insert("mail_from".into(), json!(m));
        }
        if !tx.rcpt_to.is_empty() {
            smtp.insert("rcpt_to".into(), json!(tx.rcpt_to));
        }
        let mut body = smtp;
        if let Some(msg) = &tx.msg {
            // Written beside the `smtp` object (see `eve::app_record`).
            body.insert("email".into(), msg.eve());
        }
        out.push(AppEvent {
            event_type: "smtp",
            direction: None,
            body,
            tx_id: Some(tx.id),
            http: None,
        });
    }

    /// Writes every transaction still open.
    fn flush(&mut self, out: &mut Vec<AppEvent>) {
        while let Some(tx) = self.ended.pop_front() {
            self.log_tx(tx, out);
        }
        self.log(out);
    }

    fn command(&mut self, line: &[u8], out: &mut Vec<AppEvent>) {
        let cmd = parse_command(line);
        let first = self.next_id == 0;
        let bdat = (cmd.verb == "BDAT").then(|| bdat_args(&cmd.args)).flatten();
        if matches!(cmd.verb.as_str(), "MAIL" | "RCPT" | "DATA") || bdat.is_some() {
            self.tx().started = true;
        }
        match cmd.verb.as_str() {
            "EHLO" | "HELO" => {
                let name = cmd.args.split_whitespace().next().unwrap_or("").to_string();
                let in_envelope = self.cur.as_ref().is_some_and(|t| t.started);
                if first {
                    self.tx();
                }
                if in_envelope {
                    self.expect(Pending::Helo(name));
                } else {
                    self.helo = Some(name);
                    self.expect(Pending::Other);
                }
            }
            "MAIL" => {
                let tx = self.tx();
                if tx.mail_from.is_none() {
                    tx.mail_from = command_path(&cmd.args, "FROM");
                }
                self.expect(Pending::Other);
            }
            "RCPT" => {
                let tx = self.tx();
                if let Some(p) = command_path(&cmd.args, "TO")
                    && tx.rcpt_to.len() < MAX_ITEMS
                {
                    tx.rcpt_to.push(p);
                }
                self.expect(Pending::Other);
            }
            "DATA" => {
                self.tx().msg = Some(Message::default());
                self.data_mode = true;
                self.expect(Pending::Data);
            }
            "BDAT" if bdat.is_some() => {
                let (size, last) = bdat.unwrap_or_default();
                let tx = self.tx();
                if tx.msg.is_none() {
                    tx.msg = Some(Message::default());
                }
                self.bdat_left = size;
                self.bdat_last = last;
                if !last {
                    self.expect(Pending::Other);
                } else if self.bdat_left == 0 {
                    // Otherwise the message ends with the last byte of the chunk.
                    self.end_message();
                }
            }
            "RSET" => {
                // Pipelined commands after a RSET belong to a new transaction.
                if self.cur.as_ref().is_some_and(|t| t.started) {
                    self.log(out);
                }
                self.expect(Pending::Other);
            }
            "STARTTLS" => {
                if first {
                    self.tx();
                }
                self.starttls_wait = true;
                self.expect(Pending::StartTls);
            }
            _ => {
                if first {
                    self.tx();
                }
                self.expect(Pending::Other);
            }
        }
    }

    /// The message ended: its transaction waits for the server's answer, and what the client
    /// sends next belongs to a new one.
    fn end_message(&mut self) {
        if let Some(mut tx) = self.cur.take() {
            if let Some(m) = tx.msg.as_mut() {
                m.finish();
            }
            if self.ended.len() < MAX_PENDING {
                self.ended.push_back(tx);
            }
        }
        self.data_mode = false;
        self.expect(Pending::DataEnd);
    }

    fn message_line(&mut self, line: &[u8]) {
        if let Some(m) = self.cur.as_mut().and_then(|t| t.msg.as_mut()) {
            m.line(line);
        }
    }

    /// Feeds `BDAT` chunk bytes; returns how many were used.
    fn bdat_bytes(&mut self, data: &[u8]) -> usize {
        let take = data
            .len()
            .min(usize::try_from(self.bdat_left).unwrap_or(usize::MAX));
        let mut buf = std::mem::take(&mut self.bdat_line);
        buf.extend_from_slice(&data[..take]);
        let mut at = 0;
        while let Some((line, used)) = next_line(&buf[at..]) {
            let line = line.to_vec();
            self.message_line(&line);
            at += used;
        }
        let mut rest = buf.split_off(at);
        if rest.len() > MAX_DATA_LINE {
            self.message_line(&rest);
            rest.clear();
        }
        self.bdat_line = rest;
        self.bdat_left -= take as u64;
        if self.bdat_left == 0 && self.bdat_last {
            let rest = std::mem::take(&mut self.bdat_line);
            if !rest.is_empty() {
                self.message_line(&rest);
            }
            self.end_message();
        }
        take
    }

    fn parse_client(&mut self, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            if self.bdat_left > 0 {
                at += self.bdat_bytes(rest);
                continue;
            }
            if self.starttls_wait {
                // What follows a STARTTLS is a TLS handshake if the server agrees.
                return ParseResult::Incomplete {
                    consumed: at,
                    needed: 0,
                };
            }
            let limit = if self.data_mode {
                MAX_DATA_LINE
            } else {
                MAX_LINE
            };
            let (line, used) = match next_line(rest) {
                Some(l) => l,
                None if rest.len() > limit => (rest, rest.len()),
                None => {
                    return ParseResult::Incomplete {
                        consumed: at,
                        needed: 1,
                    };
                }
            };
            at += used;
            if self.data_mode {
                if line == b"." {
                    self.end_message();
                } else {
                    let line = line.strip_prefix(b".").unwrap_or(line);
                    self.message_line(line);
                }
            } else {
                self.command(line, out);
            }
        }
        ParseResult::Consumed
    }

    /// Handles the final line of a reply; `true` if the session goes over to TLS.
    fn reply(&mut self, code: u16, out: &mut Vec<AppEvent>) -> bool {
        let Some(p) = self.pending.pop_front() else {
            // The greeting, or a reply nobody asked for.
            return false;
        };
        let positive = (200..300).contains(&code);
        match p {
            Pending::Helo(name) => {
                if positive {
                    self.log(out);
                    self.helo = Some(name);
                }
            }
            Pending::Data => {
                if code != 354 && self.data_mode {
                    // Rejected: what the client sends next are commands.
                    self.data_mode = false;
                    if let Some(t) = self.cur.as_mut() {
                        t.msg = None;
                    }
                }
            }
            Pending::DataEnd => {
                if let Some(tx) = self.ended.pop_front() {
                    self.log_tx(tx, out);
                }
            }
            Pending::StartTls => {
                self.starttls_wait = false;
                if code == 220 {
                    self.flush(out);
                    return true;
                }
            }
            Pending::Other => {}
        }
        false
    }

    fn parse_server(&mut self, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            let (line, used) = match next_line(rest) {
                Some(l) => l,
                None if rest.len() > MAX_LINE => (rest, rest.len()),
                None => {
                    return ParseResult::Incomplete {
                        consumed: at,
                        needed: 1,
                    };
                }
            };
            at += used;
            let Some(r) = parse_reply_line(line) else {
                continue;
            };
            if !r.more && self.reply(r.code, out) {
                return ParseResult::Upgrade { consumed: at };
            }
        }
        ParseResult::Consumed
    }
}

impl ProtocolState for SmtpState {
    fn heap_bytes(&self) -> usize {
        self.helo.heap_size()
            + self.cur.heap_size()
            + self.ended.heap_size()
            + self.pending.heap_size()
            + self.bdat_line.heap_size()
    }
    fn parse(&mut self, dir: Direction, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        match dir {
            Direction::ToServer => self.parse_client(data, out),
            Direction::ToClient => self.parse_server(data, out),
        }
    }

    fn close(&mut self, out: &mut Vec<AppEvent>) {
        self.flush(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client: &[&[u8]], server: &[&[u8]]) -> Vec<AppEvent> {
        let mut st = SmtpState::default();
        let mut out = Vec::new();
        let n = client.len().max(server.len());
        for i in 0..n {
            if let Some(s) = server.get(i) {
                st.parse(Direction::ToClient, s, &mut out);
            }
            if let Some(c) = client.get(i) {
                st.parse(Direction::ToServer, c, &mut out);
            }
        }
        st.close(&mut out);
        out
    }

    #[test]
    fn probes() {
        let p = SmtpProtocol;
        let t = Transport::Tcp;
        assert_eq!(
            p.probe(t, Direction::ToServer, b"EHLO x\r\n", false),
            Probe::Yes
        );
        assert_eq!(
            p.probe(t, Direction::ToServer, b"ehl", false),
            Probe::NeedMore
        );
        assert_eq!(p.probe(t, Direction::ToServer, b"GET /", false), Probe::No);
        assert_eq!(
            p.probe(t, Direction::ToServer, b"EHLO\n", false),
            Probe::Yes
        );
        assert_eq!(
            p.probe(t, Direction::ToServer, b"QUIT\r\n", false),
            Probe::No
        );
        assert_eq!(
            p.probe(t, Direction::ToServer, b"QUIT\r\n", true),
            Probe::Yes
        );
        let banner = b"220 mx.example ESMTP Postfix\r\n";
        assert_eq!(p.probe(t, Direction::ToClient, banner, false), Probe::Yes);
        assert_eq!(
            p.probe(t, Direction::ToClient, b"220 mx", false),
            Probe::NeedMore
        );
        let ftp = b"220 ProFTPD Server ready\r\n";
        assert_eq!(p.probe(t, Direction::ToClient, ftp, true), Probe::No);
        let plain = b"220 hello\r\n";
        assert_eq!(p.probe(t, Direction::ToClient, plain, false), Probe::No);
        assert_eq!(p.probe(t, Direction::ToClient, plain, true), Probe::Yes);
    }

    #[test]
    fn pipelined_session_with_mime_attachment() {
        let client: &[&[u8]] = &[
            b"EHLO client.example\r\n",
            b"MAIL FROM:<a@x.example> SIZE=10\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\nDATA\r\n",
            b"From: A <a@x.example>\r\nTo: b@y.example, \"C, D\" <c@y.example>\r\nSubject: hi\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n\
..dot\r\n--XX\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n\r\nAAAA\r\n--XX--\r\n.\r\n",
            b"QUIT\r\n",
        ];
        let server: &[&[u8]] = &[
            b"220 mx ESMTP\r\n",
            b"250-mx\r\n250 PIPELINING\r\n",
            b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
            b"250 queued\r\n",
        ];
        let out = run(client, server);
        assert_eq!(out.len(), 1);
        let b = &out[0].body;
        assert_eq!(out[0].tx_id, Some(0));
        assert_eq!(b["helo"], "client.example");
        assert_eq!(b["mail_from"], "<a@x.example>");
        assert_eq!(b["rcpt_to"], json!(["<b@y.example>", "<c@y.example>"]));
        assert_eq!(b["email"]["status"], "PARSE_DONE");
        assert_eq!(b["email"]["from"], "A <a@x.example>");
        assert_eq!(
            b["email"]["to"],
            json!(["b@y.example", "\"C, D\" <c@y.example>"])
        );
        assert_eq!(b["email"]["subject"], "hi");
        assert_eq!(b["email"]["attachment"], json!(["r.pdf"]));
    }

    #[test]
    fn rset_and_rejected_data_and_bdat() {
        let client: &[&[u8]] = &[
            b"HELO h\r\n",
            b"MAIL FROM:<a@x>\r\nRSET\r\n",
            b"MAIL FROM:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n",
            b"RSET\r\nMAIL FROM:<d@x>\r\nBDAT 9\r\nFrom: d@x",
            b"BDAT 2 LAST\r\n\r\n",
        ];
        let server: &[&[u8]] = &[
            b"220 mx SMTP\r\n",
            b"250 h\r\n",
            b"250 ok\r\n250 reset\r\n",
            b"250 ok\r\n250 ok\r\n554 no\r\n",
            b"250 ok\r\n250 ok\r\n250 ok\r\n",
            b"250 ok\r\n",
        ];
        let mut st = SmtpState::default();
        let mut out = Vec::new();
        for i in 0..client.len() {
            st.parse(Direction::ToClient, server[i], &mut out);
            st.parse(Direction::ToServer, client[i], &mut out);
        }
        st.parse(Direction::ToClient, server[5], &mut out);
        st.close(&mut out);
        let ids: Vec<_> = out.iter().map(|e| e.tx_id).collect();
        assert_eq!(ids, vec![Some(0), Some(1), Some(2)]);
        assert_eq!(out[0].body["helo"], "h");
        assert_eq!(out[0].body["mail_from"], "<a@x>");
        assert!(out[1].body.get("email").is_none());
        assert_eq!(out[1].body["mail_from"], "<b@x>");
        assert_eq!(out[2].body["email"]["from"], "d@x");
        assert_eq!(out[2].body["email"]["status"], "PARSE_DONE");
    }

    #[test]
    fn starttls_hands_over() {
        let mut st = SmtpState::default();
        let mut out = Vec::new();
        st.parse(Direction::ToClient, b"220 mx ESMTP\r\n", &mut out);
        st.parse(Direction::ToServer, b"EHLO me\r\n", &mut out);
        st.parse(Direction::ToClient, b"250 STARTTLS\r\n", &mut out);
        let r = st.parse(Direction::ToServer, b"STARTTLS\r\n\x16\x03\x01", &mut out);
        assert_eq!(
            r,
            ParseResult::Incomplete {
                consumed: 10,
                needed: 0
            }
        );
        let r = st.parse(Direction::ToClient, b"220 go\r\n\x16\x03", &mut out);
        assert_eq!(r, ParseResult::Upgrade { consumed: 8 });
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body["helo"], "me");
        assert!(out[0].body.get("email").is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(chunks in proptest::collection::vec(
            (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..300)), 0..12)
        ) {
            let mut st = SmtpState::default();
            let mut out = Vec::new();
            for (to_server, c) in &chunks {
                let dir = if *to_server { Direction::ToServer } else { Direction::ToClient };
                let _ = st.parse(dir, c, &mut out);
            }
            st.close(&mut out);
            proptest::prop_assert!(out.len() <= chunks.len() * 300 + 1);
        }

        #[test]
        fn never_panics_on_commands(text in "(EHLO|MAIL FROM:|RCPT TO:|DATA|BDAT|RSET|\\.|[a-z<>@ ]|\r\n){0,60}") {
            let mut st = SmtpState::default();
            let mut out = Vec::new();
            let _ = st.parse(Direction::ToServer, text.as_bytes(), &mut out);
            let _ = st.parse(Direction::ToClient, b"250 ok\r\n354 go\r\n250 ok\r\n", &mut out);
            st.close(&mut out);
            proptest::prop_assert!(out.len() <= text.len() + 1);
        }
    }
}
