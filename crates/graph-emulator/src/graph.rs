//! Microsoft Graph v1.0 mail endpoints: user profile, mail folders, messages (list, get,
//! `$value`), per-folder delta queries and `$batch`.
//!
//! Each request goes through the same pipeline, in Graph's order: route, bearer token (401),
//! mailbox and permission (404/403), per-mailbox concurrency slot (429 `ApplicationThrottled`,
//! held during the configured latency as well), latency, injected faults, then the handler.
//! Responses and errors copy Graph's shapes (`@odata.context`, `@odata.nextLink` with `$skip`,
//! `@odata.deltaLink`, `{"error":{"code","message","innerError":{...}}}`, `request-id` headers).
//! Only GET (and POST for `$batch`) is served: the emulator is read-only over HTTP; tests mutate
//! mailboxes through [`crate::MailboxHandle`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use hyper::Method;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::FolderKind;
use crate::delta::{self, DeltaParams, Entry, TokenError};
use crate::faults::Injected;
use crate::identity::{Grant, Principal, TokenRejection};
use crate::mailbox::{MailboxData, MailboxState, Message};
use crate::odata::{self, Filter, OrderBy, Prop, QueryError};
use crate::server::{Outcome, Req, Resp, Shape, Shared};
use crate::stats::{Counter, EndpointKind};
use crate::synth::{self, Person};
use crate::util::{graph_time, lock, percent_decode, query_encode};

const JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 10;
const MAX_BATCH: usize = 20;

/// A message property and how to compute it (computed only when selected).
type Field<'a> = (&'static str, Box<dyn Fn() -> Value + 'a>);

/// Who the path names.
#[derive(Debug, Clone)]
enum UserRef {
    Me,
    Id(String),
}

/// What the path asks for.
#[derive(Debug, Clone)]
enum Resource {
    Profile,
    FolderList(Option<String>),
    Folder(String),
    Messages(Option<String>),
    Delta(String),
    MailboxDelta,
    Message(String),
    Value(String),
}

impl Resource {
    fn kind(&self) -> EndpointKind {
        match self {
            Resource::Profile => EndpointKind::User,
            Resource::FolderList(_) | Resource::Folder(_) => EndpointKind::Folders,
            Resource::Messages(_) => EndpointKind::Messages,
            Resource::Delta(_) | Resource::MailboxDelta => EndpointKind::Delta,
            Resource::Message(_) => EndpointKind::Message,
            Resource::Value(_) => EndpointKind::MessageValue,
        }
    }
}

/// Splits `name('key')` into `name`, `key`.
fn expand_segment(seg: &str, out: &mut Vec<String>) {
    if let Some(open) = seg.find('(')
        && seg.ends_with(')')
    {
        let name = &seg[..open];
        let inner = seg[open + 1..seg.len() - 1].trim();
        out.push(name.to_owned());
        let key = inner.trim_matches('\'');
        if !key.is_empty() {
            out.push(key.replace("''", "'"));
        }
        return;
    }
    out.push(seg.to_owned());
}

enum Parsed {
    Graph(UserRef, Resource),
    Batch,
    Unknown(String),
}

fn parse_path(path: &str) -> Parsed {
    let rest = path.strip_prefix("/v1.0").unwrap_or(path);
    let mut segs = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        expand_segment(&percent_decode(raw), &mut segs);
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (user, mut rest): (UserRef, Vec<&str>) = match s.as_slice() {
        ["$batch"] => return Parsed::Batch,
        ["me", rest @ ..] => (UserRef::Me, rest.to_vec()),
        ["users", id, rest @ ..] => (UserRef::Id((*id).to_owned()), rest.to_vec()),
        [first, ..] => return Parsed::Unknown((*first).to_owned()),
        [] => return Parsed::Unknown(String::new()),
    };
    // mailFolders/{a}/childFolders/{b}/... addresses folder b directly.
    while rest.len() > 4
        && rest[0].eq_ignore_ascii_case("mailFolders")
        && rest[2].eq_ignore_ascii_case("childFolders")
    {
        rest = [&["mailFolders", rest[3]][..], &rest[4..]].concat();
    }
    let lower: Vec<String> = rest.iter().map(|x| x.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let res = match (l.as_slice(), rest.as_slice()) {
        ([], _) => Resource::Profile,
        (["mailfolders"], _) => Resource::FolderList(None),
        (["mailfolders", _], [_, f]) => Resource::Folder((*f).to_owned()),
        (["mailfolders", _, "childfolders"], [_, f, _]) => {
            Resource::FolderList(Some((*f).to_owned()))
        }
        (["mailfolders", _, "messages"], [_, f, _]) => Resource::Messages(Some((*f).to_owned())),
        (["mailfolders", _, "messages", "delta"], [_, f, _, _]) => Resource::Delta((*f).to_owned()),
        (["mailfolders", _, "messages", _], [_, _, _, id]) => Resource::Message((*id).to_owned()),
        (["mailfolders", _, "messages", _, "$value"], [_, _, _, id, _]) => {
            Resource::Value((*id).to_owned())
        }
        (["messages"], _) => Resource::Messages(None),
        (["messages", "delta"], _) => Resource::MailboxDelta,
        (["messages", _], [_, id]) => Resource::Message((*id).to_owned()),
        (["messages", _, "$value"], [_, id, _]) => Resource::Value((*id).to_owned()),
        _ => {
            let bad = rest
                .iter()
                .find(|x| {
                    !matches!(
                        x.to_ascii_lowercase().as_str(),
                        "mailfolders" | "childfolders" | "messages" | "delta" | "$value"
                    )
                })
                .or(rest.last())
                .copied()
                .unwrap_or_default();
            return Parsed::Unknown(bad.to_owned());
        }
    };
    Parsed::Graph(user, res)
}

/// Graph error response.
pub(crate) fn graph_error(r: &Req, status: u16, code: &str, message: &str) -> Resp {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = r
        .header("client-request-id")
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": graph_time(Utc::now()),
                "request-id": request_id,
                "client-request-id": client_request_id,
            }
        }
    });
    Resp::new(status, "application/json", body.to_string())
        .with_header("request-id", request_id)
        .with_header("client-request-id", client_request_id)
}

