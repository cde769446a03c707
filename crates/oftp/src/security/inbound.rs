//! Files we receive: the offer check at SFID (which services the originator's policy demands,
//! which cipher suites and compression it allows: the SFNA reason when refused) and the
//! opening of a file that carries services while it arrives (verify, decompress, decrypt,
//! RFC 5024 section 6), into a temporary file that replaces the stored data durably through
//! `durable-write` once the whole file is open; a failure leaves the stored data as it was and
//! no temporary file behind, and names the EFNA reason. F/V records are written in the
//! originator's record mapping. Files for another destination pass through unopened (only the
//! hash for a signed EERP is computed).
//!
//! Not here: storing the received bytes (`crate::store`), the thread the opening runs on and
//! the answer to the peer (the connection driver), CMS itself (`oftp_security::cms`).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use oftp_proto::codec::{
    EfnaReason, FileCompression, FileEnvelope, FileFormat, SecurityLevel, Sfid, SfnaReason,
};
use oftp_security::cms::{ReceiveOptions, ReceivePipeline};
use oftp_security::vformat::RecordReader;
use oftp_security::{CertificateUse, CipherSuite};

use super::Hashing;
use super::config::FileSecurity;
use super::context::{PartnerCertUse, SecurityContext};
use crate::transport::{ServiceFailure, ServiceRefusal};

impl SecurityContext {
    /// Checks an offered file against the originator's policy.
    pub fn check_offer(&self, sfid: &Sfid) -> Result<(), ServiceRefusal> {
        let refuse = |reason: SfnaReason, text: String| Err(ServiceRefusal { reason, text });
        if !self.is_local(&sfid.destination) {
            // Intermediary: passed on unchanged, nothing to open.
            return Ok(());
        }
        let announced = FileSecurity::announced(sfid.security);
        let (signed, encrypted) = (announced.signed(), announced.encrypted());
        if !sfid.security.is_known() {
            return refuse(
                SfnaReason::UNSPECIFIED,
                format!("unknown security level {:02}", sfid.security.0),
            );
        }
        let compressed = sfid.compression != FileCompression::NONE;
        if compressed && sfid.compression != FileCompression::ZLIB {
            return refuse(
                SfnaReason::COMPRESSION_NOT_ALLOWED,
                format!("unknown compression {}", sfid.compression.0),
            );
        }
        if (signed || encrypted || compressed) && sfid.envelope != FileEnvelope::CMS {
            return refuse(
                SfnaReason::UNSPECIFIED,
                "file services need the CMS envelope (SFIDENV 1)".into(),
            );
        }
        let partner = self.partner_by_sfid(&sfid.originator);
        let policy = partner.map(|p| &p.config);
        if signed || encrypted || sfid.signed_eerp {
            let suite = sfid.cipher_suite.0;
            if CipherSuite::from_code(suite).is_err() {
                return refuse(
                    SfnaReason::CIPHER_SUITE_NOT_SUPPORTED,
                    format!("cipher suite {suite:02} is not supported"),
                );
            }
            if let Some(p) = policy
                && !p.allowed_suites.is_empty()
                && !p.allowed_suites.contains(&suite)
            {
                return refuse(
                    SfnaReason::CIPHER_SUITE_NOT_SUPPORTED,
                    format!("cipher suite {suite:02} is not allowed for this partner"),
                );
            }
        }
        let required = policy.map_or(FileSecurity::None, |p| p.required_security);
        if required.encrypted() && !encrypted {
            return refuse(
                SfnaReason::UNENCRYPTED_FILE_NOT_ALLOWED,
                "files from this partner must be encrypted".into(),
            );
        }
        if required.signed() && !signed {
            return refuse(
                SfnaReason::UNSIGNED_FILE_NOT_ALLOWED,
                "files from this partner must be signed".into(),
            );
        }
        if compressed && policy.is_some_and(|p| !p.allow_compression) {
            return refuse(
                SfnaReason::COMPRESSION_NOT_ALLOWED,
                "compressed files are not allowed from this partner".into(),
            );
        }
        if encrypted && self.identity(CertificateUse::Decryption).is_none() {
            return refuse(
                SfnaReason::ENCRYPTED_FILE_NOT_ALLOWED,
                "no decryption key is configured".into(),
            );
        }
        if signed {
            let Some(p) = partner else {
                return refuse(
                    SfnaReason::SIGNED_FILE_NOT_ALLOWED,
                    format!("no certificate to verify signatures of {}", sfid.originator),
                );
            };
            if let Err(e) = self.partner_cert(p, PartnerCertUse::Signature) {
                return refuse(SfnaReason::SIGNED_FILE_NOT_ALLOWED, e.to_string());
            }
        }
        // A signed EERP asked for without a receipt-signing key of ours does not refuse the
        // file: the EERP goes out unsigned, with a warning (RFC 5024 3.3.5 note 3, 4.3.6).
        Ok(())
    }

