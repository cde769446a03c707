//! End to end: nothing is acknowledged to the partner before what it acknowledges is durable.
//! A transport on each side looks at every frame as it is written and checks, at that very
//! moment, the side's journal (a second connection to the same SQLite file): an RTR goes out
//! only once the EERP it answers is recorded, an EFPA only once the file is complete in the
//! journal and under its final name. A process killed right after the write would otherwise
//! leave the partner believing something we lost. Real sockets on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use oftp::config::SessionLimits;
use oftp::journal::{Direction, FileKey, Journal, ReceiveState, SqliteJournal};
use oftp::oftp_proto::codec::code;
use oftp::oftp_proto::sth;
use oftp::stamp::FileStampExt as _;
use oftp::transport::Acceptor;
use oftp::{FileOutcome, OutgoingFile};
use tokio::net::TcpStream;

/// What a probe checks when a frame with this command code is written; `Err` says what was
/// not durable yet.
type Check = Arc<dyn Fn(u8) -> Result<(), String> + Send + Sync>;

/// Checks made and problems found, per side.
#[derive(Default)]
struct Findings {
    /// Command codes of the frames written, in order.
    written: Vec<u8>,
    problems: Vec<String>,
}

/// A transport that runs `check` for every frame written through it.
struct Probe<T> {
    inner: T,
    /// Written bytes not yet making up a whole frame.
    pending: Vec<u8>,
    check: Check,
    findings: Arc<Mutex<Findings>>,
}

