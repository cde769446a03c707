//! Stream Transmission Header framing (RFC 5024 section 8, RFC 2204 section 7).
//!
//! Over TCP every exchange buffer is preceded by a 4-octet header: version 1 in
//! the high nibble of the first octet, flags in the low nibble (0), and a 24-bit
//! big-endian length of header plus buffer, 5..=100003.
//!
//! [`decode_frame`] separates "need more bytes" (`Ok(None)`) from "malformed"
//! (`Err`), so a caller can buffer partial input without guessing. This module
//! does not interpret the exchange buffer.

use std::ops::Range;

/// Length of the stream transmission header.
pub const HEADER_LEN: usize = 4;
/// Smallest stream transmission buffer: header plus a 1-octet command.
pub const MIN_FRAME_LEN: usize = 5;
/// Largest exchange buffer (SSIDSDEB maximum).
pub const MAX_EXCHANGE_BUFFER: usize = 99_999;
/// Largest stream transmission buffer: header plus the largest exchange buffer.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_EXCHANGE_BUFFER;

/// A stream transmission header that cannot start a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The version nibble is not 1: the stream is not ODETTE-FTP over TCP, or
    /// framing was lost.
    #[error(
        "stream transmission header version is {version}, expected 1 (first octet {byte:#04x})"
    )]
    Version {
        /// The version nibble received.
        version: u8,
        /// The whole first octet.
        byte: u8,
    },
    /// The length field is outside 5..=100003.
    #[error("stream transmission header length {length} is outside 5..=100003")]
    Length {
        /// The length received.
        length: usize,
    },
}

impl FrameError {
    /// ESID reason for a framing error: a length outside the allowed range is
    /// an exchange buffer size error (07); a wrong version is an unrecognisable
    /// buffer (01, RFC 5024 9.9 "Invalid Buffer").
    pub fn esid_reason(&self) -> crate::codec::EsidReason {
        match self {
            FrameError::Version { .. } => crate::codec::EsidReason::COMMAND_NOT_RECOGNISED,
            FrameError::Length { .. } => crate::codec::EsidReason::BUFFER_SIZE_ERROR,
        }
    }
}

/// Looks for one complete frame at the start of `input`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((payload, consumed)))`
/// with the exchange buffer's range inside `input` and the total frame length
/// when a frame is complete, and `Err` when the header is malformed (the stream
/// cannot be resynchronised; end the session).
///
/// The flags nibble is reserved and not checked (RFC robustness principle).
pub fn decode_frame(input: &[u8]) -> Result<Option<(Range<usize>, usize)>, FrameError> {
    let Some(&first) = input.first() else {
        return Ok(None);
    };
    let version = first >> 4;
    if version != 1 {
        return Err(FrameError::Version {
            version,
            byte: first,
        });
    }
    if input.len() < HEADER_LEN {
        return Ok(None);
    }
    let length = ((input[1] as usize) << 16) | ((input[2] as usize) << 8) | input[3] as usize;
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&length) {
        return Err(FrameError::Length { length });
    }
    if input.len() < length {
        return Ok(None);
    }
    Ok(Some((HEADER_LEN..length, length)))
}

