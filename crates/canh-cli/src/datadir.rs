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

/// Records the HTTP address of the server running on this data directory.
pub(crate) fn write_server_address(
    data_dir: &Path,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let path = address_file(data_dir);
    std::fs::write(&path, format!("{addr}\n"))
        .with_context(|| format!("writing {}", path.display()))
}

/// The HTTP base URL of the server running on this data directory.
pub(crate) fn server_url(data_dir: &Path) -> anyhow::Result<String> {
    let path = address_file(data_dir);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "the data directory {} is in use, but {} cannot be read",
            data_dir.display(),
            path.display()
        )
    })?;
    let addr: std::net::SocketAddr = text
        .trim()
        .parse()
        .with_context(|| format!("{} holds no address", path.display()))?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let host = if addr.is_ipv6() && host != "127.0.0.1" {
        format!("[{host}]")
    } else {
        host
    };
    Ok(format!("http://{host}:{}", addr.port()))
}
