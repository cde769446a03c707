//! Minimal BER/DER support for the few CMS structures OFTP uses.
//!
//! Three parts: a DER *writer* (helpers that build TLVs in memory, used for headers and the
//! small non-streamed structures), a *slice parser* that accepts BER (including indefinite
//! lengths and constructed strings) for small in-memory structures such as `SignerInfo`, and a
//! *stream reader* over `std::io::Read` that parses headers one at a time so the large content
//! octets can be streamed. Only single-byte tags are supported (CMS needs no others).
//! Element sizes read into memory are capped ([`MAX_ELEMENT`]) so a hostile length cannot
//! make us allocate unbounded memory.
//!
//! Every length and offset that comes from the input is combined with checked arithmetic
//! (`checked_add`, slices through `get`): a length field may say anything up to 2^64 - 1
//! (eight length octets), and a sum that wraps would let a size check pass and a slice
//! panic. Such an input is a [`Error::Malformed`] of the layer being parsed, whose message
//! names the element and the length. The stream position itself counts octets actually
//! read, so it cannot overflow.

use std::io::Read;

use crate::error::{Error, Layer, Result};

/// Largest element (certificate set, signer info...) read into memory: 4 MiB.
pub(crate) const MAX_ELEMENT: usize = 4 * 1024 * 1024;
/// Deepest nesting accepted in BER structures.
const MAX_DEPTH: usize = 32;

pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const OCTET_STRING_C: u8 = 0x24;
    pub(crate) const NULL: u8 = 0x05;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const UTC_TIME: u8 = 0x17;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;
    pub(crate) const CTX0_C: u8 = 0xA0;
    pub(crate) const CTX1_C: u8 = 0xA1;
    pub(crate) const CTX0_P: u8 = 0x80;
}

/// Object identifiers (DER content bytes, without tag and length).
pub(crate) mod oid {
    pub(crate) const DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
    pub(crate) const SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
    pub(crate) const ENVELOPED_DATA: &[u8] =
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03];
    pub(crate) const COMPRESSED_DATA: &[u8] = &[
        0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x01, 0x09,
    ];
    pub(crate) const ZLIB: &[u8] = &[
        0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x03, 0x08,
    ];
    pub(crate) const ATTR_CONTENT_TYPE: &[u8] =
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x03];
    pub(crate) const ATTR_MESSAGE_DIGEST: &[u8] =
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x04];
    pub(crate) const ATTR_SIGNING_TIME: &[u8] =
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x05];
    pub(crate) const RSA_ENCRYPTION: &[u8] =
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
    pub(crate) const SHA1_WITH_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x05];
    pub(crate) const SHA256_WITH_RSA: &[u8] =
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0B];
    pub(crate) const SHA384_WITH_RSA: &[u8] =
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0C];
    pub(crate) const SHA512_WITH_RSA: &[u8] =
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0D];
    pub(crate) const SHA1: &[u8] = &[0x2B, 0x0E, 0x03, 0x02, 0x1A];
    pub(crate) const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    pub(crate) const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    pub(crate) const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    pub(crate) const DES_EDE3_CBC: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x03, 0x07];
    pub(crate) const AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
    pub(crate) const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A];
}

// ---------------------------------------------------------------- DER writer

/// Appends a tag and a definite length.
pub(crate) fn put_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A complete TLV.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    put_header(&mut out, tag, content.len());
    out.extend_from_slice(content);
    out
}

/// A constructed TLV from concatenated parts.
pub(crate) fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    put_header(&mut out, tag, len);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    cons(tag::SEQUENCE, parts)
}

pub(crate) fn oid_tlv(o: &[u8]) -> Vec<u8> {
    tlv(tag::OID, o)
}

/// A small non-negative INTEGER.
pub(crate) fn small_int(v: u8) -> Vec<u8> {
    if v < 0x80 {
        vec![tag::INTEGER, 1, v]
    } else {
        vec![tag::INTEGER, 2, 0, v]
    }
}

/// AlgorithmIdentifier with NULL parameters (hash and RSA algorithms, as OpenSSL writes them).
pub(crate) fn alg_id_null(o: &[u8]) -> Vec<u8> {
    seq(&[&oid_tlv(o), &[tag::NULL, 0]])
}

/// DER SET OF: elements sorted by their encodings (X.690 11.6).
pub(crate) fn set_of(mut elems: Vec<Vec<u8>>) -> Vec<u8> {
    elems.sort();
    let parts: Vec<&[u8]> = elems.iter().map(|e| e.as_slice()).collect();
    cons(tag::SET, &parts)
}

