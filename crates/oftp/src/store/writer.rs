//! The session's side of a reception's writes: [`BackgroundWriter`] queues received data for
//! the writer pool (`super::pool`) and asks it for syncs and the finished file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::pool::{Appended, Item, Pool, SlotKey, stopped};
use super::{PartialFile, StoreError, SyncJob};

/// Pieces smaller than this (F/V records, their CR LF, small DATA buffers) are copied into a
/// gathering buffer of [`GATHER`] octets; larger ones are queued as they are, without a copy.
const SMALL_PIECE: usize = 8 * 1024;

/// Capacity of a gathering buffer for small pieces: one write into the file per 32 KiB of
/// small pieces, and little budget held by a reception that is between two DATA buffers.
const GATHER: usize = 32 * 1024;

/// A [`PartialFile`] written by the process's writer pool, so a connection can read the
/// network while the previous data is copied into the page cache, without a thread of its own.
///
/// Order is kept: a [`sync_job`](Self::sync_job) covers every byte written before it. A write
/// error is kept by the pool and reported by the next `sync_job` or [`finish`](Self::finish);
/// nothing is confirmed to a peer without one of those succeeding. Writes wait (asynchronously)
/// while the pool's byte budget is spent: that is the back-pressure that reaches the partner
/// through credit. Dropping the writer gives the reception up: data not yet written is dropped
/// and the file keeps what it had.
#[derive(Debug)]
pub struct BackgroundWriter {
    pool: Pool,
    key: SlotKey,
    /// File services: what may wait for the opener (`crate::stream`); `None` without a tap,
    /// or once its reader is gone.
    tap_budget: Option<Arc<Semaphore>>,
    len: u64,
    partial_path: PathBuf,
}

impl BackgroundWriter {
    /// Hands `file` to the process's writer pool.
    pub fn spawn(file: PartialFile) -> Result<Self, StoreError> {
        Self::spawn_tapped(file, None)
    }

    /// Like [`spawn`](Self::spawn); with a `tap`, every piece is handed on after it was
    /// written, and the tap is completed when [`finish`](Self::finish) succeeds (dropped, so
    /// the reader sees an error, however else the reception ends).
    pub(crate) fn spawn_tapped(
        file: PartialFile,
        tap: Option<crate::stream::Tap>,
    ) -> Result<Self, StoreError> {
        let pool = Pool::shared().map_err(|e| {
            StoreError::io("starting the writer threads for", file.partial_path(), e)
        })?;
        Ok(Self::spawn_in(pool, file, tap))
    }

    fn spawn_in(pool: Pool, file: PartialFile, tap: Option<crate::stream::Tap>) -> Self {
        let len = file.len();
        let partial_path = file.partial_path().to_owned();
        let tap_budget = tap.as_ref().map(|t| t.budget());
        let key = pool.open(file, tap);
        Self {
            pool,
            key,
            tap_budget,
            len,
            partial_path,
        }
    }

    /// Appends bytes (a large piece is queued without a copy); waits only while the pool's
    /// budget is spent (or, with file services, while the opener is behind).
    pub async fn write(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        if bytes.len() < SMALL_PIECE {
            return self.write_slice(&bytes).await;
        }
        let tapped = self.hold_tap(bytes.len()).await;
        let held = self.pool.hold(bytes.capacity()).await;
        let len = bytes.len() as u64;
        self.pool.push(
            self.key,
            Item::Data {
                bytes,
                held,
                tapped,
                gather: false,
            },
        )?;
        self.len += len;
        Ok(())
    }

