//! Record length indicators for V-format files (RFC 5024 section 6.5).
//!
//! Before a variable-format file is signed, compressed or encrypted, each record is prefixed
//! with its length as a 2-byte big-endian number (the data bytes only, not the prefix), so
//! the receiver can restore the records after removing the security layers. Both directions
//! stream one record at a time.

use std::io::{Read, Write};

use crate::error::{Error, Result};

/// Largest record a 2-byte length can describe.
pub const MAX_RECORD: usize = u16::MAX as usize;

/// Writes records with their length prefixes.
#[derive(Debug)]
pub struct RecordWriter<W> {
    inner: W,
}

impl<W: Write> RecordWriter<W> {
    /// Wraps the output (typically a [`crate::cms::SendPipeline`]).
    pub fn new(inner: W) -> Self {
        RecordWriter { inner }
    }

    /// Writes one record.
    pub fn write_record(&mut self, record: &[u8]) -> Result<()> {
        let len = u16::try_from(record.len()).map_err(|_| {
            Error::InvalidArgument(format!(
                "record of {} bytes exceeds the V-format limit of {MAX_RECORD}",
                record.len()
            ))
        })?;
        self.inner
            .write_all(&len.to_be_bytes())
            .map_err(Error::Io)?;
        self.inner.write_all(record).map_err(Error::Io)
    }

    /// Returns the output.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads records written by [`RecordWriter`] (or a partner) back.
#[derive(Debug)]
pub struct RecordReader<R> {
    inner: R,
}

impl<R: Read> RecordReader<R> {
    /// Wraps the input (typically a [`crate::cms::ReceivePipeline`]).
    pub fn new(inner: R) -> Self {
        RecordReader { inner }
    }

    /// Reads the next record into `buf` (replacing its contents); `Ok(false)` at the end.
    pub fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        let mut len = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            let n = self.inner.read(&mut len[got..]).map_err(Error::from_io)?;
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(Error::InvalidArgument(
                    "V-format data ends inside a record length".into(),
                ));
            }
            got += n;
        }
        let len = u16::from_be_bytes(len) as usize;
        buf.clear();
        buf.resize(len, 0);
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::InvalidArgument(format!("V-format record of {len} bytes is truncated"))
            } else {
                Error::from_io(e)
            }
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip() {
        let mut w = RecordWriter::new(Vec::new());
        for r in [&b"first"[..], b"", &[7u8; 300][..]] {
            w.write_record(r).unwrap();
        }
        let bytes = w.into_inner();
        assert_eq!(&bytes[..7], b"\x00\x05first");
        let mut r = RecordReader::new(&bytes[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while r.next_record(&mut buf).unwrap() {
            got.push(buf.clone());
        }
        assert_eq!(got, vec![b"first".to_vec(), vec![], vec![7u8; 300]]);
        assert!(
            RecordWriter::new(Vec::new())
                .write_record(&vec![0; MAX_RECORD + 1])
                .is_err()
        );
        assert!(
            RecordReader::new(&bytes[..bytes.len() - 1])
                .next_record(&mut buf)
                .is_ok()
        );
        let mut r = RecordReader::new(&bytes[..bytes.len() - 1]);
        let results: Vec<_> = (0..3).map(|_| r.next_record(&mut buf)).collect();
        assert!(results[2].is_err());
        assert!(RecordReader::new(&[0u8][..]).next_record(&mut buf).is_err());
    }
}
