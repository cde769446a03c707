//! Property tests: any valid command encodes then decodes to itself at every
//! level; DATA buffers roundtrip arbitrary bytes for every record format; the
//! decoder and the framer never panic on arbitrary input.

use oftp_proto::codec::*;
use oftp_proto::data::{RecordReader, RecordWriter, parse_data_payload};
use oftp_proto::sth;
use proptest::prelude::*;

const LEVELS: [ProtocolLevel; 4] = [
    ProtocolLevel::V1_2,
    ProtocolLevel::V1_3,
    ProtocolLevel::V1_4,
    ProtocolLevel::V2_0,
];

/// An alphanumeric field value as this side encodes it: upper case, RFC set,
/// no leading space and no trailing space.
fn alnum(max: usize) -> impl Strategy<Value = String> {
    let re = format!(
        "([A-Z0-9/.&()_-]([A-Z0-9/.&() _-]{{0,{}}}[A-Z0-9/.&()_-])?)?",
        max.saturating_sub(2)
    );
    proptest::string::string_regex(&re).unwrap()
}

fn password() -> impl Strategy<Value = Password> {
    proptest::string::string_regex("[!-~]{0,8}")
        .unwrap()
        .prop_map(Password::new)
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(".{{0,{}}}", max / 4))
        .unwrap()
        .prop_filter("fits", move |s| s.len() <= max)
}

/// A stamp as the level carries it: extended (levels 4 and 5) with any
/// year and a counter 0001-9999; RFC 2204 (levels 1 and 2) with the years a
/// YY stands for and no counter. Always a calendar date and a time of day.
fn file_time(extended: bool) -> impl Strategy<Value = VirtualFileTime> {
    let years = if extended {
        0u16..=9999
    } else {
        1970u16..=2069
    };
    let counter = if extended { 1u16..=9999 } else { 0u16..=0 };
    (
        years,
        1u8..=12,
        1u8..=31,
        0u8..=23,
        0u8..=59,
        0u8..=60,
        counter,
    )
        .prop_map(|(y, mo, d, h, mi, s, c)| {
            // A day past the month's end becomes its last day (30 February -> 28/29).
            (1..=d)
                .rev()
                .find_map(|d| VirtualFileTime::new(y, mo, d, h, mi, s, c))
                .expect("a calendar date")
        })
}

fn format() -> impl Strategy<Value = FileFormat> {
    prop_oneof![
        Just(FileFormat::Fixed),
        Just(FileFormat::Variable),
        Just(FileFormat::Unstructured),
        Just(FileFormat::Text)
    ]
}

fn mode() -> impl Strategy<Value = SessionMode> {
    prop_oneof![
        Just(SessionMode::Send),
        Just(SessionMode::Receive),
        Just(SessionMode::Both)
    ]
}

fn level_digit(v2: bool) -> impl Strategy<Value = ProtocolLevel> {
    if v2 {
        (5u8..=9).prop_map(ProtocolLevel).boxed()
    } else {
        prop_oneof![Just(1u8), Just(2), Just(4)]
            .prop_map(ProtocolLevel)
            .boxed()
    }
}

fn ssid(v2: bool) -> impl Strategy<Value = Command> {
    (
        level_digit(v2),
        alnum(25),
        password(),
        128u32..=99_999,
        mode(),
        any::<[bool; 4]>(),
        1u16..=999,
        alnum(8),
    )
        .prop_map(
            move |(level, code, password, buffer_size, mode, f, credit, user_data)| {
                Command::Ssid(Ssid {
                    level,
                    code,
                    password,
                    buffer_size,
                    mode,
                    compression: f[0],
                    restart: f[1],
                    special_logic: f[2],
                    credit,
                    secure_auth: v2 && f[3],
                    user_data,
                })
            },
        )
}

fn sfid(level: ProtocolLevel) -> impl Strategy<Value = Command> {
    let v2 = level.is_v2();
    let (fsiz_max, rest_max) = if v2 {
        (9_999_999_999_999u64, 99_999_999_999_999_999u64)
    } else {
        (9_999_999, 999_999_999)
    };
    (
        (
            alnum(26),
            file_time(level.has_extended_stamp()),
            alnum(8),
            alnum(25),
            alnum(25),
        ),
        (
            format(),
            0u32..=99_999,
            0..=fsiz_max,
            0..=fsiz_max,
            0..=rest_max,
        ),
        (
            0u8..=99,
            0u8..=99,
            0u8..=9,
            0u8..=9,
            any::<bool>(),
            text(999),
        ),
    )
        .prop_map(move |(a, b, c)| {
            let (dsn, date_time, user_data, destination, originator) = a;
            let (format, max_record_len, file_size, osiz, restart_position) = b;
            let (sec, ciph, comp, env, signed_eerp, description) = c;
            let mut s = Sfid {
                dsn,
                date_time,
                user_data,
                destination,
                originator,
                format,
                max_record_len,
                file_size,
                original_file_size: osiz,
                restart_position,
                security: SecurityLevel(sec),
                cipher_suite: CipherSuite(ciph),
                compression: FileCompression(comp),
                envelope: FileEnvelope(env),
                signed_eerp,
                description,
            };
            if !v2 {
                s.original_file_size = s.file_size;
                s.security = SecurityLevel::NONE;
                s.cipher_suite = CipherSuite::NONE;
                s.compression = FileCompression::NONE;
                s.envelope = FileEnvelope::NONE;
                s.signed_eerp = false;
                s.description.clear();
            }
            Command::Sfid(s)
        })
}

