//! OFTP send and receive pipelines: sign -> compress -> encrypt, and the reverse.
//!
//! The layers nest as RFC 5024 section 6.1 requires:
//! `EnvelopedData{ CompressedData{ SignedData{ file } } }`, each optional; the inner layer is a
//! complete ContentInfo carried as id-data content. Both pipelines stream: the send side is a
//! chain of `Write` adapters, the receive side a chain of `Read` adapters.

use std::io::{Read, Write};

use super::{
    CompressedDataReader, CompressedDataWriter, EnvelopedDataReader, EnvelopedDataWriter,
    SignedDataReader, SignedDataWriter, VerifiedSigner,
};
use crate::asn1::{oid, tag};
use crate::cert::{Certificate, Identity};
use crate::error::{Error, Layer, Result};
use crate::suite::CipherSuite;
use crate::validate::TrustPolicy;

/// What to apply when sending a file.
#[derive(Debug, Clone)]
pub struct SendOptions<'a> {
    suite: CipherSuite,
    sign: Vec<&'a Identity>,
    include_signer_certificate: bool,
    compress: Option<u32>,
    encrypt_for: Vec<&'a Certificate>,
}

impl<'a> SendOptions<'a> {
    /// No services yet; the suite selects the hash and cipher.
    pub fn new(suite: CipherSuite) -> Self {
        SendOptions {
            suite,
            sign: Vec::new(),
            include_signer_certificate: false,
            compress: None,
            encrypt_for: Vec::new(),
        }
    }

    /// Sign with our identity (SFIDSIGN = Y). Call twice to sign with the old and the new
    /// certificate during a changeover.
    pub fn sign(mut self, identity: &'a Identity) -> Self {
        self.sign.push(identity);
        self
    }

    /// Include our certificate in the signature (RFC 5024 recommends not to).
    pub fn include_signer_certificate(mut self, include: bool) -> Self {
        self.include_signer_certificate = include;
        self
    }

    /// Compress with zlib (SFIDCOMP = 1), level 6.
    pub fn compress(mut self) -> Self {
        self.compress = Some(6);
        self
    }

    /// Compress with a given zlib level (0-9).
    pub fn compress_level(mut self, level: u32) -> Self {
        self.compress = Some(level);
        self
    }

    /// Encrypt for the partner's certificate (SFIDCIPH = suite, SFIDENV = 1). Several
    /// recipients may be given (e.g. during the partner's certificate rollover).
    pub fn encrypt_for(mut self, recipient: &'a Certificate) -> Self {
        self.encrypt_for.push(recipient);
        self
    }

    /// Whether any service is enabled (otherwise the file travels unchanged, SFIDENV = 0).
    pub fn is_enveloped(&self) -> bool {
        !self.sign.is_empty() || self.compress.is_some() || !self.encrypt_for.is_empty()
    }
}

trait Stage<W>: Write {
    fn finish_stage(self: Box<Self>) -> Result<W>;
}

struct Terminal<W>(W);

impl<W: Write> Write for Terminal<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> Stage<W> for Terminal<W> {
    fn finish_stage(self: Box<Self>) -> Result<W> {
        let mut w = self.0;
        w.flush().map_err(Error::Io)?;
        Ok(w)
    }
}

type Inner<'a, W> = Box<dyn Stage<W> + Send + 'a>;

impl<'a, W: Write + Send> Stage<W> for SignedDataWriter<'a, Inner<'a, W>> {
    fn finish_stage(self: Box<Self>) -> Result<W> {
        (*self).finish()?.finish_stage()
    }
}

impl<'a, W: Write + Send> Stage<W> for CompressedDataWriter<Inner<'a, W>> {
    fn finish_stage(self: Box<Self>) -> Result<W> {
        (*self).finish()?.finish_stage()
    }
}

impl<'a, W: Write + Send> Stage<W> for EnvelopedDataWriter<Inner<'a, W>> {
    fn finish_stage(self: Box<Self>) -> Result<W> {
        (*self).finish()?.finish_stage()
    }
}

/// A streaming send pipeline: write the file into it, then call [`SendPipeline::finish`].
pub struct SendPipeline<'a, W: Write + 'a> {
    stage: Inner<'a, W>,
    bytes_in: u64,
}

