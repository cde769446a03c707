//! Microsoft Graph v1.0 mail endpoints: user profile, mail folders, messages (list, get,
//! `$value`), per-folder delta queries, `$batch`, and the writes a restore needs (folder and
//! message creation, message updates, attachments; see `write`).
//!
//! Each request goes through the same pipeline, in Graph's order: route, bearer token (401),
//! mailbox and permission (404/403), per-mailbox concurrency slot (429 `ApplicationThrottled`,
//! held during the configured latency as well), latency, injected faults, then the handler.
//! Responses and errors copy Graph's shapes (`@odata.context`, `@odata.nextLink` with `$skip`,
//! `@odata.deltaLink`, `{"error":{"code","message","innerError":{...}}}`, `request-id` headers).
//! Reads are GET; writes (`write.rs`) need `Mail.ReadWrite` and pass the same pipeline
//! (concurrency slot, latency, faults). Tests can also mutate mailboxes directly through
//! [`crate::MailboxHandle`].

mod batch;
mod delta_query;
mod folders;
mod messages;
mod route;
mod users;
mod write;

pub(crate) use write::UploadStore;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use hyper::Method;
use serde_json::{Value, json};

use crate::faults::Injected;
use crate::identity::{Grant, Principal, TokenRejection};
use crate::mailbox::MailboxState;
use crate::odata::{self, QueryError};
use crate::server::{Outcome, Req, Resp, Shape, Shared};
use crate::stats::{Counter, EndpointKind};
use crate::util::{graph_time, lock, query_encode};

use route::{Parsed, Resource, UserRef, parse_path};

const JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 10;
const MAX_BATCH: usize = 20;

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
            batch::batch(shared, r).await
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
        self.0.inflight_changed.notify_waiters();
    }
}

/// Validates the bearer token: the grant, or Graph's 401 answer (with `WWW-Authenticate`).
fn authenticate(shared: &Shared, r: &Req) -> Result<Grant, Resp> {
    let token = r.header("authorization").and_then(|v| {
        let (scheme, t) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| t.trim())
    });
    shared.identity.validate(token).map_err(|rej| {
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
        graph_error(r, 401, "InvalidAuthenticationToken", msg).with_header("WWW-Authenticate", www)
    })
}

/// A 429 telling the client to wait `retry_after` seconds.
fn throttled(r: &Req, code: &str, message: &str, retry_after: u64) -> Resp {
    graph_error(r, 429, code, message).with_header("Retry-After", retry_after.to_string())
}

/// The injected 503, with `Retry-After` when the fault sets one (Graph sometimes leaves it out).
fn unavailable(r: &Req, retry_after: Option<u64>) -> Resp {
    let resp = graph_error(
        r,
        503,
        "ServiceUnavailable",
        "The service is temporarily unavailable. Please try again later.",
    );
    match retry_after {
        Some(s) => resp.with_header("Retry-After", s.to_string()),
        None => resp,
    }
}

/// Waits the configured latency plus the `extra` a fault adds.
async fn delay(shared: &Shared, extra: std::time::Duration) {
    let wait = shared.latency + extra;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// Rejects every method but GET on a read-only resource.
fn read_only(r: &Req) -> Result<(), Resp> {
    if r.method == Method::GET {
        return Ok(());
    }
    Err(graph_error(
        r,
        405,
        "ErrorInvalidRequest",
        &format!(
            "The emulator serves mail resources read-only: method {} is not supported here (only GET, and POST /$batch).",
            r.method
        ),
    ))
}

async fn single(shared: &Arc<Shared>, r: Req, parsed: Parsed) -> Outcome {
    let (user, res) = match parsed {
        Parsed::Graph(u, res) => (u, res),
        Parsed::UserList => {
            shared.stats.request(EndpointKind::UserList);
            return users::list(shared, r).await;
        }
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
    let kind = res.kind_for(&r.method);
    shared.stats.request(kind);
    if let Err(resp) = write::check_method(&r, &res) {
        return Outcome::Respond(resp);
    }
    // 1. Token (an upload URL is pre-authenticated by its session).
    let grant = match match &res {
        Resource::AttachmentSession { session, .. } => write::upload_grant(shared, &r, session),
        _ => authenticate(shared, &r),
    } {
        Ok(g) => g,
        Err(resp) => return Outcome::Respond(resp),
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
    if let Err(resp) = check_mail_permission(&r, &grant, user_idx, &res)
        .and_then(|()| write::check_write_permission(&r, &grant, user_idx))
    {
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
    mb.inflight_changed.notify_waiters();
    shared.stats.concurrency(&mb.upn, current);
    if let Some(limit) = shared.concurrency_limit
        && current > limit
    {
        shared.stats.bump(Counter::ThrottledConcurrency);
        tracing::debug!(mailbox = %mb.upn, current, limit, "429: mailbox concurrency limit");
        return Outcome::Respond(throttled(
            &r,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit.",
            shared.concurrency_retry_after,
        ));
    }
    if let Some(limit) = shared.rate_limit
        && let Err(retry_after) = mb.take_budget(limit)
    {
        shared.stats.bump(Counter::ThrottledRate);
        return Outcome::Respond(throttled(
            &r,
            "ApplicationThrottled",
            "Application is over its request rate limit for this mailbox.",
            retry_after,
        ));
    }
    // 4. Latency and faults.
    let (extra, injected, bandwidth) = {
        let mut f = lock(&shared.faults);
        (f.extra_latency(), f.decide(kind), f.value_bandwidth())
    };
    delay(shared, extra).await;
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
            return Outcome::Respond(throttled(
                &r,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                retry_after,
            ));
        }
        Some(Injected::Unavailable { retry_after }) => {
            shared.stats.bump(Counter::UnavailableInjected);
            return Outcome::Respond(unavailable(&r, retry_after));
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
        res if r.method != Method::GET => ctx.write(res, &grant),
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
        Resource::Attachments(_)
        | Resource::UploadSession(_)
        | Resource::AttachmentSession { .. } => {
            ctx.err(405, "ErrorInvalidRequest", "GET is not supported here.")
        }
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
        Resource::Attachments(_)
        | Resource::UploadSession(_)
        | Resource::AttachmentSession { .. } => &[],
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
    let mut o = serde_json::Map::new();
    o.insert(
        "@odata.context".into(),
        json!(format!("{}/$metadata#users/$entity", shared.graph_url())),
    );
    o.extend(
        users::properties(u)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
    );
    ok_json(r, &Value::Object(o))
}

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

    /// One page of a collection: `@odata.context` for `what`, the `value`s, `@odata.count`
    /// when `$count=true` was asked for, and `@odata.nextLink` while more items follow.
    fn collection_page(
        &self,
        q: &HashMap<String, String>,
        what: &str,
        page: Vec<Value>,
        total: usize,
        paging: &Paging,
    ) -> Value {
        let mut body = json!({
            "@odata.context": self.context(what),
            "value": page,
        });
        if q.get("$count").is_some_and(|c| c == "true") {
            body["@odata.count"] = json!(total);
        }
        if paging.skip + paging.top < total {
            body["@odata.nextLink"] = json!(self.next_link(paging.top, paging.skip + paging.top));
        }
        body
    }

    /// Same URL with `$skip` and `$top` replaced.
    fn next_link(&self, top: usize, skip: usize) -> String {
        let mut params: Vec<(String, String)> =
            url::form_urlencoded::parse(self.r.query.as_bytes())
                .into_owned()
                .filter(|(k, _)| k != "$skip" && k != "$top")
                .collect();
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
}
