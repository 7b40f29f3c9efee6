//! HTTP/1.x: detection by content, request/response pairing, EVE `http` records.

pub mod parser;

use crate::proto::heap::HeapSize;
use crate::proto::{
    AppEvent, Direction, ParseResult, Probe, ProtocolParser, ProtocolState, Transport,
};
use parser::{Chunked, Framing, Head, HeadResult, looks_like_request, looks_like_response};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;

/// Transactions kept per flow while waiting for responses.
const MAX_PENDING_TX: usize = 256;

/// The HTTP/1 protocol.
pub struct Http1Protocol;

impl ProtocolParser for Http1Protocol {
    fn id(&self) -> &'static str {
        "http1"
    }
    fn app_proto(&self) -> &'static str {
        "http"
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    fn ports(&self) -> &'static [u16] {
        &[80, 8080, 8000, 3128]
    }
    fn probe(&self, _t: Transport, dir: Direction, data: &[u8], _port_match: bool) -> Probe {
        let r = match dir {
            Direction::ToServer => looks_like_request(data),
            Direction::ToClient => looks_like_response(data),
        };
        match r {
            Some(true) => Probe::Yes,
            Some(false) => Probe::No,
            None => Probe::NeedMore,
        }
    }
    fn is_server_reply(&self, transport: Transport, payload: &[u8], _sport: u16) -> bool {
        // A session picked up midstream whose first data is a status line.
        transport == Transport::Tcp && looks_like_response(payload) == Some(true)
    }
    fn new_state(&self, _t: Transport) -> Box<dyn ProtocolState> {
        Box::new(Http1State::default())
    }
}

#[derive(Debug, Default)]
struct Tx {
    request: Option<Head>,
    response: Option<Head>,
    request_body: u64,
    response_body: u64,
    request_data: Vec<u8>,
    response_data: Vec<u8>,
    /// Heap bytes of the two heads, measured once when each is set (heads do not change).
    heads_heap: usize,
}

impl HeapSize for Tx {
    fn heap_size(&self) -> usize {
        self.heads_heap + self.request_data.heap_size() + self.response_data.heap_size()
    }
}

/// Body bytes kept per direction for signature inspection.
const BODY_KEEP: usize = 16 * 1024;

