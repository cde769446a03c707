//! Mailbox state: folder tree, messages, change log for delta queries, and the public
//! [`MailboxHandle`] tests use to inspect and mutate a mailbox between backup runs.
//!
//! Ids follow Graph's shape: long, case-sensitive, URL-safe base64 with padding. Every message
//! has an immutable id (returned when the client sends `Prefer: IdType="ImmutableId"`) and a
//! REST id that changes when the message moves to another folder, as in Exchange Online; an old
//! REST id then answers 404. Every change (create, update, read-flag, move, delete) takes the
//! next value of a per-mailbox sequence number; deletions and moves leave a tombstone in the
//! source folder so delta queries can report `@removed`. This module holds no HTTP code.
//!
//! Parts: this file holds the state (folders, messages, tombstones, ids, the per-mailbox
//! request budget); `handle` the public [`MailboxHandle`] and the views it returns
//! ([`FolderInfo`], [`MessageInfo`], [`ExpectedMessage`], [`NewMessage`]); `write` the
//! changes that arrive over HTTP (folders, messages from MIME or JSON, updates, attachments).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sha2::{Digest, Sha256};

use crate::config::{FolderKind, FolderSpec, MailboxSpec};
use crate::rng::SplitMix64;
use crate::synth::{self, Person, RenderState, SynthContext, SynthMessage};
use crate::util::lock;

mod handle;
mod write;

pub use handle::{ExpectedMessage, FolderInfo, MailboxHandle, MessageInfo, NewMessage};

pub(crate) use write::{Attachment, Body, Composed, CreateFolderError, NewItem, Patch, WriteError};

/// Well-known folder names that are meant for outgoing mail (messages there are "from" the
/// owner).
const OUTGOING: &[&str] = &["sentitems", "drafts", "outbox"];

/// Well-known folder placed outside the `msgfolderroot` tree when configured at the top level.
const DETACHED: &str = "recoverableitemsdeletions";

/// One folder.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    pub(crate) id: String,
    pub(crate) display_name: String,
    pub(crate) parent: Option<usize>,
    pub(crate) well_known: Option<String>,
    pub(crate) hidden: bool,
    pub(crate) kind: FolderKind,
    /// Deleted through [`MailboxHandle::delete_folder`]; kept so indices stay valid.
    pub(crate) deleted: bool,
}

/// Content source of a message.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// Generated from the synthetic description.
    Synthetic,
    /// Given verbatim through [`NewMessage::raw_mime`] or created from MIME over HTTP.
    Raw(Arc<Vec<u8>>),
    /// Created from a JSON message resource over HTTP; its MIME is generated from the fields.
    Composed(Arc<Composed>),
}

/// One message.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) number: u64,
    pub(crate) immutable_id: String,
    pub(crate) rest_id: String,
    pub(crate) moves: u32,
    pub(crate) folder: usize,
    pub(crate) created: DateTime<Utc>,
    pub(crate) received: DateTime<Utc>,
    pub(crate) sent: DateTime<Utc>,
    pub(crate) last_modified: DateTime<Utc>,
    pub(crate) revision: u32,
    pub(crate) is_read: bool,
    /// `isDraft`: fixed when the message is created (Exchange's unsent flag), never changed.
    pub(crate) is_draft: bool,
    /// `flag` (followupFlag JSON) when set over HTTP; `None` = `notFlagged`.
    pub(crate) flag: Option<Arc<serde_json::Value>>,
    pub(crate) change_seq: u64,
    pub(crate) synth: Arc<SynthMessage>,
    pub(crate) content: Content,
}

impl Message {
    /// The id the client sees.
    pub(crate) fn id(&self, immutable: bool) -> &str {
        if immutable {
            &self.immutable_id
        } else {
            &self.rest_id
        }
    }

    /// `hasAttachments`.
    pub(crate) fn has_attachments(&self) -> bool {
        match &self.content {
            Content::Composed(c) => !c.attachments.is_empty(),
            Content::Synthetic | Content::Raw(_) => !self.synth.attachments.is_empty(),
        }
    }

