//! Each file's line from `oftp send` names the step at which it stopped (the offer refused
//! with an SFNA or ended by an ESID, the transfer cut, the end of file unanswered or refused
//! with an EFNA, a NERP, no EERP), against the scripted partner of `common::scripted` on
//! 127.0.0.1, which answers each offered file as the test says. Exit code 3: the session ran.

use std::path::Path;
use std::process::Output;

mod common;
use common::scripted::{self, Answer, Scripted};
use common::{call_args, oftp, texts};

/// Sends `files` (created with a few KiB each) to `partner`, with `extra` options.
fn send(d: &Path, partner: &Scripted, extra: &[&str], files: &[&str]) -> Output {
    let port = partner.port.to_string();
    let mut args = call_args(
        &port,
        ("O0013CLIENT", "CLIPW"),
        (scripted::SSID, scripted::PASSWORD),
    );
    args.extend_from_slice(extra);
    for f in files {
        std::fs::write(d.join(f), format!("content of {f}\n").repeat(300)).unwrap();
        args.push(f);
    }
    oftp(d, &args)
}

/// The line `oftp send` printed for `file`.
fn line_of<'a>(stdout: &'a str, file: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(file) || l.contains(&format!(" {file}:")))
        .unwrap_or_else(|| panic!("no line for {file} in:\n{stdout}"))
}

#[test]
fn each_file_says_whether_the_offer_the_end_of_file_or_the_end_response_failed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let partner = Scripted::start(
        5,
        vec![
            Answer::Sfna {
                reason: 12,
                retry: true,
            },
            Answer::Efna(11),
            Answer::Eerp,
            Answer::Nerp(3),
            Answer::NoEndResponse,
        ],
    );
    let out = send(
        d,
        &partner,
        &[],
        &["a.txt", "b.txt", "c.txt", "e.txt", "f.txt"],
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert_eq!(partner.offered().len(), 5);
    let a = line_of(&stdout, "a.txt");
    assert!(
        a.starts_with("rejected ")
            && a.contains("the partner refused the offer (SFID)")
            && a.contains("(SFNA 12)")
            && a.contains("may be retried later"),
        "{a}"
    );
    let b = line_of(&stdout, "b.txt");
    assert!(
        b.starts_with("refused ")
            && b.contains("after the transfer (EFID)")
            && b.contains("(EFNA 11)"),
        "{b}"
    );
    assert!(
        line_of(&stdout, "c.txt").starts_with("delivered "),
        "{stdout}"
    );
    let e = line_of(&stdout, "e.txt");
    assert!(
        e.starts_with("NOT delivered ")
            && e.contains("the partner could not deliver it")
            && e.contains("(NERP 03)"),
        "{e}"
    );
    let f = line_of(&stdout, "f.txt");
    assert!(
        f.starts_with("not confirmed ") && f.contains("(EFPA) but sent no EERP"),
        "{f}"
    );
}

#[test]
fn an_offer_ended_by_an_esid_at_level_4_is_reported_as_the_offer_not_the_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let partner = Scripted::start(4, vec![Answer::EsidAtOffer(6)]);
    let out = send(d, &partner, &[], &["a.txt", "b.txt"]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert_eq!(partner.offered().len(), 1);
    let a = line_of(&stdout, "a.txt");
    assert!(
        a.starts_with("not sent ")
            && a.contains("offered (SFID), but the partner did not accept it")
            && a.contains("the partner ended the session")
            && a.contains("(ESID 06)")
            && !a.contains("transfer"),
        "{a}"
    );
    let b = line_of(&stdout, "b.txt");
    assert!(b.contains("not offered") && b.contains("(ESID 06)"), "{b}");
}

#[test]
fn a_cut_transfer_and_an_unanswered_end_of_file_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // One buffer of credit: the sender waits for a CDT after the first DATA, and the
    // partner hangs up there.
    let partner = Scripted::start(5, vec![Answer::CutInData]);
    let out = send(
        d,
        &partner,
        &["--credit", "1", "--buffer-size", "128"],
        &["a.txt"],
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    partner.offered();
    let a = line_of(&stdout, "a.txt");
    assert!(
        a.contains("transfer cut") && a.contains("sending it again restarts it"),
        "{a}"
    );

    let partner = Scripted::start(5, vec![Answer::CutAtEfid]);
    let out = send(d, &partner, &[], &["b.txt"]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    partner.offered();
    let b = line_of(&stdout, "b.txt");
    assert!(
        b.contains("sent to the end (EFID), but not confirmed (no EFPA)"),
        "{b}"
    );
}
