//! The background writer of a reception.

use std::path::{Path, PathBuf};

use super::{PartialFile, StoreError, SyncJob};

/// Bytes gathered before a hand-over to the writer thread: one wake-up of the thread per
/// 128 KiB, not per DATA buffer. Larger would save few wake-ups more but costs memory per
/// reception (200 concurrent receptions hold up to 200 times this).
const HANDOVER: usize = 128 * 1024;

/// Pieces smaller than this (F/V records, their CR LF, small DATA buffers) are copied into one
/// gathering buffer of [`GATHER`] octets; larger ones are handed over as they are, without a
/// copy.
const SMALL_PIECE: usize = 8 * 1024;

/// Capacity of a gathering buffer for small pieces.
const GATHER: usize = 64 * 1024;

/// Bytes that may wait for the writer thread. The queue is bounded by bytes, not by
/// hand-overs: a disk write that stalls for a moment (page-cache write-back) is absorbed
/// without stalling socket reads, and memory per reception stays bounded. Back-pressure reaches
/// the socket only beyond this.
const QUEUE_BYTES: usize = 4 * 1024 * 1024;

enum WriterCmd {
    /// Pieces to append in order, and the queue budget they hold.
    Write(Vec<Vec<u8>>, u32),
    Sync(tokio::sync::oneshot::Sender<Result<SyncJob, StoreError>>),
    Finish(tokio::sync::oneshot::Sender<Result<PartialFile, StoreError>>),
}

/// A [`PartialFile`] written by a blocking thread of its own, so a connection can read the
/// network while the previous data is copied into the page cache.
///
/// Order is kept: a [`sync_job`](Self::sync_job) covers every byte written before it. A write
/// error is kept by the thread and reported by the next `sync_job` or [`finish`](Self::finish);
/// nothing is confirmed to a peer without one of those succeeding.
#[derive(Debug)]
pub struct BackgroundWriter {
    tx: tokio::sync::mpsc::UnboundedSender<WriterCmd>,
    /// The byte budget of the queue (see [`QUEUE_BYTES`]); closed when the thread ends.
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    /// Pieces gathered for the next hand-over.
    pending: Vec<Vec<u8>>,
    /// Small pieces gathered into one buffer (goes to `pending` when full or before a large
    /// piece, keeping order).
    small: Vec<u8>,
    /// Bytes in `pending` and `small`.
    pending_bytes: usize,
    len: u64,
    partial_path: PathBuf,
}

impl std::fmt::Debug for WriterCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriterCmd::Write(..) => "Write",
            WriterCmd::Sync(_) => "Sync",
            WriterCmd::Finish(_) => "Finish",
        })
    }
}

impl BackgroundWriter {
    /// Hands `file` to a new writer thread. A thread of its own rather than one of tokio's
    /// blocking pool: the pool is capped, and receptions holding every pool thread would starve
    /// the journal calls and fsyncs they wait for.
    pub fn spawn(file: PartialFile) -> Result<Self, StoreError> {
        Self::spawn_tapped(file, None)
    }

