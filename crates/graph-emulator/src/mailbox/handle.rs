//! The public [`MailboxHandle`] tests use to inspect and mutate a mailbox between backup runs,
//! and the plain views of folders and messages ([`FolderInfo`], [`MessageInfo`]) it returns.
//! The state it works on, and how ids and changes are kept, is in the parent module.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{
    Content, FolderKind, MailboxData, MailboxState, Message, Tombstone, bump_time, immutable_id,
    insert, is_drafts, is_outgoing, now_secs, rest_id, write,
};
use crate::error::EmulatorError;
use crate::synth;
use crate::util::lock;

/// Folder as seen by tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// Folder id.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Parent folder id (`None` for the root `msgfolderroot` and for a detached
    /// `recoverableitemsdeletions` folder).
    pub parent_folder_id: Option<String>,
    /// Display-name path below the root, joined with `/` (`Inbox/Projects`); empty for the root.
    pub path: String,
    /// Well-known name, if any.
    pub well_known_name: Option<String>,
    /// Hidden folder (listed only with `includeHiddenFolders=true`).
    pub hidden: bool,
    /// `mailSearchFolder` (clients should skip it).
    pub is_search_folder: bool,
    /// Messages the folder shows (for a search folder: matching messages of other folders).
    pub total_item_count: usize,
}

/// Message as seen by tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// REST id (what Graph returns without `Prefer: IdType="ImmutableId"`; changes on move).
    pub id: String,
    /// Immutable id (stable across moves).
    pub immutable_id: String,
    /// Folder id.
    pub folder_id: String,
    /// Folder path (`Inbox/Projects`).
    pub folder_path: String,
    /// Subject.
    pub subject: String,
    /// `internetMessageId` (the Message-ID header).
    pub internet_message_id: String,
    /// `createdDateTime`.
    pub created: DateTime<Utc>,
    /// `receivedDateTime`.
    pub received: DateTime<Utc>,
    /// `lastModifiedDateTime`.
    pub last_modified: DateTime<Utc>,
    /// Read flag.
    pub is_read: bool,
    /// `isDraft` (synthetic messages: those generated in Drafts; created over HTTP: from MIME,
    /// or from JSON without `PidTagMessageFlags` or with its unsent bit).
    pub is_draft: bool,
}

/// A message with its expected MIME bytes (what `$value` returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedMessage {
    /// Metadata.
    pub info: MessageInfo,
    /// RFC 822 bytes.
    pub mime: Vec<u8>,
}

/// A message to create with [`MailboxHandle::create_message`].
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    /// Subject (default: synthetic). Ignored for the MIME when `raw_mime` is given, but used for
    /// the JSON `subject`.
    pub subject: Option<String>,
    /// `receivedDateTime` (default: now).
    pub received: Option<DateTime<Utc>>,
    /// Exact MIME bytes to serve from `$value` (default: synthetic).
    pub raw_mime: Option<Vec<u8>>,
    /// Read flag (default: unread).
    pub is_read: bool,
}

/// Inspects and mutates one mailbox of a running emulator. Cheap to clone.
///
/// Mutations take effect immediately for all later requests, and delta queries report them.
/// Timestamps of mutations use the wall clock, and `lastModifiedDateTime` always advances by at
/// least one second per change, so a client comparing timestamps (second resolution, as in
/// Graph) always notices an update.
#[derive(Debug, Clone)]
pub struct MailboxHandle {
    pub(crate) state: Arc<MailboxState>,
}

impl MailboxHandle {
    /// User principal name of the owner.
    pub fn user_principal_name(&self) -> &str {
        &self.state.upn
    }

    /// Object id (GUID) of the owner.
    pub fn object_id(&self) -> &str {
        &self.state.object_id
    }

    /// Display name of the owner.
    pub fn display_name(&self) -> &str {
        &self.state.display_name
    }

    /// All folders, root first, in tree order of creation.
    pub fn folders(&self) -> Vec<FolderInfo> {
        let d = lock(&self.state.data);
        (0..d.folders.len())
            .filter(|&i| !d.folders[i].deleted)
            .map(|i| folder_info(&d, i))
            .collect()
    }

    /// Resolves a folder by id, well-known name (`inbox`) or display-name path
    /// (`Inbox/Projects`, case-insensitive).
    pub fn folder(&self, folder: &str) -> Result<FolderInfo, EmulatorError> {
        let d = lock(&self.state.data);
        let i = self.find_folder(&d, folder)?;
        Ok(folder_info(&d, i))
    }

