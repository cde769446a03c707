//! `mailbackup run --report FILE.json`: the machine-readable summary of one run.
//!
//! The shape is versioned by `schema_version` (README.md, "Run reports"): fields are only added
//! within a version; a renamed, removed or re-typed field raises it. The report is written
//! durably (temporary file, fsync, rename, folder fsync) also when the run fails, so a scheduler
//! always finds the outcome of the last run.

use chrono::{DateTime, SecondsFormat, Utc};
use mailbackup::{BackupReport, MailboxReport, RunStatus};
use serde::Serialize;
use std::path::Path;

/// The version of the report's JSON shape.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// How a run ended, as schedulers and notifications see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Every mailbox backed up, no message failed.
    Completed,
    /// The run went through, but messages or mailboxes failed (exit code 1 or 2).
    CompletedWithWarnings,
    /// The run could not start or stopped as a whole (options, lock, sign-in, storage).
    Failed,
    /// Stopped by Ctrl-C / SIGINT; the next run continues it.
    Aborted,
}

impl Outcome {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::CompletedWithWarnings => "completed with warnings",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
        }
    }
}

/// Counts of one mailbox, or of all of them (`totals`).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Counts {
    /// Messages considered in the backup phase.
    pub(crate) messages: u64,
    /// Fetched and saved (new or changed).
    pub(crate) saved: u64,
    /// Already saved, unchanged.
    pub(crate) unchanged: u64,
    /// Skipped by a filter or hook.
    pub(crate) skipped: u64,
    /// Local copies removed (or quarantined) because the message is gone remotely.
    pub(crate) deleted: u64,
    /// Deleted remotely between listing and fetch (not an error).
    pub(crate) gone_in_flight: u64,
    /// Messages that finally failed, plus one when the mailbox stopped early.
    pub(crate) errors: u64,
    /// Bytes written.
    pub(crate) bytes: u64,
    /// HTTP requests sent to Graph.
    pub(crate) requests: u64,
    /// Throttling answers (429/503) waited out.
    pub(crate) throttling_waits: u64,
}

impl Counts {
    fn of(m: &MailboxReport) -> Counts {
        Counts {
            messages: m.message_count,
            saved: m.saved,
            unchanged: m.unchanged,
            skipped: m.skipped,
            deleted: m.removed.len() as u64,
            gone_in_flight: m.gone_in_flight,
            errors: m.failed.len() as u64 + u64::from(m.error.is_some()),
            bytes: m.bytes,
            requests: m.requests,
            throttling_waits: m.throttled,
        }
    }

    fn add(&mut self, o: &Counts) {
        self.messages += o.messages;
        self.saved += o.saved;
        self.unchanged += o.unchanged;
        self.skipped += o.skipped;
        self.deleted += o.deleted;
        self.gone_in_flight += o.gone_in_flight;
        self.errors += o.errors;
        self.bytes += o.bytes;
        self.requests += o.requests;
        self.throttling_waits += o.throttling_waits;
    }
}

/// One mailbox in the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MailboxSummary {
    pub(crate) mailbox: String,
    /// Why the mailbox was left out without it being an error, if it was.
    pub(crate) skipped_reason: Option<String>,
    #[serde(flatten)]
    pub(crate) counts: Counts,
    /// The errors' texts: why the mailbox stopped, then each failed message.
    pub(crate) error_texts: Vec<String>,
}

/// The report file (schema version 1).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunSummary {
    pub(crate) schema_version: u32,
    /// `mailbackup` and its version.
    pub(crate) tool: String,
    /// The run's number in the index; null when the run failed before it was recorded.
    pub(crate) run_id: Option<i64>,
    /// RFC 3339, UTC.
    pub(crate) started: String,
    /// RFC 3339, UTC.
    pub(crate) finished: String,
    pub(crate) elapsed_seconds: f64,
    pub(crate) outcome: Outcome,
    /// Why the run failed as a whole (outcome `failed` without per-mailbox results).
    pub(crate) error: Option<String>,
    pub(crate) totals: Counts,
    pub(crate) mailboxes: Vec<MailboxSummary>,
}

impl RunSummary {
    /// The summary of a run that produced a report, or that failed with `Err(text)`.
    pub(crate) fn new(
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        result: Result<&BackupReport, String>,
    ) -> RunSummary {
        let (run_id, outcome, error, mailboxes) = match result {
            Ok(r) => {
                let outcome = match r.status {
                    RunStatus::Completed if r.is_success() => Outcome::Completed,
                    RunStatus::Completed => Outcome::CompletedWithWarnings,
                    RunStatus::Aborted => Outcome::Aborted,
                    RunStatus::Failed => Outcome::Failed,
                };
                let mailboxes = r.mailboxes.iter().map(mailbox_summary).collect();
                (Some(r.run_id), outcome, None, mailboxes)
            }
            Err(e) => (None, Outcome::Failed, Some(e), Vec::new()),
        };
        let mut totals = Counts::default();
        for m in &mailboxes {
            totals.add(&m.counts);
        }
        RunSummary {
            schema_version: SCHEMA_VERSION,
            tool: format!("mailbackup {}", env!("CARGO_PKG_VERSION")),
            run_id,
            started: started.to_rfc3339_opts(SecondsFormat::Millis, true),
            finished: finished.to_rfc3339_opts(SecondsFormat::Millis, true),
            elapsed_seconds: (finished - started).num_milliseconds().max(0) as f64 / 1000.0,
            outcome,
            error,
            totals,
            mailboxes,
        }
    }

