//! Protocol-core throughput benchmark (no sockets, no files): `cargo bench -p oftp-proto`.
//!
//! In one run:
//! 1. the yardstick: `memcpy` of the volume in 99999-octet chunks, the least any code that
//!    touches every octet once must spend;
//! 2. a U file through an in-memory initiator/responder pair, for 99999/999 and the defaults
//!    (4096/64), buffer compression off and on. The send side (file bytes -> `write_data` ->
//!    framed `poll_transmit` bytes, plus handling the CDTs) and the receive side (framed bytes
//!    in socket-sized reads -> `handle_input` -> `DataReceived` events -> CDT out) are timed
//!    separately and printed as MB/s and as a ratio to the memcpy figure.
//!
//! Wall-clock figures move with the machine's load; for before/after comparisons run it under
//! `valgrind --tool=callgrind` with a small volume and read the inclusive instruction counts of
//! `send_side`, `recv_side` and `memcpy_phase` (see `scripts` in the crate README).
//!
//! Environment: `OFTP_PROTO_BENCH_MIB` (volume, default 1024), `OFTP_PROTO_BENCH_ONLY` (one of
//! `memcpy`, `99999-off`, `99999-on`, `4096-off`, `4096-on`), `OFTP_PROTO_BENCH_READ` (receive
//! read size, default 65536, the runtime's), `OFTP_PROTO_BENCH_CHUNK` (`write_data` size,
//! default 65536, the runtime's), `OFTP_PROTO_BENCH_REPEAT` (runs per figure, best kept,
//! default 3).

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use oftp_proto::codec::{FileFormat, Password, Sfid, VirtualFileTime};
use oftp_proto::session::{
    Capabilities, Event, InitiatorConfig, ResponderConfig, ResponderParams, Session,
};

const MIB: usize = 1024 * 1024;
/// What the in-memory wire holds before the sender must wait for the receiver (a loopback
/// socket's buffers are of this order).
const SOCKET_BUFFER: usize = 256 * 1024;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1_000_000.0 / d.as_secs_f64().max(1e-9)
}

/// Incompressible content (xorshift), with a run of zeros every 4 KiB so that compression
/// finds something to do.
fn source(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    let mut v = Vec::with_capacity(len);
    for i in 0..len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(if i % 4096 < 64 { 0 } else { x as u8 });
    }
    v
}

#[inline(never)]
fn memcpy_phase(src: &[u8], total: usize) -> Duration {
    const CHUNK: usize = 99_999;
    let mut dst = vec![0u8; CHUNK];
    let t = Instant::now();
    let mut done = 0;
    let mut off = 0;
    while done < total {
        let n = CHUNK.min(total - done);
        if off + n > src.len() {
            off = 0;
        }
        dst[..n].copy_from_slice(&src[off..off + n]);
        black_box(&mut dst);
        off += n;
        done += n;
    }
    t.elapsed()
}

struct Wire {
    /// Frames in flight from the sender, each as `poll_transmit` handed it out.
    frames: VecDeque<Vec<u8>>,
    /// Octets of the front frame already read.
    front_read: usize,
}

struct Sender {
    session: Session,
    off: usize,
    written: usize,
}

/// Everything the sending application and runtime do in the protocol core: `write_data` while
/// credit lasts, take the framed bytes.
#[inline(never)]
fn send_side(s: &mut Sender, src: &[u8], total: usize, chunk: usize, wire: &mut Wire) {
    // Like a socket, the wire takes a bounded amount before the receiver must read.
    let mut queued: usize = wire.frames.iter().map(Vec::len).sum();
    while s.written < total && s.session.can_accept_data() && queued < SOCKET_BUFFER {
        let n = chunk.min(total - s.written);
        if s.off + n > src.len() {
            s.off = 0;
        }
        s.session
            .write_data(&src[s.off..s.off + n], false)
            .expect("write_data");
        s.off += n;
        s.written += n;
        if let Some(bytes) = s.session.poll_transmit() {
            queued += bytes.len();
            wire.frames.push_back(bytes);
        }
    }
    if let Some(bytes) = s.session.poll_transmit() {
        wire.frames.push_back(bytes);
    }
}

/// The sender reads the receiver's CDTs.
#[inline(never)]
fn send_side_input(s: &mut Sender, back: &[u8], now: Instant) {
    s.session.handle_input(back, now);
    while let Some(ev) = s.session.poll_event() {
        black_box(ev);
    }
}

/// How the receiving side is fed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    /// `handle_input` on slices of the sender's frames: the protocol core alone.
    Slices,
    /// A read copy into a 64 KiB buffer (what the kernel does for a socket read), then
    /// `handle_input`: today's runtime.
    ReadCopy,
    /// The read copy straight into `read_buffer`, then `commit_read`.
    Direct,
}

/// Takes the data events.
fn drain_receiver(r: &mut Session, received: &mut usize) {
    while let Some(ev) = r.poll_event() {
        if let Event::DataReceived { bytes, .. } = ev {
            *received += bytes.len();
            black_box(bytes);
        }
    }
}