impl<'a, W: Write + Send + 'a> SendPipeline<'a, W> {
    /// Builds the chain writing to `out`.
    pub fn new(out: W, options: &SendOptions<'a>) -> Result<Self> {
        let mut stage: Inner<'a, W> = Box::new(Terminal(out));
        if !options.encrypt_for.is_empty() {
            stage = Box::new(EnvelopedDataWriter::new(
                stage,
                &options.encrypt_for,
                options.suite.symmetric(),
            )?);
        }
        if let Some(level) = options.compress {
            stage = Box::new(CompressedDataWriter::with_level(stage, level)?);
        }
        if !options.sign.is_empty() {
            stage = Box::new(SignedDataWriter::with_signers(
                stage,
                &options.sign,
                options.suite.hash(),
                options.include_signer_certificate,
            )?);
        }
        Ok(SendPipeline { stage, bytes_in: 0 })
    }

    /// Closes every layer and returns the output (flushed; the caller fsyncs files).
    pub fn finish(self) -> Result<W> {
        self.stage.finish_stage()
    }

    /// Plaintext bytes written so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }
}

impl<'a, W: Write + Send + 'a> Write for SendPipeline<'a, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.stage.write(buf)?;
        self.bytes_in += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stage.flush()
    }
}

/// The outermost CMS type of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// EnvelopedData.
    Enveloped,
    /// CompressedData.
    Compressed,
    /// SignedData.
    Signed,
    /// Anything else (plain data).
    Plain,
}

/// Detects the CMS type from the first bytes of a stream (at least 20 bytes are needed for a
/// positive answer).
pub fn detect_content_kind(prefix: &[u8]) -> ContentKind {
    let Ok(oid) = sniff_oid(prefix) else {
        return ContentKind::Plain;
    };
    match oid {
        oid::ENVELOPED_DATA => ContentKind::Enveloped,
        oid::COMPRESSED_DATA => ContentKind::Compressed,
        oid::SIGNED_DATA => ContentKind::Signed,
        _ => ContentKind::Plain,
    }
}

fn sniff_oid(p: &[u8]) -> std::result::Result<&[u8], ()> {
    if p.first() != Some(&tag::SEQUENCE) {
        return Err(());
    }
    let l = *p.get(1).ok_or(())?;
    let at = match l {
        0x80 => 2,
        l if l < 0x80 => 2,
        l => 2 + (l & 0x7F) as usize,
    };
    if p.get(at) != Some(&tag::OID) {
        return Err(());
    }
    let ol = *p.get(at.checked_add(1).ok_or(())?).ok_or(())? as usize;
    let start = at.checked_add(2).ok_or(())?;
    p.get(start..start.checked_add(ol).ok_or(())?).ok_or(())
}

/// The stream a layer reads from.
type Source<'a> = Box<dyn Read + Send + 'a>;

/// Reads a prefix for sniffing and gives it back to the stream.
fn peek_kind<'a>(mut r: Source<'a>) -> Result<(ContentKind, Source<'a>)> {
    let mut prefix = Vec::with_capacity(32);
    let mut buf = [0u8; 32];
    while prefix.len() < 32 {
        let n = r
            .read(&mut buf[..32 - prefix.len()])
            .map_err(Error::from_io)?;
        if n == 0 {
            break;
        }
        prefix.extend_from_slice(&buf[..n]);
    }
    let kind = detect_content_kind(&prefix);
    Ok((kind, Box::new(std::io::Cursor::new(prefix).chain(r))))
}

/// What to expect and with which keys, when receiving a file.
#[derive(Debug, Clone, Default)]
pub struct ReceiveOptions<'a> {
    identity: Option<&'a Identity>,
    partners: Vec<&'a Certificate>,
    trust: Option<&'a TrustPolicy>,
    expect: Option<(bool, bool, bool)>,
}

impl<'a> ReceiveOptions<'a> {
    /// Layers are detected from the data. Detection is for inspection tools: a file whose
    /// layers were stripped or damaged (e.g. a corrupted IV hides the inner layers) is then
    /// delivered as plain data. For OFTP transfers call [`ReceiveOptions::expect`] with the
    /// SFID flags, and accept the file only if [`ReceiveReport::signer`] is what you require.
    pub fn new() -> Self {
        ReceiveOptions::default()
    }

