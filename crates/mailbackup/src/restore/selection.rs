//! Which saved copies a restore takes: the index's answer to the [`Selection`] that `search`
//! and `export` take too (so the same options select the same messages), for one mailbox of
//! the backup, in creation order. Reads the index (and, once, the stored messages of a backup
//! made before header fields were indexed).

use super::*;
use crate::search::{Order, Selection};

/// Header rows are read in pages of this many.
const PAGE: usize = 1000;

/// The source mailbox and its selected messages, in creation order.
pub(super) fn select(
    ix: &dyn Index,
    store: &dyn MessageStore,
    sel: &Selection,
) -> Result<(String, Vec<Candidate>), Error> {
    let mailboxes: Vec<String> = ix.saved_counts()?.into_iter().map(|(m, _, _)| m).collect();
    let source = match &sel.mailbox {
        Some(m) if mailboxes.contains(m) => m.clone(),
        Some(m) => {
            return Err(Error::InvalidOption {
                option: "mailbox",
                reason: format!(
                    "the backup has no mailbox {m:?}; it has: {}",
                    mailboxes.join(", ")
                ),
            });
        }
        None if mailboxes.len() == 1 => mailboxes[0].clone(),
        None => {
            return Err(Error::InvalidOption {
                option: "mailbox",
                reason: format!(
                    "say which mailbox of the backup to restore (--mailbox); it has: {}",
                    if mailboxes.is_empty() {
                        "none".to_string()
                    } else {
                        mailboxes.join(", ")
                    }
                ),
            });
        }
    };
    // The selection is the index's answer, as for `search` and `export`: header rows of a
    // backup made before they were indexed are read first (once).
    crate::headers::backfill(ix, store)?;
    let sel = Selection {
        mailbox: Some(source.clone()),
        ..sel.clone()
    };
    let mut selected = HashSet::new();
    let mut after = None;
    loop {
        let page = ix.select(&sel, Order::Folder, after.as_ref(), PAGE)?;
        selected.extend(page.iter().map(|h| h.headers.id.clone()));
        match page.last() {
            Some(h) if page.len() == PAGE => after = Some(h.cursor()),
            _ => break,
        }
    }
    let remote: HashMap<String, MessageInfo> = ix
        .remote_messages(&source)?
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect();
    let paths = ix.folder_paths(&source)?;
    let mut out: Vec<Candidate> = ix
        .saved(Some(&source))?
        .into_iter()
        .filter(|row| selected.contains(&row.id))
        .map(|row| {
            let info = remote.get(&row.id).cloned().unwrap_or_else(|| MessageInfo {
                mailbox: source.clone(),
                id: row.id.clone(),
                ..Default::default()
            });
            let folder_path = info.folder_id.as_ref().and_then(|f| paths.get(f).cloned());
            Candidate {
                key: row.key,
                info,
                folder_path,
            }
        })
        .collect();
    out.sort_by(|a, b| a.info.created.cmp(&b.info.created));
    Ok((source, out))
}
