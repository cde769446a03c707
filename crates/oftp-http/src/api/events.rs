//! `GET /api/v1/events`: the gateway's live events as Server-Sent Events.
//!
//! Each [`GatewayEvent`] is one SSE event named by its `event` tag (`session_started`,
//! `progress`, `transfer_changed`, `alert_raised`, ...) with its JSON as data. A client too
//! slow for the stream loses the oldest events and gets `event: lagged` with
//! `{"missed": n}`, then the stream goes on (the journal stays the record: reload what
//! matters). The stream ends when the server shuts down, so a graceful shutdown never waits
//! for a console left open.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use oftp_gateway::GatewayEvent;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::ReadAccess;
use crate::state::AppState;

/// How often an idle stream sends a comment, so proxies and clients see it alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Live events until the client goes or the server shuts down.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses((status = 200, content_type = "text/event-stream",
        description = "Server-Sent Events: the event name is the `event` tag of the \
            gateway event, the data its JSON; `lagged` with `{\"missed\": n}` when the client \
            fell behind"),
        (status = 401)))]
pub async fn events(
    ReadAccess(_): ReadAccess,
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.ctx().runtime.subscribe();
    let stop = state.shutdown_token().clone();
    let stream = futures_util::stream::unfold((rx, stop), |(mut rx, stop)| async move {
        let event = tokio::select! {
            () = stop.cancelled() => return None,
            r = rx.recv() => match r {
                Ok(e) => sse_event(&e),
                Err(RecvError::Lagged(missed)) => Event::default()
                    .event("lagged")
                    .data(serde_json::json!({ "missed": missed }).to_string()),
                Err(RecvError::Closed) => return None,
            },
        };
        Some((Ok(event), (rx, stop)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// `e` as an SSE event: named by its `event` tag, its JSON as data.
fn sse_event(e: &GatewayEvent) -> Event {
    let name = serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("event")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "event".to_owned());
    // The data in the fields' order, tag first (a `Value` would sort the keys).
    Event::default()
        .event(name)
        .data(serde_json::to_string(e).unwrap_or_default())
}
