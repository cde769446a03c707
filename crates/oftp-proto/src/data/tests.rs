//! Unit tests of the DATA subrecord reader and buffer builder.

use super::*;

fn roundtrip(data: &[u8], max: usize, compression: bool) -> Vec<u8> {
    let mut b = BufferBuilder::new(max, compression).unwrap();
    b.push(data, true);
    b.flush();
    let mut out = Vec::new();
    let mut eor = 0;
    while let Some(buf) = b.pop_buffer() {
        assert!(buf.len() <= max, "buffer {} > {}", buf.len(), max);
        assert_eq!(buf[0], b'D');
        for p in parse_data_payload(&buf[1..]).unwrap() {
            out.extend_from_slice(&p.bytes);
            eor += p.end_of_record as usize;
        }
    }
    assert_eq!(eor, 1);
    out
}

/// The builder as first written (one octet at a time), kept as the
/// oracle for the faster one: both must produce the same octets.
struct ReferenceBuilder {
    max: usize,
    compression: bool,
    current: Vec<u8>,
    last_header: Option<usize>,
    ready: Vec<Vec<u8>>,
}

impl ReferenceBuilder {
    fn room(&mut self) -> usize {
        if self.current.is_empty() {
            self.current.push(b'D');
        }
        self.max - self.current.len()
    }

    fn finish_current(&mut self) {
        if self.current.len() > 1 {
            self.ready.push(std::mem::take(&mut self.current));
        }
        self.current.clear();
        self.last_header = None;
    }

