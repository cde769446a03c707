//! Security wiring of the `oftp` command: the `[security]` and `[tls]` sections and the
//! partners' `security` / `tls` tables become the runtime's [`SecurityContext`], a TLS
//! acceptor for `oftp serve` and a TLS connector for `oftp send`; and `oftp cert` prints a
//! certificate's or PKCS#12 file's fields and thumbprints.
//!
//! Passwords for key files are read from a file or an environment variable only (never a
//! command-line value, which other users could see in the process list) and never printed.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use oftp::config::Partner;
use oftp::security::{IdentityConfig, LocalSecurityConfig, SecurityContext};
use oftp::tls::{ClientAuth, ServerTrust, TlsAcceptor, TlsConnector, TlsIdentity};
use oftp_security::{Certificate, Identity, Secret, TrustPolicy};
use serde::{Deserialize, Serialize};

/// `[tls]`: the TLS listener of `oftp serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TlsSection {
    /// Listen for OFTP over TLS.
    pub(crate) enabled: bool,
    /// Address of the TLS listener.
    pub(crate) listen: SocketAddr,
    /// Keep the plain listener (`[server] listen`) running as well.
    pub(crate) plain: bool,
    /// Server certificate; defaults to `[security.identity]`.
    pub(crate) identity: Option<IdentityConfig>,
    /// Ask clients for certificates: `off`, `optional` or `required`.
    pub(crate) client_auth: ClientAuthSetting,
    /// CAs for client certificates; defaults to `[security] trusted_cas`.
    pub(crate) client_cas: Vec<PathBuf>,
    /// Which client certificates are accepted: `any` that validates against `client_cas`, or
    /// only `partners`' own (each partner's `security.tls_client_cert`, else its
    /// authentication certificate), and then the session must log in as that partner.
    pub(crate) client_certs: ClientCertsSetting,
}

impl TlsSection {
    pub(crate) fn is_default(&self) -> bool {
        let d = Self::default();
        !self.enabled
            && self.listen == d.listen
            && self.plain
            && self.identity.is_none()
            && self.client_auth == d.client_auth
            && self.client_cas.is_empty()
            && self.client_certs == d.client_certs
    }
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], oftp::tls::DEFAULT_TLS_PORT)),
            plain: true,
            identity: None,
            client_auth: ClientAuthSetting::Off,
            client_cas: Vec::new(),
            client_certs: ClientCertsSetting::Any,
        }
    }
}

/// `[tls] client_certs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientCertsSetting {
    /// Any certificate that validates (chain to `client_cas`, dates, CRLs).
    #[default]
    Any,
    /// Exactly a configured partner's certificate (SHA-256 match, within its dates), bound to
    /// that partner's SSID.
    Partners,
}

/// `[tls] client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientAuthSetting {
    #[default]
    Off,
    Optional,
    Required,
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

fn resolve_identity(base: &Path, id: &mut IdentityConfig) {
    for p in [
        &mut id.pkcs12,
        &mut id.cert,
        &mut id.key,
        &mut id.password_file,
    ]
    .into_iter()
    .flatten()
    {
        resolve(base, p);
    }
}

/// Makes relative paths in the security settings relative to the configuration's directory.
pub(crate) fn resolve_paths<'a>(
    base: &Path,
    security: &mut LocalSecurityConfig,
    tls: &mut TlsSection,
    partners: impl IntoIterator<Item = &'a mut Partner>,
) {
    for id in [
        &mut security.identity,
        &mut security.authentication,
        &mut security.decryption,
        &mut security.signing,
        &mut security.receipt_signing,
        &mut tls.identity,
    ]
    .into_iter()
    .flatten()
    {
        resolve_identity(base, id);
    }
    for p in security
        .trusted_cas
        .iter_mut()
        .chain(security.crls.iter_mut())
        .chain(tls.client_cas.iter_mut())
        .chain(security.work_dir.iter_mut())
    {
        resolve(base, p);
    }
    for partner in partners {
        let s = &mut partner.security;
        for p in [
            &mut s.certificate,
            &mut s.encryption_cert,
            &mut s.signature_cert,
            &mut s.receipt_cert,
            &mut s.authentication_cert,
            &mut s.tls_client_cert,
        ]
        .into_iter()
        .flatten()
        {
            resolve(base, p);
        }
        let t = &mut partner.tls;
        for p in t.pinned_cert.iter_mut().chain(t.trusted_cas.iter_mut()) {
            resolve(base, p);
        }
    }
}

/// The runtime's security context for our SFID code and these partners.
pub(crate) fn context<'a>(
    local_sfid: &str,
    security: &LocalSecurityConfig,
    partners: impl IntoIterator<Item = &'a Partner>,
    data_dir: &Path,
) -> Result<Arc<SecurityContext>> {
    let mut b = SecurityContext::builder(local_sfid, security, data_dir.join("security"))?;
    for p in partners {
        b = b.partner(&p.name, &p.ssid, p.sfid(), &p.security)?;
    }
    // The runtime stores received certificates in <data_dir>/certificates.
    let b = b.restore_replaced_certificates(&data_dir.join("certificates"))?;
    Ok(Arc::new(b.build()))
}

