//! Several `mailbackup run --all-users` workers sharing one tenant through mailbox leases in a
//! throw-away PostgreSQL cluster (`pg-test-cluster`), against the Graph emulator, writing to one
//! local folder: a worker killed with SIGKILL mid-run has its mailboxes finished by the others,
//! every mailbox ends exactly as the emulator holds it, and only what was in flight at the kill
//! is downloaded twice; a worker stopped with SIGTERM releases its leases and says so; workers
//! keep together to the app's request budget, and a dead one's share goes to the others.

use graph_emulator::{Emulator, EmulatorConfig, EndpointKind, MailboxSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

mod common;

use common::*;

const LEASE_SECONDS: &str = "2";

async fn tenant(mailboxes: usize, messages: usize, latency: Duration) -> Emulator {
    Emulator::start(
        EmulatorConfig::default()
            .with_mailboxes(
                (0..mailboxes)
                    .map(|i| {
                        MailboxSpec::new(&format!("user{i:02}@emulator.test"))
                            .messages(messages)
                            .seed(100 + i as u64)
                    })
                    .collect(),
            )
            .with_latency(latency),
    )
    .await
    .unwrap()
}

/// A worker process: `run --all-users` on the shared index, its own lock folder, logs to a file.
fn worker(emu: &Emulator, token: &str, data: &Path, url: &str, id: &str) -> Child {
    worker_with(
        emu,
        token,
        data,
        url,
        id,
        &["--lease-seconds", LEASE_SECONDS],
    )
}

/// [`worker`] with other lease and budget options.
fn worker_with(
    emu: &Emulator,
    token: &str,
    data: &Path,
    url: &str,
    id: &str,
    options: &[&str],
) -> Child {
    let cluster = pg_test_cluster::cluster();
    let log = std::fs::File::create(data.join(format!(".meta/{id}.log"))).unwrap();
    let out = std::fs::File::create(data.join(format!(".meta/{id}.out"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_mailbackup"))
        .env("MAILBACKUP_AUTHORIZATION", format!("Bearer {token}"))
        .env("PGPASSWORD", cluster.password())
        .env_remove("RUST_LOG")
        .arg("run")
        .arg("-d")
        .arg(data)
        .arg("--working-folder")
        .arg(data.join(".meta").join(id))
        .args(["--graph-url", &emu.graph_url(), "--all-users"])
        .args([
            "--index",
            &url.replace(&format!(":{}@", cluster.password()), "@"),
        ])
        .args(["--worker-id", id])
        .args(options)
        .args(["--parallel-mailboxes", "2", "--retry-interval", "0.05"])
        .args(["--no-progress", "--log-level", "info"])
        .stdout(out)
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn wait(mut child: Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
}

fn read(data: &Path, name: &str) -> String {
    std::fs::read_to_string(data.join(".meta").join(name)).unwrap_or_default()
}

/// What `status` prints for the shared index.
async fn status(data: &Path, url: &str) -> String {
    let mut c = bin();
    c.args(["status", "-d"]).arg(data).args(["--index", url]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Every mailbox's folder holds exactly the emulator's messages, byte for byte, and nothing
/// else (no partial file either).
fn assert_backup_matches(data: &Path, emu: &Emulator) {
    for mb in emu.mailboxes() {
        let upn = mb.user_principal_name().to_string();
        let root = data.join(&upn);
        let leftovers = files_below(&root, |_| true, durable_write::is_temp);
        assert!(leftovers.is_empty(), "{upn}: partial files {leftovers:?}");
        let mut saved = BTreeSet::new();
        for f in eml_files(&root) {
            let bytes = std::fs::read(&f).unwrap();
            let cut = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
            let h = mailbackup::BackupHeader::parse(std::str::from_utf8(&bytes[..cut]).unwrap())
                .unwrap_or_else(|| panic!("{} has no backup header", f.display()));
            assert!(
                bytes[cut..] == mb.mime(&h.id).unwrap()[..],
                "{} differs from {upn}'s message",
                f.display()
            );
            assert!(saved.insert(h.id.clone()), "{upn}: {} saved twice", h.id);
        }
        let truth: BTreeSet<String> = mb.messages().into_iter().map(|m| m.immutable_id).collect();
        assert_eq!(saved, truth, "{upn}: the backup is the mailbox");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_thirty_mailboxes_and_finish_those_of_one_killed_mid_run() {
    let (mailboxes, messages) = (30, 30);
    let emu = tenant(mailboxes, messages, Duration::from_millis(10)).await;
    let token = app_token(&emu).await;
    let url = pg_test_cluster::cluster().new_database();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    std::fs::create_dir_all(data.join(".meta")).unwrap();

    let victim = worker(&emu, &token, data, &url, "w1");
    let w2 = worker(&emu, &token, data, &url, "w2");
    let w3 = worker(&emu, &token, data, &url, "w3");
    // Well into the run (a third of the messages), the first worker is killed.
    tokio::time::timeout(
        Duration::from_secs(40),
        emu.wait_for_requests(
            EndpointKind::MessageValue,
            (mailboxes * messages / 3) as u64,
        ),
    )
    .await
    .expect("the workers did not get going");
    let mut victim = victim;
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();

    let (s2, s3) = tokio::join!(wait(w2), wait(w3));
    let (log2, log3) = (read(data, "w2.log"), read(data, "w3.log"));
    let logs = format!(
        "w1:\n{}\nw2:\n{log2}\n{}\nw3:\n{log3}\n{}",
        read(data, "w1.log"),
        read(data, "w2.out"),
        read(data, "w3.out")
    );
    assert!(s2.success() && s3.success(), "{logs}");
    assert_backup_matches(data, &emu);

    // The killed worker's mailboxes were taken over by the others ...
    let taken_over: BTreeSet<String> = format!("{log2}{log3}")
        .lines()
        .filter(|l| l.contains("taken over from worker w1"))
        .filter_map(|l| l.split(": taken over").next()?.split_whitespace().last())
        .map(str::to_string)
        .collect();
    assert!(
        !taken_over.is_empty() && taken_over.len() <= 2,
        "w1 held one or two mailboxes when it was killed: {taken_over:?}\n{logs}"
    );
    // ... and only what it had in flight was downloaded twice: messages of its mailboxes whose
    // download had started and that were not yet stored and recorded, at most 8 per mailbox
    // (a mailbox's bound on those, twice its 4 request permits, README "Several workers on one
    // tenant").
    let stats = emu.stats();
    let twice: Vec<_> = stats.downloads.iter().filter(|(_, n)| **n > 1).collect();
    let mut again: BTreeMap<&str, usize> = BTreeMap::new();
    for ((upn, _), _) in &twice {
        *again.entry(upn.as_str()).or_default() += 1;
    }
    eprintln!("downloaded again, per mailbox: {again:?} (taken over: {taken_over:?})");
    assert!(
        twice
            .iter()
            .all(|((upn, _), n)| **n == 2 && taken_over.contains(upn))
            && again.values().all(|n| *n <= 8),
        "downloaded more than once (at most 8 per mailbox the killed worker held): {again:?} \
         {twice:?} (taken over: {taken_over:?})"
    );
    let downloads: u64 = stats.downloads.values().sum();
    assert_eq!(
        downloads,
        (mailboxes * messages + twice.len()) as u64,
        "every message downloaded, once"
    );
    // Each mailbox was backed up by one worker at a time: the emulator never saw more than
    // Graph's 4 requests at once in any mailbox.
    assert!(stats.max_concurrency <= 4, "{stats:?}");

    let out = status(data, &url).await;
    assert!(out.contains("worker w1: dead (no heartbeat since"), "{out}");
    assert!(out.contains("worker w2: finished"), "{out}");
    assert!(out.contains("worker w3: finished"), "{out}");
    assert!(
        !out.contains("held since"),
        "nothing is held any more: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_leases_and_ends_like_ctrl_c() {
    let (mailboxes, messages) = (3, 60);
    let emu = tenant(mailboxes, messages, Duration::from_millis(40)).await;
    let token = app_token(&emu).await;
    let url = pg_test_cluster::cluster().new_database();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    std::fs::create_dir_all(data.join(".meta")).unwrap();

    let child = worker(&emu, &token, data, &url, "k8s-pod-0");
    tokio::time::timeout(
        Duration::from_secs(30),
        emu.wait_for_requests(EndpointKind::MessageValue, 20),
    )
    .await
    .expect("the worker did not get going");
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let ended = wait(child).await;
    let (log, out) = (read(data, "k8s-pod-0.log"), read(data, "k8s-pod-0.out"));
    let all = format!("{out}\n{log}");
    assert_eq!(ended.code(), Some(130), "{all}");
    assert!(log.contains("aborting (SIGTERM)"), "{all}");
    assert!(
        log.contains("releasing this worker's mailbox leases"),
        "{all}"
    );
    assert!(
        out.contains("backup aborted (run again to continue)"),
        "{all}"
    );

    // Its leases are released (not left to expire), and it is recorded as finished.
    let status_out = status(data, &url).await;
    assert!(
        status_out.contains("worker k8s-pod-0: finished"),
        "{status_out}"
    );
    assert!(!status_out.contains("held since"), "{status_out}");

    // The next worker starts at once (no lease to wait out) and completes the backup without
    // downloading anything twice: the abort let the requests in flight finish and saved them.
    let started = std::time::Instant::now();
    let next = worker(&emu, &token, data, &url, "k8s-pod-1");
    let s = wait(next).await;
    assert!(s.success(), "{}", read(data, "k8s-pod-1.log"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_backup_matches(data, &emu);
    let stats = emu.stats();
    assert!(
        stats.downloads.values().all(|n| *n == 1),
        "downloaded twice: {:?}",
        stats
            .downloads
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        stats.downloads.len(),
        mailboxes * messages,
        "every message downloaded"
    );
}

/// Graph requests the emulator has answered so far (sign-in requests aside).
fn graph_requests(emu: &Emulator) -> u64 {
    let stats = emu.stats();
    let sign_in: u64 = [
        EndpointKind::Token,
        EndpointKind::Authorize,
        EndpointKind::DeviceCode,
        EndpointKind::IdentityOther,
    ]
    .iter()
    .map(|k| stats.count(*k))
    .sum();
    stats.total() - sign_in
}

/// Adds `(time since started, Graph requests)` to `samples` every 50 ms until `until`.
async fn sample(
    emu: &Emulator,
    started: tokio::time::Instant,
    samples: &mut Vec<(Duration, u64)>,
    until: Duration,
) {
    while started.elapsed() < until {
        samples.push((started.elapsed(), graph_requests(emu)));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_keep_together_to_the_app_budget_and_a_dead_ones_share_goes_to_the_other() {
    const BUDGET: f64 = 20.0;
    let lease = Duration::from_secs(4);
    let emu = tenant(4, 150, Duration::ZERO).await;
    let token = app_token(&emu).await;
    let url = pg_test_cluster::cluster().new_database();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    std::fs::create_dir_all(data.join(".meta")).unwrap();
    let options = ["--lease-seconds", "4", "--tenant-requests-per-second", "20"];

    let started = tokio::time::Instant::now();
    let mut w1 = worker_with(&emu, &token, data, &url, "b1", &options);
    let mut w2 = worker_with(&emu, &token, data, &url, "b2", &options);
    // Graph requests answered, sampled every 50 ms.
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    sample(&emu, started, &mut samples, Duration::from_secs(6)).await;
    w1.kill().unwrap(); // SIGKILL: no clean end, its row expires after the lease
    w1.wait().unwrap();
    let killed = started.elapsed();
    // Its heartbeat expires within a lease; the other recounts within a quarter of one more.
    let alone = killed + lease + lease / 4 + Duration::from_millis(1500);
    sample(
        &emu,
        started,
        &mut samples,
        alone + Duration::from_millis(3300),
    )
    .await;
    w2.kill().unwrap();
    w2.wait().unwrap();
    let logs = format!(
        "b1:\n{}\nb2:\n{}",
        read(data, "b1.log"),
        read(data, "b2.log")
    );

    // Together they never sent more than the budget in any second (a quarter of it spare for
    // the timing of two processes on a loaded machine).
    let mut worst = (Duration::ZERO, 0);
    for (i, (t, n)) in samples.iter().enumerate() {
        let within = samples[i..]
            .iter()
            .take_while(|(u, _)| *u <= *t + Duration::from_secs(1))
            .last()
            .map_or(0, |(_, m)| m - n);
        if within > worst.1 {
            worst = (*t, within);
        }
    }
    assert!(
        (worst.1 as f64) <= BUDGET * 1.25,
        "{} Graph requests in the second from {:?}, over the budget of {BUDGET}/s\n{logs}",
        worst.1,
        worst.0
    );
    // Once the dead worker's heartbeat expired, the other used the whole budget.
    let at = |when: Duration| {
        samples
            .iter()
            .find(|(t, _)| *t >= when)
            .map_or(0, |(_, n)| *n)
    };
    let rate = (at(alone + Duration::from_secs(3)) - at(alone)) as f64 / 3.0;
    eprintln!(
        "most Graph requests in one second: {} (from {:?}); the survivor alone: {rate:.1}/s",
        worst.1, worst.0
    );
    assert!(
        rate >= BUDGET * 0.75,
        "alone, the other worker sent {rate:.1} requests/s of the budget of {BUDGET}\n{logs}"
    );
    assert!(
        read(data, "b2.log")
            .contains("1 live worker(s); this one's share of the app's budget is 20 requests/s"),
        "{logs}"
    );
}
