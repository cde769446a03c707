//! Partner-supplied CMS never panics or runs away: the layered receive pipeline (BER or DER,
//! any nesting of EnvelopedData / CompressedData / SignedData), in-memory signature
//! verification and certificate parsing either succeed or fail with an error. Output is read
//! through a cap so a decompression bomb costs bounded time and memory.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use oftp_security::Certificate;
use oftp_security::cms::{ReceiveOptions, ReceivePipeline, verify_bytes};

/// Upper bound on the plain output read per input (a zlib layer can expand ~1000x).
const OUTPUT_CAP: u64 = 8 << 20;

fuzz_target!(|data: &[u8]| {
    let _ = Certificate::from_pem_or_der(data);
    let _ = verify_bytes(data, None, None);
    let _ = verify_bytes(data, Some(b"detached content"), None);

    let options = ReceiveOptions::new();
    if let Ok(mut pipeline) = ReceivePipeline::new(data, &options) {
        let mut sink = std::io::sink();
        let copied = std::io::copy(&mut (&mut pipeline).take(OUTPUT_CAP), &mut sink);
        if matches!(copied, Ok(n) if n < OUTPUT_CAP) {
            let _ = pipeline.finish();
        }
    }
});
