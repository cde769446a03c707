//! End to end: real server and client over 127.0.0.1, every level, format and buffer setting.

mod common;

use common::*;
use oftp::config::SessionLimits;
use oftp::oftp_proto::codec::FileFormat;
use oftp::{FileOutcome, OutgoingFile};

async fn round_trip(
    limits: SessionLimits,
    format: FileFormat,
    lrecl: u32,
    data: &[u8],
    name: &str,
) {
    init_tracing();
    let server = start_server().await;
    let cdir = tempfile::tempdir().unwrap();
    let path = cdir.path().join(name);
    std::fs::write(&path, data).unwrap();
    let client = client(cdir.path(), limits.clone());
    let report = client
        .run(
            &server.addr(),
            vec![OutgoingFile::new(&path).format(format, lrecl)],
        )
        .await
        .unwrap();
    assert_eq!(report.negotiated.level.0, limits.level.min(5), "{limits:?}");
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert!(report.all_delivered());
    let stored = server.inbox().join(name.to_ascii_uppercase());
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        data,
        "content of {}",
        stored.display()
    );
    assert!(partial_files(&server.inbox()).is_empty());
    server.running.shutdown().await;
}

fn limits(level: u8, buffer_size: u32, credit: u16, compression: bool) -> SessionLimits {
    SessionLimits {
        level,
        buffer_size,
        credit,
        compression,
        ..SessionLimits::default()
    }
}

fn text_lines(n: usize, width: impl Fn(usize) -> usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let w = width(i);
        out.extend((0..w).map(|j| b'A' + ((i + j) % 26) as u8));
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[tokio::test]
async fn level5_unstructured_defaults() {
    round_trip(
        limits(5, 4096, 64, false),
        FileFormat::Unstructured,
        0,
        &content(300_000, 1),
        "u5.bin",
    )
    .await;
}

#[tokio::test]
async fn level4_unstructured_with_compression() {
    // Runs of equal octets exercise buffer compression.
    let mut data = content(50_000, 2);
    data.extend(std::iter::repeat_n(0u8, 70_000));
    round_trip(
        limits(4, 2048, 16, true),
        FileFormat::Unstructured,
        0,
        &data,
        "u4.bin",
    )
    .await;
}

#[tokio::test]
async fn level2_text_file() {
    let data = text_lines(500, |i| 10 + i % 70);
    round_trip(
        limits(2, 1024, 8, false),
        FileFormat::Text,
        0,
        &data,
        "t2.txt",
    )
    .await;
}

/// Records in the default (raw) record mapping: F back to back, V after a 2-octet length;
/// their octets include CR, LF, NUL and 0xFF.
fn raw_records(n: usize, width: impl Fn(usize) -> usize, prefixed: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let w = width(i);
        if prefixed {
            out.extend_from_slice(&(w as u16).to_be_bytes());
        }
        out.extend((0..w).map(|j| [b'A', b'\r', b'\n', 0, 0xFF][(i + j) % 5]));
    }
    out
}

#[tokio::test]
async fn level1_fixed_records_small_buffers_credit_one() {
    let data = raw_records(300, |_| 80, false);
    round_trip(
        limits(1, 128, 1, false),
        FileFormat::Fixed,
        80,
        &data,
        "f1.dat",
    )
    .await;
}

#[tokio::test]
async fn level5_variable_records_with_compression() {
    let data = raw_records(400, |i| (i * 7) % 300, true);
    round_trip(
        limits(5, 512, 3, true),
        FileFormat::Variable,
        300,
        &data,
        "v5.dat",
    )
    .await;
}

#[tokio::test]
async fn big_buffers_empty_file() {
    round_trip(
        limits(5, 99_999, 999, true),
        FileFormat::Unstructured,
        0,
        &[],
        "empty.bin",
    )
    .await;
}
