//! Connection handling for the enrolment and agent endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use canh_core::wire::{
    self, Ack, AgentMessage, EnrolRequest, EnrolResponse, FetchRelease, ReleaseData, RenewResponse,
    ServerMessage, UpgradeAck, Welcome, WireError,
};
use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::{AgentEventSink, AgentRecord, AgentsError, Inner, lock, pki, random_hex};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

fn refusal(code: &str, message: impl Into<String>) -> WireError {
    WireError {
        code: code.to_owned(),
        message: message.into(),
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, msg: &ServerMessage) -> std::io::Result<()> {
    let frame = wire::encode_frame(msg)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads one agent frame; `Ok(None)` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<AgentMessage>> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = wire::decode_frame_len(header)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    wire::decode_body(&body)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

pub(super) async fn serve(
    inner: Arc<Inner>,
    enrol: TcpListener,
    agent: TcpListener,
    sink: Arc<dyn AgentEventSink>,
) -> Result<(), AgentsError> {
    let (enrol_cfg, agent_cfg) = inner.ca.server_configs(&inner.cfg.server_names)?;
    let agent_port = agent
        .local_addr()
        .map_err(super::io("agent endpoint address"))?
        .port();
    let enrol_acceptor = TlsAcceptor::from(enrol_cfg);
    let agent_acceptor = TlsAcceptor::from(agent_cfg);
    info!(
        enrol = ?enrol.local_addr().ok(),
        agent = ?agent.local_addr().ok(),
        ca_pin = %inner.ca.pin(),
        "agent endpoints listening"
    );
    // Dropping the set (when this future is dropped) aborts every session.
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = enrol.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let (inner, acceptor) = (inner.clone(), enrol_acceptor.clone());
                    tasks.spawn(async move { enrol_conn(inner, acceptor, tcp, peer, agent_port).await });
                }
                Err(e) => accept_failed(e).await,
            },
            accepted = agent.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let (inner, acceptor, sink) = (inner.clone(), agent_acceptor.clone(), sink.clone());
                    tasks.spawn(async move { agent_conn(inner, acceptor, tcp, peer, sink).await });
                }
                Err(e) => accept_failed(e).await,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

async fn accept_failed(e: std::io::Error) {
    warn!(error = %e, "accept failed");
    // Out of descriptors and similar: back off briefly instead of spinning.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn enrol_conn(
    inner: Arc<Inner>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    agent_port: u16,
) {
    let work = async {
        let mut tls = acceptor.accept(tcp).await?;
        let reply = match read_frame(&mut tls).await? {
            Some(AgentMessage::Enrol(req)) => match enrol(&inner, &req, agent_port) {
                Ok(resp) => {
                    info!(%peer, agent_id = %resp.agent_id, hostname = %req.hostname, "agent enrolled");
                    ServerMessage::Enrolled(resp)
                }
                Err(err) => {
                    warn!(%peer, code = %err.code, "enrolment refused");
                    ServerMessage::Error(err)
                }
            },
            _ => ServerMessage::Error(refusal("protocol", "expected an enrol request")),
        };
        write_frame(&mut tls, &reply).await?;
        tls.shutdown().await
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, work).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(%peer, error = %e, "enrolment connection failed"),
        Err(_) => debug!(%peer, "enrolment connection timed out"),
    }
}