    /// Our identity, to decrypt.
    pub fn identity(mut self, identity: &'a Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The partner's certificate, to verify signatures. Call twice to accept the partner's
    /// old and new certificate during a rollover.
    pub fn partner(mut self, cert: &'a Certificate) -> Self {
        self.partners.push(cert);
        self
    }

    /// Without a partner certificate, accept a signer certificate included in the file if it
    /// passes this policy.
    pub fn trust(mut self, policy: &'a TrustPolicy) -> Self {
        self.trust = Some(policy);
        self
    }

    /// Requires exactly the layers the SFID announced (SFIDCIPH != 0, SFIDCOMP = 1,
    /// SFIDSIGN = Y) instead of detecting them. A missing layer fails with that layer's
    /// reason code; an unannounced layer is left in the output.
    pub fn expect(mut self, encrypted: bool, compressed: bool, signed: bool) -> Self {
        self.expect = Some((encrypted, compressed, signed));
        self
    }
}

/// What the receive pipeline found.
#[derive(Debug, Clone)]
pub struct ReceiveReport {
    /// Layers removed, outermost first.
    pub layers: Vec<ContentKind>,
    /// The verified signer, if the file was signed.
    pub signer: Option<VerifiedSigner>,
    /// Plaintext bytes delivered through `read`.
    pub bytes_out: u64,
    /// Plaintext bytes `finish` had to read and discard because the caller stopped early
    /// (0 when the output is complete).
    pub bytes_discarded: u64,
}

enum Top<'a> {
    Plain(Source<'a>),
    Signed(Box<SignedDataReader<Source<'a>>>),
}

/// A streaming receive pipeline: read the plaintext, then call [`ReceivePipeline::finish`]
/// before trusting it (the signature is checked at the end of the data).
pub struct ReceivePipeline<'a> {
    top: Top<'a>,
    layers: Vec<ContentKind>,
    partners: Vec<&'a Certificate>,
    trust: Option<&'a TrustPolicy>,
    bytes_out: u64,
}

impl<'a> ReceivePipeline<'a> {
    /// Opens the layers of `input`.
    pub fn new<R: Read + Send + 'a>(input: R, options: &ReceiveOptions<'a>) -> Result<Self> {
        let mut cur: Source<'a> = Box::new(input);
        let mut layers = Vec::new();
        let wanted = |k: ContentKind| match (options.expect, k) {
            (None, _) => true,
            (Some((e, _, _)), ContentKind::Enveloped) => e,
            (Some((_, c, _)), ContentKind::Compressed) => c,
            (Some((_, _, s)), ContentKind::Signed) => s,
            (Some(_), ContentKind::Plain) => false,
        };
        let order = [
            ContentKind::Enveloped,
            ContentKind::Compressed,
            ContentKind::Signed,
        ];
        let mut next = 0;
        loop {
            let (kind, r) = peek_kind(cur)?;
            cur = r;
            // Skip expected-but-absent layers only when detecting; when expecting, a missing
            // layer is an error of that layer.
            if options.expect.is_some() {
                while next < order.len() && !wanted(order[next]) {
                    next += 1;
                }
                if next < order.len() && kind != order[next] {
                    let layer = match order[next] {
                        ContentKind::Enveloped => Layer::Enveloped,
                        ContentKind::Compressed => Layer::Compressed,
                        _ => Layer::Signed,
                    };
                    return Err(Error::malformed(
                        layer,
                        format!(
                            "the start file announced {:?} content, but the data is {kind:?}",
                            order[next]
                        ),
                    ));
                }
                if next >= order.len() {
                    return Ok(Self::plain(cur, layers, options));
                }
            } else {
                match order[next..].iter().position(|k| *k == kind) {
                    Some(p) => next += p,
                    None => return Ok(Self::plain(cur, layers, options)),
                }
            }
            next += 1;
            tracing::debug!(?kind, "opening CMS layer");
            layers.push(kind);
            match kind {
                ContentKind::Enveloped => {
                    let id = options.identity.ok_or_else(|| {
                        Error::Decryption("the file is encrypted but no identity (certificate with private key) is configured for decryption".into())
                    })?;
                    cur = Box::new(EnvelopedDataReader::new(cur, id)?);
                }
                ContentKind::Compressed => cur = Box::new(CompressedDataReader::new(cur)?),
                ContentKind::Signed => {
                    return Ok(ReceivePipeline {
                        top: Top::Signed(Box::new(SignedDataReader::new(cur)?)),
                        layers,
                        partners: options.partners.clone(),
                        trust: options.trust,
                        bytes_out: 0,
                    });
                }
                ContentKind::Plain => return Ok(Self::plain(cur, layers, options)),
            }
        }
    }

    fn plain(cur: Source<'a>, layers: Vec<ContentKind>, o: &ReceiveOptions<'a>) -> Self {
        ReceivePipeline {
            top: Top::Plain(cur),
            layers,
            partners: o.partners.clone(),
            trust: o.trust,
            bytes_out: 0,
        }
    }

    /// Layers found so far (outermost first).
    pub fn layers(&self) -> &[ContentKind] {
        &self.layers
    }

