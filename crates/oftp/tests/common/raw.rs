//! A raw OFTP peer over a plain TCP socket: frames the test writes by hand and the server's
//! answers read frame by frame, for peers that break the protocol on purpose.

use std::time::Duration;

use oftp::oftp_proto::codec::{
    Command, FileFormat, Password, ProtocolLevel, SessionMode, Sfid, Ssid, VirtualFileTime,
};
use oftp::oftp_proto::sth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{CLIENT_PW, CLIENT_SSID, SERVER_SSID};

/// `cmd` encoded at level 5 in one STH frame.
pub fn frame(cmd: &Command) -> Vec<u8> {
    let mut buf = Vec::new();
    cmd.encode(ProtocolLevel::V2_0, &mut buf).unwrap();
    let mut out = Vec::new();
    sth::encode_frame(&buf, &mut out).unwrap();
    out
}

/// The test client's SSID (no restart) with this buffer size and credit.
pub fn ssid(buffer_size: u32, credit: u16) -> Command {
    ssid_as(CLIENT_SSID, CLIENT_PW, buffer_size, credit, false)
}

/// An SSID at level 5 in both directions for `code` with password `pw`.
pub fn ssid_as(code: &str, pw: &str, buffer_size: u32, credit: u16, restart: bool) -> Command {
    Command::Ssid(Ssid {
        level: ProtocolLevel::V2_0,
        code: code.into(),
        password: Password::new(pw),
        buffer_size,
        mode: SessionMode::Both,
        compression: false,
        restart,
        special_logic: false,
        credit,
        secure_auth: false,
        user_data: String::new(),
    })
}

/// The test client's SFID of an unstructured file `name` with a fixed stamp.
pub fn sfid(name: &str) -> Command {
    let stamp = VirtualFileTime::new(2026, 1, 2, 3, 4, 5, 1).unwrap();
    Command::Sfid(Sfid::new(
        name,
        stamp,
        CLIENT_SSID,
        SERVER_SSID,
        FileFormat::Unstructured,
        0,
    ))
}

/// One DATA exchange buffer of `n` subrecords of 63 octets of `byte` (no end of record).
pub fn data_frame(n: usize, byte: u8) -> Vec<u8> {
    let mut data = vec![b'D'];
    for _ in 0..n {
        data.push(0x3f);
        data.extend_from_slice(&[byte; 63]);
    }
    let mut out = Vec::new();
    sth::encode_frame(&data, &mut out).unwrap();
    out
}

/// Reads STH frames until the command letter `want` arrives; returns its exchange buffer.
/// `None` when the server closed the connection first (or did not answer within 5 s).
pub async fn next_command(s: &mut TcpStream, buf: &mut Vec<u8>, want: u8) -> Option<Vec<u8>> {
    next_of(s, buf, &[want]).await
}

/// [`next_command`] for any of the command letters in `wants`.
pub async fn next_of(s: &mut TcpStream, buf: &mut Vec<u8>, wants: &[u8]) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    for _ in 0..1000 {
        while let Ok(Some((range, used))) = sth::decode_frame(buf) {
            let payload = buf[range].to_vec();
            buf.drain(..used);
            if payload.first().is_some_and(|c| wants.contains(c)) {
                return Some(payload);
            }
        }
        let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            _ => return None,
        };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    None
}

/// Reads STH frames until the command letter `want` arrives and returns its exchange buffer;
/// panics if the server closes the connection or stays silent first.
pub async fn read_until(s: &mut TcpStream, want: u8) -> Vec<u8> {
    next_command(s, &mut Vec::new(), want)
        .await
        .unwrap_or_else(|| panic!("command {} not received", want as char))
}

/// The reason code of an ESID exchange buffer.
pub fn esid_code(esid: &[u8]) -> u8 {
    std::str::from_utf8(&esid[1..3]).unwrap().parse().unwrap()
}

/// Connects, reads SSRM, sends the test client's SSID and waits for the server's SSID.
pub async fn logged_on(addr: &str, buffer_size: u32) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    next_command(&mut s, &mut buf, b'I').await.expect("SSRM");
    s.write_all(&frame(&ssid(buffer_size, 999))).await.unwrap();
    next_command(&mut s, &mut buf, b'X')
        .await
        .expect("server SSID");
    (s, buf)
}
