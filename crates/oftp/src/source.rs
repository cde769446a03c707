//! Reading a local file as the content of an outgoing virtual file.
//!
//! U and T files are sent byte for byte. F and V files are read as records in the partner's
//! [`RecordMapping`] (see the README, "Records of F and V files"):
//! - `raw` (the default): F records of exactly the record length back to back; V records each
//!   preceded by a 2-octet big-endian length that does not count itself (RFC 5024 6.5);
//! - `lines` / `lines-lf`: one record per line, the line end (CR LF or LF, resp. LF only) not
//!   transmitted.
//!
//! The receiving side ([`crate::connection`]) stores records in the same mapping, so a record
//! sent, received and sent again is identical octet for octet.
//!
//! [`check_records`] reads a local F/V file once before it is offered: a file that does not
//! hold whole records within the record length is refused with the record and the problem,
//! before anything goes to the partner. It also counts the records (the restart position to
//! ask for); it reads the file, so callers run it on a blocking thread.
//!
//! Restart positions are applied here: for U/T a seek to `position * 1024`, for F/V skipping
//! `position` records (raw F: a seek). The totals for EFID (records, octets of the whole file)
//! are counted while reading, including the skipped part, because EFID always carries
//! whole-file totals.
//!
//! [`OutgoingSource`] puts a local file and a processed form produced while it is sent
//! ([`SealedSource`]) behind one interface for the connection.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oftp_proto::codec::FileFormat;

use crate::config::RecordMapping;
use crate::stream::SealedSource;

/// Buffer size of the reader for F/V files, and the least a U/T read asks for: chunks
/// smaller than this (small DATA buffers) are cut from one larger read, so a 4096-octet buffer
/// size does not cost a system call per buffer.
const CHUNK: usize = 64 * 1024;

/// A chunk of an outgoing file, borrowed from the source's own buffer (valid until the next
/// call): sending a file allocates nothing per chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunk<'a> {
    /// Bytes to send; `end_of_record` for F/V (whole records).
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

/// How the octets of a local file make records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// U/T: no records.
    Stream,
    /// Raw F: records of this many octets back to back.
    Fixed(u64),
    /// Raw V: each record after a 2-octet big-endian length.
    Prefixed,
    /// One record per line; `lf_only`: a CR before the LF belongs to the record.
    Lines { lf_only: bool },
}

impl Layout {
    fn of(format: FileFormat, max_record_len: u32, mapping: RecordMapping) -> Self {
        match (format, mapping) {
            (FileFormat::Unstructured | FileFormat::Text, _) => Self::Stream,
            (FileFormat::Fixed, RecordMapping::Raw) => Self::Fixed(u64::from(max_record_len)),
            (_, RecordMapping::Raw) => Self::Prefixed,
            (_, RecordMapping::Lines) => Self::Lines { lf_only: false },
            (_, RecordMapping::LinesLf) => Self::Lines { lf_only: true },
        }
    }
}

/// A format problem of a local file (the text says what is wrong with the record).
fn bad(problem: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, problem)
}