pub(crate) const EOC: [u8; 2] = [0, 0];

// ---------------------------------------------------------------- slice parser (BER)

/// One parsed element of an in-memory BER encoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    /// Content octets (for indefinite length: the children, without the end-of-contents).
    pub(crate) content: &'a [u8],
    /// The whole encoding including header (and end-of-contents).
    pub(crate) raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    pub(crate) fn constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    /// Iterates the children of a constructed element.
    pub(crate) fn children(&self, layer: Layer) -> Children<'a> {
        Children {
            rest: self.content,
            layer,
        }
    }

    /// String value, joining BER constructed-string segments.
    pub(crate) fn octets(&self, layer: Layer) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.octets_into(&mut out, layer, 0)?;
        Ok(out)
    }

    fn octets_into(&self, out: &mut Vec<u8>, layer: Layer, depth: usize) -> Result<()> {
        if !self.constructed() {
            out.extend_from_slice(self.content);
            return Ok(());
        }
        if depth > MAX_DEPTH {
            return Err(Error::malformed(layer, "string nesting too deep"));
        }
        for c in self.children(layer) {
            c?.octets_into(out, layer, depth + 1)?;
        }
        Ok(())
    }

    pub(crate) fn expect(self, tag: u8, layer: Layer, what: &str) -> Result<Self> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(Error::malformed(
                layer,
                format!("{what}: expected tag {tag:#04x}, found {:#04x}", self.tag),
            ))
        }
    }
}

/// Iterator over the children of a constructed element.
pub(crate) struct Children<'a> {
    rest: &'a [u8],
    layer: Layer,
}

impl<'a> Children<'a> {
    /// Next child, failing with `what` if there is none.
    pub(crate) fn need(&mut self, what: &str) -> Result<Tlv<'a>> {
        self.next()
            .unwrap_or_else(|| Err(Error::malformed(self.layer, format!("{what} missing"))))
    }

    /// Next child only if it has the given tag.
    pub(crate) fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>> {
        if self.rest.first() == Some(&tag) {
            self.next().transpose()
        } else {
            Ok(None)
        }
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Tlv<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match parse(self.rest, self.layer) {
            Ok((t, rest)) => {
                self.rest = rest;
                Some(Ok(t))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

fn parse_len(input: &[u8], layer: Layer) -> Result<(Option<usize>, usize)> {
    let short = |what: &str| Error::malformed(layer, format!("truncated {what}"));
    let first = *input.get(1).ok_or_else(|| short("length"))?;
    if first < 0x80 {
        return Ok((Some(first as usize), 2));
    }
    if first == 0x80 {
        return Ok((None, 2));
    }
    let n = (first & 0x7F) as usize;
    if n > 4 {
        return Err(Error::malformed(layer, "length field too large"));
    }
    let bytes = input.get(2..2 + n).ok_or_else(|| short("length"))?;
    let len = bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize);
    Ok((Some(len), 2 + n))
}

/// Parses one BER element from the front of `input`.
pub(crate) fn parse(input: &[u8], layer: Layer) -> Result<(Tlv<'_>, &[u8])> {
    parse_depth(input, layer, 0)
}

fn parse_depth(input: &[u8], layer: Layer, depth: usize) -> Result<(Tlv<'_>, &[u8])> {
    if depth > MAX_DEPTH {
        return Err(Error::malformed(layer, "nesting too deep"));
    }
    let tag = *input
        .first()
        .ok_or_else(|| Error::malformed(layer, "unexpected end of data"))?;
    if tag & 0x1F == 0x1F {
        return Err(Error::malformed(layer, "multi-byte tags are not supported"));
    }
    let (len, hlen) = parse_len(input, layer)?;
    // Where the content ends, and where the element ends (after an end-of-contents marker).
    let (content_end, end) = match len {
        Some(len) => {
            let end = hlen
                .checked_add(len)
                .filter(|e| *e <= input.len())
                .ok_or_else(|| Error::malformed(layer, "element longer than its container"))?;
            (end, end)
        }
        None => {
            if tag & 0x20 == 0 {
                return Err(Error::malformed(layer, "indefinite length on primitive"));
            }
            let unterminated = || Error::malformed(layer, "end-of-contents missing");
            let mut pos = hlen;
            let end = loop {
                let after_eoc = pos.checked_add(EOC.len()).ok_or_else(unterminated)?;
                if input.get(pos..after_eoc) == Some(&EOC[..]) {
                    break after_eoc;
                }
                let child = input.get(pos..).ok_or_else(unterminated)?;
                let (_, rest) = parse_depth(child, layer, depth + 1)?;
                pos = input.len() - rest.len();
            };
            (pos, end)
        }
    };
    Ok((
        Tlv {
            tag,
            content: &input[hlen..content_end],
            raw: &input[..end],
        },
        &input[end..],
    ))
}

/// Parses exactly one element, rejecting trailing bytes.
pub(crate) fn parse_one(input: &[u8], layer: Layer) -> Result<Tlv<'_>> {
    let (t, rest) = parse(input, layer)?;
    if !rest.is_empty() {
        return Err(Error::malformed(layer, "trailing bytes after structure"));
    }
    Ok(t)
}

/// Re-encodes a BER element as DER-ish definite length (indefinite lengths resolved,
/// constructed strings joined). Used where a hash must be computed over a DER encoding
/// (signed attributes) and on certificates that a partner sent in BER.
pub(crate) fn to_definite(t: &Tlv<'_>, layer: Layer) -> Result<Vec<u8>> {
    to_definite_depth(t, layer, 0)
}

fn to_definite_depth(t: &Tlv<'_>, layer: Layer, depth: usize) -> Result<Vec<u8>> {
    if !t.constructed() {
        return Ok(t.raw.to_vec());
    }
    if depth > MAX_DEPTH {
        return Err(Error::malformed(layer, "nesting too deep"));
    }
    if matches!(t.tag, tag::OCTET_STRING_C) {
        return Ok(tlv(tag::OCTET_STRING, &t.octets(layer)?));
    }
    let mut content = Vec::new();
    for c in t.children(layer) {
        content.extend_from_slice(&to_definite_depth(&c?, layer, depth + 1)?);
    }
    Ok(tlv(t.tag, &content))
}

/// Value of a non-negative INTEGER that fits in a u64.
pub(crate) fn small_uint(t: &Tlv<'_>, layer: Layer) -> Result<u64> {
    if t.tag != tag::INTEGER || t.content.is_empty() || t.content.len() > 8 {
        return Err(Error::malformed(layer, "bad INTEGER"));
    }
    Ok(t.content.iter().fold(0u64, |a, b| (a << 8) | *b as u64))
}

// ---------------------------------------------------------------- stream reader

/// Header of an element read from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) tag: u8,
    /// `None` for indefinite length.
    pub(crate) len: Option<u64>,
}

