//! `POST /v1.0/$batch`: JSON batching of GET sub-requests.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use serde_json::{Map, Value, json};

use super::{MAX_BATCH, graph_error, ok_json, parse_path, single};
use crate::server::{Outcome, Req, Resp, Shared};

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
pub(super) async fn batch(shared: &Arc<Shared>, r: Req) -> Outcome {
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
