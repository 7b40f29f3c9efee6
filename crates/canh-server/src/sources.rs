//! Socket listeners: syslog over UDP, TCP and TLS; GELF over UDP and TCP.
//!
//! Acknowledgement: UDP has none. Over TCP and TLS, syslog has no application-level
//! acknowledgement either, so delivery is best effort in the protocol's sense; Canh reads the
//! next bytes of a connection only after the previous batch is in the WAL, so a slow disk
//! pushes back on the sender through TCP flow control instead of dropping events. Shippers
//! that need end-to-end acknowledgement use the HTTP APIs, which answer only after fsync.

use crate::pipeline::{Frame, Pipeline};
use canh_ingest::framing::{FrameResult, Framer, Lines, OctetCounting, gelf};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, info_span, warn};

/// Largest UDP datagram read.
const MAX_DATAGRAM: usize = 65_535;

/// Receives syslog datagrams on `sock` until the task is dropped.
pub async fn syslog_udp(sock: UdpSocket, pipeline: Arc<Pipeline>, batch_max: usize) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let mut frames = Vec::new();
        // Wait for one datagram, then take whatever else is already queued, up to a batch.
        match sock.recv_from(&mut buf).await {
            Ok((n, peer)) => frames.push(Frame::auto("syslog_udp", Some(peer), trim_nl(&buf[..n]))),
            Err(e) => {
                warn!(error = %e, "syslog udp receive failed");
                continue;
            }
        }
        while frames.len() < batch_max {
            match sock.try_recv_from(&mut buf) {
                Ok((n, peer)) => {
                    frames.push(Frame::auto("syslog_udp", Some(peer), trim_nl(&buf[..n])))
                }
                Err(_) => break,
            }
        }
        if let Err(e) = pipeline.ingest(frames).await {
            warn!(error = %e, "syslog udp batch not stored");
        }
    }
}

/// Accepts connections on `listener` and runs `handle` for each in its own task.
async fn accept_loop<F, Fut>(listener: TcpListener, source: &'static str, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, source, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let span = info_span!("connection", source, peer = %peer);
        tokio::spawn(handle(stream, peer).instrument(span));
    }
}

/// Accepts syslog TCP connections (LF framing or RFC 6587 octet counting, per frame).
pub async fn syslog_tcp(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    max_len: usize,
    batch_max: usize,
) {
    accept_loop(listener, "syslog_tcp", |stream, peer| {
        let p = Arc::clone(&pipeline);
        let framer = OctetCounting::new(max_len);
        read_stream(stream, peer, "syslog_tcp", framer, p, batch_max, None)
    })
    .await;
}

/// Accepts syslog over TLS (RFC 5425: octet counting; LF framing also read).
///
/// `clients` maps a verified client certificate's name (common name or DNS name) to the
/// agency its events belong to.
pub async fn syslog_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    pipeline: Arc<Pipeline>,
    max_len: usize,
    batch_max: usize,
    clients: Arc<std::collections::HashMap<String, Arc<str>>>,
) {
    accept_loop(listener, "syslog_tls", |stream, peer| {
        let acceptor = acceptor.clone();
        let p = Arc::clone(&pipeline);
        let clients = Arc::clone(&clients);
        async move {
            match acceptor.accept(stream).await {
                Ok(tls) => {
                    let ids = crate::tls::client_identities(tls.get_ref().1);
                    let agency = ids.iter().find_map(|n| clients.get(n).cloned());
                    if !ids.is_empty() {
                        debug!(peer = %peer, identities = ?ids, agency = ?agency, "tls client");
                    }
                    let framer = OctetCounting::new(max_len);
                    read_stream(tls, peer, "syslog_tls", framer, p, batch_max, agency).await;
                }
                Err(e) => {
                    debug!(error = %e, "tls handshake failed");
                    let reason = format!("tls handshake failed: {e}");
                    p.dead_letter("syslog_tls", Some(peer), &reason, Vec::new());
                }
            }
        }
    })
    .await;
}

