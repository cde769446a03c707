//! `GET /users`: paging, `$select`, permissions of app-only and delegated tokens, bad queries.

use graph_emulator::{
    AppRegistration, DEFAULT_CLIENT_SECRET, DEFAULT_CONFIDENTIAL_CLIENT_ID, EmulatorConfig,
    EndpointKind, FaultConfig, MailboxSpec, Trigger, UserSpec,
};
use serde_json::Value;

use crate::common::*;

const A: &str = "a@emulator.test";
const B: &str = "b@emulator.test";
const C: &str = "c@emulator.test";
const ROOM: &str = "room@emulator.test";

fn config() -> EmulatorConfig {
    let cfg = EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(A).messages(1),
        MailboxSpec::new(B).messages(1),
        MailboxSpec::new(C).messages(1),
    ]);
    EmulatorConfig {
        users_without_mailbox: vec![UserSpec {
            user_principal_name: ROOM.into(),
            display_name: "Room Four".into(),
            password: None,
        }],
        ..cfg
    }
}

fn upns(values: &[Value]) -> Vec<&str> {
    values
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap_or("?"))
        .collect()
}

#[tokio::test]
async fn app_token_lists_every_user_in_pages_with_select() {
    let emu = start(config()).await;
    let token = app_token(&emu).await;
    let g = emu.graph_url();

    // One page by default (100), every user with and without a mailbox, Graph's default properties.
    let v = get_json(&token, &format!("{g}/users")).await;
    let all = v["value"].as_array().cloned().unwrap_or_default();
    assert_eq!(upns(&all), vec![A, B, C, ROOM]);
    assert!(v.get("@odata.nextLink").is_none(), "{v}");
    assert!(
        v["@odata.context"]
            .as_str()
            .is_some_and(|c| c.ends_with("$metadata#users"))
    );
    let room = &all[3];
    assert_eq!(room["displayName"], "Room Four");
    assert_eq!(room["mail"], ROOM);
    assert!(
        room["id"].as_str().is_some_and(|id| id.len() == 36),
        "{room}"
    );

    // $top pages with an opaque $skiptoken; $select keeps only what was asked for.
    let (paged, pages) = get_all(
        &token,
        &format!("{g}/users?$top=3&$select=id,userPrincipalName"),
        None,
    )
    .await;
    assert_eq!(pages, 2);
    assert_eq!(upns(&paged), vec![A, B, C, ROOM]);
    for u in &paged {
        let keys: Vec<&String> = u
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 2, "{u}");
    }
    let ids: Vec<&Value> = paged.iter().map(|u| &u["id"]).collect();
    let full_ids: Vec<&Value> = all.iter().map(|u| &u["id"]).collect();
    assert_eq!(ids, full_ids);
    let first = get_json(
        &token,
        &format!("{g}/users?$top=3&$select=id,userPrincipalName"),
    )
    .await;
    let next = first["@odata.nextLink"].as_str().expect("nextLink");
    assert!(
        next.contains("%24skiptoken=") || next.contains("$skiptoken="),
        "{next}"
    );
    assert!(next.contains("top=3"), "{next}");

    // Prefer: odata.maxpagesize works as well.
    let (_, pages) = get_all(&token, &format!("{g}/users"), Some("odata.maxpagesize=1")).await;
    assert_eq!(pages, 4);
    assert_eq!(emu.stats().count(EndpointKind::UserList), 1 + 2 + 1 + 4);
}

#[tokio::test]
async fn bad_queries_and_missing_tokens_are_refused_like_graph() {
    let emu = start(config()).await;
    let token = app_token(&emu).await;
    let g = emu.graph_url();
    for q in ["$top=0", "$top=1000", "$top=x"] {
        let (status, _, body) = get(&token, &format!("{g}/users?{q}"), None).await;
        assert_eq!(status, 400, "{q}");
        let v = assert_graph_error(&body, "Request_BadRequest");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("page size"),
            "{v}"
        );
    }
    let (status, _, body) = get(&token, &format!("{g}/users?$skiptoken=bogus"), None).await;
    assert_eq!(status, 400);
    assert_graph_error(&body, "Request_BadRequest");
    let (status, _, body) = get(
        &token,
        &format!("{g}/users?$filter=accountEnabled eq true"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    let v = assert_graph_error(&body, "Request_BadRequest");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("$filter"),
        "{v}"
    );
    let (status, _, body) = get(&token, &format!("{g}/users?$select=nosuch"), None).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, headers, body) = get("not-a-token", &format!("{g}/users"), None).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    assert_graph_error(&body, "InvalidAuthenticationToken");
}

