//! The data directory: an exclusive lock for the process that writes it, and the address file
//! a running server leaves so that other commands can reach it.

use anyhow::Context as _;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Holds the data directory's lock while alive.
pub(crate) struct DataDirLock {
    _file: File,
}

/// What `lock` found.
pub(crate) enum Locked {
    /// This process holds the lock now.
    Mine(DataDirLock),
    /// Another process (normally a running server) holds it.
    Busy,
}

/// Tries to take the data directory's exclusive lock, creating the directory when missing.
pub(crate) fn lock(data_dir: &Path) -> anyhow::Result<Locked> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let path = data_dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Locked::Mine(DataDirLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(Locked::Busy),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

fn address_file(data_dir: &Path) -> PathBuf {
    data_dir.join("server.addr")
}

/// Records the HTTP address (and scheme) of the server running on this data directory.
pub(crate) fn write_server_address(
    data_dir: &Path,
    addr: std::net::SocketAddr,
    tls: bool,
) -> anyhow::Result<()> {
    let path = address_file(data_dir);
    let scheme = if tls { "https" } else { "http" };
    // Written aside and renamed, so that a reader never sees the file empty or half written.
    let tmp = data_dir.join("server.addr.tmp");
    std::fs::write(&tmp, format!("{scheme}://{addr}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// How to reach the server running on this data directory.
pub(crate) struct Remote {
    /// Base URL, e.g. `https://127.0.0.1:8514`.
    pub base: String,
    /// An HTTP client that trusts the server's certificate when it is the generated one.
    pub agent: ureq::Agent,
    /// The local command line's bearer token.
    pub token: String,
}

/// The running server's base URL, client and token.
pub(crate) fn remote(data_dir: &Path) -> anyhow::Result<Remote> {
    let path = address_file(data_dir);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "the data directory {} is in use, but {} cannot be read",
            data_dir.display(),
            path.display()
        )
    })?;
    let text = text.trim();
    let (tls, addr) = match text.split_once("://") {
        Some(("https", a)) => (true, a),
        Some(("http", a)) => (false, a),
        Some(_) => anyhow::bail!("{} holds no address", path.display()),
        None => (false, text),
    };
    let addr: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("{} holds no address", path.display()))?;
    let host = if addr.ip().is_unspecified() {
        if addr.is_ipv6() {
            "[::1]".to_owned()
        } else {
            "127.0.0.1".to_owned()
        }
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let scheme = if tls { "https" } else { "http" };
    let base = format!("{scheme}://{host}:{}", addr.port());
    let mut config = ureq::Agent::config_builder().http_status_as_error(false);
    if tls {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        // The generated certificate; a configured one is signed by a CA the system trusts.
        let generated = data_dir.join("tls").join("server.crt");
        if let Ok(pem) = std::fs::read(&generated) {
            let cert = Certificate::from_pem(&pem)
                .with_context(|| format!("reading {}", generated.display()))?;
            config = config.tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::new_with_certs(&[cert]))
                    .build(),
            );
        }
    }
    let token_path = data_dir.join("server.token");
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("reading {}", token_path.display()))?
        .trim()
        .to_owned();
    Ok(Remote {
        base,
        agent: config.build().new_agent(),
        token,
    })
}
