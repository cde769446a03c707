//! The commands' side of the control channel: one request, one response.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{ErrorView, Op, Request, Response};

/// How long a command waits for the daemon's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a command got no result from the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error(
        "the daemon is not running (nothing listens on {}); start it with `oftp serve` or \
         `systemctl start oftp`",
        path.display()
    )]
    NotRunning {
        /// The socket.
        path: PathBuf,
    },
    /// The socket exists but this user may not open it.
    #[error(
        "cannot open the control socket {}: permission denied; run the command as the daemon's \
         user (or root)",
        path.display()
    )]
    PermissionDenied {
        /// The socket.
        path: PathBuf,
    },
    /// Another I/O failure talking to the daemon.
    #[error("control socket {}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The daemon did not answer in time.
    #[error("the daemon did not answer on {} within {} s", path.display(), ANSWER_TIMEOUT.as_secs())]
    Timeout {
        /// The socket.
        path: PathBuf,
    },
    /// The answer is not one this command understands.
    #[error("the daemon's answer is not understood ({0}); is it the same oftp version?")]
    Protocol(String),
    /// The daemon refused the operation.
    #[error("{0}")]
    Refused(ErrorView),
}

/// Sends `op` to the daemon listening on `socket` and returns its result as `T`.
pub async fn request<T: DeserializeOwned>(socket: &Path, op: Op) -> Result<T, ClientError> {
    match tokio::time::timeout(ANSWER_TIMEOUT, exchange(socket, op)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout {
            path: socket.to_owned(),
        }),
    }
}

async fn exchange<T: DeserializeOwned>(socket: &Path, op: Op) -> Result<T, ClientError> {
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning {
                path: socket.to_owned(),
            }
        }
        std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            path: socket.to_owned(),
        },
        _ => ClientError::Io {
            path: socket.to_owned(),
            source,
        },
    };
    let stream = UnixStream::connect(socket).await.map_err(io)?;
    let (read, mut write) = stream.into_split();
    let mut line =
        serde_json::to_vec(&Request::new(op)).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push(b'\n');
    write.write_all(&line).await.map_err(io)?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(io)?;
    if answer.is_empty() {
        return Err(ClientError::Protocol(
            "the daemon closed the connection without an answer".into(),
        ));
    }
    let response: Response =
        serde_json::from_str(&answer).map_err(|e| ClientError::Protocol(e.to_string()))?;
    match (response.ok, response.result, response.error) {
        // `"result": null` (a call started) reads back as no result.
        (true, result, _) => serde_json::from_value(result.unwrap_or(serde_json::Value::Null))
            .map_err(|e| ClientError::Protocol(e.to_string())),
        (false, _, Some(error)) => Err(ClientError::Refused(error)),
        (false, _, None) => Err(ClientError::Protocol("a refusal without an error".into())),
    }
}
