//! `restore`: messages of a backup back into a mailbox over Graph (`Mail.ReadWrite`).
//!
//! What is restored: the saved copies of one mailbox of the backup that match a [`Selection`]
//! (the one `search` and `export` take: folder path, creation date range, messages by key or
//! Graph id, a search query), as the index answers it. Where: the same mailbox or another one, into the
//! original folders (created when missing, the tree kept) or below one new folder
//! ([`Placement::Under`], the tree kept below it).
//!
//! How ([`RestoreMode`], see `docs/mailbackup-restore-fidelity.md`):
//! - [`RestoreMode::Json`] (default): the message is created from JSON built from the backed-up
//!   MIME, with `PidTagMessageFlags` (not a draft, the read state), `PidTagMessageDeliveryTime`
//!   (the original `receivedDateTime`) and `PidTagClientSubmitTime` (the `Date`). Attachments go
//!   in the creating `POST` as long as the request stays under 3 MB; larger ones through upload
//!   sessions afterwards.
//! - [`RestoreMode::Mime`]: the MIME bytes are posted as they are (exact, but a draft, received
//!   at restore time). A message over 3 MB (4 MB once base64-encoded) cannot be created that
//!   way: it falls back to JSON, counted in the report.
//!
//! Idempotence and crashes: the index's restore log ([`crate::index::RestoreRow`]) holds one row
//! per source message and target mailbox. Before the create request the attempt is recorded
//! (no target id, its start time); once Graph answered with the new id, the id is recorded;
//! once large attachments are uploaded, the row is complete. A re-run restores nothing that has
//! a target id. The window between Graph creating a message and the id being recorded (a
//! `kill -9`, a lost answer) is closed by looking, before a message with an attempt row is
//! created again, for an orphan: a message in the target folder created since the attempt
//! started (minus 5 minutes of clock skew) with the same `internetMessageId` (else subject)
//! and not already in the log. An orphan is adopted, not created twice. (Graph has no
//! client-settable marker that can be searched and that a MIME create keeps; the
//! `internetMessageId` is kept by both ways of creating.) A row with a target id but not
//! complete gets its large attachments uploaded again (one could then be there twice, never
//! missing). A run stopped by an error (the index or the store failing, a revoked token, the
//! time limit, a `403`) or aborted starts no message and sends no create after that, but
//! awaits the messages already under way before it returns: a create still being served
//! when the next run looks for orphans would otherwise be missed, and the message created
//! twice.
//!
//! Politeness is the backup's: the same Graph client, the mailbox's gate (at most 4
//! requests in flight), `Retry-After`, the request budget, the time limit. A `403` on a write is
//! [`Error::WritePermission`], which stops the restore.

use crate::engine::blocking;
use crate::error::Error;
use crate::graph::{Body, Gate, Graph, Page, encode_segment};
use crate::hooks::MessageInfo;
use crate::index::{INDEX_FILE, Index, RestoreRow, SqliteIndex};
use crate::lock::RunLock;
use crate::options::Options;
use crate::report::{FailedMessage, Phase, Progress};
use crate::reporter::Reporter;
use crate::store::{LocalStore, MessageStore, ObjectKey, folder_path};
use crate::token::TokenSource;
use crate::{META_DIR, NoHooks};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

mod folders;
mod prepare;
mod report;
mod selection;
mod upload;
pub use crate::search::Selection;
use prepare::prepare;
pub use report::RestoreReport;
use selection::select;

/// Largest request body Graph takes is 4 MB; a create (MIME in base64, or JSON with inline
/// attachments) is kept under this many bytes of content.
pub const MAX_INLINE_BYTES: usize = 3 * 1000 * 1000;
/// Clock skew allowed between this machine and Graph when looking for orphans.
const ORPHAN_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// How a message is created in the target mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreMode {
    /// From JSON: not a draft, original dates and read state, attachments re-attached.
    #[default]
    Json,
    /// From the MIME bytes: exact, but a draft received at restore time.
    Mime,
}

impl RestoreMode {
    fn as_str(self) -> &'static str {
        match self {
            RestoreMode::Json => "json",
            RestoreMode::Mime => "mime",
        }
    }
}

