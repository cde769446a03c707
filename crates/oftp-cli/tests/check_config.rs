//! `oftp check-config` on good and broken files: what the daemon would do, and every problem.

use std::path::Path;

mod common;
use common::{oftp, texts};

const HEAD: &str = "[local]\nssid = \"O0013AAA\"\npassword = \"APW\"\n\n\
    [server]\nlisten = \"127.0.0.1:3305\"\ndata_dir = \"data\"\n\n";

fn partner(name: &str, rest: &str) -> String {
    format!(
        "[[partners]]\nname = \"{name}\"\nssid = \"O0013{}\"\npassword = \"PW\"\n{rest}\n",
        name.to_uppercase()
    )
}

fn check(dir: &Path, config: &str, extra: &[&str]) -> (bool, String) {
    std::fs::write(dir.join("c.toml"), config).unwrap();
    let mut args = vec!["check-config", "--config", "c.toml"];
    args.extend(extra);
    let out = oftp(dir, &args);
    let (stdout, stderr) = texts(&out);
    assert!(stderr.is_empty(), "{stderr}");
    (out.status.success(), stdout)
}

#[test]
fn a_good_file_prints_listeners_partners_schedules_and_outboxes_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{HEAD}{}{}",
        partner(
            "acme",
            "address = \"acme.example:3305\"\n[partners.schedule]\ncalendar = [\"0 6 * * *\"]\ntime_zone = \"UTC\"\n"
        ),
        partner("shop", "")
    );
    let (ok, out) = check(dir.path(), &config, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("listen for OFTP on 127.0.0.1:3305"), "{out}");
    assert!(out.contains("data/oftp.sock"), "{out}");
    assert!(
        out.contains("  - acme\n      calls acme.example:3305"),
        "{out}"
    );
    assert!(out.contains("schedule: 0 6 * * * (UTC)"), "{out}");
    assert!(out.contains("next scheduled calls: "), "{out}");
    assert!(out.contains(" 06:00 UTC, "), "{out}");
    assert!(
        out.contains("  - shop\n      has no address: it calls us"),
        "{out}"
    );
    assert!(out.contains("data/outbox/shop"), "{out}");
    assert!(out.ends_with("configuration OK\n"), "{out}");
    assert!(!dir.path().join("data").exists(), "nothing created");

    let (ok, json) = check(dir.path(), &config, &["--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(
        v["plan"]["partners"][0]["next_calls"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(v["plan"]["partners"][1]["address"], serde_json::Value::Null);
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{HEAD}{}", partner("acme", "colour = \"blue\""));
    let (ok, out) = check(dir.path(), &config, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("1 problem(s):"), "{out}");
    assert!(out.contains("unknown field `colour`"), "{out}");
    assert!(out.contains("line 9"), "{out}");
}

#[test]
fn every_bad_schedule_and_missing_certificate_is_listed_not_just_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{HEAD}{}{}{}",
        partner(
            "acme",
            "address = \"127.0.0.1:1\"\n[partners.schedule]\ncalendar = [\"every tuesday\"]\n"
        ),
        partner(
            "shop",
            "address = \"127.0.0.1:1\"\n[partners.schedule]\ncalendar = [\"0 25 * * *\"]\n"
        ),
        partner(
            "bank",
            "[partners.security]\ncertificate = \"missing-bank.pem\"\n"
        )
    );
    let (ok, out) = check(dir.path(), &config, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("[[partners]] \"acme\""), "{out}");
    assert!(out.contains("every tuesday"), "{out}");
    assert!(out.contains("[[partners]] \"shop\""), "{out}");
    assert!(out.contains("0 25 * * *"), "{out}");

    // With the schedules fixed, the missing certificate is what is left.
    let config = format!(
        "{HEAD}{}{}",
        partner(
            "bank",
            "[partners.security]\ncertificate = \"missing-bank.pem\"\n"
        ),
        partner(
            "post",
            "[partners.security]\ncertificate = \"missing-post.pem\"\n"
        )
    );
    let (ok, out) = check(dir.path(), &config, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("2 problem(s):"), "{out}");
    assert!(
        out.contains("\"bank\" security:") && out.contains("missing-bank.pem"),
        "{out}"
    );
    assert!(
        out.contains("\"post\" security:") && out.contains("missing-post.pem"),
        "{out}"
    );
}

#[test]
fn a_missing_file_is_one_clear_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = oftp(dir.path(), &["check-config", "--config", "nope.toml"]);
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("cannot read configuration nope.toml"),
        "{stdout}"
    );
}
