//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert` URL options over rustls.
//!
//! tokio-postgres parses only `sslmode=disable|prefer|require` and hands the host name to the
//! TLS connector; what is checked is up to the connector. So the TLS options are taken out of
//! the URL here ([`split`]), the rest goes to `postgres::Config`, and the rustls client
//! configuration ([`TlsOptions::connector`]) decides what is checked, as libpq does:
//!
//! | `sslmode`     | TLS                           | server certificate checked           |
//! |---------------|-------------------------------|--------------------------------------|
//! | `disable`     | never                         | -                                    |
//! | `prefer` (default) | when the server offers it and the handshake works, else plain | no |
//! | `require`     | always                        | no (as libpq without a root file); with `sslrootcert` as `verify-ca` |
//! | `verify-ca`   | always                        | chain to `sslrootcert` (or the system roots) |
//! | `verify-full` | always                        | chain and host name                  |
//!
//! `sslrootcert=FILE` is a PEM file of CA certificates; `sslrootcert=system` (as in libpq 16)
//! or no `sslrootcert` means the system's roots (rustls-native-certs). A client certificate
//! (`sslcert=FILE` with its chain, `sslkey=FILE`, both PEM, both needed: no `~/.postgresql`
//! defaults) is sent when the server asks for one. Revocation lists (`sslcrl`) are refused,
//! with what to do instead.
//!
//! Connector: `tokio-postgres-rustls` (the rustls `MakeTlsConnect` for the tokio-postgres 0.7
//! under our `postgres` 0.19), rustls 0.23 with the aws-lc-rs provider.

use crate::error::Error;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values that this build speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Roots {
    /// The operating system's roots.
    System,
    /// A PEM file (`sslrootcert=FILE`).
    File(PathBuf),
}

/// The TLS options of an index URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsOptions {
    pub(super) mode: Mode,
    /// `sslrootcert` as given (`None`: not given).
    pub(super) root_cert: Option<Roots>,
    /// `sslcert` and `sslkey`.
    pub(super) client_cert: Option<(PathBuf, PathBuf)>,
}

fn invalid(reason: String) -> Error {
    Error::InvalidOption {
        option: "index",
        reason,
    }
}

/// Splits `url` into the URL for `postgres::Config` (with `sslmode` as tokio-postgres knows
/// it: `disable`, `prefer` or `require`) and the TLS options. Refuses the options this build
/// does not offer, saying what to do instead.
pub(super) fn split(url: &str) -> Result<(String, TlsOptions), Error> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = Mode::Prefer;
    let mut root_cert = None;
    let (mut cert_file, mut key_file) = (None, None);
    // Kept as written (not re-encoded): tokio-postgres decodes them itself.
    let mut kept: Vec<&str> = Vec::new();
    for raw in query.split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = url::form_urlencoded::parse(raw.as_bytes()).next() else {
            kept.push(raw);
            continue;
        };
        match &*key {
            "sslmode" => {
                mode = match &*value {
                    "disable" => Mode::Disable,
                    "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(invalid(format!(
                            "sslmode={other} is not supported: use sslmode=verify-full (TLS, \
                             certificate and host name checked), verify-ca, require, prefer or \
                             disable"
                        )));
                    }
                }
            }
            "sslrootcert" => {
                root_cert = Some(if value == "system" {
                    Roots::System
                } else {
                    Roots::File(PathBuf::from(&*value))
                })
            }
            "sslcert" => cert_file = Some(PathBuf::from(&*value)),
            "sslkey" => key_file = Some(PathBuf::from(&*value)),
            "sslcrl" | "sslcrldir" => {
                return Err(invalid(format!(
                    "{key}: certificate revocation lists for PostgreSQL are not supported: \
                     leave {key} out, and remove a revoked server certificate's CA from the \
                     sslrootcert file instead"
                )));
            }
            _ => kept.push(raw),
        }
    }
    let client_cert = match (cert_file, key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "a client certificate needs both sslcert=FILE (the certificate, PEM) and \
                 sslkey=FILE (its private key, PEM): give both, or neither"
                    .into(),
            ));
        }
    };
    if root_cert.is_some() && mode == Mode::Require {
        // libpq: with a root certificate, require checks the chain as verify-ca does.
        mode = Mode::VerifyCa;
    }
    kept.push(match mode {
        Mode::Disable => "sslmode=disable",
        Mode::Prefer => "sslmode=prefer",
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => "sslmode=require",
    });
    Ok((
        format!("{base}?{}", kept.join("&")),
        TlsOptions {
            mode,
            root_cert,
            client_cert,
        },
    ))
}

impl TlsOptions {
    /// What the server's certificate is checked against, in words for an error message.
    pub(super) fn roots_described(&self) -> String {
        match &self.root_cert {
            Some(Roots::File(path)) => format!("sslrootcert file {}", path.display()),
            Some(Roots::System) | None => "the system's root certificates".into(),
        }
    }