/// Reads the 2-octet length of the next raw V record; `None` at the end of the file.
fn read_header(reader: &mut impl Read) -> io::Result<Option<u16>> {
    let mut h = [0u8; 2];
    let mut n = 0;
    while n < 2 {
        match reader.read(&mut h[n..]) {
            Ok(0) if n == 0 => return Ok(None),
            Ok(0) => {
                return Err(bad(
                    "the file ends inside its 2-octet length header".to_owned()
                ));
            }
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(u16::from_be_bytes(h)))
}

/// Reads one line without its line end into `line` (cleared first); `false` at end of file.
pub(crate) fn read_line(
    reader: &mut impl BufRead,
    lf_only: bool,
    line: &mut Vec<u8>,
) -> io::Result<bool> {
    line.clear();
    if reader.read_until(b'\n', line)? == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if !lf_only && line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(true)
}

/// An open outgoing file.
#[derive(Debug)]
pub(crate) struct FileSource {
    reader: BufReader<File>,
    layout: Layout,
    records: u64,
    units: u64,
    /// U/T and raw F: octets read ahead, `buf[pos..end]` not handed out yet; V and lines: the
    /// current record.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl FileSource {
    /// Opens `path` for `format` (records of at most / exactly `max_record_len` octets in
    /// `mapping`), positioned at restart `position`.
    pub(crate) fn open(
        path: &Path,
        format: FileFormat,
        max_record_len: u32,
        mapping: RecordMapping,
        position: u64,
    ) -> io::Result<Self> {
        let file = File::open(path)?;
        let layout = Layout::of(format, max_record_len, mapping);
        if layout == Layout::Fixed(0) {
            return Err(bad("an F file needs a record length of at least 1".into()));
        }
        let mut src = Self {
            // U/T reads of CHUNK bypass a buffer of the same size; records need it.
            reader: BufReader::with_capacity(CHUNK, file),
            layout,
            records: 0,
            units: 0,
            buf: Vec::new(),
            pos: 0,
            end: 0,
        };
        if position > 0 {
            src.skip_to(position)?;
        }
        Ok(src)
    }

    /// Moves to restart `position` (records for F/V, 1 KiB blocks for U/T).
    fn skip_to(&mut self, position: u64) -> io::Result<()> {
        let short = |what: &str, has: u64| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("restart at {what} {position} but the file has {has}"),
            )
        };
        match self.layout {
            Layout::Stream => {
                let offset = position.saturating_mul(1024);
                let len = self.reader.get_ref().metadata()?.len();
                if offset > len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("restart at octet {offset} but the file has {len}"),
                    ));
                }
                self.reader.seek(SeekFrom::Start(offset))?;
                self.units = offset;
            }
            Layout::Fixed(lrecl) => {
                let offset = position.saturating_mul(lrecl);
                let len = self.reader.get_ref().metadata()?.len();
                if offset > len {
                    return Err(short("record", len / lrecl));
                }
                self.reader.seek(SeekFrom::Start(offset))?;
                (self.records, self.units) = (position, offset);
            }
            Layout::Prefixed => {
                let len = self.reader.get_ref().metadata()?.len();
                let mut at = 0u64;
                while self.records < position {
                    let Some(n) = read_header(&mut self.reader)? else {
                        return Err(short("record", self.records));
                    };
                    at += 2 + u64::from(n);
                    if at > len {
                        return Err(short("record", self.records));
                    }
                    self.reader.seek_relative(i64::from(n))?;
                    self.records += 1;
                    self.units += u64::from(n);
                }
            }
            Layout::Lines { lf_only } => {
                let mut line = Vec::new();
                while self.records < position {
                    if !read_line(&mut self.reader, lf_only, &mut line)? {
                        return Err(short("record", self.records));
                    }
                    self.records += 1;
                    self.units += line.len() as u64;
                }
            }
        }
        Ok(())
    }

    /// The next chunk to send: at most `chunk` octets for U/T; whole records for F/V (raw F:
    /// as many as fit in `chunk`, at least one; otherwise one record). A sender passes
    /// `data::uncompressed_capacity` of the negotiated buffer size, so that each U/T chunk
    /// fills exactly one DATA buffer. U/T data is read in multiples of `chunk` (at least
    /// [`CHUNK`]) into one buffer kept for the whole file.
    pub(crate) fn next_chunk(&mut self, chunk: usize) -> io::Result<Chunk<'_>> {
        let record = self.records + 1;
        let at_record = |e: io::Error| match e.kind() {
            io::ErrorKind::InvalidData => bad(format!("record {record}: {e}")),
            _ => e,
        };
        match self.layout {
            Layout::Stream => self.next_stream_chunk(chunk),
            Layout::Fixed(lrecl) => {
                let lrecl = usize::try_from(lrecl).map_err(|_| bad("record too long".into()))?;
                let want = lrecl * (chunk / lrecl).max(1);
                if self.buf.len() != want {
                    self.buf = vec![0u8; want];
                }
                let n = self.fill()?;
                if n == 0 {
                    return Ok(Chunk::End);
                }
                if n % lrecl != 0 {
                    let record = self.records + (n / lrecl) as u64 + 1;
                    return Err(bad(format!(
                        "record {record}: the file ends after {} of its {lrecl} octets (it \
                         changed after it was checked)",
                        n % lrecl
                    )));
                }
                self.records += (n / lrecl) as u64;
                self.units += n as u64;
                Ok(Chunk::Data(&self.buf[..n], true))
            }
            Layout::Prefixed => {
                let Some(n) = read_header(&mut self.reader).map_err(at_record)? else {
                    return Ok(Chunk::End);
                };
                self.buf.resize(usize::from(n), 0);
                self.reader.read_exact(&mut self.buf).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        bad(format!(
                            "record {record}: its header says {n} octets but the file ends first"
                        ))
                    } else {
                        e
                    }
                })?;
                self.records += 1;
                self.units += u64::from(n);
                Ok(Chunk::Data(&self.buf, true))
            }
            Layout::Lines { lf_only } => {
                if !read_line(&mut self.reader, lf_only, &mut self.buf)? {
                    return Ok(Chunk::End);
                }
                self.records += 1;
                self.units += self.buf.len() as u64;
                Ok(Chunk::Data(&self.buf, true))
            }
        }
    }

    fn next_stream_chunk(&mut self, chunk: usize) -> io::Result<Chunk<'_>> {
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
        self.records
    }

    /// Octets of user data so far including the skipped part.
    pub(crate) fn units(&self) -> u64 {
        self.units
    }
}