/// Where restored messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Into the folders they were backed up from (created when missing).
    Original,
    /// Below one top-level folder of this name, the folder tree kept below it.
    Under(String),
}

/// What to restore where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The messages.
    pub selection: Selection,
    /// Target mailbox (`me`, a user id or principal name); `None` = the source mailbox.
    pub to_user: Option<String>,
    /// Original folders or one new folder.
    pub placement: Placement,
    /// JSON (default) or MIME.
    pub mode: RestoreMode,
}

/// A configured restore. Run it with [`Restore::run`]; abort with [`Restore::cancel_token`].
pub struct Restore {
    opts: Arc<Options>,
    tokens: Arc<dyn TokenSource>,
    request: RestoreRequest,
    index: Option<Arc<dyn Index>>,
    store: Option<Arc<dyn MessageStore>>,
    cancel: CancellationToken,
    progress: Arc<Progress>,
}

/// A backed-up message with what the restore needs.
#[derive(Debug, Clone)]
struct Candidate {
    key: ObjectKey,
    info: MessageInfo,
    folder_path: Option<String>,
}

/// A message found in the target (for orphans).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Existing {
    id: String,
    #[serde(default)]
    internet_message_id: Option<String>,
    #[serde(default)]
    subject: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    id: String,
}

/// A large attachment to upload after the create.
struct Upload {
    name: String,
    content_type: String,
    content_id: Option<String>,
    inline: bool,
    bytes: Vec<u8>,
}

/// The create request of a message and what follows it.
struct Prepared {
    mode: RestoreMode,
    /// The create request's body.
    body: Body,
    uploads: Vec<Upload>,
    message_id: Option<String>,
    subject: Option<String>,
    fell_back: bool,
}

/// Shared state of a run.
struct Run {
    graph: Graph,
    gate: Gate,
    index: Arc<dyn Index>,
    store: Arc<dyn MessageStore>,
    reporter: Reporter,
    source: String,
    target: String,
    mode: RestoreMode,
    /// Target folder path ([`folder_path::fold`]ed: Exchange ignores case) -> id (filled as
    /// folders are found or created).
    folders: Mutex<HashMap<String, String>>,
    /// Target ids in the log (an orphan is never one of them).
    known_targets: std::sync::Mutex<HashSet<String>>,
    /// Created folders.
    folders_created: std::sync::atomic::AtomicU64,
    /// Retries of a create after a transient error.
    max_retries: u32,
    /// Set by the first error that stops the run: no message starts, and no create is sent,
    /// after it.
    stopped: std::sync::atomic::AtomicBool,
}

enum Done {
    Restored { draft: bool, fell_back: bool },
    Adopted,
}

impl Restore {
    /// A restore from the backup whose options are `opts` (data folder, Graph URL, retries,
    /// connections, time limit: build them with [`crate::BackupBuilder`]).
    pub fn new(opts: Options, tokens: Arc<dyn TokenSource>, request: RestoreRequest) -> Restore {
        Restore {
            opts: Arc::new(opts),
            tokens,
            request,
            index: None,
            store: None,
            cancel: CancellationToken::new(),
            progress: Arc::new(Progress::default()),
        }
    }

    /// Reads the messages from this store instead of the data folder (`--store`).
    pub fn message_store(mut self, store: Arc<dyn MessageStore>) -> Restore {
        self.store = Some(store);
        self
    }

    /// Uses this index instead of the SQLite index of the data folder.
    pub fn index(mut self, index: Arc<dyn Index>) -> Restore {
        self.index = Some(index);
        self
    }