    /// Appends a copy of `bytes` (for small pieces such as a record's CR LF).
    pub async fn write_slice(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let tapped = self.hold_tap(bytes.len()).await;
        if let Appended::NoRoom(tapped) = self.pool.append(self.key, bytes, tapped)? {
            let capacity = GATHER.max(bytes.len());
            let held = self.pool.hold(capacity).await;
            let mut buf = Vec::with_capacity(capacity);
            buf.extend_from_slice(bytes);
            self.pool.push(
                self.key,
                Item::Data {
                    bytes: buf,
                    held,
                    tapped,
                    gather: true,
                },
            )?;
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Tap budget for `len` octets (see `crate::stream`); waits while the opener is behind,
    /// with this reception's queued data on its way to it.
    async fn hold_tap(&mut self, len: usize) -> Option<OwnedSemaphorePermit> {
        let budget = self.tap_budget.clone()?;
        let want = len.clamp(1, crate::stream::TAPPED_BYTES) as u32;
        let held = match budget.clone().try_acquire_many_owned(want) {
            Ok(p) => Ok(p),
            Err(TryAcquireError::Closed) => Err(()),
            Err(TryAcquireError::NoPermits) => {
                self.pool.wake(self.key);
                budget.acquire_many_owned(want).await.map_err(|_| ())
            }
        };
        // Closed: the opener stopped (its error is reported at the end); it is fed no more.
        held.map_err(|()| self.tap_budget = None).ok()
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.push(self.key, Item::Sync(tx))?;
        rx.await.map_err(|_| stopped())?
    }

    /// Ends the reception's writes and returns the file with everything written (or the
    /// first write error).
    pub async fn finish(self) -> Result<PartialFile, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.push(self.key, Item::Finish(tx))?;
        rx.await.map_err(|_| stopped())?
    }
}

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        // After a finish the slot is gone already (or goes once the finish is done).
        self.pool.close(self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::store::{StorePolicy, faults};

    /// Test data: `len` octets that differ from piece to piece.
    fn data(seed: u32, len: usize) -> Vec<u8> {
        (0..len).map(|j| (seed as usize * 31 + j) as u8).collect()
    }

    fn writer_in(pool: &Pool, dir: &Path, name: &str) -> BackgroundWriter {
        let file = PartialFile::create(&dir.join(name)).unwrap();
        BackgroundWriter::spawn_in(pool.clone(), file, None)
    }

    /// Commits what `w` wrote and returns the file's content.
    async fn committed(w: BackgroundWriter) -> Vec<u8> {
        let partial = w.finish().await.unwrap();
        let target = partial.final_path().to_owned();
        partial.commit(&StorePolicy::default()).await.unwrap();
        fs::read(target).unwrap()
    }

    async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .unwrap_or_else(|_| panic!("{what} did not finish: a deadlock"))
    }

    #[tokio::test]
    async fn background_writer_keeps_order_and_reports_at_sync() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("F");
        let mut w = BackgroundWriter::spawn(PartialFile::create(&target).unwrap()).unwrap();
        let mut want = Vec::new();
        for i in 0..500u32 {
            let piece = data(i, (i % 300) as usize);
            want.extend_from_slice(&piece);
            w.write(piece).await.unwrap();
            if i % 7 == 0 {
                want.extend_from_slice(b"\r\n");
                w.write_slice(b"\r\n").await.unwrap();
            }
        }
        // Pieces of several MiB, one larger than the whole budget (it takes all of it).
        for (i, size) in [3 << 20, 5 << 20, WRITE_BUDGET_FOR_TESTS + 1, 20_000]
            .into_iter()
            .enumerate()
        {
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
        assert_eq!(committed(w).await, want);
    }

    const WRITE_BUDGET_FOR_TESTS: usize = super::super::pool::WRITE_BUDGET;

    /// Threads of this process whose name starts with `prefix`.
    #[cfg(target_os = "linux")]
    fn threads_named(prefix: &str) -> usize {
        fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with(prefix))
            .count()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn receptions_share_a_few_writer_threads() {
        let dir = tempfile::tempdir().unwrap();
        let mut writers = Vec::new();
        for i in 0..64 {
            let file = PartialFile::create(&dir.path().join(format!("F{i}"))).unwrap();
            let mut w = BackgroundWriter::spawn(file).unwrap();
            w.write(data(i, 20_000)).await.unwrap();
            writers.push(w);
        }
        // 64 receptions at once; other tests of this process may run small pools of their
        // own, but nothing near one thread per reception.
        let threads = threads_named("oftp-writer");
        assert!(
            (1..32).contains(&threads),
            "{threads} writer threads for 64 receptions"
        );
        for (i, w) in writers.into_iter().enumerate() {
            assert_eq!(committed(w).await, data(i as u32, 20_000));
        }
    }

