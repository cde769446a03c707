//! `GET /users`: the tenant's directory listing, paged like Graph.
//!
//! Permissions follow Graph's rules for this endpoint, simplified to what a mailbox backup
//! meets:
//!
//! - App-only tokens need one of the application permissions `User.Read.All`,
//!   `User.ReadWrite.All`, `Directory.Read.All`, `Directory.ReadWrite.All` (all properties) or
//!   `User.ReadBasic.All` (basic properties); otherwise 403 `Authorization_RequestDenied`.
//! - Delegated tokens need one of the same scopes (or `Directory.AccessAsUser.All`); a token with
//!   only `User.Read` (the default public client) gets 403, as in Graph. `User.ReadBasic.All`
//!   yields only the basic properties (`id`, `displayName`, `givenName`, `surname`, `mail`,
//!   `userPrincipalName`); other properties are left out even when selected.
//!
//! Every directory user is listed, with or without a mailbox (clients find out per user, from
//! the 404 `MailboxNotEnabledForRESTAPI` of a mail request). Order: mailbox owners in
//! configuration order, then `users_without_mailbox`. Page size: `$top` (1..=999, default 100;
//! Graph's limits), or `Prefer: odata.maxpagesize`, at most
//! [`crate::EmulatorConfig::user_list_max_page`]; `@odata.nextLink` carries an opaque
//! `$skiptoken`. `$select` picks properties. `$filter`, `$search`, `$orderby`, `$count` and
//! `$expand` answer 400 naming the option (not emulated).
//!
//! The listing is not a mailbox request: no per-mailbox concurrency slot or request budget
//! applies. The configured latency and injected 429/503/dropped connections do (fault scope
//! [`EndpointKind::UserList`]).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::{authenticate, delay, graph_error, ok_json, read_only, throttled, unavailable};
use crate::faults::Injected;
use crate::identity::{Grant, Principal, UserRecord};
use crate::odata;
use crate::server::{Outcome, Req, Resp, Shared};
use crate::stats::{Counter, EndpointKind};
use crate::util::{lock, query_encode};

/// Properties of a user, in Graph's default order (`id` last, as Graph sends it).
pub(super) const USER_PROPERTIES: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// What `User.ReadBasic.All` may read.
const BASIC_PROPERTIES: &[&str] = &[
    "displayName",
    "givenName",
    "mail",
    "surname",
    "userPrincipalName",
    "id",
];

const DEFAULT_TOP: usize = 100;
const MAX_TOP: usize = 999;

/// A user's properties (Graph's default set).
pub(super) fn properties(u: &UserRecord) -> Vec<(&'static str, Value)> {
    let mut names = u.display_name.splitn(2, ' ');
    let given = names.next().unwrap_or_default();
    let surname = names.next().unwrap_or_default();
    vec![
        ("businessPhones", json!([])),
        ("displayName", json!(u.display_name)),
        ("givenName", json!(given)),
        ("jobTitle", Value::Null),
        ("mail", json!(u.upn)),
        ("mobilePhone", Value::Null),
        ("officeLocation", Value::Null),
        ("preferredLanguage", json!("en-US")),
        ("surname", json!(surname)),
        ("userPrincipalName", json!(u.upn)),
        ("id", json!(u.object_id)),
    ]
}

/// How much of the directory a token may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Full,
    Basic,
}

fn access(grant: &Grant) -> Option<Access> {
    let has = |p: &str| grant.permissions.iter().any(|x| x == p);
    let full = has("user.read.all")
        || has("user.readwrite.all")
        || has("directory.read.all")
        || has("directory.readwrite.all")
        || (grant.principal != Principal::App && has("directory.accessasuser.all"));
    if full {
        Some(Access::Full)
    } else if has("user.readbasic.all") {
        Some(Access::Basic)
    } else {
        None
    }
}

/// Encodes a listing offset as an opaque skip token (clients must not parse it).
fn skiptoken(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("emulator-users:{offset}"))
}

fn parse_skiptoken(t: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(t.trim()).ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix("emulator-users:")?
        .parse()
        .ok()
}