    /// The token that aborts the run: no new message starts; messages being created finish.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Live counters: one entry for the target mailbox; `message_count` is the selection,
    /// `processed` the messages dealt with, `saved` those restored by this run.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Runs the restore. `Err` when it cannot start (no backup, lock held, unknown mailbox);
    /// failures of messages, and a stop for the whole mailbox, are in the report.
    pub async fn run(&self) -> Result<RestoreReport, Error> {
        let started = std::time::Instant::now();
        let opts = self.opts.clone();
        let _lock = RunLock::acquire(&opts.working_folder)?;
        let path = opts.data_folder.join(META_DIR).join(INDEX_FILE);
        if self.index.is_none() && !path.exists() {
            return Err(Error::InvalidOption {
                option: "DataFolder",
                reason: format!(
                    "{} holds no backup (no {}); give the folder a backup was made into",
                    opts.data_folder.display(),
                    path.display()
                ),
            });
        }
        let index: Arc<dyn Index> = match &self.index {
            Some(ix) => ix.clone(),
            None => {
                blocking(move || Ok(Arc::new(SqliteIndex::open(&path)?) as Arc<dyn Index>)).await?
            }
        };
        let store: Arc<dyn MessageStore> = match &self.store {
            Some(s) => s.clone(),
            None => Arc::new(LocalStore::new(&opts.data_folder)),
        };
        let sel = self.request.selection.clone();
        let (ix, st) = (index.clone(), store.clone());
        let (source, candidates) = blocking(move || select(&*ix, &*st, &sel)).await?;
        let target = self
            .request
            .to_user
            .clone()
            .unwrap_or_else(|| source.clone());
        let progress = self.progress.add(&target);
        progress.set_phase(Phase::Initialization);
        let reporter = Reporter::new(Arc::new(NoHooks));
        let graph = Graph::new(
            opts.clone(),
            self.tokens.clone(),
            self.cancel.clone(),
            reporter.clone(),
        )?;
        let gate = Gate::new(&opts, progress.clone())?;
        let (s, t) = (source.clone(), target.clone());
        let ix = index.clone();
        let log = blocking(move || ix.restore_log(&s, &t)).await?;
        let log: HashMap<String, RestoreRow> =
            log.into_iter().map(|r| (r.source_id.clone(), r)).collect();
        let run = Run {
            known_targets: std::sync::Mutex::new(
                log.values().filter_map(|r| r.target_id.clone()).collect(),
            ),
            graph,
            gate,
            index,
            store,
            reporter,
            source: source.clone(),
            target: target.clone(),
            mode: self.request.mode,
            folders: Mutex::new(HashMap::new()),
            folders_created: Default::default(),
            max_retries: opts.max_retry_count,
            stopped: Default::default(),
        };
        let mut report = RestoreReport {
            source,
            target,
            selected: candidates.len() as u64,
            ..Default::default()
        };
        progress
            .message_count
            .store(report.selected, Ordering::Relaxed);
        let todo: Vec<Candidate> = candidates
            .into_iter()
            .filter(|c| {
                let done = log.get(&c.info.id).is_some_and(|r| r.complete);
                if done {
                    report.already_restored += 1;
                    progress.processed.fetch_add(1, Ordering::Relaxed);
                }
                !done
            })
            .collect();
        let result = async {
            run.load_target_folders().await?;
            let root = match &self.request.placement {
                Placement::Original => String::new(),
                Placement::Under(name) => {
                    let root = folder_path::join(&[name]);
                    run.ensure_folder(&root).await?;
                    root
                }
            };
            progress.set_phase(Phase::Backup);
            let placement = &self.request.placement;
            // After an error that stops the run, the messages already started are still
            // awaited (their creates answered, their rows written), so that once `run`
            // returns nothing of it is under way: a create still being served, or a row still
            // being written, could be missed by the next run's look for orphans.
            let mut fatal = None;
            let mut results = stream::iter(todo.iter())
                .take_while(|_| std::future::ready(!run.stopped.load(Ordering::SeqCst)))
                .map(|c| {
                    let row = log.get(&c.info.id).cloned();
                    let root = root.clone();
                    let run = &run;
                    async move {
                        let folder = match placement {
                            Placement::Original => {
                                c.folder_path.clone().unwrap_or_else(|| "Inbox".into())
                            }
                            Placement::Under(_) => match c.folder_path.as_deref() {
                                Some(p) if !p.is_empty() => format!("{root}/{p}"),
                                _ => root.clone(),
                            },
                        };
                        (c, run.restore_one(c, &folder, row).await)
                    }
                })
                .buffer_unordered(opts.connections_per_mailbox.max(1) * 2);
            while let Some((c, r)) = results.next().await {
                progress.processed.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(Done::Restored { draft, fell_back }) => {
                        report.restored += 1;
                        report.drafts += u64::from(draft);
                        report.mime_fallbacks += u64::from(fell_back);
                        progress.saved.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Done::Adopted) => report.adopted += 1,
                    Err(e) if e.is_fatal_for_mailbox() => {
                        run.stopped.store(true, Ordering::SeqCst);
                        fatal.get_or_insert(e);
                    }
                    Err(e) => {
                        progress.failed.fetch_add(1, Ordering::Relaxed);
                        run.reporter.error(&format!(
                            "message {} ({}) not restored: {e}",
                            c.info.id, c.key
                        ));
                        report.failed.push(FailedMessage {
                            id: c.info.id.clone(),
                            code: e.code(),
                            message: format!("{} ({e})", c.key),
                        });
                    }
                }
            }
            fatal.map_or(Ok(()), Err)
        }
        .await;
        if let Err(e) = result {
            report.stopped = Some(e.to_string());
            if let Error::WritePermission { .. } = e {
                return Err(e);
            }
        }
        progress.set_phase(Phase::None);
        report.folders_created = run.folders_created.load(Ordering::Relaxed);
        report.requests = progress.requests();
        report.throttled = progress.throttled();
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

impl Run {
    fn mbp(&self) -> String {
        Graph::mailbox_path(&self.target)
    }

