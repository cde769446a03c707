//! Throughput and footprint benchmark (not a test; run with `scripts/bench-oftp.sh`).
//!
//! In one run, on loopback:
//! 1. the yardsticks: raw TCP copy of the same volume, memory to memory; the same copy file to
//!    file, the sender reading the file and the receiver writing it to a file in the server's
//!    data directory (fsync at the end), the least a sender and receiver that keep the data
//!    must do; and writing it durably (write + fsync) to that disk;
//! 2. a 1 GiB U file to a separate `oftp serve` process with 99999-octet buffers and credit
//!    999, then with the defaults (4096 / 64), with the server's data on disk; then the same
//!    with the server's data on tmpfs (`/dev/shm`), where fsync is free, to show the protocol
//!    cost apart from the disk;
//! 3. 200 concurrent sessions each sending 1 MiB;
//! 4. the server process's peak RSS (VmHWM).
//!
//! Prints MB/s, the ratio to raw TCP (target >= 0.8) and to the durable disk write, and the
//! peak RSS (target < 64 MiB). A receiver that fsyncs before it confirms a file cannot beat the
//! disk, so on disk the meaningful ratio is the one to the durable write.
//! Needs `OFTP_BIN` (path of a release `oftp` binary); `OFTP_BENCH_MIB` changes the file size.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oftp::OutgoingFile;
use oftp::config::SessionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{client, start_server, status_field};

/// What the benchmark server gets in `[server]` and `[session]`.
/// All its sessions come from 127.0.0.1, so the per-address limits are raised too.
const SERVER: &str = "max_connections = 512\nbacklog = 512\nmax_unauthenticated_per_address = 512\nmax_sessions_per_address = 512";
const SESSION: &str = "buffer_size = 99999\ncredit = 999";

const CHUNK: usize = 256 * 1024;

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1_000_000.0 / d.as_secs_f64()
}

/// Raw TCP copy of `bytes`; with `source`, the sender reads them from that file (else from
/// memory); with `store`, the receiver writes them to a file there and fsyncs it at the end
/// (file to file: the least any sender and receiver that keep the data must do).
async fn raw_tcp(bytes: u64, source: Option<&Path>, store: Option<PathBuf>) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        let mut file = store
            .as_ref()
            .map(|d| std::fs::File::create(d.join("raw.bin")).unwrap());
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            if let Some(f) = &mut file {
                f.write_all(&buf[..n]).unwrap();
            }
            total += n as u64;
        }
        if let (Some(f), Some(d)) = (file, &store) {
            f.sync_all().unwrap();
            let _ = std::fs::remove_file(d.join("raw.bin"));
        }
        total
    });
    let t0 = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0x5au8; CHUNK];
    let mut input = source.map(|p| std::fs::File::open(p).unwrap());
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        if let Some(f) = &mut input {
            std::io::Read::read_exact(f, &mut buf[..n]).unwrap();
        }
        s.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    s.shutdown().await.unwrap();
    assert_eq!(reader.await.unwrap(), bytes);
    t0.elapsed()
}

