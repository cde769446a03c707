//! Known-answer tables: decode, check the fields, re-encode byte-exact, decode again.

use super::*;

const L1: ProtocolLevel = ProtocolLevel::V1_2;
const L2: ProtocolLevel = ProtocolLevel::V1_3;
const L4: ProtocolLevel = ProtocolLevel::V1_4;
const L5: ProtocolLevel = ProtocolLevel::V2_0;

/// Left-justified, space-padded field.
fn x(s: &str, n: usize) -> String {
    assert!(s.len() <= n);
    format!("{s:<n$}")
}

fn time(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, c: u16) -> VirtualFileTime {
    VirtualFileTime::new(y, mo, d, h, mi, s, c).unwrap()
}

fn sfid_plain() -> Sfid {
    Sfid {
        dsn: "INVOICE.2024".into(),
        date_time: time(2024, 1, 31, 12, 30, 45, 1),
        user_data: "USER".into(),
        destination: "O0013000000PARTNER".into(),
        originator: "O0013000000ACME".into(),
        format: FileFormat::Unstructured,
        max_record_len: 0,
        file_size: 12,
        original_file_size: 10,
        restart_position: 0,
        security: SecurityLevel::NONE,
        cipher_suite: CipherSuite::NONE,
        compression: FileCompression::NONE,
        envelope: FileEnvelope::NONE,
        signed_eerp: false,
        description: "Hello".into(),
    }
}