    /// Graph `changeKey`: changes on every modification.
    pub(crate) fn change_key(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.immutable_id.as_bytes());
        h.update(self.change_seq.to_le_bytes());
        let d = h.finalize();
        format!(
            "CQAAABYAAAA{}",
            base64::engine::general_purpose::STANDARD.encode(&d[..12])
        )
    }
}

/// A removed message in a folder (deleted or moved out).
#[derive(Debug, Clone)]
pub(crate) struct Tombstone {
    pub(crate) seq: u64,
    pub(crate) folder: usize,
    pub(crate) rest_id: String,
    pub(crate) immutable_id: String,
}

/// The mutable part of a mailbox.
#[derive(Debug)]
pub(crate) struct MailboxData {
    pub(crate) folders: Vec<Folder>,
    /// Messages by internal key (creation order).
    pub(crate) messages: BTreeMap<u64, Message>,
    /// REST ids and immutable ids -> key.
    by_id: HashMap<String, u64>,
    pub(crate) tombstones: Vec<Tombstone>,
    /// Last change sequence number handed out.
    pub(crate) seq: u64,
    next_number: u64,
    next_key: u64,
}

impl MailboxData {
    /// Looks up a message by REST id or immutable id (case-sensitive).
    pub(crate) fn message_by_id(&self, id: &str) -> Option<&Message> {
        self.by_id.get(id).and_then(|k| self.messages.get(k))
    }