fn binary() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..300)
}

fn command(level: ProtocolLevel) -> BoxedStrategy<Command> {
    let v2 = level.is_v2();
    let count_max = if v2 {
        99_999_999_999_999_999u64
    } else {
        999_999_999
    };
    let ucnt_max = if v2 {
        99_999_999_999_999_999u64
    } else {
        999_999_999_999
    };
    let t = move |m: usize| {
        if v2 {
            text(m).boxed()
        } else {
            Just(String::new()).boxed()
        }
    };
    let bin = move || {
        if v2 {
            binary().boxed()
        } else {
            Just(Vec::new()).boxed()
        }
    };
    let mut options: Vec<BoxedStrategy<Command>> = vec![
        Just(Command::Ssrm(Ssrm)).boxed(),
        ssid(v2).boxed(),
        sfid(level).boxed(),
        (0..=count_max)
            .prop_map(|answer_count| Command::Sfpa(Sfpa { answer_count }))
            .boxed(),
        (0u8..=99, any::<bool>(), t(999))
            .prop_map(|(r, retry, text)| {
                Command::Sfna(Sfna {
                    reason: SfnaReason(r),
                    retry,
                    text,
                })
            })
            .boxed(),
        proptest::collection::vec(any::<u8>(), 0..2000)
            .prop_map(|payload| Command::Data(Data { payload }))
            .boxed(),
        Just(Command::Cdt(Cdt)).boxed(),
        (0..=count_max, 0..=ucnt_max)
            .prop_map(|(record_count, unit_count)| {
                Command::Efid(Efid {
                    record_count,
                    unit_count,
                })
            })
            .boxed(),
        any::<bool>()
            .prop_map(|change_direction| Command::Efpa(Efpa { change_direction }))
            .boxed(),
        (0u8..=99, t(999))
            .prop_map(|(r, text)| {
                Command::Efna(Efna {
                    reason: EfnaReason(r),
                    text,
                })
            })
            .boxed(),
        (0u8..=99, t(999))
            .prop_map(|(r, text)| {
                Command::Esid(Esid {
                    reason: EsidReason(r),
                    text,
                })
            })
            .boxed(),
        Just(Command::Cd(Cd)).boxed(),
        Just(Command::Rtr(Rtr)).boxed(),
        (
            (
                alnum(26),
                file_time(level.has_extended_stamp()),
                alnum(8),
                alnum(25),
                alnum(25),
            ),
            bin(),
            bin(),
        )
            .prop_map(
                |((dsn, date_time, user_data, destination, originator), hash, signature)| {
                    Command::Eerp(Eerp {
                        dsn,
                        date_time,
                        user_data,
                        destination,
                        originator,
                        hash,
                        signature,
                    })
                },
            )
            .boxed(),
    ];
    if level.has_nerp() {
        options.push(
            (
                (alnum(26), file_time(true), alnum(25), alnum(25), alnum(25)),
                (0u8..=99, t(999), bin(), bin()),
            )
                .prop_map(|((dsn, date_time, destination, originator, creator), r)| {
                    Command::Nerp(Nerp {
                        dsn,
                        date_time,
                        destination,
                        originator,
                        creator,
                        reason: NerpReason(r.0),
                        text: r.1,
                        hash: r.2,
                        signature: r.3,
                    })
                })
                .boxed(),
        );
    }
    if v2 {
        options.push(Just(Command::Secd(Secd)).boxed());
        options.push(
            binary()
                .prop_map(|challenge| Command::Auch(Auch { challenge }))
                .boxed(),
        );
        options.push(
            any::<[u8; 20]>()
                .prop_map(|response| Command::Aurp(Aurp { response }))
                .boxed(),
        );
    }
    proptest::strategy::Union::new(options).boxed()
}

