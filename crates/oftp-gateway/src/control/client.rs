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

impl ClientError {
    /// What a failure to reach or talk to the socket at `path` means to the operator.
    fn of_io(path: &Path, source: std::io::Error) -> Self {
        let path = path.to_owned();
        match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                Self::NotRunning { path }
            }
            std::io::ErrorKind::PermissionDenied => Self::PermissionDenied { path },
            _ => Self::Io { path, source },
        }
    }
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
    let io = |source| ClientError::of_io(socket, source);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn a_socket_we_may_not_open_says_whom_to_run_as_and_a_missing_one_that_the_daemon_is_down() {
        let path = Path::new("/var/lib/oftp/oftp.sock");
        let denied = ClientError::of_io(path, Error::from(ErrorKind::PermissionDenied));
        assert_eq!(
            denied.to_string(),
            "cannot open the control socket /var/lib/oftp/oftp.sock: permission denied; run the \
             command as the daemon's user (or root)"
        );
        for kind in [ErrorKind::NotFound, ErrorKind::ConnectionRefused] {
            let down = ClientError::of_io(path, Error::from(kind));
            assert!(matches!(down, ClientError::NotRunning { .. }), "{kind:?}");
        }
        let other = ClientError::of_io(path, Error::from(ErrorKind::BrokenPipe));
        assert!(matches!(other, ClientError::Io { .. }));
    }
}
