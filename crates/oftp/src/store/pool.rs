//! The writer pool: a few threads that append received data to the partial files of every
//! reception of the process, fed through one byte budget.
//!
//! One thread per reception (the earlier design) made memory grow with the number of sessions:
//! each reception held a thread, its stack and up to 4 MiB of queued data, so 1,000 receiving
//! sessions took 76-124 MiB. Here every reception has a *slot* in the pool instead:
//!
//! - **Order.** A slot is a queue of [`Item`]s for one file (data, a sync, the finish). A slot is
//!   run by at most one thread at a time, which takes its whole queue, so a file's writes keep
//!   their order and a sync covers everything queued before it.
//! - **Few wake-ups.** A slot is *ready* (queued for the threads) once it holds [`WAKE_AT`]
//!   octets, a command, or when a session waits for budget; until then it is *lazy* and gathers
//!   without waking a thread (one wake-up per 128 KiB, not per DATA buffer).
//! - **Bounded memory.** Data is queued only against the byte budget ([`WRITE_BUDGET`], counted
//!   by allocated capacity), and a thread gives the budget back as soon as the bytes are in the
//!   page cache. A session that finds the budget spent waits asynchronously (no tokio worker is
//!   blocked): it reads no more from its socket, so its partner runs out of credit.
//! - **No deadlock.** Budget is held only by queued items, and only the threads release it,
//!   which wait for nothing but the disk (they never wait for budget, for a session or for a
//!   reader of a tap: see `crate::stream`). A session that has to wait first makes every lazy slot
//!   ready, and no slot becomes lazy while anyone waits, so what it waits for is always on its
//!   way to a thread, even when every other session is waiting too.
//! - **Faults.** A write error is kept and reported at the next sync or at the finish, as
//!   before. A panic while a thread runs a slot stops that slot only (its session sees "the
//!   file writer stopped"); the thread goes on with the others.
//!
//! fsync is not done here: a sync hands back a [`SyncJob`] that the connection runs on the
//! blocking pool, so a slow disk never holds a pool thread for long.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, oneshot};

use super::{PartialFile, StoreError, SyncJob};
use crate::stream::Tap;

/// Threads of the process-wide pool. Writes into the page cache are short; a few threads keep
/// a slow file system from holding up every reception without costing a thread per session.
pub(super) const WRITER_THREADS: usize = 4;

/// Octets of received data that may wait for the threads, all receptions of the process
/// together. Twice the queue one reception had before, so a single fast transfer still rides
/// over a stall of the page-cache write-back.
pub(super) const WRITE_BUDGET: usize = 8 * 1024 * 1024;

/// Queued octets that make a lazy slot ready.
const WAKE_AT: usize = 128 * 1024;

/// What a slot's thread does, in order.
pub(super) enum Item {
    /// Bytes to append, with the budget they hold and (file services) the tap's budget.
    Data {
        bytes: Vec<u8>,
        held: OwnedSemaphorePermit,
        tapped: Option<OwnedSemaphorePermit>,
        /// A gathering buffer that small pieces may still be appended to.
        gather: bool,
    },
    /// Hand back a job that fsyncs everything written before.
    Sync(oneshot::Sender<Result<SyncJob, StoreError>>),
    /// Hand back the file: the reception is over.
    Finish(oneshot::Sender<Result<PartialFile, StoreError>>),
}

/// A reception's file while it is written.
pub(super) struct Writing {
    pub(super) file: PartialFile,
    pub(super) tap: Option<Tap>,
    /// The first write error, reported by the next sync or the finish.
    pub(super) failed: Option<StoreError>,
}

/// A slot of the pool, named by its index and a generation (indices are reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SlotKey {
    index: usize,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    No,
    Lazy,
    Ready,
}

