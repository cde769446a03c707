//! CMS CompressedData (RFC 3274) with zlib, streaming in both directions.
//!
//! `flate2` does the (de)compression with bounded buffers; the decompressed size is not
//! limited here because nothing is held in memory (the caller's storage quota applies).

use std::io::{Read, Write};

use flate2::{Compression, Decompress, FlushDecompress, Status};

use super::{SEGMENT, expect_eof, open_econtent, open_versioned};
use crate::asn1::{self, End, OctetStream, StreamReader, oid, tag};
use crate::error::{Error, Layer, Result};

const L: Layer = Layer::Compressed;

/// Streaming CompressedData encoder.
pub struct CompressedDataWriter<W: Write> {
    z: Option<flate2::write::ZlibEncoder<asn1::SegmentWriter<W>>>,
}

impl<W: Write> CompressedDataWriter<W> {
    /// Starts a CompressedData on `out` (zlib level 6).
    pub fn new(out: W) -> Result<Self> {
        CompressedDataWriter::with_level(out, 6)
    }

    /// Starts a CompressedData with a zlib level 0-9.
    pub fn with_level(mut out: W, level: u32) -> Result<Self> {
        let mut start = || -> std::io::Result<()> {
            super::write_content_info_start(&mut out, oid::COMPRESSED_DATA)?;
            out.write_all(&[tag::SEQUENCE, 0x80])?;
            out.write_all(&asn1::small_int(0))?;
            // RFC 3274: the zlib AlgorithmIdentifier has absent parameters.
            out.write_all(&asn1::seq(&[&asn1::oid_tlv(oid::ZLIB)]))?;
            super::write_econtent_start(&mut out)
        };
        start().map_err(Error::Io)?;
        let seg = asn1::SegmentWriter::new(out, SEGMENT);
        Ok(CompressedDataWriter {
            z: Some(flate2::write::ZlibEncoder::new(
                seg,
                Compression::new(level.min(9)),
            )),
        })
    }

    /// Ends the zlib stream and the structure; returns the output.
    pub fn finish(mut self) -> Result<W> {
        let z = self
            .z
            .take()
            .ok_or_else(|| Error::Crypto("compressed data writer already finished".into()))?;
        let seg = z.finish().map_err(Error::Io)?;
        let mut out = seg.finish().map_err(Error::Io)?;
        // OCTET STRING, [0], EncapsulatedContentInfo, CompressedData, [0], ContentInfo
        super::write_eocs(&mut out, 6).map_err(Error::Io)?;
        Ok(out)
    }
}

impl<W: Write> Write for CompressedDataWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.z.as_mut() {
            Some(z) => z.write(buf),
            None => Err(std::io::Error::other("compressed data writer finished")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        // A zlib sync flush would cost compression ratio; data is flushed at finish.
        Ok(())
    }
}

/// Streaming CompressedData decoder yielding the decompressed content.
pub struct CompressedDataReader<R: Read> {
    r: StreamReader<R>,
    ends: [End; 5], // e0, eci, cd, c0, ci
    stream: OctetStream,
    z: Decompress,
    inbuf: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    input_done: bool,
    finished: bool,
}

impl<R: Read> CompressedDataReader<R> {
    /// Parses the CompressedData header from `input`.
    pub fn new(input: R) -> Result<Self> {
        let mut r = StreamReader::new(input, L);
        let [ci, c0, cd] = open_versioned(&mut r, oid::COMPRESSED_DATA, "CompressedData", 0)?;
        let alg_raw = r.read_element("compressionAlgorithm")?;
        let alg = asn1::parse_one(&alg_raw, L)?;
        let alg_oid = alg.children(L).need("compression algorithm")?;
        if alg_oid.content != oid::ZLIB {
            return Err(Error::malformed(
                L,
                "unsupported compression algorithm (only zlib is defined)",
            ));
        }
        let (eci, _ect, content) = open_econtent(&mut r)?;
        let (e0, stream) =
            content.ok_or_else(|| Error::malformed(L, "CompressedData without content"))?;
        Ok(CompressedDataReader {
            r,
            ends: [e0, eci, cd, c0, ci],
            stream,
            z: Decompress::new(true),
            inbuf: vec![0u8; SEGMENT].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            input_done: false,
            finished: false,
        })
    }

    fn step(&mut self, out: &mut [u8]) -> Result<usize> {
        if self.finished || out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_start == self.in_end && !self.input_done {
                let n = self.stream.read(&mut self.r, &mut self.inbuf)?;
                if n == 0 {
                    self.input_done = true;
                } else {
                    self.in_start = 0;
                    self.in_end = n;
                }
            }
            let before_in = self.z.total_in();
            let before_out = self.z.total_out();
            let flush = if self.input_done {
                FlushDecompress::Finish
            } else {
                FlushDecompress::None
            };
            let status = self
                .z
                .decompress(&self.inbuf[self.in_start..self.in_end], out, flush)
                .map_err(|e| Error::Decompression(format!("corrupt zlib data: {e}")))?;
            let consumed = (self.z.total_in() - before_in) as usize;
            let produced = (self.z.total_out() - before_out) as usize;
            self.in_start += consumed;
            if status == Status::StreamEnd {
                self.finish_structure()?;
                return Ok(produced);
            }
            if produced > 0 {
                return Ok(produced);
            }
            if self.input_done && consumed == 0 {
                return Err(Error::Decompression("zlib stream is truncated".into()));
            }
        }
    }

    fn finish_structure(&mut self) -> Result<()> {
        let mut probe = [0u8; 1];
        if self.in_start != self.in_end
            || (!self.input_done && self.stream.read(&mut self.r, &mut probe)? > 0)
        {
            return Err(Error::Decompression(
                "data after the end of the zlib stream".into(),
            ));
        }
        let names = [
            "eContent",
            "EncapsulatedContentInfo",
            "CompressedData",
            "ContentInfo content",
            "ContentInfo",
        ];
        for (end, name) in self.ends.into_iter().zip(names) {
            self.r.close(end, name)?;
        }
        expect_eof(&mut self.r, "CompressedData")?;
        self.finished = true;
        Ok(())
    }
}

impl<R: Read> Read for CompressedDataReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step(buf).map_err(Error::into_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(data: &[u8]) -> Vec<u8> {
        let mut w = CompressedDataWriter::new(Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn decompress(cms: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        CompressedDataReader::new(cms)?
            .read_to_end(&mut out)
            .map_err(Error::from_io)?;
        Ok(out)
    }

    #[test]
    fn roundtrip_sizes() {
        for len in [
            0usize,
            1,
            100,
            SEGMENT - 1,
            SEGMENT,
            3 * SEGMENT + 17,
            300_000,
        ] {
            let data: Vec<u8> = (0..len)
                .map(|i| (i % 251) as u8 ^ (i / 977) as u8)
                .collect();
            assert_eq!(decompress(&compress(&data)).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn corruption_maps_to_decompression_failure() {
        let data = vec![42u8; 10_000];
        let cms = compress(&data);
        // Flip a byte inside the zlib stream (after the ~40-byte header).
        let mut bad = cms.clone();
        let i = bad.len() - 20;
        bad[i] ^= 0x55;
        let e = decompress(&bad).unwrap_err();
        assert_eq!(e.efna_reason(), 23, "{e}");
        for i in (0..cms.len()).step_by(3) {
            assert!(decompress(&cms[..i]).is_err(), "truncated at {i}");
        }
    }
}