    /// All messages (in mail folders), in creation order.
    pub fn messages(&self) -> Vec<MessageInfo> {
        let d = lock(&self.state.data);
        d.messages.values().map(|m| message_info(&d, m)).collect()
    }

    /// Messages of one folder (for a search folder: the messages it shows).
    pub fn folder_messages(&self, folder: &str) -> Result<Vec<MessageInfo>, EmulatorError> {
        let d = lock(&self.state.data);
        let i = self.find_folder(&d, folder)?;
        Ok(d.folder_message_keys(i)
            .iter()
            .filter_map(|k| d.messages.get(k))
            .map(|m| message_info(&d, m))
            .collect())
    }

    /// Number of messages in mail folders.
    pub fn message_count(&self) -> usize {
        lock(&self.state.data).messages.len()
    }

    /// One message by REST id or immutable id.
    pub fn message(&self, id: &str) -> Result<MessageInfo, EmulatorError> {
        let d = lock(&self.state.data);
        d.message_by_id(id)
            .map(|m| message_info(&d, m))
            .ok_or_else(|| self.unknown_message(id))
    }

    /// MIME bytes of one message, exactly as `$value` returns them.
    pub fn mime(&self, id: &str) -> Result<Vec<u8>, EmulatorError> {
        let m = {
            let d = lock(&self.state.data);
            d.message_by_id(id)
                .cloned()
                .ok_or_else(|| self.unknown_message(id))?
        };
        Ok(self.state.render(&m))
    }

    /// Every message with its MIME bytes: what a complete backup must contain. This includes
    /// messages in hidden folders (listed only with `includeHiddenFolders=true`) and, if
    /// configured, in `recoverableitemsdeletions` (reachable by well-known name only); it never
    /// lists a message twice (search folders hold no messages of their own).
    ///
    /// All MIME bytes are rendered at once; for large mailboxes iterate
    /// [`MailboxHandle::messages`] and call [`MailboxHandle::mime`] per message instead.
    pub fn expected_messages(&self) -> Vec<ExpectedMessage> {
        let msgs: Vec<(MessageInfo, Message)> = {
            let d = lock(&self.state.data);
            d.messages
                .values()
                .map(|m| (message_info(&d, m), m.clone()))
                .collect()
        };
        msgs.into_iter()
            .map(|(info, m)| ExpectedMessage {
                mime: self.state.render(&m),
                info,
            })
            .collect()
    }

    /// Creates a message in a folder (id, well-known name or path).
    pub fn create_message(
        &self,
        folder: &str,
        new: NewMessage,
    ) -> Result<MessageInfo, EmulatorError> {
        let key = self.state.key();
        let mut d = lock(&self.state.data);
        let f = self.mail_folder(&d, folder)?;
        let number = d.next_number;
        d.next_number += 1;
        let now = now_secs();
        let received = new.received.unwrap_or(now);
        let mut synth = synth::synthesize(&self.state.ctx, number, is_outgoing(&d.folders[f]));
        if let Some(s) = new.subject {
            synth.subject = s;
        }
        let seq = d.next_seq();
        let m = Message {
            number,
            immutable_id: immutable_id(&key, self.state.seed, number),
            rest_id: rest_id(&key, self.state.seed, number, 0),
            moves: 0,
            folder: f,
            created: now,
            received,
            sent: received,
            last_modified: now,
            revision: 0,
            is_read: new.is_read,
            is_draft: is_drafts(&d.folders[f]),
            flag: None,
            change_seq: seq,
            synth: Arc::new(synth),
            content: match new.raw_mime {
                Some(b) => Content::Raw(Arc::new(b)),
                None => Content::Synthetic,
            },
        };
        let info = message_info(&d, &m);
        insert(&mut d, &key, self.state.seed, m);
        Ok(info)
    }

    /// Changes a message's content: bumps `lastModifiedDateTime` and `changeKey`, and the MIME
    /// bytes change (an `X-Emulator-Revision` header and, for synthetic messages, an edited
    /// body).
    pub fn update_message(&self, id: &str) -> Result<MessageInfo, EmulatorError> {
        self.modify(id, |m| m.revision += 1)
    }

    /// Sets the read flag: bumps `lastModifiedDateTime` and `changeKey`; MIME bytes unchanged.
    pub fn set_read(&self, id: &str, is_read: bool) -> Result<MessageInfo, EmulatorError> {
        self.modify(id, |m| m.is_read = is_read)
    }

