//! Initialization phase: what the mailbox holds, as delta rounds per folder (or one filtered
//! listing), mirrored page by page into the index.

use super::Ctx;
use crate::error::Error;
use crate::graph::{Gate, RawMessage};
use crate::hooks::MessageInfo;
use crate::report::MailboxReport;
use crate::store;
use futures_util::stream::{self, StreamExt};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

/// What the listing found.
pub(super) struct Listing {
    pub(super) candidates: Vec<MessageInfo>,
    /// (folder id, name, new delta link) to store once the folder's messages are durable.
    pub(super) pending_links: Vec<(String, String, String)>,
    /// Ids listed by a filtered listing (sync of a filtered run probes the others).
    pub(super) filtered_ids: Option<HashSet<String>>,
    /// Some folder could not be listed: the sync phase must not run.
    pub(super) incomplete: Option<String>,
}

fn is_expired_delta(e: &Error) -> bool {
    match e {
        Error::Graph { status, code, .. } => {
            *status == 410
                || code.eq_ignore_ascii_case("syncStateNotFound")
                || code.eq_ignore_ascii_case("resyncRequired")
                || code.eq_ignore_ascii_case("SyncStateInvalid")
        }
        _ => false,
    }
}

pub(super) async fn list_delta(
    ctx: &Ctx,
    gate: &Gate,
    key: &str,
    report: &mut MailboxReport,
) -> Result<Listing, Error> {
    let folders = ctx.graph.folders(gate, key).await?;
    if folders.is_empty() {
        return Err(Error::Protocol {
            url: ctx.opts.graph_url.clone(),
            reason: format!("mailbox {key} lists no folders"),
        });
    }
    let present: HashSet<&str> = folders.iter().map(|f| f.id.as_str()).collect();
    let mb = key.to_string();
    let known = ctx.index(move |ix| ix.known_folders(&mb)).await?;
    for old in known {
        if !present.contains(old.as_str()) {
            ctx.reporter
                .info(&format!("{key}: folder {old} no longer exists"));
            drop_folder(ctx, key, old).await?;
        }
    }
    type Round = Result<(String, String, String, bool), (String, Error)>;
    let results: Vec<Round> = stream::iter(folders.iter())
        .map(|f| async move {
            delta_round(ctx, gate, key, &f.id, &f.path)
                .await
                .map_err(|e| (f.id.clone(), e))
        })
        .buffer_unordered(ctx.opts.connections_per_mailbox)
        .collect()
        .await;
    let mut pending_links = Vec::new();
    let mut incomplete = None;
    for r in results {
        match r {
            Ok((id, name, link, incremental)) => {
                if incremental {
                    report.incremental_listings += 1;
                } else {
                    report.full_listings += 1;
                }
                pending_links.push((id, name, link));
            }
            Err((_, e)) if e.is_fatal_for_mailbox() => return Err(e),
            Err((folder, Error::Graph { status: 404, .. })) => {
                // Deleted between the folder walk and its delta round: gone, like its messages.
                ctx.reporter.info(&format!(
                    "{key}: folder {folder} disappeared during the listing"
                ));
                drop_folder(ctx, key, folder).await?;
            }
            Err((_, e)) => {
                ctx.reporter
                    .error(&format!("{key}: a folder could not be listed: {e}"));
                incomplete.get_or_insert(format!("a folder could not be listed: {e}"));
            }
        }
    }
    let mb = key.to_string();
    let candidates: Vec<MessageInfo> = ctx
        .index(move |ix| ix.remote_messages(&mb))
        .await?
        .into_iter()
        .filter(|m| {
            ctx.opts
                .in_date_range(store::parse_graph_time(m.created.as_deref()))
        })
        .collect();
    ctx.reporter.info(&format!(
        "{key}: {} folders listed ({} incremental, {} full)",
        folders.len(),
        report.incremental_listings,
        report.full_listings
    ));
    Ok(Listing {
        candidates,
        pending_links,
        filtered_ids: None,
        incomplete,
    })
}

/// Forgets a folder that no longer exists, with its messages.
async fn drop_folder(ctx: &Ctx, key: &str, folder: String) -> Result<(), Error> {
    let mb = key.to_string();
    ctx.index(move |ix| ix.drop_folder(&mb, &folder)).await
}