    fn push(&mut self, data: &[u8], end_of_record: bool) {
        let mut i = 0;
        while i < data.len() {
            let room = self.room();
            let run = run_length(data, i, MAX_SUBRECORD);
            if self.compression && run >= 3 {
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
            let open = self.last_header.and_then(|h| {
                let hdr = self.current[h];
                let count = (hdr & COUNT_MASK) as usize;
                (hdr & (COMPRESSED | END_OF_RECORD) == 0 && count < MAX_SUBRECORD && room >= 1)
                    .then_some((h, count))
            });
            let (h, limit) = match open {
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
            let mut len = 0;
            while len < limit {
                if self.compression && len > 0 && run_length(data, i + len, 3) >= 3 {
                    break;
                }
                len += 1;
            }
            self.current.extend_from_slice(&data[i..i + len]);
            self.current[h] += len as u8;
            self.last_header = Some(h);
            i += len;
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
}

/// Data with runs of every length around the thresholds (1..=70) between
/// pseudo-random octets.
fn mixed_data(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let r = next();
        if r % 4 == 0 {
            let len = (next() % 70 + 1) as usize;
            v.extend(std::iter::repeat_n(r as u8, len));
        } else {
            v.push((r >> 8) as u8);
        }
    }
    v.truncate(n);
    v
}

#[test]
fn builder_matches_the_reference_octet_for_octet() {
    for seed in 1..=3u32 {
        let data = mixed_data(20_000, seed);
        for max in [3, 4, 5, 63, 64, 65, 66, 127, 128, 129, 4096, 99_999] {
            for compression in [false, true] {
                for piece in [1, 2, 62, 63, 64, 1000, 20_000] {
                    let mut fast = BufferBuilder::new(max, compression).unwrap();
                    let mut framed = BufferBuilder::framed(max, compression).unwrap();
                    let mut reference = ReferenceBuilder {
                        max,
                        compression,
                        current: Vec::new(),
                        last_header: None,
                        ready: Vec::new(),
                    };
                    for (k, chunk) in data.chunks(piece).enumerate() {
                        // Records of varying length, some ended, some empty.
                        let eor = k % 3 == 0;
                        fast.push(chunk, eor);
                        framed.push(chunk, eor);
                        reference.push(chunk, eor);
                        if k % 5 == 0 {
                            fast.push(&[], true);
                            framed.push(&[], true);
                            reference.push(&[], true);
                        }
                    }
                    fast.flush();
                    framed.flush();
                    reference.finish_current();
                    let got: Vec<Vec<u8>> = std::iter::from_fn(|| fast.pop_buffer()).collect();
                    assert_eq!(
                        got, reference.ready,
                        "seed {seed} max {max} compression {compression} piece {piece}"
                    );
                    let frames: Vec<Vec<u8>> = std::iter::from_fn(|| framed.pop_frame()).collect();
                    assert_eq!(frames.len(), got.len());
                    for (frame, buf) in frames.iter().zip(&got) {
                        let (range, used) = crate::sth::decode_frame(frame).unwrap().unwrap();
                        assert_eq!(used, frame.len());
                        assert_eq!(&frame[range], &buf[..]);
                    }
                }
            }
        }
    }
}

#[test]
fn plain_builder_frames_by_copy_and_framed_builder_pops_plain_buffers() {
    let mut plain = BufferBuilder::new(128, false).unwrap();
    let mut framed = BufferBuilder::framed(128, false).unwrap();
    for b in [&mut plain, &mut framed] {
        b.push(b"ABC", true);
        b.push(b"DE", true);
        b.flush();
    }
    assert_eq!(
        plain.pop_frame().unwrap(),
        vec![
            0x10, 0, 0, 12, b'D', 0x83, b'A', b'B', b'C', 0x82, b'D', b'E'
        ]
    );
    assert_eq!(
        framed.pop_buffer().unwrap(),
        vec![b'D', 0x83, b'A', b'B', b'C', 0x82, b'D', b'E']
    );
    assert!(plain.pop_frame().is_none() && framed.pop_buffer().is_none());
    assert!(plain.is_empty() && framed.is_empty());
}

/// The parser as first written (one piece grown subrecord by subrecord).
fn reference_parse(payload: &[u8]) -> Result<Vec<Piece>, DataError> {
    let mut pieces = Vec::new();
    let mut current = Piece::default();
    let mut open = false;
    let mut i = 0;
    while i < payload.len() {
        let header = payload[i];
        let count = (header & COUNT_MASK) as usize;
        let body = &payload[i + 1..];
        if header & COMPRESSED != 0 {
            let Some(&b) = body.first() else {
                return Err(DataError::Truncated {
                    offset: i,
                    count: 1,
                    available: 0,
                });
            };
            current.bytes.extend(std::iter::repeat_n(b, count));
            i += 2;
        } else {
            if body.len() < count {
                return Err(DataError::Truncated {
                    offset: i,
                    count,
                    available: body.len(),
                });
            }
            current.bytes.extend_from_slice(&body[..count]);
            i += 1 + count;
        }
        open = true;
        if header & END_OF_RECORD != 0 {
            current.end_of_record = true;
            pieces.push(std::mem::take(&mut current));
            open = false;
        }
    }
    if open {
        pieces.push(current);
    }
    Ok(pieces)
}

#[test]
fn parser_matches_the_reference_on_any_octets() {
    // Arbitrary octets are mostly malformed payloads: errors must match too.
    for seed in 1..=400u32 {
        let len = (seed as usize * 37) % 700;
        let bytes = mixed_data(len, seed);
        assert_eq!(
            parse_data_payload(&bytes),
            reference_parse(&bytes),
            "seed {seed}"
        );
    }
    // And well-formed ones, with every kind of subrecord.
    let data = mixed_data(50_000, 9);
    for compression in [false, true] {
        let mut b = BufferBuilder::new(4096, compression).unwrap();
        for (k, chunk) in data.chunks(700).enumerate() {
            b.push(chunk, k % 2 == 0);
        }
        b.flush();
        while let Some(buf) = b.pop_buffer() {
            let got = parse_data_payload(&buf[1..]).unwrap();
            assert_eq!(got, reference_parse(&buf[1..]).unwrap());
            for p in &got {
                assert_eq!(p.bytes.capacity(), p.bytes.len(), "allocated exactly");
            }
        }
    }
}

#[test]
fn compression_of_runs() {
    let mut b = BufferBuilder::new(128, true).unwrap();
    b.push(b"ABBBBBC", true);
    b.flush();
    let buf = b.pop_buffer().unwrap();
    // 'A' literal, 5 x 'B' compressed, 'C' literal with end of record.
    assert_eq!(buf, vec![b'D', 0x01, b'A', 0x45, b'B', 0x81, b'C']);
    assert_eq!(roundtrip(b"ABBBBBC", 128, true), b"ABBBBBC");
}

#[test]
fn two_equal_octets_are_not_compressed() {
    let mut b = BufferBuilder::new(128, true).unwrap();
    b.push(b"AAB", true);
    b.flush();
    assert_eq!(b.pop_buffer().unwrap(), vec![b'D', 0x83, b'A', b'A', b'B']);
}

#[test]
fn long_runs_split_at_63() {
    let data = vec![0u8; 200];
    let mut b = BufferBuilder::new(128, true).unwrap();
    b.push(&data, true);
    b.flush();
    let buf = b.pop_buffer().unwrap();
    assert_eq!(
        buf,
        vec![b'D', 0x7f, 0, 0x7f, 0, 0x7f, 0, 0x40 | 11 | 0x80, 0]
    );
}

#[test]
fn small_buffers_never_overflow() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
    for max in [3, 4, 5, 64, 65, 66, 128] {
        for c in [false, true] {
            assert_eq!(roundtrip(&data, max, c), data);
        }
    }
}

#[test]
fn empty_record_and_zero_length_subrecords() {
    let mut b = BufferBuilder::new(128, false).unwrap();
    b.push(b"", true);
    b.push(b"AB", false);
    b.push(b"", true);
    b.flush();
    let buf = b.pop_buffer().unwrap();
    assert_eq!(buf, vec![b'D', 0x80, 0x82, b'A', b'B']);
    let pieces = parse_data_payload(&[0x00, 0x02, b'X', b'Y', 0x80]).unwrap();
    assert_eq!(
        pieces,
        vec![Piece {
            bytes: b"XY".to_vec(),
            end_of_record: true
        }]
    );
}

#[test]
fn truncated_payloads_are_errors() {
    assert!(matches!(
        parse_data_payload(&[0x05, 1, 2]),
        Err(DataError::Truncated { count: 5, .. })
    ));
    assert!(matches!(
        parse_data_payload(&[0x45]),
        Err(DataError::Truncated { .. })
    ));
}

#[test]
fn fixed_records_split_from_a_stream() {
    let mut w = RecordWriter::new(FileFormat::Fixed, 10, 128, false).unwrap();
    w.write(&[b'x'; 25], false).unwrap();
    assert!(matches!(
        w.finish(),
        Err(DataError::ShortFixedRecord { len: 5, .. })
    ));
    let mut w = RecordWriter::new(FileFormat::Fixed, 10, 128, false).unwrap();
    w.write(&[b'x'; 30], true).unwrap();
    w.finish().unwrap();
    assert_eq!(w.records(), 3);
    let buf = w.pop_buffer().unwrap();
    let pieces = parse_data_payload(&buf[1..]).unwrap();
    assert_eq!(pieces.len(), 3);
    assert!(
        pieces
            .iter()
            .all(|p| p.bytes.len() == 10 && p.end_of_record)
    );
}

#[test]
fn variable_records_are_bounded() {
    let mut w = RecordWriter::new(FileFormat::Variable, 4, 128, false).unwrap();
    w.write(b"abc", true).unwrap();
    w.write(b"ab", false).unwrap();
    assert!(matches!(
        w.write(b"abc", true),
        Err(DataError::RecordTooLong { len: 5, max: 4 })
    ));
}

#[test]
fn uncompressed_capacity_is_what_a_buffer_holds() {
    assert_eq!(uncompressed_capacity(99_999), 98_435);
    assert_eq!(uncompressed_capacity(4096), 4031);
    for max in [3, 4, 5, 64, 65, 66, 128, 129, 4096, 99_999] {
        let cap = uncompressed_capacity(max);
        // A stream of 3 buffers' worth fills exactly 3 buffers of `max` octets.
        let mut b = BufferBuilder::new(max, false).unwrap();
        b.push(&vec![7u8; 3 * cap], false);
        b.flush();
        let bufs: Vec<Vec<u8>> = std::iter::from_fn(|| b.pop_buffer()).collect();
        assert_eq!(bufs.len(), 3, "max {max}");
        for buf in &bufs {
            let pieces = parse_data_payload(&buf[1..]).unwrap();
            let len: usize = pieces.iter().map(|p| p.bytes.len()).sum();
            assert_eq!(len, cap, "max {max}");
            assert!(buf.len() >= max - 1 && buf.len() <= max, "max {max}");
        }
    }
}

#[test]
fn restart_helpers() {
    assert_eq!(restart_units(FileFormat::Unstructured, 2047, 0), 1);
    assert_eq!(restart_units(FileFormat::Text, 2048, 0), 2);
    assert_eq!(restart_units(FileFormat::Fixed, 99999, 7), 7);
    assert_eq!(restart_byte_offset(3), 3072);
    assert_eq!(size_in_kib(0), 0);
    assert_eq!(size_in_kib(1), 1);
    assert_eq!(size_in_kib(1024), 1);
    assert_eq!(size_in_kib(1025), 2);
}