fn enrol(inner: &Inner, req: &EnrolRequest, agent_port: u16) -> Result<EnrolResponse, WireError> {
    if req.protocol > wire::PROTOCOL_VERSION {
        return Err(refusal(
            "protocol",
            format!("unsupported protocol {}", req.protocol),
        ));
    }
    let hash = hex::encode(Sha256::digest(req.token.as_bytes()));
    let now = Utc::now();
    let mut reg = lock(&inner.registry);
    let Some(idx) = reg
        .tokens
        .iter()
        .position(|t| t.sha256 == hash && t.used_at.is_none() && t.expires_at > now)
    else {
        return Err(refusal(
            "bad_token",
            "enrolment token is unknown, used or expired",
        ));
    };
    let agent_id = random_hex(16).map_err(|e| refusal("internal", e.to_string()))?;
    let issued = inner
        .ca
        .sign_agent(&agent_id, &req.csr_pem, inner.cfg.cert_days)
        .map_err(|e| refusal("bad_csr", e.to_string()))?;
    reg.tokens[idx].used_at = Some(now);
    let agency = reg.tokens[idx].agency.clone();
    reg.agents.insert(
        agent_id.clone(),
        AgentRecord {
            hostname: req.hostname.clone(),
            os: req.os.clone(),
            version: req.version.clone(),
            enrolled_at: now,
            revoked_at: None,
            cert_fingerprints: vec![issued.fingerprint],
            agency,
        },
    );
    inner
        .save(&reg)
        .map_err(|e| refusal("internal", e.to_string()))?;
    Ok(EnrolResponse {
        agent_id,
        cert_pem: issued.pem,
        ca_pem: inner.ca.pem.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        agent_port,
        command_key: hex::encode(inner.command_key.verifying_key().to_bytes()),
    })
}

/// Agent id for a client certificate, or why it is refused.
fn identify(inner: &Inner, cert_der: &[u8]) -> Result<String, WireError> {
    let fp = pki::fingerprint(cert_der);
    let reg = lock(&inner.registry);
    let Some((id, rec)) = reg
        .agents
        .iter()
        .find(|(_, r)| r.cert_fingerprints.contains(&fp))
    else {
        return Err(refusal(
            "unknown_agent",
            "certificate belongs to no enrolled agent",
        ));
    };
    if rec.revoked_at.is_some() {
        return Err(refusal("revoked", "agent has been revoked"));
    }
    Ok(id.clone())
}

fn is_revoked(inner: &Inner, agent_id: &str) -> bool {
    lock(&inner.registry)
        .agents
        .get(agent_id)
        .is_none_or(|r| r.revoked_at.is_some())
}

async fn agent_conn(
    inner: Arc<Inner>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    sink: Arc<dyn AgentEventSink>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "agent TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    let (mut rd, mut wr) = tokio::io::split(tls);
    let identified = match cert {
        Some(der) => identify(&inner, &der),
        None => Err(refusal("unknown_agent", "no client certificate")),
    };
    let agent_id = match identified {
        Ok(id) => id,
        Err(err) => {
            warn!(%peer, code = %err.code, "agent session refused");
            let _ = write_frame(&mut wr, &ServerMessage::Error(err)).await;
            let _ = wr.shutdown().await;
            return;
        }
    };
    let (tx, rx) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let msg = read_frame(&mut rd).await;
            let stop = !matches!(msg, Ok(Some(_)));
            if tx.send(msg).await.is_err() || stop {
                return;
            }
        }
    });
    let outcome = session(&inner, &agent_id, &mut wr, rx, sink.as_ref()).await;
    reader.abort();
    match outcome {
        Ok(()) => debug!(%peer, %agent_id, "agent disconnected"),
        Err(SessionEnd::Refused(err)) => {
            warn!(%peer, %agent_id, code = %err.code, "agent session closed");
            let _ = write_frame(&mut wr, &ServerMessage::Error(err)).await;
        }
        Err(SessionEnd::Io(e)) => debug!(%peer, %agent_id, error = %e, "agent session failed"),
    }
    let _ = wr.shutdown().await;
}

enum SessionEnd {
    Refused(WireError),
    Io(std::io::Error),
}

impl From<std::io::Error> for SessionEnd {
    fn from(e: std::io::Error) -> Self {
        SessionEnd::Io(e)
    }
}

