//! HTTP server: accept loop, per-connection HTTP/1.1 service, routing between the identity and
//! Graph endpoints, and the [`Emulator`] handle.
//!
//! Why hyper directly instead of axum: the emulator must be able to close a connection without
//! sending any response (the "dropped connection" fault). A hyper service that returns an error
//! does exactly that; axum handlers are infallible and always answer. Routing is a small manual
//! parser anyway, because Graph paths mix `me`/`users/{id}`, OData key syntax
//! (`mailFolders('inbox')`) and `$value` segments. Shutdown stops the accept loop and aborts
//! all connection tasks (clients with idle keep-alive connections would otherwise delay it).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::EmulatorConfig;
use crate::error::EmulatorError;
use crate::faults::{FaultState, FaultsHandle};
use crate::identity::{IdentityHandle, IdentityState, UserRecord};
use crate::mailbox::{MailboxHandle, MailboxState, derived_object_id};
use crate::stats::{EndpointKind, Stats, StatsCollector};
use crate::util::percent_decode;

/// State shared by all connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) base_url: String,
    pub(crate) mailboxes: Vec<Arc<MailboxState>>,
    pub(crate) identity: IdentityState,
    pub(crate) faults: Mutex<FaultState>,
    pub(crate) stats: StatsCollector,
    pub(crate) latency: Duration,
    pub(crate) concurrency_limit: Option<usize>,
    pub(crate) concurrency_retry_after: u64,
    pub(crate) rate_limit: Option<crate::config::RateLimit>,
    pub(crate) delta_lifetime: Option<Duration>,
    /// Server-side page size cap of `GET /users`.
    pub(crate) user_list_max_page: usize,
    /// Attachment upload sessions in progress.
    pub(crate) uploads: crate::graph::UploadStore,
}

impl Shared {
    pub(crate) fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }
}

/// A request after body collection (also used for `$batch` sub-requests).
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) method: Method,
    /// Path without the query, percent-encoded as received.
    pub(crate) path: String,
    /// Raw query string (without `?`).
    pub(crate) query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Req {
    /// Decoded query parameters (`+` is a space, as in forms and OData URLs).
    pub(crate) fn query_map(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .collect()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response before conversion to hyper types.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Resp {
    pub(crate) fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    pub(crate) fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub(crate) fn content_type(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
    }
}

/// What the pipeline decided.
#[derive(Debug)]
pub(crate) enum Outcome {
    Respond(Resp),
    /// Close the connection without answering.
    Drop,
    /// Answer with a shaped body (cut short and/or bandwidth-limited).
    Shaped(Resp, Shape),
}

/// How a body is delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Send only the first half, then close the connection.
    pub(crate) truncate: bool,
    /// Deliver at most this many bytes per second.
    pub(crate) bytes_per_sec: Option<u64>,
}

/// Chunk size of shaped bodies.
const CHUNK: usize = 64 * 1024;

/// A body delivered in chunks, optionally paced and optionally cut short. The size hint is the
/// full length, so hyper sends the full `Content-Length` and a cut-short download is visible to
/// the client as an incomplete body.
pub(crate) struct ShapedBody {
    data: Bytes,
    pos: usize,
    /// Bytes to send before stopping (the full length unless truncated).
    end: usize,
    truncate: bool,
    bytes_per_sec: Option<u64>,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Whether the body already answered `Pending` once after the last data, which makes hyper
    /// flush the head and the data to the socket before the error closes the connection.
    flushed: bool,
}

impl std::fmt::Debug for ShapedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShapedBody")
            .field("len", &self.data.len())
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}

impl ShapedBody {
    fn new(data: Bytes, shape: Shape) -> Self {
        let end = if shape.truncate {
            data.len() / 2
        } else {
            data.len()
        };
        Self {
            data,
            pos: 0,
            end,
            truncate: shape.truncate,
            bytes_per_sec: shape.bytes_per_sec.filter(|b| *b > 0),
            pause: None,
            flushed: false,
        }
    }
}