fn trust_policy(security: &LocalSecurityConfig, cas: &[PathBuf]) -> Result<TrustPolicy> {
    let mut t = security.revocation_settings(
        TrustPolicy::new()
            .fail_on_untrusted(security.fail_on_untrusted)
            .allow_self_signed(security.allow_self_signed),
        // The TLS listener keeps its distribution point CRLs in memory only.
        None,
    )?;
    let cas = if cas.is_empty() {
        &security.trusted_cas
    } else {
        cas
    };
    for ca in cas {
        t = t
            .trust_file(ca)
            .with_context(|| format!("trusted CA file {}", ca.display()))?;
    }
    for crl in &security.crls {
        t = t
            .add_crl_file(crl)
            .with_context(|| format!("CRL file {}", crl.display()))?;
    }
    Ok(t)
}

/// The TLS acceptor for `[tls]`, if enabled. With `client_certs = "partners"` the partners'
/// certificates come from `sec`, which also follows certificates replaced by an exchange.
pub(crate) fn acceptor(
    security: &LocalSecurityConfig,
    tls: &TlsSection,
    sec: &Arc<SecurityContext>,
) -> Result<TlsAcceptor> {
    let id = tls
        .identity
        .as_ref()
        .or(security.identity.as_ref())
        .context("[tls] is enabled but neither [tls.identity] nor [security.identity] names a certificate")?;
    let identity = TlsIdentity::load(id)?;
    let acceptor = TlsAcceptor::new(identity)?;
    let mode = match (tls.client_auth, tls.client_certs) {
        (ClientAuthSetting::Off, ClientCertsSetting::Any) => return Ok(acceptor),
        (ClientAuthSetting::Off, ClientCertsSetting::Partners) => bail!(
            "client_certs = \"partners\" needs client_auth = \"optional\" or \"required\" \
             (with \"off\" no client certificate is asked for)"
        ),
        (ClientAuthSetting::Optional, _) => ClientAuth::Optional,
        (ClientAuthSetting::Required, _) => ClientAuth::Required,
    };
    let acceptor = acceptor.client_auth(mode, trust_policy(security, &tls.client_cas)?)?;
    if tls.client_certs == ClientCertsSetting::Any {
        return Ok(acceptor);
    }
    let sec = sec.clone();
    Ok(acceptor
        .on_client_certificate(move |c| partner_client_certificate(&sec, c))
        .bind_client_certificates(true))
}

/// `client_certs = "partners"`: the presented certificate must be a configured partner's
/// (pinned by SHA-256, so no chain is needed, as with a pinned server certificate) and within
/// its validity dates.
fn partner_client_certificate(sec: &SecurityContext, c: &oftp::tls::ClientCertificate) -> bool {
    let cert = &c.certificate;
    let Some(partner) = sec.tls_client_partner(cert) else {
        tracing::info!(peer = %c.peer, subject = cert.subject(), "TLS client certificate refused: it is no partner's certificate");
        return false;
    };
    let now = std::time::SystemTime::now();
    if now < cert.not_before() || now > cert.not_after() {
        tracing::info!(peer = %c.peer, partner = %partner.name, subject = cert.subject(), "TLS client certificate refused: outside its validity dates");
        return false;
    }
    tracing::info!(peer = %c.peer, partner = %partner.name, subject = cert.subject(), "TLS client certificate of a partner accepted");
    true
}

/// The TLS connector to call `partner`: its pinned certificate, or its trusted CAs (default
/// `[security] trusted_cas`); our client certificate from `[tls.identity]` or
/// `[security.identity]` when `present_certificate` is set.
pub(crate) fn connector(
    security: &LocalSecurityConfig,
    tls: &TlsSection,
    partner: &Partner,
) -> Result<TlsConnector> {
    let t = &partner.tls;
    let mut trust = ServerTrust::new();
    if let Some(pin) = &t.pinned_cert {
        trust = trust.pin_file(pin)?;
    }
    if t.pinned_cert.is_none() {
        let cas = if t.trusted_cas.is_empty() {
            &security.trusted_cas
        } else {
            &t.trusted_cas
        };
        for ca in cas {
            trust = trust.trust_ca_file(ca)?;
        }
    }
    let identity = if t.client_certificate {
        let id = tls
            .identity
            .as_ref()
            .or(security.identity.as_ref())
            .context("partner tls.client_certificate is set but no [tls.identity] or [security.identity] is configured")?;
        Some(TlsIdentity::load(id)?)
    } else {
        None
    };
    let mut c = TlsConnector::new(trust, identity.as_ref()).with_context(|| {
        format!(
            "partner {:?}: set tls.pinned_cert or tls.trusted_cas (or [security] trusted_cas)",
            partner.name
        )
    })?;
    if let Some(name) = &t.server_name {
        c = c.server_name(name.clone());
    }
    Ok(c)
}

