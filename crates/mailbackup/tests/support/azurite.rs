//! A real Azure Blob server for tests: Azurite's blob service (`azurite-blob`, npm `azurite`,
//! installed by `scripts/install-test-deps.sh`) on a free loopback port, in memory, one per test
//! binary, stopped when the test binary exits (a shell watchdog kills it once our process is
//! gone). Containers are made, read and removed with plain HTTP requests signed here with the
//! emulator's well-known account key (Shared Key), without `object_store`.

#![allow(dead_code, unreachable_pub)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Azurite's well-known development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key (public: <https://learn.microsoft.com/azure/storage/common/storage-use-azurite>).
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const API_VERSION: &str = "2021-08-06";

/// The running server.
pub struct Azurite {
    /// `http://127.0.0.1:PORT`, the blob service.
    pub endpoint: String,
    addr: String,
    /// The shell that runs Azurite and ends it after this process; it lives as long as we do.
    watchdog: std::process::Child,
}

/// An HTTP answer: status, lower-cased head, body.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// The test binary's server, started on first use. Panics, saying what to install, when
/// Azurite is missing: the tests never skip silently.
pub fn azurite() -> &'static Azurite {
    static AZURITE: OnceLock<Azurite> = OnceLock::new();
    AZURITE.get_or_init(start)
}

/// `azurite-blob` on PATH, else where `scripts/install-test-deps.sh` puts it
/// (`$HOME/.local/bin`, npm's `--prefix`).
fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("azurite-blob"));
    let local = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/bin/azurite-blob"));
    on_path.chain(local).find(|p| p.is_file())
}

