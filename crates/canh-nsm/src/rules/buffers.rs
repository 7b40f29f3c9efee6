//! Inspection buffers (sticky buffers) and the application data they are read from.

use crate::proto::Direction;
use crate::proto::http1::parser::Head;
use serde_json::{Map, Value};

/// Which side of an HTTP transaction a side-dependent buffer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The request.
    Request,
    /// The response.
    Response,
}

/// A buffer a rule inspects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buf {
    /// Packet / stream payload.
    Payload,
    /// `http.uri` (path and query, without scheme and host).
    HttpUri,
    /// `http.uri.raw`.
    HttpUriRaw,
    /// `http.host` (lowercase, without port).
    HttpHost,
    /// `http.host.raw`.
    HttpHostRaw,
    /// `http.method`.
    HttpMethod,
    /// `http.user_agent`.
    HttpUserAgent,
    /// `http.referer`.
    HttpReferer,
    /// `http.accept`.
    HttpAccept,
    /// `http.accept_enc`.
    HttpAcceptEnc,
    /// `http.accept_lang`.
    HttpAcceptLang,
    /// `http.request_line`.
    HttpRequestLine,
    /// `http.request_body`.
    HttpRequestBody,
    /// `http.stat_code`.
    HttpStatCode,
    /// `http.stat_msg`.
    HttpStatMsg,
    /// `http.response_line`.
    HttpResponseLine,
    /// `http.server`.
    HttpServer,
    /// `http.location`.
    HttpLocation,
    /// `http.response_body` / `file.data` in responses.
    HttpResponseBody,
    /// `http.header` (`Name: value\r\n` per header).
    HttpHeader(Side),
    /// `http.header.raw`.
    HttpHeaderRaw(Side),
    /// `http.header_names`.
    HttpHeaderNames(Side),
    /// `http.cookie` (Cookie / Set-Cookie).
    HttpCookie(Side),
    /// `http.content_type`.
    HttpContentType(Side),
    /// `http.content_len`.
    HttpContentLen(Side),
    /// `http.connection`.
    HttpConnection(Side),
    /// `http.protocol`.
    HttpProtocol(Side),
    /// `http.start` (first line and headers).
    HttpStart(Side),
    /// `dns.query`.
    DnsQuery,
    /// `tls.sni`.
    TlsSni,
    /// `tls.cert_subject`.
    TlsCertSubject,
    /// `tls.cert_issuer`.
    TlsCertIssuer,
    /// `tls.cert_serial`.
    TlsCertSerial,
    /// `tls.cert_fingerprint`.
    TlsCertFingerprint,
    /// `ja3.hash`.
    Ja3Hash,
    /// `ja3.string`.
    Ja3String,
    /// `ja3s.hash`.
    Ja3sHash,
    /// `ja4.hash`.
    Ja4Hash,
}

/// Application protocol a buffer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppProto {
    /// HTTP/1.
    Http,
    /// DNS.
    Dns,
    /// TLS.
    Tls,
}

impl AppProto {
    /// EVE `app_proto` / `event_type` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Dns => "dns",
            Self::Tls => "tls",
        }
    }
}