impl hyper::body::Body for ShapedBody {
    type Data = Bytes;
    type Error = DropConnection;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, DropConnection>>> {
        use std::task::Poll;
        if let Some(p) = self.pause.as_mut() {
            if p.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        if self.pos < self.end {
            // Paced bodies go out in chunks of a tenth of a second's worth, so a body smaller
            // than one full chunk is paced as well (not sent at once, then paused).
            let chunk = self.bytes_per_sec.map_or(CHUNK, |b| {
                usize::try_from(b / 10).unwrap_or(CHUNK).clamp(1, CHUNK)
            });
            let n = chunk.min(self.end - self.pos);
            let chunk = self.data.slice(self.pos..self.pos + n);
            self.pos += n;
            if let Some(bps) = self.bytes_per_sec {
                let secs = n as f64 / bps as f64;
                self.pause = Some(Box::pin(tokio::time::sleep(
                    std::time::Duration::from_secs_f64(secs),
                )));
            }
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))));
        }
        if !self.truncate {
            return Poll::Ready(None);
        }
        if !self.flushed {
            self.flushed = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(DropConnection)))
    }

    fn is_end_stream(&self) -> bool {
        !self.truncate && self.pos >= self.end && self.pause.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.data.len() as u64)
    }
}

type Body = http_body_util::Either<Full<Bytes>, ShapedBody>;

/// Error returned to hyper to make it close the connection without a response.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

