//! Streams between a connection and the threads that apply file services (RFC 5024 section 6)
//! while a file is on the wire, so that signing, compressing and encrypting (or the reverse)
//! overlap the transfer instead of running before or after it.
//!
//! - Receiving: the writer pool (`crate::store`) stores every DATA payload and then hands the
//!   same buffer (no copy) to a [`Tap`]; the file-services thread reads the transmitted bytes
//!   from the matching [`ReceivedStream`] as they arrive. The stream ends only when the writer
//!   has stored the complete file ([`Tap::complete`]); a transfer that breaks off ends it with an
//!   error, so an opener never mistakes a prefix for the whole file and never waits forever.
//! - Sending: a [`SealedSource`] runs the processing of an outgoing file on a thread of its own
//!   and hands the processed bytes to the connection in pieces of whole DATA buffers.
//!
//! Both are bounded (about 2 MiB in flight), so memory per transfer stays constant and a slow
//! side holds the other back (the receiver by credit, the sender by not sending). On the
//! receiving side the bound is the tap's budget ([`TAPPED_BYTES`]): the *session* takes it
//! (waiting asynchronously) before it queues a piece, and the reader gives it back as it reads,
//! so feeding the tap never blocks the pool thread that stores the piece.
//!
//! Not here: what the services do ([`crate::transport::FileServices`]), where files are stored
//! ([`crate::store`]).

use std::io::{self, Read, Write};
use std::sync::{Arc, mpsc};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::source::Chunk;
use crate::transport::Seal;

/// Octets that may wait for the opener, per reception.
pub(crate) const TAPPED_BYTES: usize = 2 * 1024 * 1024;

/// What the writer pool hands to the opener.
enum Tapped {
    /// A stored piece, with the tap's budget it holds (given back once it is read).
    Bytes(Vec<u8>, Option<OwnedSemaphorePermit>),
    /// Everything was stored: the stream ends here.
    Complete,
}

/// The writer's end of a [`ReceivedStream`].
#[derive(Debug)]
pub(crate) struct Tap {
    tx: Option<mpsc::Sender<Tapped>>,
    budget: Arc<Semaphore>,
}

impl Tap {
    /// The budget a piece takes before it is queued for the writer ([`TAPPED_BYTES`] in all):
    /// closed once the reader or this tap is gone.
    pub(crate) fn budget(&self) -> Arc<Semaphore> {
        self.budget.clone()
    }

    /// Hands a stored piece on, with the budget it holds; never blocks. An opener that stopped
    /// (it failed; its error is reported at the end of the transfer) is fed no more.
    pub(crate) fn feed(&mut self, piece: Vec<u8>, held: Option<OwnedSemaphorePermit>) {
        if let Some(tx) = &self.tx
            && tx.send(Tapped::Bytes(piece, held)).is_err()
        {
            self.tx = None;
        }
    }

    /// The whole file was stored: the opener sees the end of its stream.
    pub(crate) fn complete(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Tapped::Complete);
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // Nothing more is fed: a session waiting for budget must not wait for ever.
        self.budget.close();
    }
}

/// The opener's end: the transmitted bytes of one file, from its first octet, as they arrive.
pub(crate) struct ReceivedStream {
    /// A durable part received by an earlier session (a restarted transfer), read first.
    prefix: Option<io::Take<std::fs::File>>,
    rx: mpsc::Receiver<Tapped>,
    piece: Vec<u8>,
    /// The tap's budget `piece` holds.
    held: Option<OwnedSemaphorePermit>,
    pos: usize,
    complete: bool,
    budget: Arc<Semaphore>,
}

impl Drop for ReceivedStream {
    fn drop(&mut self) {
        // Nothing more is read: the session must not wait for budget this reader would give
        // back.
        self.budget.close();
    }
}

/// A tap and its stream; `prefix` is the already stored part of a restarted transfer.
pub(crate) fn received_stream(prefix: Option<io::Take<std::fs::File>>) -> (Tap, ReceivedStream) {
    // Unbounded as a channel, bounded by the budget.
    let (tx, rx) = mpsc::channel();
    let budget = Arc::new(Semaphore::new(TAPPED_BYTES));
    (
        Tap {
            tx: Some(tx),
            budget: budget.clone(),
        },
        ReceivedStream {
            prefix,
            rx,
            piece: Vec::new(),
            held: None,
            pos: 0,
            complete: false,
            budget,
        },
    )
}