impl<T> Probe<T> {
    fn new(inner: T, check: Check, findings: Arc<Mutex<Findings>>) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            check,
            findings,
        }
    }

    fn written(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Ok(Some((payload, used))) = sth::decode_frame(&self.pending) {
            let cmd = self.pending[payload.start];
            let checked = (self.check)(cmd);
            let mut f = self.findings.lock().unwrap();
            f.written.push(cmd);
            if let Err(problem) = checked {
                f.problems.push(problem);
            }
            drop(f);
            self.pending.drain(..used);
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Probe<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Probe<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            // Checked right when the bytes leave: the driver has done nothing since.
            self.written(&buf[..*n]);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts plain TCP connections wrapped in a [`Probe`].
struct ProbingAcceptor {
    check: Check,
    findings: Arc<Mutex<Findings>>,
}

impl Acceptor for ProbingAcceptor {
    type Stream = Probe<TcpStream>;
    async fn accept(&self, tcp: TcpStream) -> std::io::Result<Probe<TcpStream>> {
        Ok(Probe::new(tcp, self.check.clone(), self.findings.clone()))
    }
}

/// The check of one side: each RTR needs one more received end response in `journal` than
/// the RTRs before it; an EFPA needs `efpa_file` (partner, key, final file) complete.
fn durable_before_acknowledged(
    journal: SqliteJournal,
    efpa_file: Option<(&'static str, FileKey, std::path::PathBuf)>,
) -> Check {
    let rtrs = Mutex::new(0u64);
    Arc::new(move |cmd| match cmd {
        code::RTR => {
            let mut n = rtrs.lock().unwrap();
            *n += 1;
            let recorded = journal.end_response_count(Direction::Received).unwrap();
            if recorded < *n {
                return Err(format!(
                    "RTR #{n} written with {recorded} end responses in the journal"
                ));
            }
            Ok(())
        }
        code::EFPA => {
            let Some((partner, key, path)) = &efpa_file else {
                return Ok(());
            };
            let entry = journal.received(partner, key).unwrap();
            match entry {
                Some(e) if e.state == ReceiveState::Complete && path.is_file() => Ok(()),
                other => Err(format!(
                    "EFPA written with the reception {:?} and {} present: {}",
                    other.map(|e| e.state),
                    path.display(),
                    path.is_file()
                )),
            }
        }
        _ => Ok(()),
    })
}

#[tokio::test]
async fn rtr_and_efpa_go_out_only_after_the_journal_has_recorded_what_they_acknowledge() {
    init_tracing();
    let sdir = tempfile::tempdir().unwrap();
    let cdir = tempfile::tempdir().unwrap();
    // The client sends A (EFPA and then EERP from the server, RTR from the client); the server
    // sends B from its outbox (EFPA and EERP from the client, RTR from the server).
    let stamp = oftp::stamp::FileStamp::parse("202606070809100003").unwrap();
    let a_key = FileKey::new(CLIENT_SSID.parse().unwrap(), "A.EDI", stamp);
    let a_final = sdir.path().join("inbox").join("client").join("A.EDI");
    let outbox = sdir.path().join("outbox").join("client");
    std::fs::create_dir_all(&outbox).unwrap();
    let b_data = content(300_000, 5);
    std::fs::write(outbox.join("b.bin"), &b_data).unwrap();

    let server_findings = Arc::new(Mutex::new(Findings::default()));
    let server_check = durable_before_acknowledged(
        SqliteJournal::open_in_dir(sdir.path()).unwrap(),
        Some((CLIENT_SSID, a_key.clone(), a_final.clone())),
    );
    let running = oftp::Server::new(server_config(sdir.path()))
        .unwrap()
        .acceptor(ProbingAcceptor {
            check: server_check,
            findings: server_findings.clone(),
        })
        .start()
        .await
        .unwrap();

    let a = cdir.path().join("a.edi");
    let a_data = content(200_000, 4);
    std::fs::write(&a, &a_data).unwrap();
    let c = client(cdir.path(), SessionLimits::default());
    let client_findings = Arc::new(Mutex::new(Findings::default()));
    let client_check =
        durable_before_acknowledged(SqliteJournal::open_in_dir(cdir.path()).unwrap(), None);
    let tcp = TcpStream::connect(running.local_addr().unwrap())
        .await
        .unwrap();
    let report = c
        .run_over(
            Probe::new(tcp, client_check, client_findings.clone()),
            running.local_addr().unwrap(),
            vec![OutgoingFile::new(&a).virtual_name("A.EDI").stamp(stamp)],
        )
        .await
        .unwrap();
    running.shutdown().await;

    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert_eq!(std::fs::read(&a_final).unwrap(), a_data);
    assert_eq!(report.received.len(), 1, "{report:?}");
    assert_eq!(std::fs::read(&report.received[0]).unwrap(), b_data);
    let mut problems = Vec::new();
    for (side, findings) in [("client", &client_findings), ("server", &server_findings)] {
        let f = findings.lock().unwrap();
        // The checks ran: each side answered one EERP with RTR; the server confirmed A.
        assert_eq!(
            f.written.iter().filter(|c| **c == code::RTR).count(),
            1,
            "{side} wrote {:?}",
            String::from_utf8_lossy(&f.written)
        );
        problems.extend(f.problems.iter().map(|p| format!("{side}: {p}")));
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        server_findings
            .lock()
            .unwrap()
            .written
            .contains(&code::EFPA)
    );
}

#[tokio::test]
async fn an_eerp_the_journal_cannot_record_is_not_acknowledged_and_comes_again() {
    init_tracing();
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("order.edi");
    std::fs::write(&f, b"UNB+order").unwrap();
    let c = client(dir.path(), SessionLimits::default());
    // The client's journal refuses to record end responses (as with a full disk).
    let db = rusqlite::Connection::open(dir.path().join(oftp::journal::JOURNAL_FILE)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON end_responses
         BEGIN SELECT RAISE(FAIL, 'disk full (test)'); END;",
    )
    .unwrap();

    let report = c
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert_eq!(
        report.files[0].1,
        FileOutcome::AwaitingEndResponse,
        "{report:?}"
    );
    assert!(
        report
            .ended
            .description
            .contains("cannot record the end response"),
        "{:?}",
        report.ended
    );
    // No RTR reached the server: the EERP is still due.
    assert_eq!(
        server
            .running
            .journal()
            .pending_end_responses(CLIENT_SSID)
            .unwrap()
            .len(),
        1
    );

    // Once the journal works again, the next session gets it.
    db.execute_batch("DROP TRIGGER refuse").unwrap();
    let report = c.run(&server.addr(), vec![]).await.unwrap();
    assert_eq!(report.earlier.len(), 1, "{report:?}");
    assert!(report.earlier[0].response.negative.is_none());
    let c2 = client(dir.path(), SessionLimits::default());
    let report = c2
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert!(
        server
            .running
            .journal()
            .pending_end_responses(CLIENT_SSID)
            .unwrap()
            .is_empty()
    );
    server.running.shutdown().await;
}