fn to_hyper(r: Resp, shape: Option<Shape>) -> Response<Body> {
    let body = match shape {
        Some(shape) => http_body_util::Either::Right(ShapedBody::new(r.body, shape)),
        None => http_body_util::Either::Left(Full::new(r.body)),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in r.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

async fn service(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, DropConnection> {
    let (parts, body) = req.into_parts();
    // A client that disconnects mid-body leaves nothing to answer.
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    let r = Req {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
    };
    tracing::debug!(method = %r.method, path = %r.path, "request");
    match route(&shared, r).await {
        Outcome::Respond(resp) => Ok(to_hyper(resp, None)),
        Outcome::Shaped(resp, shape) => Ok(to_hyper(resp, Some(shape))),
        Outcome::Drop => Err(DropConnection),
    }
}

async fn route(shared: &Arc<Shared>, r: Req) -> Outcome {
    if r.path == "/v1.0" || r.path.starts_with("/v1.0/") {
        return crate::graph::handle(shared, r).await;
    }
    let segs: Vec<String> = r
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let kind = match segs.as_slice() {
        [_, "oauth2", "v2.0", "token"] => EndpointKind::Token,
        [_, "oauth2", "v2.0", "authorize"] => EndpointKind::Authorize,
        [_, "oauth2", "v2.0", "devicecode"] => EndpointKind::DeviceCode,
        _ => EndpointKind::IdentityOther,
    };
    shared.stats.request(kind);
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let base = shared.base_url.as_str();
    let id = &shared.identity;
    let answer = match (r.method.clone(), segs.as_slice()) {
        (Method::POST, [tenant, "oauth2", "v2.0", "token"]) => {
            let form = form_map(&r.body);
            id.token(tenant, &form, basic_auth(&r), base)
        }
        (Method::GET, [tenant, "oauth2", "v2.0", "authorize"]) => {
            id.authorize(tenant, &r.query_map(), base)
        }
        (Method::POST, [tenant, "oauth2", "v2.0", "devicecode"]) => {
            id.devicecode(tenant, &form_map(&r.body), base)
        }
        (Method::GET, [tenant, "v2.0", ".well-known", "openid-configuration"]) => {
            id.openid_configuration(tenant, base)
        }
        (Method::GET, ["devicelogin"]) => {
            return Outcome::Respond(Resp::new(
                200,
                "text/html; charset=utf-8",
                "<!DOCTYPE html><html><body><h1>Graph emulator device login</h1><p>The emulator approves device codes automatically; there is nothing to enter here.</p></body></html>",
            ));
        }
        (Method::GET, []) => {
            let info = serde_json::json!({
                "emulator": "graph-emulator",
                "graph_url": shared.graph_url(),
                "authority_url": base,
                "tenant_id": id.tenant_id,
                "token_url": format!("{base}/{}/oauth2/v2.0/token", id.tenant_id),
                "mailboxes": shared.mailboxes.iter().map(|m| m.upn.clone()).collect::<Vec<_>>(),
            });
            return Outcome::Respond(Resp::new(200, "application/json", info.to_string()));
        }
        _ => {
            return Outcome::Respond(Resp::new(
                404,
                "application/json",
                serde_json::json!({
                    "error": "not_found",
                    "error_description": format!("The emulator has no endpoint {} {}. Graph lives under /v1.0, identity under /{{tenant}}/oauth2/v2.0/{{authorize|token|devicecode}}.", r.method, r.path),
                })
                .to_string(),
            ));
        }
    };
    let mut resp = Resp::new(answer.status, answer.content_type, answer.body);
    for (k, v) in answer.headers {
        resp = resp.with_header(k, v);
    }
    Outcome::Respond(resp)
}

fn form_map(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// `client_secret_basic`: `Authorization: Basic base64(urlenc(id):urlenc(secret))`
/// (RFC 6749 section 2.3.1).
fn basic_auth(r: &Req) -> Option<(String, String)> {
    let v = r.header("authorization")?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    let dec = |x: &str| {
        url::form_urlencoded::parse(format!("v={x}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// A running emulator. Dropping it without [`Emulator::shutdown`] also stops the server.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Builds the mailboxes, binds [`EmulatorConfig::listen`] and starts serving.
    ///
    /// Errors: the address cannot be bound, or the configuration is inconsistent (reported as
    /// `InvalidInput` with a message naming the problem).
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        validate(&config).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let mailboxes: Vec<Arc<MailboxState>> = config
            .mailboxes
            .iter()
            .map(|m| Arc::new(MailboxState::build(m)))
            .collect();
        let mut users: Vec<UserRecord> = config
            .mailboxes
            .iter()
            .zip(mailboxes.iter())
            .enumerate()
            .map(|(i, (spec, mb))| UserRecord {
                upn: spec.user_principal_name.clone(),
                display_name: spec.display_name.clone(),
                object_id: mb.object_id.clone(),
                password: spec.password.clone(),
                mailbox: Some(i),
            })
            .collect();
        users.extend(config.users_without_mailbox.iter().map(|u| UserRecord {
            upn: u.user_principal_name.clone(),
            display_name: u.display_name.clone(),
            object_id: derived_object_id(&u.user_principal_name),
            password: u.password.clone(),
            mailbox: None,
        }));
        let identity = IdentityState::new(&config, users)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared {
            base_url,
            mailboxes,
            identity,
            faults: Mutex::new(FaultState::new(config.faults.clone())),
            stats: StatsCollector::default(),
            latency: config.latency,
            concurrency_limit: config.mailbox_concurrency_limit,
            concurrency_retry_after: config.concurrency_retry_after_secs,
            rate_limit: config.mailbox_rate_limit,
            delta_lifetime: config.delta_token_lifetime,
            user_list_max_page: config.user_list_max_page.max(1),
            uploads: Default::default(),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        tracing::info!(%addr, "graph emulator listening");
        Ok(Emulator {
            shared,
            addr,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `{base}/v1.0`: prefix of every Graph URL.
    pub fn graph_url(&self) -> String {
        self.shared.graph_url()
    }

    /// `{base}`: the token URL is `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn authority_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Token URL for the configured tenant id.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.shared.base_url, self.shared.identity.tenant_id
        )
    }

    /// Authorize URL for the configured tenant id.
    pub fn authorize_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/authorize",
            self.shared.base_url, self.shared.identity.tenant_id
        )
    }

    /// Device code URL for the configured tenant id.
    pub fn devicecode_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/devicecode",
            self.shared.base_url, self.shared.identity.tenant_id
        )
    }

    /// Tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.shared.identity.tenant_id
    }

    /// Bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Handle of a mailbox by user principal name (case-insensitive) or object id.
    ///
    /// # Panics
    /// If no such mailbox is configured (a test bug); use [`Emulator::try_mailbox`] to check.
    pub fn mailbox(&self, user: &str) -> MailboxHandle {
        match self.try_mailbox(user) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    /// Handle of a mailbox, or an error naming the configured mailboxes.
    pub fn try_mailbox(&self, user: &str) -> Result<MailboxHandle, EmulatorError> {
        self.shared
            .mailboxes
            .iter()
            .find(|m| m.upn.eq_ignore_ascii_case(user) || m.object_id.eq_ignore_ascii_case(user))
            .map(|m| MailboxHandle { state: m.clone() })
            .ok_or_else(|| {
                EmulatorError::UnknownMailbox(
                    user.to_owned(),
                    self.shared
                        .mailboxes
                        .iter()
                        .map(|m| m.upn.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
    }

    /// Handles of all mailboxes in configuration order.
    pub fn mailboxes(&self) -> Vec<MailboxHandle> {
        self.shared
            .mailboxes
            .iter()
            .map(|m| MailboxHandle { state: m.clone() })
            .collect()
    }

    /// Snapshot of the request statistics.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// Waits until at least `n` requests of `kind` were counted since the start or the last
    /// [`Emulator::reset_stats`] (at once when there already were). Tests await it instead of
    /// polling [`Emulator::stats`] in a sleep loop, e.g. to interrupt a client mid-run. Bound it
    /// with a timeout: it waits for ever if the requests never come.
    pub async fn wait_for_requests(&self, kind: EndpointKind, n: u64) {
        self.shared.stats.wait_for(kind, n).await;
    }

    /// Resets the request statistics to zero.
    pub fn reset_stats(&self) {
        self.shared.stats.reset();
    }

    /// Changes faults at run time.
    pub fn faults(&self) -> FaultsHandle {
        FaultsHandle {
            shared: self.shared.clone(),
        }
    }

    /// Identity test hooks (device code decline/expire, consent decline, token revocation).
    pub fn identity(&self) -> IdentityHandle {
        IdentityHandle {
            state: self.shared.clone(),
        }
    }

    /// Stops accepting, closes every connection and waits for the server task.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            // The task ends right after the stop signal; a join error means it panicked,
            // which the panic message already reported.
            let _ = task.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The receiver is gone only if the task already ended.
            let _ = stop.send(());
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn validate(c: &EmulatorConfig) -> Result<(), EmulatorError> {
    if c.mailboxes.is_empty() {
        return Err(EmulatorError::InvalidConfig(
            "at least one mailbox is needed".to_owned(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for m in &c.mailboxes {
        if !seen.insert(m.user_principal_name.to_ascii_lowercase()) {
            return Err(EmulatorError::InvalidConfig(format!(
                "mailbox '{}' is configured twice",
                m.user_principal_name
            )));
        }
        if !m.user_principal_name.contains('@') {
            return Err(EmulatorError::InvalidConfig(format!(
                "user principal name '{}' must look like user@domain",
                m.user_principal_name
            )));
        }
    }
    if let Some(r) = c.mailbox_rate_limit
        && (r.requests == 0 || r.window.is_zero())
    {
        return Err(EmulatorError::InvalidConfig(
            "mailbox_rate_limit needs at least 1 request and a non-zero window".to_owned(),
        ));
    }
    if c.mailbox_concurrency_limit == Some(0) {
        return Err(EmulatorError::InvalidConfig(
            "mailbox_concurrency_limit must be at least 1 (None = unlimited)".to_owned(),
        ));
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _peer)) => {
                        shared.stats.bump(crate::stats::Counter::Accepted);
                        let shared = shared.clone();
                        conns.spawn(async move {
                            let svc = hyper::service::service_fn(move |req| service(shared.clone(), req));
                            let conn = hyper::server::conn::http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(stream), svc);
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        // Accept errors (e.g. too many open files) are transient; back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}