    #[tokio::test]
    async fn queued_data_never_exceeds_the_budget_and_writers_wait_for_it() {
        const BUDGET: usize = 256 * 1024;
        let pool = Pool::new(1, BUDGET).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stall = faults::stalled_dir(dir.path());
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..8u32 {
            let mut w = writer_in(&pool, dir.path(), &format!("F{i}"));
            let accepted = accepted.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..32 {
                    w.write(data(i * 100 + n, 16 * 1024)).await.unwrap();
                    accepted.fetch_add(16 * 1024, Ordering::SeqCst);
                }
                w
            }));
        }
        // The disk stalls: the sessions stop once the budget is queued.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let queued = accepted.load(Ordering::SeqCst);
        assert!(
            queued > 0 && queued <= BUDGET,
            "{queued} octets queued with a budget of {BUDGET}"
        );
        assert!(tasks.iter().all(|t| !t.is_finished()));
        drop(stall);
        for (i, t) in tasks.into_iter().enumerate() {
            let w = within("a writer", t).await.unwrap();
            let want: Vec<u8> = (0..32)
                .flat_map(|n| data(i as u32 * 100 + n, 16 * 1024))
                .collect();
            assert_eq!(committed(w).await, want);
        }
    }

    #[tokio::test]
    async fn no_deadlock_when_the_budget_is_held_by_sessions_that_wait() {
        // Two receptions gather a few small pieces each (a gathering buffer holds 32 KiB of
        // budget) and then wait for their partners; together they hold the whole budget.
        let pool = Pool::new(1, 2 * GATHER).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut idle: Vec<BackgroundWriter> = (0..2)
            .map(|i| writer_in(&pool, dir.path(), &format!("idle{i}")))
            .collect();
        for w in &mut idle {
            w.write(b"a record".to_vec()).await.unwrap();
        }
        // A third one must still get through, piece by piece.
        let mut busy = writer_in(&pool, dir.path(), "busy");
        let mut want = Vec::new();
        within("a session waiting for budget", async {
            for i in 0..64 {
                let piece = data(i, 16 * 1024 + i as usize);
                want.extend_from_slice(&piece);
                busy.write(piece).await.unwrap();
                busy.write_slice(b"\r\n").await.unwrap();
                want.extend_from_slice(b"\r\n");
            }
        })
        .await;
        assert_eq!(within("the finish", committed(busy)).await, want);
        for w in idle {
            assert_eq!(within("the finish", committed(w)).await, b"a record");
        }
    }

    #[tokio::test]
    async fn a_write_error_is_reported_at_the_next_sync_and_at_the_finish() {
        let dir = tempfile::tempdir().unwrap();
        let _fault = faults::unwritable_dir(dir.path(), 10);
        let file = PartialFile::create(&dir.path().join("F")).unwrap();
        let mut w = BackgroundWriter::spawn(file).unwrap();
        w.write(vec![1; 100]).await.unwrap();
        let e = w.sync_job().await.unwrap_err();
        assert!(
            matches!(
                &e,
                StoreError::Io {
                    action: "writing",
                    ..
                }
            ),
            "{e}"
        );
        // The failure stays: nothing more is confirmed.
        w.write(vec![1; 100]).await.unwrap();
        assert!(matches!(w.finish().await, Err(StoreError::Task(_))));
    }

    #[tokio::test]
    async fn a_panic_stops_its_reception_only() {
        let pool = Pool::new(1, 1 << 20).unwrap();
        let (bad_dir, good_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let _fault = faults::panicking_dir(bad_dir.path());
        let mut bad = writer_in(&pool, bad_dir.path(), "F");
        bad.write(vec![1; 20_000]).await.unwrap();
        let e = within("the sync", bad.sync_job()).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "file store task failed: the file writer stopped"
        );
        // Nothing more is confirmed for it (a write may still be taken, and dropped).
        let _ = bad.write(vec![1; 20_000]).await;
        assert!(within("the finish", bad.finish()).await.is_err());
        // The pool's only thread lives on for the others.
        let mut good = writer_in(&pool, good_dir.path(), "F");
        good.write(data(1, 50_000)).await.unwrap();
        assert_eq!(within("the finish", committed(good)).await, data(1, 50_000));
    }

    #[tokio::test]
    async fn a_slow_file_services_reader_holds_back_its_session_not_the_pool() {
        use std::io::Read as _;
        let pool = Pool::new(1, 1 << 20).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (tap, mut stream) = crate::stream::received_stream(None);
        let file = PartialFile::create(&dir.path().join("tapped")).unwrap();
        let mut tapped = BackgroundWriter::spawn_in(pool.clone(), file, Some(tap));
        let total = crate::stream::TAPPED_BYTES + (1 << 20);
        let sender = tokio::spawn(async move {
            for i in 0..total / (64 * 1024) {
                tapped.write(data(i as u32, 64 * 1024)).await.unwrap();
            }
            tapped
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!sender.is_finished(), "the session waits for its reader");
        // Meanwhile the pool's only thread serves another reception.
        let mut other = writer_in(&pool, dir.path(), "other");
        other.write(data(7, 300_000)).await.unwrap();
        assert_eq!(
            within("the other finish", committed(other)).await,
            data(7, 300_000)
        );
        // The reader catches up: the session goes on, and the reader sees the whole file.
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            stream.read_to_end(&mut all).map(|_| all)
        });
        let tapped = within("the tapped session", sender).await.unwrap();
        let want: Vec<u8> = (0..total / (64 * 1024))
            .flat_map(|i| data(i as u32, 64 * 1024))
            .collect();
        assert_eq!(within("the tapped finish", committed(tapped)).await, want);
        assert_eq!(reader.join().unwrap().unwrap(), want);
    }

    #[tokio::test]
    async fn a_dropped_writer_gives_its_budget_back() {
        const BUDGET: usize = 4 * GATHER;
        let pool = Pool::new(1, BUDGET).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer_in(&pool, dir.path(), "F");
        w.write(vec![1; 100_000]).await.unwrap();
        w.write_slice(b"x").await.unwrap();
        drop(w);
        // All of it again, for another reception.
        let mut other = writer_in(&pool, dir.path(), "G");
        within("the budget", other.write(vec![2; BUDGET]))
            .await
            .unwrap();
        assert_eq!(
            within("the finish", committed(other)).await,
            vec![2; BUDGET]
        );
    }
}
