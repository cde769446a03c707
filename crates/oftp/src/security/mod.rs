//! OFTP 2.0 security for the runtime: which certificates are used for what, what each partner
//! must and may do, and the file services (RFC 5024 section 6) on both sides of a transfer.
//!
//! - Configuration (serde, read from TOML by the `oftp` command; `config.rs`):
//!   [`LocalSecurityConfig`] holds our identities per purpose (the seed's `CertificateType`:
//!   session authentication, decryption, signing, receipt signing, with one default for all),
//!   the trusted CAs and CRLs (the seed's `ValidateCert` / `FailOnUntrustedCert`);
//!   [`PartnerSecurityConfig`] holds a partner's certificates per purpose (encryption,
//!   signature verification, receipt verification, authentication) and its policy (required
//!   security, allowed cipher suites, compression, signed receipts, secure authentication).
//!   Passwords for key files come from a file or an environment variable only
//!   ([`IdentityConfig`]); they are never logged.
//! - [`SecurityContext`] is the loaded form, shared by all connections (`context.rs`). It
//!   implements [`FileServices`]: sending is sign -> compress -> encrypt while the file is sent
//!   ([`SecurityContext::plan`]; SFIDFSIZ an upper estimate; `outbound.rs`), receiving is the
//!   reverse while the file arrives ([`SecurityContext::open_stream`]; `inbound.rs`), with
//!   verification against the originator's certificate. Memory stays constant for any file
//!   size: everything is streamed through `oftp_security`'s pipelines, on threads the runtime
//!   starts for it.
//! - Files that are neither from nor for us (SFID origin and destination are not our codes)
//!   pass through unchanged: no security service is applied (the seed's intermediary rule).
//! - Secure-authentication challenges and signed EERP/NERP (`receipts.rs`), certificate
//!   exchange and the store of received certificates (`exchange.rs`).
//! - Every file this module writes (an opened received file, a received certificate, a
//!   processed copy) goes through the workspace crate `durable-write`: temporary file beside
//!   the target, fsync, rename, folder fsync; a failed write leaves nothing behind.
//!
//! Not here: TLS ([`crate::tls`]), the SECD/AUCH/AURP exchange and EERP/NERP sending (the
//! connection driver calls [`SecurityContext`] for keys and policy), CMS itself
//! (`oftp-security`).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oftp_proto::codec::Sfid;

use crate::transport::{FileServices, OutgoingPlan, ServiceFailure, ServiceRefusal};

mod config;
mod context;
mod error;
mod exchange;
mod inbound;
mod outbound;
mod receipts;
#[cfg(test)]
mod testing;

pub use config::{
    FileSecurity, IdentityConfig, LocalSecurityConfig, PartnerSecurityConfig, SecureAuthentication,
    SecurityConfigError, SendSecurity,
};
pub use context::{PartnerCertUse, PartnerSecurity, SecurityContext, SecurityContextBuilder};
pub use error::{SecureAuthRefusal, SecurityError};
pub use exchange::{CertificateExchange, ReceivedCertificate};
pub(crate) use inbound::unopened_file;
pub use outbound::Prepared;

/// The file services of a [`SecurityContext`] for the connection driver.
impl FileServices for SecurityContext {
    fn check_incoming(&self, sfid: &Sfid) -> Result<(), ServiceRefusal> {
        self.check_offer(sfid)
    }

    fn finish_incoming(&self, sfid: &Sfid, data: &Path) -> Result<(), ServiceFailure> {
        self.open_received(sfid, data).map(|_| ())
    }

    fn prepare_outgoing(&self, sfid: &mut Sfid, source: &Path) -> io::Result<Option<PathBuf>> {
        self.prepare(sfid, source).map(|p| p.transmit)
    }

    fn finish_incoming_with_hash(
        &self,
        sfid: &Sfid,
        data: &Path,
    ) -> Result<Option<Vec<u8>>, ServiceFailure> {
        self.open_received(sfid, data)
            .map(|h| (sfid.signed_eerp && !h.is_empty()).then_some(h))
    }

    fn open_incoming(
        &self,
        sfid: &Sfid,
        received: &mut (dyn Read + Send),
        data: &Path,
    ) -> Result<Option<Vec<u8>>, ServiceFailure> {
        self.open_stream(sfid, received, data)
            .map(|h| (sfid.signed_eerp && !h.is_empty()).then_some(h))
    }

    fn stream_outgoing(&self, sfid: &mut Sfid, source: &Path) -> io::Result<OutgoingPlan> {
        self.plan(sfid, source)
    }

    fn prepare_outgoing_with_hash(
        &self,
        sfid: &mut Sfid,
        source: &Path,
    ) -> io::Result<(Option<PathBuf>, Option<Vec<u8>>)> {
        self.prepare(sfid, source)
            .map(|p| (p.transmit, p.file_hash.filter(|_| sfid.signed_eerp)))
    }
}

/// A reader or writer that hashes what passes through it (the transmitted file's hash for a
/// signed EERP), when a hasher is given.
struct Hashing<T> {
    inner: T,
    hasher: Option<oftp_security::Hasher>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