/// The next piece of the wire, at most `read` octets, as a socket read would return it.
fn next_read(wire: &mut Wire, read: usize) -> Option<&[u8]> {
    let len = wire.frames.front()?.len();
    let start = wire.front_read;
    let end = (start + read).min(len);
    wire.front_read = end;
    Some(&wire.frames.front()?[start..end])
}

/// Drops the front frame once it has been read entirely.
fn advance(wire: &mut Wire) {
    if wire
        .frames
        .front()
        .is_some_and(|f| wire.front_read == f.len())
    {
        wire.frames.pop_front();
        wire.front_read = 0;
    }
}

/// The receive side in the protocol core: socket-sized pieces into `handle_input`, the data
/// events taken.
#[inline(never)]
fn recv_side(r: &mut Session, wire: &mut Wire, read: usize, now: Instant, received: &mut usize) {
    while let Some(piece) = next_read(wire, read) {
        r.handle_input(piece, now);
        advance(wire);
        drain_receiver(r, received);
    }
}

/// As [`recv_side`], with the socket read's copy into the runtime's buffer.
#[inline(never)]
fn recv_side_read_copy(
    r: &mut Session,
    wire: &mut Wire,
    rbuf: &mut [u8],
    now: Instant,
    received: &mut usize,
) {
    while let Some(piece) = next_read(wire, rbuf.len()) {
        let n = piece.len();
        rbuf[..n].copy_from_slice(piece);
        advance(wire);
        r.handle_input(&rbuf[..n], now);
        drain_receiver(r, received);
    }
}

/// The socket read's copy straight into the session's `read_buffer`, then `commit_read`.
#[inline(never)]
fn recv_side_direct(
    r: &mut Session,
    wire: &mut Wire,
    read: usize,
    now: Instant,
    received: &mut usize,
) {
    loop {
        let space = r.read_buffer();
        let Some(piece) = next_read(wire, read.min(space.len())) else {
            break;
        };
        let n = piece.len();
        space[..n].copy_from_slice(piece);
        advance(wire);
        r.commit_read(n, now);
        drain_receiver(r, received);
    }
}

fn pump(a: &mut Session, b: &mut Session, now: Instant) {
    for _ in 0..64 {
        let x = a.poll_transmit();
        let y = b.poll_transmit();
        if x.is_none() && y.is_none() {
            return;
        }
        if let Some(x) = x {
            b.handle_input(&x, now);
        }
        if let Some(y) = y {
            a.handle_input(&y, now);
        }
    }
}

/// A pair with the file offered and accepted, the sender ready for `write_data`.
fn open_pair(buffer_size: u32, credit: u16, compression: bool, now: Instant) -> (Session, Session) {
    let caps = Capabilities {
        buffer_size,
        credit,
        compression,
        ..Capabilities::default()
    };
    let mut cfg = InitiatorConfig::new("O0013000000ACME", Password::new("ISECRET"));
    cfg.capabilities = caps.clone();
    let mut i = Session::initiator(cfg, now).expect("initiator");
    let mut r = Session::responder(ResponderConfig::default(), now);
    pump(&mut i, &mut r, now);
    while let Some(ev) = r.poll_event() {
        if let Event::SsidReceived { .. } = ev {
            r.accept_session(ResponderParams {
                ssid_code: "O0013000000PARTNER".into(),
                password: Password::new("RSECRET"),
                user_data: String::new(),
                capabilities: caps.clone(),
            })
            .expect("accept_session");
        }
    }
    pump(&mut i, &mut r, now);
    let time = VirtualFileTime::new(2026, 11, 21, 12, 0, 0, 1).expect("time");
    let sfid = Sfid::new(
        "BENCH",
        time,
        "O0013000000ACME",
        "O0013000000PARTNER",
        FileFormat::Unstructured,
        0,
    );
    i.send_file(sfid).expect("send_file");
    pump(&mut i, &mut r, now);
    while r.poll_event().is_some() {}
    r.accept_file(0).expect("accept_file");
    pump(&mut i, &mut r, now);
    while i.poll_event().is_some() {}
    assert!(i.can_accept_data(), "sender not ready: {}", i.state_name());
    (i, r)
}

struct Figures {
    send: Duration,
    recv: Duration,
}