fn start() -> Azurite {
    let bin = binary().unwrap_or_else(|| {
        panic!(
            "Azurite is not installed (no azurite-blob on PATH or in ~/.local/bin): run scripts/install-test-deps.sh (it runs npm install --global --prefix ~/.local azurite)"
        )
    });
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The watchdog: Azurite runs while this test process lives, and is killed when it is gone.
    let script = format!(
        "'{bin}' --blobHost 127.0.0.1 --blobPort {port} --inMemoryPersistence --skipApiVersionCheck \
         --disableTelemetry --silent >/dev/null 2>&1 & m=$!; \
         while kill -0 {pid} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 1; done; kill $m 2>/dev/null",
        bin = bin.display(),
        pid = std::process::id()
    );
    let watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("start azurite-blob");
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut azurite = Azurite {
        endpoint: format!("http://{addr}"),
        addr,
        watchdog,
    };
    loop {
        assert!(
            azurite.watchdog.try_wait().unwrap().is_none(),
            "azurite-blob ({}) exited at start: run it by hand to see why, or run scripts/install-test-deps.sh",
            bin.display()
        );
        // The account's container listing answers once the service is up.
        if azurite
            .request("GET", "", "comp=list", &[], b"")
            .is_ok_and(|a| a.status == 200)
        {
            return azurite;
        }
        assert!(
            Instant::now() < deadline,
            "azurite-blob did not answer on {} within 60 s",
            azurite.endpoint
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Shared Key signature of a request (Azure Storage's "Authorize with Shared Key"): the path is
/// below the account (`/devstoreaccount1/...` in the emulator's path-style URLs).
fn sign(method: &str, path: &str, query: &str, headers: &[(String, String)], len: usize) -> String {
    let mut canon_headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .cloned()
        .collect();
    canon_headers.sort();
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
        .collect();
    pairs.sort();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let mut s = format!(
        "{method}\n\n\n{}\n\n{}\n\n\n\n\n\n\n",
        if len == 0 {
            String::new()
        } else {
            len.to_string()
        },
        header("content-type"),
    );
    for (k, v) in &canon_headers {
        s.push_str(&format!("{k}:{v}\n"));
    }
    s.push_str(&format!("/{ACCOUNT}{path}"));
    for (k, v) in &pairs {
        s.push_str(&format!("\n{k}:{v}"));
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &B64.decode(KEY).unwrap());
    let tag = aws_lc_rs::hmac::sign(&key, s.as_bytes());
    format!("SharedKey {ACCOUNT}:{}", B64.encode(tag.as_ref()))
}

impl Azurite {
    /// One signed HTTP/1.1 request to `/devstoreaccount1{rest}?{query}`.
    pub fn request(
        &self,
        method: &str,
        rest: &str,
        query: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Answer> {
        let path = format!("/{ACCOUNT}{rest}");
        let mut headers: Vec<(String, String)> = vec![
            (
                "x-ms-date".into(),
                httpdate::fmt_http_date(std::time::SystemTime::now()),
            ),
            ("x-ms-version".into(), API_VERSION.into()),
        ];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let auth = sign(method, &path, query, &headers, body.len());
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let target = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in &headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let cut = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no HTTP head"))?
            + 4;
        let head = String::from_utf8_lossy(&raw[..cut]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(&raw[cut..])
        } else {
            raw[cut..].to_vec()
        };
        Ok(Answer { status, head, body })
    }

    /// A new empty container with a unique name.
    pub fn container(&self, name: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let c = format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let a = self
            .request("PUT", &format!("/{c}"), "restype=container", &[], b"")
            .expect("create container");
        assert_eq!(
            a.status,
            201,
            "create container {c}: {}",
            String::from_utf8_lossy(&a.body)
        );
        c
    }

    /// Removes a container and its blobs.
    pub fn remove_container(&self, container: &str) {
        let a = self
            .request(
                "DELETE",
                &format!("/{container}"),
                "restype=container",
                &[],
                b"",
            )
            .expect("delete container");
        assert_eq!(a.status, 202, "delete container {container}");
    }

    /// The names of a container's blobs.
    pub fn names(&self, container: &str) -> Vec<String> {
        let a = self
            .request(
                "GET",
                &format!("/{container}"),
                "restype=container&comp=list",
                &[],
                b"",
            )
            .expect("list");
        assert_eq!(a.status, 200, "list {container}");
        let xml = String::from_utf8_lossy(&a.body).into_owned();
        let mut out: Vec<String> = xml
            .split("<Name>")
            .skip(1)
            .map(|n| n.split("</Name>").next().unwrap().to_string())
            .collect();
        out.sort();
        out
    }

    /// The blobs of a container: name and content, read without our code.
    pub fn blobs(&self, container: &str) -> Vec<(String, Vec<u8>)> {
        self.names(container)
            .into_iter()
            .map(|n| {
                let a = self
                    .request("GET", &format!("/{container}/{n}"), "", &[], b"")
                    .expect("get blob");
                assert_eq!(a.status, 200, "GET {container}/{n}: {}", a.head);
                (n, a.body)
            })
            .collect()
    }

    /// How many committed blocks a blob has (0 for a blob written in one request).
    pub fn committed_blocks(&self, container: &str, blob: &str) -> usize {
        let a = self
            .request(
                "GET",
                &format!("/{container}/{blob}"),
                "comp=blocklist&blocklisttype=committed",
                &[],
                b"",
            )
            .expect("block list");
        assert_eq!(
            a.status, 200,
            "block list of {container}/{blob}: {}",
            a.head
        );
        String::from_utf8_lossy(&a.body).matches("<Block>").count()
    }

    /// Asserts that the container holds exactly `expected` below `prefix`, under the keys of
    /// the local layout, each blob the backup header then Graph's MIME byte for byte.
    pub fn assert_container_holds(
        &self,
        container: &str,
        prefix: &str,
        expected: &[graph_emulator::ExpectedMessage],
    ) {
        crate::stored::assert_holds(&self.blobs(container), prefix, expected);
    }

    /// `az://CONTAINER/PREFIX?use_emulator=true&endpoint=...` for this server: the documented
    /// way to reach Azurite (its well-known account and key).
    pub fn url(&self, container: &str, prefix: &str) -> String {
        format!(
            "az://{container}/{prefix}?use_emulator=true&endpoint={}",
            self.endpoint
        )
    }
}

/// The body of a `Transfer-Encoding: chunked` answer.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap().trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}
