//! Console sessions: made at log-in (with a token or a configured user's password), kept in
//! memory (a restart logs everyone out), each with its own CSRF token, ended by log-out or
//! after `session_minutes` without a request.
//!
//! Failed log-ins are counted per client address: after [`MAX_FAILED_LOGINS`] within
//! [`FAILED_LOGIN_WINDOW`] the address is refused (without a look at its credentials) until
//! the oldest of them is a window old.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
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

/// Failed log-ins one address may make within [`FAILED_LOGIN_WINDOW`].
pub const MAX_FAILED_LOGINS: usize = 5;
/// The window [`MAX_FAILED_LOGINS`] counts in.
pub const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// The console sessions of the running daemon.
pub struct Sessions {
    idle: Duration,
    live: Mutex<HashMap<String, Session>>,
    /// When each address failed to log in, oldest first, within the window.
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
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
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `addr` may try to log in now; `Err` = how long it must wait.
    pub fn login_allowed(&self, addr: IpAddr) -> Result<(), Duration> {
        self.login_allowed_at(addr, Instant::now())
    }

    fn login_allowed_at(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = failures.get_mut(&addr) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILED_LOGIN_WINDOW)
        {
            times.pop_front();
        }
        match times.front() {
            None => {
                failures.remove(&addr);
                Ok(())
            }
            Some(oldest) if times.len() >= MAX_FAILED_LOGINS => {
                Err(FAILED_LOGIN_WINDOW - now.duration_since(*oldest))
            }
            Some(_) => Ok(()),
        }
    }

    /// Counts a failed log-in from `addr`.
    pub fn login_failed(&self, addr: IpAddr) {
        self.login_failed_at(addr, Instant::now());
    }

    fn login_failed_at(&self, addr: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Addresses whose failures are all a window old are forgotten, so the map stays small.
        failures.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) < FAILED_LOGIN_WINDOW)
        });
        let times = failures.entry(addr).or_default();
        times.push_back(now);
        if times.len() > MAX_FAILED_LOGINS {
            times.pop_front();
        }
    }

    /// Who session `id` belongs to and its CSRF token, if it is live (the console's
    /// `GET /api/v1/session`); counts as a request.
    pub fn describe(&self, id: &str) -> Option<(Principal, String)> {
        self.authenticate(id, None, false)
            .ok()
            .and_then(|p| self.csrf(id).map(|csrf| (p, csrf)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn principal() -> Principal {
        Principal {
            name: "ops".into(),
            role: Role::Admin,
        }
    }

    #[test]
    fn an_address_is_refused_after_five_failed_log_ins_until_the_oldest_is_a_minute_old() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..MAX_FAILED_LOGINS as u64 {
            assert_eq!(
                sessions.login_allowed_at(a, t0 + Duration::from_secs(i)),
                Ok(())
            );
            sessions.login_failed_at(a, t0 + Duration::from_secs(i));
        }
        let at = t0 + Duration::from_secs(10);
        assert_eq!(
            sessions.login_allowed_at(a, at),
            Err(Duration::from_secs(50)),
            "the sixth try waits until the first failure is a minute old"
        );
        assert_eq!(
            sessions.login_allowed_at(b, at),
            Ok(()),
            "other addresses are not hit"
        );
        assert_eq!(
            sessions.login_allowed_at(a, t0 + FAILED_LOGIN_WINDOW),
            Ok(()),
            "a minute after the first failure one more try is allowed"
        );
    }

    #[test]
    fn a_session_describes_its_principal_and_csrf_until_it_ends() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let new = sessions.start(principal());
        assert_eq!(
            sessions.describe(&new.id),
            Some((principal(), new.csrf.clone()))
        );
        assert!(
            sessions.authenticate(&new.id, None, true).is_err(),
            "an action needs the CSRF token"
        );
        assert!(
            sessions
                .authenticate(&new.id, Some(&new.csrf), true)
                .is_ok()
        );
        sessions.end(&new.id);
        assert_eq!(sessions.describe(&new.id), None);
    }
}
