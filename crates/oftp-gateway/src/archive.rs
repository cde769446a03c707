//! The archive of final files and the retention of files and journal history (issue #11 §4).
//!
//! ```toml
//! [gateway.archive]
//! enabled = true                  # move final files into the archive (default false)
//! dir = "/srv/oftp/archive"       # relative to the data directory; default <data_dir>/archive
//! archive_days = 365              # archived files older than this are deleted; 0 = kept
//! history_days = 400              # journal history older than this is pruned; 0 = kept
//! sweep_interval_minutes = 60     # a sweep runs at start and this often
//! ```
//!
//! A file is *final*, and moved to `<dir>/<partner>/YYYY/MM/<r|s><row id>-<name>` (the year
//! and month in UTC of the time it became final; `r` received, `s` sent, the journal row's id:
//! names never collide and a sweep that died halfway finds its file again):
//! - sent: its queue row is delivered or cancelled (the file is `<outbox>/.queue/<id>/<name>`);
//! - received: its EERP went out and its post-processing, if any, succeeded without moving it
//!   to `processed_dir` (a file moved there is the operator's, not the archive's).
//!
//! `<partner>` is the configured name (received rows know the SSID code: it is mapped back to
//! the name; an unknown code is used as it is).
//!
//! Each move is durable (`durable-write`: a hard link or rename, the folders fsynced) before
//! it is recorded in the journal. A sweep that dies between the two finds the file gone from
//! its old place and present in the archive, and records it then; one that dies after the
//! link but before the old name was removed finds both names of the same file and removes the
//! old one. A file that is in neither place (deleted by someone) is recorded as gone.
//!
//! Retention: an archived file archived more than `archive_days` ago is deleted, then marked
//! deleted in the journal (deleting it twice is harmless). History older than `history_days`
//! is pruned with [`oftp::journal::Journal::prune_history`] (session trails too, by the time
//! their session ended; the partner counters are kept); what is never pruned (what a
//! restart, a duplicate offer or a late EERP needs) is listed in [`oftp::journal::processing`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use oftp::journal::{ArchiveCandidate, ArchiveKind, Journal, JournalError, Pruned};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Rows asked of the journal at a time.
const BATCH: u32 = 500;

/// `[gateway.archive]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSettings {
    /// Move final files into the archive.
    pub enabled: bool,
    /// The archive (relative to the data directory); `None` = `<data_dir>/archive`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Days after which an archived file is deleted; 0 = never.
    pub archive_days: u32,
    /// Days after which journal history is pruned; 0 = never.
    pub history_days: u32,
    /// Minutes between sweeps (at least 1).
    pub sweep_interval_minutes: u32,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        ArchiveSettings {
            enabled: false,
            dir: None,
            archive_days: 0,
            history_days: 0,
            sweep_interval_minutes: 60,
        }
    }
}

