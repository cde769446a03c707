//! Console sessions: made at log-in (with a token or a configured user's password), kept in
//! memory (a restart logs everyone out), each with its own CSRF token, ended by log-out or
//! after `session_minutes` without a request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use rand::RngCore;

use super::{ApiError, Principal};

struct Session {
    principal: Principal,
    csrf: String,
    last_seen: Instant,
}

/// The console sessions of the running daemon.
pub struct Sessions {
    idle: Duration,
    live: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// A new session's secrets: the cookie value and the CSRF token the console sends back.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The `oftp_session` cookie's value.
    pub id: String,
    /// The value of `X-CSRF-Token` on every request that changes something.
    pub csrf: String,
}

fn random_hex() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

impl Sessions {
    /// No sessions yet; each ends after `idle` without a request.
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session for `principal`.
    pub fn start(&self, principal: Principal) -> NewSession {
        let new = NewSession {
            id: random_hex(),
            csrf: random_hex(),
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        live.retain(|_, s| now.duration_since(s.last_seen) < self.idle);
        live.insert(
            new.id.clone(),
            Session {
                principal,
                csrf: new.csrf.clone(),
                last_seen: now,
            },
        );
        new
    }

    /// Ends session `id` (log-out); an unknown one is already ended.
    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// The CSRF token of session `id`, if it is live.
    pub fn csrf(&self, id: &str) -> Option<String> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(id)
            .filter(|s| s.last_seen.elapsed() < self.idle)
            .map(|s| s.csrf.clone())
    }

    /// Who session `id` belongs to; a request that `changes` something must bring the
    /// session's CSRF token.
    pub fn authenticate(
        &self,
        id: &str,
        csrf: Option<&str>,
        changes: bool,
    ) -> Result<Principal, ApiError> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = live.get_mut(id) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the console session ended; log in again",
            ));
        };
        if s.last_seen.elapsed() >= self.idle {
            live.remove(id);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the console session expired; log in again",
            ));
        }
        if changes && !csrf.is_some_and(|c| super::tokens_eq(c.as_bytes(), s.csrf.as_bytes())) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token; reload the console page",
            ));
        }
        s.last_seen = Instant::now();
        Ok(s.principal.clone())
    }
}
