//! Which saved copies a restore takes: the [`Selection`] criteria and their evaluation against
//! the index (`select`), in creation order. Reads the index only.

use super::*;

/// Which messages of a backup to restore. Every set criterion must match.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Selection {
    /// Mailbox key of the backup (as `status` lists it); `None` when the backup has one.
    pub mailbox: Option<String>,
    /// Folder path (`Inbox/Projects`): messages of that folder and of its subfolders; case is
    /// ignored, as by Exchange and `search` ([`folder_path::within`]).
    pub folder: Option<String>,
    /// Created on or after this day (UTC).
    pub created_from: Option<NaiveDate>,
    /// Created on or before this day (UTC).
    pub created_to: Option<NaiveDate>,
    /// Object keys or Graph ids; empty = no restriction.
    pub messages: Vec<String>,
    /// Graph ids computed by another selector (a search); `None` = no restriction.
    pub ids: Option<HashSet<String>>,
}

impl Selection {
    /// All messages of `mailbox` (or of the only mailbox when `None`).
    pub fn mailbox(mailbox: Option<String>) -> Selection {
        Selection {
            mailbox,
            ..Default::default()
        }
    }

    fn matches(&self, m: &Candidate) -> bool {
        if let Some(f) = &self.folder
            && !folder_path::within(m.folder_path.as_deref().unwrap_or(""), f)
        {
            return false;
        }
        if self.created_from.is_some() || self.created_to.is_some() {
            let Some(d) = parse_graph_time(m.info.created.as_deref()).map(|c| c.date_naive())
            else {
                return false;
            };
            if self.created_from.is_some_and(|s| d < s) || self.created_to.is_some_and(|e| d > e) {
                return false;
            }
        }
        if !self.messages.is_empty()
            && !self
                .messages
                .iter()
                .any(|k| *k == m.info.id || k == m.key.as_str())
        {
            return false;
        }
        self.ids.as_ref().is_none_or(|ids| ids.contains(&m.info.id))
    }
}

/// The source mailbox and its selected messages, in creation order.
pub(super) fn select(ix: &dyn Index, sel: &Selection) -> Result<(String, Vec<Candidate>), Error> {
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
    let remote: HashMap<String, MessageInfo> = ix
        .remote_messages(&source)?
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect();
    let paths = ix.folder_paths(&source)?;
    let mut out: Vec<Candidate> = ix
        .saved(Some(&source))?
        .into_iter()
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
        .filter(|c| sel.matches(c))
        .collect();
    out.sort_by(|a, b| a.info.created.cmp(&b.info.created));
    Ok((source, out))
}
