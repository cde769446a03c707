//! DATA exchange buffers: subrecords, buffer compression, records, restart units.
//!
//! A DATA exchange buffer is `D` followed by subrecords, each preceded by a
//! header octet (RFC 5024 section 7): bit 0x80 marks the last subrecord of a
//! record, bit 0x40 a compressed subrecord (one octet to repeat `count` times),
//! and the low six bits the count (0..=63). A subrecord never spans buffers.
//!
//! * [`BufferBuilder`] turns bytes plus end-of-record marks into buffers of at
//!   most the negotiated size, optionally compressing runs of 3 or more equal
//!   octets.
//! * [`parse_data_payload`] turns a received payload back into
//!   `(bytes, end_of_record)` pieces.
//! * [`RecordWriter`] and [`RecordReader`] apply the record rules of the file
//!   formats: F and V records each end with the end-of-record flag (F records
//!   are exactly `max_record_len` long); U and T files are one stream whose last
//!   subrecord carries the flag as an end-of-file mark (RFC 5024 Appendix A shows
//!   a T file sent this way, CR LF kept in the data).
//! * [`restart_units`] and friends compute restart positions: records for F/V,
//!   1 KiB blocks for U/T (RFC 5024 5.3.3 SFIDREST).
//!
//! This module does not read files and knows nothing of credit; the session
//! decides when a built buffer may be sent.

use std::collections::VecDeque;

use crate::codec::FileFormat;

/// Subrecord header flag: this subrecord ends the current record.
pub const END_OF_RECORD: u8 = 0x80;
/// Subrecord header flag: this subrecord is one octet to be repeated.
pub const COMPRESSED: u8 = 0x40;
/// Subrecord header mask of the count.
pub const COUNT_MASK: u8 = 0x3f;
/// Largest count a subrecord header can carry.
pub const MAX_SUBRECORD: usize = 63;
/// Size of a restart block for U and T files.
pub const RESTART_BLOCK: u64 = 1024;

/// Errors of DATA payload parsing and record building.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A subrecord header announces more octets than the buffer holds.
    #[error(
        "DATA subrecord at offset {offset} announces {count} octets but only {available} remain"
    )]
    Truncated {
        /// Offset of the header in the payload.
        offset: usize,
        /// Octets announced.
        count: usize,
        /// Octets left in the payload.
        available: usize,
    },
    /// The requested buffer size cannot hold a subrecord.
    #[error("exchange buffer size {0} is outside 3..=99999")]
    BufferSize(usize),
    /// A record is longer than the file's maximum record length.
    #[error("record of {len} octets exceeds the maximum record length {max}")]
    RecordTooLong {
        /// Record length so far.
        len: u64,
        /// Maximum record length (SFIDLRECL).
        max: u32,
    },
    /// A fixed-format record ended before reaching the record length.
    #[error("fixed-format record of {len} octets is shorter than the record length {lrecl}")]
    ShortFixedRecord {
        /// Record length written.
        len: u64,
        /// Record length required.
        lrecl: u32,
    },
    /// Data was written after the file was finished.
    #[error("data written after the end of the file")]
    AfterEnd,
}

/// A contiguous piece of one record taken from a DATA payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Piece {
    /// The record bytes (decompressed).
    pub bytes: Vec<u8>,
    /// Whether the record ends with this piece (for U/T files: end of file).
    pub end_of_record: bool,
}