/// (name, level, wire bytes, expected command)
fn table() -> Vec<(&'static str, ProtocolLevel, Vec<u8>, Command)> {
    let mut t = Vec::new();
    for level in [L1, L2, L4, L5] {
        t.push((
            "SSRM",
            level,
            b"IODETTE FTP READY \r".to_vec(),
            Command::Ssrm(Ssrm),
        ));
        t.push(("CD", level, b"R".to_vec(), Command::Cd(Cd)));
        t.push(("RTR", level, b"P".to_vec(), Command::Rtr(Rtr)));
        t.push(("CDT", level, b"C  ".to_vec(), Command::Cdt(Cdt)));
        t.push((
            "EFPA Y",
            level,
            b"4Y".to_vec(),
            Command::Efpa(Efpa {
                change_direction: true,
            }),
        ));
        t.push((
            "EFPA N",
            level,
            b"4N".to_vec(),
            Command::Efpa(Efpa {
                change_direction: false,
            }),
        ));
        t.push((
            "DATA",
            level,
            vec![b'D', 0x03, 1, 2, 3, 0xc5, b'x'],
            Command::Data(Data {
                payload: vec![0x03, 1, 2, 3, 0xc5, b'x'],
            }),
        ));
    }
    // SSID example from the protocol notes (61 octets, level 5).
    t.push((
        "SSID v2 notes example",
        L5,
        b"X5O0013000000ACME          SECRET  04096BNNN064N            \r".to_vec(),
        Command::Ssid(Ssid {
            level: L5,
            code: "O0013000000ACME".into(),
            password: Password::new("SECRET"),
            buffer_size: 4096,
            mode: SessionMode::Both,
            compression: false,
            restart: false,
            special_logic: false,
            credit: 64,
            secure_auth: false,
            user_data: String::new(),
        }),
    ));
    t.push((
        "SSID v2 with auth and user data",
        L5,
        format!(
            "X5{}{}99999SYYN999Y    {}\r",
            x("O0013000000ACME  SUB1", 25),
            x("pw-Mixed", 8),
            x("USERDATA", 8)
        )
        .into_bytes(),
        Command::Ssid(Ssid {
            level: L5,
            code: "O0013000000ACME  SUB1".into(),
            password: Password::new("pw-Mixed"),
            buffer_size: 99999,
            mode: SessionMode::Send,
            compression: true,
            restart: true,
            special_logic: false,
            credit: 999,
            secure_auth: true,
            user_data: "USERDATA".into(),
        }),
    ));
    // RFC 2204 SSID: reserved X(5) where 2.0 has AUTH + X(4).
    for level in [L1, L2, L4] {
        t.push((
            "SSID v1",
            level,
            format!(
                "X{}{}{}00128RNYN001     {}\r",
                level.0,
                x("O0013000000ACME", 25),
                x("SECRET", 8),
                x("", 8)
            )
            .into_bytes(),
            Command::Ssid(Ssid {
                level,
                code: "O0013000000ACME".into(),
                password: Password::new("SECRET"),
                buffer_size: 128,
                mode: SessionMode::Receive,
                compression: false,
                restart: true,
                special_logic: false,
                credit: 1,
                secure_auth: false,
                user_data: String::new(),
            }),
        ));
    }
    // SFID 2.0 (165 + n octets).
    let sfid = sfid_plain();
    t.push((
        "SFID v2 plain",
        L5,
        format!(
            "H{}   202401311230450001{}{}{}U00000{:013}{:013}{:017}000000N005Hello",
            x("INVOICE.2024", 26),
            x("USER", 8),
            x("O0013000000PARTNER", 25),
            x("O0013000000ACME", 25),
            12,
            10,
            0
        )
        .into_bytes(),
        Command::Sfid(sfid.clone()),
    ));
    let desc = "Rechnung für März";
    let secured = Sfid {
        format: FileFormat::Variable,
        max_record_len: 65536 - 1,
        restart_position: 99_999_999_999_999_999,
        security: SecurityLevel::ENCRYPTED_AND_SIGNED,
        cipher_suite: CipherSuite::AES256_RSA_SHA1,
        compression: FileCompression::ZLIB,
        envelope: FileEnvelope::CMS,
        signed_eerp: true,
        description: desc.into(),
        file_size: 9_999_999_999_999,
        ..sfid.clone()
    };
    t.push((
        "SFID v2 secured",
        L5,
        format!(
            "H{}   202401311230450001{}{}{}V65535{:013}{:013}{:017}030211Y{:03}{}",
            x("INVOICE.2024", 26),
            x("USER", 8),
            x("O0013000000PARTNER", 25),
            x("O0013000000ACME", 25),
            9_999_999_999_999u64,
            10,
            99_999_999_999_999_999u64,
            desc.len(),
            desc
        )
        .into_bytes(),
        Command::Sfid(secured),
    ));
    // RFC 2204 SFID: 128 octets, YYMMDD HHMMSS, FSIZ 9(7), REST 9(9).
    for level in [L1, L2] {
        t.push((
            "SFID v1",
            level,
            format!(
                "H{}         240131123045{}{}{}F00080{:07}{:09}",
                x("INVOICE.2024", 26),
                x("USER", 8),
                x("O0013000000PARTNER", 25),
                x("O0013000000ACME", 25),
                1234567,
                42
            )
            .into_bytes(),
            Command::Sfid(Sfid {
                date_time: time(2024, 1, 31, 12, 30, 45, 0),
                format: FileFormat::Fixed,
                max_record_len: 80,
                file_size: 1234567,
                original_file_size: 1234567,
                restart_position: 42,
                description: String::new(),
                ..sfid.clone()
            }),
        ));
        t.push((
            "EERP v1",
            level,
            format!(
                "E{}         991231235959{}{}{}",
                x("INVOICE.2024", 26),
                x("", 8),
                x("O0013000000ACME", 25),
                x("O0013000000PARTNER", 25),
            )
            .into_bytes(),
            Command::Eerp(Eerp {
                dsn: "INVOICE.2024".into(),
                date_time: time(1999, 12, 31, 23, 59, 59, 0),
                user_data: String::new(),
                destination: "O0013000000ACME".into(),
                originator: "O0013000000PARTNER".into(),
                hash: vec![],
                signature: vec![],
            }),
        ));
    }
    // OFTP 1.4 (level 4): the RFC 2204 commands with the extended date and
    // time stamp at the RFC 5024 positions (see the codec module doc).
    let sfid_14 = format!(
        "H{}   202402291230450001{}{}{}F00080{:07}{:09}",
        x("INVOICE.2024", 26),
        x("USER", 8),
        x("O0013000000PARTNER", 25),
        x("O0013000000ACME", 25),
        1234567,
        42
    );
    assert_eq!(sfid_14.len(), 128);
    assert_eq!(
        &sfid_14[30..48],
        "202402291230450001",
        "SFIDDATE at 30, SFIDTIME at 38"
    );
    t.push((
        "SFID 1.4",
        L4,
        sfid_14.into_bytes(),
        Command::Sfid(Sfid {
            date_time: time(2024, 2, 29, 12, 30, 45, 1),
            format: FileFormat::Fixed,
            max_record_len: 80,
            file_size: 1234567,
            original_file_size: 1234567,
            restart_position: 42,
            description: String::new(),
            ..sfid.clone()
        }),
    ));
    let eerp_14 = format!(
        "E{}   199912312359599999{}{}{}",
        x("INVOICE.2024", 26),
        x("USER", 8),
        x("O0013000000ACME", 25),
        x("O0013000000PARTNER", 25),
    );
    assert_eq!(eerp_14.len(), 106);
    t.push((
        "EERP 1.4",
        L4,
        eerp_14.into_bytes(),
        Command::Eerp(Eerp {
            dsn: "INVOICE.2024".into(),
            date_time: time(1999, 12, 31, 23, 59, 59, 9999),
            user_data: "USER".into(),
            destination: "O0013000000ACME".into(),
            originator: "O0013000000PARTNER".into(),
            hash: vec![],
            signature: vec![],
        }),
    ));
    let nerp_14 = format!(
        "N{}      202401311230450001{}{}{}35",
        x("INVOICE.2024", 26),
        x("O0013000000ACME", 25),
        x("O0013000000PARTNER", 25),
        x("O0013000000HUB", 25),
    );
    assert_eq!(nerp_14.len(), 128);
    assert_eq!(
        &nerp_14[33..51],
        "202401311230450001",
        "NERPDATE at 33, NERPTIME at 41"
    );
    t.push((
        "NERP 1.4",
        L4,
        nerp_14.into_bytes(),
        Command::Nerp(Nerp {
            dsn: "INVOICE.2024".into(),
            date_time: time(2024, 1, 31, 12, 30, 45, 1),
            destination: "O0013000000ACME".into(),
            originator: "O0013000000PARTNER".into(),
            creator: "O0013000000HUB".into(),
            reason: NerpReason::NOT_DELIVERED,
            text: String::new(),
            hash: vec![],
            signature: vec![],
        }),
    ));
    for level in [L1, L2, L4] {
        t.push((
            "SFPA v1",
            level,
            b"2000000042".to_vec(),
            Command::Sfpa(Sfpa { answer_count: 42 }),
        ));
        t.push((
            "SFNA v1",
            level,
            b"313N".to_vec(),
            Command::Sfna(Sfna {
                reason: SfnaReason::DUPLICATE_FILE,
                retry: false,
                text: String::new(),
            }),
        ));
        t.push((
            "EFID v1",
            level,
            b"T000000003000000001234".to_vec(),
            Command::Efid(Efid {
                record_count: 3,
                unit_count: 1234,
            }),
        ));
        t.push((
            "EFNA v1",
            level,
            b"510".to_vec(),
            Command::Efna(Efna {
                reason: EfnaReason::INVALID_RECORD_COUNT,
                text: String::new(),
            }),
        ));
        t.push((
            "ESID v1",
            level,
            b"F03\r".to_vec(),
            Command::Esid(Esid {
                reason: EsidReason::USER_CODE_NOT_KNOWN,
                text: String::new(),
            }),
        ));
    }
    t.push((
        "SFPA v2",
        L5,
        b"200000000000000042".to_vec(),
        Command::Sfpa(Sfpa { answer_count: 42 }),
    ));
    t.push((
        "SFNA v2 with text",
        L5,
        b"313Y011duplicate !".to_vec(),
        Command::Sfna(Sfna {
            reason: SfnaReason::DUPLICATE_FILE,
            retry: true,
            text: "duplicate !".into(),
        }),
    ));
    t.push((
        "EFID v2",
        L5,
        b"T0000000000000000300000000000001234".to_vec(),
        Command::Efid(Efid {
            record_count: 3,
            unit_count: 1234,
        }),
    ));
    t.push((
        "EFNA v2",
        L5,
        b"521000".to_vec(),
        Command::Efna(Efna {
            reason: EfnaReason::INVALID_SIGNATURE,
            text: String::new(),
        }),
    ));
    t.push((
        "ESID v2 normal",
        L5,
        b"F00000\r".to_vec(),
        Command::Esid(Esid {
            reason: EsidReason::NORMAL,
            text: String::new(),
        }),
    ));
    t.push((
        "ESID v2 with text",
        L5,
        b"F04016invalid password\r".to_vec(),
        Command::Esid(Esid {
            reason: EsidReason::INVALID_PASSWORD,
            text: "invalid password".into(),
        }),
    ));
    t.push(("SECD", L5, b"J".to_vec(), Command::Secd(Secd)));
    let mut eerp = format!(
        "E{}   202401311230450001{}{}{}",
        x("INVOICE.2024", 26),
        x("USER", 8),
        x("O0013000000ACME", 25),
        x("O0013000000PARTNER", 25),
    )
    .into_bytes();
    eerp.extend_from_slice(&[0, 3, 0xaa, 0xbb, 0xcc, 0, 2, 0x30, 0x80]);
    t.push((
        "EERP v2 signed",
        L5,
        eerp,
        Command::Eerp(Eerp {
            dsn: "INVOICE.2024".into(),
            date_time: time(2024, 1, 31, 12, 30, 45, 1),
            user_data: "USER".into(),
            destination: "O0013000000ACME".into(),
            originator: "O0013000000PARTNER".into(),
            hash: vec![0xaa, 0xbb, 0xcc],
            signature: vec![0x30, 0x80],
        }),
    ));
    let mut nerp = format!(
        "N{}      202401311230450001{}{}{}34006broken",
        x("INVOICE.2024", 26),
        x("O0013000000ACME", 25),
        x("O0013000000PARTNER", 25),
        x("O0013000000PARTNER", 25),
    )
    .into_bytes();
    nerp.extend_from_slice(&[0, 0, 0, 1, 0xff]);
    t.push((
        "NERP v2",
        L5,
        nerp,
        Command::Nerp(Nerp {
            dsn: "INVOICE.2024".into(),
            date_time: time(2024, 1, 31, 12, 30, 45, 1),
            destination: "O0013000000ACME".into(),
            originator: "O0013000000PARTNER".into(),
            creator: "O0013000000PARTNER".into(),
            reason: NerpReason::PROCESSING_FAILED,
            text: "broken".into(),
            hash: vec![],
            signature: vec![0xff],
        }),
    ));
    t.push((
        "AUCH",
        L5,
        vec![b'A', 0, 5, 1, 2, 3, 4, 5],
        Command::Auch(Auch {
            challenge: vec![1, 2, 3, 4, 5],
        }),
    ));
    let mut aurp = vec![b'S'];
    aurp.extend(1..=20u8);
    let mut response = [0u8; 20];
    response.copy_from_slice(&aurp[1..]);
    t.push(("AURP", L5, aurp, Command::Aurp(Aurp { response })));
    t
}

