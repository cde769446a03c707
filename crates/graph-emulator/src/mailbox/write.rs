//! Mailbox writes that arrive over HTTP (Graph `POST` and `PATCH`): folders created with
//! Exchange's duplicate-name rule, messages created from MIME or from a JSON message resource,
//! updates of the read flag, categories, follow-up flag and importance, and file attachments.
//!
//! The HTTP layer (`graph/write.rs`) parses and validates requests and maps the errors here to
//! Graph error bodies; this module keeps the mailbox consistent: ids shaped like the synthetic
//! ones, a new change sequence number for every write (so delta queries report it), and
//! `lastModifiedDateTime` advancing by at least one second per change.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{
    Content, Folder, MailboxData, MailboxState, Message, bump_time, folder_id, immutable_id,
    insert, make_id, now_secs, rest_id,
};
use crate::config::FolderKind;
use crate::synth::{Person, SynthMessage};
use crate::util::lock;

/// Body of a message created from JSON (`itemBody`).
#[derive(Debug, Clone)]
pub(crate) struct Body {
    /// `contentType` is `html` (else `text`).
    pub(crate) html: bool,
    pub(crate) content: String,
}

/// A file attachment (`fileAttachment`).
#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) content_type: String,
    pub(crate) content_id: Option<String>,
    pub(crate) is_inline: bool,
    pub(crate) bytes: Arc<Vec<u8>>,
    pub(crate) last_modified: DateTime<Utc>,
}

/// What a message created from JSON has beyond the fields every message has (subject,
/// addresses and the like live in its `SynthMessage`).
#[derive(Debug, Clone)]
pub(crate) struct Composed {
    pub(crate) body: Body,
    pub(crate) bcc: Vec<Person>,
    pub(crate) reply_to: Vec<Person>,
    /// `internetMessageHeaders` given at creation (custom `X-` headers).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) attachments: Vec<Attachment>,
}

/// A validated message to insert.
#[derive(Debug)]
pub(crate) struct NewItem {
    pub(crate) synth: SynthMessage,
    pub(crate) content: Content,
    /// `receivedDateTime` (`None` = now).
    pub(crate) received: Option<DateTime<Utc>>,
    /// `sentDateTime` (`None` = the received time).
    pub(crate) sent: Option<DateTime<Utc>>,
    pub(crate) is_read: bool,
    pub(crate) is_draft: bool,
    pub(crate) flag: Option<serde_json::Value>,
}

/// A validated `PATCH` of a message; `None` fields stay as they are.
#[derive(Debug, Default)]
pub(crate) struct Patch {
    pub(crate) is_read: Option<bool>,
    pub(crate) categories: Option<Vec<String>>,
    pub(crate) flag: Option<serde_json::Value>,
    pub(crate) importance: Option<&'static str>,
}

/// Why a folder was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateFolderError {
    UnknownParent,
    SearchFolder,
    /// A sibling (hidden ones included) has the same name, compared case-insensitively.
    Exists,
}

/// Why a message write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteError {
    UnknownFolder,
    SearchFolder,
    UnknownMessage,
    /// Attachments can only be added to messages created from JSON over HTTP.
    NotComposed,
}

/// Id of the `n`-th attachment of a message.
fn attachment_id(key: &str, immutable_id: &str, n: usize) -> String {
    make_id(
        &[0x00, 0x09, 0x00, 0x2e, 0x01],
        key,
        &[
            b"attachment",
            immutable_id.as_bytes(),
            &(n as u64).to_le_bytes(),
        ],
        120,
    )
}

/// Appends a mail folder below `parent` and returns its index.
pub(super) fn push_folder(
    d: &mut MailboxData,
    key: &str,
    seed: u64,
    parent: usize,
    display_name: &str,
    hidden: bool,
) -> usize {
    let path = format!(
        "/{}/{display_name}#{}",
        d.folder_path(parent),
        d.folders.len()
    );
    d.folders.push(Folder {
        id: folder_id(key, seed, &path),
        display_name: display_name.to_owned(),
        parent: Some(parent),
        well_known: None,
        hidden,
        kind: FolderKind::Mail,
        deleted: false,
    });
    d.folders.len() - 1
}