/// Parses a DATA payload (the octets after `D`) into record pieces.
///
/// Consecutive subrecords of the same record are merged; a piece ends where a
/// subrecord carries the end-of-record flag or the payload ends. Zero-length
/// subrecords and records are allowed anywhere (RFC 5024 7.3). A compressed
/// subrecord with a count of 0 or 1 is accepted although a builder would not
/// produce it.
pub fn parse_data_payload(payload: &[u8]) -> Result<Vec<Piece>, DataError> {
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < payload.len() {
        // First pass over the headers only: where this piece ends and how long it is, so
        // that its bytes are allocated once and copied once.
        let start = i;
        let mut len = 0usize;
        let mut end_of_record = false;
        while i < payload.len() {
            let header = payload[i];
            let count = (header & COUNT_MASK) as usize;
            if header & COMPRESSED != 0 {
                if i + 1 >= payload.len() {
                    return Err(DataError::Truncated {
                        offset: i,
                        count: 1,
                        available: 0,
                    });
                }
                i += 2;
            } else {
                let available = payload.len() - i - 1;
                if available < count {
                    return Err(DataError::Truncated {
                        offset: i,
                        count,
                        available,
                    });
                }
                i += 1 + count;
            }
            len += count;
            if header & END_OF_RECORD != 0 {
                end_of_record = true;
                break;
            }
        }
        let mut bytes = Vec::with_capacity(len);
        copy_subrecords(&payload[start..i], &mut bytes);
        pieces.push(Piece {
            bytes,
            end_of_record,
        });
    }
    Ok(pieces)
}

/// Appends the octets of `subrecords` (already checked to be complete) to `out`.
fn copy_subrecords(subrecords: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&header) = subrecords.get(i) {
        let count = (header & COUNT_MASK) as usize;
        if header & COMPRESSED != 0 {
            if let Some(&b) = subrecords.get(i + 1) {
                out.resize(out.len() + count, b);
            }
            i += 2;
        } else if count == MAX_SUBRECORD && i + 1 + MAX_SUBRECORD <= subrecords.len() {
            // The common full subrecord: a copy of constant length, which the compiler
            // inlines instead of calling memcpy for 63 octets.
            out.extend_from_slice(&subrecords[i + 1..i + 1 + MAX_SUBRECORD]);
            i += 1 + MAX_SUBRECORD;
        } else {
            let end = (i + 1 + count).min(subrecords.len());
            out.extend_from_slice(&subrecords[i + 1..end]);
            i += 1 + count;
        }
    }
}

/// Builds DATA exchange buffers of at most a given size.
///
/// Feed bytes with [`push`](Self::push) (marking record ends), call
/// [`flush`](Self::flush) at the end of the file, and take finished buffers
/// (each starting with `D`) with [`pop_buffer`](Self::pop_buffer). A buffer is
/// finished as soon as the next subrecord does not fit, so memory stays at one
/// buffer plus whatever the caller leaves unpopped.
#[derive(Debug, Clone)]
pub struct BufferBuilder {
    max: usize,
    compression: bool,
    /// Octets reserved in front of every buffer for the stream transmission
    /// header (0, or [`crate::sth::HEADER_LEN`] when the session frames the
    /// buffer in place instead of copying it into its output).
    headroom: usize,
    current: Vec<u8>,
    /// Header index (in `current`) of the last subrecord of the open record.
    last_header: Option<usize>,
    ready: VecDeque<Vec<u8>>,
}

impl BufferBuilder {
    /// A builder for buffers of at most `max_buffer_size` octets including the
    /// `D` (the negotiated SSIDSDEB), with or without buffer compression.
    pub fn new(max_buffer_size: usize, compression: bool) -> Result<Self, DataError> {
        Self::with_headroom(max_buffer_size, compression, 0)
    }

    /// A builder whose buffers keep room for the STH header in front, for
    /// [`pop_frame`](Self::pop_frame).
    pub(crate) fn framed(max_buffer_size: usize, compression: bool) -> Result<Self, DataError> {
        Self::with_headroom(max_buffer_size, compression, crate::sth::HEADER_LEN)
    }

    fn with_headroom(
        max_buffer_size: usize,
        compression: bool,
        headroom: usize,
    ) -> Result<Self, DataError> {
        if !(3..=crate::sth::MAX_EXCHANGE_BUFFER).contains(&max_buffer_size) {
            return Err(DataError::BufferSize(max_buffer_size));
        }
        Ok(BufferBuilder {
            max: max_buffer_size,
            compression,
            headroom,
            current: Vec::new(),
            last_header: None,
            ready: VecDeque::new(),
        })
    }

    fn room(&mut self) -> usize {
        if self.current.is_empty() {
            self.current.reserve_exact(self.headroom + self.max);
            self.current.resize(self.headroom, 0);
            self.current.push(b'D');
        }
        self.max - (self.current.len() - self.headroom)
    }