    /// Turns a 403 on a write into [`Error::WritePermission`].
    fn write_error(&self, e: Error) -> Error {
        match e {
            Error::Graph {
                status: 403,
                code,
                message,
            } => Error::WritePermission {
                mailbox: self.target.clone(),
                code,
                message,
            },
            e => e,
        }
    }

    async fn post_json(&self, url: &str, body: &Value) -> Result<Bytes, Error> {
        let body = Body::new(
            "application/json",
            serde_json::to_vec(body).unwrap_or_default(),
        );
        self.post(url, &body).await
    }

    async fn post(&self, url: &str, body: &Body) -> Result<Bytes, Error> {
        self.graph
            .send(&self.gate, reqwest::Method::POST, url, Some(body), None)
            .await
            .map_err(|e| self.write_error(e))
    }

    /// `Err(Aborted)` once the run is aborted or stopped by an error: nothing new is sent.
    fn going_on(&self) -> Result<(), Error> {
        if self.graph.is_cancelled() || self.stopped.load(Ordering::SeqCst) {
            return Err(Error::Aborted);
        }
        Ok(())
    }

    async fn record(&self, row: RestoreRow) -> Result<(), Error> {
        let ix = self.index.clone();
        blocking(move || ix.record_restore(&row)).await
    }

    /// Restores one message into the folder at `folder` (a path of the target).
    async fn restore_one(
        &self,
        c: &Candidate,
        folder: &str,
        row: Option<RestoreRow>,
    ) -> Result<Done, Error> {
        self.going_on()?;
        let folder_id = self.ensure_folder(folder).await?;
        let key = c.key.clone();
        let store = self.store.clone();
        let mime = blocking(move || read_object(&*store, &key)).await?;
        let prepared = prepare(self.mode, &mime, &c.info)?;
        let fresh = row.is_none();
        let mut row = match row {
            Some(r) => r,
            None => {
                let r = RestoreRow {
                    source_mailbox: self.source.clone(),
                    source_id: c.info.id.clone(),
                    source_key: c.key.clone(),
                    target_mailbox: self.target.clone(),
                    target_id: None,
                    complete: false,
                    started: chrono::Utc::now().to_rfc3339(),
                    mode: prepared.mode.as_str().into(),
                };
                // Recorded before the create, so that a crash after it makes the next run look
                // for an orphan instead of creating the message twice.
                self.record(r.clone()).await?;
                r
            }
        };
        let mut adopted = false;
        // An attempt row from an earlier run: that attempt may have created the message.
        let mut may_exist = row.target_id.is_none() && !fresh;
        let mut attempt = 0;
        while row.target_id.is_none() {
            if may_exist && let Some(id) = self.find_orphan(&row, &prepared).await? {
                self.reporter.info(&format!(
                    "message {} was created by an interrupted attempt as {id}; recorded, not created again",
                    c.info.id
                ));
                row.target_id = Some(id);
                adopted = true;
                break;
            }
            self.going_on()?;
            let url = self.graph.url(
                &format!(
                    "{}/mailFolders/{}/messages",
                    self.mbp(),
                    encode_segment(&folder_id)
                ),
                &[],
            );
            match self.post(&url, &prepared.body).await {
                Ok(body) => row.target_id = Some(parse::<Created>(&url, &body)?.id),
                Err(e) if e.is_transient() && attempt < self.max_retries => {
                    attempt += 1;
                    // The request may have created the message before failing.
                    may_exist = true;
                    self.reporter.info(&format!(
                        "creating message {}: {e}; retry {attempt} of {} (after looking for a copy the failed attempt may have created)",
                        c.info.id, self.max_retries
                    ));
                    self.graph.retry_pause().await?;
                }
                Err(e) => return Err(e),
            }
            row.mode = prepared.mode.as_str().into();
        }
        let target_id = row.target_id.clone().unwrap_or_default();
        self.known_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target_id.clone());
        row.complete = prepared.uploads.is_empty();
        self.record(row.clone()).await?;
        if !row.complete {
            for u in &prepared.uploads {
                self.upload(&target_id, u).await?;
            }
            row.complete = true;
            self.record(row).await?;
        }
        Ok(if adopted {
            Done::Adopted
        } else {
            Done::Restored {
                draft: prepared.mode == RestoreMode::Mime,
                fell_back: prepared.fell_back,
            }
        })
    }

