//! Receiving files: the state of one reception ([`Incoming`]) and the files being received
//! across sessions ([`ActiveSet`]). Submodules: `offer` (SFID: the decision, resume or create
//! the temporary file, SFPA/SFNA), `data` (DATA into the temporary file, checkpoints) and `end`
//! (EFID: checks, file services, placing the file, EFPA/EFNA, and a broken reception).

mod data;
mod end;
mod offer;

pub use data::DEFAULT_CHECKPOINT_INTERVAL;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use oftp_proto::codec::{FileFormat, Sfid};

use crate::config::RecordMapping;
use crate::connection::error::ConnectionError;
use crate::handler::TransferInfo;
use crate::journal::{Checkpoint, FileKey};
use crate::store::{BackgroundWriter, PartialFile};
use crate::transport::ServiceFailure;

/// A file being received: the authenticated partner (its SSID code) and the file identity.
/// SFIDORIG is whatever the sender writes, so the partner is part of it: one partner can never
/// block, resume or complete another partner's file.
pub(crate) type ActiveKey = (String, FileKey);

/// The files being received right now (see [`Shared::active`](super::Shared::active)).
pub(crate) type ActiveSet = Arc<std::sync::Mutex<std::collections::HashSet<ActiveKey>>>;

/// Marks a file as being received; released on drop.
pub(crate) struct ActiveGuard {
    set: ActiveSet,
    key: ActiveKey,
}

impl ActiveGuard {
    pub(crate) fn claim(set: &ActiveSet, key: &ActiveKey) -> Option<Self> {
        let mut s = set.lock().unwrap_or_else(|p| p.into_inner());
        s.insert(key.clone()).then(|| Self {
            set: set.clone(),
            key: key.clone(),
        })
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// A file being received.
pub(super) struct Incoming {
    _active: ActiveGuard,
    sfid: Sfid,
    /// The temporary file, written by the process's writer pool.
    writer: BackgroundWriter,
    journal_id: i64,
    key: FileKey,
    transfer: TransferInfo,
    format: FileFormat,
    overwrite: bool,
    /// Durable state this transfer started from.
    base: Checkpoint,
    /// Records and octets received in this transfer.
    records: u64,
    units: u64,
    /// Octets at the last checkpoint and at the last progress report.
    checkpointed_units: u64,
    /// When the last checkpoint was started (or the reception began).
    checkpointed_at: Instant,
    reported_units: u64,
    /// F/V: local file length and octets at the end of the last complete record.
    record_end_offset: u64,
    record_end_units: u64,
    /// F/V: how records are stored (the partner's `record_mapping`).
    mapping: RecordMapping,
    /// Raw V: the record being received (it is stored after its length, known at its end).
    record: Vec<u8>,
    /// A record this file's mapping cannot store: the file is refused at its end with this
    /// EFNA, and no restart point is recorded past it.
    unstorable: Option<ConnectionError>,
    /// A checkpoint (fsync + journal) running on the blocking pool while data keeps arriving.
    inflight: Option<tokio::task::JoinHandle<Result<(), ConnectionError>>>,
    user_data: String,
    /// For a file with file services: its opening, running while the data arrives.
    opener: Option<OpenerResult>,
}

/// A reception whose file the file services could not open.
struct FailedReception {
    partial: PartialFile,
    partial_path: PathBuf,
    journal_id: i64,
    transfer: TransferInfo,
    sfid: Sfid,
    key: FileKey,
    user_data: String,
}

/// The verdict of [`FileServices::open_incoming`] (the hash for a signed EERP, or an EFNA).
type OpenerResult = tokio::sync::oneshot::Receiver<OpenerVerdict>;

/// What the opening thread hands back: the file services' verdict, or why there is none.
type OpenerVerdict = Result<Result<Option<Vec<u8>>, ServiceFailure>, OpenerFailure>;

/// Why the opening thread gave no verdict.
#[derive(Debug, thiserror::Error)]
enum OpenerFailure {
    /// It panicked (a decoder bug), with this message.
    #[error("the opening thread panicked: {0}")]
    Panicked(String),
    /// It ended without sending anything.
    #[error("the opening thread ended without a verdict")]
    NoVerdict,
}

/// The message of a caught panic (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> OpenerFailure {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    OpenerFailure::Panicked(message.to_owned())
}
