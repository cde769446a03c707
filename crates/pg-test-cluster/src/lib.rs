//! Test support only: a throw-away PostgreSQL cluster for the tests of a test binary.
//!
//! [`cluster`] starts one cluster per test binary on first use: `initdb` in a new temporary
//! directory (superuser `mailbackup`, password authentication with SCRAM), then `pg_ctl start`
//! on a free port of 127.0.0.1 (and a Unix socket in the same directory). No system service is
//! involved. Each test takes a database of its own with [`Cluster::new_database`].
//!
//! The cluster is run by a small `sh` watchdog that holds the read end of a pipe whose write end
//! only this process holds. When the test binary ends — normally, after a panic, or killed — the
//! pipe closes, and the watchdog stops the server (`pg_ctl stop -m immediate`) and removes the
//! directory. Nothing is left running.
//!
//! Where the binaries are: `initdb` and `pg_ctl` from `PATH`, else the newest
//! `/usr/lib/postgresql/*/bin` (the Debian `postgresql` package puts them only there). When
//! neither has them, [`cluster`] panics with a message naming `scripts/install-test-deps.sh`:
//! a missing install fails the tests, it never skips them.
//!
//! [`tls_cluster`] starts a second cluster of the same kind with TLS: `ssl = on` with a server
//! certificate for `localhost` and `127.0.0.1` signed by a throw-away test CA ([`Cluster::ca_pem`];
//! both made by `rcgen` at start), and a `pg_hba.conf` that admits TCP clients only over TLS
//! (`hostssl`; the Unix socket, used to create the test databases, stays open). Its database
//! `client_cert` ([`Cluster::client_cert_database`]) admits only clients that present a
//! certificate from the test CA for [`USER`] ([`Cluster::client_cert_pem`]; `cert`
//! authentication, no password).
//!
//! `initdb` refuses to run as root: under root (CI's shell) the watchdog runs as the `postgres`
//! user the Debian package creates, through `runuser`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The superuser of the test cluster.
pub const USER: &str = "mailbackup";

/// A running throw-away cluster (see the crate docs).
#[derive(Debug)]
pub struct Cluster {
    port: u16,
    password: String,
    dir: String,
    next_db: AtomicU32,
    /// The test CA's certificate and a client certificate when the cluster runs with TLS.
    tls: Option<TlsFiles>,
    client_cert_db: OnceLock<String>,
    // Held, never written: the watchdog stops the cluster when this closes (process exit).
    _watchdog: Mutex<(Child, ChildStdin)>,
}

const WATCHDOG: &str = r#"
set -u
# The test binary may be gone before "ready" is read: writing it must not kill this script.
trap '' PIPE
bindir="$1"; port="$2"; pw="$3"; cert="$4"; key="$5"; ca="$6"
dir=$(mktemp -d "${TMPDIR:-/tmp}/pg-test-cluster.XXXXXX") || { echo "mktemp failed"; exit 1; }
cleanup() { "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1; rm -rf "$dir"; }
printf '%s\n' "$pw" > "$dir/pw"
if ! "$bindir/initdb" -D "$dir/data" -U mailbackup --pwfile="$dir/pw" --auth=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$dir/setup.log" 2>&1; then
  echo "initdb failed:"; cat "$dir/setup.log"; rm -rf "$dir"; exit 1
fi
if [ -n "$cert" ]; then
  # TLS: the server's key readable by the server only (PostgreSQL checks), TCP only over TLS.
  (umask 077; printf '%s' "$cert" > "$dir/data/server.crt"; printf '%s' "$key" > "$dir/data/server.key"
   printf '%s' "$ca" > "$dir/data/root.crt")
  printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n" >> "$dir/data/postgresql.conf"
  printf 'local all all scram-sha-256\nhostssl client_cert all 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 scram-sha-256\n' > "$dir/data/pg_hba.conf"
fi
if ! "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off" start >>"$dir/setup.log" 2>&1; then
  echo "pg_ctl start failed:"; cat "$dir/setup.log" "$dir/server.log"; cleanup; exit 1
fi
echo "ready $dir"
read -r _ || true
cleanup
"#;

/// The cluster of this test binary, started on first call. Panics (failing the test) when
/// PostgreSQL is not installed or does not start, with what to do.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start(None))
}

/// The TLS cluster of this test binary (see the crate docs), started on first call. Panics
/// like [`cluster`].
pub fn tls_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start(Some(server_tls())))
}

