//! Delta query state for `/mailFolders/{id}/messages/delta`: rounds, pages, skip and delta
//! tokens, and their expiry.
//!
//! A round starts with a request without token (initial sync: every message of the folder) or
//! with a `$deltatoken` (changes since that token). At its start the emulator takes a snapshot of
//! the entries to report and the mailbox's change sequence number; pages are cut from that
//! snapshot (`$skiptoken` = session + position, so retrying a page link gives the same page), and
//! the final `deltaLink` carries the snapshot's sequence number. Changes made while a round is
//! being paged therefore show up in the next round, never get lost, and may appear twice, which
//! real Graph also allows. Tokens are opaque random strings; unknown or expired ones answer 410
//! `syncStateNotFound`. This module does not render JSON (see `graph.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mailbox::MailboxData;
use crate::odata::{Filter, Subject};
use crate::util::random_token;

/// Sessions kept at most per mailbox (oldest evicted first); bounds memory of long runs.
const MAX_SESSIONS: usize = 256;

/// Options fixed by the first request of a sync (Graph ignores query options afterwards).
#[derive(Debug, Clone)]
pub(crate) struct DeltaParams {
    pub(crate) folder: usize,
    pub(crate) filter: Filter,
    pub(crate) select: Option<Vec<&'static str>>,
}

/// One entry to report.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A message present at snapshot time, with its ids then.
    Present {
        key: u64,
        rest_id: String,
        immutable_id: String,
    },
    /// A message removed from the folder (deleted or moved out).
    Removed {
        rest_id: String,
        immutable_id: String,
    },
}

#[derive(Debug)]
struct DeltaToken {
    params: DeltaParams,
    seq: u64,
    issued: Instant,
}

/// A round being paged.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) params: DeltaParams,
    pub(crate) entries: Vec<Entry>,
    pub(crate) snapshot_seq: u64,
    pub(crate) page_size: usize,
    issued: Instant,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Unknown, invalidated or expired: 410 syncStateNotFound.
    Gone,
    /// The token belongs to another folder: 400.
    WrongFolder,
}

/// Per-mailbox token store.
#[derive(Debug, Default)]
pub(crate) struct DeltaStore {
    tokens: HashMap<String, DeltaToken>,
    /// Shared so that serving a page does not copy the round's entries.
    sessions: HashMap<String, Arc<Session>>,
    session_order: VecDeque<String>,
}

fn expired(issued: Instant, lifetime: Option<Duration>) -> bool {
    lifetime.is_some_and(|l| issued.elapsed() > l)
}

impl DeltaStore {
    /// Forgets every token and session.
    pub(crate) fn clear(&mut self) {
        self.tokens.clear();
        self.sessions.clear();
        self.session_order.clear();
    }

    /// Starts a round and returns its session id.
    pub(crate) fn start_session(
        &mut self,
        params: DeltaParams,
        entries: Vec<Entry>,
        snapshot_seq: u64,
        page_size: usize,
    ) -> String {
        let id = random_token(18);
        self.sessions.insert(
            id.clone(),
            Arc::new(Session {
                params,
                entries,
                snapshot_seq,
                page_size,
                issued: Instant::now(),
            }),
        );
        self.session_order.push_back(id.clone());
        while self.session_order.len() > MAX_SESSIONS {
            if let Some(old) = self.session_order.pop_front() {
                self.sessions.remove(&old);
            }
        }
        id
    }

    /// Looks up a `$skiptoken`: (session id, session, position).
    pub(crate) fn session(
        &self,
        skiptoken: &str,
        folder: usize,
        lifetime: Option<Duration>,
    ) -> Result<(String, Arc<Session>, usize), TokenError> {
        let (id, pos) = skiptoken.rsplit_once('_').ok_or(TokenError::Gone)?;
        let pos: usize = pos.parse().map_err(|_| TokenError::Gone)?;
        let s = self.sessions.get(id).ok_or(TokenError::Gone)?;
        if expired(s.issued, lifetime) {
            return Err(TokenError::Gone);
        }
        if s.params.folder != folder {
            return Err(TokenError::WrongFolder);
        }
        Ok((id.to_owned(), Arc::clone(s), pos))
    }

    /// Issues a delta token for the end of a round.
    pub(crate) fn issue_token(&mut self, params: DeltaParams, seq: u64) -> String {
        let t = random_token(24);
        self.tokens.insert(
            t.clone(),
            DeltaToken {
                params,
                seq,
                issued: Instant::now(),
            },
        );
        t
    }

