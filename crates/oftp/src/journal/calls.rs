//! The gateway's calls to its partners (issue #11 §1), as journal rows: when each call started
//! and ended, whether the session ran, and what happened. The last call of a partner is what
//! its schedule counts from, also after a restart, and what `oftp status` shows.
//!
//! Times are the caller's (a clock the caller controls) and are kept to the millisecond.

use chrono::{DateTime, Utc};

/// One call we made to a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The partner called (the configured name).
    pub partner: String,
    /// When the call started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// Whether the session ran (login succeeded), whatever the files' outcomes.
    pub ok: bool,
    /// What happened, for a person ("2 sent, 1 received", "connection refused").
    pub text: String,
}
