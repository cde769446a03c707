//! Where the engine's log lines go: `tracing`, and the [`Hooks::log`] event (seed `Log`).
//!
//! One [`Reporter`] per run, shared by the engine phases and the Graph client, so neither logs
//! through the other.

use crate::hooks::{Hooks, LogLevel};
use std::sync::Arc;

/// Sends log lines to `tracing` and to the run's hooks.
#[derive(Clone)]
pub(crate) struct Reporter {
    hooks: Arc<dyn Hooks>,
}

impl Reporter {
    pub(crate) fn new(hooks: Arc<dyn Hooks>) -> Reporter {
        Reporter { hooks }
    }

    /// One line at `level` (seed levels map to `tracing` error/info/debug/trace).
    pub(crate) fn log(&self, level: LogLevel, msg: &str) {
        match level {
            LogLevel::Error => tracing::error!("{msg}"),
            LogLevel::Info => tracing::info!("{msg}"),
            LogLevel::Verbose => tracing::debug!("{msg}"),
            LogLevel::Debug => tracing::trace!("{msg}"),
        }
        self.hooks.log(level, msg);
    }

    /// An `Info` line.
    pub(crate) fn info(&self, msg: &str) {
        self.log(LogLevel::Info, msg);
    }

    /// An `Error` line.
    pub(crate) fn error(&self, msg: &str) {
        self.log(LogLevel::Error, msg);
    }
}
