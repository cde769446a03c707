//! Measures the file-security stages alone, in memory (no disk, no network): how fast the CMS
//! pipelines that `SecurityContext` uses sign, encrypt, and both (suite 04), and open the
//! result again. `scripts/bench-oftp-security.sh` measures end to end; this shows how much of
//! that is the cryptography. Run with
//! `cargo run --release -p oftp --example pipeline_speed -- CERT KEY [MIB]`.

use std::io::Write;
use std::time::Instant;

use oftp_security::cms::{ReceiveOptions, ReceivePipeline, SendOptions, SendPipeline};
use oftp_security::{CipherSuite, Identity};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, cert, key, ..] = args.as_slice() else {
        return Err("usage: pipeline_speed CERT KEY [MIB]".into());
    };
    let mib: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let id = Identity::from_files(cert, key)?;
    let suite = CipherSuite::from_code(4)?;
    let chunk = vec![0x41u8; 64 * 1024];
    let n = mib * 1024 * 1024 / chunk.len();
    for (name, opts) in [
        ("sign", SendOptions::new(suite).sign(&id)),
        (
            "encrypt",
            SendOptions::new(suite).encrypt_for(id.certificate()),
        ),
        (
            "sign+encrypt",
            SendOptions::new(suite)
                .sign(&id)
                .encrypt_for(id.certificate()),
        ),
    ] {
        let t = Instant::now();
        let mut p = SendPipeline::new(Vec::with_capacity(mib * 1024 * 1024 + 65536), &opts)?;
        for _ in 0..n {
            p.write_all(&chunk)?;
        }
        let out = p.finish()?;
        let send = t.elapsed();
        let t = Instant::now();
        let ro = ReceiveOptions::new()
            .identity(&id)
            .partner(id.certificate())
            .expect(name.contains("encrypt"), false, name.contains("sign"));
        let mut r = ReceivePipeline::new(&out[..], &ro)?;
        let got = std::io::copy(&mut r, &mut std::io::sink())?;
        r.finish()?;
        let recv = t.elapsed();
        // The same from and to files (page cache), as the receiver does it.
        let dir = std::env::temp_dir();
        let (cin, cout) = (
            dir.join("pipeline_speed.in"),
            dir.join("pipeline_speed.out"),
        );
        std::fs::write(&cin, &out)?;
        let t = Instant::now();
        let input = std::io::BufReader::with_capacity(64 * 1024, std::fs::File::open(&cin)?);
        let mut r = ReceivePipeline::new(input, &ro)?;
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, std::fs::File::create(&cout)?);
        std::io::copy(&mut r, &mut w)?;
        r.finish()?;
        w.flush()?;
        let files = t.elapsed();
        let _ = (std::fs::remove_file(&cin), std::fs::remove_file(&cout));
        let mb = (mib * 1024 * 1024) as f64 / 1e6;
        println!(
            "{name:13} send {:7.1} MB/s  receive {:7.1} MB/s  receive file to file {:7.1} MB/s ({got} bytes)",
            mb / send.as_secs_f64(),
            mb / recv.as_secs_f64(),
            mb / files.as_secs_f64()
        );
    }
    Ok(())
}