/// Answers `GET /users`.
pub(super) async fn list(shared: &Arc<Shared>, r: Req) -> Outcome {
    if let Err(resp) = read_only(&r) {
        return Outcome::Respond(resp);
    }
    let grant = match authenticate(shared, &r) {
        Ok(g) => g,
        Err(resp) => return Outcome::Respond(resp),
    };
    let Some(access) = access(&grant) else {
        return Outcome::Respond(graph_error(
            &r,
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ));
    };
    let (extra, injected) = {
        let mut f = lock(&shared.faults);
        (f.extra_latency(), f.decide(EndpointKind::UserList))
    };
    delay(shared, extra).await;
    match injected {
        Some(Injected::Drop) => {
            shared.stats.bump(Counter::Dropped);
            return Outcome::Drop;
        }
        Some(Injected::Throttle { retry_after }) => {
            shared.stats.bump(Counter::ThrottledInjected);
            return Outcome::Respond(throttled(
                &r,
                "TooManyRequests",
                "Too many requests. Please try again later.",
                retry_after,
            ));
        }
        Some(Injected::Unavailable { retry_after }) => {
            shared.stats.bump(Counter::UnavailableInjected);
            return Outcome::Respond(unavailable(&r, retry_after));
        }
        // Truncation applies to `$value` downloads only.
        Some(Injected::Truncate) | None => {}
    }
    Outcome::Respond(page(shared, &r, access))
}

fn page(shared: &Shared, r: &Req, access: Access) -> Resp {
    let q = r.query_map();
    if let Some((k, _)) = q.iter().find(|(k, _)| {
        k.starts_with('$')
            && !["$select", "$top", "$skiptoken"]
                .iter()
                .any(|a| a.eq_ignore_ascii_case(k))
    }) {
        return graph_error(
            r,
            400,
            "Request_BadRequest",
            &format!(
                "Query option '{k}' is not supported on /users by the emulator (supported: $select, $top, $skiptoken)."
            ),
        );
    }
    let top = match q.get("$top") {
        Some(t) => match odata::parse_count("$top", t) {
            Ok(n) if (1..=MAX_TOP).contains(&n) => n,
            _ => {
                return graph_error(
                    r,
                    400,
                    "Request_BadRequest",
                    &format!(
                        "Invalid page size specified: '{t}'. Must be between 1 and {MAX_TOP} inclusive."
                    ),
                );
            }
        },
        None => r
            .header("prefer")
            .and_then(odata::prefer_maxpagesize)
            .unwrap_or(DEFAULT_TOP)
            .clamp(1, MAX_TOP),
    };
    let top = top.min(shared.user_list_max_page);
    let skip = match q.get("$skiptoken") {
        Some(t) => match parse_skiptoken(t) {
            Some(n) => n,
            None => {
                return graph_error(
                    r,
                    400,
                    "Request_BadRequest",
                    "Invalid $skiptoken: use the @odata.nextLink of the previous page unchanged.",
                );
            }
        },
        None => 0,
    };
    let select: Option<Vec<&str>> = match q.get("$select") {
        Some(s) => match odata::parse_select(s, USER_PROPERTIES, "user") {
            Ok(v) => Some(v),
            Err(e) => return graph_error(r, 400, e.code, &e.message),
        },
        None => None,
    };
    let users = &shared.identity.users;
    let value: Vec<Value> = users
        .iter()
        .skip(skip)
        .take(top)
        .map(|u| {
            let mut o = Map::new();
            for (k, v) in properties(u) {
                let wanted = select.as_ref().is_none_or(|s| s.contains(&k));
                let readable = access == Access::Full || BASIC_PROPERTIES.contains(&k);
                if wanted && readable {
                    o.insert(k.to_owned(), v);
                }
            }
            Value::Object(o)
        })
        .collect();
    let context = match &select {
        Some(s) => format!("{}/$metadata#users({})", shared.graph_url(), s.join(",")),
        None => format!("{}/$metadata#users", shared.graph_url()),
    };
    let mut body = json!({ "@odata.context": context, "value": value });
    let next = skip.saturating_add(top);
    if next < users.len() {
        // Same query, with `$top` kept and the skip token replaced, as Graph does.
        let mut params: Vec<(String, String)> = url::form_urlencoded::parse(r.query.as_bytes())
            .into_owned()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
            .collect();
        params.push(("$skiptoken".to_owned(), skiptoken(next)));
        let qs = params
            .iter()
            .map(|(k, v)| format!("{}={}", query_encode(k), query_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        body["@odata.nextLink"] = json!(format!("{}{}?{qs}", shared.base_url, r.path));
    }
    ok_json(r, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skiptokens_roundtrip_and_reject_garbage() {
        for n in [0, 1, 2, 999, 123_456] {
            assert_eq!(parse_skiptoken(&skiptoken(n)), Some(n));
        }
        assert_eq!(parse_skiptoken("2"), None);
        assert_eq!(parse_skiptoken("!!"), None);
        assert_eq!(parse_skiptoken(&URL_SAFE_NO_PAD.encode("other:3")), None);
    }
}
