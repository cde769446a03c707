//! mbox (mboxrd) output of an export: one file per group of messages (a folder, or a whole
//! mailbox), written to a temporary file, fsynced and renamed, each message preceded by its
//! `From ` line and quoted. See the parent module for the format; it does not choose the
//! groups or the paths.

use super::{
    COPY_BUFFER, Durability, ExportProgress, ExportReport, Feed, Format, from_durable,
    open_message, pump,
};
use crate::error::Error;
use crate::index::Hit;
use crate::store::MessageStore;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

/// Writes the messages of `group` into the mbox file `target`: on any failure the file is not
/// there (or an earlier one stays), never a part.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_mbox(
    feed: &mut Feed<'_>,
    group: &(String, String),
    format: Format,
    durability: Durability,
    store: &dyn MessageStore,
    target: &Path,
    progress: &ExportProgress,
    report: &mut ExportReport,
) -> Result<(), Error> {
    let opts = match durability {
        Durability::Durable => durable_write::Options::default(),
        Durability::NoFsync => durable_write::Options::default().without_fsync(),
    };
    durable_write::write_with(target, &opts, |f| {
        let mut w = BufWriter::with_capacity(256 * 1024, f);
        let mut buf = vec![0u8; COPY_BUFFER];
        while let Some(hit) = feed.next_in(group, format).map_err(io_err)? {
            let Some(mut r) = open_message(store, &hit).map_err(io_err)? else {
                report.missing.push(hit.headers.key.to_string());
                continue;
            };
            w.write_all(from_line(&hit).as_bytes())?;
            let mut q = MboxrdWriter::new(&mut w);
            let n = pump(&mut r, &mut buf, |b| q.push(b))
                .map_err(|e| io_err(e.into_error(&hit, target)))?;
            q.finish()?;
            w.write_all(b"\n")?;
            report.messages += 1;
            report.bytes += n;
            progress.done.fetch_add(1, Ordering::Relaxed);
            progress.bytes.fetch_add(n, Ordering::Relaxed);
        }
        w.flush()
    })
    .map_err(from_durable)
}

/// Writes what it is given with mboxrd quoting of `>*From ` lines; remembers the last byte.
struct MboxrdWriter<'w, W: Write> {
    w: &'w mut W,
    /// At a line start: `>` seen, then bytes of `From ` matched. `None` inside a line.
    start: Option<(usize, usize)>,
    last: Option<u8>,
}

const FROM: &[u8] = b"From ";

impl<'w, W: Write> MboxrdWriter<'w, W> {
    fn new(w: &'w mut W) -> Self {
        MboxrdWriter {
            w,
            start: Some((0, 0)),
            last: None,
        }
    }

    fn flush_pending(&mut self, quote: bool) -> io::Result<()> {
        if let Some((gts, matched)) = self.start.take() {
            if quote {
                self.w.write_all(b">")?;
            }
            for _ in 0..gts {
                self.w.write_all(b">")?;
            }
            self.w.write_all(&FROM[..matched])?;
        }
        Ok(())
    }

    fn push(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while let Some(&b) = buf.first() {
            match self.start {
                None => {
                    let end = buf
                        .iter()
                        .position(|c| *c == b'\n')
                        .map_or(buf.len(), |i| i + 1);
                    self.w.write_all(&buf[..end])?;
                    self.last = Some(buf[end - 1]);
                    if buf[end - 1] == b'\n' {
                        self.start = Some((0, 0));
                    }
                    buf = &buf[end..];
                }
                Some((gts, matched)) => {
                    if matched == 0 && b == b'>' {
                        self.start = Some((gts + 1, 0));
                    } else if b == FROM[matched] {
                        if matched + 1 == FROM.len() {
                            self.start = Some((gts, FROM.len()));
                            self.flush_pending(true)?;
                        } else {
                            self.start = Some((gts, matched + 1));
                        }
                    } else {
                        // Not a From line: write what was held back, then the byte as usual.
                        self.flush_pending(false)?;
                        continue;
                    }
                    self.last = Some(b);
                    buf = &buf[1..];
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.flush_pending(false)?;
        if self.last != Some(b'\n') {
            self.w.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// The `From ` separator line of a message (asctime of its date, UTC).
fn from_line(hit: &Hit) -> String {
    let date = hit
        .headers
        .date
        .as_deref()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    format!(
        "From MAILER-DAEMON {}\n",
        date.format("%a %b %e %H:%M:%S %Y")
    )
}

fn io_err(e: Error) -> io::Error {
    io::Error::other(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(input: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut q = MboxrdWriter::new(&mut out);
        for chunk in input {
            q.push(chunk).unwrap();
        }
        q.finish().unwrap();
        out
    }

    #[test]
    fn from_lines_get_one_more_quote_whatever_the_chunking() {
        let msg: &[u8] =
            b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n>>From far\r\nFrom\r\n>Fro\r\nnot From \r\nFrom ";
        let want: &[u8] =
            b"Subject: x\r\n\r\n>From here\r\n>>From there\r\n>>>From far\r\nFrom\r\n>Fro\r\nnot From \r\n>From \n";
        assert_eq!(quote(&[msg]), want);
        // Split at every position: the same output.
        for i in 0..msg.len() {
            assert_eq!(quote(&[&msg[..i], &msg[i..]]), want, "split at {i}");
        }
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(quote(&bytes), want, "byte by byte");
        assert_eq!(quote(&[b">>>"]), b">>>\n");
        assert_eq!(quote(&[b"a\n"]), b"a\n");
    }
}
