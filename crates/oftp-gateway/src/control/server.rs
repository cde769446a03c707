//! The daemon's side of the control channel.
//!
//! [`ControlSocket::bind`] first takes an exclusive lock on `<data_dir>/oftp.lock` (held until
//! the process ends, also by kill -9): a second daemon on the same data directory is refused,
//! naming the first one's pid. Holding the lock, any socket left at the path is a stale one of
//! a daemon that was killed, and is replaced. The socket is made mode 0600.
//! [`ControlSocket::serve`] answers requests until [`ControlServer::shutdown`], which removes
//! the socket.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::operations::{Operations, OpsError};
use super::protocol::{MAX_LINE, Op, Request, Response, VERSION};

/// The lock file in the data directory that keeps a second daemon out.
pub const LOCK_FILE: &str = "oftp.lock";

/// How long a connection may stay silent before the daemon closes it.
const IDLE: Duration = Duration::from_secs(300);

/// Why the control socket cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Another daemon holds the data directory.
    #[error(
        "another oftp serve{} uses the data directory {}; stop it first, or give this one \
         another data_dir",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        data_dir.display()
    )]
    AlreadyRunning {
        /// The data directory.
        data_dir: PathBuf,
        /// The other daemon's pid, as it wrote it.
        pid: Option<u32>,
    },
    /// Something that is not a socket is in the way.
    #[error(
        "{} exists and is not a socket; remove it or set [gateway.control] socket to another path",
        path.display()
    )]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The file system refused.
    #[error("control socket: {action} {}: {source}", path.display())]
    Io {
        /// What failed.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The bound control socket, with the data directory's lock.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    listener: UnixListener,
    lock: File,
}

/// The control channel answering; [`shutdown`](Self::shutdown) stops it.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stop: CancellationToken,
    tasks: TaskTracker,
    _lock: File,
}

impl ControlSocket {
    /// Locks `data_dir` for this daemon and binds the socket at `path` (replacing a stale
    /// one), mode 0600. Must run inside a tokio runtime.
    pub fn bind(data_dir: &Path, path: &Path) -> Result<Self, ControlError> {
        let io = |action, p: &Path| {
            let p = p.to_owned();
            move |source| ControlError::Io {
                action,
                path: p,
                source,
            }
        };
        let lock_path = data_dir.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io("cannot open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = lock.read_to_string(&mut text);
                return Err(ControlError::AlreadyRunning {
                    data_dir: data_dir.to_owned(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("cannot lock", &lock_path)(e)),
        }
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .map_err(io("cannot write", &lock_path))?;
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                // We hold the lock: the daemon that made it is gone.
                tracing::info!("replacing the stale control socket {}", path.display());
                std::fs::remove_file(path).map_err(io("cannot remove stale", path))?;
            }
            Ok(_) => {
                return Err(ControlError::NotASocket {
                    path: path.to_owned(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot inspect", path)(e)),
        }
        let listener = UnixListener::bind(path).map_err(io("cannot bind", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot restrict", path))?;
        Ok(Self {
            path: path.to_owned(),
            listener,
            lock,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers requests with `ops` until [`ControlServer::shutdown`].
    pub fn serve(self, ops: Operations) -> ControlServer {
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let accept = {
            let (stop, tasks) = (stop.clone(), tasks.clone());
            async move {
                loop {
                    let stream = tokio::select! {
                        _ = stop.cancelled() => break,
                        accepted = self.listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(e) => {
                                tracing::warn!("control socket: accept failed: {e}");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        },
                    };
                    tasks.spawn(connection(stream, ops.clone(), stop.clone()));
                }
            }
        };
        tasks.spawn(accept);
        tracing::info!("control socket on {}", self.path.display());
        ControlServer {
            path: self.path,
            stop,
            tasks,
            _lock: self.lock,
        }
    }
}

impl ControlServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops answering (connections are closed), waits for the tasks and removes the socket.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(
                "cannot remove the control socket {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Answers the request lines of one connection until it closes, stays idle for [`IDLE`], sends
/// a line longer than [`MAX_LINE`] or the server stops.
async fn connection(stream: UnixStream, ops: Operations, stop: CancellationToken) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
        let mut bounded = (&mut read).take(limit);
        let got = tokio::select! {
            _ = stop.cancelled() => return,
            got = tokio::time::timeout(IDLE, bounded.read_until(b'\n', &mut line)) => got,
        };
        match got {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        let too_long = !line.ends_with(b"\n") && line.len() >= MAX_LINE;
        let response = if too_long {
            Response::error(
                "bad_request",
                format!("request line longer than {MAX_LINE} bytes"),
            )
        } else {
            answer(&ops, &line).await
        };
        let mut out = match serde_json::to_vec(&response) {
            Ok(out) => out,
            Err(e) => {
                tracing::error!("control socket: cannot encode a response: {e}");
                return;
            }
        };
        out.push(b'\n');
        if write.write_all(&out).await.is_err() || too_long {
            return;
        }
    }
}

/// The response to one request line.
pub async fn answer(ops: &Operations, line: &[u8]) -> Response {
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Response::error("bad_request", format!("not a JSON request: {e}")),
    };
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        other => {
            return Response::error(
                "unsupported_version",
                format!(
                    "this daemon speaks control protocol version {VERSION}, the request {}; use \
                     the oftp command of the daemon's version",
                    match other {
                        Some(v) => format!("has version {v}"),
                        None => "has no version (\"v\")".to_owned(),
                    }
                ),
            );
        }
    }
    let request: Request = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return Response::error("bad_request", format!("not a request: {e}")),
    };
    tracing::debug!(?request.op, "control request");
    match request.op {
        Op::Status => reply(ops.status().await),
        Op::Transfers(q) => reply(ops.transfers(q).await),
        Op::TransferPage(q) => reply(ops.transfer_page(q).await),
        Op::TransferDetail { transfer } => match transfer.parse() {
            Ok(id) => reply(ops.transfer_detail(id).await),
            Err(e) => Response::from(&e),
        },
        Op::Transfer { id } => reply(ops.transfer(id).await),
        Op::Retry { id } => reply(ops.retry(id).await),
        Op::Cancel { id } => reply(ops.cancel(id).await),
        Op::Call { partner } => reply(ops.call(&partner)),
        Op::Alerts { all } => reply(ops.alerts(all).await),
        Op::Ack { id } => reply(ops.acknowledge(id).await),
    }
}

fn reply<T: Serialize>(result: Result<T, OpsError>) -> Response {
    match result.map(|r| serde_json::to_value(r)) {
        Ok(Ok(value)) => Response::ok(value),
        Ok(Err(e)) => Response::error("internal", format!("cannot encode the result: {e}")),
        Err(e) => Response::from(&e),
    }
}