fn query_error(r: &Req, e: QueryError) -> Resp {
    graph_error(r, 400, e.code, &e.message)
}

fn ok_json(r: &Req, v: &Value) -> Resp {
    let request_id = uuid::Uuid::new_v4().to_string();
    let crid = r
        .header("client-request-id")
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    Resp::new(200, JSON, v.to_string())
        .with_header("request-id", request_id)
        .with_header("client-request-id", crid)
        .with_header("OData-Version", "4.0")
}

/// Entry point for every `/v1.0` request.
pub(crate) async fn handle(shared: &Arc<Shared>, r: Req) -> Outcome {
    match parse_path(&r.path) {
        Parsed::Batch => {
            shared.stats.request(EndpointKind::Batch);
            batch(shared, r).await
        }
        parsed => single(shared, r, parsed).await,
    }
}

/// Decrements the in-flight counter when the request ends, however it ends (including a client
/// that disconnects during the latency wait).
struct InflightGuard(Arc<MailboxState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn single(shared: &Arc<Shared>, r: Req, parsed: Parsed) -> Outcome {
    let (user, res) = match parsed {
        Parsed::Graph(u, res) => (u, res),
        Parsed::Batch => {
            shared.stats.request(EndpointKind::Batch);
            return Outcome::Respond(graph_error(
                &r,
                400,
                "BadRequest",
                "A $batch request cannot contain another $batch request.",
            ));
        }
        Parsed::Unknown(seg) => {
            shared.stats.request(EndpointKind::Other);
            return Outcome::Respond(graph_error(
                &r,
                400,
                "BadRequest",
                &format!("Resource not found for the segment '{seg}'."),
            ));
        }
    };
    let kind = res.kind();
    shared.stats.request(kind);
    if r.method != Method::GET {
        return Outcome::Respond(graph_error(
            &r,
            405,
            "ErrorInvalidRequest",
            &format!(
                "The emulator serves mail resources read-only: method {} is not supported here (only GET, and POST /$batch).",
                r.method
            ),
        ));
    }
    // 1. Token.
    let token = r.header("authorization").and_then(|v| {
        let (scheme, t) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| t.trim())
    });
    let grant = match shared.identity.validate(token) {
        Ok(g) => g,
        Err(rej) => {
            shared.stats.bump(Counter::Unauthorized);
            let msg = match rej {
                TokenRejection::Missing => "Access token is empty.",
                TokenRejection::Expired => "Lifetime validation failed, the token is expired.",
                TokenRejection::Unknown => {
                    "Access token validation failure. The token was not issued by this emulator instance (tokens do not survive a restart)."
                }
            };
            let www = format!(
                "Bearer realm=\"\", authorization_uri=\"{}/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                shared.base_url
            );
            return Outcome::Respond(
                graph_error(&r, 401, "InvalidAuthenticationToken", msg)
                    .with_header("WWW-Authenticate", www),
            );
        }
    };
    // 2. Mailbox and permission.
    let user_idx = match &user {
        UserRef::Me => match grant.principal {
            Principal::User(u) => u,
            Principal::App => {
                return Outcome::Respond(graph_error(
                    &r,
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                ));
            }
        },
        UserRef::Id(id) => {
            match shared.identity.users.iter().position(|u| {
                u.upn.eq_ignore_ascii_case(id) || u.object_id.eq_ignore_ascii_case(id)
            }) {
                Some(u) => u,
                None if matches!(res, Resource::Profile) => {
                    return Outcome::Respond(graph_error(
                        &r,
                        404,
                        "Request_ResourceNotFound",
                        &format!(
                            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
                        ),
                    ));
                }
                None => {
                    return Outcome::Respond(graph_error(
                        &r,
                        404,
                        "ErrorInvalidUser",
                        &format!("The requested user '{id}' is invalid."),
                    ));
                }
            }
        }
    };
    let user_rec = &shared.identity.users[user_idx];
    if let Resource::Profile = res {
        return Outcome::Respond(profile(shared, &r, user_idx));
    }
    if let Err(resp) = check_mail_permission(&r, &grant, user_idx, &res) {
        return Outcome::Respond(resp);
    }
    let Some(mb_idx) = user_rec.mailbox else {
        return Outcome::Respond(graph_error(
            &r,
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        ));
    };
    let Some(mb) = shared.mailboxes.get(mb_idx).cloned() else {
        return Outcome::Respond(graph_error(
            &r,
            500,
            "ErrorInternalServerError",
            "Mailbox index out of range (emulator bug).",
        ));
    };
    // 3. Concurrency slot, held until the response is built.
    let current = mb.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InflightGuard(mb.clone());
    shared.stats.concurrency(&mb.upn, current);
    if let Some(limit) = shared.concurrency_limit
        && current > limit
    {
        shared.stats.bump(Counter::ThrottledConcurrency);
        tracing::debug!(mailbox = %mb.upn, current, limit, "429: mailbox concurrency limit");
        return Outcome::Respond(
            graph_error(
                &r,
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            )
            .with_header("Retry-After", shared.concurrency_retry_after.to_string()),
        );
    }
    if let Some(limit) = shared.rate_limit
        && let Err(retry_after) = mb.take_budget(limit)
    {
        shared.stats.bump(Counter::ThrottledRate);
        return Outcome::Respond(
            graph_error(
                &r,
                429,
                "ApplicationThrottled",
                "Application is over its request rate limit for this mailbox.",
            )
            .with_header("Retry-After", retry_after.to_string()),
        );
    }
    // 4. Latency and faults.
    let (extra, injected, bandwidth) = {
        let mut f = lock(&shared.faults);
        (f.extra_latency(), f.decide(kind), f.value_bandwidth())
    };
    let wait = shared.latency + extra;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    match injected {
        Some(Injected::Drop) => {
            tracing::debug!(path = %r.path, "fault: dropping the connection");
            shared.stats.bump(Counter::Dropped);
            return Outcome::Drop;
        }
        Some(Injected::Truncate) => {
            let ctx = Ctx {
                shared,
                r: &r,
                mb: &mb,
                immutable: false,
                text_body: false,
            };
            let resp = match &res {
                Resource::Value(id) => ctx.value(id),
                _ => ctx.err(
                    500,
                    "ErrorInternalServerError",
                    "truncation applies to $value only",
                ),
            };
            if resp.status == 200 {
                shared.stats.bump(Counter::Truncated);
                let shape = Shape {
                    truncate: true,
                    bytes_per_sec: bandwidth,
                };
                return Outcome::Shaped(resp, shape);
            }
            return Outcome::Respond(resp);
        }
        Some(Injected::Throttle { retry_after }) => {
            shared.stats.bump(Counter::ThrottledInjected);
            return Outcome::Respond(
                graph_error(
                    &r,
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                )
                .with_header("Retry-After", retry_after.to_string()),
            );
        }
        Some(Injected::Unavailable { retry_after }) => {
            shared.stats.bump(Counter::UnavailableInjected);
            let mut resp = graph_error(
                &r,
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable. Please try again later.",
            );
            if let Some(s) = retry_after {
                resp = resp.with_header("Retry-After", s.to_string());
            }
            return Outcome::Respond(resp);
        }
        None => {}
    }
    if let Err(e) = check_query_options(&r, &res) {
        return Outcome::Respond(query_error(&r, e));
    }
    let ctx = Ctx {
        shared,
        r: &r,
        mb: &mb,
        immutable: r.header("prefer").is_some_and(odata::prefer_immutable),
        text_body: r.header("prefer").is_some_and(odata::prefer_text_body),
    };
    let resp = match res {
        Resource::Profile => profile(shared, &r, user_idx),
        Resource::FolderList(parent) => ctx.folder_list(parent.as_deref()),
        Resource::Folder(f) => ctx.folder(&f),
        Resource::Messages(f) => ctx.messages(f.as_deref()),
        Resource::Message(id) => ctx.message(&id),
        Resource::Value(id) => {
            let resp = ctx.value(&id);
            if resp.status == 200 && bandwidth.is_some() {
                let shape = Shape {
                    truncate: false,
                    bytes_per_sec: bandwidth,
                };
                return Outcome::Shaped(resp, shape);
            }
            resp
        }
        Resource::Delta(f) => ctx.delta(&f),
        Resource::MailboxDelta => graph_error(
            &r,
            400,
            "ErrorInvalidRequest",
            "Change tracking is not supported against 'microsoft.graph.message'. Use a delta query per folder: /mailFolders/{id}/messages/delta.",
        ),
    };
    Outcome::Respond(resp)
}

