//! `POST /api/v1/partners/{name}/files?name=FILE`: a file to send, streamed into the
//! partner's outbox.
//!
//! The body is never held whole in memory: each chunk hyper hands over is written to a
//! temporary file in the outbox, `.upload-<random>.tmp` — a name the gateway's take-over never
//! touches ([`oftp::config::is_ready_outbox_name`]: it starts with a dot and ends in `.tmp`).
//! Once the whole body is there the temporary is fsynced and put under `FILE` without ever
//! replacing an existing file (`durable_write::place` with `Existing::Keep`: a hard link,
//! then the temporary removed, the outbox fsynced). Only then is `201` answered; the gateway
//! takes `FILE` over like any file an application drops into the outbox.
//!
//! On any failure — the client disconnecting, a body over `[http] max_upload_mib` (413), a
//! full disk (507), `FILE` existing (409) — the temporary is removed, also when the request
//! is dropped mid-way (a guard removes it), so nothing half-written stays behind.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use super::{ApiPath, ApiQuery, bad_request, configured_partner};
use crate::auth::{AdminAccess, ApiError};
use crate::state::AppState;

/// One MiB, the unit of `[http] max_upload_mib`.
const MIB: u64 = 1024 * 1024;

/// `POST .../files` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name in the outbox (no `/`, not `..`, no leading dot, not ending in
    /// `.tmp`).
    pub name: String,
}

/// A file placed in a partner's outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Uploaded {
    /// The partner it goes to.
    pub partner: String,
    /// Its name in the outbox.
    pub file: String,
    /// Its size in octets.
    pub bytes: u64,
}

/// Streams the body into the partner's outbox as `name`; the gateway sends it from there.
#[utoipa::path(post, path = "/api/v1/partners/{name}/files", tag = "partners",
    params(("name" = String, Path, description = "The partner's configured name"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The file's octets"),
    responses((status = 201, body = Uploaded), (status = 400), (status = 401), (status = 403),
        (status = 404), (status = 409, description = "a file of that name is in the outbox"),
        (status = 413, description = "larger than [http] max_upload_mib"),
        (status = 507, description = "the outbox's disk is full")))]
pub async fn upload(
    AdminAccess(who): AdminAccess,
    State(state): State<AppState>,
    ApiPath(partner): ApiPath<String>,
    ApiQuery(UploadQuery { name }): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let outbox = configured_partner(&state, &partner)?.outbox;
    check_name(&name)?;
    let max = state.settings().max_upload_mib.saturating_mul(MIB);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let target = outbox.join(&name);
    if target.exists() {
        return Err(exists(&partner, &name));
    }
    durable_write::create_dir_all(&outbox).map_err(|e| io_error(&e.to_string(), &e.source))?;
    let temp = Temporary::new(&outbox);
    let bytes = temp.fill(body, max).await?;
    match durable_write::place(&temp.path, &target, durable_write::Existing::Keep) {
        Ok(placed) => {
            temp.disarm();
            if let Some(e) = placed.leftover {
                tracing::warn!("upload to {partner}: {e}");
            }
        }
        Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(exists(&partner, &name));
        }
        Err(e) => return Err(io_error(&e.to_string(), &e.source)),
    }
    tracing::info!(%partner, file = %name, bytes, by = %who.name, "file uploaded over the API");
    Ok((
        StatusCode::CREATED,
        Json(Uploaded {
            partner,
            file: name,
            bytes,
        }),
    ))
}

/// Refuses a name that is not a plain file name the gateway would take over.
fn check_name(name: &str) -> Result<(), ApiError> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.contains(['/', '\\', '\0']) {
        "contains a path separator or NUL"
    } else if name == ".." || name.starts_with('.') {
        "starts with a dot (such names are never sent)"
    } else if !oftp::config::is_ready_outbox_name(std::ffi::OsStr::new(name)) {
        "ends in .tmp (such names are never sent)"
    } else if name.len() > 255 {
        "is longer than 255 octets"
    } else {
        return Ok(());
    };
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_name",
        format!("file name {name:?} {why}; give a plain file name as ?name="),
    ))
}

fn exists(partner: &str, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "exists",
        format!(
            "a file {name:?} is waiting in {partner}'s outbox; upload under another name or \
             wait until the gateway took it over"
        ),
    )
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the file is larger than [http] max_upload_mib = {} MiB; raise it or send the file \
             by dropping it into the outbox",
            max / MIB
        ),
    )
}

fn io_error(what: &str, e: &std::io::Error) -> ApiError {
    tracing::error!("upload: {what}");
    if e.kind() == std::io::ErrorKind::StorageFull {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "disk_full",
            "the outbox's disk is full; free space and upload again",
        )
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "io",
            format!("{what}; see the daemon's log"),
        )
    }
}

/// The upload's temporary file, removed when dropped unless [`disarm`](Self::disarm)ed.
struct Temporary {
    path: PathBuf,
    armed: bool,
}

impl Temporary {
    /// A new name in `outbox`; the file is created by [`fill`](Self::fill).
    fn new(outbox: &Path) -> Self {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let path = outbox.join(format!(".upload-{}.tmp", hex::encode(raw)));
        Self { path, armed: true }
    }

    /// Writes `body` into the file (at most `max` octets), fsyncs it; returns its size.
    async fn fill(&self, body: Body, max: u64) -> Result<u64, ApiError> {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)
            .await
            .map_err(|e| io_error(&format!("cannot create {}", self.path.display()), &e))?;
        let write_error =
            |e: std::io::Error| io_error(&format!("cannot write {}: {e}", self.path.display()), &e);
        let mut stream = body.into_data_stream();
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| bad_request(format!("the upload ended before its last byte ({e})")))?;
            bytes += chunk.len() as u64;
            if bytes > max {
                return Err(too_large(max));
            }
            file.write_all(&chunk).await.map_err(write_error)?;
        }
        file.flush().await.map_err(write_error)?;
        file.sync_all().await.map_err(write_error)?;
        Ok(bytes)
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if self.armed {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot remove {}: {e}", self.path.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_escape_the_outbox_or_never_be_sent_are_refused() {
        for bad in [
            "",
            "a/b",
            "../x",
            "..",
            ".",
            ".hidden",
            "x.tmp",
            "X.TMP",
            "a\\b",
            "a\0b",
            &"x".repeat(256),
        ] {
            let e = check_name(bad).expect_err(bad);
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "invalid_name")
            );
        }
        for good in ["ORDERS.edi", "a..b", "x.tmp.gz", "file name with spaces"] {
            check_name(good).unwrap();
        }
    }
}