    /// Opens a received file in place: verifies, decompresses and decrypts `data` (durable,
    /// complete) into a temporary file next to it, fsyncs it and renames it over `data`.
    /// Returns the hash of the transmitted file (for a signed EERP) computed on the way.
    pub fn open_received(&self, sfid: &Sfid, data: &Path) -> Result<Vec<u8>, ServiceFailure> {
        let mut input = File::open(data).map_err(|e| ServiceFailure {
            reason: EfnaReason::ACCESS_METHOD_FAILURE,
            text: e.to_string(),
        })?;
        self.open_stream(sfid, &mut input, data)
    }

    /// [`open_received`](Self::open_received) reading the transmitted bytes from `input` (the
    /// file as it arrives, see [`FileServices::open_incoming`]); the opened file replaces
    /// `data` once `input` has ended.
    pub fn open_stream(
        &self,
        sfid: &Sfid,
        input: &mut (dyn Read + Send),
        data: &Path,
    ) -> Result<Vec<u8>, ServiceFailure> {
        let fail = |reason: EfnaReason, text: String| ServiceFailure { reason, text };
        let suite = CipherSuite::from_code(sfid.cipher_suite.0).ok();
        if !self.is_local(&sfid.destination) || !sfid.has_file_services() {
            // Passed through unchanged; only the hash (for a signed EERP) is wanted.
            let mut tee = Hashing {
                inner: input,
                hasher: suite.map(|s| s.hash().hasher()),
            };
            io::copy(&mut tee, &mut io::sink())
                .map_err(|e| fail(EfnaReason::ACCESS_METHOD_FAILURE, e.to_string()))?;
            return Ok(tee
                .hasher
                .map(oftp_security::Hasher::finish)
                .unwrap_or_default());
        }
        let announced = FileSecurity::announced(sfid.security);
        let (signed, encrypted) = (announced.signed(), announced.encrypted());
        let compressed = sfid.compression != FileCompression::NONE;
        let partner = self.partner_by_sfid(&sfid.originator);
        let sig_cert = match (signed, partner) {
            (false, _) => None,
            (true, None) => {
                return Err(fail(
                    EfnaReason::INVALID_SIGNATURE,
                    format!("no certificate to verify signatures of {}", sfid.originator),
                ));
            }
            (true, Some(p)) => Some(
                self.partner_cert(p, PartnerCertUse::Signature)
                    .map_err(|e| fail(EfnaReason::INVALID_SIGNATURE, e.to_string()))?,
            ),
        };
        let identity = if encrypted {
            Some(self.identity(CertificateUse::Decryption).ok_or_else(|| {
                fail(
                    EfnaReason::DECRYPTION_FAILURE,
                    "no decryption key is configured".into(),
                )
            })?)
        } else {
            None
        };
        let mut opts = ReceiveOptions::new().expect(encrypted, compressed, signed);
        if let Some(i) = identity {
            opts = opts.identity(i);
        }
        if let Some(c) = &sig_cert {
            opts = opts.partner(c);
        }
        let security_err =
            |e: oftp_security::Error| fail(EfnaReason(e.efna_reason()), format!("{e}"));
        let io_err = |e: io::Error| fail(EfnaReason::ACCESS_METHOD_FAILURE, e.to_string());
        let line_end = self.record_mapping(&sfid.originator).line_end();
        // Raw: V records after their 2-octet length (as transmitted), F records back to back;
        // lines: each record followed by the line end, which it must not contain.
        let mut records = 0u64;
        let mut store_record = |out: &mut BufWriter<&mut File>, rec: &[u8], header: bool| {
            records += 1;
            match line_end {
                None if header => {
                    // Read after a 2-octet length, so it always fits one.
                    let len = u16::try_from(rec.len()).map_err(|_| {
                        fail(
                            EfnaReason::RECORD_LENGTH_NOT_SUPPORTED,
                            format!("record {records} is longer than 65535 octets"),
                        )
                    })?;
                    out.write_all(&len.to_be_bytes()).map_err(io_err)?;
                    out.write_all(rec).map_err(io_err)
                }
                None => out.write_all(rec).map_err(io_err),
                Some(_) if rec.contains(&b'\n') => Err(fail(
                    EfnaReason::RECORD_FORMAT_NOT_SUPPORTED,
                    format!(
                        "record {records} contains a line feed; the receiver stores records as \
                         lines"
                    ),
                )),
                Some(end) => out
                    .write_all(rec)
                    .and_then(|()| out.write_all(end))
                    .map_err(io_err),
            }
        };
        // The transmitted file's hash is only needed for a signed EERP.
        let hasher = suite
            .filter(|_| sfid.signed_eerp)
            .map(|s| s.hash().hasher());
        let mut tee = Hashing {
            inner: BufReader::with_capacity(64 * 1024, input),
            hasher,
        };
        // Why the opening failed (its EFNA reason), when it did: the write then fails too, so
        // that `data` stays as it was and nothing is left behind.
        let mut failure = None;
        let written = durable_write::write_with(data, &durable_write::Options::default(), |file| {
            let mut out = BufWriter::with_capacity(64 * 1024, file);
            let opened = (|| -> Result<(), ServiceFailure> {
                let mut pipeline = ReceivePipeline::new(&mut tee, &opts).map_err(security_err)?;
                match sfid.format {
                    FileFormat::Variable => {
                        let mut records = RecordReader::new(&mut pipeline);
                        let mut rec = Vec::new();
                        while records.next_record(&mut rec).map_err(security_err)? {
                            store_record(&mut out, &rec, true)?;
                        }
                    }
                    FileFormat::Fixed if sfid.max_record_len > 0 => {
                        let mut rec = vec![0u8; sfid.max_record_len as usize];
                        loop {
                            let n = read_full(&mut pipeline, &mut rec)
                                .map_err(|e| security_err(oftp_security::Error::from_io(e)))?;
                            if n == 0 {
                                break;
                            }
                            store_record(&mut out, &rec[..n], false)?;
                        }
                    }
                    _ => {
                        io::copy(&mut pipeline, &mut out)
                            .map_err(|e| security_err(oftp_security::Error::from_io(e)))?;
                    }
                }
                pipeline.finish().map_err(security_err)?;
                // Whatever follows the CMS structure was read by `finish`; hash to the end
                // anyway.
                io::copy(&mut tee, &mut io::sink()).map_err(io_err)?;
                Ok(())
            })();
            match opened {
                Ok(()) => out.flush(),
                Err(f) => {
                    failure = Some(f);
                    Err(io::Error::other("the received file could not be opened"))
                }
            }
        });
        match (written, failure) {
            (_, Some(f)) => Err(f),
            // The EFNA text goes to the peer: the I/O error without our local paths.
            (Err(e), None) => Err(io_err(e.source)),
            (Ok(()), None) => Ok(tee
                .hasher
                .map(oftp_security::Hasher::finish)
                .unwrap_or_default()),
        }
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The answer for a received file whose opening ended without a verdict (the opening thread
/// panicked, or stopped): the EFNA reason of the outermost layer the SFID announced, the
/// envelope being opened (RFC 5024 6.1 nests encryption around compression around the
/// signature; 5.3.10: 22 file decryption failure, 23 file decompression failure, 21 invalid
/// file signature), 99 for a file without file services. The cause stays in the local log.
pub(crate) fn unopened_file(sfid: &Sfid) -> ServiceFailure {
    let (reason, layer) = match sfid.security {
        SecurityLevel::ENCRYPTED | SecurityLevel::ENCRYPTED_AND_SIGNED => {
            (EfnaReason::DECRYPTION_FAILURE, "encrypted data")
        }
        _ if sfid.compression != FileCompression::NONE => {
            (EfnaReason::DECOMPRESSION_FAILURE, "compressed data")
        }
        SecurityLevel::SIGNED => (EfnaReason::INVALID_SIGNATURE, "signed data"),
        _ => (EfnaReason::UNSPECIFIED, "file"),
    };
    ServiceFailure {
        reason,
        text: format!(
            "the receiver could not open the {layer}: its decoder failed on it (an internal \
             error, logged at the receiver)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use oftp_security::cms::{SendOptions, SendPipeline};

    use super::super::testing::{ME, PARTNER, context, entries, sfid};
    use super::*;
    use crate::security::PartnerSecurityConfig;

    /// A compressed file (no signature, no encryption) from the partner to us.
    fn compressed() -> Sfid {
        Sfid {
            compression: FileCompression::ZLIB,
            envelope: FileEnvelope::CMS,
            ..sfid(PARTNER, ME)
        }
    }

    /// The stored data of a reception that has arrived, in a folder of its own.
    fn stored(content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("received");
        std::fs::write(&data, content).unwrap();
        (dir, data)
    }

    #[test]
    fn an_opened_file_replaces_the_stored_data_and_leaves_no_temporary_file() {
        let suite = CipherSuite::from_code(4).unwrap();
        let mut cms = SendPipeline::new(Vec::new(), &SendOptions::new(suite).compress()).unwrap();
        cms.write_all(b"the invoice").unwrap();
        let cms = cms.finish().unwrap();
        let (dir, data) = stored(&cms);
        let ctx = context(dir.path(), &PartnerSecurityConfig::default());
        ctx.open_stream(&compressed(), &mut &cms[..], &data)
            .unwrap();
        assert_eq!(std::fs::read(&data).unwrap(), b"the invoice");
        assert_eq!(entries(dir.path()), ["received"]);
    }

    #[test]
    fn a_file_that_cannot_be_opened_keeps_the_stored_data_and_leaves_no_temporary_file() {
        let (dir, data) = stored(b"as received");
        let ctx = context(dir.path(), &PartnerSecurityConfig::default());
        let failure = ctx
            .open_stream(&compressed(), &mut &b"not a CMS structure"[..], &data)
            .unwrap_err();
        assert_ne!(
            failure.reason,
            EfnaReason::ACCESS_METHOD_FAILURE,
            "{failure:?}"
        );
        assert_eq!(std::fs::read(&data).unwrap(), b"as received");
        assert_eq!(entries(dir.path()), ["received"]);
    }

    /// The connection driver catches a panic of the opening (a decoder bug on hostile input)
    /// and answers with an EFNA; the half-opened file must not stay behind.
    #[test]
    fn a_panic_while_opening_leaves_no_temporary_file() {
        struct Hostile;
        impl Read for Hostile {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("a decoder bug");
            }
        }
        let (dir, data) = stored(b"as received");
        let ctx = context(dir.path(), &PartnerSecurityConfig::default());
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ctx.open_stream(&compressed(), &mut Hostile, &data)
        }));
        assert!(caught.is_err());
        assert_eq!(std::fs::read(&data).unwrap(), b"as received");
        assert_eq!(entries(dir.path()), ["received"]);
    }
}
