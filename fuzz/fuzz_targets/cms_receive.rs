//! Partner-supplied CMS never panics or runs away. Every input goes through each decoder of
//! `oftp-security` a partner can reach:
//! - the layered receive pipeline (BER or DER, any nesting of EnvelopedData / CompressedData /
//!   SignedData) with an identity to decrypt with and a partner certificate to verify against,
//!   so the recipient infos, the content decryption and the signer infos are parsed, and its
//!   output read as V-format records (2-octet length indicators);
//! - in-memory signature verification (no partner: signer certificate from the message;
//!   detached content with a partner certificate) and signed EERP/NERP receipts;
//! - secure-authentication challenges (AUCH) enveloped to us;
//! - certificate parsing (PEM, DER, bundles).
//!
//! Output is read through a cap so a decompression bomb costs bounded time and memory. The
//! identity is a throwaway test key (`fuzz/keys/`); seeds made with it are in
//! `fuzz/seeds/cms_receive/`, and every input that once crashed is in
//! `fuzz/regressions/cms_receive/` (run by `crates/oftp-security/tests/robustness.rs`).
#![no_main]

use std::io::Read;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oftp_security::cms::{ReceiveOptions, ReceivePipeline, verify_bytes};
use oftp_security::receipt::{ReceiptFields, verify_receipt};
use oftp_security::vformat::RecordReader;
use oftp_security::{Certificate, Identity};

/// Upper bound on the plain output read per input (a zlib layer can expand ~1000x).
const OUTPUT_CAP: u64 = 8 << 20;

fn identity() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| {
        Identity::from_pem(include_bytes!("../keys/fuzz-identity.pem")).expect("fuzz identity")
    })
}

fn receipt_fields() -> ReceiptFields {
    ReceiptFields {
        dsn: "ORDERS".into(),
        date: "20261206".into(),
        time: "1200000001".into(),
        destination: "O0013SERVER".into(),
        originator: "O0013CLIENT".into(),
        nerp_creator: None,
        file_hash: vec![0x5A; 32],
    }
}

fuzz_target!(|data: &[u8]| {
    let me = identity();
    let _ = Certificate::all_from_pem_or_der(data);
    let _ = verify_bytes(data, None, None);
    let _ = verify_bytes(data, Some(b"detached content"), Some(me.certificate()));
    let _ = verify_receipt(data, &receipt_fields(), me.certificate());
    let _ = oftp_security::auth::answer_challenge(data, me);

    let options = ReceiveOptions::new().identity(me).partner(me.certificate());
    if let Ok(mut pipeline) = ReceivePipeline::new(data, &options) {
        // The first 64 KiB of the plain output are also read as V-format records.
        let mut head = Vec::new();
        let read = (&mut pipeline).take(64 << 10).read_to_end(&mut head);
        let rest = read.and_then(|_| {
            std::io::copy(&mut (&mut pipeline).take(OUTPUT_CAP), &mut std::io::sink())
        });
        if matches!(rest, Ok(n) if n < OUTPUT_CAP) {
            let _ = pipeline.finish();
        }
        let mut records = RecordReader::new(&head[..]);
        let mut record = Vec::new();
        while let Ok(true) = records.next_record(&mut record) {}
    }
});