/// Rejects system query options the emulator does not implement for this resource, so a client
/// relying on one learns it at once instead of getting silently unfiltered data.
fn check_query_options(r: &Req, res: &Resource) -> Result<(), QueryError> {
    let allowed: &[&str] = match res {
        Resource::Profile => &["$select"],
        Resource::FolderList(_) => &["$select", "$top", "$skip", "$count", "$filter", "$orderby"],
        Resource::Folder(_) => &["$select"],
        Resource::Messages(_) => &["$select", "$top", "$skip", "$count", "$filter", "$orderby"],
        Resource::Message(_) => &["$select"],
        Resource::Value(_) => &[],
        Resource::Delta(_) => &[
            "$select",
            "$filter",
            "$orderby",
            "$top",
            "$skiptoken",
            "$deltatoken",
        ],
        Resource::MailboxDelta => return Ok(()),
    };
    for (k, _) in url::form_urlencoded::parse(r.query.as_bytes()) {
        if k.starts_with('$') && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&k)) {
            return Err(QueryError {
                code: "BadRequest",
                message: format!(
                    "Query option '{k}' is not supported on this resource by the emulator (supported here: {}).",
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ),
            });
        }
    }
    Ok(())
}

fn check_mail_permission(
    r: &Req,
    grant: &Grant,
    user_idx: usize,
    res: &Resource,
) -> Result<(), Resp> {
    let has = |p: &str| grant.permissions.iter().any(|x| x == p);
    let allowed = match grant.principal {
        Principal::App => has("mail.read") || has("mail.readwrite") || has("mail.readbasic.all"),
        Principal::User(u) if u == user_idx => {
            has("mail.read") || has("mail.readwrite") || has("mail.readbasic")
        }
        Principal::User(_) => has("mail.read.shared") || has("mail.readwrite.shared"),
    };
    let basic_only = !(has("mail.read")
        || has("mail.readwrite")
        || has("mail.read.shared")
        || has("mail.readwrite.shared"));
    if !allowed || (basic_only && matches!(res, Resource::Value(_))) {
        return Err(graph_error(
            r,
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        ));
    }
    Ok(())
}

fn profile(shared: &Shared, r: &Req, user_idx: usize) -> Resp {
    let u = &shared.identity.users[user_idx];
    let mut names = u.display_name.splitn(2, ' ');
    let given = names.next().unwrap_or_default();
    let surname = names.next().unwrap_or_default();
    ok_json(
        r,
        &json!({
            "@odata.context": format!("{}/$metadata#users/$entity", shared.graph_url()),
            "businessPhones": [],
            "displayName": u.display_name,
            "givenName": given,
            "jobTitle": null,
            "mail": u.upn,
            "mobilePhone": null,
            "officeLocation": null,
            "preferredLanguage": "en-US",
            "surname": surname,
            "userPrincipalName": u.upn,
            "id": u.object_id,
        }),
    )
}

const FOLDER_PROPERTIES: &[&str] = &[
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "sizeInBytes",
    "isHidden",
];