    fn finish_current(&mut self) {
        if self.current.len() > self.headroom + 1 {
            self.ready.push_back(std::mem::take(&mut self.current));
        }
        self.current.clear();
        self.last_header = None;
    }

    /// Appends `data` to the current record; `end_of_record` closes the record
    /// after it (an empty `data` with `end_of_record` closes it with no more
    /// octets, flagging the last subrecord if it is still in the open buffer).
    pub fn push(&mut self, data: &[u8], end_of_record: bool) {
        if self.compression {
            self.push_compressing(data);
        } else {
            self.push_literal(data);
        }
        if end_of_record {
            match self.last_header.take() {
                Some(h) => self.current[h] |= END_OF_RECORD,
                None => {
                    if self.room() < 1 {
                        self.finish_current();
                        self.room();
                    }
                    self.current.push(END_OF_RECORD);
                }
            }
        }
    }

    /// The header of the open literal subrecord that can take more octets
    /// (data pushed in small pieces packs like data pushed at once), with its
    /// count.
    fn open_literal(&self, room: usize) -> Option<(usize, usize)> {
        self.last_header.and_then(|h| {
            let hdr = self.current[h];
            let count = (hdr & COUNT_MASK) as usize;
            (hdr & (COMPRESSED | END_OF_RECORD) == 0 && count < MAX_SUBRECORD && room >= 1)
                .then_some((h, count))
        })
    }

    /// `push` without compression: whole subrecords copied slice by slice.
    fn push_literal(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = self.room();
            if let Some((h, count)) = self.open_literal(room) {
                let n = (MAX_SUBRECORD - count).min(room).min(data.len());
                self.current.extend_from_slice(&data[..n]);
                self.current[h] += n as u8;
                data = &data[n..];
                continue;
            }
            if room < 2 {
                self.finish_current();
                continue;
            }
            // Full subrecords while they fit: the hot loop of a large file.
            let full = (room / (MAX_SUBRECORD + 1)).min(data.len() / MAX_SUBRECORD);
            if full > 0 {
                let (whole, rest) = data.split_at(full * MAX_SUBRECORD);
                for chunk in whole.chunks_exact(MAX_SUBRECORD) {
                    self.current.push(MAX_SUBRECORD as u8);
                    self.current.extend_from_slice(chunk);
                }
                self.last_header = Some(self.current.len() - MAX_SUBRECORD - 1);
                data = rest;
                continue;
            }
            let n = MAX_SUBRECORD.min(room - 1).min(data.len());
            self.last_header = Some(self.current.len());
            self.current.push(n as u8);
            self.current.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
    }

    /// `push` with compression of runs of 3 or more equal octets.
    fn push_compressing(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            let room = self.room();
            let run = run_length(data, i, MAX_SUBRECORD);
            if run >= 3 {
                if room < 2 {
                    self.finish_current();
                    continue;
                }
                self.last_header = Some(self.current.len());
                self.current.push(COMPRESSED | run as u8);
                self.current.push(data[i]);
                i += run;
                continue;
            }
            let (h, limit) = match self.open_literal(room) {
                Some((h, count)) => (h, (MAX_SUBRECORD - count).min(room)),
                None => {
                    if room < 2 {
                        self.finish_current();
                        continue;
                    }
                    let h = self.current.len();
                    self.current.push(0);
                    (h, MAX_SUBRECORD.min(room - 1))
                }
            };
            let limit = limit.min(data.len() - i);
            let len = literal_len(data, i, limit);
            self.current.extend_from_slice(&data[i..i + len]);
            self.current[h] += len as u8;
            self.last_header = Some(h);
            i += len;
        }
    }

    /// Finishes the buffer being filled, making it available to
    /// [`pop_buffer`](Self::pop_buffer).
    pub fn flush(&mut self) {
        self.finish_current();
    }

    /// Takes the oldest finished buffer (starting with `D`).
    pub fn pop_buffer(&mut self) -> Option<Vec<u8>> {
        let mut buf = self.ready.pop_front()?;
        if self.headroom > 0 {
            buf.drain(..self.headroom);
        }
        Some(buf)
    }

    /// Takes the oldest finished buffer as a whole STH frame (header, then
    /// the buffer starting with `D`). A builder made with
    /// [`framed`](Self::framed) writes the header into the room kept for it,
    /// so the buffer is not copied.
    pub(crate) fn pop_frame(&mut self) -> Option<Vec<u8>> {
        if self.headroom != crate::sth::HEADER_LEN {
            let buf = self.pop_buffer()?;
            let mut out = Vec::with_capacity(buf.len() + crate::sth::HEADER_LEN);
            // The builder never exceeds 99999 octets, the largest frame payload.
            crate::sth::encode_frame(&buf, &mut out).ok()?;
            return Some(out);
        }
        let mut frame = self.ready.pop_front()?;
        let header = crate::sth::encode_header(frame.len() - crate::sth::HEADER_LEN).ok()?;
        frame[..crate::sth::HEADER_LEN].copy_from_slice(&header);
        Some(frame)
    }

    /// Number of finished buffers waiting.
    pub fn ready_buffers(&self) -> usize {
        self.ready.len()
    }

    /// Whether nothing is waiting, finished or not.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.current.len() <= self.headroom + 1
    }

    /// The maximum buffer size.
    pub fn max_buffer_size(&self) -> usize {
        self.max
    }
}

