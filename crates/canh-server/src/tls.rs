//! TLS for the node's listeners: the server certificate (configured, or made once and kept under
//! `<data-dir>/tls/`), optional client certificates checked against a CA, the identity a client
//! certificate carries, and HTTPS serving of the axum router.

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a generated certificate and key are kept.
pub fn generated_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("server.crt"), dir.join("server.key"))
}

/// The configured certificate and key, or the generated pair under `<data-dir>/tls/` (made
/// on first use: self-signed, for `localhost`, the loopback addresses, this host's name and
/// `extra_ip` when it is a concrete address).
pub fn cert_and_key(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    extra_ip: Option<std::net::IpAddr>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(c), Some(k)) = (cert, key) {
        return Ok((c.to_path_buf(), k.to_path_buf()));
    }
    let (c, k) = generated_paths(data_dir);
    let present = |p: &Path| {
        p.try_exists()
            .with_context(|| format!("checking {}", p.display()))
    };
    if present(&c)? && present(&k)? {
        return Ok((c, k));
    }
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && !names.iter().any(|n| n == h) {
            names.push(h.to_owned());
        }
    }
    if let Some(ip) = extra_ip.filter(|ip| !ip.is_unspecified() && !ip.is_loopback()) {
        names.push(ip.to_string());
    }
    let ck = rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
    write_private(&k, ck.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&c, ck.cert.pem()).with_context(|| format!("writing {}", c.display()))?;
    info!(
        certificate = %c.display(),
        sha256 = %fingerprint(ck.cert.der()),
        "generated a self-signed TLS certificate; configure server.tls_cert/tls_key to use your own"
    );
    Ok((c, k))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// SHA-256 of a DER certificate, as colon-separated hex (what `openssl x509 -fingerprint
/// -sha256` prints).
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(der);
    d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("reading certificates from {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    ))
    .with_context(|| format!("reading private key from {}", path.display()))?
    .ok_or_else(|| anyhow::anyhow!("no private key in {}", path.display()))
}

/// A TLS acceptor for `cert`/`key`. With `client_ca`, a client certificate is asked for and,
/// when one is presented, it must chain to that CA (clients without one are still accepted and
/// identified by address). `alpn` lists the application protocols offered.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> anyhow::Result<TlsAcceptor> {
    let certs = read_certs(cert)?;
    let key = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .with_context(|| format!("client CA in {}", ca.display()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .with_context(|| format!("client CA in {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .context("tls certificate and key do not match")?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Names a verified client certificate carries: its subject common name(s) and DNS subject
/// alternative names, in that order.
pub fn client_identities(conn: &rustls::ServerConnection) -> Vec<String> {
    let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) else {
        return Vec::new();
    };
    identities_of(leaf.as_ref())
}

/// Common names and DNS names of a DER certificate (empty when it cannot be parsed).
pub fn identities_of(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut out: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                out.push((*d).to_owned());
            }
        }
    }
    out
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves. Each connection's handshake
/// runs in its own task, so a slow client cannot hold up the others; handlers see the client
/// address through `ConnectInfo<SocketAddr>` as with plain HTTP.
pub async fn serve_https(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::TokioIo;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "https accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "tls handshake timed out");
                    return;
                }
            };
            let svc = hyper_util::service::TowerToHyperService::new(
                app.layer(axum::Extension(ConnectInfo(peer))),
            );
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(peer = %peer, error = %e, "https connection ended");
            }
        });
    }
    drop(listener);
    // Give open requests a moment to finish.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = cert_and_key(dir.path(), None, None, None).unwrap();
        let first = std::fs::read(&c).unwrap();
        let (c2, _) = cert_and_key(dir.path(), None, None, None).unwrap();
        assert_eq!(first, std::fs::read(&c2).unwrap());
        let der = read_certs(&c).unwrap();
        let ids = identities_of(der[0].as_ref());
        assert!(ids.iter().any(|n| n == "localhost"), "{ids:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&k).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
        }
        assert!(acceptor(&c, &k, None, &[b"http/1.1"]).is_ok());
    }

    #[test]
    fn fingerprint_format() {
        let f = fingerprint(b"x");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.chars().all(|c| c == ':' || c.is_ascii_hexdigit()));
    }
}