fn keep_body(dst: &mut Vec<u8>, data: &[u8]) {
    let room = BODY_KEEP.saturating_sub(dst.len());
    dst.extend_from_slice(&data[..data.len().min(room)]);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Body {
    #[default]
    None,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

#[derive(Debug, Default)]
struct Http1State {
    txs: VecDeque<Tx>,
    /// Index in `txs` of the transaction whose response is being read.
    next_tx_id: u64,
    req_body: Body,
    resp_body: Body,
    /// The response being read belongs to txs[resp_tx] (front when reading).
    resp_open: bool,
    /// A CONNECT request awaits its response: later request bytes may be tunnel data.
    connect_pending: bool,
}

impl Http1State {
    fn log_front(&mut self, out: &mut Vec<AppEvent>) {
        if let Some(tx) = self.txs.pop_front() {
            out.push(tx_event(tx, self.next_tx_id));
            self.next_tx_id += 1;
        }
    }

    fn body_len(body: &mut Body, data: &[u8], counter: &mut u64) -> Option<(usize, bool)> {
        match body {
            Body::None => Some((0, true)),
            Body::Length(left) => {
                let take = (*left).min(data.len() as u64);
                *left -= take;
                *counter += take;
                Some((take as usize, *left == 0))
            }
            Body::Chunked(c) => {
                let used = c.advance(data)?;
                *counter += used as u64;
                Some((used, *c == Chunked::Done))
            }
            Body::UntilClose => {
                *counter += data.len() as u64;
                Some((data.len(), false))
            }
        }
    }

    fn parse_requests(&mut self, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        let mut at = 0;
        while at < data.len() {
            if self.connect_pending {
                // Hold what follows a CONNECT until the proxy answers it (a stray line end
                // after the request is still HTTP).
                while at < data.len() && (data[at] == b'\r' || data[at] == b'\n') {
                    at += 1;
                }
                if at == data.len() {
                    break;
                }
                return ParseResult::Incomplete {
                    consumed: at,
                    needed: 0,
                };
            }
            if self.req_body != Body::None {
                let Some(tx) = self.txs.back_mut() else {
                    self.req_body = Body::None;
                    continue;
                };
                let Some((used, done)) =
                    Self::body_len(&mut self.req_body, &data[at..], &mut tx.request_body)
                else {
                    return ParseResult::Error;
                };
                keep_body(&mut tx.request_data, &data[at..at + used]);
                at += used;
                if done {
                    self.req_body = Body::None;
                } else {
                    break;
                }
                continue;
            }
            // Stray line ends between pipelined requests.
            while at < data.len() && (data[at] == b'\r' || data[at] == b'\n') {
                at += 1;
            }
            if at >= data.len() {
                break;
            }
            match parser::parse_request_head(&data[at..]) {
                HeadResult::Partial => {
                    return ParseResult::Incomplete {
                        consumed: at,
                        needed: 1,
                    };
                }
                HeadResult::Invalid => return ParseResult::Error,
                HeadResult::Done(head) => {
                    at += head.len;
                    self.req_body = match head.body_framing() {
                        Framing::Length(0) => Body::None,
                        Framing::Length(n) => Body::Length(n),
                        Framing::Chunked => Body::Chunked(Chunked::Size),
                        Framing::UntilClose => Body::None,
                    };
                    if self.txs.len() >= MAX_PENDING_TX {
                        return ParseResult::Error;
                    }
                    let tx_id = self.next_tx_id + self.txs.len() as u64;
                    for _ in 0..repeated_names(&head.headers) {
                        out.push(anomaly("REQUEST_HEADER_REPETITION", tx_id));
                    }
                    self.connect_pending = head
                        .method
                        .as_deref()
                        .is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
                    self.txs.push_back(Tx {
                        heads_heap: head.heap_size(),
                        request: Some(head),
                        ..Tx::default()
                    });
                }
            }
        }
        ParseResult::Consumed
    }

    fn parse_responses(&mut self, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        let mut at = 0;
        while at < data.len() {
            if self.resp_open {
                let Some(tx) = self.txs.front_mut() else {
                    self.resp_open = false;
                    continue;
                };
                let Some((used, done)) =
                    Self::body_len(&mut self.resp_body, &data[at..], &mut tx.response_body)
                else {
                    return ParseResult::Error;
                };
                keep_body(&mut tx.response_data, &data[at..at + used]);
                at += used;
                if done {
                    self.resp_open = false;
                    self.resp_body = Body::None;
                    self.log_front(out);
                } else {
                    break;
                }
                continue;
            }
            while at < data.len() && (data[at] == b'\r' || data[at] == b'\n') {
                at += 1;
            }
            if at >= data.len() {
                break;
            }
            match parser::parse_response_head(&data[at..]) {
                HeadResult::Partial => {
                    return ParseResult::Incomplete {
                        consumed: at,
                        needed: 1,
                    };
                }
                HeadResult::Invalid => return ParseResult::Error,
                HeadResult::Done(head) => {
                    at += head.len;
                    let status = head.status.unwrap_or(0);
                    if (100..200).contains(&status) && status != 101 {
                        continue; // interim response: the final one follows
                    }
                    if self.txs.front().is_none_or(|tx| tx.response.is_some()) {
                        // A response without a request: log it on its own.
                        self.txs.push_front(Tx::default());
                    }
                    let method = self
                        .txs
                        .front()
                        .and_then(|tx| tx.request.as_ref())
                        .and_then(|r| r.method.as_deref());
                    let is_head = method.is_some_and(|m| m.eq_ignore_ascii_case("HEAD"));
                    let is_connect = method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
                    let tunnel = is_connect && (200..300).contains(&status);
                    if is_connect {
                        self.connect_pending = false;
                    }
                    let no_body =
                        is_head || tunnel || status == 204 || status == 304 || status == 101;
                    self.resp_body = if no_body {
                        Body::None
                    } else {
                        match head.body_framing() {
                            Framing::Length(0) => Body::None,
                            Framing::Length(n) => Body::Length(n),
                            Framing::Chunked => Body::Chunked(Chunked::Size),
                            Framing::UntilClose => Body::UntilClose,
                        }
                    };
                    for _ in 0..repeated_names(&head.headers) {
                        out.push(anomaly("RESPONSE_HEADER_REPETITION", self.next_tx_id));
                    }
                    let framed = head.header("content-length").is_some()
                        || head.header("transfer-encoding").is_some();
                    if (status == 204 || status == 304) && framed {
                        out.push(anomaly("RESPONSE_BODY_UNEXPECTED", self.next_tx_id));
                    }
                    if let Some(tx) = self.txs.front_mut() {
                        tx.heads_heap += head.heap_size();
                        tx.response = Some(head);
                    }
                    if self.resp_body == Body::None {
                        self.log_front(out);
                        if tunnel {
                            // The proxy opened the tunnel: the rest is another protocol.
                            while at < data.len() && (data[at] == b'\r' || data[at] == b'\n') {
                                at += 1;
                            }
                            return ParseResult::Upgrade { consumed: at };
                        }
                        if status == 101 {
                            // Protocol switch: what follows is not HTTP/1.
                            return ParseResult::Error;
                        }
                    } else {
                        self.resp_open = true;
                    }
                }
            }
        }
        ParseResult::Consumed
    }
}

impl ProtocolState for Http1State {
    fn heap_bytes(&self) -> usize {
        self.txs.heap_size()
    }
    fn parse(&mut self, dir: Direction, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        match dir {
            Direction::ToServer => self.parse_requests(data, out),
            Direction::ToClient => self.parse_responses(data, out),
        }
    }

    fn gap(&mut self, dir: Direction, len: u64) -> bool {
        // A gap inside a body of known length is skipped; anywhere else parsing stops.
        let body = match dir {
            Direction::ToServer => &mut self.req_body,
            Direction::ToClient => &mut self.resp_body,
        };
        match body {
            // A gap reaching the end of the body completes it (the next bytes log it and
            // must start a new message, or parsing stops there).
            Body::Length(left) => {
                *left = left.saturating_sub(len);
                true
            }
            Body::UntilClose => true,
            _ => false,
        }
    }

    fn close(&mut self, out: &mut Vec<AppEvent>) {
        while !self.txs.is_empty() {
            self.log_front(out);
        }
    }
}

/// Names (ignoring case) that occur more than once among `headers`: libhtp, and so Suricata,
/// reports each such name once as a `*_HEADER_REPETITION` event.
fn repeated_names(headers: &[(String, String)]) -> usize {
    let mut n = 0;
    for (i, (name, _)) in headers.iter().enumerate() {
        let seen_before = headers[..i]
            .iter()
            .any(|(o, _)| o.eq_ignore_ascii_case(name));
        if !seen_before
            && headers[i + 1..]
                .iter()
                .any(|(o, _)| o.eq_ignore_ascii_case(name))
        {
            n += 1;
        }
    }
    n
}

/// An application-layer `anomaly` record of transaction `tx_id`, named as Suricata names
/// libhtp's events.
fn anomaly(event: &str, tx_id: u64) -> AppEvent {
    let mut body = Map::new();
    body.insert("app_proto".into(), Value::String("http".into()));
    body.insert("type".into(), Value::String("applayer".into()));
    body.insert("event".into(), Value::String(event.into()));
    body.insert("layer".into(), Value::String("proto_parser".into()));
    AppEvent {
        event_type: "anomaly",
        direction: None,
        body,
        tx_id: Some(tx_id),
        http: None,
    }
}

fn tx_event(tx: Tx, tx_id: u64) -> AppEvent {
    let mut o = Map::new();
    if let Some(req) = &tx.request {
        let uri = req.uri.clone().unwrap_or_default();
        let host = req.header("host").map(str::to_string).or_else(|| {
            // absolute-form target: http://host[:port]/path
            uri.split_once("://")
                .map(|(_, rest)| rest.split('/').next().unwrap_or("").to_string())
        });
        if let Some(host) = host {
            let (name, port) = split_host_port(&host);
            o.insert("hostname".into(), Value::String(name.to_ascii_lowercase()));
            if let Some(p) = port {
                o.insert("http_port".into(), json!(p));
            }
        }
        o.insert("url".into(), Value::String(uri));
        if let Some(ua) = req.header("user-agent") {
            o.insert("http_user_agent".into(), Value::String(ua.into()));
        }
        if let Some(r) = req.header("referer") {
            o.insert("http_refer".into(), Value::String(r.into()));
        }
        if let Some(x) = req.header("x-forwarded-for") {
            o.insert("xff".into(), Value::String(x.into()));
        }
        if let Some(m) = &req.method {
            o.insert("http_method".into(), Value::String(m.clone()));
        }
        if !req.protocol.is_empty() {
            o.insert("protocol".into(), Value::String(req.protocol.clone()));
        }
        o.insert("request_body_len".into(), json!(tx.request_body));
    }
    if let Some(resp) = &tx.response {
        if let Some(ct) = resp.header("content-type") {
            let ct = ct.split(';').next().unwrap_or("").trim();
            o.insert("http_content_type".into(), Value::String(ct.into()));
        }
        if let Some(s) = resp.status {
            o.insert("status".into(), json!(s));
        } else if let Some(text) = &resp.status_text {
            o.insert("status_string".into(), Value::String(text.clone()));
        }
        if let Some(loc) = resp.header("location") {
            o.insert("redirect".into(), Value::String(loc.into()));
        }
        if tx.request.is_none() {
            o.insert("protocol".into(), Value::String(resp.protocol.clone()));
        }
        o.insert("response_body_len".into(), json!(tx.response_body));
    }
    o.insert("length".into(), json!(tx.response_body));
    AppEvent {
        event_type: "http",
        direction: None,
        body: o,
        tx_id: Some(tx_id),
        http: Some(Box::new(crate::rules::HttpRaw {
            request: tx.request,
            response: tx.response,
            request_body: tx.request_data,
            response_body: tx.response_data,
        })),
    }
}

fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if host.starts_with('[') {
        // [v6]:port — the brackets stay part of the name, as in the URI authority.
        if let Some(close) = host.find("]:") {
            return (&host[..=close], host[close + 2..].parse().ok());
        }
        return (host, None);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_transactions_are_counted_until_logged() {
        let mut s = Http1Protocol.new_state(Transport::Tcp);
        let mut out = Vec::new();
        assert_eq!(s.heap_bytes(), 0);
        let req = b"POST /upload HTTP/1.1\r\nHost: example.org\r\nContent-Length: 5000\r\n\r\n";
        s.parse(Direction::ToServer, req, &mut out);
        let head = s.heap_bytes();
        assert!(head > 40, "{head}");
        s.parse(Direction::ToServer, &[b'x'; 5000], &mut out);
        assert!(s.heap_bytes() >= head + 5000, "{}", s.heap_bytes());
        s.parse(
            Direction::ToClient,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            &mut out,
        );
        assert_eq!(out.len(), 1);
        // Logged: the transaction is gone, only the emptied queue's room is left.
        assert!(s.heap_bytes() < head, "{}", s.heap_bytes());
    }

    #[test]
    fn repeated_headers_and_unexpected_bodies_are_anomalies_of_their_transaction() {
        let mut s = Http1Protocol.new_state(Transport::Tcp);
        let mut out = Vec::new();
        let reqs = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\
                     GET /2 HTTP/1.1\r\nHost: a\r\nAccept: x\r\nhost: b\r\naccept: y\r\n\
                     Accept: z\r\n\r\n";
        s.parse(Direction::ToServer, reqs, &mut out);
        let events = |out: &[AppEvent]| -> Vec<(String, Option<u64>)> {
            out.iter()
                .filter(|e| e.event_type == "anomaly")
                .map(|e| (e.body["event"].as_str().unwrap_or("").to_string(), e.tx_id))
                .collect()
        };
        // Host and Accept repeat in the second request: one event per name.
        let want = |name: &str, tx| (name.to_string(), Some(tx));
        assert_eq!(
            events(&out),
            vec![
                want("REQUEST_HEADER_REPETITION", 1),
                want("REQUEST_HEADER_REPETITION", 1)
            ]
        );
        out.clear();
        let resps = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n\
                      HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
                      Content-Length: 0\r\n\r\n";
        s.parse(Direction::ToClient, resps, &mut out);
        assert_eq!(
            events(&out),
            vec![
                want("RESPONSE_BODY_UNEXPECTED", 0),
                want("RESPONSE_HEADER_REPETITION", 1)
            ]
        );
        let anomaly = out
            .iter()
            .find(|e| e.event_type == "anomaly")
            .map(|e| &e.body);
        assert_eq!(
            anomaly.map(|b| (
                b["app_proto"].clone(),
                b["type"].clone(),
                b["layer"].clone()
            )),
            Some((json!("http"), json!("applayer"), json!("proto_parser")))
        );
        assert_eq!(out.iter().filter(|e| e.event_type == "http").count(), 2);
    }

    #[test]
    fn pipelined_requests_pair_with_responses() {
        let mut s = Http1Protocol.new_state(Transport::Tcp);
        let mut out = Vec::new();
        let reqs = b"GET /1 HTTP/1.1\r\nHost: Example.ORG:8080\r\nUser-Agent: t\r\n\r\n\
                     POST /2 HTTP/1.1\r\nHost: example.org\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(
            s.parse(Direction::ToServer, reqs, &mut out),
            ParseResult::Consumed
        );
        let resps = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                      Content-Length: 5\r\n\r\nhello\
                      HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n\
                      2\r\nno\r\n0\r\n\r\n";
        assert_eq!(
            s.parse(Direction::ToClient, resps, &mut out),
            ParseResult::Consumed
        );
        assert_eq!(out.len(), 2);
        let first = &out[0].body;
        assert_eq!(first["hostname"], "example.org");
        assert_eq!(first["http_port"], 8080);
        assert_eq!(first["url"], "/1");
        assert_eq!(first["status"], 200);
        assert_eq!(first["http_content_type"], "text/html");
        assert_eq!(first["length"], 5);
        let second = &out[1].body;
        assert_eq!(second["http_method"], "POST");
        assert_eq!(second["request_body_len"], 3);
        assert_eq!(second["status"], 404);
        assert_eq!(out[1].tx_id, Some(1));
    }

    #[test]
    fn gap_ending_a_body_keeps_the_next_response() {
        // suricata-verify http-gap-whole-body: the last 14 body bytes of the first response
        // were never captured, the second response follows the gap.
        let mut s = Http1Protocol.new_state(Transport::Tcp);
        let mut out = Vec::new();
        let reqs = b"GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n";
        assert_eq!(
            s.parse(Direction::ToServer, reqs, &mut out),
            ParseResult::Consumed
        );
        let first = b"HTTP/1.0 200 OK\r\nContent-Length: 26\r\n\r\nAAAAAAAAAAAA";
        assert_eq!(
            s.parse(Direction::ToClient, first, &mut out),
            ParseResult::Consumed
        );
        assert!(s.gap(Direction::ToClient, 14));
        let second = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(
            s.parse(Direction::ToClient, second, &mut out),
            ParseResult::Consumed
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].body["url"], "/1");
        assert_eq!(out[1].body["url"], "/2");
        assert_eq!(out[1].body["status"], 200);
        // A gap running past the body: what follows must be a new response.
        let mut s = Http1Protocol.new_state(Transport::Tcp);
        out.clear();
        assert_eq!(
            s.parse(Direction::ToServer, reqs, &mut out),
            ParseResult::Consumed
        );
        assert_eq!(
            s.parse(Direction::ToClient, first, &mut out),
            ParseResult::Consumed
        );
        assert!(s.gap(Direction::ToClient, 16));
        assert_eq!(
            s.parse(Direction::ToClient, second, &mut out),
            ParseResult::Consumed
        );
        assert_eq!(out.len(), 2);
        let mut s = Http1Protocol.new_state(Transport::Tcp);
        assert_eq!(
            s.parse(Direction::ToServer, reqs, &mut out),
            ParseResult::Consumed
        );
        assert_eq!(
            s.parse(Direction::ToClient, first, &mut out),
            ParseResult::Consumed
        );
        assert!(s.gap(Direction::ToClient, 16));
        assert_eq!(
            s.parse(Direction::ToClient, b"AAAA\r\n\r\n", &mut out),
            ParseResult::Error
        );
        // A gap where a head is expected stops parsing.
        assert!(!s.gap(Direction::ToServer, 10));
    }

    #[test]
    fn connect_tunnel_hands_over_after_the_proxy_answer() {
        // suricata-verify http-connect-simple: CONNECT, a stray line end, then tunnel data.
        let mut s = Http1Protocol.new_state(Transport::Tcp);
        let mut out = Vec::new();
        let req = b"CONNECT abc:443 HTTP/1.1\r\nUser-Agent: Victor/1.0\r\n\r\n\n\x16\x03\x01";
        assert_eq!(
            s.parse(Direction::ToServer, req, &mut out),
            ParseResult::Incomplete {
                consumed: req.len() - 3,
                needed: 0
            }
        );
        let resp = b"HTTP/1.1 200 OK\r\nServer: VictorServer/1.0\r\n\r\n\n\x16\x03";
        assert_eq!(
            s.parse(Direction::ToClient, resp, &mut out),
            ParseResult::Upgrade {
                consumed: resp.len() - 2
            }
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body["http_method"], "CONNECT");
        assert_eq!(out[0].body["status"], 200);
        assert_eq!(out[0].body["length"], 0);
    }

    #[test]
    fn status_line_first_means_the_sender_is_the_server() {
        // suricata-verify alert-testmyids-midstream starts with the server's response.
        let p = &Http1Protocol;
        assert!(p.is_server_reply(Transport::Tcp, b"HTTP/1.1 200 OK\r\nDate: Wed", 80));
        assert!(!p.is_server_reply(Transport::Tcp, b"GET / HTTP/1.1\r\n", 54186));
        assert!(!p.is_server_reply(Transport::Tcp, b"HTTP", 80));
    }

    #[test]
    fn ipv6_literal_host_keeps_its_brackets() {
        // suricata-verify http-ipv6.
        assert_eq!(split_host_port("[::1]:8000"), ("[::1]", Some(8000)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("Example.org:81"), ("Example.org", Some(81)));
    }

    #[test]
    fn unanswered_request_is_logged_at_close() {
        let mut s = Http1Protocol.new_state(Transport::Tcp);
        let mut out = Vec::new();
        let r = s.parse(Direction::ToServer, b"GET / HTTP/1.0\r\n\r\n", &mut out);
        assert_eq!(r, ParseResult::Consumed);
        assert!(out.is_empty());
        s.close(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body["protocol"], "HTTP/1.0");
        assert!(out[0].body.get("status").is_none());
    }
}
