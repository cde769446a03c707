//! Files we send: the SFID's service fields from the destination partner's policy and the
//! processing sign -> compress -> encrypt (RFC 5024 section 6), either while the file is sent
//! ([`SecurityContext::plan`], the runtime's way: a [`Seal`] that streams, constant memory,
//! signing and encrypting on two threads when both apply) or into a processed copy in the work
//! directory ([`SecurityContext::prepare`], for tools; written through `durable-write`, so a
//! failure leaves no partial copy). F/V records are read in the destination's record mapping.
//! Files that are not from us pass through unchanged.
//!
//! Not here: sending the bytes, restart positions and the SFIDFSIZ sent (the connection
//! driver), CMS itself (`oftp_security::cms`).
//!
//! [`Seal`]: crate::transport::Seal

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oftp_proto::codec::{
    CipherSuite as WireSuite, FileCompression, FileEnvelope, FileFormat, SecurityLevel, Sfid,
};
use oftp_security::cms::SendOptions;
use oftp_security::cms::SendPipeline;
use oftp_security::vformat::RecordWriter;
use oftp_security::{Certificate, CertificateUse, CipherSuite, IdentitySet};

use super::Hashing;
use super::config::FileSecurity;
use super::context::{PartnerCertUse, SecurityContext};
use crate::config::RecordMapping;
use crate::transport::OutgoingPlan;

impl SecurityContext {
    /// Prepares an outgoing file: fills the SFID's service fields from the destination
    /// partner's policy and writes the processed copy (sign -> compress -> encrypt) into the
    /// work directory, with the exact SFIDFSIZ. `None` transmits the source itself. The
    /// runtime does not use this (it streams, see [`plan`](Self::plan)); it is for tools that
    /// want the processed file.
    pub fn prepare(&self, sfid: &mut Sfid, source: &Path) -> io::Result<Prepared> {
        let seal = match self.plan(sfid, source)? {
            OutgoingPlan::AsIs { file_hash } => {
                return Ok(Prepared {
                    transmit: None,
                    file_hash,
                });
            }
            OutgoingPlan::Processed(seal) => seal,
        };
        let target = self.work_dir.join(copy_name(sfid, source));
        // Through `durable-write` like every file we write: a failed seal leaves no partial
        // copy. (The copy is transient, a new attempt makes a new one, so its fsync protects
        // little; it is not on the runtime's path, which streams.)
        let file_hash =
            durable_write::write_with(&target, &durable_write::Options::default(), |file| {
                let mut out = BufWriter::with_capacity(64 * 1024, file);
                let file_hash = seal(&mut out)?;
                out.flush()?;
                Ok(file_hash)
            })?;
        sfid.file_size = oftp_proto::data::size_in_kib(std::fs::metadata(&target)?.len());
        Ok(Prepared {
            transmit: Some(target),
            file_hash,
        })
    }

    /// Decides how an outgoing file is transmitted: fills the SFID's service fields from the
    /// destination partner's policy and, when services apply, returns the [`Seal`] that
    /// produces the processed form (sign -> compress -> encrypt) while it is sent. SFIDFSIZ is
    /// then an upper estimate (RFC 5024 5.3.3: "a good estimate"), since the size of a
    /// compressed file is known only at its end. Certificates and keys are checked here, so a
    /// file that cannot be processed is never offered.
    ///
    /// [`Seal`]: crate::transport::Seal
    pub fn plan(&self, sfid: &mut Sfid, source: &Path) -> io::Result<OutgoingPlan> {
        let none = |sfid: &mut Sfid| {
            sfid.security = SecurityLevel::NONE;
            sfid.compression = FileCompression::NONE;
            sfid.envelope = FileEnvelope::NONE;
        };
        let partner = self.partner_by_sfid(&sfid.destination);
        let send = partner.map(|p| p.config.send.clone()).unwrap_or_default();
        if !self.is_local(&sfid.originator) {
            // Intermediary: not ours to sign or encrypt.
            none(sfid);
            sfid.cipher_suite = WireSuite::NONE;
            sfid.signed_eerp = false;
            return Ok(OutgoingPlan::AsIs { file_hash: None });
        }
        let invalid = |t: String| io::Error::new(io::ErrorKind::InvalidInput, t);
        let services = send.security != FileSecurity::None || send.compress;
        let suite = if services || send.signed_receipt {
            Some(CipherSuite::from_code(send.cipher_suite).map_err(|e| invalid(e.to_string()))?)
        } else {
            None
        };
        sfid.cipher_suite = WireSuite(suite.map_or(0, CipherSuite::code));
        sfid.signed_eerp = send.signed_receipt;
        if !services {
            none(sfid);
            let file_hash = match suite {
                Some(s) => Some(hash_file(Some(s), source)?),
                None => None,
            };
            return Ok(OutgoingPlan::AsIs { file_hash });
        }
        let suite = suite.ok_or_else(|| invalid("no cipher suite".into()))?;
        let partner = partner.ok_or_else(|| {
            invalid(format!(
                "no security settings for destination {}",
                sfid.destination
            ))
        })?;
        let sign = send.security.signed();
        if sign && self.identity(CertificateUse::Signing).is_none() {
            return Err(invalid(
                "files are to be signed but no signing key is configured".into(),
            ));
        }
        let recipient = if send.security.encrypted() {
            Some(
                self.partner_cert(partner, PartnerCertUse::Encryption)
                    .map_err(|e| invalid(e.to_string()))?,
            )
        } else {
            None
        };
        sfid.security = send.security.wire();
        sfid.compression = if send.compress {
            FileCompression::ZLIB
        } else {
            FileCompression::NONE
        };
        sfid.envelope = FileEnvelope::CMS;
        // A processed form differs at every attempt (fresh content-encryption key), so it is
        // sent from position 0.
        sfid.restart_position = 0;
        let original = std::fs::metadata(source)?.len();
        sfid.file_size = oftp_proto::data::size_in_kib(processed_size_estimate(original));
        let job = SealJob {
            identities: self.identities.clone(),
            sign,
            recipient,
            suite,
            compress: send.compress,
            format: sfid.format,
            mapping: self.record_mapping(&sfid.destination),
            source: source.to_owned(),
            hash: sfid.signed_eerp,
        };
        Ok(OutgoingPlan::Processed(Box::new(move |out| job.run(out))))
    }
}