#[test]
fn known_answers_decode_check_encode_decode() {
    for (name, level, wire, expected) in table() {
        let decoded = Command::decode(&wire, level)
            .unwrap_or_else(|e| panic!("{name} at {level:?}: decode failed: {e}"));
        assert_eq!(decoded, expected, "{name} at {level:?}: fields");
        let encoded = decoded
            .to_bytes(level)
            .unwrap_or_else(|e| panic!("{name} at {level:?}: encode failed: {e}"));
        assert_eq!(
            encoded,
            wire,
            "{name} at {level:?}: re-encoding differs:\n{:?}\n{:?}",
            String::from_utf8_lossy(&encoded),
            String::from_utf8_lossy(&wire)
        );
        assert_eq!(
            Command::decode(&encoded, level).unwrap(),
            expected,
            "{name}"
        );
    }
}

#[test]
fn ssid_example_is_61_octets() {
    let wire = b"X5O0013000000ACME          SECRET  04096BNNN064N            \r";
    assert_eq!(wire.len(), 61);
}

#[test]
fn lenient_decoding_of_partner_quirks() {
    // ESID without the trailing CR, both layouts.
    let e = Command::decode(b"F09", L1).unwrap();
    assert_eq!(
        e,
        Command::Esid(Esid {
            reason: EsidReason::TIME_OUT,
            text: String::new()
        })
    );
    let e = Command::decode(b"F04003bad", L5).unwrap();
    assert!(
        matches!(e, Command::Esid(Esid { reason, ref text }) if reason == EsidReason::INVALID_PASSWORD && text == "bad")
    );
    // An RFC 2204 ESID received in a 2.0 session (e.g. before the level is settled).
    assert!(matches!(
        Command::decode(b"F10\r", L5),
        Ok(Command::Esid(Esid {
            reason: EsidReason::MODE_INCOMPATIBLE,
            ..
        }))
    ));
    // CR as 0x8D.
    assert_eq!(
        Command::decode(b"IODETTE FTP READY \x8d", L5).unwrap(),
        Command::Ssrm(Ssrm)
    );
    // Lower-case names and flags are accepted and stored upper-case.
    let wire = b"X5o0013000000acme          secret  04096bnny064n            \r";
    let Command::Ssid(s) = Command::decode(wire, L5).unwrap() else {
        panic!("not an SSID")
    };
    assert_eq!(s.code, "O0013000000ACME");
    assert_eq!(s.password.expose(), "secret", "passwords keep their case");
    assert_eq!(s.mode, SessionMode::Both);
    assert!(s.special_logic);
    // ... and re-encoded upper-case.
    let out = Command::Ssid(s).to_bytes(L5).unwrap();
    assert!(out.starts_with(b"X5O0013000000ACME          secret  04096BNNY"));
    // Underscore in a dataset name (Odette certificate exchange names).
    let mut sfid = sfid_plain();
    sfid.dsn = "odette_certificate_deliver".into();
    let wire = Command::Sfid(sfid).to_bytes(L5).unwrap();
    assert!(wire.starts_with(b"HODETTE_CERTIFICATE_DELIVER"));
    // An unsigned 2.0 EERP without the hash/signature length fields.
    let full = Command::Eerp(Eerp {
        dsn: "A".into(),
        date_time: time(2024, 1, 1, 0, 0, 0, 1),
        user_data: String::new(),
        destination: "B".into(),
        originator: "C".into(),
        hash: vec![],
        signature: vec![],
    });
    let wire = full.to_bytes(L5).unwrap();
    assert_eq!(wire.len(), 110);
    assert_eq!(Command::decode(&wire[..106], L5).unwrap(), full);
    // Reserved fields with content are ignored.
    let mut wire = Command::Sfid(sfid_plain()).to_bytes(L5).unwrap();
    wire[27..30].copy_from_slice(b"XYZ");
    assert!(Command::decode(&wire, L5).is_ok());
}

