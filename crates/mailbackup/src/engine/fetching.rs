//! Backup phase: for each listed message, decide (unchanged, adopt, hook), fetch its MIME, put
//! it into the message store and only then record it in the index.
//!
//! Two bounds per mailbox apply to a download. Graph's request permits (the [`Gate`], 4) cover
//! the request only, so a save (store write and index commit, two fsyncs and a commit locally)
//! never holds one of Graph's places. The [`Unrecorded`] bound (twice the permits, 8) covers a
//! message from before its request until it is recorded (or given up): it is what a worker
//! killed at any moment has downloaded and not recorded, and so all that the next holder of the
//! mailbox downloads again.

use super::{Ctx, blocking, default_key};
use crate::error::Error;
use crate::graph::Gate;
use crate::hooks::{
    BeforeAction, ErrorAction, FetchedAction, LogLevel, MessageFailure, MessageInfo,
};
use crate::index::SavedRow;
use crate::report::FailedMessage;
use crate::store::{self, BackupHeader, ObjectKey};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A mailbox's bound on the messages whose download has started and that are not yet recorded
/// in the index (stored and recorded, or given up): all that a worker killed at any moment
/// loses, which the next holder of the mailbox downloads again.
///
/// It is twice the mailbox's request permits (8 with Graph's 4), so that saves overlap the
/// requests without taking their places: while up to 4 messages are being saved (a local save
/// takes about 20 ms, a remote store's longer), 4 more can be downloading. With the permits
/// alone as the bound (a download keeping its request permit until recorded), each of Graph's
/// 4 places sat idle during the save (README, "Performance", for the figures).
pub(super) struct Unrecorded(Semaphore);

impl Unrecorded {
    /// The bound for one mailbox: twice its request permits.
    pub(super) fn bound(opts: &crate::options::Options) -> usize {
        2 * opts.connections_per_mailbox.max(1)
    }

    /// An empty bound for one mailbox.
    pub(super) fn new(opts: &crate::options::Options) -> Unrecorded {
        Unrecorded(Semaphore::new(Self::bound(opts)))
    }

    async fn acquire(&self) -> Result<SemaphorePermit<'_>, Error> {
        self.0.acquire().await.map_err(|_| Error::Aborted)
    }
}

/// Outcome of one message in the backup phase.
pub(super) enum Outcome {
    Saved(u64),
    Unchanged,
    Skipped,
    Gone,
    Failed(FailedMessage),
    Fatal(Error),
    NotAttempted,
}

/// What the index and the store hold for a mailbox when its backup phase starts.
pub(super) struct Known {
    /// Saved copies by message id.
    saved: HashMap<String, SavedRow>,
    /// Objects present in the store under the mailbox's prefix (one listing instead of one
    /// lookup per message).
    present: HashSet<ObjectKey>,
    /// The prefix `present` covers (`""`: the whole store).
    listed_prefix: String,
}

impl Known {
    pub(super) async fn load(ctx: &Ctx, mailbox: &str, prefix: &str) -> Result<Known, Error> {
        let mb = mailbox.to_string();
        let saved = ctx.index(move |ix| ix.saved_map(&mb)).await?;
        let listed_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let p = listed_prefix.clone();
        let present = ctx.store(move |s| s.list(&p)).await?.into_iter().collect();
        Ok(Known {
            saved,
            present,
            listed_prefix,
        })
    }

    /// Whether the store holds `key` (asked directly for a key outside the listed prefix, e.g.
    /// one a hook chose).
    async fn is_present(&self, ctx: &Ctx, key: &ObjectKey) -> bool {
        if key.as_str().starts_with(&self.listed_prefix) {
            return self.present.contains(key);
        }
        let k = key.clone();
        ctx.store(move |s| s.size(&k))
            .await
            .is_ok_and(|size| size.is_some())
    }
}