    /// A message of the target mailbox that an interrupted attempt created: created since the
    /// attempt started, same `internetMessageId` (else subject), not in the log. Mailbox-wide,
    /// so that the folder the attempt used does not matter.
    async fn find_orphan(
        &self,
        row: &RestoreRow,
        prepared: &Prepared,
    ) -> Result<Option<String>, Error> {
        let since = chrono::DateTime::parse_from_rfc3339(&row.started)
            .map(|d| d.with_timezone(&chrono::Utc) - ORPHAN_SKEW)
            .unwrap_or_else(|_| chrono::Utc::now() - chrono::Duration::days(1));
        let filter = format!(
            "createdDateTime ge {}",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let mut url = self.graph.url(
            &format!("{}/messages", self.mbp()),
            &[
                ("$filter", &filter),
                ("$select", "id,internetMessageId,subject"),
                ("$top", "100"),
            ],
        );
        for _ in 0..10_000 {
            let page: Page<Existing> = self.graph.page(&self.gate, &url, None).await?;
            for m in page.value {
                let same = match &prepared.message_id {
                    Some(mid) => m.internet_message_id.as_deref() == Some(mid.as_str()),
                    None => m.subject == prepared.subject,
                };
                if same {
                    let mut known = self.known_targets.lock().unwrap_or_else(|p| p.into_inner());
                    if known.insert(m.id.clone()) {
                        return Ok(Some(m.id));
                    }
                }
            }
            match page.next_link {
                Some(n) => url = n,
                None => break,
            }
        }
        Ok(None)
    }
}

fn parse<T: serde::de::DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Protocol {
        url: crate::graph::strip_query(url),
        reason: format!("cannot decode the answer: {e}"),
    })
}

/// The MIME of a stored object, without the backup header line.
fn read_object(store: &dyn MessageStore, key: &ObjectKey) -> Result<Vec<u8>, Error> {
    let mut r = store.open(key)?.ok_or_else(|| {
        Error::io(
            format!("the backed-up copy {} is missing", store.locate(key)),
            std::io::ErrorKind::NotFound.into(),
        )
    })?;
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("cannot read {}", store.locate(key)), e))?;
    let first = bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
    let is_ours = std::str::from_utf8(&bytes[..first])
        .ok()
        .and_then(crate::BackupHeader::parse)
        .is_some();
    if is_ours {
        bytes.drain(..first);
    }
    Ok(bytes)
}