#[test]
fn malformed_buffers_map_to_esid_reasons() {
    let cases: Vec<(&[u8], ProtocolLevel, EsidReason)> = vec![
        (b"", L5, EsidReason::COMMAND_NOT_RECOGNISED),
        (b"Z", L5, EsidReason::COMMAND_NOT_RECOGNISED),
        (b"N", L1, EsidReason::COMMAND_NOT_RECOGNISED),
        (b"J", L4, EsidReason::COMMAND_NOT_RECOGNISED),
        (b"RR", L5, EsidReason::BUFFER_SIZE_ERROR),
        (b"C ", L5, EsidReason::BUFFER_SIZE_ERROR),
        (b"2000000000000000042", L5, EsidReason::BUFFER_SIZE_ERROR),
        (b"20000000000000004X", L5, EsidReason::INVALID_DATA),
        (b"4X", L5, EsidReason::INVALID_DATA),
        (b"313Y999short", L5, EsidReason::BUFFER_SIZE_ERROR),
        (b"IODETTE FTP READY!\r", L5, EsidReason::INVALID_DATA),
        (b"IODETTE FTP READY \n", L5, EsidReason::INVALID_DATA),
        (b"F00000\rX", L5, EsidReason::BUFFER_SIZE_ERROR),
        (b"A\x00\x05\x01", L5, EsidReason::BUFFER_SIZE_ERROR),
        (b"S\x01", L5, EsidReason::BUFFER_SIZE_ERROR),
    ];
    for (wire, level, reason) in cases {
        let err = Command::decode(wire, level).expect_err(&format!("{wire:?} decoded"));
        assert_eq!(err.esid_reason(), reason, "{wire:?}: {err}");
    }
    // SSID field checks.
    let good = b"X5O0013000000ACME          SECRET  04096BNNN064N            \r";
    let mut bad = good.to_vec();
    bad[35..40].copy_from_slice(b"00127");
    assert_eq!(
        Command::decode(&bad, L5).unwrap_err().esid_reason(),
        EsidReason::INVALID_DATA
    );
    let mut bad = good.to_vec();
    bad[40] = b'X';
    assert!(matches!(
        Command::decode(&bad, L5),
        Err(DecodeError::InvalidField {
            field: "SSIDSR",
            ..
        })
    ));
    let mut bad = good.to_vec();
    bad[44..47].copy_from_slice(b"000");
    assert!(matches!(
        Command::decode(&bad, L5),
        Err(DecodeError::InvalidField {
            field: "SSIDCRED",
            ..
        })
    ));
    // SSIDLEV 0 and 3 are no release level (RFC 5024 5.3.2: 1, 2, 4, 5,
    // future levels higher), nor is a letter: the negotiation fails (9.8.2 D
    // and G), ESID 10. A future level 6..9 is accepted (the lower one is used).
    for lev in [b'0', b'3', b'A', b' '] {
        let mut bad = good.to_vec();
        bad[1] = lev;
        let err = Command::decode(&bad, L5).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnsupportedLevel { .. }),
            "{lev}: {err}"
        );
        assert_eq!(err.esid_reason(), EsidReason::MODE_INCOMPATIBLE);
        assert!(err.to_string().contains("SSIDLEV"), "{err}");
    }
    for lev in [b'1', b'2', b'4', b'9'] {
        let mut ok = good.to_vec();
        ok[1] = lev;
        if lev != b'9' {
            // Levels below 5 have SSIDRSV1 X(5) where 2.0 has SSIDAUTH + X(4).
            ok[47] = b' ';
        }
        assert!(Command::decode(&ok, L5).is_ok(), "level {lev}");
    }
    let mut bad = good.to_vec();
    bad[10] = 0x01;
    assert!(matches!(
        Command::decode(&bad, L5),
        Err(DecodeError::InvalidField {
            field: "SSIDCODE",
            ..
        })
    ));
    assert!(matches!(
        Command::decode(&good[..60], L5),
        Err(DecodeError::Length { .. })
    ));
    // SFID: invalid format letter, invalid UTF-8 description.
    let wire = Command::Sfid(sfid_plain()).to_bytes(L5).unwrap();
    let mut bad = wire.clone();
    bad[106] = b'X';
    assert!(matches!(
        Command::decode(&bad, L5),
        Err(DecodeError::InvalidField {
            field: "SFIDFMT",
            ..
        })
    ));
    let mut bad = wire.clone();
    bad[165] = 0xff;
    assert!(matches!(
        Command::decode(&bad, L5),
        Err(DecodeError::InvalidField {
            field: "SFIDDESC",
            ..
        })
    ));
    // A 2.0 SFID decoded at level 1 is refused (here its digits at the
    // RFC 2204 time position are no time of day; else its length is wrong).
    assert!(matches!(
        Command::decode(&wire, L1),
        Err(DecodeError::InvalidDateTime {
            field: "SFIDTIME",
            ..
        })
    ));
    let mut no_stamp_check = wire.clone();
    no_stamp_check[30..48].copy_from_slice(b"000000240131123045");
    assert!(matches!(
        Command::decode(&no_stamp_check, L1),
        Err(DecodeError::Length { .. })
    ));
}