/// An outgoing file after [`SecurityContext::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The processed copy to transmit instead of the source, if services apply.
    pub transmit: Option<PathBuf>,
    /// Hash of the transmitted bytes with the suite's algorithm (for a signed EERP), when a
    /// suite applies.
    pub file_hash: Option<Vec<u8>>,
}

/// An upper estimate of the processed size of a file of `original` octets, for SFIDFSIZ:
/// CMS framing, certificates, signature and padding add a few KiB; deflate adds at most about
/// 0.03 % to data it cannot compress (and mostly makes files much smaller).
fn processed_size_estimate(original: u64) -> u64 {
    original + original / 1024 + 64 * 1024
}

/// Everything the processing of one outgoing file needs, owned, for the thread that runs it.
struct SealJob {
    identities: Arc<IdentitySet>,
    sign: bool,
    recipient: Option<Certificate>,
    suite: CipherSuite,
    compress: bool,
    format: FileFormat,
    /// How the source file's F/V records are laid out.
    mapping: RecordMapping,
    source: PathBuf,
    /// Whether the hash of the transmitted bytes is wanted (a signed EERP was asked for).
    hash: bool,
}

impl SealJob {
    /// Sign -> compress -> encrypt `source` into `out`; returns the hash of what was written
    /// when one is wanted.
    fn run(self, out: &mut (dyn Write + Send)) -> io::Result<Option<Vec<u8>>> {
        let to_io = |e: oftp_security::Error| io::Error::other(e.to_string());
        let signer = if self.sign {
            Some(
                self.identities
                    .for_use(CertificateUse::Signing)
                    .map_err(to_io)?,
            )
        } else {
            None
        };
        let mut inner_opts = SendOptions::new(self.suite);
        if let Some(s) = signer {
            inner_opts = inner_opts.sign(s);
        }
        if self.compress {
            inner_opts = inner_opts.compress();
        }
        let tee = Hashing {
            inner: out,
            hasher: self.hash.then(|| self.suite.hash().hasher()),
        };
        let input = BufReader::with_capacity(64 * 1024, File::open(&self.source)?);
        let (format, mapping) = (self.format, self.mapping);
        let suite = self.suite;
        // Signing (and compressing) and encrypting each take a core's worth of work: with both,
        // they run on two threads joined by a small bounded channel (constant memory).
        let tee = match &self.recipient {
            Some(r) if signer.is_some() || self.compress => {
                std::thread::scope(|scope| -> io::Result<_> {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
                    let producer = scope.spawn(move || -> io::Result<()> {
                        let sink = ChannelWriter {
                            tx,
                            buf: Vec::with_capacity(CHANNEL_CHUNK),
                        };
                        let mut stage = SendPipeline::new(sink, &inner_opts).map_err(to_io)?;
                        feed(format, mapping, input, &mut stage)?;
                        stage.finish().map_err(to_io)?.close()
                    });
                    let mut enc =
                        oftp_security::cms::EnvelopedDataWriter::new(tee, &[r], suite.symmetric())
                            .map_err(to_io)?;
                    let mut failed = None;
                    for chunk in rx {
                        if let Err(e) = enc.write_all(&chunk) {
                            // Dropping the receiver stops the producer.
                            failed = Some(e);
                            break;
                        }
                    }
                    let produced = producer
                        .join()
                        .map_err(|_| io::Error::other("the signing thread panicked"))?;
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    // Finish the envelope only over complete content.
                    produced?;
                    enc.finish().map_err(to_io)
                })?
            }
            _ => {
                let mut opts = inner_opts;
                if let Some(r) = &self.recipient {
                    opts = opts.encrypt_for(r);
                }
                let mut pipeline = SendPipeline::new(tee, &opts).map_err(to_io)?;
                feed(format, mapping, input, &mut pipeline)?;
                pipeline.finish().map_err(to_io)?
            }
        };
        let Hashing { inner, hasher } = tee;
        inner.flush()?;
        Ok(hasher.map(oftp_security::Hasher::finish))
    }
}