    /// Reads the rest, checks every trailer and the signature. Call it before accepting the
    /// file (EFPA/EERP); its error tells which EFNA/NERP reason applies.
    pub fn finish(mut self) -> Result<ReceiveReport> {
        let mut sink = vec![0u8; 8192];
        let mut discarded = 0u64;
        loop {
            let n = match &mut self.top {
                Top::Plain(r) => r.read(&mut sink),
                Top::Signed(r) => r.read(&mut sink),
            }
            .map_err(Error::from_io)?;
            if n == 0 {
                break;
            }
            discarded += n as u64;
        }
        if discarded > 0 {
            tracing::warn!(
                discarded,
                "receive pipeline finished before the content was read"
            );
        }
        let signer = match self.top {
            Top::Plain(_) => None,
            Top::Signed(r) => {
                let v = (*r).verify_any(&self.partners)?;
                if v.certificate_from_message {
                    match self.trust {
                        Some(policy) => {
                            policy.validate(&v.certificate, &[], std::time::SystemTime::now())?
                        }
                        None => {
                            return Err(Error::InvalidSignature(
                                "the signer certificate came with the file and no partner \
                                 certificate or trust policy is configured"
                                    .into(),
                            ));
                        }
                    }
                }
                Some(v)
            }
        };
        Ok(ReceiveReport {
            layers: self.layers,
            signer,
            bytes_out: self.bytes_out,
            bytes_discarded: discarded,
        })
    }
}

impl Read for ReceivePipeline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match &mut self.top {
            Top::Plain(r) => r.read(buf)?,
            Top::Signed(r) => r.read(buf)?,
        };
        self.bytes_out += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::tests::rcgen_identity;

    #[test]
    fn all_combinations_roundtrip() {
        let (me, _, _) = rcgen_identity("Me");
        let (partner, _, _) = rcgen_identity("Partner");
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 7 + i / 1000) as u8).collect();
        for suite in CipherSuite::ALL {
            for mask in 0..8u8 {
                let (s, c, e) = (mask & 1 != 0, mask & 2 != 0, mask & 4 != 0);
                let mut so = SendOptions::new(suite);
                if s {
                    so = so.sign(&me);
                }
                if c {
                    so = so.compress();
                }
                if e {
                    so = so.encrypt_for(partner.certificate());
                }
                let mut p = SendPipeline::new(Vec::new(), &so).unwrap();
                p.write_all(&data).unwrap();
                let wire = p.finish().unwrap();
                if mask == 0 {
                    assert_eq!(wire, data);
                }
                for expect in [false, true] {
                    let mut ro = ReceiveOptions::new()
                        .identity(&partner)
                        .partner(me.certificate());
                    if expect {
                        ro = ro.expect(e, c, s);
                    }
                    let mut rp = ReceivePipeline::new(&wire[..], &ro).unwrap();
                    let mut got = Vec::new();
                    rp.read_to_end(&mut got).unwrap();
                    let report = rp.finish().unwrap();
                    assert_eq!(got, data, "suite {suite} mask {mask}");
                    assert_eq!(report.signer.is_some(), s);
                    assert_eq!(report.layers.len(), mask.count_ones() as usize);
                }
            }
        }
    }

    #[test]
    fn thread_safety_and_early_finish() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Identity>();
        send_sync::<Certificate>();
        send_sync::<TrustPolicy>();
        send::<SendPipeline<'static, Vec<u8>>>();
        send::<ReceivePipeline<'static>>();

        let (me, _, _) = rcgen_identity("Me");
        let so = SendOptions::new(CipherSuite::Aes256RsaSha512).sign(&me);
        let mut p = SendPipeline::new(Vec::new(), &so).unwrap();
        p.write_all(&[5u8; 10_000]).unwrap();
        let wire = p.finish().unwrap();
        let ro = ReceiveOptions::new().partner(me.certificate());
        let mut rp = ReceivePipeline::new(&wire[..], &ro).unwrap();
        let mut first = [0u8; 100];
        rp.read_exact(&mut first).unwrap();
        let report = rp.finish().unwrap();
        assert_eq!((report.bytes_out, report.bytes_discarded), (100, 9_900));
    }

    #[test]
    fn expectation_mismatch_names_the_layer() {
        let (me, _, _) = rcgen_identity("Me");
        let so = SendOptions::new(CipherSuite::Aes256RsaSha256).compress();
        let mut p = SendPipeline::new(Vec::new(), &so).unwrap();
        p.write_all(b"abc").unwrap();
        let wire = p.finish().unwrap();
        let ro = ReceiveOptions::new()
            .identity(&me)
            .expect(true, true, false);
        let e = ReceivePipeline::new(&wire[..], &ro).err().unwrap();
        assert_eq!(e.efna_reason(), 22, "{e}");
        // The compressed layer unwraps; then the announced signed layer is missing.
        let ro = ReceiveOptions::new().expect(false, true, true);
        let e = ReceivePipeline::new(&wire[..], &ro).err().unwrap();
        assert_eq!(e.efna_reason(), 21, "{e}");
        // Detection mode just unwraps what is there.
        let mut rp = ReceivePipeline::new(&wire[..], &ReceiveOptions::new()).unwrap();
        let mut got = Vec::new();
        rp.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"abc");
        assert_eq!(rp.finish().unwrap().layers, [ContentKind::Compressed]);
        let _ = me;
    }
}