/// The stamp of `cmd` encoded at `level`, its DATE and TIME replaced by
/// `date` and `time` (as they would be at that level's positions).
fn with_stamp(cmd: &Command, level: ProtocolLevel, date: &str, time: &str) -> Vec<u8> {
    let mut wire = cmd.to_bytes(level).unwrap();
    let start = if matches!(cmd, Command::Nerp(_)) {
        33
    } else if level.has_extended_stamp() {
        30
    } else {
        36
    };
    let stamp = format!("{date}{time}");
    wire[start..start + stamp.len()].copy_from_slice(stamp.as_bytes());
    wire
}

/// RFC 5024 5.3.3: DATE is a calendar date, TIME a time of day and its
/// counter 0001-9999; RFC 2204 5.3.3: YYMMDD and HHMMSS. Anything else ends
/// the session with ESID 06, naming the field.
#[test]
fn stamps_must_be_calendar_dates_and_times_of_day() {
    let eerp = Command::Eerp(Eerp {
        dsn: "A".into(),
        date_time: time(2024, 1, 1, 0, 0, 0, 1),
        user_data: String::new(),
        destination: "B".into(),
        originator: "C".into(),
        hash: vec![],
        signature: vec![],
    });
    let nerp = Command::Nerp(Nerp {
        dsn: "A".into(),
        date_time: time(2024, 1, 1, 0, 0, 0, 1),
        destination: "B".into(),
        originator: "C".into(),
        creator: "C".into(),
        reason: NerpReason::NOT_DELIVERED,
        text: String::new(),
        hash: vec![],
        signature: vec![],
    });
    let sfid = Command::Sfid(sfid_plain());
    let extended: &[(&str, &str, &str)] = &[
        ("20060643", "1230450001", "DATE"),
        ("20230229", "1230450001", "DATE"),
        ("20241301", "1230450001", "DATE"),
        ("20240100", "1230450001", "DATE"),
        ("20240131", "5186720001", "TIME"),
        ("20240131", "2400000001", "TIME"),
        ("20240131", "2360000001", "TIME"),
        ("20240131", "1230450000", "TIME"),
    ];
    let short: &[(&str, &str, &str)] = &[
        ("060643", "123045", "DATE"),
        ("230229", "123045", "DATE"),
        ("241301", "123045", "DATE"),
        ("240131", "518672", "TIME"),
        ("240131", "240000", "TIME"),
    ];
    for (level, cases) in [(L1, short), (L2, short), (L4, extended), (L5, extended)] {
        for (cmd, prefix) in [(&sfid, "SFID"), (&eerp, "EERP"), (&nerp, "NERP")] {
            if prefix == "NERP" && !level.has_nerp() {
                continue;
            }
            for (date, t, which) in cases {
                let wire = with_stamp(cmd, level, date, t);
                let err = Command::decode(&wire, level)
                    .expect_err(&format!("{prefix} {date} {t} at {level:?} decoded"));
                let field = format!("{prefix}{which}");
                assert!(
                    matches!(&err, DecodeError::InvalidDateTime { field: f, .. } if *f == field),
                    "{prefix} {date} {t} at {level:?}: {err}"
                );
                assert_eq!(err.esid_reason(), EsidReason::INVALID_DATA);
                assert!(err.to_string().contains(&field), "{err}");
            }
        }
    }
    // The same stamps are valid where they should be: a leap day, a leap
    // second, the counter's range ends.
    for (date, t) in [("20240229", "2359600001"), ("20000229", "0000009999")] {
        assert!(Command::decode(&with_stamp(&sfid, L5, date, t), L5).is_ok());
        assert!(Command::decode(&with_stamp(&eerp, L4, date, t), L4).is_ok());
    }
    // A 1.4 partner's SFID read at level 1 shows as the issue's garbage
    // (year 20xx, "2006-06-43 51:86:72"); RFC 2204 shifted by the 1.4 layout.
    let v14 = with_stamp(&sfid, L4, "20060643", "5186720001");
    assert!(Command::decode(&v14, L4).is_err());
    // An RFC 2204 layout SFID at level 4 has spaces where CCYYMMDD starts.
    let v1 = Command::Sfid(Sfid {
        description: String::new(),
        ..sfid_plain()
    })
    .to_bytes(L1)
    .unwrap();
    assert!(matches!(
        Command::decode(&v1, L4),
        Err(DecodeError::InvalidField {
            field: "SFIDDATE",
            ..
        })
    ));

    // Encoding refuses what decoding would: non-dates, non-times, and the
    // counter 0000 at levels 4 and 5 (a 1.x stamp has counter 0 and is fine
    // at levels 1 and 2, which carry no counter).
    let mut bad = sfid_plain();
    bad.description = String::new();
    for (stamp, levels) in [
        (
            VirtualFileTime {
                day: 30,
                month: 2,
                ..time(2024, 1, 1, 0, 0, 0, 1)
            },
            &[L1, L2, L4, L5][..],
        ),
        (
            VirtualFileTime {
                hour: 24,
                ..time(2024, 1, 1, 0, 0, 0, 1)
            },
            &[L1, L2, L4, L5][..],
        ),
        (time(2024, 1, 1, 0, 0, 0, 0), &[L4, L5][..]),
    ] {
        bad.date_time = stamp;
        for &level in levels {
            assert!(
                matches!(
                    Command::Sfid(bad.clone()).to_bytes(level),
                    Err(EncodeError::InvalidDateTime { .. })
                ),
                "{stamp} at {level:?}"
            );
        }
    }
    bad.date_time = time(2024, 1, 1, 0, 0, 0, 0);
    assert!(Command::Sfid(bad.clone()).to_bytes(L1).is_ok());
    assert!(Command::Sfid(bad).to_bytes(L2).is_ok());
}

