//! Partial receptions nobody resumed are removed.
//!
//! An interrupted reception keeps its temporary file (`.oftp-<uuid>.part`, see
//! [`crate::store`]) and a journal row in state `receiving`, so that the same partner can
//! restart the file where it stopped. A reception given up with its file kept (DeleteOnError
//! off, or a file that could not be removed) keeps its row too, with the restart point at 0. A
//! partner that never comes back would leave them for ever: the sweep removes every partial
//! reception whose row has not changed for the retention period
//! ([`StorePolicy::partial_retention`](crate::store::StorePolicy), default
//! [`DEFAULT_PARTIAL_RETENTION`]), then drops its row, with a log line that names the file. A file
//! that cannot be removed keeps its row and is tried again at the next sweep.
//!
//! Temporary files in the inboxes that no journal row owns (left by a crash between creating the
//! file and recording it, or by versions that lost the row of a file they could not remove)
//! are removed too, once they have not been modified for the retention period.
//!
//! The server sweeps when it starts and then every retention period, at most once a day; the
//! client sweeps its receive side when a session starts. A reception in progress is never
//! touched: the sweep claims each file the way a session does, so a session
//! that wants to resume it meanwhile is told to try again later (and the sweep skips files a
//! session holds).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::{ActiveGuard, ActiveSet, Shared};
use crate::journal::{Journal, PartialReception};
use crate::stamp::FileStampExt;

/// How long a partial reception nobody resumed is kept: 7 days.
pub const DEFAULT_PARTIAL_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Longest time between two sweeps of a running server.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Removes the partial receptions of `journal` last changed more than `retention` before
/// `now` and not held by a session (`active`), and drops their rows; then the temporary files
/// in `dirs` that no row owns, not modified for `retention`. Returns the files removed.
/// Blocking (file system and journal): run it on a blocking thread.
pub(crate) fn sweep(
    journal: &dyn Journal,
    active: &ActiveSet,
    dirs: &[PathBuf],
    retention: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<PathBuf> {
    let mut removed = sweep_rows(journal, active, retention, now);
    match journal.partial_paths() {
        Ok(owned) => removed.extend(sweep_orphans(dirs, &owned, retention, now)),
        Err(e) => tracing::warn!(error = %e, "partial receptions: cannot read the journal"),
    }
    removed
}

fn sweep_rows(
    journal: &dyn Journal,
    active: &ActiveSet,
    retention: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<PathBuf> {
    let rows = match journal.partial_receptions() {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "partial receptions: cannot read the journal");
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for row in rows {
        // Negative (changed after `now`) does not convert.
        let Ok(idle) = now.signed_duration_since(row.updated_at).to_std() else {
            continue;
        };
        if idle < retention {
            continue;
        }
        // Claimed like a session claims it: none can resume it while it is being removed.
        let Some(_claim) = ActiveGuard::claim(active, &(row.partner.clone(), row.key.clone()))
        else {
            continue;
        };
        if remove(journal, &row, idle) {
            removed.push(row.partial_path);
        }
    }
    removed
}

/// Whether `name` is one of the store's temporary files (`.oftp-<32 hex digits>.part`).
fn is_partial_name(name: &str) -> bool {
    name.strip_prefix(".oftp-")
        .and_then(|n| n.strip_suffix(".part"))
        .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes the temporary files in `dirs` that are not `owned` by a journal row and were not
/// modified for `retention`.
fn sweep_orphans(
    dirs: &[PathBuf],
    owned: &std::collections::HashSet<PathBuf>,
    retention: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue; // not created yet
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_name().to_str().is_some_and(is_partial_name) || owned.contains(&path) {
                continue;
            }
            let idle = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| {
                    let t = chrono::DateTime::<chrono::Utc>::from(t);
                    now.signed_duration_since(t).to_std().ok()
                });
            let Some(idle) = idle.filter(|i| *i >= retention) else {
                continue;
            };
            let days = idle.as_secs() / 86_400;
            match crate::store::remove_partial(&path) {
                Ok(()) => {
                    tracing::info!(
                        "removed partial file {} that no journal entry owns (not modified for \
                         {days} days)",
                        path.display()
                    );
                    removed.push(path);
                }
                Err(e) => tracing::warn!(
                    "cannot remove partial file {} that no journal entry owns: {e}; trying \
                     again at the next sweep",
                    path.display()
                ),
            }
        }
    }
    removed
}