/// Runs the `message_error` hook; `Ok(true)` to retry (after the pause), `Ok(false)` to give up.
async fn decide_retry(
    ctx: &Ctx,
    info: &MessageInfo,
    e: &Error,
    attempt: u32,
) -> Result<bool, Error> {
    let proposed = if attempt <= ctx.opts.max_retry_count && e.is_transient() {
        ErrorAction::Retry
    } else {
        ErrorAction::Skip
    };
    let failure = MessageFailure {
        info,
        code: e.code(),
        message: e.to_string(),
        attempt,
    };
    let action = ctx.hooks.message_error(&failure, proposed);
    let retry = action == ErrorAction::Retry;
    ctx.reporter.log(
        if retry {
            LogLevel::Info
        } else {
            LogLevel::Error
        },
        &format!(
            "{}: message {}: {} ({}); {}",
            info.mailbox,
            info.id,
            e,
            attempt,
            if retry { "retrying" } else { "giving up" }
        ),
    );
    if retry {
        ctx.graph.retry_pause().await?;
    }
    Ok(retry)
}

/// After a failed attempt: `None` to try again (the pause is over), else how the message ends.
async fn after_failure(
    ctx: &Ctx,
    info: &MessageInfo,
    e: Error,
    attempt: &mut u32,
) -> Option<Outcome> {
    *attempt += 1;
    match decide_retry(ctx, info, &e, *attempt).await {
        Ok(true) => None,
        Ok(false) => Some(Outcome::Failed(FailedMessage {
            id: info.id.clone(),
            code: e.code(),
            message: e.to_string(),
        })),
        Err(fatal) => Some(Outcome::Fatal(fatal)),
    }
}

/// One message of the backup phase; returns its folder (to hold back its delta link when the
/// message is not done) and what happened.
pub(super) async fn process_message(
    ctx: &Ctx,
    gate: &Gate,
    unrecorded: &Unrecorded,
    prefix: &str,
    info: &MessageInfo,
    known: &Known,
    stop: &AtomicBool,
) -> (Option<String>, Outcome) {
    let folder = info.folder_id.clone();
    if stop.load(Ordering::Relaxed) || ctx.graph.is_cancelled() {
        return (folder, Outcome::NotAttempted);
    }
    (
        folder,
        process_inner(ctx, gate, unrecorded, prefix, info, known).await,
    )
}

/// A stored object the index does not know (crash between the store's put and the index
/// update, or an earlier backup without index) whose header names this message and version:
/// its size and checksum, so it can be adopted without a fetch.
fn adoptable(
    store: &dyn store::MessageStore,
    key: &ObjectKey,
    id: &str,
    last_modified: &str,
) -> Result<Option<store::Stored>, Error> {
    let Some(r) = store.open(key)? else {
        return Ok(None);
    };
    let header = store::read_header(r).map_err(|e| Error::io(format!("cannot read {key}"), e))?;
    if header.is_none_or(|h| h.id != id || h.last_modified != last_modified) {
        return Ok(None);
    }
    let Some(r) = store.open(key)? else {
        return Ok(None);
    };
    store::hash_reader(r)
        .map(Some)
        .map_err(|e| Error::io(format!("cannot read {key}"), e))
}