#[tokio::test]
async fn permissions_follow_graph_for_app_and_delegated_callers() {
    // An app with Mail.Read only may read mail but not list users.
    let mut cfg = config();
    cfg.apps = vec![
        AppRegistration::public_client(graph_emulator::DEFAULT_PUBLIC_CLIENT_ID),
        AppRegistration {
            application_permissions: vec!["Mail.Read".into()],
            ..AppRegistration::confidential_client(
                DEFAULT_CONFIDENTIAL_CLIENT_ID,
                DEFAULT_CLIENT_SECRET,
            )
        },
    ];
    let emu = start(cfg).await;
    let g = emu.graph_url();
    let app = app_token(&emu).await;
    let (status, _, body) = get(&app, &format!("{g}/users"), None).await;
    assert_eq!(status, 403);
    assert_graph_error(&body, "Authorization_RequestDenied");

    // Delegated: User.Read (default scopes) is not enough.
    let plain = user_token(&emu, A).await;
    let (status, _, body) = get(&plain, &format!("{g}/users"), None).await;
    assert_eq!(status, 403);
    assert_graph_error(&body, "Authorization_RequestDenied");

    // Delegated User.ReadBasic.All: every user, basic properties only (even when selected).
    let basic = ropc(&emu, A, "https://graph.microsoft.com/User.ReadBasic.All").await;
    let basic = basic["access_token"].as_str().expect("token");
    let v = get_json(
        basic,
        &format!("{g}/users?$select=id,userPrincipalName,jobTitle"),
    )
    .await;
    let users = v["value"].as_array().cloned().unwrap_or_default();
    assert_eq!(upns(&users), vec![A, B, C, ROOM]);
    assert!(
        users
            .iter()
            .all(|u| u.get("jobTitle").is_none() && u["id"].is_string())
    );
    let v = get_json(basic, &format!("{g}/users")).await;
    assert!(v["value"][0].get("preferredLanguage").is_none(), "{v}");
    assert_eq!(
        v["value"][0]["displayName"].as_str().map(|s| !s.is_empty()),
        Some(true)
    );

    // Delegated User.Read.All: full properties.
    let full = ropc(&emu, A, "https://graph.microsoft.com/User.Read.All").await;
    let full = full["access_token"].as_str().expect("token");
    let v = get_json(full, &format!("{g}/users?$top=1")).await;
    assert_eq!(v["value"][0]["preferredLanguage"], "en-US");
    assert!(v["@odata.nextLink"].is_string());
}

#[tokio::test]
async fn server_page_cap_pages_even_a_large_top() {
    let emu = start(EmulatorConfig {
        user_list_max_page: 3,
        ..config()
    })
    .await;
    let token = app_token(&emu).await;
    let (all, pages) = get_all(&token, &format!("{}/users?$top=999", emu.graph_url()), None).await;
    assert_eq!(pages, 2);
    assert_eq!(upns(&all), vec![A, B, C, ROOM]);
}

#[tokio::test]
async fn injected_throttling_and_outages_answer_the_user_list_with_retry_after() {
    let emu = start(config()).await;
    let token = app_token(&emu).await;
    let url = format!("{}/users", emu.graph_url());
    let f = emu.faults();

    f.throttle(Trigger::Next(1), 7);
    let (status, headers, body) = get(&token, &url, None).await;
    assert_eq!(status, 429);
    assert_eq!(
        headers.get("retry-after").and_then(|h| h.to_str().ok()),
        Some("7")
    );
    assert_graph_error(&body, "TooManyRequests");

    f.set(FaultConfig {
        unavailable: Trigger::Next(1),
        unavailable_retry_after_secs: Some(3),
        ..FaultConfig::default()
    });
    let (status, headers, body) = get(&token, &url, None).await;
    assert_eq!(status, 503);
    assert_eq!(
        headers.get("retry-after").and_then(|h| h.to_str().ok()),
        Some("3")
    );
    assert_graph_error(&body, "ServiceUnavailable");

    f.set(FaultConfig {
        unavailable: Trigger::Next(1),
        unavailable_retry_after_secs: None,
        ..FaultConfig::default()
    });
    let (status, headers, _) = get(&token, &url, None).await;
    assert_eq!(status, 503);
    assert!(headers.get("retry-after").is_none());
    assert_eq!(get(&token, &url, None).await.0, 200);
}