async fn session<W: AsyncWrite + Unpin>(
    inner: &Inner,
    agent_id: &str,
    wr: &mut W,
    mut rx: mpsc::Receiver<std::io::Result<Option<AgentMessage>>>,
    sink: &dyn AgentEventSink,
) -> Result<(), SessionEnd> {
    match rx.recv().await {
        Some(Ok(Some(AgentMessage::Hello(h)))) if h.agent_id == agent_id => {
            if h.protocol > wire::PROTOCOL_VERSION {
                return Err(SessionEnd::Refused(refusal(
                    "protocol",
                    "unsupported protocol",
                )));
            }
        }
        Some(Ok(Some(AgentMessage::FetchRelease(f)))) => {
            return serve_release(inner, agent_id, wr, &f).await;
        }
        Some(Err(e)) => return Err(e.into()),
        None | Some(Ok(None)) => return Ok(()),
        Some(Ok(Some(_))) => {
            return Err(SessionEnd::Refused(refusal(
                "protocol",
                "expected hello for this agent",
            )));
        }
    }
    let cursor = inner.cursor(agent_id);
    let acked_seq = *cursor.lock().await;
    let welcome = Welcome {
        acked_seq,
        heartbeat_secs: inner.cfg.heartbeat_secs,
    };
    write_frame(wr, &ServerMessage::Welcome(welcome)).await?;
    info!(%agent_id, acked_seq, "agent session established");
    // Commands stay queued (on disk) until their result arrives: each session sends every
    // pending one once, and the agent refuses a command id it has already run.
    let mut sent = std::collections::HashSet::new();
    loop {
        let wake = inner.command_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        for (id, cmd) in inner.pending_commands(agent_id, &sent) {
            sent.insert(id);
            write_frame(wr, &ServerMessage::Command(cmd)).await?;
        }
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            () = &mut wake => continue,
        };
        let msg = match msg {
            Some(Ok(Some(m))) => m,
            Some(Err(e)) => return Err(e.into()),
            None | Some(Ok(None)) => return Ok(()),
        };
        if is_revoked(inner, agent_id) {
            return Err(SessionEnd::Refused(refusal(
                "revoked",
                "agent has been revoked",
            )));
        }
        match msg {
            AgentMessage::Events(batch) => {
                let up_to = accept_batch(inner, agent_id, &cursor, batch, sink).await?;
                write_frame(wr, &ServerMessage::Ack(Ack { up_to })).await?;
            }
            AgentMessage::Heartbeat(hb) => {
                debug!(%agent_id, queue = hb.queue_depth, "heartbeat");
                lock(&inner.heartbeats).insert(agent_id.to_owned(), (Utc::now(), hb));
            }
            AgentMessage::Renew(req) => {
                let issued = inner
                    .ca
                    .sign_agent(agent_id, &req.csr_pem, inner.cfg.cert_days)
                    .map_err(|e| SessionEnd::Refused(refusal("bad_csr", e.to_string())))?;
                {
                    let mut reg = lock(&inner.registry);
                    if let Some(rec) = reg.agents.get_mut(agent_id) {
                        rec.cert_fingerprints.push(issued.fingerprint.clone());
                    }
                    inner
                        .save(&reg)
                        .map_err(|e| SessionEnd::Refused(refusal("internal", e.to_string())))?;
                }
                info!(%agent_id, not_after = %issued.not_after, "agent certificate renewed");
                let resp = RenewResponse {
                    cert_pem: issued.pem,
                    not_before: issued.not_before,
                    not_after: issued.not_after,
                };
                write_frame(wr, &ServerMessage::Renewed(resp)).await?;
            }
            AgentMessage::CommandResult(result) => {
                info!(%agent_id, id = %result.id, ok = result.ok, "command result");
                inner.command_answered(agent_id, result);
            }
            AgentMessage::UpgradeReport(report) => {
                let ack = UpgradeAck {
                    version: report.version.clone(),
                    outcome: report.outcome,
                };
                // Acknowledged only once stored: the agent keeps its marker until then.
                inner
                    .record_upgrade(agent_id, report)
                    .map_err(|e| SessionEnd::Refused(refusal("internal", e.to_string())))?;
                write_frame(wr, &ServerMessage::UpgradeAck(ack)).await?;
            }
            AgentMessage::Enrol(_) | AgentMessage::Hello(_) | AgentMessage::FetchRelease(_) => {
                return Err(SessionEnd::Refused(refusal(
                    "protocol",
                    "unexpected message",
                )));
            }
        }
    }
}

