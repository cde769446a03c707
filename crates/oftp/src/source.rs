//! Reading a local file as the content of an outgoing virtual file.
//!
//! U and T files are sent byte for byte; F and V files are read as lines (LF or CR LF
//! terminated), one record per line, the line end not transmitted (the seed's convention for
//! `ffFixed`/`ffVariable`). The receiving side writes each record followed by CR LF, so a CR LF
//! text file round-trips unchanged.
//!
//! Restart positions are applied here: for U/T a seek to `position * 1024`, for F/V skipping
//! `position` records. The totals for EFID (records, octets of the whole file) are counted
//! while reading, including the skipped part, because EFID always carries whole-file totals.
//!
//! [`OutgoingSource`] puts a local file and a processed form produced while it is sent
//! ([`SealedSource`]) behind one interface for the connection.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use oftp_proto::codec::FileFormat;

use crate::stream::SealedSource;

/// Buffer size of the line reader for F/V files, and the least a U/T read asks for: chunks
/// smaller than this (small DATA buffers) are cut from one larger read, so a 4096-octet buffer
/// size does not cost a system call per buffer.
const CHUNK: usize = 64 * 1024;

/// A chunk of an outgoing file, borrowed from the source's own buffer (valid until the next
/// call): sending a file allocates nothing per chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunk<'a> {
    /// Bytes to send; `end_of_record` for F/V lines.
    Data(&'a [u8], bool),
    /// End of file.
    End,
    /// Nothing yet: the processing thread of a [`SealedSource`] has not produced more.
    Pending,
}

/// What an outgoing transfer reads: the local file itself, or its processed form (signed,
/// compressed, encrypted) as a file-services thread produces it.
#[derive(Debug)]
pub(crate) enum OutgoingSource {
    File(FileSource),
    Sealed(SealedSource),
}

impl OutgoingSource {
    /// See [`FileSource::next_chunk`] and [`SealedSource::next_chunk`].
    pub(crate) fn next_chunk(&mut self, chunk: usize) -> io::Result<Chunk<'_>> {
        match self {
            Self::File(f) => f.next_chunk(chunk),
            Self::Sealed(s) => s.next_chunk(chunk),
        }
    }

    /// Records sent so far (0 for U/T and processed files).
    pub(crate) fn records(&self) -> u64 {
        match self {
            Self::File(f) => f.records(),
            Self::Sealed(_) => 0,
        }
    }

    /// Octets sent so far.
    pub(crate) fn units(&self) -> u64 {
        match self {
            Self::File(f) => f.units(),
            Self::Sealed(s) => s.units(),
        }
    }

    /// The processed form, if this source is one.
    pub(crate) fn sealed_mut(&mut self) -> Option<&mut SealedSource> {
        match self {
            Self::File(_) => None,
            Self::Sealed(s) => Some(s),
        }
    }
}