impl Buf {
    /// The sticky-buffer keyword (or legacy content modifier) naming a buffer. `None` for
    /// keywords that are not buffers. Side-dependent buffers come back with `Side::Request`
    /// and are resolved once the rule's `flow` direction is known.
    pub fn from_keyword(k: &str) -> Option<Self> {
        let r = Side::Request;
        Some(match k {
            "http.uri" | "http_uri" => Self::HttpUri,
            "http.uri.raw" | "http_raw_uri" => Self::HttpUriRaw,
            "http.host" | "http_host" => Self::HttpHost,
            "http.host.raw" | "http_raw_host" => Self::HttpHostRaw,
            "http.method" | "http_method" => Self::HttpMethod,
            "http.user_agent" | "http_user_agent" => Self::HttpUserAgent,
            "http.referer" | "http_referer" => Self::HttpReferer,
            "http.accept" | "http_accept" => Self::HttpAccept,
            "http.accept_enc" | "http_accept_enc" => Self::HttpAcceptEnc,
            "http.accept_lang" | "http_accept_lang" => Self::HttpAcceptLang,
            "http.request_line" | "http_request_line" => Self::HttpRequestLine,
            "http.request_body" | "http_client_body" => Self::HttpRequestBody,
            "http.stat_code" | "http_stat_code" => Self::HttpStatCode,
            "http.stat_msg" | "http_stat_msg" => Self::HttpStatMsg,
            "http.response_line" | "http_response_line" => Self::HttpResponseLine,
            "http.server" | "http_server" => Self::HttpServer,
            "http.location" | "http_location" => Self::HttpLocation,
            "http.response_body" | "http_server_body" => Self::HttpResponseBody,
            "http.header" | "http_header" => Self::HttpHeader(r),
            "http.header.raw" | "http_raw_header" => Self::HttpHeaderRaw(r),
            "http.header_names" | "http_header_names" => Self::HttpHeaderNames(r),
            "http.cookie" | "http_cookie" => Self::HttpCookie(r),
            "http.content_type" | "http_content_type" => Self::HttpContentType(r),
            "http.content_len" | "http_content_len" => Self::HttpContentLen(r),
            "http.connection" | "http_connection" => Self::HttpConnection(r),
            "http.protocol" | "http_protocol" => Self::HttpProtocol(r),
            "http.start" | "http_start" => Self::HttpStart(r),
            "dns.query" | "dns_query" => Self::DnsQuery,
            "tls.sni" | "tls_sni" => Self::TlsSni,
            "tls.cert_subject" | "tls_cert_subject" => Self::TlsCertSubject,
            "tls.cert_issuer" | "tls_cert_issuer" => Self::TlsCertIssuer,
            "tls.cert_serial" | "tls_cert_serial" => Self::TlsCertSerial,
            "tls.cert_fingerprint" | "tls_cert_fingerprint" => Self::TlsCertFingerprint,
            "ja3.hash" | "ja3_hash" => Self::Ja3Hash,
            "ja3.string" | "ja3_string" => Self::Ja3String,
            "ja3s.hash" | "ja3s_hash" => Self::Ja3sHash,
            "ja4.hash" | "ja4_hash" => Self::Ja4Hash,
            _ => return None,
        })
    }

    /// Resolves a side-dependent buffer for a rule inspecting `dir`.
    pub fn with_side(self, dir: Direction) -> Self {
        let s = match dir {
            Direction::ToServer => Side::Request,
            Direction::ToClient => Side::Response,
        };
        match self {
            Self::HttpHeader(_) => Self::HttpHeader(s),
            Self::HttpHeaderRaw(_) => Self::HttpHeaderRaw(s),
            Self::HttpHeaderNames(_) => Self::HttpHeaderNames(s),
            Self::HttpCookie(_) => Self::HttpCookie(s),
            Self::HttpContentType(_) => Self::HttpContentType(s),
            Self::HttpContentLen(_) => Self::HttpContentLen(s),
            Self::HttpConnection(_) => Self::HttpConnection(s),
            Self::HttpProtocol(_) => Self::HttpProtocol(s),
            Self::HttpStart(_) => Self::HttpStart(s),
            other => other,
        }
    }

    /// The protocol the buffer belongs to (`None`: packet payload).
    pub fn app(self) -> Option<AppProto> {
        match self {
            Self::Payload => None,
            Self::DnsQuery => Some(AppProto::Dns),
            Self::TlsSni
            | Self::TlsCertSubject
            | Self::TlsCertIssuer
            | Self::TlsCertSerial
            | Self::TlsCertFingerprint
            | Self::Ja3Hash
            | Self::Ja3String
            | Self::Ja3sHash
            | Self::Ja4Hash => Some(AppProto::Tls),
            _ => Some(AppProto::Http),
        }
    }

    /// Direction of the data (`None`: either).
    pub fn direction(self) -> Option<Direction> {
        let side = |s: Side| match s {
            Side::Request => Direction::ToServer,
            Side::Response => Direction::ToClient,
        };
        match self {
            Self::Payload => None,
            Self::HttpStatCode
            | Self::HttpStatMsg
            | Self::HttpResponseLine
            | Self::HttpServer
            | Self::HttpLocation
            | Self::HttpResponseBody
            | Self::TlsCertSubject
            | Self::TlsCertIssuer
            | Self::TlsCertSerial
            | Self::TlsCertFingerprint
            | Self::Ja3sHash => Some(Direction::ToClient),
            Self::HttpHeader(s)
            | Self::HttpHeaderRaw(s)
            | Self::HttpHeaderNames(s)
            | Self::HttpCookie(s)
            | Self::HttpContentType(s)
            | Self::HttpContentLen(s)
            | Self::HttpConnection(s)
            | Self::HttpProtocol(s)
            | Self::HttpStart(s) => Some(side(s)),
            _ => Some(Direction::ToServer),
        }
    }
}