/// Length of the run of octets equal to `data[i]` starting at `i`, at most `max`.
fn run_length(data: &[u8], i: usize, max: usize) -> usize {
    let Some(&b) = data.get(i) else { return 0 };
    data[i..].iter().take(max).take_while(|&&x| x == b).count()
}

/// Length of the literal starting at `i`, at most `limit`: it stops before the
/// first later position where a run of 3 equal octets starts (that run is sent
/// compressed). Positions past `limit` may be looked at, as a run may start
/// inside the literal and go on after it.
fn literal_len(data: &[u8], i: usize, limit: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let word = |at: usize| {
        data.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_le_bytes)
    };
    let end = i + limit;
    let mut j = i + 1;
    // Eight candidate positions at a time: octet k of `x` is zero when the
    // octets at j+k, j+k+1 and j+k+2 are equal; the lowest zero octet is
    // found with the usual borrow trick (exact for the lowest one).
    while j < end {
        let (Some(w0), Some(w1), Some(w2)) = (word(j), word(j + 1), word(j + 2)) else {
            break;
        };
        let x = (w0 ^ w1) | (w1 ^ w2);
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            let k = (zero.trailing_zeros() / 8) as usize;
            return (j + k - i).min(limit);
        }
        j += 8;
    }
    while j < end && j + 2 < data.len() {
        if data[j + 1] != data[j + 2] {
            // No run of 3 can start at j nor at j + 1.
            j += 2;
        } else if data[j] == data[j + 1] {
            return j - i;
        } else {
            j += 1;
        }
    }
    limit
}

/// Turns file content into DATA buffers following a file format's record rules.
///
/// * U, T: the content is one stream; `end_of_record` is ignored except that
///   [`finish`](Self::finish) flags the last subrecord as the end of the file.
/// * F: records are exactly `max_record_len` octets. Bytes may be written as a
///   stream: a record ends automatically when it reaches the length. Ending a
///   record early with `end_of_record` is an error.
/// * V: each `end_of_record` ends a record; records longer than
///   `max_record_len` are refused.
#[derive(Debug, Clone)]
pub struct RecordWriter {
    builder: BufferBuilder,
    format: FileFormat,
    max_record_len: u32,
    records: u64,
    units: u64,
    open_len: u64,
    finished: bool,
}

impl RecordWriter {
    /// A writer for `format` with record length `max_record_len` (SFIDLRECL)
    /// into buffers of `buffer_size` octets.
    pub fn new(
        format: FileFormat,
        max_record_len: u32,
        buffer_size: usize,
        compression: bool,
    ) -> Result<Self, DataError> {
        Ok(Self::with_builder(
            BufferBuilder::new(buffer_size, compression)?,
            format,
            max_record_len,
        ))
    }