impl Read for ReceivedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(prefix) = &mut self.prefix {
            let n = prefix.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.prefix = None;
        }
        while self.pos == self.piece.len() {
            if self.complete {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Tapped::Bytes(piece, held)) => {
                    // The previous piece is read: its budget goes back.
                    self.piece = piece;
                    self.held = held;
                    self.pos = 0;
                }
                Ok(Tapped::Complete) => self.complete = true,
                Err(mpsc::RecvError) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the transfer ended before the file was complete",
                    ));
                }
            }
        }
        let n = buf.len().min(self.piece.len() - self.pos);
        buf[..n].copy_from_slice(&self.piece[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Processed bytes handed to the connection per message: whole DATA buffers, about 256 KiB.
const SEALED_TARGET: usize = 256 * 1024;

/// Messages that may wait for the connection (about 2 MiB).
const SEALED_MESSAGES: usize = 8;

enum Sealed {
    Bytes(Vec<u8>),
    /// The processing finished; the hash of the transmitted bytes, if one was asked for.
    Done(Option<Vec<u8>>),
    Failed(io::Error),
}

/// The processed form of an outgoing file, produced on a thread of its own while it is sent.
/// Dropping it stops the thread (its next hand-over fails).
pub(crate) struct SealedSource {
    rx: tokio::sync::mpsc::Receiver<Sealed>,
    piece: Vec<u8>,
    pos: usize,
    units: u64,
    /// Set once the processing finished: the hash it returned.
    hash: Option<Option<Vec<u8>>>,
    failed: Option<io::Error>,
}

impl std::fmt::Debug for SealedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSource")
            .field("units", &self.units)
            .finish_non_exhaustive()
    }
}

impl SealedSource {
    /// Starts `seal` on a new thread; its output is cut into pieces of whole `chunk`s (the
    /// octets one DATA buffer carries), so every DATA buffer but the last is full.
    pub(crate) fn spawn(seal: Seal, chunk: usize) -> io::Result<Self> {
        let (tx, rx) = tokio::sync::mpsc::channel(SEALED_MESSAGES);
        let chunk = chunk.max(1);
        let piece = chunk * SEALED_TARGET.div_ceil(chunk);
        std::thread::Builder::new()
            .name("oftp-seal".into())
            .spawn(move || {
                let mut out = PieceWriter {
                    tx: tx.clone(),
                    buf: Vec::with_capacity(piece),
                    piece,
                };
                let result = seal(&mut out).and_then(|hash| {
                    out.send_buf()?;
                    Ok(hash)
                });
                let last = match result {
                    Ok(hash) => Sealed::Done(hash),
                    Err(e) => Sealed::Failed(e),
                };
                // The connection may be gone already; nothing is waiting then.
                let _ = tx.blocking_send(last);
            })?;
        Ok(Self {
            rx,
            piece: Vec::new(),
            pos: 0,
            units: 0,
            hash: None,
            failed: None,
        })
    }

    /// The next piece of at most `chunk` octets, [`Chunk::Pending`] while the processing
    /// thread has not produced it yet (await [`ready`](Self::ready)), [`Chunk::End`] when all
    /// was sent.
    pub(crate) fn next_chunk(&mut self, chunk: usize) -> io::Result<Chunk<'_>> {
        while self.pos == self.piece.len() {
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            if self.hash.is_some() {
                return Ok(Chunk::End);
            }
            match self.rx.try_recv() {
                Ok(message) => self.stash(message),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return Ok(Chunk::Pending),
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    return Err(stopped());
                }
            }
        }
        let start = self.pos;
        self.pos = self.piece.len().min(start + chunk.max(1));
        self.units += (self.pos - start) as u64;
        Ok(Chunk::Data(&self.piece[start..self.pos], false))
    }

    /// Waits until [`next_chunk`](Self::next_chunk) has something other than `Pending` to
    /// say. Cancel-safe: a message received is kept.
    pub(crate) async fn ready(&mut self) {
        if self.pos < self.piece.len() || self.hash.is_some() || self.failed.is_some() {
            return;
        }
        match self.rx.recv().await {
            Some(message) => self.stash(message),
            None => self.failed = Some(stopped()),
        }
    }

    fn stash(&mut self, message: Sealed) {
        match message {
            Sealed::Bytes(piece) => {
                self.piece = piece;
                self.pos = 0;
            }
            Sealed::Done(hash) => self.hash = Some(hash),
            Sealed::Failed(e) => self.failed = Some(e),
        }
    }

    /// Octets handed out so far.
    pub(crate) fn units(&self) -> u64 {
        self.units
    }

    /// After [`Chunk::End`]: the hash of the transmitted bytes, if one was asked for.
    pub(crate) fn take_hash(&mut self) -> Option<Vec<u8>> {
        self.hash.as_mut().and_then(Option::take)
    }
}