/// Raw HTTP transaction data kept for inspection (heads and the first body bytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpRaw {
    /// The request head.
    pub request: Option<Head>,
    /// The response head.
    pub response: Option<Head>,
    /// First bytes of the request body (as sent on the wire).
    pub request_body: Vec<u8>,
    /// First bytes of the response body (as sent on the wire).
    pub response_body: Vec<u8>,
}

/// Everything an application event offers to rules.
pub struct AppData<'a> {
    /// Protocol.
    pub proto: AppProto,
    /// The EVE body of the event.
    pub body: &'a Map<String, Value>,
    /// Raw HTTP data, if any.
    pub http: Option<&'a HttpRaw>,
    /// Direction the event was logged in.
    pub direction: Option<Direction>,
}

fn str_field<'a>(body: &'a Map<String, Value>, path: &[&str]) -> Option<&'a [u8]> {
    let mut cur = body.get(*path.first()?)?;
    for p in &path[1..] {
        cur = cur.get(*p)?;
    }
    cur.as_str().map(str::as_bytes)
}

fn head_side(raw: &HttpRaw, s: Side) -> Option<&Head> {
    match s {
        Side::Request => raw.request.as_ref(),
        Side::Response => raw.response.as_ref(),
    }
}

fn header<'a>(head: Option<&'a Head>, name: &str) -> Option<&'a [u8]> {
    head?.header(name).map(str::as_bytes)
}

/// Path and query of a request target (an absolute URI loses its scheme and authority).
fn uri_path(uri: &str) -> &str {
    match uri.split_once("://") {
        Some((scheme, rest)) if !scheme.contains('/') => rest.find('/').map_or("/", |i| &rest[i..]),
        _ => uri,
    }
}

/// Fills `out` with the content of `buf` for this event. Returns false if the event does not
/// have the buffer.
pub fn fill(buf: Buf, data: &AppData<'_>, out: &mut Vec<u8>) -> bool {
    out.clear();
    let b = data.body;
    let slice: Option<&[u8]> = match buf {
        Buf::Payload => None,
        Buf::DnsQuery => {
            if data.direction == Some(Direction::ToClient) {
                return false;
            }
            b.get("queries")
                .and_then(|q| q.get(0))
                .and_then(|q| q.get("rrname"))
                .or_else(|| b.get("rrname"))
                .and_then(Value::as_str)
                .map(str::as_bytes)
        }
        Buf::TlsSni => str_field(b, &["sni"]),
        Buf::TlsCertSubject => str_field(b, &["subject"]),
        Buf::TlsCertIssuer => str_field(b, &["issuerdn"]),
        Buf::TlsCertSerial => str_field(b, &["serial"]),
        Buf::TlsCertFingerprint => str_field(b, &["fingerprint"]),
        Buf::Ja3Hash => str_field(b, &["ja3", "hash"]),
        Buf::Ja3String => str_field(b, &["ja3", "string"]),
        Buf::Ja3sHash => str_field(b, &["ja3s", "hash"]),
        Buf::Ja4Hash => str_field(b, &["ja4"]),
        _ => return fill_http(buf, data, out),
    };
    match slice {
        Some(s) => {
            out.extend_from_slice(s);
            true
        }
        None => false,
    }
}