/// NERP came with revision 1.4 (RFC 5024 1.2): not a command at levels 1 and
/// 2 (ESID 01 when received), refused when asked to encode; at level 4 it has
/// no reason text and no signature.
#[test]
fn nerp_exists_from_level_4_on() {
    let n = Nerp {
        dsn: "A".into(),
        date_time: time(2024, 1, 1, 0, 0, 0, 1),
        destination: "B".into(),
        originator: "C".into(),
        creator: "D".into(),
        reason: NerpReason::NOT_DELIVERED,
        text: "next hop refused".into(),
        hash: vec![],
        signature: vec![],
    };
    for level in [L1, L2] {
        assert!(matches!(
            Command::Nerp(n.clone()).to_bytes(level),
            Err(EncodeError::NotAtLevel { what: "NERP", .. })
        ));
        let wire = Command::Nerp(n.clone()).to_bytes(L4).unwrap();
        let err = Command::decode(&wire, level).unwrap_err();
        assert_eq!(err.esid_reason(), EsidReason::COMMAND_NOT_RECOGNISED);
    }
    let wire = Command::Nerp(n.clone()).to_bytes(L4).unwrap();
    assert_eq!(wire.len(), 128, "the reason text is not sent at level 4");
    let Command::Nerp(back) = Command::decode(&wire, L4).unwrap() else {
        panic!("not a NERP")
    };
    assert_eq!(back.text, "");
    assert_eq!(back.creator, "D");
    let signed = Nerp {
        signature: vec![1],
        ..n.clone()
    };
    assert!(matches!(
        Command::Nerp(signed).to_bytes(L4),
        Err(EncodeError::NotAtLevel { .. })
    ));
    // A 2.0 NERP (with its text and length fields) has the wrong length at 4.
    let v2 = Command::Nerp(n).to_bytes(L5).unwrap();
    assert_eq!(
        Command::decode(&v2, L4).unwrap_err().esid_reason(),
        EsidReason::BUFFER_SIZE_ERROR
    );
}