    /// Looks up a `$deltatoken`: (params, sequence number).
    pub(crate) fn token(
        &mut self,
        token: &str,
        folder: usize,
        lifetime: Option<Duration>,
    ) -> Result<(DeltaParams, u64), TokenError> {
        let t = self.tokens.get(token).ok_or(TokenError::Gone)?;
        if expired(t.issued, lifetime) {
            self.tokens.remove(token);
            return Err(TokenError::Gone);
        }
        if t.params.folder != folder {
            return Err(TokenError::WrongFolder);
        }
        Ok((t.params.clone(), t.seq))
    }
}

/// Builds the filter view of a message.
pub(crate) fn subject_of<'a>(d: &'a MailboxData, m: &'a crate::mailbox::Message) -> Subject<'a> {
    let f = &d.folders[m.folder];
    Subject {
        received: m.received,
        created: m.created,
        last_modified: m.last_modified,
        sent: m.sent,
        folder_id: &f.id,
        folder_well_known: f.well_known.as_deref(),
        is_read: m.is_read,
        from_address: &m.synth.from.address,
        subject: &m.synth.subject,
    }
}

/// Entries of an initial round: every matching message of the folder, newest first.
pub(crate) fn initial_entries(d: &MailboxData, params: &DeltaParams) -> Vec<Entry> {
    let mut msgs: Vec<(u64, &crate::mailbox::Message)> = d
        .messages
        .iter()
        .filter(|(_, m)| m.folder == params.folder)
        .filter(|(_, m)| params.filter.matches(&subject_of(d, m)))
        .map(|(k, m)| (*k, m))
        .collect();
    msgs.sort_by(|a, b| b.1.received.cmp(&a.1.received).then(a.0.cmp(&b.0)));
    msgs.into_iter()
        .map(|(key, m)| Entry::Present {
            key,
            rest_id: m.rest_id.clone(),
            immutable_id: m.immutable_id.clone(),
        })
        .collect()
}

/// Entries of an incremental round: removals since `seq`, then messages created or changed
/// since `seq` (in change order). A removal is left out when the same message (by immutable
/// id) is back in the folder and the client uses immutable ids, because then the id is present.
pub(crate) fn change_entries(
    d: &MailboxData,
    params: &DeltaParams,
    seq: u64,
    immutable: bool,
) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut present: Vec<(u64, u64, &crate::mailbox::Message)> = d
        .messages
        .iter()
        .filter(|(_, m)| m.folder == params.folder && m.change_seq > seq)
        .filter(|(_, m)| params.filter.matches(&subject_of(d, m)))
        .map(|(k, m)| (m.change_seq, *k, m))
        .collect();
    present.sort_by_key(|(s, k, _)| (*s, *k));
    for t in d
        .tombstones
        .iter()
        .filter(|t| t.folder == params.folder && t.seq > seq)
    {
        let back = d
            .message_by_id(&t.immutable_id)
            .is_some_and(|m| m.folder == params.folder);
        if immutable && back {
            continue;
        }
        out.push(Entry::Removed {
            rest_id: t.rest_id.clone(),
            immutable_id: t.immutable_id.clone(),
        });
    }
    out.extend(present.into_iter().map(|(_, key, m)| Entry::Present {
        key,
        rest_id: m.rest_id.clone(),
        immutable_id: m.immutable_id.clone(),
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DeltaParams {
        DeltaParams {
            folder: 1,
            filter: Filter::default(),
            select: None,
        }
    }

    #[test]
    fn tokens_expire_and_are_folder_bound() {
        let mut s = DeltaStore::default();
        let t = s.issue_token(params(), 7);
        assert_eq!(s.token(&t, 1, None).map(|(_, q)| q), Ok(7));
        assert_eq!(s.token(&t, 2, None).err(), Some(TokenError::WrongFolder));
        assert_eq!(
            s.token(&t, 1, Some(Duration::ZERO)).err(),
            Some(TokenError::Gone)
        );
        assert_eq!(s.token("nope", 1, None).err(), Some(TokenError::Gone));
        let sid = s.start_session(params(), Vec::new(), 3, 10);
        assert!(s.session(&format!("{sid}_0"), 1, None).is_ok());
        assert!(s.session(&format!("{sid}_x"), 1, None).is_err());
        s.clear();
        assert_eq!(
            s.session(&format!("{sid}_0"), 1, None).err(),
            Some(TokenError::Gone)
        );
    }

    #[test]
    fn sessions_are_bounded() {
        let mut s = DeltaStore::default();
        let first = s.start_session(params(), Vec::new(), 0, 10);
        for _ in 0..MAX_SESSIONS {
            s.start_session(params(), Vec::new(), 0, 10);
        }
        assert!(s.session(&format!("{first}_0"), 1, None).is_err());
        assert_eq!(s.sessions.len(), MAX_SESSIONS);
    }
}
