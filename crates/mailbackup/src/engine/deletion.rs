//! Sync phase (`SyncDeletes`): stored copies of messages that are no longer in the mailbox are
//! offered to `before_delete`, then removed from the store or moved to its quarantine area, and
//! only then forgotten by the index.

use super::Ctx;
use super::listing::Listing;
use crate::error::Error;
use crate::graph::Gate;
use crate::hooks::DeleteAction;
use crate::index::SavedRow;
use crate::report::{MailboxProgress, MailboxReport, RemovedMessage};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

pub(super) async fn sync_deletes(
    ctx: &Ctx,
    gate: &Gate,
    key: &str,
    listing: &Listing,
    report: &mut MailboxReport,
    progress: &MailboxProgress,
) -> Result<(), Error> {
    let mb = key.to_string();
    let saved = ctx.index(move |ix| ix.saved(Some(&mb))).await?;
    progress
        .sync_total
        .store(saved.len() as u64, Ordering::Relaxed);
    // Current ids, and (delta listings) current ids by Message-ID to recognise moves.
    let (remote, by_message_id): (HashSet<String>, HashMap<String, String>) =
        match &listing.filtered_ids {
            Some(ids) => (ids.clone(), HashMap::new()),
            None => {
                let mb = key.to_string();
                let infos = ctx.index(move |ix| ix.remote_messages(&mb)).await?;
                let by_message_id = infos
                    .iter()
                    .filter_map(|m| Some((m.internet_message_id.clone()?, m.id.clone())))
                    .collect();
                (infos.into_iter().map(|m| m.id).collect(), by_message_id)
            }
        };
    let mut gone: Vec<SavedRow> = Vec::new();
    for row in saved {
        progress.sync_checked.fetch_add(1, Ordering::Relaxed);
        if remote.contains(&row.id) {
            continue;
        }
        // A filtered listing only shows matching messages: ask Graph about the others.
        if listing.filtered_ids.is_some() && ctx.graph.exists(gate, key, &row.id).await? {
            continue;
        }
        gone.push(row);
    }
    let map: HashMap<&str, &SavedRow> = gone.iter().map(|r| (r.id.as_str(), r)).collect();
    for (id, row) in map {
        if ctx.hooks.before_delete(key, id, &row.key) == DeleteAction::Keep {
            continue;
        }
        let location = ctx.store.locate(&row.key);
        let moved_to = moved_to(ctx, row, &by_message_id).await;
        let quarantine = ctx.opts.quarantine_folder.is_some();
        let (object, mb, message) = (row.key.clone(), key.to_string(), id.to_string());
        let (store, index) = (ctx.store.clone(), ctx.index.clone());
        let quarantined_to = super::blocking(move || {
            let to = if quarantine {
                let location = store.quarantine(&object)?;
                index.record_quarantined(&crate::index::QuarantinedRow {
                    mailbox: mb.clone(),
                    key: object.clone(),
                    location: location.clone(),
                    since: chrono::Utc::now().to_rfc3339(),
                })?;
                Some(location)
            } else {
                store.delete(&object)?;
                None
            };
            index.remove_saved(&mb, &message)?;
            Ok(to)
        })
        .await?;
        progress.removed.fetch_add(1, Ordering::Relaxed);
        let why = match &moved_to {
            Some(new) => format!("message {id} moved to another folder, saved again as {new}"),
            None => format!("message {id} deleted remotely"),
        };
        ctx.reporter.info(&match &quarantined_to {
            Some(to) => format!("{key}: moved {location} to {to} ({why})"),
            None => format!("{key}: removed {location} ({why})"),
        });
        report.removed.push(RemovedMessage {
            id: id.to_string(),
            key: row.key.clone(),
            location,
            quarantined_to,
            moved_to,
        });
    }
    Ok(())
}

/// Without immutable ids a message moved to another folder gets a new id: its old copy looks
/// deleted. It is a move when the copy's Message-ID belongs to a message still listed under
/// another id; returns that id.
async fn moved_to(
    ctx: &Ctx,
    row: &SavedRow,
    by_message_id: &HashMap<String, String>,
) -> Option<String> {
    if by_message_id.is_empty() {
        return None;
    }
    let k = row.key.clone();
    let message_id = ctx
        .store(move |s| match s.open(&k)? {
            Some(r) => crate::store::read_message_id(r)
                .map_err(|e| Error::io(format!("cannot read {k}"), e)),
            None => Ok(None),
        })
        .await
        .ok()
        .flatten()?;
    by_message_id
        .get(&message_id)
        .filter(|new| **new != row.id)
        .cloned()
}