    fn key_by_id(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// Resolves a folder by id or well-known name (well-known names are case-insensitive).
    pub(crate) fn folder_index(&self, id_or_name: &str) -> Option<usize> {
        if id_or_name.eq_ignore_ascii_case("msgfolderroot") {
            return Some(0);
        }
        self.folders.iter().position(|f| {
            !f.deleted
                && (f.id == id_or_name
                    || f.well_known
                        .as_deref()
                        .is_some_and(|w| w.eq_ignore_ascii_case(id_or_name)))
        })
    }

    /// Resolves a folder by id, well-known name or display-name path (`Inbox/Projects`).
    fn folder_lookup(&self, s: &str) -> Option<usize> {
        self.folder_index(s).or_else(|| {
            (0..self.folders.len()).find(|&i| {
                i != 0 && !self.folders[i].deleted && self.folder_path(i).eq_ignore_ascii_case(s)
            })
        })
    }

    /// Display-name path below the root.
    pub(crate) fn folder_path(&self, idx: usize) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(idx);
        while let Some(i) = cur {
            if i == 0 {
                break;
            }
            parts.push(self.folders[i].display_name.as_str());
            cur = self.folders[i].parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Children of a folder in creation order.
    pub(crate) fn children(&self, idx: usize) -> Vec<usize> {
        (0..self.folders.len())
            .filter(|&i| self.folders[i].parent == Some(idx) && !self.folders[i].deleted)
            .collect()
    }

    /// Keys of the messages a folder shows (search folders show unread messages of all mail
    /// folders).
    pub(crate) fn folder_message_keys(&self, idx: usize) -> Vec<u64> {
        match self.folders[idx].kind {
            FolderKind::Mail => self
                .messages
                .iter()
                .filter(|(_, m)| m.folder == idx)
                .map(|(k, _)| *k)
                .collect(),
            FolderKind::UnreadSearch => self
                .messages
                .iter()
                .filter(|(_, m)| !m.is_read)
                .map(|(k, _)| *k)
                .collect(),
        }
    }

    /// Keys of all messages in folders below `msgfolderroot` (what `/messages` lists).
    pub(crate) fn all_message_keys(&self) -> Vec<u64> {
        self.messages
            .iter()
            .filter(|(_, m)| self.below_root(m.folder))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Whether a folder is in the `msgfolderroot` tree (not a detached Recoverable Items folder).
    pub(crate) fn below_root(&self, idx: usize) -> bool {
        let mut cur = idx;
        for _ in 0..=self.folders.len() {
            if cur == 0 {
                return true;
            }
            match self.folders[cur].parent {
                Some(p) => cur = p,
                None => return false,
            }
        }
        false
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// Ids derived from hashes, shaped like Exchange ids.
fn make_id(header: &[u8], mailbox: &str, parts: &[&[u8]], total_len: usize) -> String {
    let mut bin = header.to_vec();
    bin.extend_from_slice(&Sha256::digest(mailbox.as_bytes()));
    let mut counter = 0u32;
    while bin.len() < total_len {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.update(counter.to_le_bytes());
        bin.extend_from_slice(&h.finalize());
        counter += 1;
    }
    bin.truncate(total_len - 3);
    bin.extend_from_slice(&[0, 0, 0]);
    base64::engine::general_purpose::URL_SAFE.encode(bin)
}

fn folder_id(mailbox_key: &str, seed: u64, path: &str) -> String {
    make_id(
        &[0x00, 0x03, 0x24, 0x00, 0x2e],
        mailbox_key,
        &[b"folder", &seed.to_le_bytes(), path.as_bytes()],
        71,
    )
}

fn immutable_id(mailbox_key: &str, seed: u64, number: u64) -> String {
    make_id(
        &[0x00, 0x09, 0x00, 0x2e, 0x00],
        mailbox_key,
        &[b"immutable", &seed.to_le_bytes(), &number.to_le_bytes()],
        104,
    )
}

fn rest_id(mailbox_key: &str, seed: u64, number: u64, moves: u32) -> String {
    make_id(
        &[0x00, 0x03, 0x24, 0x00, 0x46],
        mailbox_key,
        &[
            b"rest",
            &seed.to_le_bytes(),
            &number.to_le_bytes(),
            &moves.to_le_bytes(),
        ],
        113,
    )
}

/// A derived, deterministic object id (GUID format) for a user.
pub(crate) fn derived_object_id(upn: &str) -> String {
    let d = Sha256::digest(format!("object-id:{}", upn.to_ascii_lowercase()).as_bytes());
    let h: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A mailbox with its state and counters.
#[derive(Debug)]
pub(crate) struct MailboxState {
    pub(crate) upn: String,
    pub(crate) display_name: String,
    pub(crate) object_id: String,
    pub(crate) seed: u64,
    pub(crate) ctx: SynthContext,
    pub(crate) inflight: AtomicUsize,
    /// Woken whenever a request of this mailbox starts or ends ([`MailboxHandle::wait_idle`],
    /// [`MailboxHandle::wait_in_flight`]).
    pub(crate) inflight_changed: tokio::sync::Notify,
    /// Fixed-window request budget state: (window start, requests in the window).
    pub(crate) rate: Mutex<Option<(std::time::Instant, u32)>>,
    pub(crate) data: Mutex<MailboxData>,
    pub(crate) delta: Mutex<crate::delta::DeltaStore>,
}

impl MailboxState {
    /// Builds the mailbox from its spec: folder tree, then `spec.messages` synthetic messages.
    pub(crate) fn build(spec: &MailboxSpec) -> Self {
        let object_id = spec
            .object_id
            .clone()
            .unwrap_or_else(|| derived_object_id(&spec.user_principal_name));
        let key = spec.user_principal_name.to_ascii_lowercase();
        let mut folders = vec![Folder {
            id: folder_id(&key, spec.seed, ""),
            display_name: "Top of Information Store".to_owned(),
            parent: None,
            well_known: Some("msgfolderroot".to_owned()),
            hidden: false,
            kind: FolderKind::Mail,
            deleted: false,
        }];
        let mut weights = Vec::new();
        fn add(
            folders: &mut Vec<Folder>,
            weights: &mut Vec<(usize, u32)>,
            specs: &[FolderSpec],
            parent: usize,
            parent_path: &str,
            key: &str,
            seed: u64,
        ) {
            for fs in specs {
                let path = format!("{parent_path}/{}", fs.display_name);
                let idx = folders.len();
                // Recoverable Items folders are not below msgfolderroot in Exchange: reachable
                // by well-known name only, never listed.
                let detached = parent == 0
                    && fs
                        .well_known
                        .as_deref()
                        .is_some_and(|w| w.eq_ignore_ascii_case(DETACHED));
                folders.push(Folder {
                    id: folder_id(key, seed, &path),
                    display_name: fs.display_name.clone(),
                    parent: (!detached).then_some(parent),
                    well_known: fs.well_known.clone(),
                    hidden: fs.hidden,
                    kind: fs.kind,
                    deleted: false,
                });
                if fs.kind == FolderKind::Mail && fs.weight > 0 {
                    weights.push((idx, fs.weight));
                }
                add(folders, weights, &fs.children, idx, &path, key, seed);
            }
        }
        add(
            &mut folders,
            &mut weights,
            &spec.folders,
            0,
            "",
            &key,
            spec.seed,
        );
        if weights.is_empty() {
            // No weighted mail folder: put messages in the first mail folder, or the root.
            let target = (1..folders.len())
                .find(|&i| folders[i].kind == FolderKind::Mail)
                .unwrap_or(0);
            weights.push((target, 1));
        }
        let total_weight: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();

        let ctx = SynthContext {
            seed: spec.seed,
            owner: Person {
                name: spec.display_name.clone(),
                address: spec.user_principal_name.clone(),
            },
            large_every: spec.large_every,
            attachment_ratio: spec.attachment_ratio,
        };
        let span_secs = i64::from(spec.years.max(1)) * 365 * 24 * 3600;
        let mut data = MailboxData {
            folders,
            messages: BTreeMap::new(),
            by_id: HashMap::new(),
            tombstones: Vec::new(),
            seq: 0,
            next_number: 0,
            next_key: 0,
        };
        for number in 0..spec.messages as u64 {
            let mut rng = SplitMix64::from_parts(&[spec.seed, number, 0x706c_6163]);
            let mut pick = rng.below(total_weight);
            let mut folder = weights[0].0;
            for (idx, w) in &weights {
                if pick < u64::from(*w) {
                    folder = *idx;
                    break;
                }
                pick -= u64::from(*w);
            }
            let age = rng.below(span_secs as u64) as i64;
            let received = spec.end_date - ChronoDuration::seconds(age);
            let sent = received - ChronoDuration::seconds(5 + rng.below(600) as i64);
            let created = received + ChronoDuration::seconds(rng.below(30) as i64);
            let last_modified = created + ChronoDuration::seconds(rng.below(7200) as i64);
            let outgoing = is_outgoing(&data.folders[folder]);
            let synth = synth::synthesize(&ctx, number, outgoing);
            let is_read = synth.is_read;
            let is_draft = is_drafts(&data.folders[folder]);
            let seq = data.next_seq();
            insert(
                &mut data,
                &key,
                spec.seed,
                Message {
                    number,
                    immutable_id: immutable_id(&key, spec.seed, number),
                    rest_id: rest_id(&key, spec.seed, number, 0),
                    moves: 0,
                    folder,
                    created,
                    received,
                    sent,
                    last_modified,
                    revision: 0,
                    is_read,
                    is_draft,
                    flag: None,
                    change_seq: seq,
                    synth: Arc::new(synth),
                    content: Content::Synthetic,
                },
            );
        }
        data.next_number = spec.messages as u64;
        Self {
            upn: spec.user_principal_name.clone(),
            display_name: spec.display_name.clone(),
            object_id,
            seed: spec.seed,
            ctx,
            inflight: AtomicUsize::new(0),
            inflight_changed: tokio::sync::Notify::new(),
            rate: Mutex::new(None),
            data: Mutex::new(data),
            delta: Mutex::new(crate::delta::DeltaStore::default()),
        }
    }

    fn key(&self) -> String {
        self.upn.to_ascii_lowercase()
    }

    /// Renders the MIME bytes of a message.
    pub(crate) fn render(&self, m: &Message) -> Vec<u8> {
        let given = match &m.content {
            Content::Raw(bytes) => bytes.as_ref().clone(),
            Content::Composed(c) => crate::compose::render(m, c),
            Content::Synthetic => {
                return synth::render_mime(
                    &m.synth,
                    m.number,
                    RenderState {
                        sent: m.sent,
                        received: m.received,
                        revision: m.revision,
                    },
                    "mx.emulator.test",
                );
            }
        };
        if m.revision == 0 {
            given
        } else {
            let mut out = format!("X-Emulator-Revision: {}\r\n", m.revision).into_bytes();
            out.extend_from_slice(&given);
            out
        }
    }

    /// Invalidates every delta and skip token of this mailbox.
    pub(crate) fn expire_delta_tokens(&self) {
        lock(&self.delta).clear();
    }

    /// Counts a request against the budget; `Err(seconds)` = over budget, retry after that.
    pub(crate) fn take_budget(&self, limit: crate::config::RateLimit) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let mut r = lock(&self.rate);
        let (start, count) = match *r {
            Some((start, count)) if now.duration_since(start) < limit.window => (start, count),
            _ => (now, 0),
        };
        if count >= limit.requests {
            let left = limit.window.saturating_sub(now.duration_since(start));
            *r = Some((start, count));
            // Round up so a client that waits exactly Retry-After lands in the next window.
            return Err(left.as_secs() + u64::from(left.subsec_nanos() > 0));
        }
        *r = Some((start, count + 1));
        Ok(())
    }

    /// Current number of in-flight requests.
    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }
}

fn is_outgoing(f: &Folder) -> bool {
    f.well_known
        .as_deref()
        .is_some_and(|w| OUTGOING.contains(&w))
}

/// Messages generated or created through [`MailboxHandle`] in Drafts are drafts.
fn is_drafts(f: &Folder) -> bool {
    f.well_known.as_deref() == Some("drafts")
}

fn insert(data: &mut MailboxData, _key: &str, _seed: u64, m: Message) -> u64 {
    let k = data.next_key;
    data.next_key += 1;
    data.by_id.insert(m.immutable_id.clone(), k);
    data.by_id.insert(m.rest_id.clone(), k);
    data.messages.insert(k, m);
    k
}

/// Wall clock truncated to whole seconds (Graph's resolution).
fn now_secs() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

/// New `lastModifiedDateTime`: now, but at least one second after the previous value.
fn bump_time(prev: DateTime<Utc>) -> DateTime<Utc> {
    now_secs().max(prev + ChronoDuration::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EmulatorError;

    fn handle(n: usize, seed: u64) -> MailboxHandle {
        MailboxHandle {
            state: Arc::new(MailboxState::build(
                &MailboxSpec::new("adele.vance@emulator.test")
                    .messages(n)
                    .seed(seed),
            )),
        }
    }

    #[test]
    fn same_seed_same_ids_and_bytes() {
        let a = handle(20, 5).expected_messages();
        let b = handle(20, 5).expected_messages();
        let c = handle(20, 6).expected_messages();
        assert_eq!(a, b);
        assert_ne!(a[0].info.id, c[0].info.id);
        let ids: std::collections::HashSet<_> = a.iter().map(|m| m.info.id.clone()).collect();
        assert_eq!(ids.len(), 20);
        assert!(a[0].info.id.len() > 100, "{}", a[0].info.id);
        assert!(a[0].info.id.ends_with('='));
    }

    #[test]
    fn move_changes_rest_id_keeps_immutable() {
        let h = handle(5, 1);
        let m = h.messages()[0].clone();
        let moved = h.move_message(&m.id, "archive").expect("move");
        assert_ne!(moved.id, m.id);
        assert_eq!(moved.immutable_id, m.immutable_id);
        assert!(h.message(&m.id).is_err());
        assert!(h.message(&m.immutable_id).is_ok());
        assert_eq!(moved.folder_path, "Archive");
        assert!(moved.last_modified > m.last_modified);
    }

    #[test]
    fn update_changes_mime_and_time_delete_removes() {
        let h = handle(3, 1);
        let m = h.messages()[1].clone();
        let before = h.mime(&m.id).expect("mime");
        let up = h.update_message(&m.id).expect("update");
        assert!(up.last_modified > m.last_modified);
        assert_ne!(h.mime(&m.id).expect("mime"), before);
        h.delete_message(&m.id).expect("delete");
        assert!(h.mime(&m.id).is_err());
        assert_eq!(h.message_count(), 2);
        assert!(matches!(
            h.delete_message(&m.id),
            Err(EmulatorError::UnknownMessage { .. })
        ));
    }

    #[test]
    fn set_read_changes_time_and_search_folder_but_not_mime() {
        let h = handle(30, 4);
        let unread = h
            .folder_messages("Unread Mail")
            .expect("search")
            .first()
            .cloned()
            .expect("some unread message");
        let mime = h.mime(&unread.id).expect("mime");
        let after = h.set_read(&unread.id, true).expect("set_read");
        assert!(after.is_read);
        assert!(after.last_modified > unread.last_modified);
        assert_eq!(h.mime(&unread.id).expect("mime"), mime);
        assert!(
            !h.folder_messages("Unread Mail")
                .expect("search")
                .iter()
                .any(|m| m.id == unread.id)
        );
    }

    #[test]
    fn created_folder_receives_messages_and_unknown_names_fail() {
        let h = handle(2, 1);
        let f = h
            .create_folder("inbox", "Neu / 2026")
            .expect("create folder");
        assert_eq!(f.path, "Inbox/Neu / 2026");
        let m = h
            .create_message(
                &f.id,
                NewMessage {
                    subject: Some("hello".into()),
                    raw_mime: Some(b"Subject: hello\r\n\r\nbody\r\n".to_vec()),
                    ..NewMessage::default()
                },
            )
            .expect("create");
        assert_eq!(
            h.mime(&m.id).expect("mime"),
            b"Subject: hello\r\n\r\nbody\r\n"
        );
        h.update_message(&m.id).expect("update");
        assert!(
            h.mime(&m.id)
                .expect("mime")
                .starts_with(b"X-Emulator-Revision: 1\r\n")
        );
        assert!(matches!(
            h.create_message("nope", NewMessage::default()),
            Err(EmulatorError::UnknownFolder { .. })
        ));
        assert!(matches!(
            h.move_message(&m.id, "nope"),
            Err(EmulatorError::UnknownFolder { .. })
        ));
    }

    #[test]
    fn rename_and_delete_folders() {
        let h = handle(60, 2);
        let projects = h.folder("Inbox/Projects").expect("projects");
        let renamed = h.rename_folder(&projects.id, "Projekte").expect("rename");
        assert_eq!(
            (renamed.id.as_str(), renamed.path.as_str()),
            (projects.id.as_str(), "Inbox/Projekte")
        );
        let nested = h
            .folder("Inbox/Projekte/2024 / Q1 — Überblick")
            .expect("nested");
        let before = h.message_count();
        let gone = projects.total_item_count + nested.total_item_count;
        h.delete_folder("Inbox/Projekte").expect("delete");
        assert_eq!(h.message_count(), before - gone);
        assert!(h.folder(&projects.id).is_err());
        assert!(h.folder(&nested.id).is_err());
        assert!(h.folders().iter().all(|f| f.id != nested.id));
        assert!(matches!(
            h.delete_folder("inbox"),
            Err(EmulatorError::ProtectedFolder(_))
        ));
        assert!(matches!(
            h.rename_folder("msgfolderroot", "x"),
            Err(EmulatorError::ProtectedFolder(_))
        ));
    }

    #[test]
    fn folder_lookup_by_name_path_and_search_folder_refused() {
        let h = handle(3, 1);
        let p = h.folder("inbox/projects").expect("path");
        assert_eq!(p.display_name, "Projects");
        let inbox = h.folder("Inbox").expect("well-known");
        assert_eq!(p.parent_folder_id.as_deref(), Some(inbox.id.as_str()));
        assert!(matches!(
            h.create_message("Unread Mail", NewMessage::default()),
            Err(EmulatorError::SearchFolder(_))
        ));
        let first = h.messages()[0].id.clone();
        assert!(matches!(
            h.move_message(&first, "Unread Mail"),
            Err(EmulatorError::SearchFolder(_))
        ));
        let created = h
            .create_message("inbox", NewMessage::default())
            .expect("create");
        assert!(!created.is_read);
        let unread = h.folder_messages("Unread Mail").expect("search");
        assert!(unread.iter().any(|m| m.id == created.id));
    }
}