fn level_and_command() -> impl Strategy<Value = (ProtocolLevel, Command)> {
    (0usize..4).prop_flat_map(|i| {
        let level = LEVELS[i];
        command(level).prop_map(move |c| (level, c))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn any_valid_command_roundtrips((level, cmd) in level_and_command()) {
        let wire = cmd.to_bytes(level).expect("valid command encodes");
        let back = Command::decode(&wire, level).expect("encoded command decodes");
        prop_assert_eq!(&back, &cmd);
        // And through the STH framing.
        let mut framed = Vec::new();
        sth::encode_frame(&wire, &mut framed).unwrap();
        let (range, used) = sth::decode_frame(&framed).unwrap().unwrap();
        prop_assert_eq!(used, framed.len());
        prop_assert_eq!(&framed[range], &wire[..]);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), i in 0usize..4) {
        let level = LEVELS[i];
        if let Ok(cmd) = Command::decode(&bytes, level)
            && let Ok(wire) = cmd.to_bytes(level)
        {
            // Lenient decoding normalises once; after that encoding is stable.
            let again = Command::decode(&wire, level).expect("re-encoded command decodes");
            prop_assert_eq!(again.to_bytes(level).expect("re-encodes"), wire);
        }
        let _ = sth::decode_frame(&bytes);
        let _ = parse_data_payload(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_commands((level, cmd) in level_and_command(), pos in any::<usize>(), byte in any::<u8>()) {
        let mut wire = cmd.to_bytes(level).unwrap();
        let p = pos % wire.len();
        wire[p] = byte;
        let _ = Command::decode(&wire, level);
        wire.truncate(p);
        let _ = Command::decode(&wire, level);
    }

    #[test]
    fn data_roundtrip_unstructured_and_text(
        data in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'A'), Just(0u8)], 0..3000),
        chunk in 1usize..200,
        buffer_size in 3usize..300,
        compression in any::<bool>(),
        text in any::<bool>(),
    ) {
        let format = if text { FileFormat::Text } else { FileFormat::Unstructured };
        let mut w = RecordWriter::new(format, 0, buffer_size, compression).unwrap();
        for c in data.chunks(chunk) {
            w.write(c, false).unwrap();
        }
        w.finish().unwrap();
        let mut r = RecordReader::new(format, 0);
        let mut out = Vec::new();
        let mut ends = 0;
        while let Some(buf) = w.pop_buffer() {
            prop_assert!(buf.len() <= buffer_size);
            prop_assert_eq!(buf[0], b'D');
            for p in r.read(&buf[1..]).unwrap() {
                prop_assert_eq!(ends, 0, "data after the end-of-file flag");
                out.extend_from_slice(&p.bytes);
                ends += p.end_of_record as usize;
            }
        }
        prop_assert_eq!(&out, &data);
        prop_assert_eq!(ends, usize::from(!data.is_empty()));
        prop_assert_eq!(r.units(), data.len() as u64);
    }

    #[test]
    fn data_roundtrip_records(
        records in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![any::<u8>(), Just(b' ')], 0..300), 0..40),
        buffer_size in 3usize..300,
        compression in any::<bool>(),
        fixed in any::<bool>(),
    ) {
        let (format, lrecl, records) = if fixed {
            // Fixed: every record has the same length.
            let len = records.first().map_or(1, |r| r.len().max(1));
            let recs: Vec<Vec<u8>> = records.iter().map(|r| {
                let mut r = r.clone();
                r.resize(len, b'#');
                r
            }).collect();
            (FileFormat::Fixed, len as u32, recs)
        } else {
            let max = records.iter().map(Vec::len).max().unwrap_or(0) as u32;
            (FileFormat::Variable, max, records)
        };
        let mut w = RecordWriter::new(format, lrecl, buffer_size, compression).unwrap();
        for rec in &records {
            // Write each record in two pieces to exercise continuation.
            let (a, b) = rec.split_at(rec.len() / 2);
            w.write(a, false).unwrap();
            w.write(b, true).unwrap();
        }
        w.finish().unwrap();
        prop_assert_eq!(w.records(), records.len() as u64);
        let mut r = RecordReader::new(format, lrecl);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut open: Vec<u8> = Vec::new();
        while let Some(buf) = w.pop_buffer() {
            prop_assert!(buf.len() <= buffer_size);
            for p in r.read(&buf[1..]).unwrap() {
                open.extend_from_slice(&p.bytes);
                if p.end_of_record {
                    got.push(std::mem::take(&mut open));
                }
            }
        }
        prop_assert!(open.is_empty());
        prop_assert_eq!(&got, &records);
        prop_assert_eq!(r.records(), records.len() as u64);
        prop_assert!(r.record_length_violation().is_none());
    }
}
