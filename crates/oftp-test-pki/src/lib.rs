//! Test support for the OFTP security tests (oftp-security, oftp): a CA and leaf certificates
//! made with rcgen in a tempdir, CRLs, a tiny HTTP server that serves CRLs for distribution
//! point tests, and a runner for the `openssl` command used as an independent implementation. Panics on failure, as test helpers do; never used by shipped code.
#![allow(missing_docs)]
// `Pki::new()` generates keys and a CA in a fresh temp dir; a `Default` would hide that cost.
#![allow(clippy::new_without_default)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber, date_time_ymd,
};

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: u64,
}

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub ca: PathBuf,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    pub fn new() -> Pki {
        Pki::named("Test OFTP CA")
    }

    /// A root CA with this common name (another `Pki::new()` has the same name but another key).
    pub fn named(cn: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationName, "Odette Test");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2045, 1, 1);
        let ca_cert = p.self_signed(&ca_key).unwrap();
        let ca_pem = ca_cert.pem();
        let ca = write(dir.path(), "ca.pem", &ca_pem);
        Pki {
            dir,
            ca_pem,
            ca,
            ca_params: p,
            ca_key,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An intermediate CA issued by this CA; its leaves chain through it.
    pub fn intermediate(&self, cn: &str) -> Pki {
        self.intermediate_with_dp(cn, None, &[])
    }

    /// Like [`Pki::intermediate`] with a fixed serial (so a CRL of this CA can revoke it) and a
    /// cRLDistributionPoints extension naming `dp_uris` (none when empty).
    pub fn intermediate_with_dp(&self, cn: &str, serial: Option<u64>, dp_uris: &[&str]) -> Pki {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2044, 1, 1);
        p.use_authority_key_identifier_extension = true;
        p.serial_number = serial.map(SerialNumber::from);
        if !dp_uris.is_empty() {
            p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: dp_uris.iter().map(|u| u.to_string()).collect(),
            }];
        }
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = cert.pem();
        let ca = write(dir.path(), "intermediate.pem", &ca_pem);
        Pki {
            dir,
            ca_pem,
            ca,
            ca_params: p,
            ca_key: key,
        }
    }

    /// A leaf issued by the CA, valid 2020-2040 unless `expired`.
    pub fn leaf(&self, cn: &str, serial: u64, expired: bool) -> Leaf {
        self.leaf_with_dp(cn, serial, expired, &[])
    }

    /// Like [`Pki::leaf`] with a cRLDistributionPoints extension naming `dp_uris` (one
    /// distribution point holding them all).
    pub fn leaf_with_dp(&self, cn: &str, serial: u64, expired: bool, dp_uris: &[&str]) -> Leaf {
        let not_after = if expired { (2021, 1, 1) } else { (2040, 1, 1) };
        self.leaf_until(cn, serial, not_after, dp_uris)
    }

    /// A leaf issued by the CA, valid from 2020-01-01 to the end of the day `(year, month,
    /// day)` (UTC midnight at its start): a certificate that expires when a test wants.
    pub fn leaf_expiring(&self, cn: &str, serial: u64, (y, m, d): (i32, u8, u8)) -> Leaf {
        self.leaf_until(cn, serial, (y, m, d), &[])
    }

    fn leaf_until(
        &self,
        cn: &str,
        serial: u64,
        (y, m, d): (i32, u8, u8),
        dp_uris: &[&str],
    ) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut p = CertificateParams::new(vec![format!("{}.example", cn.to_lowercase())]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, "ACME");
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(y, m, d);
        p.use_authority_key_identifier_extension = true;
        // Writes basicConstraints CA:FALSE and a subjectKeyIdentifier (needed for `-keyid`).
        p.is_ca = IsCa::ExplicitNoCa;
        if !dp_uris.is_empty() {
            p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: dp_uris.iter().map(|u| u.to_string()).collect(),
            }];
        }
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let slug = cn.replace(' ', "_");
        Leaf {
            cert: write(self.dir.path(), &format!("{slug}.pem"), &cert_pem),
            key: write(self.dir.path(), &format!("{slug}.key"), &key_pem),
            cert_pem,
            key_pem,
            serial,
        }
    }

    /// A CRL from the CA revoking `serials` (DER), written to `crl.der`.
    pub fn crl(&self, serials: &[u64]) -> PathBuf {
        let p = self.path("crl.der");
        std::fs::write(&p, self.crl_der(serials)).unwrap();
        p
    }

    /// A CRL from the CA revoking `serials`, as DER bytes (thisUpdate 2024, nextUpdate 2044).
    pub fn crl_der(&self, serials: &[u64]) -> Vec<u8> {
        let params = rcgen::CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2044, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        params.signed_by(&issuer).unwrap().der().to_vec()
    }
}

/// A canned HTTP answer of [`HttpServer`].
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

impl Response {
    /// 200 with this body.
    pub fn ok(body: Vec<u8>) -> Response {
        Response {
            status: 200,
            location: None,
            body,
        }
    }

    /// An empty answer with this status.
    pub fn status(status: u16) -> Response {
        Response {
            status,
            location: None,
            body: Vec::new(),
        }
    }

    /// 302 to `location`.
    pub fn redirect(location: &str) -> Response {
        Response {
            status: 302,
            location: Some(location.to_string()),
            body: Vec::new(),
        }
    }
}

type Shared<T> = Arc<Mutex<HashMap<String, T>>>;

/// A minimal HTTP/1.1 server on 127.0.0.1 (port 0) for CRL distribution point tests: one
/// thread, one request per connection, answers by path from a table the test can change,
/// 404 for unknown paths, and counts requests per path. Stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    routes: Shared<Response>,
    counts: Shared<usize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Shared<Response> = Arc::default();
        let counts: Shared<usize> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, counts, stop) = (routes.clone(), counts.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: a test makes a handful of requests.
                for conn in listener.incoming().take(10_000) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        serve(conn, &routes, &counts);
                    }
                }
            })
        };
        HttpServer {
            addr,
            routes,
            counts,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sets the answer for `path`.
    pub fn set(&self, path: &str, response: Response) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), response);
    }

    /// Requests received for `path` so far.
    pub fn requests(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, routes: &Shared<Response>, counts: &Shared<usize>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
    let response = routes
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or_else(|| Response::status(404));
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    if let Some(l) = &response.location {
        out.push_str(&format!("Location: {l}\r\n"));
    }
    out.push_str("\r\n");
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.write_all(&response.body);
    let _ = conn.flush();
}

/// An `http://127.0.0.1:PORT` URL + `path` where nothing listens (connection refused).
pub fn closed_port_url(path: &str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}{path}")
}

pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// Runs `openssl` with the given arguments; panics with stderr on failure.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Like [`openssl`] but returns whether it succeeded.
pub fn openssl_ok(args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