impl ArchiveSettings {
    /// Checks what serde cannot.
    pub fn check(&self) -> Result<(), ArchiveError> {
        if self.sweep_interval_minutes == 0 {
            return Err(ArchiveError::Config(
                "[gateway.archive]: sweep_interval_minutes must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Whether a sweep has anything to do.
    pub fn is_active(&self) -> bool {
        self.enabled || self.archive_days > 0 || self.history_days > 0
    }
}

/// What went wrong in a sweep.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The settings cannot be used.
    #[error("{0}")]
    Config(String),
    /// The journal failed (the sweep stops; the next one goes on from where it was).
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Files moved into the archive (or found there after an interrupted sweep).
    pub archived: u64,
    /// Final files that were no longer anywhere (recorded as gone).
    pub gone: u64,
    /// Archived files deleted by retention.
    pub deleted: u64,
    /// Journal history pruned.
    pub pruned: Pruned,
    /// Files that could not be moved or deleted (tried again at the next sweep), for the log.
    pub problems: Vec<String>,
}

/// The archive sweep.
#[derive(Debug)]
pub struct Archive {
    journal: Arc<dyn Journal>,
    dir: PathBuf,
    settings: ArchiveSettings,
    /// SSID code -> configured name.
    names: HashMap<String, String>,
}

impl Archive {
    /// The sweep of `settings` (its `dir`, relative to `data_dir`, else `<data_dir>/archive`);
    /// `names` maps partners'
    /// SSID codes (any case) to their configured names.
    pub fn new(
        journal: Arc<dyn Journal>,
        settings: ArchiveSettings,
        data_dir: &Path,
        names: HashMap<String, String>,
    ) -> Self {
        let dir = data_dir.join(settings.dir.as_deref().unwrap_or(Path::new("archive")));
        let names = names
            .into_iter()
            .map(|(code, name)| (code.trim_end().to_ascii_uppercase(), name))
            .collect();
        Archive {
            journal,
            dir,
            settings,
            names,
        }
    }

    /// Where a candidate goes.
    pub fn target(&self, c: &ArchiveCandidate) -> PathBuf {
        let partner = match c.kind {
            ArchiveKind::Received => self
                .names
                .get(&c.partner.trim_end().to_ascii_uppercase())
                .unwrap_or(&c.partner),
            ArchiveKind::Sent => &c.partner,
        };
        let name = c
            .path
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        let prefix = match c.kind {
            ArchiveKind::Received => 'r',
            ArchiveKind::Sent => 's',
        };
        self.dir
            .join(safe_component(partner))
            .join(format!("{:04}", c.final_at.year()))
            .join(format!("{:02}", c.final_at.month()))
            .join(format!("{prefix}{}-{name}", c.row_id))
    }

    /// One sweep at `now` (blocking: run it on the blocking pool). Idempotent; a sweep that
    /// died halfway is finished by the next.
    pub fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport, ArchiveError> {
        let mut report = SweepReport::default();
        if self.settings.enabled {
            self.archive_final(now, &mut report)?;
        }
        if self.settings.archive_days > 0 {
            let cutoff = now - chrono::Duration::days(i64::from(self.settings.archive_days));
            self.delete_old(cutoff, now, &mut report)?;
        }
        if self.settings.history_days > 0 {
            let cutoff = now - chrono::Duration::days(i64::from(self.settings.history_days));
            report.pruned = self.journal.prune_history(cutoff)?;
        }
        Ok(report)
    }

    fn archive_final(
        &self,
        now: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> Result<(), ArchiveError> {
        let mut failed = std::collections::HashSet::new();
        loop {
            let batch: Vec<ArchiveCandidate> = self
                .journal
                .archive_candidates(BATCH)?
                .into_iter()
                .filter(|c| !failed.contains(&(c.kind, c.row_id)))
                .collect();
            if batch.is_empty() {
                return Ok(());
            }
            for c in batch {
                let to = self.target(&c);
                match archive_one(&c.path, &to) {
                    Ok(Some(())) => {
                        self.journal
                            .record_archived(c.kind, c.row_id, Some(&to), now)?;
                        report.archived += 1;
                    }
                    Ok(None) => {
                        self.journal.record_archived(c.kind, c.row_id, None, now)?;
                        report.gone += 1;
                    }
                    Err(e) => {
                        report.problems.push(format!(
                            "cannot archive {} to {}: {e}",
                            c.path.display(),
                            to.display()
                        ));
                        failed.insert((c.kind, c.row_id));
                    }
                }
            }
        }
    }

    fn delete_old(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> Result<(), ArchiveError> {
        let mut failed = std::collections::HashSet::new();
        loop {
            let batch: Vec<_> = self
                .journal
                .archived_before(cutoff, BATCH)?
                .into_iter()
                .filter(|a| !failed.contains(&a.id))
                .collect();
            if batch.is_empty() {
                return Ok(());
            }
            for a in batch {
                let Some(path) = &a.path else { continue };
                match durable_write::remove(path) {
                    Ok(()) => {
                        self.journal.archived_deleted(a.id, now)?;
                        report.deleted += 1;
                        // The month and year folders go when they are empty.
                        let mut dir = path.parent();
                        for _ in 0..2 {
                            match dir {
                                Some(d) if d.starts_with(&self.dir) && d != self.dir => {
                                    if std::fs::remove_dir(d).is_err() {
                                        break;
                                    }
                                    dir = d.parent();
                                }
                                _ => break,
                            }
                        }
                    }
                    Err(e) => {
                        report.problems.push(format!(
                            "cannot delete the archived {}: {e}",
                            path.display()
                        ));
                        failed.insert(a.id);
                    }
                }
            }
        }
    }

    /// Sweeps at once and then every `sweep_interval_minutes` until `shutdown`, with the
    /// caller's clock. Problems are logged; a journal failure ends nothing (the next sweep
    /// tries again).
    pub async fn run(
        self: Arc<Self>,
        clock: crate::postprocess::Clock,
        shutdown: CancellationToken,
    ) {
        let every = Duration::from_secs(u64::from(self.settings.sweep_interval_minutes) * 60);
        loop {
            let me = Arc::clone(&self);
            let now = clock();
            match tokio::task::spawn_blocking(move || me.sweep(now)).await {
                Ok(Ok(r)) => {
                    for p in &r.problems {
                        tracing::warn!("archive: {p}; tried again at the next sweep");
                    }
                    if r != SweepReport::default() {
                        tracing::info!(
                            archived = r.archived,
                            gone = r.gone,
                            deleted = r.deleted,
                            pruned = ?r.pruned,
                            "archive sweep"
                        );
                    }
                }
                Ok(Err(e)) => tracing::error!("archive sweep: {e}; tried again at the next sweep"),
                Err(e) => tracing::error!("archive sweep task failed: {e}"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// A partner name as one folder name: no separators, not `.` or `..`.
fn safe_component(name: &str) -> String {
    let s: String = name
        .trim_end()
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => format!("_{s}"),
        _ => s,
    }
}

/// Moves `from` to `to`: `Some` once it is there (also when an earlier sweep moved it),
/// `None` when it is nowhere.
fn archive_one(from: &Path, to: &Path) -> Result<Option<()>, durable_write::Error> {
    let there = to.exists();
    if !from.exists() {
        return Ok(there.then_some(()));
    }
    if there {
        if same_file(from, to) {
            // An earlier sweep linked it and died before removing the old name.
            durable_write::remove(from)?;
            return Ok(Some(()));
        }
        // Names carry the row id, so this is someone else's file: keep both, report it.
        return Err(durable_write::Error {
            step: durable_write::Step::Rename,
            path: to.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "another file has the archive name; move it away",
            ),
        });
    }
    durable_write::create_dir_all(to.parent().unwrap_or(Path::new(".")))?;
    let placed = durable_write::place(from, to, durable_write::Existing::Keep)?;
    if let Some(e) = placed.leftover {
        tracing::warn!("archive: {e}");
    }
    Ok(Some(()))
}

fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use oftp::journal::{FileKey, QueueChange, QueueState, QueuedSend, SqliteJournal};
    use oftp::oftp_proto::codec::FileFormat;
    use oftp::stamp::{FileStamp, FileStampExt};

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap()
    }

    struct Setup {
        _dir: tempfile::TempDir,
        root: PathBuf,
        journal: Arc<dyn Journal>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open_in_dir(&root).unwrap());
        Setup {
            _dir: dir,
            root,
            journal,
        }
    }

    fn archive(s: &Setup, enabled: bool, archive_days: u32) -> Archive {
        let settings = ArchiveSettings {
            enabled,
            archive_days,
            ..Default::default()
        };
        let names = HashMap::from([("O0013ACME".to_owned(), "acme".to_owned())]);
        Archive::new(Arc::clone(&s.journal), settings, &s.root, names)
    }

    /// A sent file whose queue row goes through `states`, changed at `at`.
    fn sent(s: &Setup, name: &str, states: &[QueueState], at: DateTime<Utc>) -> (i64, PathBuf) {
        let source = s.root.join(format!("out/.queue/{name}/{name}"));
        std::fs::create_dir_all(source.parent().unwrap()).unwrap();
        std::fs::write(&source, name).unwrap();
        let send = QueuedSend {
            partner: "acme".into(),
            source_path: source.clone(),
            virtual_file_name: name.to_uppercase(),
            destination: None,
            originator: None,
            format: FileFormat::Unstructured,
            max_record_len: 0,
            user_data: String::new(),
            description: String::new(),
        };
        let id = s.journal.enqueue(&send, at).unwrap();
        for st in states {
            s.journal.transition(id, &QueueChange::to(*st, at)).unwrap();
        }
        (id, source)
    }

    /// A received file, complete; its EERP out with `answered`.
    fn received(s: &Setup, name: &str, answered: bool) -> (i64, PathBuf) {
        let path = s.root.join(format!("in/{name}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, name).unwrap();
        let key = FileKey::new(
            oftp::identity::OdetteId::new("ORIG").unwrap(),
            name,
            FileStamp::parse("202603010000000001").unwrap(),
        );
        let j = &s.journal;
        let id = j
            .begin_receive("O0013ACME", &key, &path.with_extension("part"), &path, "")
            .unwrap();
        j.complete_receive(id, &path).unwrap();
        if answered {
            j.mark_end_response_sent("O0013ACME", &key).unwrap();
        }
        (id, path)
    }

    fn month(s: &Setup) -> PathBuf {
        s.root.join("archive/acme/2026/03")
    }

    #[test]
    fn final_files_go_to_archive_partner_year_month_and_others_stay() {
        use QueueState::*;
        let s = setup();
        let (d, d_src) = sent(&s, "delivered", &[InTransfer, Delivered], t(2));
        let (c, c_src) = sent(&s, "cancelled", &[Cancelled], t(2));
        let (_, w_src) = sent(&s, "awaiting", &[InTransfer, Sent], t(2));
        let (_, f_src) = sent(&s, "failed", &[Failed], t(2));
        let (r, r_src) = received(&s, "answered", true);
        let (_, o_src) = received(&s, "owed", false);
        let a = archive(&s, true, 0);
        let report = a.sweep(t(3)).unwrap();
        assert_eq!((report.archived, report.gone), (3, 0), "{report:?}");
        let r_month = {
            let now = Utc::now();
            s.root
                .join(format!("archive/acme/{:04}/{:02}", now.year(), now.month()))
        };
        for (path, content) in [
            (month(&s).join(format!("s{d}-delivered")), "delivered"),
            (month(&s).join(format!("s{c}-cancelled")), "cancelled"),
            (r_month.join(format!("r{r}-answered")), "answered"),
        ] {
            assert_eq!(std::fs::read_to_string(&path).unwrap(), content, "{path:?}");
        }
        for gone in [&d_src, &c_src, &r_src] {
            assert!(!gone.exists(), "{gone:?} was moved");
        }
        for kept in [&w_src, &f_src, &o_src] {
            assert!(kept.exists(), "{kept:?} is not final and stays");
        }
        assert_eq!(
            a.sweep(t(3)).unwrap(),
            SweepReport::default(),
            "a second sweep has nothing to do"
        );
    }

    #[test]
    fn a_sweep_that_died_halfway_is_finished_by_the_next() {
        use QueueState::*;
        let s = setup();
        let (moved, moved_src) = sent(&s, "moved", &[InTransfer, Delivered], t(2));
        let (linked, linked_src) = sent(&s, "linked", &[InTransfer, Delivered], t(2));
        let (_, vanished_src) = sent(&s, "vanished", &[Cancelled], t(2));
        let a = archive(&s, true, 0);
        std::fs::create_dir_all(month(&s)).unwrap();
        // Died after the move, before recording it.
        std::fs::rename(&moved_src, month(&s).join(format!("s{moved}-moved"))).unwrap();
        // Died after the link, before removing the old name.
        std::fs::hard_link(&linked_src, month(&s).join(format!("s{linked}-linked"))).unwrap();
        std::fs::remove_file(&vanished_src).unwrap();
        let report = a.sweep(t(3)).unwrap();
        assert_eq!((report.archived, report.gone), (2, 1), "{report:?}");
        assert!(
            !linked_src.exists(),
            "the old name of a linked file is removed"
        );
        assert_eq!(
            std::fs::read_to_string(month(&s).join(format!("s{linked}-linked"))).unwrap(),
            "linked"
        );
        assert!(a.journal.archive_candidates(10).unwrap().is_empty());
    }

    #[test]
    fn retention_removes_what_is_due_and_nothing_else() {
        use QueueState::*;
        let s = setup();
        let (_, _) = sent(&s, "old", &[InTransfer, Delivered], t(1));
        let a = archive(&s, true, 10);
        a.sweep(t(1)).unwrap(); // archived on day 1
        let (_, _) = sent(&s, "young", &[InTransfer, Delivered], t(5));
        a.sweep(t(5)).unwrap(); // archived on day 5
        let (_, pending) = sent(&s, "pending", &[InTransfer, Sent], t(1));
        let stranger = month(&s).join("someone-elses-file");
        std::fs::write(&stranger, "x").unwrap();
        let archived: Vec<PathBuf> = std::fs::read_dir(month(&s))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(archived.len(), 3);
        // Day 11: "old" is 10 days in the archive, not more: kept.
        let report = archive(&s, false, 10).sweep(t(11)).unwrap();
        assert_eq!(report.deleted, 0, "{report:?}");
        // Day 12: "old" is due; "young" (7 days), the file the archive did not make, and the
        // file still awaiting its EERP are not.
        let report = archive(&s, false, 10).sweep(t(12)).unwrap();
        assert_eq!(report.deleted, 1, "{report:?}");
        let mut left: Vec<String> = std::fs::read_dir(month(&s))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.iter().any(|n| n.ends_with("-young")), "{left:?}");
        assert!(left.contains(&"someone-elses-file".to_owned()), "{left:?}");
        assert!(pending.exists());
        // Deleting twice is harmless; a day later "young" is not due yet either.
        assert_eq!(archive(&s, false, 10).sweep(t(13)).unwrap().deleted, 0);
        assert_eq!(archive(&s, false, 10).sweep(t(16)).unwrap().deleted, 1);
        assert!(
            stranger.exists(),
            "the archive deletes only what it archived"
        );
    }

    #[test]
    fn a_partner_name_cannot_leave_the_archive() {
        assert_eq!(safe_component("../etc"), ".._etc");
        assert_eq!(safe_component(".."), "_..");
        assert_eq!(safe_component("a/b"), "a_b");
    }
}