/// The length a complete stream transmission header announces (header plus
/// exchange buffer), before the rest of the frame has arrived.
///
/// `Ok(None)` while fewer than [`HEADER_LEN`] octets are there (a wrong
/// version nibble is reported as soon as the first octet is), `Err` for a
/// malformed header. Lets a caller read exactly one frame.
pub fn frame_length(input: &[u8]) -> Result<Option<usize>, FrameError> {
    match decode_frame(input) {
        Ok(Some((_, length))) => Ok(Some(length)),
        Ok(None) if input.len() >= HEADER_LEN => Ok(Some(
            ((input[1] as usize) << 16) | ((input[2] as usize) << 8) | input[3] as usize,
        )),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The header of a frame carrying an exchange buffer of `exchange_buffer_len`
/// octets, for a caller that writes the buffer behind it itself (no copy).
///
/// Returns an error when the buffer would be empty or longer than 99999 octets.
pub fn encode_header(exchange_buffer_len: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    let length = exchange_buffer_len + HEADER_LEN;
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&length) {
        return Err(FrameError::Length { length });
    }
    Ok([
        0x10,
        (length >> 16) as u8,
        (length >> 8) as u8,
        length as u8,
    ])
}

/// Appends the header for `exchange_buffer` and the buffer itself to `out`.
///
/// Returns an error (and appends nothing) when the buffer is empty or longer
/// than 99999 octets.
pub fn encode_frame(exchange_buffer: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let length = exchange_buffer.len() + HEADER_LEN;
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&length) {
        return Err(FrameError::Length { length });
    }
    let header = encode_header(exchange_buffer.len())?;
    out.reserve(length);
    out.extend_from_slice(&header);
    out.extend_from_slice(exchange_buffer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssrm_example_from_notes() {
        let ssrm = b"IODETTE FTP READY \r";
        let mut out = Vec::new();
        encode_frame(ssrm, &mut out).unwrap();
        assert_eq!(&out[..4], &[0x10, 0x00, 0x00, 0x17]);
        let (range, used) = decode_frame(&out).unwrap().unwrap();
        assert_eq!(&out[range], ssrm);
        assert_eq!(used, 0x17);
    }

    #[test]
    fn max_length_header() {
        let buf = vec![b'D'; MAX_EXCHANGE_BUFFER];
        let mut out = Vec::new();
        encode_frame(&buf, &mut out).unwrap();
        assert_eq!(&out[..4], &[0x10, 0x01, 0x86, 0xA3]);
        assert_eq!(decode_frame(&out).unwrap().unwrap().1, 100_003);
        assert!(encode_frame(&[b'D'; MAX_EXCHANGE_BUFFER + 1], &mut Vec::new()).is_err());
        assert!(encode_frame(&[], &mut Vec::new()).is_err());
    }

    #[test]
    fn need_more_versus_malformed() {
        assert_eq!(decode_frame(&[]), Ok(None));
        assert_eq!(decode_frame(&[0x10]), Ok(None));
        assert_eq!(decode_frame(&[0x10, 0, 0]), Ok(None));
        assert_eq!(decode_frame(&[0x10, 0, 0, 5]), Ok(None));
        assert_eq!(decode_frame(&[0x10, 0, 0, 5, b'R']), Ok(Some((4..5, 5))));
        assert!(matches!(
            decode_frame(&[0x20]),
            Err(FrameError::Version { version: 2, .. })
        ));
        assert_eq!(
            decode_frame(&[0x10, 0, 0, 4]),
            Err(FrameError::Length { length: 4 })
        );
        assert_eq!(
            decode_frame(&[0x10, 0x01, 0x86, 0xA4]),
            Err(FrameError::Length { length: 100_004 })
        );
    }

    #[test]
    fn frame_length_before_the_body() {
        assert_eq!(frame_length(&[]), Ok(None));
        assert_eq!(frame_length(&[0x10, 0x01]), Ok(None));
        assert_eq!(frame_length(&[0x10, 0x01, 0x86, 0xA3]), Ok(Some(100_003)));
        assert_eq!(frame_length(&[0x10, 0, 0, 5, b'R', b'x']), Ok(Some(5)));
        assert!(matches!(
            frame_length(&[0x30]),
            Err(FrameError::Version { version: 3, .. })
        ));
        assert_eq!(
            frame_length(&[0x10, 0, 0, 3]),
            Err(FrameError::Length { length: 3 })
        );
    }

    #[test]
    fn header_alone_matches_encode_frame() {
        for len in [1, 18, 4096, MAX_EXCHANGE_BUFFER] {
            let mut out = Vec::new();
            encode_frame(&vec![b'D'; len], &mut out).unwrap();
            assert_eq!(encode_header(len).unwrap(), out[..HEADER_LEN]);
        }
        assert!(encode_header(0).is_err());
        assert!(encode_header(MAX_EXCHANGE_BUFFER + 1).is_err());
    }

    #[test]
    fn two_frames_back_to_back() {
        let mut out = Vec::new();
        encode_frame(b"R", &mut out).unwrap();
        encode_frame(b"P", &mut out).unwrap();
        let (r1, n1) = decode_frame(&out).unwrap().unwrap();
        assert_eq!(&out[r1], b"R");
        let (r2, n2) = decode_frame(&out[n1..]).unwrap().unwrap();
        assert_eq!(&out[n1..][r2], b"P");
        assert_eq!(n1 + n2, out.len());
    }
}