    /// The JSON text (pretty, newline at the end).
    pub(crate) fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("the report serialises");
        s.push('\n');
        s
    }

    /// One line for a log or a mail subject: `run #12 completed with warnings (3 errors)`.
    pub(crate) fn headline(&self) -> String {
        let run = self
            .run_id
            .map_or_else(|| "run".to_string(), |id| format!("run #{id}"));
        match self.outcome {
            Outcome::Failed if self.error.is_some() => format!("{run} failed"),
            o if self.totals.errors > 0 => {
                format!("{run} {} ({} errors)", o.text(), self.totals.errors)
            }
            o => format!("{run} {}", o.text()),
        }
    }
}

fn mailbox_summary(m: &MailboxReport) -> MailboxSummary {
    let mut error_texts: Vec<String> = m.error.iter().cloned().collect();
    error_texts.extend(
        m.failed
            .iter()
            .map(|f| format!("message {}: {} {}", f.id, f.code, f.message)),
    );
    MailboxSummary {
        mailbox: m.mailbox.clone(),
        skipped_reason: m.skipped_reason.clone(),
        counts: Counts::of(m),
        error_texts,
    }
}

/// Writes the report durably (temporary file, fsync, rename, folder fsync).
pub(crate) fn write(path: &Path, summary: &RunSummary) -> anyhow::Result<()> {
    durable_write::write(path, summary.to_json().as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write the run report {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn mailbox(name: &str, saved: u64, failed: usize, error: Option<&str>) -> MailboxReport {
        let mut m: MailboxReport = serde_json::from_value(serde_json::json!({
            "mailbox": name, "message_count": saved + failed as u64, "saved": saved,
            "unchanged": 1, "skipped": 0, "gone_in_flight": 0, "bytes": 100 * saved,
            "failed": [], "removed": [], "full_listings": 1, "incremental_listings": 0,
            "requests": 10, "throttled": 2, "max_concurrency": 4, "error": error,
            "skipped_reason": null, "sync_skipped": false
        }))
        .unwrap();
        for i in 0..failed {
            m.failed.push(
                serde_json::from_value(serde_json::json!({
                    "id": format!("m{i}"), "code": "500", "message": "server error"
                }))
                .unwrap(),
            );
        }
        m
    }

    fn report(status: RunStatus, mailboxes: Vec<MailboxReport>) -> BackupReport {
        BackupReport {
            run_id: 7,
            status,
            mailboxes,
            elapsed: Duration::from_secs(3),
        }
    }

    #[test]
    fn outcome_follows_the_run_status_and_the_errors() {
        let t = Utc::now();
        let ok = report(RunStatus::Completed, vec![mailbox("a", 3, 0, None)]);
        assert_eq!(RunSummary::new(t, t, Ok(&ok)).outcome, Outcome::Completed);
        let warn = report(RunStatus::Completed, vec![mailbox("a", 3, 1, None)]);
        assert_eq!(
            RunSummary::new(t, t, Ok(&warn)).outcome,
            Outcome::CompletedWithWarnings
        );
        let stopped = report(RunStatus::Completed, vec![mailbox("a", 3, 0, Some("x"))]);
        assert_eq!(
            RunSummary::new(t, t, Ok(&stopped)).outcome,
            Outcome::CompletedWithWarnings
        );
        let aborted = report(RunStatus::Aborted, vec![]);
        assert_eq!(
            RunSummary::new(t, t, Ok(&aborted)).outcome,
            Outcome::Aborted
        );
        let failed = RunSummary::new(t, t, Err("lock held".into()));
        assert_eq!(failed.outcome, Outcome::Failed);
        assert_eq!(failed.error.as_deref(), Some("lock held"));
        assert_eq!(failed.headline(), "run failed");
    }

    #[test]
    fn totals_add_up_the_mailboxes_and_errors_are_listed() {
        let t = Utc::now();
        let r = report(
            RunStatus::Completed,
            vec![
                mailbox("a", 3, 2, None),
                mailbox("b", 4, 0, Some("Graph answered 403")),
            ],
        );
        let s = RunSummary::new(t, t + chrono::Duration::milliseconds(1500), Ok(&r));
        assert_eq!(s.totals.saved, 7);
        assert_eq!(s.totals.errors, 3);
        assert_eq!(s.totals.bytes, 700);
        assert_eq!(s.totals.throttling_waits, 4);
        assert_eq!(s.elapsed_seconds, 1.5);
        assert_eq!(
            s.mailboxes[0].error_texts,
            [
                "message m0: 500 server error",
                "message m1: 500 server error"
            ]
        );
        assert_eq!(s.mailboxes[1].error_texts, ["Graph answered 403"]);
        assert_eq!(s.headline(), "run #7 completed with warnings (3 errors)");
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["outcome"], "completed_with_warnings");
        assert_eq!(
            v["mailboxes"][1]["saved"], 4,
            "counts sit beside the mailbox name"
        );
    }
}
