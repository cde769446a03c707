//! `/healthz` (the process answers) and `/readyz` (listening, journal writable, disk space
//! above the threshold). Neither needs a token: load balancers and systemd probes call them.
//!
//! `/readyz` answers `200 {"ready": true, "failed": []}` when
//! - every OFTP listener of the daemon listens ([`HttpContext::listeners`]),
//! - the journal takes a write now ([`Journal::check_writable`]: one committed write of a
//!   header field, no table read; a journal another writer holds locked fails within about a
//!   second),
//! - the data directory's file system has more than `disk_low_mib` MiB free (the same probe
//!   the runtime refuses files that do not fit with); 0 = not checked;
//!
//! else `503` with the same body, `ready` false and one `{"check", "message"}` per failed
//! check (`listening`, `journal`, `disk`), so a probe's log says what to fix.
//!
//! [`Journal::check_writable`]: oftp::journal::Journal::check_writable

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oftp::space::{FreeSpace, StatVfs};
use serde::Serialize;

use crate::state::{AppState, HttpContext};

/// How long `/readyz` waits for the journal's write probe.
const JOURNAL_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The health routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
}

/// The body of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Whether every check passed.
    pub ready: bool,
    /// The checks that failed.
    pub failed: Vec<FailedCheck>,
}

/// One failed readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedCheck {
    /// `listening`, `journal` or `disk`.
    pub check: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Readiness {
    /// Runs every check over `ctx`.
    pub async fn check(ctx: &HttpContext) -> Self {
        let mut failed = Vec::new();
        failed.extend(listening(ctx));
        failed.extend(journal(ctx).await);
        failed.extend(disk(ctx).await);
        Self {
            ready: failed.is_empty(),
            failed,
        }
    }
}

fn listening(ctx: &HttpContext) -> Option<FailedCheck> {
    let listeners = (ctx.listeners)();
    let down: Vec<&str> = listeners
        .iter()
        .filter(|l| l.addr.is_none())
        .map(|l| l.kind)
        .collect();
    let message = if listeners.is_empty() {
        "the daemon has no OFTP listener (it is starting or stopping)".to_owned()
    } else if !down.is_empty() {
        format!(
            "the OFTP listener(s) {} do not listen (stopped, or the daemon is shutting down); \
             restart the daemon if this lasts",
            down.join(", ")
        )
    } else {
        return None;
    };
    Some(FailedCheck {
        check: "listening",
        message,
    })
}

async fn journal(ctx: &HttpContext) -> Option<FailedCheck> {
    let probe = ctx.journal.call(|j| j.check_writable());
    let message = match tokio::time::timeout(JOURNAL_PROBE_TIMEOUT, probe).await {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => format!(
            "the journal does not take writes: {e}; check the data directory's file system \
             (full, read-only) and whether another process holds the journal locked"
        ),
        Err(_) => format!(
            "the journal's write probe did not finish within {} s; the journal is busy or \
             its disk stalls",
            JOURNAL_PROBE_TIMEOUT.as_secs()
        ),
    };
    Some(FailedCheck {
        check: "journal",
        message,
    })
}

async fn disk(ctx: &HttpContext) -> Option<FailedCheck> {
    if ctx.disk_low_mib == 0 {
        return None;
    }
    let dir = ctx.data_dir.clone();
    let free = tokio::task::spawn_blocking(move || StatVfs.available(&dir))
        .await
        .ok()?;
    let message = match free {
        Ok(bytes) => {
            let mib = bytes / (1024 * 1024);
            if mib >= ctx.disk_low_mib {
                return None;
            }
            format!(
                "{mib} MiB free in {} (below disk_low_mib = {}); free space or move the data \
                 directory",
                ctx.data_dir.display(),
                ctx.disk_low_mib
            )
        }
        Err(e) => format!(
            "cannot read the free space of {}: {e}",
            ctx.data_dir.display()
        ),
    };
    Some(FailedCheck {
        check: "disk",
        message,
    })
}

async fn readyz(State(state): State<AppState>) -> Response {
    let r = Readiness::check(state.ctx()).await;
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(r)).into_response()
}