/// Where a constructed element opened on a stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// At this absolute stream position.
    At(u64),
    /// At an end-of-contents marker.
    Eoc,
}

/// Pull parser over a byte stream with a small look-ahead buffer.
pub(crate) struct StreamReader<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    pos: u64,
    layer: Layer,
}

const STREAM_BUF: usize = 16 * 1024;

impl<R: Read> StreamReader<R> {
    pub(crate) fn new(inner: R, layer: Layer) -> Self {
        StreamReader {
            inner,
            buf: vec![0u8; STREAM_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            pos: 0,
            layer,
        }
    }

    pub(crate) fn layer(&self) -> Layer {
        self.layer
    }

    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    fn err(&self, detail: impl Into<String>) -> Error {
        Error::malformed(self.layer, detail)
    }

    /// Makes at least `n` (<= 16) bytes available if the stream has them; returns how many are.
    fn fill(&mut self, n: usize) -> Result<usize> {
        if self.end - self.start >= n {
            return Ok(self.end - self.start);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < n {
            let r = self
                .inner
                .read(&mut self.buf[self.end..])
                .map_err(|e| self.wrap_io(e))?;
            if r == 0 {
                break;
            }
            self.end += r;
        }
        Ok(self.end - self.start)
    }

    fn wrap_io(&self, e: std::io::Error) -> Error {
        Error::from_io(e)
    }

    pub(crate) fn peek_byte(&mut self) -> Result<Option<u8>> {
        if self.fill(1)? == 0 {
            Ok(None)
        } else {
            Ok(Some(self.buf[self.start]))
        }
    }

    fn take(&mut self) -> Result<u8> {
        if self.fill(1)? == 0 {
            return Err(self.err("unexpected end of data"));
        }
        let b = self.buf[self.start];
        self.start += 1;
        self.pos += 1;
        Ok(b)
    }

    /// Reads up to `out.len()` content bytes.
    pub(crate) fn read_some(&mut self, out: &mut [u8]) -> Result<usize> {
        if self.start == self.end {
            // Large reads bypass the buffer.
            if out.len() >= self.buf.len() {
                let n = self.inner.read(out).map_err(|e| self.wrap_io(e))?;
                self.pos += n as u64;
                return Ok(n);
            }
            if self.fill(1)? == 0 {
                return Ok(0);
            }
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        self.pos += n as u64;
        Ok(n)
    }

    pub(crate) fn read_exact(&mut self, out: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            let n = self.read_some(&mut out[done..])?;
            if n == 0 {
                return Err(self.err("unexpected end of data"));
            }
            done += n;
        }
        Ok(())
    }

    /// Reads a tag and length.
    pub(crate) fn header(&mut self) -> Result<Header> {
        let tag = self.take()?;
        if tag & 0x1F == 0x1F {
            return Err(self.err("multi-byte tags are not supported"));
        }
        let first = self.take()?;
        let len = if first < 0x80 {
            Some(first as u64)
        } else if first == 0x80 {
            if tag & 0x20 == 0 {
                return Err(self.err("indefinite length on a primitive element"));
            }
            None
        } else {
            let n = first & 0x7F;
            if n > 8 {
                return Err(self.err("length field too large"));
            }
            let mut v = 0u64;
            for _ in 0..n {
                v = (v << 8) | self.take()? as u64;
            }
            Some(v)
        };
        Ok(Header { tag, len })
    }

    /// Reads a header and checks the tag.
    pub(crate) fn expect_header(&mut self, tag: u8, what: &str) -> Result<Header> {
        let h = self.header()?;
        if h.tag != tag {
            return Err(self.err(format!(
                "{what}: expected tag {tag:#04x}, found {:#04x}",
                h.tag
            )));
        }
        Ok(h)
    }

    /// Opens a constructed element: reads its header and returns where it ends.
    pub(crate) fn open(&mut self, tag: u8, what: &str) -> Result<End> {
        let h = self.expect_header(tag, what)?;
        self.end_of(h, what)
    }

    /// Where the element whose header `h` was just read ends.
    pub(crate) fn end_of(&self, h: Header, what: &str) -> Result<End> {
        match h.len {
            Some(l) => self.pos.checked_add(l).map(End::At).ok_or_else(|| {
                self.err(format!(
                    "{what}: length {l} at offset {} goes past the largest possible file",
                    self.pos
                ))
            }),
            None => Ok(End::Eoc),
        }
    }

    /// True (and the end-of-contents consumed) if the element ending at `end` is finished.
    pub(crate) fn at_end(&mut self, end: End) -> Result<bool> {
        match end {
            End::At(p) if self.pos == p => Ok(true),
            End::At(p) if self.pos > p => Err(self.err("element overruns its container")),
            End::At(_) => Ok(false),
            End::Eoc => {
                if self.fill(2)? >= 2 && self.buf[self.start..self.start + 2] == EOC {
                    self.start += 2;
                    self.pos += 2;
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
        }
    }

    /// Requires the element to be finished here.
    pub(crate) fn close(&mut self, end: End, what: &str) -> Result<()> {
        if self.at_end(end)? {
            Ok(())
        } else {
            Err(self.err(format!("unexpected data at end of {what}")))
        }
    }

    /// Reads the content of a primitive element of known length into memory (bounded).
    pub(crate) fn read_value(&mut self, h: Header, what: &str) -> Result<Vec<u8>> {
        let len = h
            .len
            .ok_or_else(|| self.err(format!("{what}: indefinite length")))?;
        if len > MAX_ELEMENT as u64 {
            return Err(self.err(format!("{what} too large ({len} bytes)")));
        }
        let mut v = vec![0u8; len as usize];
        self.read_exact(&mut v)?;
        Ok(v)
    }

    /// Reads an OBJECT IDENTIFIER's content bytes.
    pub(crate) fn read_oid(&mut self, what: &str) -> Result<Vec<u8>> {
        let h = self.expect_header(tag::OID, what)?;
        if h.len.is_some_and(|l| l > 64) {
            return Err(self.err(format!("{what}: object identifier too long")));
        }
        self.read_value(h, what)
    }

    /// Reads a whole element (header included) into memory, bounded by [`MAX_ELEMENT`].
    /// Indefinite lengths are kept as they are; parse the result with [`parse`].
    pub(crate) fn read_element(&mut self, what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.copy_element(&mut out, what, 0)?;
        Ok(out)
    }

    fn copy_element(&mut self, out: &mut Vec<u8>, what: &str, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("{what}: nesting too deep")));
        }
        let at = self.pos;
        let h = self.header()?;
        match h.len {
            Some(l) => {
                let len = usize::try_from(l)
                    .ok()
                    .filter(|len| out.len().saturating_add(*len) <= MAX_ELEMENT)
                    .ok_or_else(|| {
                        self.err(format!(
                            "{what}: element at offset {at} has length {l}, more than the \
                             {MAX_ELEMENT} octets a structure read into memory may have"
                        ))
                    })?;
                put_header(out, h.tag, len);
                let start = out.len();
                out.resize(start + len, 0);
                self.read_exact(&mut out[start..])?;
            }
            None => {
                out.push(h.tag);
                out.push(0x80);
                loop {
                    if self.at_end(End::Eoc)? {
                        out.extend_from_slice(&EOC);
                        break;
                    }
                    self.copy_element(out, what, depth + 1)?;
                    if out.len() > MAX_ELEMENT {
                        return Err(self.err(format!(
                            "{what}: more than the {MAX_ELEMENT} octets a structure read into \
                             memory may have"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Skips a whole element (of any size) without keeping it.
    pub(crate) fn skip_element(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        let h = self.header()?;
        match h.len {
            Some(mut l) => {
                let mut scratch = [0u8; 512];
                while l > 0 {
                    let n = (l as usize).min(scratch.len());
                    self.read_exact(&mut scratch[..n])?;
                    l -= n as u64;
                }
            }
            None => {
                while !self.at_end(End::Eoc)? {
                    self.skip_element(depth + 1)?;
                }
            }
        }
        Ok(())
    }

    /// True if the stream has no more bytes.
    pub(crate) fn at_eof(&mut self) -> Result<bool> {
        Ok(self.peek_byte()?.is_none())
    }
}

/// Streams the value of an OCTET STRING (primitive, or BER constructed with nested segments)
/// whose header has already been read.
pub(crate) struct OctetStream {
    /// Open constructed segments.
    stack: Vec<End>,
    /// Bytes left in the current primitive segment.
    remaining: u64,
    done: bool,
}

impl OctetStream {
    /// Starts with a header whose tag is `primitive_tag` or `constructed_tag`.
    pub(crate) fn start<R: Read>(
        r: &mut StreamReader<R>,
        h: Header,
        primitive_tag: u8,
        constructed_tag: u8,
    ) -> Result<Self> {
        if h.tag == primitive_tag {
            let len = h
                .len
                .ok_or_else(|| Error::malformed(r.layer(), "indefinite primitive string"))?;
            Ok(OctetStream {
                stack: Vec::new(),
                remaining: len,
                done: len == 0,
            })
        } else if h.tag == constructed_tag {
            Ok(OctetStream {
                stack: vec![r.end_of(h, "octet string")?],
                remaining: 0,
                done: false,
            })
        } else {
            Err(Error::malformed(
                r.layer(),
                format!("expected an octet string, found tag {:#04x}", h.tag),
            ))
        }
    }

    /// Reads content bytes; `Ok(0)` at the end of the string.
    pub(crate) fn read<R: Read>(
        &mut self,
        r: &mut StreamReader<R>,
        out: &mut [u8],
    ) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            if self.remaining > 0 {
                let want = (self.remaining.min(out.len() as u64)) as usize;
                let n = r.read_some(&mut out[..want])?;
                if n == 0 {
                    return Err(Error::malformed(r.layer(), "content truncated"));
                }
                self.remaining -= n as u64;
                if self.remaining == 0 && self.stack.is_empty() {
                    self.done = true;
                }
                return Ok(n);
            }
            let Some(&top) = self.stack.last() else {
                self.done = true;
                return Ok(0);
            };
            if r.at_end(top)? {
                self.stack.pop();
                if self.stack.is_empty() {
                    self.done = true;
                }
                continue;
            }
            let h = r.header()?;
            match h.tag {
                tag::OCTET_STRING => {
                    self.remaining = h
                        .len
                        .ok_or_else(|| Error::malformed(r.layer(), "bad segment length"))?;
                }
                tag::OCTET_STRING_C => {
                    if self.stack.len() > MAX_DEPTH {
                        return Err(Error::malformed(r.layer(), "string nesting too deep"));
                    }
                    self.stack.push(r.end_of(h, "octet string segment")?);
                }
                t => {
                    return Err(Error::malformed(
                        r.layer(),
                        format!("unexpected tag {t:#04x} inside an octet string"),
                    ));
                }
            }
        }
    }
}

/// Writes a constructed, indefinite-length OCTET STRING as a sequence of definite-length
/// segments of at most `chunk` bytes (the form `openssl cms -stream` produces).
pub(crate) struct SegmentWriter<W> {
    pub(crate) inner: W,
    buf: Vec<u8>,
    chunk: usize,
}

impl<W: std::io::Write> SegmentWriter<W> {
    pub(crate) fn new(inner: W, chunk: usize) -> Self {
        SegmentWriter {
            inner,
            buf: Vec::with_capacity(chunk),
            chunk,
        }
    }

    fn emit(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut h = Vec::with_capacity(6);
        put_header(&mut h, tag::OCTET_STRING, self.buf.len());
        self.inner.write_all(&h)?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Flushes the last segment (the caller writes the end-of-contents markers).
    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        self.emit()?;
        Ok(self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for SegmentWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(self.chunk - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk {
            self.emit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a dotted OID, to check the constants above.
    fn encode_oid(dotted: &str) -> Vec<u8> {
        let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
        let mut out = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &a in &arcs[2..] {
            let mut tmp = vec![(a & 0x7F) as u8];
            let mut v = a >> 7;
            while v > 0 {
                tmp.push(0x80 | (v & 0x7F) as u8);
                v >>= 7;
            }
            tmp.reverse();
            out.extend(tmp);
        }
        out
    }

    #[test]
    fn oid_constants_match_dotted_forms() {
        let table: &[(&[u8], &str)] = &[
            (oid::DATA, "1.2.840.113549.1.7.1"),
            (oid::SIGNED_DATA, "1.2.840.113549.1.7.2"),
            (oid::ENVELOPED_DATA, "1.2.840.113549.1.7.3"),
            (oid::COMPRESSED_DATA, "1.2.840.113549.1.9.16.1.9"),
            (oid::ZLIB, "1.2.840.113549.1.9.16.3.8"),
            (oid::ATTR_CONTENT_TYPE, "1.2.840.113549.1.9.3"),
            (oid::ATTR_MESSAGE_DIGEST, "1.2.840.113549.1.9.4"),
            (oid::ATTR_SIGNING_TIME, "1.2.840.113549.1.9.5"),
            (oid::RSA_ENCRYPTION, "1.2.840.113549.1.1.1"),
            (oid::SHA1_WITH_RSA, "1.2.840.113549.1.1.5"),
            (oid::SHA256_WITH_RSA, "1.2.840.113549.1.1.11"),
            (oid::SHA384_WITH_RSA, "1.2.840.113549.1.1.12"),
            (oid::SHA512_WITH_RSA, "1.2.840.113549.1.1.13"),
            (oid::SHA1, "1.3.14.3.2.26"),
            (oid::SHA256, "2.16.840.1.101.3.4.2.1"),
            (oid::SHA384, "2.16.840.1.101.3.4.2.2"),
            (oid::SHA512, "2.16.840.1.101.3.4.2.3"),
            (oid::DES_EDE3_CBC, "1.2.840.113549.3.7"),
            (oid::AES128_CBC, "2.16.840.1.101.3.4.1.2"),
            (oid::AES256_CBC, "2.16.840.1.101.3.4.1.42"),
        ];
        for (bytes, dotted) in table {
            assert_eq!(*bytes, encode_oid(dotted).as_slice(), "{dotted}");
        }
    }

    #[test]
    fn slice_parser_handles_indefinite_and_constructed_strings() {
        // SEQUENCE (indef) { OCTET STRING (constructed indef) { "ab", "c" }, INTEGER 5 }
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0x00, 0x00, 0x02,
            0x01, 0x05, 0x00, 0x00,
        ];
        let t = parse_one(&ber, Layer::Signed).unwrap();
        let mut c = t.children(Layer::Signed);
        assert_eq!(c.need("s").unwrap().octets(Layer::Signed).unwrap(), b"abc");
        assert_eq!(small_uint(&c.need("i").unwrap(), Layer::Signed).unwrap(), 5);
        assert!(c.next().is_none());
        let der = to_definite(&t, Layer::Signed).unwrap();
        assert_eq!(
            der,
            [0x30, 0x08, 0x04, 0x03, b'a', b'b', b'c', 0x02, 0x01, 0x05]
        );
        // Truncations are errors, never panics.
        for i in 0..ber.len() {
            assert!(parse_one(&ber[..i], Layer::Signed).is_err());
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // 2 000 nested definite-length SEQUENCEs / constructed strings.
        for (outer, inner) in [
            (tag::SEQUENCE, 0x05u8),
            (tag::OCTET_STRING_C, tag::OCTET_STRING),
        ] {
            let mut enc = vec![inner, 0];
            for _ in 0..2_000 {
                enc = tlv(outer, &enc);
            }
            let t = parse_one(&enc, Layer::Signed).unwrap();
            assert!(to_definite(&t, Layer::Signed).is_err());
            if outer == tag::OCTET_STRING_C {
                assert!(t.octets(Layer::Signed).is_err());
            }
        }
        // Indefinite nesting is bounded while parsing.
        let mut ber = Vec::new();
        for _ in 0..1000 {
            ber.extend_from_slice(&[0x30, 0x80]);
        }
        ber.extend(std::iter::repeat_n(0u8, 2000));
        assert!(parse_one(&ber, Layer::Signed).is_err());
    }

    #[test]
    fn eight_octet_lengths_that_overflow_are_errors_not_panics() {
        let all_ones = |tag: u8| {
            let mut v = vec![tag, 0x88];
            v.extend_from_slice(&[0xFF; 8]);
            v.extend_from_slice(&[0; 16]);
            v
        };
        // Read into memory: the cap check must not wrap.
        let set = all_ones(tag::SET);
        let e = StreamReader::new(&set[..], Layer::Signed)
            .read_element("digestAlgorithms")
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("digestAlgorithms") && text.contains(&u64::MAX.to_string()),
            "{text}"
        );
        assert_eq!(e.efna_reason(), 21);
        // Opened on the stream: the end position must not saturate or wrap.
        let seq = all_ones(tag::SEQUENCE);
        let mut r = StreamReader::new(&seq[..], Layer::Enveloped);
        assert_eq!(
            r.open(tag::SEQUENCE, "EnvelopedData")
                .unwrap_err()
                .efna_reason(),
            22
        );
        let ostr = all_ones(tag::OCTET_STRING_C);
        let mut r = StreamReader::new(&ostr[..], Layer::Compressed);
        let h = r.header().unwrap();
        assert!(OctetStream::start(&mut r, h, tag::OCTET_STRING, tag::OCTET_STRING_C).is_err());
        // The slice parser refuses more than four length octets.
        assert!(parse_one(&set, Layer::Signed).is_err());
    }

    #[test]
    fn long_lengths_roundtrip() {
        let content = vec![7u8; 70000];
        let enc = tlv(tag::OCTET_STRING, &content);
        assert_eq!(&enc[..5], &[0x04, 0x83, 0x01, 0x11, 0x70]);
        let t = parse_one(&enc, Layer::Signed).unwrap();
        assert_eq!(t.content.len(), 70000);
    }

    #[test]
    fn octet_stream_reads_segments_across_small_reads() {
        let ber = [
            0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x24, 0x80, 0x04, 0x01, b'c', 0x00, 0x00, 0x00,
            0x00, 0xFF,
        ];
        let mut r = StreamReader::new(&ber[..], Layer::Compressed);
        let h = r.header().unwrap();
        let mut s = OctetStream::start(&mut r, h, tag::OCTET_STRING, tag::OCTET_STRING_C).unwrap();
        let mut got = Vec::new();
        let mut one = [0u8; 1];
        loop {
            let n = s.read(&mut r, &mut one).unwrap();
            if n == 0 {
                break;
            }
            got.push(one[0]);
        }
        assert_eq!(got, b"abc");
        assert_eq!(r.peek_byte().unwrap(), Some(0xFF));
    }

    #[test]
    fn segment_writer_splits() {
        use std::io::Write;
        let mut w = SegmentWriter::new(Vec::new(), 4);
        w.write_all(b"abcdefghij").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(
            out,
            [
                0x04, 4, b'a', b'b', b'c', b'd', 0x04, 4, b'e', b'f', b'g', b'h', 0x04, 2, b'i',
                b'j'
            ]
        );
    }
}