    /// The rustls connector for these options; `None` for `sslmode=disable`. Reads the root
    /// certificates now, so a missing or empty file is reported before connecting.
    pub(super) fn connector(&self) -> Result<Option<MakeRustlsConnect>, Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS setup failed ({e})")))?;
        let verifying = match self.mode {
            Mode::Disable => return Ok(None),
            Mode::Prefer | Mode::Require => {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NameUnchecked {
                        chain: None,
                        algorithms: provider.signature_verification_algorithms,
                    }))
            }
            Mode::VerifyCa => {
                let algorithms = provider.signature_verification_algorithms;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), provider)
                        .build()
                        .map_err(|e| invalid(format!("TLS setup failed ({e})")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NameUnchecked {
                        chain: Some(webpki),
                        algorithms,
                    }))
            }
            Mode::VerifyFull => builder.with_root_certificates(self.roots()?),
        };
        let config = match &self.client_cert {
            None => verifying.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_pem_certificates(cert, "sslcert")?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    invalid(format!(
                        "cannot read the sslkey file {} ({e}): give a readable PEM file with \
                         the private key of the sslcert certificate",
                        key.display()
                    ))
                })?;
                verifying
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| {
                        invalid(format!(
                            "the sslcert file {} and the sslkey file {} do not go together \
                             ({e}): give the certificate and its own private key",
                            cert.display(),
                            key.display()
                        ))
                    })?
            }
        };
        Ok(Some(MakeRustlsConnect::new(config)))
    }

    fn roots(&self) -> Result<RootCertStore, Error> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(Roots::File(path)) => {
                let certs = read_pem_certificates(path, "sslrootcert")?;
                let (_, unusable) = roots.add_parsable_certificates(certs);
                if roots.is_empty() {
                    return Err(invalid(format!(
                        "the sslrootcert file {} holds no usable CA certificate ({unusable} \
                         unusable): give a PEM file with the CA certificate(s) that signed the \
                         server's certificate",
                        path.display()
                    )));
                }
            }
            Some(Roots::System) | None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(invalid(
                        "no system root certificates found to check the PostgreSQL server's \
                         certificate: give the CA that signed it with sslrootcert=FILE (PEM)"
                            .into(),
                    ));
                }
            }
        }
        Ok(roots)
    }
}

/// The certificates of the PEM file `path`, given as URL option `option`.
fn read_pem_certificates(
    path: &std::path::Path,
    option: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| {
            invalid(format!(
                "cannot read the {option} file {} ({e}): give a readable PEM file with the \
                 certificate(s) it names (see the README's --index TLS options)",
                path.display()
            ))
        })?;
    if certs.is_empty() && option == "sslcert" {
        return Err(invalid(format!(
            "the sslcert file {} holds no certificate: give a PEM file with the client \
             certificate (and its chain)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The server-certificate check where the host name is not checked: none at all for
/// `sslmode=require`/`prefer` (`chain: None`: libpq without a root file), the chain to a
/// trusted root for `verify-ca` (webpki: signatures, validity, usage; it checks the chain
/// before the name, so a name mismatch is the only error let through). The handshake
/// signatures are verified in both, so the session is bound to the key of the certificate the
/// server sent.
#[derive(Debug)]
struct NameUnchecked {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NameUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls error behind a failed connection, if TLS failed.
pub(super) fn rustls_error(e: &postgres::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        // io::Error::source skips the error it wraps: look inside.
        if let Some(r) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_the_url_and_set_what_tokio_postgres_knows() {
        let (rest, opts) =
            split("postgres://u@h/db?application_name=a%20b&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem")
                .unwrap();
        assert_eq!(
            rest,
            "postgres://u@h/db?application_name=a%20b&sslmode=require"
        );
        assert_eq!(opts.mode, Mode::VerifyFull);
        assert_eq!(opts.root_cert, Some(Roots::File("/tmp/ca.pem".into())));

        let (rest, opts) = split("postgres://u@h/db").unwrap();
        assert_eq!(rest, "postgres://u@h/db?sslmode=prefer");
        assert_eq!((opts.mode, opts.root_cert), (Mode::Prefer, None));

        let (_, opts) =
            split("postgres://u@h/db?sslrootcert=/etc/pg/ca.pem&sslmode=verify-ca").unwrap();
        assert_eq!(opts.root_cert, Some(Roots::File("/etc/pg/ca.pem".into())));
        let (_, opts) = split("postgres://u@h/db?sslmode=verify-ca&sslrootcert=system").unwrap();
        assert_eq!(
            (opts.mode, opts.root_cert),
            (Mode::VerifyCa, Some(Roots::System))
        );
        // libpq: require with a root file checks the chain.
        let (_, opts) = split("postgres://u@h/db?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert_eq!(opts.mode, Mode::VerifyCa);
        let (rest, opts) = split("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(rest, "postgres://u@h/db?sslmode=disable");
        assert_eq!(opts.mode, Mode::Disable);
    }

    #[test]
    fn unsupported_tls_options_are_refused_with_what_to_do() {
        for (url, says) in [
            ("postgres://u@h/db?sslmode=allow", "use sslmode=verify-full"),
            ("postgres://u@h/db?sslcert=c.pem", "give both, or neither"),
            ("postgres://u@h/db?sslkey=k.pem", "give both, or neither"),
            ("postgres://u@h/db?sslcrl=c.pem", "leave sslcrl out"),
        ] {
            let e = split(url).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidOption {
                        option: "index",
                        ..
                    }
                ),
                "{url}: {e:?}"
            );
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn a_missing_or_empty_root_file_is_reported_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let opts = TlsOptions {
            mode: Mode::VerifyFull,
            root_cert: Some(Roots::File(missing.clone())),
            client_cert: None,
        };
        let e = opts.connector().err().expect("refused").to_string();
        assert!(
            e.contains(&format!(
                "cannot read the sslrootcert file {}",
                missing.display()
            )) && e.contains("give a readable PEM file"),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let opts = TlsOptions {
            mode: Mode::VerifyCa,
            root_cert: Some(Roots::File(empty)),
            client_cert: None,
        };
        let e = opts.connector().err().expect("refused").to_string();
        assert!(e.contains("holds no usable CA certificate"), "{e}");
    }
}
