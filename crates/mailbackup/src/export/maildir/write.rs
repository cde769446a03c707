//! The writer threads of a Maildir export: each takes messages from the feed a share at a time
//! and writes them completely, into an anonymous file or into `tmp/`, then hands them to the
//! folder's committer. They never name a file in `cur/`.

use super::super::{COPY_BUFFER, CopyError, ExportReport, Feed, Format, open_message, pump};
use super::anonymous::AnonymousDir;
use super::commit::discard;
use super::{AnonymousFile, HANDOFF, Pending, Shared, Staged, maildir_name};
use crate::error::Error;
use crate::index::Hit;
use crate::store::MessageStore;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Mutex, PoisonError};

/// Where the writer of one Maildir creates its files.
pub(super) struct Target<'a> {
    pub(super) cur: &'a Path,
    pub(super) tmp: &'a Path,
    /// Where anonymous files are made, when the file system has them.
    pub(super) anonymous: Option<&'a AnonymousDir>,
}

impl Target<'_> {
    /// Writes `r` as the message `name`: into an anonymous file while the budget allows, else
    /// into `tmp/<name>`. Returns where it waits and its size.
    fn write<'a>(
        &self,
        name: &str,
        r: &mut impl io::Read,
        buf: &mut [u8],
        shared: &'a Shared,
    ) -> Result<(Pending<'a>, u64), CopyError> {
        if let Some(dir) = self.anonymous.filter(|_| shared.take_anonymous()) {
            let file = dir.create().map_err(|e| {
                shared.anonymous_open.fetch_sub(1, Ordering::AcqRel);
                CopyError::Write(e)
            })?;
            let file = AnonymousFile { file, shared };
            let bytes = pump(r, buf, |b| (&file.file).write_all(b))?;
            return Ok((Pending::Anonymous(file), bytes));
        }
        let mut file = File::create(self.tmp.join(name)).map_err(CopyError::Write)?;
        let bytes = pump(r, buf, |b| file.write_all(b))?;
        Ok((Pending::InTmp, bytes))
    }
}

/// Threads writing one folder's messages. Anonymous files take no lock of the folder, so two
/// writers fill two cores where one left the second to the committer and the kernel's
/// writeback (two exports at once took 1.1-1.6 times one, 2026-12-07).
const WRITERS: usize = 2;

/// Messages a writer takes from the feed at a time: the feed's lock is taken once per share.
const SHARE: usize = 32;

/// Writes the group's messages with [`WRITERS`] threads, each taking [`SHARE`] messages at a
/// time from the feed and handing them to the committer [`HANDOFF`] at a time once complete.
/// Stops at the first failure of any writer (each removes the file it was writing and hands
/// over those it finished before), or when the committer has failed.
pub(super) fn stage_maildir<'a>(
    feed: &mut Feed<'_>,
    group: &(String, String),
    store: &dyn MessageStore,
    target: &Target<'_>,
    committer: &SyncSender<Vec<Staged<'a>>>,
    shared: &'a Shared,
    report: &mut ExportReport,
) -> Result<(), Error> {
    let feed = Mutex::new(feed);
    let stop = AtomicBool::new(false);
    let work = || {
        let mut writer = Writer::new(target, store, committer.clone(), shared);
        let result = (|| loop {
            let share = {
                let mut feed = feed.lock().unwrap_or_else(PoisonError::into_inner);
                feed.take_in(group, Format::Maildir, SHARE)?
            };
            if share.is_empty() {
                return Ok(());
            }
            for hit in share {
                if stop.load(Ordering::Acquire) || shared.failed() {
                    return Ok(());
                }
                writer.write(hit)?;
            }
        })();
        if result.is_err() {
            stop.store(true, Ordering::Release);
        }
        // What was finished before a failure is kept.
        writer.hand_over();
        (result, writer.missing)
    };
    let results = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..WRITERS).map(|_| s.spawn(work)).collect();
        let mut results = vec![work()];
        for h in helpers {
            results.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        results
    });
    let mut first_error = Ok(());
    for (result, missing) in results {
        report.missing.extend(missing);
        if first_error.is_ok() {
            first_error = result;
        }
    }
    first_error
}

/// One writing thread's state: its copy buffer, the messages it finished and not yet handed
/// over, the selected messages it found missing from the store.
struct Writer<'t, 'a> {
    target: &'t Target<'t>,
    store: &'t dyn MessageStore,
    committer: SyncSender<Vec<Staged<'a>>>,
    shared: &'a Shared,
    buf: Vec<u8>,
    finished: Vec<Staged<'a>>,
    missing: Vec<String>,
}

impl<'t, 'a> Writer<'t, 'a> {
    fn new(
        target: &'t Target<'t>,
        store: &'t dyn MessageStore,
        committer: SyncSender<Vec<Staged<'a>>>,
        shared: &'a Shared,
    ) -> Self {
        Writer {
            target,
            store,
            committer,
            shared,
            buf: vec![0u8; COPY_BUFFER],
            finished: Vec::with_capacity(HANDOFF),
            missing: Vec::new(),
        }
    }

    /// Writes one message completely, or removes what it wrote of it and fails.
    fn write(&mut self, hit: Hit) -> Result<(), Error> {
        let Some(mut r) = open_message(self.store, &hit)? else {
            self.missing.push(hit.headers.key.to_string());
            return Ok(());
        };
        let name = maildir_name(&hit);
        match self.target.write(&name, &mut r, &mut self.buf, self.shared) {
            Ok((pending, bytes)) => self.finished.push(Staged {
                name,
                bytes,
                pending,
            }),
            Err(e) => {
                // An anonymous file is gone once closed; a file in tmp/ is removed.
                let _ = std::fs::remove_file(self.target.tmp.join(&name));
                return Err(e.into_error(&hit, &self.target.cur.join(&name)));
            }
        }
        if self.finished.len() >= HANDOFF {
            self.hand_over();
        }
        Ok(())
    }

    /// Hands what is finished to the committer.
    fn hand_over(&mut self) {
        if self.finished.is_empty() {
            return;
        }
        let handed = std::mem::replace(&mut self.finished, Vec::with_capacity(HANDOFF));
        if let Err(mpsc::SendError(lost)) = self.committer.send(handed) {
            // The committer has ended with an error, which the caller reports.
            discard(self.target.tmp, lost);
        }
    }
}