#[test]
fn encoding_refuses_values_that_do_not_fit() {
    let mut s = sfid_plain();
    s.dsn = "A".repeat(27);
    assert!(matches!(
        Command::Sfid(s).to_bytes(L5),
        Err(EncodeError::TooLong {
            field: "SFIDDSN",
            ..
        })
    ));
    let mut s = sfid_plain();
    s.destination = "ACME*".into();
    assert!(matches!(
        Command::Sfid(s).to_bytes(L5),
        Err(EncodeError::InvalidCharacter { ch: '*', .. })
    ));
    let mut s = sfid_plain();
    s.dsn = " LEADING".into();
    assert!(Command::Sfid(s).to_bytes(L5).is_err());
    let mut s = sfid_plain();
    s.restart_position = 1_000_000_000;
    assert!(matches!(
        Command::Sfid(s).to_bytes(L1),
        Err(EncodeError::OutOfRange {
            field: "SFIDREST",
            ..
        })
    ));
    let mut s = sfid_plain();
    s.security = SecurityLevel::SIGNED;
    assert!(matches!(
        Command::Sfid(s).to_bytes(L4),
        Err(EncodeError::NotAtLevel { .. })
    ));
    let mut s = sfid_plain();
    s.description = "x".repeat(1000);
    assert!(Command::Sfid(s).to_bytes(L5).is_err());
    assert!(matches!(
        Command::Secd(Secd).to_bytes(L2),
        Err(EncodeError::NotAtLevel { .. })
    ));
    assert!(
        Command::Data(Data {
            payload: vec![0; 99_999]
        })
        .to_bytes(L5)
        .is_err()
    );
    // Nothing is left behind in the output on error.
    let mut out = b"keep".to_vec();
    let mut s = sfid_plain();
    s.originator = "bad!".into();
    assert!(Command::Sfid(s).encode(L5, &mut out).is_err());
    assert_eq!(out, b"keep");
}