/// Removes one stale partial reception; `true` when its file and row are gone.
fn remove(journal: &dyn Journal, row: &PartialReception, idle: Duration) -> bool {
    let path = row.partial_path.display();
    let days = idle.as_secs() / 86_400;
    if let Err(e) = crate::store::remove_partial(&row.partial_path) {
        tracing::warn!(
            partner = %row.partner,
            file = %row.key.dsn,
            "cannot remove partial reception {path} (not resumed for {days} days): {e}; \
             trying again at the next sweep"
        );
        return false;
    }
    if let Err(e) = journal.drop_receive(row.id) {
        tracing::warn!(
            partner = %row.partner,
            file = %row.key.dsn,
            "removed partial reception {path}, but its journal row stays: {e}"
        );
        return true;
    }
    tracing::info!(
        partner = %row.partner,
        file = %row.key.dsn,
        "removed partial reception {path} of {} from {} ({}): not resumed for {days} days",
        row.key.dsn,
        row.key.originator,
        row.key.stamp.digits(),
    );
    true
}

/// The server's periodic sweep: a task that ends when this is dropped.
#[derive(Debug)]
pub(crate) struct Sweeper {
    task: tokio::task::AbortHandle,
    shared: Arc<Shared>,
}

impl Sweeper {
    /// Starts sweeping `shared` (its journal and the partners' inboxes) now and then every
    /// `retention` (at most daily, at least every second), unless another listener of the same
    /// server already does.
    pub(crate) fn start(shared: Arc<Shared>) -> Option<Self> {
        let retention = shared.store.partial_retention?;
        if shared
            .sweeping
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return None;
        }
        let every = retention.clamp(Duration::from_secs(1), MAX_SWEEP_INTERVAL);
        let swept = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let s = swept.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    // The partners of now: a reload (`RunningServer::set_partners`) counts
                    // from the next pass.
                    let dirs: Vec<PathBuf> = s
                        .partners()
                        .iter()
                        .map(|p| {
                            p.inbox
                                .clone()
                                .unwrap_or_else(|| s.data_dir.join("inbox").join(&p.name))
                        })
                        .collect();
                    sweep(&*s.journal, &s.active, &dirs, retention, chrono::Utc::now())
                })
                .await;
                tokio::time::sleep(every).await;
            }
        });
        Some(Self {
            task: task.abort_handle(),
            shared,
        })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
        self.shared
            .sweeping
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use super::*;
    use crate::config::tests::partner;
    use crate::config::{LocalIdentity, PartnerTable, Password, ServerSettings};
    use crate::handler::{ErrorEvent, Handler, LogEvent};
    use crate::journal::{FileKey, SqliteJournal};
    use crate::stamp::FileStamp;
    use crate::store::faults;
    use crate::{Client, ClientConfig, ConnectionId, FileOutcome, OutgoingFile, Server};

    const DAY: Duration = Duration::from_secs(86_400);

    /// Log lines and errors a handler saw, and what `tracing` wrote.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl Lines {
        fn all(&self) -> String {
            self.0.lock().unwrap().join("\n")
        }
    }

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Handler for Lines {
        async fn error(&self, e: &ErrorEvent) {
            self.0.lock().unwrap().push(e.description.clone());
        }
        async fn log(&self, _: ConnectionId, e: &LogEvent) {
            self.0.lock().unwrap().push(e.message.clone());
        }
    }

    fn key(dsn: &str) -> FileKey {
        FileKey::new("ORIG".parse().unwrap(), dsn, FileStamp::now())
    }

    fn begin(j: &dyn Journal, dir: &Path, dsn: &str) -> PathBuf {
        let part = dir.join(format!(".oftp-{dsn}.part"));
        std::fs::write(&part, b"partial").unwrap();
        j.begin_receive("PARTNER", &key(dsn), &part, &dir.join(dsn), "")
            .unwrap();
        part
    }

    #[test]
    fn partial_receptions_nobody_resumed_are_removed_after_the_retention_period() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::in_memory().unwrap();
        let active = ActiveSet::default();
        let old = begin(&j, dir.path(), "OLD");
        let held = begin(&j, dir.path(), "HELD");
        let now = chrono::Utc::now();
        let log = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let log = log.clone();
                move || log.clone()
            })
            .with_ansi(false)
            .finish();
        let _g = tracing::subscriber::set_default(subscriber);

        // Within the retention period: kept.
        assert!(sweep(&j, &active, &[], 7 * DAY, now + 6 * DAY).is_empty());
        assert!(old.exists() && held.exists());
        assert_eq!(j.partial_receptions().unwrap().len(), 2);

        // After it: removed with its row, except a file a session holds right now.
        let rows = j.partial_receptions().unwrap();
        let held_row = rows.iter().find(|r| r.key.dsn == "HELD").unwrap();
        let claim =
            ActiveGuard::claim(&active, &(held_row.partner.clone(), held_row.key.clone())).unwrap();
        assert_eq!(
            sweep(&j, &active, &[], 7 * DAY, now + 8 * DAY),
            [old.as_path()]
        );
        assert!(!old.exists() && held.exists());
        let left = j.partial_receptions().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key.dsn, "HELD");
        let logged = log.all();
        assert!(
            logged.contains(&format!("removed partial reception {}", old.display()))
                && logged.contains("not resumed for 8 days"),
            "{logged}"
        );

        // A file that cannot be removed keeps its row (named in a warning) until a later sweep.
        drop(claim);
        let fault = faults::unwritable_dir(dir.path(), 0);
        assert!(sweep(&j, &active, &[], 7 * DAY, now + 8 * DAY).is_empty());
        assert!(held.exists());
        assert_eq!(j.partial_receptions().unwrap().len(), 1);
        assert!(
            log.all().contains(&format!(
                "cannot remove partial reception {}",
                held.display()
            )),
            "{}",
            log.all()
        );
        drop(fault);
        assert_eq!(
            sweep(&j, &active, &[], 7 * DAY, now + 9 * DAY),
            [held.as_path()]
        );
        assert!(!held.exists());
        assert!(j.partial_receptions().unwrap().is_empty());
    }

    #[test]
    fn partial_files_no_journal_row_owns_are_removed_after_the_retention_period() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::in_memory().unwrap();
        let active = ActiveSet::default();
        let orphan = dir
            .path()
            .join(".oftp-0123456789abcdef0123456789abcdef.part");
        let owned = dir
            .path()
            .join(".oftp-fedcba9876543210fedcba9876543210.part");
        let other = dir.path().join(".oftp-notes.part");
        let received = dir.path().join("INVOICE.EDI");
        for f in [&orphan, &owned, &other, &received] {
            std::fs::write(f, b"x").unwrap();
        }
        let k = key("OWNED");
        j.begin_receive("PARTNER", &k, &owned, &dir.path().join("OWNED"), "")
            .unwrap();
        // A session holds the owned one, so only the orphan scan could touch it.
        let _claim = ActiveGuard::claim(&active, &("PARTNER".into(), k)).unwrap();
        let dirs = [dir.path().to_owned(), dir.path().join("missing")];
        let now = chrono::Utc::now();
        assert!(sweep(&j, &active, &dirs, 7 * DAY, now + DAY).is_empty());
        assert_eq!(
            sweep(&j, &active, &dirs, 7 * DAY, now + 8 * DAY),
            [orphan.as_path()]
        );
        assert!(!orphan.exists());
        assert!(owned.exists() && other.exists() && received.exists());
    }

    /// Our identity with the password the other side's partner entry expects.
    fn identity(ssid: &str) -> LocalIdentity {
        LocalIdentity {
            ssid: ssid.into(),
            sfid: String::new(),
            password: Password::new("SECRET"),
        }
    }

    /// Sends `data` as FILE.BIN to a server in `dir` whose inbox stops taking writes after
    /// `writes_after` octets and refuses removals, with DeleteOnError `delete`. Returns the
    /// outcome, the server's journal and what it logged.
    async fn send_into_unwritable_inbox(
        dir: &Path,
        data: &[u8],
        writes_after: u64,
        delete: bool,
    ) -> (FileOutcome, Arc<dyn Journal>, Lines, PathBuf) {
        let partners = PartnerTable::new([partner("client", "O0013CLIENT")]).unwrap();
        let mut cfg =
            crate::ServerConfig::new(identity("O0013SERVER"), partners, dir.join("server"));
        cfg.settings = ServerSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerSettings::default()
        };
        cfg.store.delete_on_error = delete;
        cfg.checkpoint_interval = 16 * 1024;
        let inbox = dir.join("server").join("inbox").join("client");
        let lines = Lines::default();
        let running = Server::new(cfg)
            .unwrap()
            .handler(lines.clone())
            .start()
            .await
            .unwrap();
        let journal = running.journal().clone();
        let addr = running.local_addr().unwrap().to_string();
        let src = dir.join("FILE.BIN");
        std::fs::write(&src, data).unwrap();
        let client_dir = dir.join("client");
        let mut ccfg = ClientConfig::new(
            identity("O0013CLIENT"),
            partner("server", "O0013SERVER"),
            client_dir.join("received"),
        );
        ccfg.inactivity_timeout = Duration::from_secs(10);
        let client = Client::new(ccfg, SqliteJournal::open_in_dir(&client_dir).unwrap()).unwrap();
        let fault = faults::unwritable_dir(&inbox, writes_after);
        let report = client
            .run(&addr, vec![OutgoingFile::new(&src)])
            .await
            .unwrap();
        running.shutdown().await;
        drop(fault);
        (report.files[0].1.clone(), journal, lines, inbox)
    }

    fn part_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|x| x == "part"));
        v
    }

    #[tokio::test]
    async fn a_partial_file_left_by_an_unwritable_inbox_stays_in_the_journal_and_is_named() {
        for delete in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let data: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
            let (outcome, journal, lines, inbox) =
                send_into_unwritable_inbox(dir.path(), &data, 100_000, delete).await;
            assert!(
                !matches!(
                    outcome,
                    FileOutcome::Delivered | FileOutcome::AwaitingEndResponse
                ),
                "{outcome:?}"
            );
            let parts = part_files(&inbox);
            assert_eq!(parts.len(), 1, "the inbox refused the removal: {parts:?}");
            // Every partial file left has a journal row: resumed or swept later, never lost.
            let rows = journal.partial_receptions().unwrap();
            assert_eq!(
                rows.iter().map(|r| &r.partial_path).collect::<Vec<_>>(),
                [&parts[0]],
                "delete_on_error = {delete}"
            );
            let name = parts[0].file_name().unwrap().to_string_lossy().into_owned();
            let logged = lines.all();
            assert!(logged.contains(&name), "log lines name {name}: {logged}");
            // The sweep removes it once the retention period is over.
            let active = ActiveSet::default();
            let later = chrono::Utc::now() + 8 * DAY;
            assert_eq!(
                sweep(&*journal, &active, &[], 7 * DAY, later),
                [parts[0].clone()]
            );
            assert!(part_files(&inbox).is_empty());
        }
    }
}