    /// Like [`new`](Self::new), for [`pop_frame`](Self::pop_frame): buffers
    /// are built with room for the STH header in front.
    pub(crate) fn framed(
        format: FileFormat,
        max_record_len: u32,
        buffer_size: usize,
        compression: bool,
    ) -> Result<Self, DataError> {
        Ok(Self::with_builder(
            BufferBuilder::framed(buffer_size, compression)?,
            format,
            max_record_len,
        ))
    }

    fn with_builder(builder: BufferBuilder, format: FileFormat, max_record_len: u32) -> Self {
        RecordWriter {
            builder,
            format,
            max_record_len,
            records: 0,
            units: 0,
            open_len: 0,
            finished: false,
        }
    }

    /// Writes file content; see the type documentation for `end_of_record`.
    pub fn write(&mut self, mut data: &[u8], end_of_record: bool) -> Result<(), DataError> {
        if self.finished {
            return Err(DataError::AfterEnd);
        }
        match self.format {
            FileFormat::Unstructured | FileFormat::Text => {
                self.builder.push(data, false);
                self.units += data.len() as u64;
            }
            FileFormat::Fixed => {
                let lrecl = self.max_record_len as u64;
                if lrecl == 0 {
                    return Err(DataError::RecordTooLong {
                        len: data.len() as u64,
                        max: 0,
                    });
                }
                while !data.is_empty() {
                    let take = ((lrecl - self.open_len) as usize).min(data.len());
                    let ends = self.open_len + take as u64 == lrecl;
                    self.builder.push(&data[..take], ends);
                    self.units += take as u64;
                    data = &data[take..];
                    self.open_len += take as u64;
                    if ends {
                        self.records += 1;
                        self.open_len = 0;
                    }
                }
                if end_of_record && self.open_len != 0 {
                    return Err(DataError::ShortFixedRecord {
                        len: self.open_len,
                        lrecl: self.max_record_len,
                    });
                }
            }
            FileFormat::Variable => {
                let len = self.open_len + data.len() as u64;
                if len > self.max_record_len as u64 {
                    return Err(DataError::RecordTooLong {
                        len,
                        max: self.max_record_len,
                    });
                }
                self.builder.push(data, end_of_record);
                self.units += data.len() as u64;
                self.open_len = len;
                if end_of_record {
                    self.records += 1;
                    self.open_len = 0;
                }
            }
        }
        Ok(())
    }

    /// Ends the file: for U/T flags the end of the stream, for F/V refuses an
    /// unterminated record. Remaining data becomes available to
    /// [`pop_buffer`](Self::pop_buffer). Calling it twice is harmless.
    pub fn finish(&mut self) -> Result<(), DataError> {
        if self.finished {
            return Ok(());
        }
        match self.format {
            // An empty U/T file sends no DATA at all rather than an empty record.
            FileFormat::Unstructured | FileFormat::Text if self.units > 0 => {
                self.builder.push(&[], true);
            }
            FileFormat::Fixed if self.open_len != 0 => {
                return Err(DataError::ShortFixedRecord {
                    len: self.open_len,
                    lrecl: self.max_record_len,
                });
            }
            FileFormat::Variable if self.open_len != 0 => {
                // The last record was not closed explicitly: close it now.
                self.builder.push(&[], true);
                self.records += 1;
                self.open_len = 0;
            }
            _ => {}
        }
        self.builder.flush();
        self.finished = true;
        Ok(())
    }

    /// Takes the oldest finished buffer (starting with `D`).
    pub fn pop_buffer(&mut self) -> Option<Vec<u8>> {
        self.builder.pop_buffer()
    }

    /// Takes the oldest finished buffer as a whole STH frame.
    pub(crate) fn pop_frame(&mut self) -> Option<Vec<u8>> {
        self.builder.pop_frame()
    }

    /// Finished buffers waiting to be sent.
    pub fn ready_buffers(&self) -> usize {
        self.builder.ready_buffers()
    }

    /// Whether nothing is waiting to be sent.
    pub fn is_drained(&self) -> bool {
        self.builder.is_empty()
    }

