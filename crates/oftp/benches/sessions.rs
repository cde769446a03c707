//! Memory with many sessions (not a test; run with `scripts/bench-oftp-sessions.sh`).
//!
//! For 200 and then 1,000 concurrent sessions, each against a fresh `oftp serve` process (a
//! release build): every session sends one file (1 MiB unless `OFTP_BENCH_SESSION_KIB` says
//! otherwise) and waits for its EERP. Prints how many were delivered and how long it took, the
//! server's peak RSS (VmHWM), what it was made of (the peaks of its anonymous and file-backed
//! parts, sampled every 5 ms like the thread count), its peak thread count, and the ratio of
//! the peak RSS to the limit of 64 MiB. The clients connect from 127.0.0.2 to 127.0.0.101 in
//! turn, as partners at many addresses would, so the server's per-address limits stay at their
//! defaults. Needs `OFTP_BIN` (path of a release `oftp` binary) and about 1.2 GiB free in
//! $TMPDIR.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oftp::config::SessionLimits;
use oftp::{Client, OutgoingFile};

mod common;
use common::{client, start_server, status_field};

/// The limit the peak RSS is measured against.
const LIMIT_MIB: f64 = 64.0;

/// Client source addresses: 127.0.0.2 and the next ones.
const ADDRESSES: usize = 100;

/// Fields of `/proc/<pid>/status` sampled by [`watch`]: threads, anonymous and file-backed
/// resident memory (KiB).
const WATCHED: [&str; 3] = ["Threads:", "RssAnon:", "RssFile:"];

/// Samples [`WATCHED`] of `pid` every 5 ms until `stop`; the highest of each seen.
fn watch(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<[u64; 3]> {
    std::thread::spawn(move || {
        let mut peak = [0; 3];
        while !stop.load(Ordering::Relaxed) {
            for (p, field) in peak.iter_mut().zip(WATCHED) {
                if let Some(n) = status_field(pid, field) {
                    *p = (*p).max(n);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    })
}

async fn run(bin: &Path, work: &Path, sessions: usize, file: &Path, kib: u64) {
    let sdir = work.join(format!("server-{sessions}"));
    // Only the total limit is raised; the per-address limits are the defaults.
    let limits = format!(
        "max_connections = {max}\nbacklog = {max}",
        max = sessions + 64
    );
    let (server, addr) = start_server(bin, &sdir, &limits, "");
    let pid = server.0.id();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(pid, stop.clone());
    let server_addr: SocketAddr = addr.parse().unwrap();
    // Clients (with their journals) are made before the clock starts.
    let clients: Vec<(Client, SocketAddr)> = (0..sessions)
        .map(|i| {
            let dir = work.join(format!("client-{sessions}-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let from = SocketAddr::from(([127, 0, 0, 2 + (i % ADDRESSES) as u8], 0));
            (client(&dir, SessionLimits::default()), from)
        })
        .collect();
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (c, from)) in clients.into_iter().enumerate() {
        let file = file.to_owned();
        tasks.spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(from).ok()?;
            let io = socket.connect(server_addr).await.ok()?;
            let report = c
                .run_over(
                    io,
                    server_addr,
                    vec![OutgoingFile::new(&file).virtual_name(format!("S{i}"))],
                )
                .await;
            match report {
                Ok(r) => Some(r.all_delivered()),
                Err(e) => {
                    eprintln!("session {i}: {e}");
                    Some(false)
                }
            }
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        if matches!(r, Ok(Some(true))) {
            ok += 1;
        }
    }
    let d = t0.elapsed();
    let rss = status_field(pid, "VmHWM:");
    stop.store(true, Ordering::Relaxed);
    let [threads, anon, file_backed] = watcher.join().unwrap_or_default();
    println!(
        "{sessions:>5} sessions x {kib} KiB  {ok}/{sessions} delivered in {d:.2?} ({:.1} MB/s)",
        (sessions as u64 * kib * 1024) as f64 / 1e6 / d.as_secs_f64()
    );
    match rss {
        Some(kib) => {
            let mib = kib as f64 / 1024.0;
            println!(
                "      server peak RSS {mib:>6.1} MiB, ratio to the {LIMIT_MIB} MiB limit {:.2}; peak threads {threads}",
                mib / LIMIT_MIB
            );
            println!(
                "      of which at most {:.1} MiB anonymous (heap, stacks), {:.1} MiB file-backed (binary, libraries)",
                anon as f64 / 1024.0,
                file_backed as f64 / 1024.0
            );
        }
        None => println!("      server peak RSS unavailable (no /proc)"),
    }
    drop(server);
}

fn main() {
    let Some(bin) = std::env::var_os("OFTP_BIN").map(PathBuf::from) else {
        eprintln!("set OFTP_BIN to a release `oftp` binary (scripts/bench-oftp-sessions.sh does)");
        return;
    };
    let kib: u64 = std::env::var("OFTP_BENCH_SESSION_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("session.bin");
        let data: Vec<u8> = (0..kib * 1024).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&file, data).unwrap();
        for sessions in [200, 1000] {
            run(&bin, work.path(), sessions, &file, kib).await;
        }
    });
}