/// Accepts GELF over TCP (NUL-delimited JSON, optionally newline-delimited).
pub async fn gelf_tcp(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    max_len: usize,
    batch_max: usize,
) {
    accept_loop(listener, "gelf_tcp", |stream, peer| {
        let p = Arc::clone(&pipeline);
        let framer = NulFramer {
            lines: Lines::new(max_len),
        };
        read_stream(stream, peer, "gelf_tcp", framer, p, batch_max, None)
    })
    .await;
}

/// Receives GELF datagrams: chunked or not, plain, zlib or gzip.
pub async fn gelf_udp(sock: UdpSocket, pipeline: Arc<Pipeline>, max_len: usize) {
    let parser = canh_ingest::parser_by_id("gelf");
    let mut assembler = gelf::ChunkAssembler::new(64 * 1024 * 1024, 10_000);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "gelf udp receive failed");
                continue;
            }
        };
        let now = Instant::now();
        assembler.expire(now);
        let whole = match assembler.push(&buf[..n], now) {
            Ok(Some(msg)) => msg,
            Ok(None) => continue,
            Err(e) => {
                pipeline.dead_letter("gelf_udp", Some(peer), &e.to_string(), buf[..n].to_vec());
                continue;
            }
        };
        let frame = match gelf::decompress(&whole, max_len) {
            Ok(plain) => Frame {
                source: "gelf_udp",
                peer: Some(peer),
                bytes: Ok(plain.into_owned()),
                parser,
                many: false,
                agency: None,
            },
            Err(e) => Frame {
                source: "gelf_udp",
                peer: Some(peer),
                bytes: Err(e.to_string()),
                parser,
                many: false,
                agency: None,
            },
        };
        if let Err(e) = pipeline.ingest(vec![frame]).await {
            warn!(error = %e, "gelf udp message not stored");
        }
    }
}

/// Reads a stream through `framer`, a batch at a time; the next read waits for the WAL.
async fn read_stream<S: AsyncRead + Unpin, F: Framer>(
    mut stream: S,
    peer: SocketAddr,
    source: &'static str,
    mut framer: F,
    pipeline: Arc<Pipeline>,
    batch_max: usize,
    agency: Option<Arc<str>>,
) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut out: Vec<FrameResult> = Vec::new();
    let parser = if source == "gelf_tcp" {
        canh_ingest::parser_by_id("gelf")
    } else {
        None
    };
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => {
                framer.finish(&mut out);
                0
            }
            Ok(n) => {
                framer.feed(&buf[..n], &mut out);
                n
            }
            Err(e) => {
                debug!(error = %e, "connection read failed");
                framer.finish(&mut out);
                0
            }
        };
        while !out.is_empty() {
            let take = out.len().min(batch_max);
            let frames: Vec<Frame> = out
                .drain(..take)
                .filter(|r| !matches!(r, Ok(b) if b.iter().all(u8::is_ascii_whitespace)))
                .map(|r| Frame {
                    source,
                    peer: Some(peer),
                    bytes: r.map_err(|e| e.to_string()),
                    parser,
                    many: false,
                    agency: agency.clone(),
                })
                .collect();
            if let Err(e) = pipeline.ingest(frames).await {
                warn!(error = %e, "batch not stored; closing connection so the sender retries");
                return;
            }
        }
        if n == 0 {
            return;
        }
    }
}

/// GELF TCP frames end with NUL; some senders use LF. Both are accepted.
struct NulFramer {
    lines: Lines,
}

impl Framer for NulFramer {
    fn feed(&mut self, data: &[u8], out: &mut Vec<FrameResult>) {
        let mapped: Vec<u8> = data
            .iter()
            .map(|&b| if b == 0 { b'\n' } else { b })
            .collect();
        self.lines.feed(&mapped, out);
    }
    fn finish(&mut self, out: &mut Vec<FrameResult>) {
        self.lines.finish(out);
    }
}

fn trim_nl(b: &[u8]) -> Vec<u8> {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\n' | b'\r' | 0) {
        end -= 1;
    }
    b[..end].to_vec()
}