    /// Like [`spawn`](Self::spawn); with a `tap`, every piece is handed on after it was
    /// written, and the tap is completed when [`finish`](Self::finish) succeeds (dropped, so
    /// the reader sees an error, however else the thread ends).
    pub(crate) fn spawn_tapped(
        file: PartialFile,
        tap: Option<crate::stream::Tap>,
    ) -> Result<Self, StoreError> {
        // Unbounded as a channel, bounded by the byte budget: writes take budget before they
        // are sent, the thread gives it back once the bytes are in the page cache.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<WriterCmd>();
        let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(QUEUE_BYTES));
        let len = file.len();
        let partial_path = file.partial_path().to_owned();
        let thread = std::thread::Builder::new().name("oftp-writer".into());
        let thread_budget = budget.clone();
        let spawned = thread.spawn(move || {
            // However the thread ends (even by a panic), a writer waiting for budget is told.
            struct CloseOnExit(std::sync::Arc<tokio::sync::Semaphore>);
            impl Drop for CloseOnExit {
                fn drop(&mut self) {
                    self.0.close();
                }
            }
            let budget = CloseOnExit(thread_budget);
            let mut file = file;
            let mut tap = tap;
            let mut failed: Option<StoreError> = None;
            while let Some(cmd) = rx.blocking_recv() {
                match cmd {
                    WriterCmd::Write(pieces, held) => {
                        for piece in &pieces {
                            if failed.is_none()
                                && let Err(e) = file.write(piece)
                            {
                                failed = Some(e);
                            }
                        }
                        budget.0.add_permits(held as usize);
                        match &mut tap {
                            // A reader of a file that could not be stored would wait for the
                            // rest in vain: it sees an error instead.
                            Some(_) if failed.is_some() => tap = None,
                            Some(t) => pieces.into_iter().for_each(|p| t.feed(p)),
                            None => drop(pieces),
                        }
                    }
                    WriterCmd::Sync(reply) => {
                        let r = match failed.take() {
                            Some(e) => Err(e),
                            None => file.sync_job(),
                        };
                        if let Err(e) = &r {
                            failed = Some(StoreError::Task(e.to_string()));
                        }
                        let _ = reply.send(r);
                    }
                    WriterCmd::Finish(reply) => {
                        let r = match failed.take() {
                            Some(e) => Err(e),
                            // The reader may go on to read the stored file itself (the
                            // default `FileServices::open_incoming`): all of it is in the
                            // file before the stream ends.
                            None => match file.flush() {
                                Ok(()) => {
                                    if let Some(t) = tap.take() {
                                        t.complete();
                                    }
                                    Ok(file)
                                }
                                Err(e) => Err(e),
                            },
                        };
                        let _ = reply.send(r);
                        return;
                    }
                }
            }
        });
        if let Err(e) = spawned {
            return Err(StoreError::io(
                "starting a writer thread for",
                &partial_path,
                e,
            ));
        }
        Ok(Self {
            tx,
            budget,
            pending: Vec::new(),
            small: Vec::new(),
            pending_bytes: 0,
            len,
            partial_path,
        })
    }

    /// Appends bytes (batched; a large piece is handed over without a copy; waits only when
    /// the writer is more than [`QUEUE_BYTES`] behind).
    pub async fn write(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        if bytes.len() < SMALL_PIECE {
            return self.write_slice(&bytes).await;
        }
        self.len += bytes.len() as u64;
        self.close_small();
        self.pending_bytes += bytes.len();
        self.pending.push(bytes);
        self.hand_over_if_full().await
    }

    /// Appends a copy of `bytes` (for small pieces such as a record's CR LF).
    pub async fn write_slice(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.len += bytes.len() as u64;
        if self.small.capacity() - self.small.len() < bytes.len() {
            self.close_small();
        }
        if self.small.capacity() == 0 {
            self.small = Vec::with_capacity(GATHER.max(bytes.len()));
        }
        self.small.extend_from_slice(bytes);
        self.pending_bytes += bytes.len();
        self.hand_over_if_full().await
    }

    fn close_small(&mut self) {
        if !self.small.is_empty() {
            self.pending.push(std::mem::take(&mut self.small));
        }
    }

    async fn hand_over_if_full(&mut self) -> Result<(), StoreError> {
        if self.pending_bytes >= HANDOVER {
            self.hand_over_pending().await?;
        }
        Ok(())
    }

    fn stopped() -> StoreError {
        StoreError::Task("the file writer stopped".into())
    }

    fn send(&self, cmd: WriterCmd) -> Result<(), StoreError> {
        self.tx.send(cmd).map_err(|_| Self::stopped())
    }

    async fn hand_over_pending(&mut self) -> Result<(), StoreError> {
        self.close_small();
        if self.pending.is_empty() {
            return Ok(());
        }
        // A hand-over larger than the whole budget takes all of it.
        let held = self.pending_bytes.min(QUEUE_BYTES) as u32;
        self.budget
            .acquire_many(held)
            .await
            .map_err(|_| Self::stopped())?
            .forget();
        let pieces = std::mem::replace(&mut self.pending, Vec::with_capacity(8));
        self.pending_bytes = 0;
        self.send(WriterCmd::Write(pieces, held))
    }

    /// Bytes written so far (including those still queued).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The temporary file.
    pub fn partial_path(&self) -> &Path {
        &self.partial_path
    }

    /// Everything written so far, handed to the OS; the returned job fsyncs it.
    pub async fn sync_job(&mut self) -> Result<SyncJob, StoreError> {
        self.hand_over_pending().await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(WriterCmd::Sync(tx))?;
        rx.await.map_err(|_| Self::stopped())?
    }

    /// Stops the thread and returns the file with everything written (or the first write
    /// error).
    pub async fn finish(mut self) -> Result<PartialFile, StoreError> {
        self.hand_over_pending().await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(WriterCmd::Finish(tx))?;
        rx.await.map_err(|_| Self::stopped())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StorePolicy;
    use std::fs;

    #[tokio::test]
    async fn background_writer_keeps_order_and_reports_at_sync() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("F");
        let mut w = BackgroundWriter::spawn(PartialFile::create(&target).unwrap()).unwrap();
        let mut want = Vec::new();
        for i in 0..500u32 {
            let piece: Vec<u8> = (0..(i % 300)).map(|j| (i + j) as u8).collect();
            want.extend_from_slice(&piece);
            w.write(piece).await.unwrap();
            if i % 7 == 0 {
                want.extend_from_slice(b"\r\n");
                w.write_slice(b"\r\n").await.unwrap();
            }
        }
        // Hand-overs larger than half the queue budget: each waits for the thread to give
        // budget back, and one larger than all of it takes the whole budget.
        for (i, size) in [3 << 20, 3 << 20, 5 << 20, 20_000].into_iter().enumerate() {
            let piece = vec![i as u8; size];
            want.extend_from_slice(&piece);
            w.write(piece).await.unwrap();
        }
        w.write(vec![9u8; 200_000]).await.unwrap();
        want.extend(std::iter::repeat_n(9u8, 200_000));
        assert_eq!(w.len(), want.len() as u64);
        let durable = tokio::task::spawn_blocking({
            let job = w.sync_job().await.unwrap();
            move || job.run()
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(durable, want.len() as u64);
        let partial = w.finish().await.unwrap();
        partial.commit(&StorePolicy::default()).await.unwrap();
        assert_eq!(fs::read(&target).unwrap(), want);
    }
}
