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

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use oftp_proto::codec::FileFormat;

/// Read size for U/T files; one DATA buffer holds at most 99 999 octets.
const CHUNK: usize = 64 * 1024;

/// A chunk of an outgoing file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Bytes to send; `end_of_record` for F/V lines.
    Data(Vec<u8>, bool),
    /// End of file.
    End,
}

/// An open outgoing file.
#[derive(Debug)]
pub(crate) struct FileSource {
    reader: BufReader<File>,
    format: FileFormat,
    records: u64,
    units: u64,
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

    /// The next chunk to send.
    pub(crate) fn next_chunk(&mut self) -> io::Result<Chunk> {
        if self.format.is_record_oriented() {
            let mut line = Vec::new();
            return Ok(if self.next_line(&mut line)? {
                Chunk::Data(line, true)
            } else {
                Chunk::End
            });
        }
        let mut buf = vec![0u8; CHUNK];
        let n = loop {
            match self.reader.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(Chunk::End);
        }
        buf.truncate(n);
        self.units += n as u64;
        Ok(Chunk::Data(buf, false))
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

    fn drain(src: &mut FileSource) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match src.next_chunk().unwrap() {
                Chunk::Data(d, eor) => out.push((d, eor)),
                Chunk::End => return out,
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
        let mut s = FileSource::open(&p, FileFormat::Unstructured, 0).unwrap();
        let got: Vec<u8> = drain(&mut s).into_iter().flat_map(|(d, _)| d).collect();
        assert_eq!(got, data);
        assert_eq!((s.records(), s.units()), (0, 200_000));

        let mut s = FileSource::open(&p, FileFormat::Unstructured, 3).unwrap();
        let got: Vec<u8> = drain(&mut s).into_iter().flat_map(|(d, _)| d).collect();
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
        let got = drain(&mut s);
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
        assert_eq!(drain(&mut s).len(), 2);
        assert_eq!((s.records(), s.units()), (4, 10));
        assert!(FileSource::open(&p, FileFormat::Fixed, 5).is_err());
    }
}
