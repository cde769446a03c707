//! `restore` end to end against the emulator: back up mailbox A, restore it into mailbox B,
//! back up B, compare A and B message by message; re-runs and interrupted runs restore each
//! message exactly once.

mod common;

use common::*;
use graph_emulator::{AppRegistration, DEFAULT_CLIENT_SECRET, EmulatorConfig, MailboxSpec};
use mailbackup::index::{
    Acquired, HeaderRow, Hit, Index, QuarantinedRow, RestoreRow, RunRow, SavedRow, WorkerRow,
};
use mailbackup::search::{Cursor, Order};
use mailbackup::store::ObjectKey;
use mailbackup::{
    BackupReport, Error, MessageInfo, Placement, Restore, RestoreMode, RestoreRequest, Selection,
    SqliteIndex,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const RW_APP: &str = "restore-app";
const A: &str = "adele@emulator.test";
const B: &str = "megan@emulator.test";
const C: &str = "lynne@emulator.test";

async fn start(a: MailboxSpec) -> graph_emulator::Emulator {
    let mut app = AppRegistration::confidential_client(RW_APP, DEFAULT_CLIENT_SECRET);
    app.application_permissions = vec!["Mail.ReadWrite".into()];
    let mut cfg = EmulatorConfig::default().with_mailboxes(vec![
        a,
        MailboxSpec::new(B).messages(0),
        MailboxSpec::new(C).messages(0),
    ]);
    cfg.apps.push(app);
    emulator_with(cfg).await
}

async fn rw_token(emu: &graph_emulator::Emulator) -> String {
    app_token_of(emu, RW_APP).await
}

async fn backup(emu: &graph_emulator::Emulator, dir: &Path, token: &str, user: &str) {
    let r = builder(emu, dir, token.to_string(), user)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(r.is_success(), "{r:?}");
}

fn restore(
    emu: &graph_emulator::Emulator,
    dir: &Path,
    token: &str,
    placement: Placement,
    mode: RestoreMode,
) -> Restore {
    restore_to(emu, dir, token, B, placement, mode)
}

fn restore_to(
    emu: &graph_emulator::Emulator,
    dir: &Path,
    token: &str,
    to: &str,
    placement: Placement,
    mode: RestoreMode,
) -> Restore {
    let opts = builder(emu, dir, token.to_string(), A)
        .build()
        .unwrap()
        .options()
        .clone();
    Restore::new(
        opts,
        Arc::new(mailbackup::StaticToken::new(format!("Bearer {token}"))),
        RestoreRequest {
            selection: Selection::default(),
            to_user: Some(to.into()),
            placement,
            mode,
        },
    )
}

/// One backed-up message as the comparison sees it.
#[derive(Debug)]
struct Copy {
    info: MessageInfo,
    folder: String,
    mime: Vec<u8>,
}

/// The backup in `dir` by `internetMessageId`.
fn backed_up(dir: &Path, mailbox: &str) -> HashMap<String, Copy> {
    let ix = SqliteIndex::open(&dir.join(".meta/index.sqlite")).unwrap();
    let paths = ix.folder_paths(mailbox).unwrap();
    let saved = ix.saved_map(mailbox).unwrap();
    let mut out = HashMap::new();
    for info in ix.remote_messages(mailbox).unwrap() {
        let row = &saved[&info.id];
        let (_, mime) = split_saved(&std::fs::read(dir.join(row.key.as_str())).unwrap());
        let folder = paths[info.folder_id.as_ref().unwrap()].clone();
        let mid = info.internet_message_id.clone().unwrap();
        let old = out.insert(mid.clone(), Copy { info, folder, mime });
        assert!(old.is_none(), "{mid} is in {mailbox} more than once");
    }
    out
}

fn attachments(mime: &[u8]) -> Vec<(String, Vec<u8>)> {
    use mail_parser::MimeHeaders as _;
    let p = mail_parser::MessageParser::default().parse(mime).unwrap();
    p.attachments()
        .map(|x| {
            (
                x.attachment_name().unwrap_or_default().to_string(),
                x.contents().to_vec(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_restore_into_another_mailbox_keeps_dates_read_state_attachments_and_folders() {
    let emu = start(MailboxSpec::new(A).messages(30).seed(11).large_every(7)).await;
    let token = rw_token(&emu).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    backup(&emu, da.path(), &token, A).await;

    let r = restore(
        &emu,
        da.path(),
        &token,
        Placement::Under("Restored".into()),
        RestoreMode::Json,
    )
    .run()
    .await
    .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!((r.selected, r.restored, r.drafts), (30, 30, 0), "{r:?}");
    assert_eq!(
        (r.throttled, emu.stats().throttled()),
        (0, 0),
        "never more than 4 requests in flight per mailbox (the emulator answers 429 beyond)"
    );

    backup(&emu, db.path(), &token, B).await;
    let (a, b) = (backed_up(da.path(), A), backed_up(db.path(), B));
    assert_eq!(a.len(), 30);
    assert_eq!(b.len(), a.len(), "every message restored once");
    for (mid, x) in &a {
        let y = &b[mid];
        assert_eq!(
            y.folder,
            format!("Restored/{}", x.folder),
            "folder of {mid}"
        );
        assert_eq!(y.info.subject, x.info.subject, "subject of {mid}");
        assert_eq!(y.info.received, x.info.received, "received of {mid}");
        assert_eq!(y.info.sent, x.info.sent, "sent of {mid}");
        assert_eq!(y.info.is_read, x.info.is_read, "read state of {mid}");
        assert_eq!(y.info.from, x.info.from, "from of {mid}");
        assert_eq!(y.info.to, x.info.to, "to of {mid}");
        assert_eq!(
            attachments(&y.mime),
            attachments(&x.mime),
            "attachments of {mid}"
        );
    }
    assert!(
        a.values().any(|x| !attachments(&x.mime).is_empty()),
        "the test has attachments"
    );
    let drafts = emu
        .mailbox(B)
        .expected_messages()
        .iter()
        .filter(|m| m.info.is_draft)
        .count();
    assert_eq!(drafts, 0, "JSON restores are not drafts");

    // A re-run restores nothing.
    let again = restore(
        &emu,
        da.path(),
        &token,
        Placement::Under("Restored".into()),
        RestoreMode::Json,
    )
    .run()
    .await
    .unwrap();
    assert_eq!(
        (again.restored, again.already_restored),
        (0, 30),
        "{again:?}"
    );
    assert_eq!(emu.mailbox(B).expected_messages().len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mime_restore_into_the_original_folders_keeps_the_bytes() {
    let emu = start(MailboxSpec::new(A).messages(20).seed(5)).await;
    let token = rw_token(&emu).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    backup(&emu, da.path(), &token, A).await;
    let r = restore(
        &emu,
        da.path(),
        &token,
        Placement::Original,
        RestoreMode::Mime,
    )
    .run()
    .await
    .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!((r.restored, r.drafts), (20, 20), "{r:?}");
    backup(&emu, db.path(), &token, B).await;
    let (a, b) = (backed_up(da.path(), A), backed_up(db.path(), B));
    assert_eq!(b.len(), a.len());
    for (mid, x) in &a {
        let y = &b[mid];
        assert_eq!(y.folder, x.folder, "folder of {mid}");
        assert!(y.mime == x.mime, "MIME bytes of {mid}");
        assert_eq!(y.info.sent, x.info.sent, "sent of {mid}");
    }
}

/// The SQLite index of the backup in `dir`, except that each record of a created message's
/// target id first asks `on_target_id` (given how many such records came before): an `Err` is
/// returned instead of recording (like a `kill -9` between Graph's answer and the record), and
/// it may take its time first (a slow disk).
struct TargetIdFaults {
    inner: SqliteIndex,
    seen: AtomicUsize,
    on_target_id: Box<dyn Fn(usize) -> Result<(), Error> + Send + Sync>,
}

impl TargetIdFaults {
    fn new(
        dir: &Path,
        on_target_id: impl Fn(usize) -> Result<(), Error> + Send + Sync + 'static,
    ) -> Arc<TargetIdFaults> {
        Arc::new(TargetIdFaults {
            inner: SqliteIndex::open(&dir.join(".meta/index.sqlite")).unwrap(),
            seen: AtomicUsize::new(0),
            on_target_id: Box::new(on_target_id),
        })
    }
}

impl std::fmt::Debug for TargetIdFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetIdFaults")
            .field("inner", &self.inner)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

/// The index error of a process that died before recording a target id.
fn died_before_recording() -> Error {
    Error::Index {
        location: "injected: the process died before recording the target id".into(),
        source: Box::new(std::io::Error::other("injected")),
    }
}

impl Index for TargetIdFaults {
    fn start_run(&self) -> Result<i64, Error> {
        self.inner.start_run()
    }
    fn finish_run(&self, report: &BackupReport) -> Result<(), Error> {
        self.inner.finish_run(report)
    }
    fn last_run(&self) -> Result<Option<RunRow>, Error> {
        self.inner.last_run()
    }
    fn record_saved(&self, row: &SavedRow) -> Result<(), Error> {
        self.inner.record_saved(row)
    }
    fn remove_saved(&self, mailbox: &str, id: &str) -> Result<(), Error> {
        self.inner.remove_saved(mailbox, id)
    }
    fn saved(&self, mailbox: Option<&str>) -> Result<Vec<SavedRow>, Error> {
        self.inner.saved(mailbox)
    }
    fn saved_counts(&self) -> Result<Vec<(String, u64, u64)>, Error> {
        self.inner.saved_counts()
    }
    fn apply_remote(
        &self,
        mailbox: &str,
        folder: &str,
        items: &[MessageInfo],
        removed: &[String],
    ) -> Result<(), Error> {
        self.inner.apply_remote(mailbox, folder, items, removed)
    }
    fn remote_ids_in_folder(&self, mailbox: &str, folder: &str) -> Result<HashSet<String>, Error> {
        self.inner.remote_ids_in_folder(mailbox, folder)
    }
    fn remove_remote(&self, mailbox: &str, id: &str) -> Result<(), Error> {
        self.inner.remove_remote(mailbox, id)
    }
    fn remote_messages(&self, mailbox: &str) -> Result<Vec<MessageInfo>, Error> {
        self.inner.remote_messages(mailbox)
    }
    fn delta_link(&self, mailbox: &str, folder: &str) -> Result<Option<String>, Error> {
        self.inner.delta_link(mailbox, folder)
    }
    fn set_delta_link(
        &self,
        mailbox: &str,
        folder: &str,
        name: &str,
        link: Option<&str>,
    ) -> Result<(), Error> {
        self.inner.set_delta_link(mailbox, folder, name, link)
    }
    fn known_folders(&self, mailbox: &str) -> Result<Vec<String>, Error> {
        self.inner.known_folders(mailbox)
    }
    fn drop_folder(&self, mailbox: &str, folder: &str) -> Result<(), Error> {
        self.inner.drop_folder(mailbox, folder)
    }
    fn folder_counts(&self) -> Result<Vec<(String, u64)>, Error> {
        self.inner.folder_counts()
    }
    fn folder_paths(&self, mailbox: &str) -> Result<HashMap<String, String>, Error> {
        self.inner.folder_paths(mailbox)
    }
    fn record_restore(&self, row: &RestoreRow) -> Result<(), Error> {
        if row.target_id.is_some() {
            (self.on_target_id)(self.seen.fetch_add(1, Ordering::SeqCst))?;
        }
        self.inner.record_restore(row)
    }
    fn restore_log(&self, source: &str, target: &str) -> Result<Vec<RestoreRow>, Error> {
        self.inner.restore_log(source, target)
    }
    fn record_message(&self, row: &SavedRow, headers: &HeaderRow) -> Result<(), Error> {
        self.inner.record_message(row, headers)
    }
    fn record_headers(&self, headers: &HeaderRow) -> Result<(), Error> {
        self.inner.record_headers(headers)
    }
    fn saved_without_headers(&self) -> Result<Vec<SavedRow>, Error> {
        self.inner.saved_without_headers()
    }
    fn select(
        &self,
        selection: &Selection,
        order: Order,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Hit>, Error> {
        self.inner.select(selection, order, after, limit)
    }
    fn count(&self, selection: &Selection, at_most: u64) -> Result<u64, Error> {
        self.inner.count(selection, at_most)
    }
    fn flag(&self, name: &str) -> Result<bool, Error> {
        self.inner.flag(name)
    }
    fn set_flag(&self, name: &str) -> Result<(), Error> {
        self.inner.set_flag(name)
    }
    fn record_quarantined(&self, row: &QuarantinedRow) -> Result<(), Error> {
        self.inner.record_quarantined(row)
    }
    fn quarantined(&self) -> Result<Vec<QuarantinedRow>, Error> {
        self.inner.quarantined()
    }
    fn remove_quarantined(&self, key: &ObjectKey) -> Result<(), Error> {
        self.inner.remove_quarantined(key)
    }
    fn register_worker(&self, worker: &str, ttl: std::time::Duration) -> Result<(), Error> {
        self.inner.register_worker(worker, ttl)
    }
    fn acquire_lease(
        &self,
        worker: &str,
        mailboxes: &[String],
        ttl: std::time::Duration,
    ) -> Result<Acquired, Error> {
        self.inner.acquire_lease(worker, mailboxes, ttl)
    }
    fn heartbeat(
        &self,
        worker: &str,
        progress: &[(String, u64)],
        ttl: std::time::Duration,
    ) -> Result<Vec<String>, Error> {
        self.inner.heartbeat(worker, progress, ttl)
    }
    fn release_lease(&self, worker: &str, mailbox: &str, done: bool) -> Result<(), Error> {
        self.inner.release_lease(worker, mailbox, done)
    }
    fn finish_worker(&self, worker: &str) -> Result<(), Error> {
        self.inner.finish_worker(worker)
    }
    fn workers(&self) -> Result<Vec<WorkerRow>, Error> {
        self.inner.workers()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_interrupted_between_create_and_record_then_resumed_restores_each_message_once() {
    let emu = start(MailboxSpec::new(A).messages(40).seed(3).large_every(9)).await;
    let token = rw_token(&emu).await;
    let da = tempfile::tempdir().unwrap();
    backup(&emu, da.path(), &token, A).await;
    // One target mailbox per mode: the restore log keeps a message restored into a mailbox
    // from being restored there again, whatever the mode.
    for (mode, to) in [(RestoreMode::Json, B), (RestoreMode::Mime, C)] {
        let lossy = TargetIdFaults::new(da.path(), |n| {
            if n >= 10 {
                Err(died_before_recording())
            } else {
                Ok(())
            }
        });
        let placement = Placement::Under("Restored".into());
        let first = restore_to(&emu, da.path(), &token, to, placement.clone(), mode)
            .index(lossy)
            .run()
            .await
            .unwrap();
        assert!(
            first.stopped.is_some(),
            "the injected crash stops the run: {first:?}"
        );
        let created = emu.mailbox(to).expected_messages().len();
        assert!(
            (10..40).contains(&created),
            "the first run created {created}"
        );
        let second = restore_to(&emu, da.path(), &token, to, placement, mode)
            .run()
            .await
            .unwrap();
        assert!(second.is_success(), "{second:?}");
        assert!(second.adopted >= 1, "{second:?}");
        assert_eq!(
            second.already_restored + second.adopted + second.restored,
            40,
            "{first:?} {second:?}"
        );
        // Exactly once in the target, whatever the crash left.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for m in emu.mailbox(to).expected_messages() {
            *seen.entry(m.info.internet_message_id).or_default() += 1;
        }
        let a_ids: HashSet<String> = emu
            .mailbox(A)
            .expected_messages()
            .into_iter()
            .map(|m| m.info.internet_message_id)
            .collect();
        assert_eq!(seen.len(), a_ids.len(), "{mode:?}");
        for id in &a_ids {
            assert_eq!(seen.get(id), Some(&1), "copies of {id} ({mode:?})");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_stopped_by_a_fatal_error_returns_once_the_messages_it_started_are_recorded() {
    let emu = start(MailboxSpec::new(A).messages(40).seed(3)).await;
    let token = rw_token(&emu).await;
    let da = tempfile::tempdir().unwrap();
    backup(&emu, da.path(), &token, A).await;
    // The first target id fails to record (a fatal index error) once a second message exists
    // in the target, so that another message is under way when the run stops; every other
    // target id takes a second to record (a slow disk).
    let target = emu.mailbox(B);
    let ix = TargetIdFaults::new(da.path(), move |n| {
        if n == 0 {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while target.message_count() < 2 && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(died_before_recording())
        } else {
            std::thread::sleep(std::time::Duration::from_secs(1));
            Ok(())
        }
    });
    let report = restore(
        &emu,
        da.path(),
        &token,
        Placement::Under("Restored".into()),
        RestoreMode::Json,
    )
    .index(ix)
    .run()
    .await
    .unwrap();
    assert!(report.stopped.is_some(), "{report:?}");
    // Looked at the moment the run returned: the messages it had started are settled, not
    // still being created or recorded behind its back (where the next run could miss them).
    let created = emu.mailbox(B).messages();
    let log = SqliteIndex::open(&da.path().join(".meta/index.sqlite"))
        .unwrap()
        .restore_log(A, B)
        .unwrap();
    let recorded: HashSet<String> = log.iter().filter_map(|r| r.target_id.clone()).collect();
    let unrecorded: Vec<&str> = created
        .iter()
        .filter(|m| !recorded.contains(&m.id) && !recorded.contains(&m.immutable_id))
        .map(|m| m.internet_message_id.as_str())
        .collect();
    assert!(created.len() >= 2, "{report:?}");
    assert_eq!(
        unrecorded.len(),
        1,
        "only the message whose record failed lacks its target id: {unrecorded:?} ({} created, {} recorded) {report:?}",
        created.len(),
        recorded.len()
    );
    assert_eq!(report.restored, recorded.len() as u64, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_folder_names_ignore_case_like_search_and_exchange() {
    let emu = start(MailboxSpec::new(A).messages(60).seed(5)).await;
    let token = rw_token(&emu).await;
    let da = tempfile::tempdir().unwrap();
    backup(&emu, da.path(), &token, A).await;
    // `Inbox/Projects` and `Inbox/Projects/2024 / Q1 — Überblick`, written in another case
    // (the `Ü` too: SQLite's own lower() folds ASCII only).
    let folder = "INBOX/projects/2024 %2F q1 — üBERBLICK";
    let ix = SqliteIndex::open(&da.path().join(".meta/index.sqlite")).unwrap();
    let query = |q: &str| Selection {
        query: mailbackup::search::Query::parse(q).unwrap(),
        ..Default::default()
    };
    let found = ix
        .count(&query(&format!("folder:\"{folder}\"")), u64::MAX)
        .unwrap();
    let exact = ix
        .count(
            &query("folder:\"Inbox/Projects/2024 %2F Q1 — Überblick\""),
            u64::MAX,
        )
        .unwrap();
    assert!(exact > 0, "the emulator has messages in that folder");
    assert_eq!(found, exact, "search ignores case, non-ASCII letters too");
    let projects = ix.count(&query("folder:inbox/PROJECTS"), u64::MAX).unwrap();
    assert!(projects > exact, "messages directly in Inbox/Projects too");

    // The target names the folder in another case: Exchange would refuse to create `Projects`
    // next to `PROJECTS` (409 ErrorFolderExists); the restore uses the existing folder.
    emu.mailbox(B)
        .rename_folder("Inbox/Projects", "PROJECTS")
        .unwrap();
    let opts = builder(&emu, da.path(), token.clone(), A)
        .build()
        .unwrap()
        .options()
        .clone();
    let selection = Selection {
        folder: Some("inbox/PROJECTS".into()),
        ..Default::default()
    };
    let r = Restore::new(
        opts,
        Arc::new(mailbackup::StaticToken::new(format!("Bearer {token}"))),
        RestoreRequest {
            selection,
            to_user: Some(B.into()),
            placement: Placement::Original,
            mode: RestoreMode::Json,
        },
    )
    .run()
    .await
    .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        r.restored, projects,
        "restore selects what search finds: {r:?}"
    );
    assert_eq!(r.folders_created, 0, "existing folders are used: {r:?}");
    let mut paths: Vec<String> = emu
        .mailbox(B)
        .messages()
        .into_iter()
        .map(|m| m.folder_path)
        .collect();
    paths.dedup();
    paths.sort();
    paths.dedup();
    assert_eq!(
        paths,
        ["Inbox/PROJECTS", "Inbox/PROJECTS/2024 / Q1 — Überblick"],
        "into the target's folders"
    );
}