struct Ctx<'a> {
    shared: &'a Shared,
    r: &'a Req,
    mb: &'a MailboxState,
    immutable: bool,
    /// `Prefer: outlook.body-content-type="text"`.
    text_body: bool,
}

/// Paging parameters of a list request.
struct Paging {
    top: usize,
    skip: usize,
    from_prefer: bool,
}

impl Ctx<'_> {
    fn err(&self, status: u16, code: &str, msg: &str) -> Resp {
        graph_error(self.r, status, code, msg)
    }

    fn not_found(&self) -> Resp {
        self.err(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )
    }

    fn context(&self, what: &str) -> String {
        format!(
            "{}/$metadata#users('{}')/{what}",
            self.shared.graph_url(),
            self.mb.upn
        )
    }

    fn paging(&self, q: &HashMap<String, String>) -> Result<Paging, QueryError> {
        let prefer = self.r.header("prefer").and_then(odata::prefer_maxpagesize);
        let top = match q.get("$top") {
            Some(t) => Some(odata::parse_count("$top", t)?),
            None => None,
        };
        let skip = match q.get("$skip") {
            Some(s) => odata::parse_count("$skip", s)?,
            None => 0,
        };
        let from_prefer = top.is_none() && prefer.is_some();
        let top = top.or(prefer).unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        Ok(Paging {
            top,
            skip,
            from_prefer,
        })
    }

    /// Same URL with `$skip` and `$top` replaced.
    fn next_link(&self, q: &HashMap<String, String>, top: usize, skip: usize) -> String {
        let mut params: Vec<(String, String)> =
            url::form_urlencoded::parse(self.r.query.as_bytes())
                .into_owned()
                .filter(|(k, _)| k != "$skip" && k != "$top")
                .collect();
        let _ = q;
        params.push(("$top".to_owned(), top.to_string()));
        params.push(("$skip".to_owned(), skip.to_string()));
        let qs = params
            .iter()
            .map(|(k, v)| format!("{}={}", query_encode(k), query_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        format!("{}{}?{qs}", self.shared.base_url, self.r.path)
    }

    fn with_pref(&self, mut resp: Resp, paging_pref: Option<usize>) -> Resp {
        let mut applied = Vec::new();
        if let Some(n) = paging_pref {
            applied.push(format!("odata.maxpagesize={n}"));
        }
        if self.immutable {
            applied.push("IdType=\"ImmutableId\"".to_owned());
        }
        if self.text_body {
            applied.push("outlook.body-content-type=\"text\"".to_owned());
        }
        if !applied.is_empty() {
            resp = resp.with_header("Preference-Applied", applied.join(", "));
        }
        resp
    }

    fn folder_json(&self, d: &MailboxData, i: usize, select: Option<&[&str]>) -> Value {
        let f = &d.folders[i];
        let keys = d.folder_message_keys(i);
        let unread = keys
            .iter()
            .filter_map(|k| d.messages.get(k))
            .filter(|m| !m.is_read)
            .count();
        let parent = match f.parent {
            Some(p) => d.folders[p].id.clone(),
            None => format!("{}AAAAAAEAAAA=", &f.id[..f.id.len().saturating_sub(12)]),
        };
        let mut o = Map::new();
        if f.kind == FolderKind::UnreadSearch {
            o.insert(
                "@odata.type".into(),
                json!("#microsoft.graph.mailSearchFolder"),
            );
        }
        let size: usize = keys.len() * 4096;
        let all: [(&str, Value); 8] = [
            ("id", json!(f.id)),
            ("displayName", json!(f.display_name)),
            ("parentFolderId", json!(parent)),
            ("childFolderCount", json!(d.children(i).len())),
            ("unreadItemCount", json!(unread)),
            ("totalItemCount", json!(keys.len())),
            ("sizeInBytes", json!(size)),
            ("isHidden", json!(f.hidden)),
        ];
        for (k, v) in all {
            if k == "id" || select.is_none_or(|s| s.contains(&k)) {
                o.insert(k.into(), v);
            }
        }
        if f.kind == FolderKind::UnreadSearch && select.is_none() {
            o.insert("isSupported".into(), json!(true));
            o.insert("includeNestedFolders".into(), json!(true));
            o.insert("sourceFolderIds".into(), json!([d.folders[0].id]));
            o.insert("filterQuery".into(), json!("isRead eq false"));
        }
        Value::Object(o)
    }

    fn folder_list(&self, parent: Option<&str>) -> Resp {
        let q = self.r.query_map();
        if q.contains_key("$filter") || q.contains_key("$orderby") {
            return self.err(
                400,
                "BadRequest",
                "The emulator does not support $filter or $orderby on mail folders; list them and filter on the client.",
            );
        }
        let select = match q.get("$select") {
            Some(s) => match odata::parse_select(s, FOLDER_PROPERTIES, "mailFolder") {
                Ok(v) => Some(v),
                Err(e) => return query_error(self.r, e),
            },
            None => None,
        };
        let paging = match self.paging(&q) {
            Ok(p) => p,
            Err(e) => return query_error(self.r, e),
        };
        let hidden = q
            .get("includeHiddenFolders")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let d = lock(&self.mb.data);
        let parent_idx = match parent {
            None => 0,
            Some(p) => match d.folder_index(p) {
                Some(i) => i,
                None => return self.not_found(),
            },
        };
        let children: Vec<usize> = d
            .children(parent_idx)
            .into_iter()
            .filter(|&i| hidden || !d.folders[i].hidden)
            .collect();
        let total = children.len();
        let page: Vec<Value> = children
            .iter()
            .skip(paging.skip)
            .take(paging.top)
            .map(|&i| self.folder_json(&d, i, select.as_deref()))
            .collect();
        let what = match parent {
            None => "mailFolders".to_owned(),
            Some(_) => format!("mailFolders('{}')/childFolders", d.folders[parent_idx].id),
        };
        let mut body = json!({
            "@odata.context": self.context(&what),
            "value": page,
        });
        if q.get("$count").is_some_and(|c| c == "true") {
            body["@odata.count"] = json!(total);
        }
        if paging.skip + paging.top < total {
            body["@odata.nextLink"] =
                json!(self.next_link(&q, paging.top, paging.skip + paging.top));
        }
        drop(d);
        ok_json(self.r, &body)
    }

    fn folder(&self, f: &str) -> Resp {
        let q = self.r.query_map();
        let select = match q.get("$select") {
            Some(s) => match odata::parse_select(s, FOLDER_PROPERTIES, "mailFolder") {
                Ok(v) => Some(v),
                Err(e) => return query_error(self.r, e),
            },
            None => None,
        };
        let d = lock(&self.mb.data);
        let Some(i) = d.folder_index(f) else {
            return self.not_found();
        };
        let mut v = self.folder_json(&d, i, select.as_deref());
        v["@odata.context"] = json!(self.context("mailFolders/$entity"));
        drop(d);
        ok_json(self.r, &v)
    }

    fn select(&self, q: &HashMap<String, String>) -> Result<Option<Vec<&'static str>>, QueryError> {
        match q.get("$select") {
            Some(s) => odata::parse_select(s, odata::MESSAGE_PROPERTIES, "message").map(Some),
            None => Ok(None),
        }
    }

    fn messages(&self, folder: Option<&str>) -> Resp {
        let q = self.r.query_map();
        let parsed = (|| {
            let filter = match q.get("$filter") {
                Some(f) => odata::parse_filter(f)?,
                None => Filter::default(),
            };
            let order = match q.get("$orderby") {
                Some(o) => odata::parse_orderby(o)?,
                None => Vec::new(),
            };
            odata::check_filter_orderby(&filter, &order)?;
            Ok::<_, QueryError>((filter, order, self.select(&q)?, self.paging(&q)?))
        })();
        let (filter, order, select, paging) = match parsed {
            Ok(x) => x,
            Err(e) => return query_error(self.r, e),
        };
        let d = lock(&self.mb.data);
        let keys = match folder {
            Some(f) => match d.folder_index(f) {
                Some(i) => d.folder_message_keys(i),
                None => return self.not_found(),
            },
            None => d.all_message_keys(),
        };
        let mut msgs: Vec<(u64, &Message)> = keys
            .iter()
            .filter_map(|k| d.messages.get(k).map(|m| (*k, m)))
            .filter(|(_, m)| filter.matches(&delta::subject_of(&d, m)))
            .collect();
        let order = if order.is_empty() {
            vec![OrderBy {
                prop: Prop::Received,
                descending: true,
            }]
        } else {
            order
        };
        msgs.sort_by(|a, b| {
            for o in &order {
                let c = match o.prop {
                    Prop::Received => a.1.received.cmp(&b.1.received),
                    Prop::Created => a.1.created.cmp(&b.1.created),
                    Prop::LastModified => a.1.last_modified.cmp(&b.1.last_modified),
                    Prop::Sent => a.1.sent.cmp(&b.1.sent),
                    _ => a.1.synth.subject.cmp(&b.1.synth.subject),
                };
                let c = if o.descending { c.reverse() } else { c };
                if c != std::cmp::Ordering::Equal {
                    return c;
                }
            }
            a.0.cmp(&b.0)
        });
        let total = msgs.len();
        let page: Vec<Value> = msgs
            .iter()
            .skip(paging.skip)
            .take(paging.top)
            .map(|(_, m)| self.message_json(&d, m, select.as_deref(), false))
            .collect();
        let what = match folder {
            Some(f) => format!("mailFolders('{f}')/messages"),
            None => "messages".to_owned(),
        };
        let mut body = json!({
            "@odata.context": self.context(&match &select {
                Some(s) => format!("{what}({})", s.join(",")),
                None => what.clone(),
            }),
            "value": page,
        });
        if q.get("$count").is_some_and(|c| c == "true") {
            body["@odata.count"] = json!(total);
        }
        if paging.skip + paging.top < total {
            body["@odata.nextLink"] =
                json!(self.next_link(&q, paging.top, paging.skip + paging.top));
        }
        drop(d);
        let pref = paging.from_prefer.then_some(paging.top);
        self.with_pref(ok_json(self.r, &body), pref)
    }

    fn message(&self, id: &str) -> Resp {
        let q = self.r.query_map();
        let select = match self.select(&q) {
            Ok(s) => s,
            Err(e) => return query_error(self.r, e),
        };
        let d = lock(&self.mb.data);
        let Some(m) = d.message_by_id(id) else {
            return self.not_found();
        };
        let mut v = self.message_json(&d, m, select.as_deref(), false);
        v["@odata.context"] = json!(self.context("messages/$entity"));
        drop(d);
        self.with_pref(ok_json(self.r, &v), None)
    }

    fn value(&self, id: &str) -> Resp {
        let m = {
            let d = lock(&self.mb.data);
            match d.message_by_id(id) {
                Some(m) => m.clone(),
                None => return self.not_found(),
            }
        };
        let bytes = self.mb.render(&m);
        let request_id = uuid::Uuid::new_v4().to_string();
        Resp::new(200, "text/plain", Bytes::from(bytes)).with_header("request-id", request_id)
    }

    /// JSON of a message. `delta`: add `@odata.type` as delta responses do.
    fn message_json(
        &self,
        d: &MailboxData,
        m: &Message,
        select: Option<&[&str]>,
        delta: bool,
    ) -> Value {
        let folder = &d.folders[m.folder];
        let id = m.id(self.immutable);
        let s = &m.synth;
        let recipient =
            |p: &Person| json!({"emailAddress": {"name": p.name, "address": p.address}});
        let mut o = Map::new();
        if delta {
            o.insert("@odata.type".into(), json!("#microsoft.graph.message"));
        }
        o.insert(
            "@odata.etag".into(),
            json!(format!("W/\"{}\"", m.change_key())),
        );
        let want = |k: &str| {
            k == "id"
                || select.is_some_and(|s| s.contains(&k))
                || (select.is_none() && k != "internetMessageHeaders" && k != "uniqueBody")
        };
        let conv_topic = s.subject.trim_start_matches("Re: ").to_owned();
        let conv = {
            let dg = Sha256::digest(format!("{}:{conv_topic}", self.mb.upn).as_bytes());
            format!(
                "AAQkA{}=",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&dg[..24])
            )
        };
        let fields: Vec<Field<'_>> = vec![
            ("id", Box::new(|| json!(id))),
            ("createdDateTime", Box::new(|| json!(graph_time(m.created)))),
            (
                "lastModifiedDateTime",
                Box::new(|| json!(graph_time(m.last_modified))),
            ),
            ("changeKey", Box::new(|| json!(m.change_key()))),
            ("categories", Box::new(|| json!(s.categories))),
            (
                "receivedDateTime",
                Box::new(|| json!(graph_time(m.received))),
            ),
            ("sentDateTime", Box::new(|| json!(graph_time(m.sent)))),
            (
                "hasAttachments",
                Box::new(|| json!(!s.attachments.is_empty())),
            ),
            ("internetMessageId", Box::new(|| json!(s.message_id))),
            ("subject", Box::new(|| json!(s.subject))),
            ("bodyPreview", Box::new(|| json!(synth::body_preview(s)))),
            ("importance", Box::new(|| json!(s.importance))),
            ("parentFolderId", Box::new(|| json!(folder.id))),
            ("conversationId", Box::new(|| json!(conv))),
            (
                "conversationIndex",
                Box::new(|| {
                    json!(
                        base64::engine::general_purpose::STANDARD
                            .encode(&Sha256::digest(conv_topic.as_bytes())[..22])
                    )
                }),
            ),
            ("isDeliveryReceiptRequested", Box::new(|| json!(false))),
            ("isReadReceiptRequested", Box::new(|| json!(false))),
            ("isRead", Box::new(|| json!(m.is_read))),
            (
                "isDraft",
                Box::new(|| json!(folder.well_known.as_deref() == Some("drafts"))),
            ),
            (
                "webLink",
                Box::new(|| {
                    json!(format!(
                        "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
                        query_encode(id)
                    ))
                }),
            ),
            ("inferenceClassification", Box::new(|| json!("focused"))),
            ("body", Box::new(|| self.body_json(s))),
            ("uniqueBody", Box::new(|| self.body_json(s))),
            ("sender", Box::new(|| recipient(&s.from))),
            ("from", Box::new(|| recipient(&s.from))),
            (
                "toRecipients",
                Box::new(|| json!(s.to.iter().map(recipient).collect::<Vec<_>>())),
            ),
            (
                "ccRecipients",
                Box::new(|| json!(s.cc.iter().map(recipient).collect::<Vec<_>>())),
            ),
            ("bccRecipients", Box::new(|| json!([]))),
            ("replyTo", Box::new(|| json!([]))),
            ("flag", Box::new(|| json!({"flagStatus": "notFlagged"}))),
            (
                "internetMessageHeaders",
                Box::new(|| {
                    json!([
                        {"name": "Message-ID", "value": s.message_id},
                        {"name": "Subject", "value": synth::encode_word(&s.subject)},
                        {"name": "From", "value": format!("{} <{}>", s.from.name, s.from.address)},
                        {"name": "Date", "value": m.sent.to_rfc2822()},
                        {"name": "MIME-Version", "value": "1.0"},
                    ])
                }),
            ),
        ];
        for (k, f) in fields {
            if want(k) {
                o.insert(k.into(), f());
            }
        }
        Value::Object(o)
    }

    /// `body`/`uniqueBody`: HTML, or plain text when the client prefers it.
    fn body_json(&self, s: &synth::SynthMessage) -> Value {
        if self.text_body {
            json!({"contentType": "text", "content": s.body_text})
        } else {
            json!({"contentType": "html", "content": synth::body_html(s)})
        }
    }

    fn delta(&self, f: &str) -> Resp {
        let q = self.r.query_map();
        let lifetime = self.shared.delta_lifetime;
        let prefer_page = self
            .r
            .header("prefer")
            .and_then(odata::prefer_maxpagesize)
            .map(|n| n.clamp(1, MAX_PAGE));
        let folder_idx = {
            let d = lock(&self.mb.data);
            match d.folder_index(f) {
                Some(i) if d.folders[i].kind == FolderKind::Mail => i,
                Some(_) => {
                    return self.err(
                        400,
                        "ErrorInvalidRequest",
                        "Change tracking is not supported for search folders (mailSearchFolder); skip them and sync their source folders.",
                    );
                }
                None => return self.not_found(),
            }
        };
        let base_link = format!("{}{}", self.shared.base_url, self.r.path);
        let gone = |this: &Self| {
            this.shared.stats.bump(Counter::DeltaGone);
            this.err(
                410,
                "syncStateNotFound",
                "The sync state for this delta or skip token was not found: it expired or was invalidated. Discard the token and start a full synchronization with a request without $deltatoken.",
            )
            .with_header("Location", base_link.clone())
        };
        let wrong_folder = |this: &Self| {
            this.err(
                400,
                "BadRequest",
                "The delta or skip token was issued for another folder; use the links returned for this folder.",
            )
        };
        // Resolve the session (existing page or a new round) and the position.
        let (session_id, session, pos) = if let Some(st) = q.get("$skiptoken") {
            let store = lock(&self.mb.delta);
            match store.session(st, folder_idx, lifetime) {
                Ok(x) => x,
                Err(TokenError::Gone) => return gone(self),
                Err(TokenError::WrongFolder) => return wrong_folder(self),
            }
        } else {
            let (params, since, page) = if let Some(dt) = q.get("$deltatoken") {
                let mut store = lock(&self.mb.delta);
                match store.token(dt, folder_idx, lifetime) {
                    Ok((p, seq)) => (p, Some(seq), prefer_page.unwrap_or(DEFAULT_PAGE)),
                    Err(TokenError::Gone) => return gone(self),
                    Err(TokenError::WrongFolder) => return wrong_folder(self),
                }
            } else {
                let parsed = (|| {
                    let filter = match q.get("$filter") {
                        Some(s) => {
                            let f = odata::parse_filter(s)?;
                            odata::check_delta_filter(&f)?;
                            f
                        }
                        None => Filter::default(),
                    };
                    if let Some(o) = q.get("$orderby") {
                        let ob = odata::parse_orderby(o)?;
                        if ob
                            != [OrderBy {
                                prop: Prop::Received,
                                descending: true,
                            }]
                        {
                            return Err(QueryError {
                                code: "BadRequest",
                                message: "A delta query on messages supports only $orderby=receivedDateTime desc.".to_owned(),
                            });
                        }
                    }
                    let top = match q.get("$top") {
                        Some(t) => Some(odata::parse_count("$top", t)?.clamp(1, MAX_PAGE)),
                        None => None,
                    };
                    Ok::<_, QueryError>((filter, self.select(&q)?, top))
                })();
                let (filter, select, top) = match parsed {
                    Ok(x) => x,
                    Err(e) => return query_error(self.r, e),
                };
                (
                    DeltaParams {
                        folder: folder_idx,
                        filter,
                        select,
                    },
                    None,
                    prefer_page.or(top).unwrap_or(DEFAULT_PAGE),
                )
            };
            let (entries, snapshot) = {
                let d = lock(&self.mb.data);
                let e = match since {
                    None => delta::initial_entries(&d, &params),
                    Some(seq) => delta::change_entries(&d, &params, seq, self.immutable),
                };
                (e, d.seq)
            };
            let mut store = lock(&self.mb.delta);
            let sid = store.start_session(params, entries, snapshot, page);
            let Ok(s) = store.session(&format!("{sid}_0"), folder_idx, None) else {
                return gone(self);
            };
            s
        };
        let page_size = prefer_page.unwrap_or(session.page_size);
        let quirks = lock(&self.shared.faults).delta_quirks(pos > 0);
        if quirks.empty_page || quirks.duplicate {
            self.shared.stats.bump(Counter::DeltaQuirk);
        }
        if quirks.empty_page {
            // An empty page whose nextLink points at the same position.
            let body = json!({
                "@odata.context": format!("{}/$metadata#Collection(message)", self.shared.graph_url()),
                "value": [],
                "@odata.nextLink": format!("{base_link}?$skiptoken={session_id}_{pos}"),
            });
            return self.with_pref(ok_json(self.r, &body), prefer_page);
        }
        let end = (pos + page_size).min(session.entries.len());
        let start = if quirks.duplicate {
            pos.saturating_sub(1)
        } else {
            pos
        };
        let slice = session.entries.get(start..end).unwrap_or(&[]);
        let values: Vec<Value> = {
            let d = lock(&self.mb.data);
            slice
                .iter()
                .map(|e| match e {
                    Entry::Present {
                        key,
                        rest_id,
                        immutable_id,
                    } => match d.messages.get(key) {
                        // Still where the snapshot saw it: report its current state.
                        Some(m)
                            if m.folder == session.params.folder
                                && m.id(self.immutable)
                                    == if self.immutable {
                                        immutable_id
                                    } else {
                                        rest_id
                                    } =>
                        {
                            self.message_json(&d, m, session.params.select.as_deref(), true)
                        }
                        // Deleted or moved away since the snapshot: report it removed under the
                        // id the client would know it by.
                        _ => removed_json(if self.immutable {
                            immutable_id
                        } else {
                            rest_id
                        }),
                    },
                    Entry::Removed {
                        rest_id,
                        immutable_id,
                    } => removed_json(if self.immutable {
                        immutable_id
                    } else {
                        rest_id
                    }),
                })
                .collect()
        };
        let mut body = json!({
            "@odata.context": format!("{}/$metadata#Collection(message)", self.shared.graph_url()),
            "value": values,
        });
        if end < session.entries.len() {
            body["@odata.nextLink"] = json!(format!("{base_link}?$skiptoken={session_id}_{end}"));
        } else {
            let token =
                lock(&self.mb.delta).issue_token(session.params.clone(), session.snapshot_seq);
            body["@odata.deltaLink"] = json!(format!("{base_link}?$deltatoken={token}"));
        }
        self.with_pref(ok_json(self.r, &body), prefer_page)
    }
}

