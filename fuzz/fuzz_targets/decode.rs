//! Decoding arbitrary bytes never panics, at any protocol level; a decoded
//! command that re-encodes decodes again and re-encodes to the same bytes
//! (lenient decoding normalises once: upper case, RFC 2204 layouts drop 2.0
//! texts); DATA payloads and STH headers parse or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oftp_proto::codec::{Command, ProtocolLevel};
use oftp_proto::data::parse_data_payload;
use oftp_proto::sth;

fuzz_target!(|data: &[u8]| {
    let _ = sth::decode_frame(data);
    let _ = parse_data_payload(data);
    for level in [1u8, 2, 4, 5] {
        let level = ProtocolLevel(level);
        if let Ok(cmd) = Command::decode(data, level) {
            if let Ok(bytes) = cmd.to_bytes(level) {
                let again = Command::decode(&bytes, level).expect("re-encoded command decodes");
                let bytes2 = again.to_bytes(level).expect("decoded command re-encodes");
                assert_eq!(bytes2, bytes);
            }
        }
    }
});