    fn modify(
        &self,
        id: &str,
        change: impl FnOnce(&mut Message),
    ) -> Result<MessageInfo, EmulatorError> {
        let mut d = lock(&self.state.data);
        let k = self.message_key(&d, id)?;
        let seq = d.next_seq();
        let m = d
            .messages
            .get_mut(&k)
            .ok_or_else(|| self.unknown_message(id))?;
        change(m);
        m.change_seq = seq;
        m.last_modified = bump_time(m.last_modified);
        let m = m.clone();
        Ok(message_info(&d, &m))
    }

    /// Deletes a message permanently (delta reports `@removed` in its folder; `$value` and
    /// `GET` answer 404 `ErrorItemNotFound`).
    pub fn delete_message(&self, id: &str) -> Result<(), EmulatorError> {
        let mut d = lock(&self.state.data);
        let k = self.message_key(&d, id)?;
        let seq = d.next_seq();
        let m = d
            .messages
            .remove(&k)
            .ok_or_else(|| self.unknown_message(id))?;
        d.by_id.remove(&m.rest_id);
        d.by_id.remove(&m.immutable_id);
        d.tombstones.push(Tombstone {
            seq,
            folder: m.folder,
            rest_id: m.rest_id,
            immutable_id: m.immutable_id,
        });
        Ok(())
    }

    /// Moves a message to another folder. Its REST id changes (the old one answers 404), its
    /// immutable id stays; delta reports it removed from the source and created in the target.
    pub fn move_message(&self, id: &str, folder: &str) -> Result<MessageInfo, EmulatorError> {
        let key = self.state.key();
        let mut d = lock(&self.state.data);
        let target = self.mail_folder(&d, folder)?;
        let k = self.message_key(&d, id)?;
        let seq = d.next_seq();
        let Some(m) = d.messages.get(&k).cloned() else {
            return Err(self.unknown_message(id));
        };
        if m.folder == target {
            return Ok(message_info(&d, &m));
        }
        d.tombstones.push(Tombstone {
            seq,
            folder: m.folder,
            rest_id: m.rest_id.clone(),
            immutable_id: m.immutable_id.clone(),
        });
        d.by_id.remove(&m.rest_id);
        let moves = m.moves + 1;
        let new_rest = rest_id(&key, self.state.seed, m.number, moves);
        d.by_id.insert(new_rest.clone(), k);
        let seq2 = d.next_seq();
        let m = d
            .messages
            .get_mut(&k)
            .ok_or_else(|| self.unknown_message(id))?;
        m.moves = moves;
        m.rest_id = new_rest;
        m.folder = target;
        m.change_seq = seq2;
        m.last_modified = bump_time(m.last_modified);
        let m = m.clone();
        Ok(message_info(&d, &m))
    }

    /// Creates a mail folder below `parent` (id, well-known name or path).
    pub fn create_folder(
        &self,
        parent: &str,
        display_name: &str,
    ) -> Result<FolderInfo, EmulatorError> {
        let key = self.state.key();
        let mut d = lock(&self.state.data);
        let p = self.find_folder(&d, parent)?;
        let idx = write::push_folder(&mut d, &key, self.state.seed, p, display_name, false);
        Ok(folder_info(&d, idx))
    }

    /// Renames a folder (its id stays).
    pub fn rename_folder(
        &self,
        folder: &str,
        display_name: &str,
    ) -> Result<FolderInfo, EmulatorError> {
        let mut d = lock(&self.state.data);
        let i = self.find_folder(&d, folder)?;
        if i == 0 {
            return Err(EmulatorError::ProtectedFolder(folder.to_owned()));
        }
        d.folders[i].display_name = display_name.to_owned();
        Ok(folder_info(&d, i))
    }