/// An open outgoing file.
#[derive(Debug)]
pub(crate) struct FileSource {
    reader: BufReader<File>,
    format: FileFormat,
    records: u64,
    units: u64,
    /// U/T: octets read ahead, `buf[pos..end]` not handed out yet; F/V: the current line.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl FileSource {
    /// Opens `path` for `format`, positioned at restart `position`.
    pub(crate) fn open(path: &Path, format: FileFormat, position: u64) -> io::Result<Self> {
        let file = File::open(path)?;
        let mut src = Self {
            // U/T reads of CHUNK bypass a buffer of the same size; F/V need it for lines.
            reader: BufReader::with_capacity(CHUNK, file),
            format,
            records: 0,
            units: 0,
            buf: Vec::new(),
            pos: 0,
            end: 0,
        };
        if position > 0 {
            if format.is_record_oriented() {
                let mut line = Vec::new();
                while src.records < position {
                    line.clear();
                    if !src.next_line(&mut line)? {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "restart at record {position} but the file has {}",
                                src.records
                            ),
                        ));
                    }
                }
            } else {
                let offset = position.saturating_mul(1024);
                let len = src.reader.get_ref().metadata()?.len();
                if offset > len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("restart at octet {offset} but the file has {len}"),
                    ));
                }
                src.reader.seek(SeekFrom::Start(offset))?;
                src.units = offset;
            }
        }
        Ok(src)
    }

    /// Reads one line without its line end into `line`; counts it. `false` at end of file.
    fn next_line(&mut self, line: &mut Vec<u8>) -> io::Result<bool> {
        let n = self.reader.read_until(b'\n', line)?;
        if n == 0 {
            return Ok(false);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        self.records += 1;
        self.units += line.len() as u64;
        Ok(true)
    }

    /// The next chunk to send: a line for F/V, at most `chunk` octets for U/T. A sender passes
    /// `data::uncompressed_capacity` of the negotiated buffer size, so that each chunk fills
    /// exactly one DATA buffer. U/T data is read in multiples of `chunk` (at least [`CHUNK`])
    /// into one buffer kept for the whole file.
    pub(crate) fn next_chunk(&mut self, chunk: usize) -> io::Result<Chunk<'_>> {
        if self.format.is_record_oriented() {
            let mut line = std::mem::take(&mut self.buf);
            line.clear();
            let more = self.next_line(&mut line)?;
            self.buf = line;
            return Ok(if more {
                Chunk::Data(&self.buf, true)
            } else {
                Chunk::End
            });
        }
        let chunk = chunk.max(1);
        if self.pos == self.end {
            let want = chunk * CHUNK.div_ceil(chunk);
            if self.buf.len() != want {
                // Sized once per file (the buffer size does not change during a session).
                self.buf = vec![0u8; want];
            }
            self.end = self.fill()?;
            self.pos = 0;
            if self.end == 0 {
                return Ok(Chunk::End);
            }
        }
        let start = self.pos;
        self.pos = self.end.min(start + chunk);
        self.units += (self.pos - start) as u64;
        Ok(Chunk::Data(&self.buf[start..self.pos], false))
    }

    /// Reads until `buf` is full or the file ends (a short read from a file is rare, but each
    /// chunk should fill a DATA buffer); returns the octets read.
    fn fill(&mut self) -> io::Result<usize> {
        let mut n = 0;
        while n < self.buf.len() {
            match self.reader.read(&mut self.buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Records read so far including skipped ones (0 for U/T).
    pub(crate) fn records(&self) -> u64 {
        if self.format.is_record_oriented() {
            self.records
        } else {
            0
        }
    }

    /// Octets of user data so far including the skipped part.
    pub(crate) fn units(&self) -> u64 {
        self.units
    }
}

/// Number of records (lines) of a local F/V file: the restart position to ask for.
pub(crate) fn count_records(path: &Path) -> io::Result<u64> {
    let mut src = FileSource::open(path, FileFormat::Variable, 0)?;
    let mut line = Vec::new();
    while {
        line.clear();
        src.next_line(&mut line)?
    } {}
    Ok(src.records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(src: &mut FileSource, chunk: usize) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        for _ in 0..300_000 {
            match src.next_chunk(chunk).unwrap() {
                Chunk::Data(d, eor) => {
                    assert!(d.len() <= chunk || eor);
                    out.push((d.to_vec(), eor))
                }
                Chunk::End => return out,
                Chunk::Pending => panic!("a local file is never pending"),
            }
        }
        panic!("no end of file")
    }

    #[test]
    fn unstructured_reads_bytes_and_restarts_at_kib() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        for chunk in [98_435, 4031, 1, 70_000] {
            let mut s = FileSource::open(&p, FileFormat::Unstructured, 0).unwrap();
            let pieces = drain(&mut s, chunk);
            // Every chunk but the last fills a DATA buffer exactly.
            let (last, full) = pieces.split_last().unwrap();
            assert!(full.iter().all(|(d, _)| d.len() == chunk), "chunk {chunk}");
            assert!(!last.0.is_empty() && last.0.len() <= chunk);
            let got: Vec<u8> = pieces.into_iter().flat_map(|(d, _)| d).collect();
            assert_eq!(got, data);
            assert_eq!((s.records(), s.units()), (0, 200_000));
        }

        let mut s = FileSource::open(&p, FileFormat::Unstructured, 3).unwrap();
        let got: Vec<u8> = drain(&mut s, 4031)
            .into_iter()
            .flat_map(|(d, _)| d)
            .collect();
        assert_eq!(got, data[3072..]);
        assert_eq!(s.units(), 200_000, "totals include the skipped part");
        assert!(FileSource::open(&p, FileFormat::Unstructured, 1000).is_err());
    }

    #[test]
    fn records_are_lines_without_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v");
        std::fs::write(&p, b"one\r\ntwo\n\r\nlast").unwrap();
        let mut s = FileSource::open(&p, FileFormat::Variable, 0).unwrap();
        let got = drain(&mut s, 4031);
        let want: Vec<(Vec<u8>, bool)> = vec![
            (b"one".to_vec(), true),
            (b"two".to_vec(), true),
            (b"".to_vec(), true),
            (b"last".to_vec(), true),
        ];
        assert_eq!(got, want);
        assert_eq!((s.records(), s.units()), (4, 10));
        assert_eq!(count_records(&p).unwrap(), 4);

        let mut s = FileSource::open(&p, FileFormat::Fixed, 2).unwrap();
        assert_eq!(drain(&mut s, 4031).len(), 2);
        assert_eq!((s.records(), s.units()), (4, 10));
        assert!(FileSource::open(&p, FileFormat::Fixed, 5).is_err());
    }
}