async fn process_inner(
    ctx: &Ctx,
    gate: &Gate,
    unrecorded: &Unrecorded,
    prefix: &str,
    info: &MessageInfo,
    known: &Known,
) -> Outcome {
    let mailbox = &info.mailbox;
    let last_modified = info.last_modified.clone().unwrap_or_default();
    let existing = known.saved.get(&info.id);
    let default_key = existing
        .map(|r| r.key.clone())
        .unwrap_or_else(|| default_key(prefix, info));
    let mut unchanged = match existing {
        Some(r) if r.last_modified == last_modified => known.is_present(ctx, &r.key).await,
        _ => false,
    };
    if existing.is_none() && known.is_present(ctx, &default_key).await {
        let (k, id, lm) = (default_key.clone(), info.id.clone(), last_modified.clone());
        let adopted = ctx
            .store(move |s| adoptable(s, &k, &id, &lm))
            .await
            .ok()
            .flatten();
        if let Some(stored) = adopted {
            let row = SavedRow {
                mailbox: mailbox.clone(),
                id: info.id.clone(),
                key: default_key.clone(),
                last_modified: last_modified.clone(),
                size: stored.size,
                sha256: stored.sha256,
            };
            let mut headers = crate::headers::from_info(info, &row.key, row.size);
            headers.mailbox = row.mailbox.clone();
            if let Err(e) = ctx.index(move |ix| ix.record_message(&row, &headers)).await {
                return Outcome::Fatal(e);
            }
            unchanged = true;
        }
    }
    let proposed = if unchanged {
        BeforeAction::Skip
    } else {
        BeforeAction::Save(default_key)
    };
    let key = match ctx.hooks.before_message(info, proposed) {
        BeforeAction::Skip => {
            return if unchanged {
                Outcome::Unchanged
            } else {
                Outcome::Skipped
            };
        }
        BeforeAction::Save(k) => k,
    };
    let mut attempt = 0u32;
    // The message's place in the `Unrecorded` bound, taken before its request and kept until
    // it is stored and recorded (or given up); a retry pause gives it back.
    let (mime, place) = loop {
        let place = match unrecorded.acquire().await {
            Ok(p) => p,
            Err(e) => return Outcome::Fatal(e),
        };
        match ctx.graph.mime(gate, mailbox, &info.id).await {
            Ok(mime) => break (mime, place),
            Err(Error::Graph { status: 404, .. }) => {
                ctx.reporter.info(&format!(
                    "{mailbox}: message {} was deleted before it could be fetched",
                    info.id
                ));
                let (mb, id) = (mailbox.clone(), info.id.clone());
                if let Err(e) = ctx.index(move |ix| ix.remove_remote(&mb, &id)).await {
                    return Outcome::Fatal(e);
                }
                return Outcome::Gone;
            }
            Err(e) if e.is_fatal_for_mailbox() => return Outcome::Fatal(e),
            Err(e) => {
                drop(place);
                if let Some(outcome) = after_failure(ctx, info, e, &mut attempt).await {
                    return outcome;
                }
            }
        }
    };
    if ctx.hooks.message_fetched(info, &mime) == FetchedAction::Skip {
        return Outcome::Skipped;
    }
    let outcome = save(
        ctx,
        info,
        &key,
        existing,
        &last_modified,
        mime,
        &mut attempt,
    )
    .await;
    drop(place);
    if matches!(outcome, Outcome::Saved(_)) {
        ctx.hooks.message_saved(info, &key);
    }
    outcome
}

/// Stores a downloaded message under `key` and records it in the index (retried like the
/// download, through the `message_error` hook; the retry pause keeps the message's place in the
/// [`Unrecorded`] bound, as it is still not durable); a replaced copy under another key is
/// deleted.
async fn save(
    ctx: &Ctx,
    info: &MessageInfo,
    key: &ObjectKey,
    existing: Option<&SavedRow>,
    last_modified: &str,
    mime: bytes::Bytes,
    attempt: &mut u32,
) -> Outcome {
    let mailbox = &info.mailbox;
    let header = BackupHeader {
        id: info.id.clone(),
        last_modified: last_modified.to_string(),
    };
    let line = store::header_line(&header, &mime);
    let old_key = existing.map(|r| r.key.clone()).filter(|k| k != key);
    loop {
        let (store, index, line, mime, object, old_key) = (
            ctx.store.clone(),
            ctx.index.clone(),
            line.clone(),
            mime.clone(),
            key.clone(),
            old_key.clone(),
        );
        let (mailbox, id, last_modified) =
            (mailbox.clone(), info.id.clone(), last_modified.to_string());
        let mut headers = crate::headers::from_info(info, &object, 0);
        headers.mailbox = mailbox.clone();
        // Not cancellable on purpose: once started, a save completes (object, then index).
        let r = blocking(move || {
            let mut body = line.as_bytes().chain(&mime[..]);
            let stored = store.put(&object, &mut body, None)?;
            headers.size = stored.size;
            index.record_message(
                &SavedRow {
                    mailbox,
                    id,
                    key: object,
                    last_modified,
                    size: stored.size,
                    sha256: stored.sha256,
                },
                &headers,
            )?;
            if let Some(old) = old_key {
                store.delete(&old)?;
            }
            Ok(stored.size)
        })
        .await;
        match r {
            Ok(n) => return Outcome::Saved(n),
            // Index and storage failures (disk full, read-only, no permission) hit every
            // message alike: stop the mailbox instead of retrying each one.
            Err(e) if e.is_fatal_for_mailbox() => return Outcome::Fatal(e),
            Err(e) => {
                if let Some(outcome) = after_failure(ctx, info, e, attempt).await {
                    return outcome;
                }
            }
        }
    }
}