fn removed_json(id: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.message",
        "id": id,
        "@removed": {"reason": "deleted"},
    })
}

#[derive(serde::Deserialize)]
struct BatchRequest {
    requests: Vec<BatchItem>,
}

#[derive(serde::Deserialize)]
struct BatchItem {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default, rename = "dependsOn")]
    depends_on: Vec<String>,
}

/// Builds the sub-request of a batch item (it inherits the batch's `Authorization`).
fn sub_request(outer: &Req, item: &BatchItem) -> Req {
    let url = item.url.trim_start_matches('/');
    let url = url.strip_prefix("v1.0/").unwrap_or(url);
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut headers = hyper::HeaderMap::new();
    if let Some(a) = outer.headers.get("authorization") {
        headers.insert("authorization", a.clone());
    }
    for (k, v) in &item.headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            headers.insert(n, v);
        }
    }
    Req {
        method: Method::from_bytes(item.method.to_ascii_uppercase().as_bytes())
            .unwrap_or(Method::GET),
        path: format!("/v1.0/{path}"),
        query: query.to_owned(),
        headers,
        body: Bytes::new(),
    }
}

/// One batch response entry.
fn batch_entry(id: &str, resp: &Resp) -> Value {
    let is_json = resp
        .content_type()
        .is_some_and(|c| c.starts_with("application/json"));
    let body = if is_json {
        serde_json::from_slice::<Value>(&resp.body).unwrap_or(Value::Null)
    } else {
        json!(base64::engine::general_purpose::STANDARD.encode(&resp.body))
    };
    let headers: Map<String, Value> = resp
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({ "id": id, "status": resp.status, "headers": headers, "body": body })
}