/// `oftp cert` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct CertArgs {
    /// Certificate (PEM or DER, may hold several) or PKCS#12 file.
    pub(crate) file: PathBuf,
    /// PKCS#12 password file.
    #[arg(long)]
    pub(crate) password_file: Option<PathBuf>,
    /// Environment variable holding the PKCS#12 password.
    #[arg(long, conflicts_with = "password_file")]
    pub(crate) password_env: Option<String>,
    /// Also check the certificate against these trusted CA files (expiry, chain, CRLs).
    #[arg(long = "ca")]
    pub(crate) cas: Vec<PathBuf>,
    /// CRL files for the check.
    #[arg(long = "crl")]
    pub(crate) crls: Vec<PathBuf>,
    /// With --ca: also fetch the CRLs named by the certificates' CRL distribution points
    /// (http://) and refuse when one cannot be fetched or verified.
    #[arg(long = "crl-dp", requires = "cas")]
    pub(crate) crl_dp: bool,
}

fn hex_colon(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn time(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// `oftp cert FILE`: prints each certificate's fields and thumbprints.
pub(crate) fn cert_command(a: &CertArgs) -> Result<()> {
    let bytes =
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let (certs, with_key): (Vec<Certificate>, bool) = match Certificate::all_from_pem_or_der(&bytes)
    {
        Ok(c) if !c.is_empty() => (c, false),
        _ => {
            let password = match (&a.password_file, &a.password_env) {
                (Some(f), _) => Secret::from_file(f)?,
                (None, Some(v)) => Secret::from_env(v)?,
                (None, None) => Secret::default(),
            };
            let ids = Identity::all_from_pkcs12(&bytes, &password).with_context(|| {
                format!(
                    "{} is neither a certificate nor a PKCS#12 file we can open \
                         (give its password with --password-file or --password-env)",
                    a.file.display()
                )
            })?;
            let mut v = Vec::new();
            for id in &ids {
                v.push(id.certificate().clone());
                v.extend(id.chain().iter().cloned());
            }
            (v, true)
        }
    };
    let trust = if a.cas.is_empty() {
        None
    } else {
        let mut t = TrustPolicy::new();
        for ca in &a.cas {
            t = t.trust_file(ca)?;
        }
        for crl in &a.crls {
            t = t.add_crl_file(crl)?;
        }
        if a.crl_dp {
            t = t
                .fetch_crl_distribution_points(oftp_security::CrlFetchOptions::default())
                .require_revocation_check(true);
        }
        Some(t)
    };
    let mut out = std::io::stdout().lock();
    for (i, c) in certs.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "Subject:             {}", c.subject())?;
        writeln!(out, "Issuer:              {}", c.issuer())?;
        writeln!(out, "Serial number:       {}", c.serial_number())?;
        writeln!(out, "Valid from:          {}", time(c.not_before()))?;
        writeln!(out, "Valid until:         {}", time(c.not_after()))?;
        writeln!(
            out,
            "Public key:          {} {} bits",
            c.public_key_algorithm(),
            c.public_key_bits()
        )?;
        writeln!(out, "Signature algorithm: {}", c.signature_algorithm())?;
        if let Some(ku) = c.key_usage() {
            writeln!(out, "Key usage:           {ku:?}")?;
        }
        for (label, items) in [
            ("Extended key usage:  ", c.extended_key_usage()),
            ("Subject alt names:   ", c.subject_alt_names()),
            ("CRL distribution:    ", c.crl_distribution_points()),
        ] {
            if !items.is_empty() {
                writeln!(out, "{label}{}", items.join(", "))?;
            }
        }
        writeln!(out, "CA:                  {}", c.is_ca())?;
        if with_key && i == 0 {
            writeln!(out, "Private key:         present")?;
        }
        writeln!(
            out,
            "SHA-1 thumbprint:    {}",
            hex_colon(&c.thumbprint_sha1())
        )?;
        writeln!(
            out,
            "SHA-256 thumbprint:  {}",
            hex_colon(&c.thumbprint_sha256())
        )?;
        if let Some(t) = &trust {
            let status = match t.check(c, &certs, std::time::SystemTime::now()) {
                Ok(s) => format!("{s:?}"),
                Err(e) => format!("NOT valid: {e}"),
            };
            writeln!(out, "Validation:          {status}")?;
        }
    }
    out.flush()?;
    if let Some(t) = &trust
        && let Some(first) = certs.first()
        && t.check(first, &certs, std::time::SystemTime::now())
            .is_err()
    {
        bail!("{} does not validate", first.subject());
    }
    Ok(())
}
