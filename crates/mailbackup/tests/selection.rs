//! Which messages a run takes: date range and Graph $filter.
//! End to end against the Graph emulator (real sockets on 127.0.0.1).

mod common;

use common::*;
use graph_emulator::MailboxSpec;
use mailbackup::RunStatus;

#[tokio::test]
async fn date_range_and_filter_select_messages_and_bad_filter_shows_graphs_message() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(40).seed(9)]).await;
    let token = app_token(&emu).await;
    let all = emu.mailbox(ALICE).messages();
    let mut created: Vec<_> = all.iter().map(|m| m.created.date_naive()).collect();
    created.sort();
    let (start, end) = (created[10], created[25]);
    let expect = all
        .iter()
        .filter(|m| (start..=end).contains(&m.created.date_naive()))
        .count() as u64;

    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token.clone(), ALICE)
        .start_date(start.format("%Y/%m/%d").to_string())
        .end_date(end.format("%Y/%m/%d").to_string())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.mailboxes[0].saved, expect);
    assert_eq!(eml_files(dir.path()).len() as u64, expect);

    // A Filter goes to Graph as $filter; here: the Inbox only.
    let inbox = emu.mailbox(ALICE).folder("inbox").unwrap();
    let in_inbox = all.iter().filter(|m| m.folder_id == inbox.id).count() as u64;
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token.clone(), ALICE)
        .filter(format!("parentFolderId eq '{}'", inbox.id))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.mailboxes[0].saved, in_inbox);

    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token, ALICE)
        .filter("subject eqq 'x'")
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let err = report.mailboxes[0].error.clone().unwrap();
    assert!(err.contains("400"), "{err}");

    // Bad dates are refused before anything runs.
    let e = builder(&emu, dir.path(), String::new(), ALICE)
        .start_date("2023-07-01")
        .build()
        .err()
        .unwrap();
    assert!(e.to_string().contains("StartDate"), "{e}");
}