/// Maps a sub-request outcome to its response; `None` = the whole batch connection must drop.
fn sub_response(o: Outcome) -> Option<Resp> {
    match o {
        Outcome::Respond(resp) => Some(resp),
        // Pacing does not apply inside a batch answer.
        Outcome::Shaped(resp, shape) if !shape.truncate => Some(resp),
        // A cut-off sub-response cuts off the whole batch response.
        Outcome::Drop | Outcome::Shaped(..) => None,
    }
}

/// `POST /v1.0/$batch` with up to 20 GET sub-requests, each through the full pipeline, so each
/// counts for statistics, the concurrency limit and faults, as in Graph. Without `dependsOn`
/// the sub-requests run concurrently (more than the mailbox concurrency limit at once get 429
/// sub-responses, as Outlook resources do in real batches); with `dependsOn` anywhere they run
/// in order and a request whose dependency failed gets 424. Binary bodies (`$value`) come back
/// base64-encoded; JSON bodies as JSON.
async fn batch(shared: &Arc<Shared>, r: Req) -> Outcome {
    if r.method != Method::POST {
        return Outcome::Respond(graph_error(&r, 405, "BadRequest", "$batch requires POST."));
    }
    let req: BatchRequest = match serde_json::from_slice(&r.body) {
        Ok(b) => b,
        Err(e) => {
            return Outcome::Respond(graph_error(
                &r,
                400,
                "BadRequest",
                &format!(
                    "Invalid batch payload: {e}. Expected {{\"requests\":[{{\"id\",\"method\",\"url\"}}]}}."
                ),
            ));
        }
    };
    if req.requests.len() > MAX_BATCH {
        return Outcome::Respond(graph_error(
            &r,
            400,
            "BadRequest",
            &format!(
                "Limit of {MAX_BATCH} requests in a batch exceeded ({} given).",
                req.requests.len()
            ),
        ));
    }
    let mut ids = std::collections::HashSet::new();
    if let Some(dup) = req.requests.iter().find(|i| !ids.insert(i.id.as_str())) {
        return Outcome::Respond(graph_error(
            &r,
            400,
            "BadRequest",
            &format!(
                "Batch request ids must be unique; '{}' is used twice.",
                dup.id
            ),
        ));
    }
    let sequential = req.requests.iter().any(|i| !i.depends_on.is_empty());
    let mut responses = Vec::with_capacity(req.requests.len());
    if sequential {
        let mut status: HashMap<String, u16> = HashMap::new();
        for item in &req.requests {
            let failed_dep = item
                .depends_on
                .iter()
                .any(|d| !status.get(d).is_some_and(|s| (200..300).contains(s)));
            let resp = if failed_dep {
                graph_error(
                    &r,
                    424,
                    "FailedDependency",
                    "A request this request depends on did not succeed (or is not earlier in the batch).",
                )
            } else {
                let sub = sub_request(&r, item);
                let parsed = parse_path(&sub.path);
                match sub_response(single(shared, sub, parsed).await) {
                    Some(resp) => resp,
                    None => return Outcome::Drop,
                }
            };
            status.insert(item.id.clone(), resp.status);
            responses.push(batch_entry(&item.id, &resp));
        }
    } else {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, item) in req.requests.iter().enumerate() {
            let sub = sub_request(&r, item);
            let shared = shared.clone();
            tasks.spawn(async move {
                let parsed = parse_path(&sub.path);
                (i, single(&shared, sub, parsed).await)
            });
        }
        let mut results: Vec<Option<Resp>> = vec![None; req.requests.len()];
        while let Some(joined) = tasks.join_next().await {
            let Ok((i, outcome)) = joined else {
                return Outcome::Respond(graph_error(
                    &r,
                    500,
                    "ErrorInternalServerError",
                    "A batch sub-request failed inside the emulator.",
                ));
            };
            match sub_response(outcome) {
                Some(resp) => results[i] = Some(resp),
                None => return Outcome::Drop,
            }
        }
        for (item, resp) in req.requests.iter().zip(results) {
            if let Some(resp) = resp {
                responses.push(batch_entry(&item.id, &resp));
            }
        }
    }
    Outcome::Respond(ok_json(&r, &json!({ "responses": responses })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(p: &str) -> String {
        match parse_path(p) {
            Parsed::Graph(u, r) => format!("{u:?} {r:?}"),
            Parsed::Batch => "batch".into(),
            Parsed::Unknown(s) => format!("unknown {s}"),
        }
    }

    #[test]
    fn paths_parse_like_graph() {
        assert_eq!(res("/v1.0/me"), "Me Profile");
        assert_eq!(res("/v1.0/me/mailFolders"), "Me FolderList(None)");
        assert_eq!(
            res("/v1.0/users/a%40b.c/mailFolders('inbox')/messages/delta()"),
            "Id(\"a@b.c\") Delta(\"inbox\")"
        );
        assert_eq!(
            res("/v1.0/me/mailFolders/X/childFolders"),
            "Me FolderList(Some(\"X\"))"
        );
        assert_eq!(
            res("/v1.0/me/mailFolders/X/childFolders/Y/messages"),
            "Me Messages(Some(\"Y\"))"
        );
        assert_eq!(res("/v1.0/me/messages/ID/%24value"), "Me Value(\"ID\")");
        assert_eq!(
            res("/v1.0/me/mailFolders/F/messages/ID/$value"),
            "Me Value(\"ID\")"
        );
        assert_eq!(res("/v1.0/me/messages/delta"), "Me MailboxDelta");
        assert_eq!(res("/v1.0/$batch"), "batch");
        assert_eq!(res("/v1.0/me/contacts"), "unknown contacts");
        assert_eq!(res("/v1.0/groups/x"), "unknown groups");
    }
}