struct Slot {
    generation: u64,
    items: Vec<Item>,
    /// Octets in `items`.
    queued: usize,
    /// A sync or the finish is queued: ready at once.
    urgent: bool,
    listed: Listed,
    /// A thread is running the slot (it has the file).
    running: bool,
    /// The file, when no thread has it; `None` once finished or broken.
    writing: Option<Box<Writing>>,
    /// No more items: finished, given up by its session, or broken by a panic.
    stopped: bool,
}

struct State {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    next_generation: u64,
    ready: VecDeque<usize>,
    lazy: Vec<usize>,
    /// Sessions waiting for budget: while there are any, no slot is lazy.
    waiters: usize,
    shutdown: bool,
}

struct Inner {
    state: Mutex<State>,
    work: Condvar,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

/// Shuts the threads down when the last [`Pool`] handle goes (the process-wide pool never
/// does; pools of tests do).
struct Handle(Arc<Inner>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.lock().shutdown = true;
        self.0.work.notify_all();
    }
}

/// A writer pool (see the module docs). Cloning shares it.
#[derive(Clone)]
pub(super) struct Pool(Arc<Handle>);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("budget_bytes", &self.inner().budget_bytes)
            .finish_non_exhaustive()
    }
}

/// What [`Pool::append`] did.
pub(super) enum Appended {
    Done,
    /// No open gathering buffer with room: queue a new one (with the tap's budget given
    /// back).
    NoRoom(Option<OwnedSemaphorePermit>),
}

/// Counts a session waiting for budget while it lives.
struct Waiting<'a>(&'a Inner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiters -= 1;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn slot(&mut self, key: SlotKey) -> Option<&mut Slot> {
        self.slots
            .get_mut(key.index)?
            .as_mut()
            .filter(|s| s.generation == key.generation)
    }

    /// Puts a slot with items on the lazy or the ready list (or leaves it where it is).
    /// Returns whether a thread should be woken.
    fn list(&mut self, index: usize) -> bool {
        let waiters = self.waiters;
        let Some(slot) = self.slots[index].as_mut() else {
            return false;
        };
        if slot.running || slot.listed == Listed::Ready {
            return false;
        }
        let ready = slot.urgent || slot.stopped || slot.queued >= WAKE_AT || waiters > 0;
        match (slot.listed, ready) {
            (Listed::Lazy, false) => false,
            (Listed::No, false) => {
                slot.listed = Listed::Lazy;
                self.lazy.push(index);
                false
            }
            (_, true) => {
                if slot.listed == Listed::Lazy {
                    let at = self.lazy.iter().position(|&i| i == index);
                    if let Some(at) = at {
                        self.lazy.swap_remove(at);
                    }
                }
                slot.listed = Listed::Ready;
                self.ready.push_back(index);
                true
            }
            (Listed::Ready, false) => false,
        }
    }

    /// Makes every lazy slot ready.
    fn wake_all_lazy(&mut self) {
        for index in std::mem::take(&mut self.lazy) {
            if let Some(slot) = self.slots[index].as_mut() {
                slot.listed = Listed::Ready;
                self.ready.push_back(index);
            }
        }
    }
}

