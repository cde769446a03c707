//! A 64 MiB stream through sign -> compress -> encrypt and back, asserting that memory does
//! not scale with the file: the process peak RSS (VmHWM) may grow by far less than the file
//! size, and no stage hands out more than a bounded chunk. This is the only test in this
//! binary so other tests cannot disturb the measurement.

use std::io::{BufReader, BufWriter, Read, Write};

use oftp_security::cms::{ReceiveOptions, ReceivePipeline, SEGMENT, SendOptions, SendPipeline};
use oftp_security::{CipherSuite, HashAlgorithm, Identity};

const SIZE: u64 = 64 * 1024 * 1024;

/// Deterministic, moderately compressible data generated on the fly.
struct Gen {
    pos: u64,
    state: u64,
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (SIZE - self.pos).min(buf.len() as u64) as usize;
        for b in &mut buf[..n] {
            self.state = self
                .state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Mostly letters from a small alphabet: compresses roughly 2:1.
            *b = b"ODETTE FTP\n"[((self.state >> 33) % 11) as usize];
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn identity(cn: &str) -> Identity {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["x.example".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap()
}

/// Hashes what it receives and records the largest single write.
struct Sink {
    hasher: oftp_security::Hasher,
    total: u64,
    max_write: usize,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.total += buf.len() as u64;
        self.max_write = self.max_write.max(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn sixty_four_mib_stream_in_constant_memory() {
    let sender = identity("Sender");
    let receiver = identity("Receiver");
    let dir = tempfile::tempdir().unwrap();
    let wire_path = dir.path().join("wire.p7m");
    let before = peak_rss_kib();

    // Send: generator -> pipeline -> file, with a fixed 64 KiB copy buffer.
    let input_hash = {
        let opts = SendOptions::new(CipherSuite::Aes256RsaSha256)
            .sign(&sender)
            .compress_level(1)
            .encrypt_for(receiver.certificate());
        let file = BufWriter::new(std::fs::File::create(&wire_path).unwrap());
        let mut pipeline = SendPipeline::new(file, &opts).unwrap();
        let mut gen_ = Gen { pos: 0, state: 7 };
        let mut h = HashAlgorithm::Sha256.hasher();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = gen_.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            pipeline.write_all(&buf[..n]).unwrap();
        }
        assert_eq!(pipeline.bytes_in(), SIZE);
        let file = pipeline.finish().unwrap();
        file.into_inner().unwrap().sync_all().unwrap();
        h.finish()
    };
    let wire_len = std::fs::metadata(&wire_path).unwrap().len();
    assert!(wire_len < SIZE, "compression happened ({wire_len} bytes)");

    // Receive: file -> pipeline -> hashing sink.
    let file = BufReader::new(std::fs::File::open(&wire_path).unwrap());
    let ro = ReceiveOptions::new()
        .identity(&receiver)
        .partner(sender.certificate())
        .expect(true, true, true);
    let mut pipeline = ReceivePipeline::new(file, &ro).unwrap();
    let mut sink = Sink {
        hasher: HashAlgorithm::Sha256.hasher(),
        total: 0,
        max_write: 0,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = pipeline.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= SEGMENT + 16, "a stage handed out {n} bytes at once");
        sink.write_all(&buf[..n]).unwrap();
    }
    let report = pipeline.finish().unwrap();
    assert_eq!(sink.total, SIZE);
    assert_eq!(sink.hasher.finish(), input_hash);
    assert!(report.signer.is_some());
    assert!(sink.max_write <= SEGMENT + 16);

    let growth_kib = peak_rss_kib().saturating_sub(before);
    eprintln!("peak RSS growth while streaming 64 MiB: {growth_kib} KiB");
    // A whole-file buffer in any stage would add at least 64 MiB (65536 KiB).
    assert!(
        growth_kib < 16 * 1024,
        "peak RSS grew by {growth_kib} KiB while streaming 64 MiB"
    );
}