    /// Deletes a folder with its subfolders and their messages (permanently, as a hard delete
    /// in Exchange). Later requests for the folder answer 404 `ErrorItemNotFound`, and delta
    /// tokens of the folder stop working. Well-known folders and the root cannot be deleted,
    /// as in Exchange.
    pub fn delete_folder(&self, folder: &str) -> Result<(), EmulatorError> {
        let mut d = lock(&self.state.data);
        let i = self.find_folder(&d, folder)?;
        if i == 0 || d.folders[i].well_known.is_some() {
            return Err(EmulatorError::ProtectedFolder(folder.to_owned()));
        }
        let mut doomed = vec![i];
        let mut k = 0;
        while k < doomed.len() {
            let kids = d.children(doomed[k]);
            doomed.extend(kids);
            k += 1;
        }
        let keys: Vec<u64> = d
            .messages
            .iter()
            .filter(|(_, m)| doomed.contains(&m.folder))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let seq = d.next_seq();
            if let Some(m) = d.messages.remove(&key) {
                d.by_id.remove(&m.rest_id);
                d.by_id.remove(&m.immutable_id);
                d.tombstones.push(Tombstone {
                    seq,
                    folder: m.folder,
                    rest_id: m.rest_id,
                    immutable_id: m.immutable_id,
                });
            }
        }
        for f in doomed {
            d.folders[f].deleted = true;
        }
        Ok(())
    }

    /// Requests of this mailbox in flight right now.
    pub fn in_flight(&self) -> usize {
        self.state.inflight()
    }

    /// Waits until no request of this mailbox is in flight (at once when none is). Tests use it
    /// after killing a client, so the killed client's requests still being served (latency,
    /// bandwidth) are over before the next run is measured. Bound it with a timeout.
    pub async fn wait_idle(&self) {
        self.wait_until(|n| n == 0).await;
    }

    /// Waits until at least `n` requests of this mailbox are in flight at once (e.g. held by
    /// latency), instead of polling [`MailboxHandle::in_flight`]. Bound it with a timeout.
    pub async fn wait_in_flight(&self, n: usize) {
        self.wait_until(|current| current >= n).await;
    }

    async fn wait_until(&self, done: impl Fn(usize) -> bool) {
        loop {
            let changed = self.state.inflight_changed.notified();
            tokio::pin!(changed);
            // Register before checking, so a change between the check and the wait is not missed.
            changed.as_mut().enable();
            if done(self.state.inflight()) {
                return;
            }
            changed.await;
        }
    }

    /// The folder `folder` names (id, well-known name or path), or [`EmulatorError::UnknownFolder`].
    fn find_folder(&self, d: &MailboxData, folder: &str) -> Result<usize, EmulatorError> {
        d.folder_lookup(folder)
            .ok_or_else(|| self.unknown_folder(folder))
    }

    /// Like [`find_folder`](Self::find_folder), for a folder that holds messages of its own: a
    /// search folder is [`EmulatorError::SearchFolder`].
    fn mail_folder(&self, d: &MailboxData, folder: &str) -> Result<usize, EmulatorError> {
        let i = self.find_folder(d, folder)?;
        if d.folders[i].kind != FolderKind::Mail {
            return Err(EmulatorError::SearchFolder(folder.to_owned()));
        }
        Ok(i)
    }

    /// The key of the message `id` (REST or immutable id), or [`EmulatorError::UnknownMessage`].
    fn message_key(&self, d: &MailboxData, id: &str) -> Result<u64, EmulatorError> {
        d.key_by_id(id).ok_or_else(|| self.unknown_message(id))
    }

    fn unknown_folder(&self, folder: &str) -> EmulatorError {
        EmulatorError::UnknownFolder {
            mailbox: self.state.upn.clone(),
            folder: folder.to_owned(),
        }
    }

    fn unknown_message(&self, id: &str) -> EmulatorError {
        EmulatorError::UnknownMessage {
            mailbox: self.state.upn.clone(),
            id: id.to_owned(),
        }
    }
}

pub(crate) fn folder_info(d: &MailboxData, i: usize) -> FolderInfo {
    let f = &d.folders[i];
    FolderInfo {
        id: f.id.clone(),
        display_name: f.display_name.clone(),
        parent_folder_id: f.parent.map(|p| d.folders[p].id.clone()),
        path: d.folder_path(i),
        well_known_name: f.well_known.clone(),
        hidden: f.hidden,
        is_search_folder: f.kind != FolderKind::Mail,
        total_item_count: d.folder_message_keys(i).len(),
    }
}

pub(crate) fn message_info(d: &MailboxData, m: &Message) -> MessageInfo {
    MessageInfo {
        id: m.rest_id.clone(),
        immutable_id: m.immutable_id.clone(),
        folder_id: d.folders[m.folder].id.clone(),
        folder_path: d.folder_path(m.folder),
        subject: m.synth.subject.clone(),
        internet_message_id: m.synth.message_id.clone(),
        created: m.created,
        received: m.received,
        last_modified: m.last_modified,
        is_read: m.is_read,
        is_draft: m.is_draft,
    }
}