impl Pool {
    /// A pool of `threads` threads sharing `budget_bytes` of queued data.
    pub(super) fn new(threads: usize, budget_bytes: usize) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                slots: Vec::new(),
                free: Vec::new(),
                next_generation: 0,
                ready: VecDeque::new(),
                lazy: Vec::new(),
                waiters: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
        });
        // Made before the threads: if one cannot start, dropping it stops the others.
        let pool = Pool(Arc::new(Handle(inner.clone())));
        for n in 0..threads.max(1) {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("oftp-writer-{n}"))
                .spawn(move || run_thread(&inner))?;
        }
        Ok(pool)
    }

    /// The pool all receptions of this process share, started at the first use.
    pub(super) fn shared() -> std::io::Result<Self> {
        static SHARED: Mutex<Option<Pool>> = Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = &*shared {
            return Ok(pool.clone());
        }
        let pool = Pool::new(WRITER_THREADS, WRITE_BUDGET)?;
        *shared = Some(pool.clone());
        Ok(pool)
    }

    fn inner(&self) -> &Inner {
        &self.0.0
    }

    /// A slot for a new reception.
    pub(super) fn open(&self, file: PartialFile, tap: Option<Tap>) -> SlotKey {
        let mut st = self.inner().lock();
        st.next_generation += 1;
        let generation = st.next_generation;
        let slot = Slot {
            generation,
            items: Vec::new(),
            queued: 0,
            urgent: false,
            listed: Listed::No,
            running: false,
            writing: Some(Box::new(Writing {
                file,
                tap,
                failed: None,
            })),
            stopped: false,
        };
        let index = match st.free.pop() {
            Some(i) => {
                st.slots[i] = Some(slot);
                i
            }
            None => {
                st.slots.push(Some(slot));
                st.slots.len() - 1
            }
        };
        SlotKey { index, generation }
    }

    /// Budget for `bytes` octets of queued data (at most the whole budget); waits while it is
    /// spent, making every lazy slot ready first (see the module docs).
    pub(super) async fn hold(&self, bytes: usize) -> OwnedSemaphorePermit {
        let inner = self.inner();
        let want = bytes.clamp(1, inner.budget_bytes) as u32;
        match inner.budget.clone().try_acquire_many_owned(want) {
            Ok(permit) => return permit,
            Err(TryAcquireError::NoPermits) => {}
            Err(TryAcquireError::Closed) => unreachable!("the write budget is never closed"),
        }
        let waiting = {
            let mut st = inner.lock();
            st.waiters += 1;
            st.wake_all_lazy();
            Waiting(inner)
        };
        inner.work.notify_all();
        let permit = inner
            .budget
            .clone()
            .acquire_many_owned(want)
            .await
            .expect("the write budget is never closed");
        drop(waiting);
        permit
    }

    /// Makes the slot ready if it holds anything (before its session waits for a tap).
    pub(super) fn wake(&self, key: SlotKey) {
        let mut st = self.inner().lock();
        let Some(slot) = st.slot(key) else {
            return;
        };
        if slot.items.is_empty() {
            return;
        }
        slot.urgent = true;
        let notify = st.list(key.index);
        drop(st);
        if notify {
            self.inner().work.notify_one();
        }
    }

    /// Queues an item; an error when the slot stopped (its thread panicked).
    pub(super) fn push(&self, key: SlotKey, item: Item) -> Result<(), StoreError> {
        let mut st = self.inner().lock();
        let slot = match st.slot(key) {
            Some(s) if !s.stopped => s,
            _ => return Err(stopped()),
        };
        match &item {
            Item::Data { bytes, .. } => slot.queued += bytes.len(),
            Item::Sync(_) | Item::Finish(_) => slot.urgent = true,
        }
        slot.items.push(item);
        let notify = st.list(key.index);
        drop(st);
        if notify {
            self.inner().work.notify_one();
        }
        Ok(())
    }

    /// Appends `bytes` to the slot's last gathering buffer if it has room (no new budget).
    pub(super) fn append(
        &self,
        key: SlotKey,
        bytes: &[u8],
        tapped: Option<OwnedSemaphorePermit>,
    ) -> Result<Appended, StoreError> {
        let mut st = self.inner().lock();
        let slot = match st.slot(key) {
            Some(s) if !s.stopped => s,
            _ => return Err(stopped()),
        };
        let Some(Item::Data {
            bytes: buf,
            tapped: held_tap,
            gather: true,
            ..
        }) = slot.items.last_mut()
        else {
            return Ok(Appended::NoRoom(tapped));
        };
        if buf.capacity() - buf.len() < bytes.len() {
            return Ok(Appended::NoRoom(tapped));
        }
        buf.extend_from_slice(bytes);
        match (held_tap.as_mut(), tapped) {
            (Some(h), Some(t)) => h.merge(t),
            (None, t) => *held_tap = t,
            (Some(_), None) => {}
        }
        slot.queued += bytes.len();
        let notify = st.list(key.index);
        drop(st);
        if notify {
            self.inner().work.notify_one();
        }
        Ok(Appended::Done)
    }

    /// The session gave the slot up: queued data is dropped (a restart resumes from the last
    /// checkpoint, never from undurable data) and a thread closes the file.
    pub(super) fn close(&self, key: SlotKey) {
        let mut st = self.inner().lock();
        let Some(slot) = st.slot(key) else {
            return;
        };
        if slot.stopped {
            return;
        }
        slot.stopped = true;
        let dropped = std::mem::take(&mut slot.items);
        slot.queued = 0;
        let notify = st.list(key.index);
        drop(st);
        if notify {
            self.inner().work.notify_one();
        }
        drop(dropped);
    }
}

