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
    let remote: HashSet<String> = match &listing.filtered_ids {
        Some(ids) => ids.clone(),
        None => {
            let mb = key.to_string();
            ctx.index(move |ix| ix.remote_messages(&mb))
                .await?
                .into_iter()
                .map(|m| m.id)
                .collect()
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
        let quarantine = ctx.opts.quarantine_folder.is_some();
        let (object, mb, message) = (row.key.clone(), key.to_string(), id.to_string());
        let (store, index) = (ctx.store.clone(), ctx.index.clone());
        let quarantined_to = super::blocking(move || {
            let to = if quarantine {
                Some(store.quarantine(&object)?)
            } else {
                store.delete(&object)?;
                None
            };
            index.remove_saved(&mb, &message)?;
            Ok(to)
        })
        .await?;
        progress.removed.fetch_add(1, Ordering::Relaxed);
        ctx.reporter.info(&match &quarantined_to {
            Some(to) => format!("{key}: moved {location} to {to} (message {id} deleted remotely)"),
            None => format!("{key}: removed {location} (message {id} deleted remotely)"),
        });
        report.removed.push(RemovedMessage {
            id: id.to_string(),
            key: row.key.clone(),
            location,
            quarantined_to,
        });
    }
    Ok(())
}