#[test]
fn encoding_refuses_passwords_texts_and_binaries_longer_than_their_field() {
    let too_long = |cmd: Command, level| match cmd.to_bytes(level) {
        Err(EncodeError::TooLong {
            field, len, max, ..
        }) => (field, len, max),
        other => panic!("expected TooLong, got {other:?}"),
    };
    let ssid = Command::Ssid(Ssid {
        level: L5,
        code: "O0013000000ACME".into(),
        password: Password::new("NINECHARS"),
        buffer_size: 4096,
        mode: SessionMode::Both,
        compression: false,
        restart: false,
        special_logic: false,
        credit: 64,
        secure_auth: false,
        user_data: String::new(),
    });
    assert_eq!(too_long(ssid, L5), ("SSIDPSWD", 9, 8));
    let mut s = sfid_plain();
    s.description = "x".repeat(1000);
    assert_eq!(too_long(Command::Sfid(s), L5), ("SFIDDESC", 1000, 999));
    let auch = Command::Auch(Auch {
        challenge: vec![0; 65_536],
    });
    assert_eq!(too_long(auch, L5), ("AUCHCHAL", 65_536, 65_535));
}

#[test]
fn summaries_never_contain_secrets() {
    let Command::Ssid(s) = Command::decode(
        b"X5O0013000000ACME          SECRET  04096BNNN064N            \r",
        L5,
    )
    .unwrap() else {
        panic!()
    };
    let cmd = Command::Ssid(s);
    assert!(!cmd.summary().contains("SECRET"));
    assert!(!format!("{cmd:?}").contains("SECRET"));
    let aurp = Command::Aurp(Aurp {
        response: [0x41; 20],
    });
    assert!(!format!("{aurp:?}").contains("65"));
}