fn fill_http(buf: Buf, data: &AppData<'_>, out: &mut Vec<u8>) -> bool {
    let Some(raw) = data.http else {
        return false;
    };
    let req = raw.request.as_ref();
    let resp = raw.response.as_ref();
    let slice: Option<&[u8]> = match buf {
        Buf::HttpUri | Buf::HttpUriRaw => {
            let Some(uri) = req.and_then(|r| r.uri.as_deref()) else {
                return false;
            };
            let u = if buf == Buf::HttpUri {
                uri_path(uri)
            } else {
                uri
            };
            Some(u.as_bytes())
        }
        Buf::HttpHost => {
            let Some(h) = req.and_then(|r| r.header("host")) else {
                return false;
            };
            let name = match h.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') && p.bytes().all(|c| c.is_ascii_digit()) => n,
                _ => h,
            };
            out.extend(name.trim().bytes().map(|c| c.to_ascii_lowercase()));
            return true;
        }
        Buf::HttpHostRaw => header(req, "host"),
        Buf::HttpMethod => req.and_then(|r| r.method.as_deref()).map(str::as_bytes),
        Buf::HttpUserAgent => header(req, "user-agent"),
        Buf::HttpReferer => header(req, "referer"),
        Buf::HttpAccept => header(req, "accept"),
        Buf::HttpAcceptEnc => header(req, "accept-encoding"),
        Buf::HttpAcceptLang => header(req, "accept-language"),
        Buf::HttpServer => header(resp, "server"),
        Buf::HttpLocation => header(resp, "location"),
        Buf::HttpRequestBody => (!raw.request_body.is_empty()).then_some(&raw.request_body[..]),
        Buf::HttpResponseBody => (!raw.response_body.is_empty()).then_some(&raw.response_body[..]),
        Buf::HttpStatCode => {
            let Some(code) = resp.and_then(|r| r.status) else {
                return false;
            };
            out.extend_from_slice(code.to_string().as_bytes());
            return true;
        }
        Buf::HttpStatMsg => resp.and_then(|r| r.reason.as_deref()).map(str::as_bytes),
        Buf::HttpRequestLine => {
            let Some(r) = req else { return false };
            let line = format!(
                "{} {} {}",
                r.method.as_deref().unwrap_or(""),
                r.uri.as_deref().unwrap_or(""),
                r.protocol
            );
            out.extend_from_slice(line.trim_end().as_bytes());
            return true;
        }
        Buf::HttpResponseLine => {
            let Some(r) = resp else { return false };
            let line = format!(
                "{} {} {}",
                r.protocol,
                r.status.unwrap_or(0),
                r.reason.as_deref().unwrap_or("")
            );
            out.extend_from_slice(line.trim_end().as_bytes());
            return true;
        }
        Buf::HttpHeader(s) | Buf::HttpHeaderRaw(s) => {
            let Some(h) = head_side(raw, s) else {
                return false;
            };
            for (n, v) in &h.headers {
                if buf == Buf::HttpHeader(s)
                    && (n.eq_ignore_ascii_case("cookie") || n.eq_ignore_ascii_case("set-cookie"))
                {
                    continue;
                }
                out.extend_from_slice(n.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(v.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            return true;
        }
        Buf::HttpHeaderNames(s) => {
            let Some(h) = head_side(raw, s) else {
                return false;
            };
            out.extend_from_slice(b"\r\n");
            for (n, _) in &h.headers {
                out.extend_from_slice(n.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            return true;
        }
        Buf::HttpStart(s) => {
            let Some(h) = head_side(raw, s) else {
                return false;
            };
            let line = match s {
                Side::Request => format!(
                    "{} {} {}",
                    h.method.as_deref().unwrap_or(""),
                    h.uri.as_deref().unwrap_or(""),
                    h.protocol
                ),
                Side::Response => format!(
                    "{} {} {}",
                    h.protocol,
                    h.status.unwrap_or(0),
                    h.reason.as_deref().unwrap_or("")
                ),
            };
            out.extend_from_slice(line.trim_end().as_bytes());
            out.extend_from_slice(b"\r\n");
            for (n, v) in &h.headers {
                out.extend_from_slice(n.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(v.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            return true;
        }
        Buf::HttpCookie(s) => {
            let name = match s {
                Side::Request => "cookie",
                Side::Response => "set-cookie",
            };
            header(head_side(raw, s), name)
        }
        Buf::HttpContentType(s) => header(head_side(raw, s), "content-type"),
        Buf::HttpContentLen(s) => header(head_side(raw, s), "content-length"),
        Buf::HttpConnection(s) => header(head_side(raw, s), "connection"),
        Buf::HttpProtocol(s) => head_side(raw, s).map(|h| h.protocol.as_bytes()),
        _ => None,
    };
    match slice {
        Some(s) => {
            out.extend_from_slice(s);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uri_loses_authority() {
        assert_eq!(uri_path("http://a.b:80/x?y"), "/x?y");
        assert_eq!(uri_path("http://a.b"), "/");
        assert_eq!(uri_path("/p?q=http://x/"), "/p?q=http://x/");
    }

    #[test]
    fn side_resolution() {
        let b = Buf::from_keyword("http.header").unwrap();
        assert_eq!(
            b.with_side(Direction::ToClient),
            Buf::HttpHeader(Side::Response)
        );
        assert_eq!(Buf::HttpStatCode.direction(), Some(Direction::ToClient));
        assert_eq!(Buf::DnsQuery.app(), Some(AppProto::Dns));
    }
}