fn write_file(path: &Path, bytes: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 32) as u8;
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// Writes `bytes` to a file in `dir` and fsyncs it: the durable write speed of that disk.
fn durable_write(dir: &Path, bytes: u64) -> Duration {
    let p = dir.join("yardstick.bin");
    let block = vec![0xa5u8; 1 << 20];
    let t0 = Instant::now();
    let mut f = std::fs::File::create(&p).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    let d = t0.elapsed();
    drop(f);
    let _ = std::fs::remove_file(&p);
    d
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

async fn send_big(
    addr: &str,
    dir: &Path,
    file: &Path,
    limits: SessionLimits,
    name: &str,
) -> Duration {
    let c = client(dir, limits);
    let t0 = Instant::now();
    let report = c
        .run(addr, vec![OutgoingFile::new(file).virtual_name(name)])
        .await
        .unwrap();
    let d = t0.elapsed();
    assert!(report.all_delivered(), "{report:?}");
    d
}

fn main() {
    let Some(bin) = std::env::var_os("OFTP_BIN").map(PathBuf::from) else {
        eprintln!("set OFTP_BIN to a release `oftp` binary (scripts/bench-oftp.sh does)");
        return;
    };
    let mib: u64 = std::env::var("OFTP_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let bytes = mib << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let work = tempfile::tempdir().unwrap();
        let sdir = work.path().join("server");
        let cdir = work.path().join("client");
        std::fs::create_dir_all(&sdir).unwrap();
        std::fs::create_dir_all(&cdir).unwrap();
        let file = work.path().join("big.bin");
        write_file(&file, bytes);

        let raw = raw_tcp(bytes, None, None).await;
        let raw_mbs = mb_per_s(bytes, raw);
        println!("raw loopback TCP        {raw_mbs:>8.1} MB/s  ({mib} MiB in {raw:.2?})");
        let stored_mbs = mb_per_s(bytes, raw_tcp(bytes, Some(&file), Some(sdir.clone())).await);
        println!(
            "raw TCP file to file    {stored_mbs:>8.1} MB/s  (sender reads the file; receiver writes to the data dir, fsync at the end)"
        );
        let disk_mbs = mb_per_s(bytes, durable_write(&sdir, bytes));
        println!("durable disk write      {disk_mbs:>8.1} MB/s  (write + fsync in the data dir)");

        let shm = Path::new("/dev/shm");
        let shm_dir = shm
            .is_dir()
            .then(|| tempfile::tempdir_in(shm).ok())
            .flatten();
        let mut places = vec![("disk ", sdir.clone(), stored_mbs)];
        if let Some(d) = &shm_dir {
            // The same file-to-file yardstick with the receiver writing to tmpfs.
            let dir = d.path().to_owned();
            let shm_mbs = mb_per_s(bytes, raw_tcp(bytes, Some(&file), Some(dir.clone())).await);
            println!("raw TCP file to tmpfs   {shm_mbs:>8.1} MB/s  (the same, receiver writes to /dev/shm)");
            places.push(("tmpfs", dir, shm_mbs));
        }
        let mut peak: Option<u64> = None;
        for (place, dir, stored_mbs) in places {
            let (server, addr) = start_server(&bin, &dir, SERVER, SESSION);
            let pid = server.0.id();
            let inbox = dir.join("data/inbox/bench");
            for (label, limits, name) in [
                (
                    "99999/999",
                    SessionLimits {
                        buffer_size: 99_999,
                        credit: 999,
                        ..SessionLimits::default()
                    },
                    "BIG1",
                ),
                ("4096/64  ", SessionLimits::default(), "BIG2"),
            ] {
                let d = send_big(&addr, &cdir, &file, limits, name).await;
                let mbs = mb_per_s(bytes, d);
                println!(
                    "OFTP {label} {place} {mbs:>8.1} MB/s  ratio to raw TCP {:.2}, to raw TCP file to file {:.2}, to durable disk write {:.2}",
                    mbs / raw_mbs,
                    mbs / stored_mbs,
                    mbs / disk_mbs
                );
                let _ = std::fs::remove_file(inbox.join(name));
            }
            let this = peak_rss_kib(pid);
            if let Some(kib) = this {
                println!("  server peak RSS ({place}) {:>6.1} MiB", kib as f64 / 1024.0);
            }
            peak = peak.max(this);
            drop(server);
        }

        let (server, addr) = start_server(&bin, &sdir, SERVER, SESSION);
        let pid = server.0.id();

        // 200 concurrent sessions, 1 MiB each.
        let small = work.path().join("small.bin");
        write_file(&small, 1 << 20);
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let (addr, small) = (addr.clone(), small.clone());
            let dir = cdir.join(format!("c{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            tasks.spawn(async move {
                let c = client(&dir, SessionLimits::default());
                c.run(
                    &addr,
                    vec![OutgoingFile::new(&small).virtual_name(format!("S{i}"))],
                )
                .await
                .map(|r| r.all_delivered())
            });
        }
        let mut ok = 0;
        while let Some(r) = tasks.join_next().await {
            if matches!(r, Ok(Ok(true))) {
                ok += 1;
            }
        }
        let d = t0.elapsed();
        println!(
            "200 sessions x 1 MiB    {:>8.1} MB/s  ({ok}/200 delivered in {:.2?})",
            mb_per_s(200 << 20, d),
            d
        );
        let this = peak_rss_kib(pid);
        if let Some(kib) = this {
            println!("  server peak RSS (200 sessions) {:>6.1} MiB", kib as f64 / 1024.0);
        }
        peak = peak.max(this);
        match peak {
            Some(kib) => println!(
                "server peak RSS         {:>8.1} MiB (target < 64 MiB; max over the server processes)",
                kib as f64 / 1024.0
            ),
            None => println!("server peak RSS         unavailable (no /proc)"),
        }
        drop(server);
    });
}