/// A test CA's certificate and its key.
struct TestCa {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn test_ca(name: &str) -> TestCa {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("a self-signed CA");
    TestCa {
        cert,
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// The TLS files of a cluster, all PEM.
#[derive(Debug)]
struct TlsFiles {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn server_tls() -> TlsFiles {
    let ca = test_ca("pg-test-cluster CA");
    let key = rcgen::KeyPair::generate().expect("a server key");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server parameters");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params
        .signed_by(&key, &ca.issuer)
        .expect("a server certificate");
    let client_key = rcgen::KeyPair::generate().expect("a client key");
    let mut client =
        rcgen::CertificateParams::new(Vec::<String>::new()).expect("client parameters");
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, USER);
    let client_cert = client
        .signed_by(&client_key, &ca.issuer)
        .expect("a client certificate");
    TlsFiles {
        ca: ca.cert.pem(),
        server_cert: cert.pem(),
        server_key: key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// The certificate (PEM) of a new CA that signed nothing any cluster presents: a client that
/// trusts only it must refuse the TLS cluster.
pub fn unrelated_ca_pem() -> String {
    test_ca("unrelated test CA").cert.pem()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The directory holding `initdb` and `pg_ctl`.
pub fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    on_path.or_else(|| {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin)
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start(tls: Option<TlsFiles>) -> Cluster {
    let Some(bin) = bin_dir() else {
        panic!(
            "PostgreSQL is not installed: no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin. \
             Run `sudo bash scripts/install-test-deps.sh` (it installs the Debian postgresql package)"
        );
    };
    let port = free_port();
    let password = format!("pw-{}-{port}", std::process::id());
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh"]);
        c
    } else {
        Command::new("sh")
    };
    cmd.args(["-c", WATCHDOG, "pg-test-cluster"])
        .arg(bin.as_os_str())
        .arg(port.to_string())
        .arg(&password)
        .arg(tls.as_ref().map_or("", |t| t.server_cert.as_str()))
        .arg(tls.as_ref().map_or("", |t| t.server_key.as_str()))
        .arg(tls.as_ref().map_or("", |t| t.ca.as_str()))
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start the PostgreSQL test cluster ({e}); run `sudo bash scripts/install-test-deps.sh`"
        )
    });
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut said = Vec::new();
    let mut dir = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(d) = line.strip_prefix("ready ") {
            dir = Some(d.to_string());
            break;
        }
        said.push(line);
    }
    let Some(dir) = dir else {
        panic!(
            "the PostgreSQL test cluster did not start (binaries in {}); it said:\n{}\n\
             (run `sudo bash scripts/install-test-deps.sh` if the install is incomplete)",
            bin.display(),
            said.join("\n")
        );
    };
    Cluster {
        port,
        password,
        dir,
        next_db: AtomicU32::new(0),
        tls,
        client_cert_db: OnceLock::new(),
        _watchdog: Mutex::new((child, stdin)),
    }
}

impl Cluster {
    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of [`USER`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The cluster's directory (data, logs, Unix socket).
    pub fn dir(&self) -> &Path {
        Path::new(&self.dir)
    }

    /// The test CA's certificate (PEM) that signed the server's certificate, for
    /// [`tls_cluster`]; `None` for the plain [`cluster`].
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca.as_str())
    }

    /// A certificate (PEM) from the test CA for [`USER`], for [`tls_cluster`].
    pub fn client_cert_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.client_cert.as_str())
    }

    /// The private key (PEM) of [`Cluster::client_cert_pem`].
    pub fn client_key_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.client_key.as_str())
    }

    /// The URL of database `client_cert`, created on first call, which the [`tls_cluster`]
    /// admits only with a client certificate (see the crate docs).
    pub fn client_cert_database(&self) -> &str {
        self.client_cert_db
            .get_or_init(|| self.create_database("client_cert"))
    }

    /// The URL of database `db` (TCP on loopback, no TLS: replace `sslmode=disable` to ask
    /// for TLS on [`tls_cluster`], which refuses TCP without it).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{db}?sslmode=disable",
            self.password, self.port
        )
    }

    /// Creates an empty database of its own for one test; returns its URL.
    pub fn new_database(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("test_{n}"))
    }

    fn create_database(&self, name: &str) -> String {
        // Over the Unix socket: the TLS cluster admits TCP only over TLS.
        let mut admin = postgres::Config::new();
        admin
            .host_path(self.dir())
            .port(self.port)
            .user(USER)
            .password(&self.password)
            .dbname("postgres");
        let sql = format!("CREATE DATABASE {name}");
        // On a thread of its own: the sync client runs (and drops) a runtime of its own, which
        // tokio forbids on an async test's threads.
        std::thread::spawn(move || {
            let mut admin = admin
                .connect(postgres::NoTls)
                .expect("connect to the test cluster");
            admin.batch_execute(&sql).expect("create a test database");
        })
        .join()
        .expect("creating a test database");
        self.url(name)
    }
}