impl MailboxState {
    /// Creates a mail folder below `parent` (id or well-known name; `msgfolderroot` for the
    /// top level) and returns its index. Exchange refuses a second folder with the same name
    /// under one parent, hidden folders included, whatever the case of the letters.
    pub(crate) fn create_folder(
        &self,
        parent: &str,
        display_name: &str,
        hidden: bool,
    ) -> Result<usize, CreateFolderError> {
        let mut d = lock(&self.data);
        let p = d
            .folder_index(parent)
            .ok_or(CreateFolderError::UnknownParent)?;
        if d.folders[p].kind != FolderKind::Mail {
            return Err(CreateFolderError::SearchFolder);
        }
        let wanted = display_name.to_lowercase();
        if d.children(p)
            .iter()
            .any(|&c| d.folders[c].display_name.to_lowercase() == wanted)
        {
            return Err(CreateFolderError::Exists);
        }
        Ok(push_folder(
            &mut d,
            &self.key(),
            self.seed,
            p,
            display_name,
            hidden,
        ))
    }

    /// Creates a message in `folder` (id or well-known name; `None` = Drafts, as Graph's
    /// `POST /messages`) and returns its key. Attachments given with a message created from
    /// JSON get their ids here.
    pub(crate) fn create_message(
        &self,
        folder: Option<&str>,
        new: NewItem,
    ) -> Result<u64, WriteError> {
        let key = self.key();
        let mut d = lock(&self.data);
        let f = match folder {
            Some(f) => d.folder_index(f).ok_or(WriteError::UnknownFolder)?,
            None => d.folder_index("drafts").unwrap_or(0),
        };
        if d.folders[f].kind != FolderKind::Mail {
            return Err(WriteError::SearchFolder);
        }
        let number = d.next_number;
        d.next_number += 1;
        let now = now_secs();
        let received = new.received.unwrap_or(now);
        let seq = d.next_seq();
        let immutable = immutable_id(&key, self.seed, number);
        let mut content = new.content;
        if let Content::Composed(c) = &mut content {
            for (n, a) in Arc::make_mut(c).attachments.iter_mut().enumerate() {
                a.id = attachment_id(&key, &immutable, n);
            }
        }
        let m = Message {
            number,
            immutable_id: immutable,
            rest_id: rest_id(&key, self.seed, number, 0),
            moves: 0,
            folder: f,
            created: now,
            received,
            sent: new.sent.unwrap_or(received),
            last_modified: now,
            revision: 0,
            is_read: new.is_read,
            is_draft: new.is_draft,
            flag: new.flag.map(Arc::new),
            change_seq: seq,
            synth: Arc::new(new.synth),
            content,
        };
        Ok(insert(&mut d, &key, self.seed, m))
    }

    /// Applies a `PATCH`; the message gets a new change key and `lastModifiedDateTime`.
    pub(crate) fn patch_message(&self, id: &str, p: Patch) -> Result<u64, WriteError> {
        self.change(id, |m| {
            if let Some(r) = p.is_read {
                m.is_read = r;
            }
            if let Some(c) = p.categories {
                Arc::make_mut(&mut m.synth).categories = c;
            }
            if let Some(i) = p.importance {
                Arc::make_mut(&mut m.synth).importance = i;
            }
            if let Some(f) = p.flag {
                m.flag = Some(Arc::new(f));
            }
            Ok(())
        })
    }

    /// Adds a file attachment to a message created from JSON; `make` gets the message and
    /// the attachment id to use. Returns the message key and the attachment.
    pub(crate) fn add_attachment(
        &self,
        id: &str,
        make: impl FnOnce(String) -> Attachment,
    ) -> Result<(u64, Attachment), WriteError> {
        let key = self.key();
        let mut added = None;
        let k = self.change(id, |m| {
            let Content::Composed(c) = &mut m.content else {
                return Err(WriteError::NotComposed);
            };
            let c = Arc::make_mut(c);
            let a = make(attachment_id(&key, &m.immutable_id, c.attachments.len()));
            c.attachments.push(a.clone());
            added = Some(a);
            Ok(())
        })?;
        added.map(|a| (k, a)).ok_or(WriteError::UnknownMessage)
    }

    /// Runs a change on one message under the lock; on success the message takes the next
    /// change sequence number and a later `lastModifiedDateTime`.
    fn change(
        &self,
        id: &str,
        f: impl FnOnce(&mut Message) -> Result<(), WriteError>,
    ) -> Result<u64, WriteError> {
        let mut d = lock(&self.data);
        let k = d.key_by_id(id).ok_or(WriteError::UnknownMessage)?;
        let seq = d.seq + 1;
        let m = d.messages.get_mut(&k).ok_or(WriteError::UnknownMessage)?;
        f(m)?;
        m.change_seq = seq;
        m.last_modified = bump_time(m.last_modified);
        d.seq = seq;
        Ok(k)
    }
}