fn transfer(
    src: &[u8],
    total: usize,
    buffer_size: u32,
    credit: u16,
    compression: bool,
    input: Input,
) -> Figures {
    let chunk = env_usize("OFTP_PROTO_BENCH_CHUNK", 64 * 1024);
    let read = env_usize("OFTP_PROTO_BENCH_READ", 64 * 1024);
    let now = Instant::now();
    let (i, mut r) = open_pair(buffer_size, credit, compression, now);
    let mut s = Sender {
        session: i,
        off: 0,
        written: 0,
    };
    let mut wire = Wire {
        frames: VecDeque::new(),
        front_read: 0,
    };
    let mut received = 0usize;
    let mut rbuf = vec![0u8; read];
    let mut send = Duration::ZERO;
    let mut recv = Duration::ZERO;
    let mut finished = false;
    // Bounded: every round moves at least one buffer (1 KiB or more), or finishes the file.
    let max_rounds = total / 1024 + 1000;
    for _ in 0..max_rounds {
        let t = Instant::now();
        send_side(&mut s, src, total, chunk, &mut wire);
        if s.written == total && !finished && s.session.can_accept_data() {
            s.session.finish_file(0, total as u64).expect("finish_file");
            if let Some(bytes) = s.session.poll_transmit() {
                wire.frames.push_back(bytes);
            }
            finished = true;
        }
        send += t.elapsed();
        let t = Instant::now();
        match input {
            Input::Slices => recv_side(&mut r, &mut wire, read, now, &mut received),
            Input::ReadCopy => {
                recv_side_read_copy(&mut r, &mut wire, &mut rbuf, now, &mut received)
            }
            Input::Direct => recv_side_direct(&mut r, &mut wire, read, now, &mut received),
        }
        let back = r.poll_transmit();
        recv += t.elapsed();
        if let Some(back) = back {
            let t = Instant::now();
            send_side_input(&mut s, &back, now);
            send += t.elapsed();
        }
        if finished && wire.frames.is_empty() {
            break;
        }
    }
    assert!(!r.is_closed(), "receiver ended the session");
    assert_eq!(received, total, "octets received");
    Figures { send, recv }
}

fn main() {
    let total = env_usize("OFTP_PROTO_BENCH_MIB", 1024) * MIB;
    let only = std::env::var("OFTP_PROTO_BENCH_ONLY").ok();
    let repeat = env_usize("OFTP_PROTO_BENCH_REPEAT", 3).max(1);
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    // A source larger than the caches, cycled through, as file reads would be.
    let src = source(total.min(64 * MIB));
    println!(
        "oftp-proto throughput, {} MiB, U file, write chunk {} B, read size {} B, best of {repeat}",
        total / MIB,
        env_usize("OFTP_PROTO_BENCH_CHUNK", 64 * 1024),
        env_usize("OFTP_PROTO_BENCH_READ", 64 * 1024),
    );
    // The yardstick is measured even when one configuration is selected (ratios need it),
    // unless only the protocol path is wanted under callgrind.
    let memcpy = if only.is_none() || wanted("memcpy") {
        let d = memcpy_phase(&src, total);
        let m = mb_per_s(total, d);
        println!("memcpy 99999-octet chunks {m:.0} MB/s");
        Some(m)
    } else {
        None
    };
    for (buffer, credit) in [(99_999u32, 999u16), (4096, 64)] {
        for compression in [false, true] {
            let name = format!("{buffer}-{}", if compression { "on" } else { "off" });
            if !wanted(&name) {
                continue;
            }
            // The machine's load changes by the second: every figure is the best of a few
            // interleaved runs, and the yardstick of a configuration's ratios is measured
            // between its runs (a quarter of the volume, at most 256 MiB).
            let mut best_memcpy = f64::MAX;
            let mut f = Figures {
                send: Duration::MAX,
                recv: Duration::MAX,
            };
            let (mut copy, mut direct) = (Duration::MAX, Duration::MAX);
            for _ in 0..repeat {
                if memcpy.is_some() {
                    let n = (total / 4).clamp(MIB, 256 * MIB);
                    let per_mb = memcpy_phase(&src, n).as_secs_f64() / n as f64;
                    best_memcpy = best_memcpy.min(per_mb);
                }
                let g = transfer(&src, total, buffer, credit, compression, Input::Slices);
                f.send = f.send.min(g.send);
                f.recv = f.recv.min(g.recv);
                let c = transfer(&src, total, buffer, credit, compression, Input::ReadCopy);
                copy = copy.min(c.recv);
                let d = transfer(&src, total, buffer, credit, compression, Input::Direct);
                direct = direct.min(d.recv);
            }
            let memcpy = memcpy.map(|_| 1.0 / best_memcpy / 1_000_000.0);
            let ratio =
                |x: f64| memcpy.map_or(String::new(), |m| format!(" ({:.2} x memcpy)", x / m));
            if let Some(m) = memcpy {
                println!("memcpy (best, between the runs below) {m:.0} MB/s");
            }
            let s = mb_per_s(total, f.send);
            let r = mb_per_s(total, f.recv);
            let both = mb_per_s(total, f.send + f.recv);
            println!(
                "{buffer:>5}/{credit:<3} compression {:<3} send {s:>6.0} MB/s{}  receive {r:>6.0} MB/s{}  both {both:>6.0} MB/s{}",
                if compression { "on" } else { "off" },
                ratio(s),
                ratio(r),
                ratio(both),
            );
            let c = mb_per_s(total, copy);
            let d = mb_per_s(total, direct);
            println!(
                "{:>26} receive incl. the socket read copy: handle_input {c:>6.0} MB/s{}  read_buffer {d:>6.0} MB/s{}",
                "",
                ratio(c),
                ratio(d),
            );
        }
    }
}
