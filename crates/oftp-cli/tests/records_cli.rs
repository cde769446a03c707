//! The `oftp` command with F and V files: the partners' `record_mapping` key, `oftp send
//! --record-mapping`, a bad local file named with its record, and `[server]
//! partial_retention_days`. A real `oftp serve` process and real `oftp send` runs.

mod common;
use common::{free_port, send_example, serve_listen};

#[test]
fn record_mapping_from_the_configuration_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // First run writes the configurations; then the server's partner gets `lines`.
    drop(serve_listen(dir.path(), port));
    let cfg_path = dir.path().join("oftp-data/oftp.toml");
    let mut cfg: toml::Table = std::fs::read_to_string(&cfg_path).unwrap().parse().unwrap();
    cfg["partners"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap()
        .insert("record_mapping".into(), "lines".into());
    cfg["server"]
        .as_table_mut()
        .unwrap()
        .insert("partial_retention_days".into(), 3.into());
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();
    let _server = serve_listen(dir.path(), port);

    let text = b"ABCD\r\nA\rCD\r\n";
    std::fs::write(dir.path().join("lines.txt"), text).unwrap();
    // A fixed record that held a line feed, as lines: two short lines.
    std::fs::write(dir.path().join("broken.txt"), b"ABCD\r\nA\nCD\r\n").unwrap();
    let out = send_example(
        dir.path(),
        &[
            "--format",
            "f",
            "--record-length",
            "4",
            "--record-mapping",
            "lines",
            "lines.txt",
            "broken.txt",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("delivered      lines.txt"), "{stdout}");
    let broken = stdout
        .lines()
        .find(|l| l.contains("broken.txt"))
        .unwrap_or_default();
    assert!(
        broken.starts_with("not sent")
            && broken.contains("record 2:")
            && broken.contains("line break"),
        "{stdout}"
    );
    let inbox = dir.path().join("oftp-data/inbox/example");
    assert_eq!(std::fs::read(inbox.join("LINES.TXT")).unwrap(), text);

    // Raw (the default) from the client; the server's `lines` cannot hold a record with LF.
    let mut raw = Vec::new();
    for r in [&b"ok"[..], b"L\nF"] {
        raw.extend_from_slice(&(r.len() as u16).to_be_bytes());
        raw.extend_from_slice(r);
    }
    std::fs::write(dir.path().join("raw.dat"), &raw).unwrap();
    let out = send_example(
        dir.path(),
        &["--format", "v", "--record-length", "10", "raw.dat"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("refused        raw.dat") && stdout.contains("(EFNA 04)"),
        "{stdout}"
    );
    assert!(!inbox.join("RAW.DAT").exists());
}

#[test]
fn an_unknown_record_mapping_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = send_example(dir.path(), &["--record-mapping", "text", "x"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("raw, lines (CR LF) or lines-lf"),
        "{stderr}"
    );
}