/// A name for the processed copy that is the same for every attempt of one file.
fn copy_name(sfid: &Sfid, source: &Path) -> String {
    let mut h = oftp_security::HashAlgorithm::Sha256.hasher();
    for part in [
        sfid.originator.as_bytes(),
        sfid.destination.as_bytes(),
        sfid.dsn.trim_end().as_bytes(),
        sfid.date_time.date_string().as_bytes(),
        sfid.date_time.time_string().as_bytes(),
        source.as_os_str().as_encoded_bytes(),
    ] {
        h.update(part);
        h.update(&[0]);
    }
    let d = h.finish();
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.cms")
}

/// Chunk size between the signing and the encrypting thread.
const CHANNEL_CHUNK: usize = 64 * 1024;

/// Writes a file's content into the first CMS stage: V records with their length prefixes
/// (RFC 5024 6.5), F records concatenated, U and T as they are. Raw F/V files hold exactly
/// that already; F/V files mapped to lines are converted line by line.
fn feed<W: Write>(
    format: FileFormat,
    mapping: RecordMapping,
    input: BufReader<File>,
    out: &mut W,
) -> io::Result<()> {
    let to_io = |e: oftp_security::Error| io::Error::other(e.to_string());
    let lf_only = mapping == RecordMapping::LinesLf;
    match format {
        FileFormat::Variable | FileFormat::Fixed if mapping == RecordMapping::Raw => {
            let mut input = input;
            io::copy(&mut input, out).map(|_| ())
        }
        FileFormat::Variable => {
            let mut records = RecordWriter::new(out);
            for_each_line(input, lf_only, |line| {
                records.write_record(line).map_err(to_io)
            })
        }
        FileFormat::Fixed => for_each_line(input, lf_only, |line| out.write_all(line)),
        _ => {
            let mut input = input;
            io::copy(&mut input, out).map(|_| ())
        }
    }
}

/// Hands written bytes to another thread in chunks; `close` sends the rest.
struct ChannelWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHANNEL_CHUNK));
        self.tx
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the encrypting thread stopped"))
    }

    fn close(mut self) -> io::Result<()> {
        self.send_buf()
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHANNEL_CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHANNEL_CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // The content only needs to arrive by `close`; flushing partial chunks would only
        // make them smaller.
        Ok(())
    }
}

/// Calls `f` with each line of `input` without its line end (LF or CR LF; with `lf_only`, LF).
fn for_each_line<R: BufRead>(
    mut input: R,
    lf_only: bool,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut line = Vec::new();
    // Bounded by the file: each turn consumes at least one byte or ends.
    while crate::source::read_line(&mut input, lf_only, &mut line)? {
        f(&line)?;
    }
    Ok(())
}

fn hash_file(suite: Option<CipherSuite>, path: &Path) -> io::Result<Vec<u8>> {
    match suite {
        Some(s) => s
            .hash()
            .digest_reader(BufReader::with_capacity(64 * 1024, File::open(path)?)),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ME, PARTNER, context, entries, sfid};
    use super::*;
    use crate::security::{PartnerSecurityConfig, SendSecurity};

    /// A partner whose files we compress (no keys needed).
    fn compressing() -> PartnerSecurityConfig {
        PartnerSecurityConfig {
            send: SendSecurity {
                compress: true,
                ..SendSecurity::default()
            },
            ..PartnerSecurityConfig::default()
        }
    }

    fn source(dir: &Path) -> PathBuf {
        let source = dir.join("invoice.txt");
        std::fs::write(&source, "the invoice\n".repeat(100)).unwrap();
        source
    }

    #[test]
    fn a_processed_copy_is_written_whole_into_the_work_folder() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let ctx = context(&work, &compressing());
        let mut sfid = sfid(ME, PARTNER);
        let prepared = ctx.prepare(&mut sfid, &source(dir.path())).unwrap();
        let copy = prepared.transmit.unwrap();
        assert_eq!(copy, work.join(copy_name(&sfid, &source(dir.path()))));
        assert_eq!(sfid.compression, FileCompression::ZLIB);
        assert_eq!(
            sfid.file_size,
            oftp_proto::data::size_in_kib(std::fs::metadata(&copy).unwrap().len())
        );
        assert_eq!(entries(&work), [copy_name(&sfid, &source(dir.path()))]);
    }

    #[test]
    fn a_processed_copy_that_cannot_be_written_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let ctx = context(&work, &compressing());
        let source = source(dir.path());
        let mut sfid = sfid(ME, PARTNER);
        // The copy's name is taken by a folder that is not empty: the rename fails.
        let taken = work.join(copy_name(&sfid, &source));
        std::fs::create_dir_all(taken.join("inside")).unwrap();
        ctx.prepare(&mut sfid, &source).unwrap_err();
        assert_eq!(entries(&work), [copy_name(&sfid, &source)]);
        assert_eq!(entries(&taken), ["inside"]);
    }
}
