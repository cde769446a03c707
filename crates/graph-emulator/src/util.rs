//! Small helpers shared by the modules: poison-tolerant locking, timestamps, ids, percent
//! decoding.

use std::sync::{Mutex, MutexGuard, PoisonError};

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::RngCore;

/// Locks a mutex, ignoring poisoning: a panicking test thread must not take the emulator down
/// with it, and every critical section leaves the data consistent before it can panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Graph timestamp format for message properties: `2024-01-02T03:04:05Z`.
pub(crate) fn graph_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A random opaque token (URL-safe, no padding) with `bytes` bytes of entropy from the OS.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Decodes `%XX` escapes in a URL path segment (invalid escapes are kept verbatim; `+` is not
/// a space in paths).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes a string for use in a query component (RFC 3986 unreserved kept).
pub(crate) fn query_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decode_handles_escapes_and_garbage() {
        assert_eq!(percent_decode("%24value"), "$value");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("x%C3%A4"), "xä");
    }

    #[test]
    fn query_encode_roundtrips_through_form_decoding() {
        let s = "receivedDateTime ge 2024-01-01T00:00:00Z and $x=1";
        let enc = query_encode(s);
        let dec: Vec<(String, String)> = url::form_urlencoded::parse(format!("k={enc}").as_bytes())
            .into_owned()
            .collect();
        assert_eq!(dec[0].1, s);
    }

    proptest::proptest! {
        #[test]
        fn query_encode_roundtrips(input in ".{0,60}") {
            let enc = query_encode(&input);
            proptest::prop_assert!(enc.is_ascii());
            let dec: Vec<(String, String)> =
                url::form_urlencoded::parse(format!("k={enc}").as_bytes()).into_owned().collect();
            proptest::prop_assert_eq!(&dec[0].1, &input);
            proptest::prop_assert_eq!(percent_decode(&enc), input);
        }
    }
}