    /// Whether [`finish`](Self::finish) was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Complete records written (F/V; 0 for U/T).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Octets written.
    pub fn units(&self) -> u64 {
        self.units
    }
}

/// Counts records and octets of a received file and checks record lengths.
#[derive(Debug, Clone)]
pub struct RecordReader {
    format: FileFormat,
    max_record_len: u32,
    records: u64,
    units: u64,
    open_len: u64,
    end_seen: bool,
    violation: Option<DataError>,
}

impl RecordReader {
    /// A reader for a file of `format` with record length `max_record_len`.
    pub fn new(format: FileFormat, max_record_len: u32) -> Self {
        RecordReader {
            format,
            max_record_len,
            records: 0,
            units: 0,
            open_len: 0,
            end_seen: false,
            violation: None,
        }
    }

    /// Parses one DATA payload and updates the counts.
    ///
    /// Record length problems are recorded (see
    /// [`record_length_violation`](Self::record_length_violation)), not fatal.
    pub fn read(&mut self, payload: &[u8]) -> Result<Vec<Piece>, DataError> {
        let pieces = parse_data_payload(payload)?;
        for p in &pieces {
            self.units += p.bytes.len() as u64;
            self.open_len += p.bytes.len() as u64;
            self.check(p.end_of_record);
            if p.end_of_record {
                if self.format.is_record_oriented() {
                    self.records += 1;
                } else {
                    self.end_seen = true;
                }
                self.open_len = 0;
            }
        }
        Ok(pieces)
    }

    /// The first record-length problem seen (F: a record not exactly
    /// `max_record_len` long; V: a record longer than it), if any. The session
    /// reports it; refusing the file (EFNA 05) is the application's decision.
    pub fn record_length_violation(&self) -> Option<&DataError> {
        self.violation.as_ref()
    }

    fn check(&mut self, ended: bool) {
        if self.violation.is_some() {
            return;
        }
        let max = self.max_record_len;
        let len = self.open_len;
        self.violation = match self.format {
            FileFormat::Fixed | FileFormat::Variable if len > max as u64 => {
                Some(DataError::RecordTooLong { len, max })
            }
            FileFormat::Fixed if ended && len != max as u64 => {
                Some(DataError::ShortFixedRecord { len, lrecl: max })
            }
            _ => None,
        };
    }

    /// Complete records received (F/V).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Octets received.
    pub fn units(&self) -> u64 {
        self.units
    }

    /// Octets of the record still open.
    pub fn open_record_len(&self) -> u64 {
        self.open_len
    }

    /// Whether the end-of-file flag of a U/T stream was seen.
    pub fn end_of_file_seen(&self) -> bool {
        self.end_seen
    }
}

/// Octets of a U or T stream that one uncompressed DATA buffer of
/// `buffer_size` octets (the negotiated SSIDSDEB, `D` included) carries:
/// 63-octet subrecords while they fit, then a shorter one. A sender that
/// passes chunks of this size to `write_data` gets one full buffer per call
/// (98435 octets for 99999-octet buffers, 4031 for 4096).
pub fn uncompressed_capacity(buffer_size: usize) -> usize {
    let room = buffer_size.saturating_sub(1);
    let full = room / (MAX_SUBRECORD + 1);
    let rest = room - full * (MAX_SUBRECORD + 1);
    full * MAX_SUBRECORD + rest.saturating_sub(1)
}

/// Restart position to offer for a partly received file (SFPAACNT / SFIDREST):
/// complete records for F/V, complete 1 KiB blocks for U/T.
pub fn restart_units(format: FileFormat, bytes: u64, records: u64) -> u64 {
    if format.is_record_oriented() {
        records
    } else {
        bytes / RESTART_BLOCK
    }
}

/// Byte offset at which a U/T file restarts for a restart position in blocks.
pub fn restart_byte_offset(position: u64) -> u64 {
    position.saturating_mul(RESTART_BLOCK)
}

/// File size in 1 KiB blocks, rounded up (SFIDFSIZ / SFIDOSIZ).
pub fn size_in_kib(bytes: u64) -> u64 {
    bytes.div_ceil(RESTART_BLOCK)
}

#[cfg(test)]
mod tests;