pub(super) fn stopped() -> StoreError {
    StoreError::Task("the file writer stopped".into())
}

fn run_thread(inner: &Inner) {
    let mut st = inner.lock();
    loop {
        let Some(index) = st.ready.pop_front() else {
            if st.shutdown {
                return;
            }
            st = inner.work.wait(st).unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        let Some(slot) = st.slots[index].as_mut() else {
            continue;
        };
        slot.listed = Listed::No;
        slot.running = true;
        slot.urgent = false;
        slot.queued = 0;
        let items = std::mem::take(&mut slot.items);
        let writing = slot.writing.take();
        drop(st);

        // Outside the lock: the writes, and dropping what a finished slot leaves.
        let (writing, broken) = match writing {
            Some(w) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_items(w, items)))
                {
                    Ok(w) => (w, false),
                    Err(_) => (None, true),
                }
            }
            None => (None, false),
        };

        st = inner.lock();
        let slot = st.slots[index].as_mut().expect("a running slot stays");
        slot.running = false;
        if broken || writing.is_none() {
            slot.stopped = true;
        }
        let leftover = if slot.stopped {
            let slot = st.slots[index].take().expect("checked above");
            st.free.push(index);
            Some((slot.writing, writing, slot.items))
        } else {
            slot.writing = writing;
            if !slot.items.is_empty() && st.list(index) {
                inner.work.notify_one();
            }
            None
        };
        if broken {
            tracing::error!("a file writer panicked; that reception stops");
        }
        if leftover.is_some() {
            // Closing a file may take a moment (network file systems): not under the lock.
            drop(st);
            drop(leftover);
            st = inner.lock();
        }
    }
}

/// Writes the items in order; `None` once the file was handed back (or given up).
fn run_items(mut w: Box<Writing>, items: Vec<Item>) -> Option<Box<Writing>> {
    for item in items {
        match item {
            Item::Data {
                bytes,
                held,
                tapped,
                ..
            } => {
                if w.failed.is_none()
                    && let Err(e) = w.file.write(&bytes)
                {
                    w.failed = Some(e);
                }
                // In the page cache (or failed): the budget goes back at once.
                drop(held);
                match &mut w.tap {
                    // A reader of a file that could not be stored would wait for the rest in
                    // vain: it sees an error instead.
                    Some(_) if w.failed.is_some() => w.tap = None,
                    Some(t) => t.feed(bytes, tapped),
                    None => {}
                }
            }
            Item::Sync(reply) => {
                let r = match w.failed.take() {
                    Some(e) => Err(e),
                    None => w.file.sync_job(),
                };
                if let Err(e) = &r {
                    w.failed = Some(StoreError::Task(e.to_string()));
                }
                let _ = reply.send(r);
            }
            Item::Finish(reply) => {
                let Writing { file, tap, failed } = *w;
                let r = match failed {
                    Some(e) => Err(e),
                    None => {
                        // The reader may go on to read the stored file itself (the default
                        // `FileServices::open_incoming`): all of it is in the file before the
                        // stream ends.
                        if let Some(t) = tap {
                            t.complete();
                        }
                        Ok(file)
                    }
                };
                let _ = reply.send(r);
                return None;
            }
        }
    }
    Some(w)
}
