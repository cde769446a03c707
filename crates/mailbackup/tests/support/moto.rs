//! A real S3-compatible server for tests: moto's server, `python3 -m moto.server` (PyPI `moto[server]`, installed by
//! `scripts/install-test-deps.sh`) on a free loopback port, one per test binary, stopped when
//! the test binary exits (a shell watchdog kills it once our process is gone).
//! Buckets are made, read and removed with plain HTTP requests carrying a dummy signature
//! (moto checks no signature unless told to, but treats a request without one as anonymous).

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The access key and secret the tests give (moto accepts any).
pub const ACCESS_KEY: &str = "moto-test-key";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "moto-test-secret";
/// The region of the buckets.
pub const REGION: &str = "us-east-1";

/// A signature moto does not check, so that requests are not anonymous.
const AUTH: &str = "Authorization: AWS4-HMAC-SHA256 Credential=moto-test-key/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

/// The running server.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    addr: String,
    /// The shell that runs moto and ends it after this process; it lives as long as we do.
    _watchdog: std::process::Child,
}

/// The test binary's server, started on first use. Panics, saying what to install, when
/// moto is missing: the tests never skip silently.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start)
}

fn start() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let found = Command::new("sh")
        .args(["-c", "python3 -c 'import moto.server'"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "moto is not installed for python3: run scripts/install-test-deps.sh (it runs pip install 'moto[server]')"
    );
    // The watchdog: moto runs while this test process lives, and is killed when it is gone.
    let script = format!(
        "python3 -m moto.server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
         while kill -0 {pid} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 1; done; kill $m 2>/dev/null",
        pid = std::process::id()
    );
    let watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let moto = Moto {
        endpoint: format!("http://{addr}"),
        addr,
        _watchdog: watchdog,
    };
    loop {
        if moto.request("GET", "/").is_ok_and(|(s, _)| s == 200) {
            return moto;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer on {} within 60 s",
            moto.endpoint
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Moto {
    /// One unsigned HTTP/1.1 request; the status and body.
    pub fn request(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{AUTH}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((status, out))
    }

    /// A new empty bucket with a unique name.
    pub fn bucket(&self, name: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let b = format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let (status, body) = self
            .request("PUT", &format!("/{b}"))
            .expect("create bucket");
        assert_eq!(status, 200, "create bucket {b}: {body}");
        b
    }

    /// Removes every object of a bucket, then the bucket.
    pub fn remove_bucket(&self, bucket: &str) {
        let (_, listing) = self.request("GET", &format!("/{bucket}")).expect("list");
        for key in listing.split("<Key>").skip(1) {
            let key = key.split("</Key>").next().unwrap();
            self.request("DELETE", &format!("/{bucket}/{key}"))
                .expect("delete object");
        }
        let (status, body) = self
            .request("DELETE", &format!("/{bucket}"))
            .expect("delete bucket");
        assert_eq!(status, 204, "delete bucket {bucket}: {body}");
    }

    /// The objects of a bucket: key and content, read without our code.
    pub fn objects(&self, bucket: &str) -> Vec<(String, Vec<u8>)> {
        let (_, listing) = self.request("GET", &format!("/{bucket}")).expect("list");
        let mut out = Vec::new();
        for key in listing.split("<Key>").skip(1) {
            let key = key.split("</Key>").next().unwrap().to_string();
            out.push((key.clone(), self.get_bytes(&format!("/{bucket}/{key}"))));
        }
        out.sort();
        out
    }

    fn get_bytes(&self, path: &str) -> Vec<u8> {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{AUTH}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let cut = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&raw[..cut]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "GET {path}: {head}");
        assert!(
            !head.contains("transfer-encoding: chunked"),
            "GET {path}: chunked answers are not read here"
        );
        raw[cut..].to_vec()
    }

    /// Asserts that the bucket holds exactly `expected` below `prefix`, under the keys of the
    /// local layout, each object the backup header then Graph's MIME byte for byte.
    pub fn assert_bucket_holds(
        &self,
        bucket: &str,
        prefix: &str,
        expected: &[graph_emulator::ExpectedMessage],
    ) {
        crate::stored::assert_holds(&self.objects(bucket), prefix, expected);
    }

    /// `s3://BUCKET/PREFIX?endpoint=...` for this server.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint={}&region={REGION}",
            self.endpoint
        )
    }

    /// The environment a `mailbackup` process needs to reach this server.
    pub fn env(&self) -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", REGION),
        ]
    }
}