fn stopped() -> io::Error {
    io::Error::other("the file processing stopped before the end of the file")
}

/// The processing thread's writer: gathers whole pieces and hands them over.
struct PieceWriter {
    tx: tokio::sync::mpsc::Sender<Sealed>,
    buf: Vec<u8>,
    piece: usize,
}

impl PieceWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.piece));
        self.tx
            .blocking_send(Sealed::Bytes(full))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the transfer was stopped"))
    }
}

impl Write for PieceWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.piece - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.piece {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v).map(|_| v)
    }

    #[test]
    fn received_stream_reads_the_stored_prefix_then_the_tapped_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        std::fs::write(&path, b"stored-part|not-yet-durable").unwrap();
        let prefix = std::fs::File::open(&path).unwrap().take(12);
        let (mut tap, mut stream) = received_stream(Some(prefix));
        let reader = std::thread::spawn(move || read_all(&mut stream));
        tap.feed(b"new ".to_vec(), None);
        tap.feed(b"data".to_vec(), None);
        tap.complete();
        assert_eq!(reader.join().unwrap().unwrap(), b"stored-part|new data");
    }

    #[test]
    fn a_transfer_that_breaks_off_is_an_error_not_an_end() {
        let (mut tap, mut stream) = received_stream(None);
        let reader = std::thread::spawn(move || read_all(&mut stream));
        tap.feed(b"half a file".to_vec(), None);
        drop(tap);
        let err = reader.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_tap_whose_reader_stopped_does_not_block() {
        let (mut tap, stream) = received_stream(None);
        drop(stream);
        // Its budget is closed, so a session waiting for it goes on without the tap.
        assert!(tap.budget().is_closed());
        for _ in 0..64 {
            tap.feed(vec![0; 16], None);
        }
        tap.complete();
    }

    async fn drain(src: &mut SealedSource, chunk: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            match src.next_chunk(chunk)? {
                Chunk::Data(d, _) => out.push(d.to_vec()),
                Chunk::End => return Ok(out),
                Chunk::Pending => src.ready().await,
            }
        }
        panic!("no end")
    }

    #[tokio::test]
    async fn sealed_source_hands_out_whole_chunks_and_the_hash() {
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let seal: Seal = Box::new(move |out| {
            // Odd-sized writes: the pieces must still be whole chunks.
            for part in data.chunks(10_007) {
                out.write_all(part)?;
            }
            Ok(Some(vec![7; 32]))
        });
        let mut src = SealedSource::spawn(seal, 4093).unwrap();
        let chunks = drain(&mut src, 4093).await.unwrap();
        let (last, full) = chunks.split_last().unwrap();
        assert!(full.iter().all(|c| c.len() == 4093));
        assert!(last.len() <= 4093);
        assert_eq!(chunks.concat(), expected);
        assert_eq!(src.units(), expected.len() as u64);
        assert_eq!(src.take_hash(), Some(vec![7; 32]));
    }

    #[tokio::test]
    async fn a_failing_seal_is_an_error_of_the_source() {
        let seal: Seal = Box::new(|out| {
            out.write_all(&[1; 300_000])?;
            Err(io::Error::other("source file vanished"))
        });
        let mut src = SealedSource::spawn(seal, 1000).unwrap();
        let err = drain(&mut src, 1000).await.unwrap_err();
        assert!(err.to_string().contains("vanished"), "{err}");
    }
}
