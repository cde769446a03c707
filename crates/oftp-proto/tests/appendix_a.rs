//! RFC 5024 Appendix A: the "Rime of the Ancient Mariner" T-format file mapped
//! into one DATA exchange buffer, checked byte for byte.

use oftp_proto::codec::{Command, FileFormat, ProtocolLevel};
use oftp_proto::data::{BufferBuilder, RecordReader, RecordWriter, parse_data_payload};

/// The two hexadecimal rows (high nibbles, low nibbles) of each printed line of
/// "Exchange Buffer 1", copied from the RFC text.
const HEX_ROWS: &[(&str, &str)] = &[
    (
        "4347267266266666672467666720046626627767767626662662767662002472",
        "4F9409301E01E395E40D129E52CDA1E4085034F005480FE50F6048255EDA2290",
    ),
    (
        "7367266662676726667626662666776766626762004672766766676277677277",
        "4F890CFE70725902512401E407C944529E70595CDAEF70785256F25034F00734",
    ),
    (
        "2376672663000025662476666766627266677267626766662766620046624266",
        "0F48F50D5FDADA248502294572FFD7304FF2301250F05E5407945CDA1E40901D",
    ),
    (
        "2366772662666300566267677726762667227662666772672767300467277266",
        "0FE5840F60B9EBDA485075534301250D54C04850651340930354ADAD19734085",
    ),
    (
        "6372766266777266622000046266667266627676266727666672666620025667",
        "1F204850D5229049EE2DADA8508FC43089D07948089303B9EE9081E4CDA24852",
    ),
    (
        "6327672627667222776762662002466626662276666626622676726667626666",
        "5F07130103890C2015F48085EDA28FC40F66105E81E40D5C07259D251240CFFE",
    ),
    (
        "2320046776667266726666267677266200004626666726662767626672666776",
        "1F2DA5643FFE30893081E4042F04085EDADA8508FC43089D07948089307C9445",
    ),
    (
        "7366626762200566256666662476772776662776662004662667766726666262",
        "2F9E70595DDDA485075449E7D75534034FF40349CCCDA1E40C9345E30C9B5010",
    ),
    (
        "7367662766773266666300566246766672667626672766620000566256666662",
        "4F8255095123B0389C4ADA4850D129E52081480893079CCEDADA485075449E7D",
    ),
    (
        "4376772767266262776663004626666672667762677266673004662767727766",
        "7F553403140FE01034FE5ADA85031EEF4038535025408512BDA1E4048530301B",
    ),
    (
        "6326627667266666672666200566267666726766246766672000056627667276",
        "5F0FE0481401E395E40D1ECDA4850229784D59540D129E52EDADA48503890071",
    ),
    (
        "7326666766227662667667726666766200467766726662762676700466672766",
        "3F03855254C048508122F5203C51254CDAD5229C90494075042F0DA25CF70485",
    ),
    (
        "2B667622666672766266662004666727662666672667762767200",
        "03B92BC025CF70485089CCCDA25CF704850C9784D8F53504F0EDA",
    ),
];

/// The poem as printed in Appendix A; lines are separated by CR LF.
const POEM: &[&str] = &[
    "It is an ancient Mariner,",
    "And he stoppeth one of three.",
    "\"By thy long grey beard and glittering eye,",
    "Now wherefore stopp'st thou me?",
    "",
    "\"The Bridegroom's doors are opened wide,",
    "And I am next of kin;",
    "The guests are met, the feast is set:",
    "May'st hear the merry din.\"",
    "",
    "He holds him with his skinny hand,",
    "\"There was a ship,\" quoth he.",
    "\"Hold off! unhand me, grey-beard loon!\"",
    "Eftsoons his hand dropt he.",
    "",
    "He holds him with his glittering eye--",
    "The Wedding-Guest stood still,",
    "And listens like a three years; child:",
    "The Mariner hath his will.",
    "",
    "The Wedding-Guest sat on a stone:",
    "He cannot chuse but hear;",
    "And thus spake on that ancient man,",
    "The bright-eyed Mariner.",
    "",
    "The ship was cheered, the harbour cleared,",
    "Merrily did we drop",
    "Below the kirk, below the hill,",
    "Below the light-house top.",
];

fn rfc_buffer() -> Vec<u8> {
    let mut out = Vec::new();
    for (hi, lo) in HEX_ROWS {
        assert_eq!(hi.len(), lo.len());
        for (h, l) in hi.bytes().zip(lo.bytes()) {
            let nib = |c: u8| (c as char).to_digit(16).expect("hex digit") as u8;
            out.push(nib(h) << 4 | nib(l));
        }
    }
    out
}

fn poem_file() -> Vec<u8> {
    let mut f = Vec::new();
    for line in POEM {
        f.extend_from_slice(line.as_bytes());
        f.extend_from_slice(b"\r\n");
    }
    f
}

#[test]
fn appendix_a_buffer_decodes_to_the_poem() {
    let buf = rfc_buffer();
    assert_eq!(buf.len(), 821);
    let Command::Data(data) = Command::decode(&buf, ProtocolLevel::V2_0).unwrap() else {
        panic!("not a DATA buffer");
    };
    let pieces = parse_data_payload(&data.payload).unwrap();
    // A T file travels as one record: the flag marks the end of the file.
    assert_eq!(pieces.len(), 1);
    assert!(pieces[0].end_of_record);
    assert_eq!(pieces[0].bytes, poem_file());

    let mut reader = RecordReader::new(FileFormat::Text, 0);
    reader.read(&data.payload).unwrap();
    assert_eq!(reader.units(), poem_file().len() as u64);
    assert!(reader.end_of_file_seen());
}

#[test]
fn appendix_a_buffer_is_rebuilt_byte_for_byte() {
    let expected = rfc_buffer();
    for compression in [false, true] {
        // Through the raw builder ...
        let mut b = BufferBuilder::new(4096, compression).unwrap();
        b.push(&poem_file(), true);
        b.flush();
        assert_eq!(
            b.pop_buffer().unwrap(),
            expected,
            "compression {compression}"
        );
        assert!(b.pop_buffer().is_none());
        // ... and through the T-format record writer, fed in odd-sized pieces.
        let mut w = RecordWriter::new(FileFormat::Text, 0, 4096, compression).unwrap();
        for chunk in poem_file().chunks(7) {
            w.write(chunk, false).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(
            w.pop_buffer().unwrap(),
            expected,
            "compression {compression}"
        );
        assert!(w.pop_buffer().is_none());
    }
}

#[test]
fn appendix_a_header_octets() {
    let buf = rfc_buffer();
    // Twelve full 63-octet subrecords (header 0x3F) then a last one of 51
    // octets with the end-of-record flag (0x80 | 0x33).
    for k in 0..12 {
        assert_eq!(buf[1 + k * 64], 0x3f, "subrecord {k}");
    }
    assert_eq!(buf[1 + 12 * 64], 0xb3);
}