/// Answers a download connection: the header, then the release's bytes, then the end.
async fn serve_release<W: AsyncWrite + Unpin>(
    inner: &Inner,
    agent_id: &str,
    wr: &mut W,
    req: &FetchRelease,
) -> Result<(), SessionEnd> {
    let Some((path, manifest)) = inner.release_by_sha(&req.sha256) else {
        return Err(SessionEnd::Refused(refusal(
            "not_found",
            "no published release has this SHA-256",
        )));
    };
    let mut file = tokio::fs::File::open(&path).await?;
    let size = file.metadata().await?.len();
    if size != manifest.size {
        warn!(path = %path.display(), "release binary does not match its manifest");
        return Err(SessionEnd::Refused(refusal(
            "internal",
            "release binary does not match its manifest",
        )));
    }
    let head = ReleaseData {
        sha256: manifest.sha256.clone(),
        size,
    };
    write_frame(wr, &ServerMessage::ReleaseData(head)).await?;
    let sent = tokio::io::copy(&mut file, wr).await?;
    wr.flush().await?;
    info!(%agent_id, version = %manifest.version, bytes = sent, "release sent to agent");
    Ok(())
}

/// Delivers the new part of a batch and returns the sequence number to acknowledge.
async fn accept_batch(
    inner: &Inner,
    agent_id: &str,
    cursor: &tokio::sync::Mutex<u64>,
    batch: wire::EventBatch,
    sink: &dyn AgentEventSink,
) -> Result<u64, SessionEnd> {
    if batch.events.len() > inner.cfg.max_batch_events {
        return Err(SessionEnd::Refused(refusal("protocol", "batch too large")));
    }
    // An agent enrolled for an agency speaks for that agency only.
    let agency = lock(&inner.registry)
        .agents
        .get(agent_id)
        .and_then(|r| r.agency.clone());
    // Held across delivery: two sessions of one agent cannot interleave deliveries.
    let mut held = cursor.lock().await;
    let mut fresh = Vec::with_capacity(batch.events.len());
    let mut last = 0u64;
    for se in batch.events {
        if se.seq <= last {
            return Err(SessionEnd::Refused(refusal(
                "protocol",
                "sequence numbers must increase",
            )));
        }
        last = se.seq;
        if se.seq <= *held {
            continue;
        }
        let mut ev = se.event;
        ev.set("agent.id", agent_id);
        ev.set("canh.agent.seq", se.seq);
        if let Some(a) = &agency {
            ev.set("organization.id", a.as_str());
        }
        fresh.push(ev);
    }
    if fresh.is_empty() {
        return Ok(*held);
    }
    let count = fresh.len();
    let inventory: Vec<canh_core::Event> = fresh
        .iter()
        .filter(|e| super::hosts::is_inventory(e))
        .cloned()
        .collect();
    if let Err(e) = sink.deliver(agent_id, fresh).await {
        warn!(%agent_id, error = %e, "event sink failed; batch not acknowledged");
        return Err(SessionEnd::Refused(refusal(
            "unavailable",
            "server could not store events",
        )));
    }
    super::write_atomic(
        &inner.cursor_path(agent_id),
        last.to_string().as_bytes(),
        0o644,
    )
    .map_err(|e| SessionEnd::Refused(refusal("internal", e.to_string())))?;
    *held = last;
    if !inventory.is_empty() {
        inner.observe_inventory(agent_id, &inventory);
    }
    debug!(%agent_id, count, up_to = last, "batch stored");
    Ok(last)
}