/// A local F/V file that cannot be sent as it is.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordFileError {
    /// A record is not what the format, record length and mapping ask for.
    #[error(
        "{}: record {record}: {problem} (format {format}, record length {lrecl}, \
         record_mapping = {mapping}); correct the file, the record length or the partner's \
         record_mapping",
        path.display()
    )]
    Format {
        path: PathBuf,
        record: u64,
        problem: String,
        format: char,
        lrecl: u32,
        mapping: RecordMapping,
    },
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
}

/// Checks that the local file `path` holds whole records of `format` within `max_record_len`
/// in `mapping`, and counts them. Reads the whole file (raw F: only its size; raw V: only the
/// record headers): call it on a blocking thread.
pub(crate) fn check_records(
    path: &Path,
    format: FileFormat,
    max_record_len: u32,
    mapping: RecordMapping,
) -> Result<u64, RecordFileError> {
    let lrecl = u64::from(max_record_len);
    let mut record = 0u64;
    let result = (|| -> io::Result<()> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if lrecl == 0 && format == FileFormat::Fixed {
            record = 1;
            return Err(bad("an F file needs a record length of at least 1".into()));
        }
        let mut reader = BufReader::with_capacity(CHUNK, file);
        match Layout::of(format, max_record_len, mapping) {
            Layout::Stream => {}
            Layout::Fixed(lrecl) => {
                record = len / lrecl;
                if len % lrecl != 0 {
                    record += 1;
                    return Err(bad(format!(
                        "only {} of its {lrecl} octets are there: the file size ({len} octets) \
                         is not a multiple of the record length",
                        len % lrecl
                    )));
                }
            }
            Layout::Prefixed => {
                let mut at = 0u64;
                loop {
                    record += 1;
                    let Some(n) = read_header(&mut reader)? else {
                        break;
                    };
                    let n = u64::from(n);
                    if n > lrecl {
                        return Err(bad(format!(
                            "its 2-octet header says {n} octets, more than the maximum \
                             record length {lrecl}"
                        )));
                    }
                    at += 2 + n;
                    if at > len {
                        return Err(bad(format!(
                            "its 2-octet header says {n} octets but only {} follow before the \
                             end of the file",
                            n - (at - len)
                        )));
                    }
                    reader.seek_relative(n as i64)?;
                }
                record -= 1;
            }
            Layout::Lines { lf_only } => {
                let mut line = Vec::new();
                loop {
                    record += 1;
                    if !read_line(&mut reader, lf_only, &mut line)? {
                        break;
                    }
                    let n = line.len() as u64;
                    if format == FileFormat::Fixed && n != lrecl {
                        return Err(bad(format!(
                            "line {record} has {n} octets, the record length is {lrecl}{}",
                            if n < lrecl {
                                " (with record_mapping = lines a record cannot contain a line \
                                 break: binary records need record_mapping = raw)"
                            } else {
                                ""
                            }
                        )));
                    }
                    if n > lrecl {
                        return Err(bad(format!(
                            "line {record} has {n} octets, more than the maximum record length \
                             {lrecl}"
                        )));
                    }
                }
                record -= 1;
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(record),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(RecordFileError::Format {
            path: path.to_owned(),
            record,
            problem: e.to_string(),
            format: char::from(format.as_byte()),
            lrecl: max_record_len,
            mapping,
        }),
        Err(error) => Err(RecordFileError::Io {
            path: path.to_owned(),
            error,
        }),
    }
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
            let mut s =
                FileSource::open(&p, FileFormat::Unstructured, 0, RecordMapping::Raw, 0).unwrap();
            let pieces = drain(&mut s, chunk);
            // Every chunk but the last fills a DATA buffer exactly.
            let (last, full) = pieces.split_last().unwrap();
            assert!(full.iter().all(|(d, _)| d.len() == chunk), "chunk {chunk}");
            assert!(!last.0.is_empty() && last.0.len() <= chunk);
            let got: Vec<u8> = pieces.into_iter().flat_map(|(d, _)| d).collect();
            assert_eq!(got, data);
            assert_eq!((s.records(), s.units()), (0, 200_000));
        }

        let mut s =
            FileSource::open(&p, FileFormat::Unstructured, 0, RecordMapping::Raw, 3).unwrap();
        let got: Vec<u8> = drain(&mut s, 4031)
            .into_iter()
            .flat_map(|(d, _)| d)
            .collect();
        assert_eq!(got, data[3072..]);
        assert_eq!(s.units(), 200_000, "totals include the skipped part");
        assert!(
            FileSource::open(&p, FileFormat::Unstructured, 0, RecordMapping::Raw, 1000).is_err()
        );
    }

    /// Records (the data of each `end_of_record` chunk, split at `lrecl` for raw F).
    fn records_of(pieces: Vec<(Vec<u8>, bool)>, fixed: Option<usize>) -> Vec<Vec<u8>> {
        assert!(
            pieces.iter().all(|(_, eor)| *eor),
            "F/V chunks are whole records"
        );
        match fixed {
            Some(l) => pieces
                .iter()
                .flat_map(|(d, _)| d.chunks(l).map(<[u8]>::to_vec))
                .collect(),
            None => pieces.into_iter().map(|(d, _)| d).collect(),
        }
    }

    /// Records with every octet a line mapping or a C string would trip over.
    fn binary_records(n: usize, len: impl Fn(usize) -> usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                (0..len(i))
                    .map(|j| [b'\r', b'\n', 0, 0xFF, b'A'][(i + j) % 5])
                    .collect()
            })
            .collect()
    }

    fn prefixed(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            out.extend_from_slice(&(r.len() as u16).to_be_bytes());
            out.extend_from_slice(r);
        }
        out
    }

    #[test]
    fn raw_fixed_records_are_read_back_to_back_and_restart_by_seeking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let records = binary_records(1000, |_| 80);
        std::fs::write(&p, records.concat()).unwrap();
        assert_eq!(
            check_records(&p, FileFormat::Fixed, 80, RecordMapping::Raw).unwrap(),
            1000
        );
        for chunk in [4031, 80, 1, 100_000] {
            let mut s = FileSource::open(&p, FileFormat::Fixed, 80, RecordMapping::Raw, 0).unwrap();
            let got = records_of(drain(&mut s, chunk), Some(80));
            assert_eq!(got, records, "chunk {chunk}");
            assert_eq!((s.records(), s.units()), (1000, 80_000));
        }
        let mut s = FileSource::open(&p, FileFormat::Fixed, 80, RecordMapping::Raw, 998).unwrap();
        assert_eq!(records_of(drain(&mut s, 4031), Some(80)), records[998..]);
        assert_eq!((s.records(), s.units()), (1000, 80_000));
        let e = FileSource::open(&p, FileFormat::Fixed, 80, RecordMapping::Raw, 1001).unwrap_err();
        assert!(e.to_string().contains("has 1000"), "{e}");
    }

    #[test]
    fn raw_variable_records_carry_a_two_octet_length_and_restart_by_skipping() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v");
        let records = binary_records(500, |i| (i * 7) % 300);
        std::fs::write(&p, prefixed(&records)).unwrap();
        let units: u64 = records.iter().map(|r| r.len() as u64).sum();
        assert_eq!(
            check_records(&p, FileFormat::Variable, 300, RecordMapping::Raw).unwrap(),
            500
        );
        let mut s = FileSource::open(&p, FileFormat::Variable, 300, RecordMapping::Raw, 0).unwrap();
        assert_eq!(records_of(drain(&mut s, 4031), None), records);
        assert_eq!((s.records(), s.units()), (500, units));
        let mut s =
            FileSource::open(&p, FileFormat::Variable, 300, RecordMapping::Raw, 321).unwrap();
        assert_eq!(records_of(drain(&mut s, 4031), None), records[321..]);
        assert_eq!((s.records(), s.units()), (500, units));
        assert!(FileSource::open(&p, FileFormat::Variable, 300, RecordMapping::Raw, 501).is_err());
    }

    #[test]
    fn records_are_lines_without_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v");
        std::fs::write(&p, b"one\r\ntwo\n\r\nlast").unwrap();
        let mut s =
            FileSource::open(&p, FileFormat::Variable, 10, RecordMapping::Lines, 0).unwrap();
        let got = drain(&mut s, 4031);
        let want: Vec<(Vec<u8>, bool)> = vec![
            (b"one".to_vec(), true),
            (b"two".to_vec(), true),
            (b"".to_vec(), true),
            (b"last".to_vec(), true),
        ];
        assert_eq!(got, want);
        assert_eq!((s.records(), s.units()), (4, 10));
        assert_eq!(
            check_records(&p, FileFormat::Variable, 10, RecordMapping::Lines).unwrap(),
            4
        );

        let mut s =
            FileSource::open(&p, FileFormat::Variable, 10, RecordMapping::Lines, 2).unwrap();
        assert_eq!(drain(&mut s, 4031).len(), 2);
        assert_eq!((s.records(), s.units()), (4, 10));
        assert!(FileSource::open(&p, FileFormat::Variable, 10, RecordMapping::Lines, 5).is_err());

        // LF only: a CR before the LF is part of the record.
        let mut s =
            FileSource::open(&p, FileFormat::Variable, 10, RecordMapping::LinesLf, 0).unwrap();
        let got: Vec<Vec<u8>> = records_of(drain(&mut s, 4031), None);
        assert_eq!(got, [&b"one\r"[..], b"two", b"\r", b"last"]);
    }

    fn problem(content: &[u8], format: FileFormat, lrecl: u32, mapping: RecordMapping) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ORDERS.DAT");
        std::fs::write(&p, content).unwrap();
        let e = check_records(&p, format, lrecl, mapping).unwrap_err();
        assert!(matches!(e, RecordFileError::Format { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("ORDERS.DAT"), "names the file: {text}");
        assert!(text.contains(mapping.as_str()), "names the mapping: {text}");
        text
    }

    #[test]
    fn bad_local_files_are_refused_with_the_record_and_the_problem() {
        use FileFormat::{Fixed, Variable};
        use RecordMapping::{Lines, Raw};
        let e = problem(&[7u8; 250], Fixed, 80, Raw);
        assert!(
            e.contains("record 4:") && e.contains("only 10 of its 80"),
            "{e}"
        );
        let mut v = prefixed(&binary_records(3, |_| 20));
        v.extend_from_slice(&301u16.to_be_bytes());
        v.extend_from_slice(&[1u8; 301]);
        let e = problem(&v, Variable, 300, Raw);
        assert!(
            e.contains("record 4:") && e.contains("says 301 octets, more than"),
            "{e}"
        );
        let mut v = prefixed(&binary_records(2, |_| 20));
        v.extend_from_slice(&[0, 50, 1, 2, 3]);
        let e = problem(&v, Variable, 300, Raw);
        assert!(
            e.contains("record 3:") && e.contains("only 3 follow"),
            "{e}"
        );
        let mut v = prefixed(&binary_records(5, |_| 1));
        v.push(0);
        let e = problem(&v, Variable, 300, Raw);
        assert!(
            e.contains("record 6:") && e.contains("inside its 2-octet length"),
            "{e}"
        );
        // A fixed record holding a line feed, mapped to lines: the line is short.
        let e = problem(b"ABCD\r\nAB\nD\r\nABCD\r\n", Fixed, 4, Lines);
        assert!(e.contains("record 2:") && e.contains("line break"), "{e}");
        let e = problem(b"ABCD\r\nABCDE\r\n", Variable, 4, Lines);
        assert!(
            e.contains("record 2:") && e.contains("more than the maximum"),
            "{e}"
        );
        let e = problem(b"", Fixed, 0, Raw);
        assert!(e.contains("record length of at least 1"), "{e}");
        // An empty file holds no records: fine.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(check_records(&p, Variable, 10, Raw).unwrap(), 0);
        assert!(matches!(
            check_records(&dir.path().join("missing"), Fixed, 10, Raw),
            Err(RecordFileError::Io { .. })
        ));
    }
}