/// One delta round of a folder; returns (folder, name, new delta link, incremental?).
async fn delta_round(
    ctx: &Ctx,
    gate: &Gate,
    key: &str,
    folder: &str,
    name: &str,
) -> Result<(String, String, String, bool), Error> {
    let stored = {
        let (mb, f) = (key.to_string(), folder.to_string());
        ctx.index(move |ix| ix.delta_link(&mb, &f)).await?
    };
    let mut incremental = stored.is_some();
    let mut url = stored.unwrap_or_else(|| ctx.graph.delta_url(key, folder));
    let mut seen: HashSet<String> = HashSet::new();
    // Bounded: each page holds at least one entry or moves the round on; a million pages of
    // `MessagePageSize` is beyond any mailbox.
    for _ in 0..1_000_000u32 {
        let page = match ctx
            .graph
            .page::<RawMessage>(gate, &url, Some(ctx.opts.page_size))
            .await
        {
            Ok(p) => p,
            Err(e) if incremental && is_expired_delta(&e) => {
                ctx.reporter.info(&format!(
                    "{key}: delta token of folder {name} expired ({e}); listing the folder in full"
                ));
                incremental = false;
                seen.clear();
                url = ctx.graph.delta_url(key, folder);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut items = Vec::with_capacity(page.value.len());
        let mut removed = Vec::new();
        for m in page.value {
            if m.removed.is_some() {
                removed.push(m.id);
            } else {
                if !incremental {
                    seen.insert(m.id.clone());
                }
                items.push(m.into_info(key, Some(folder)));
            }
        }
        gate.progress
            .listed
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        let (mb, f) = (key.to_string(), folder.to_string());
        ctx.index(move |ix| ix.apply_remote(&mb, &f, &items, &removed))
            .await?;
        if let Some(next) = page.next_link {
            url = next;
        } else if let Some(link) = page.delta_link {
            if !incremental {
                // A full round saw everything: what it did not list is gone from this folder.
                let (mb, f) = (key.to_string(), folder.to_string());
                let seen = std::mem::take(&mut seen);
                ctx.index(move |ix| {
                    let gone: Vec<String> = ix
                        .remote_ids_in_folder(&mb, &f)?
                        .into_iter()
                        .filter(|id| !seen.contains(id))
                        .collect();
                    ix.apply_remote(&mb, &f, &[], &gone)
                })
                .await?;
            }
            return Ok((folder.to_string(), name.to_string(), link, incremental));
        } else {
            return Err(Error::Protocol {
                url: crate::graph::strip_query(&url),
                reason: "a delta page has neither @odata.nextLink nor @odata.deltaLink".into(),
            });
        }
    }
    Err(Error::Protocol {
        url: crate::graph::strip_query(&url),
        reason: "the delta round of a folder does not end".into(),
    })
}

pub(super) async fn list_filtered(
    ctx: &Ctx,
    gate: &Gate,
    key: &str,
    filter: &str,
) -> Result<Listing, Error> {
    let mut url = ctx.graph.filtered_url(key, filter);
    let mut all: Vec<MessageInfo> = Vec::new();
    let mut ids = HashSet::new();
    for _ in 0..1_000_000u32 {
        let page = ctx.graph.page::<RawMessage>(gate, &url, None).await?;
        for m in page.value {
            if ids.insert(m.id.clone()) {
                all.push(m.into_info(key, None));
            }
        }
        gate.progress
            .listed
            .store(all.len() as u64, Ordering::Relaxed);
        match page.next_link {
            Some(n) => url = n,
            None => {
                let candidates = all
                    .into_iter()
                    .filter(|m| {
                        ctx.opts
                            .in_date_range(store::parse_graph_time(m.created.as_deref()))
                    })
                    .collect();
                return Ok(Listing {
                    candidates,
                    pending_links: Vec::new(),
                    filtered_ids: Some(ids),
                    incomplete: None,
                });
            }
        }
    }
    Err(Error::Protocol {
        url: crate::graph::strip_query(&url),
        reason: "the filtered listing does not end".into(),
    })
}
