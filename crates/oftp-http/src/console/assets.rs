//! The console's files, embedded in the binary at build time (`rust-embed`, also in debug
//! builds: what the tests load is what a release serves), with their content types and
//! validators.
//!
//! Assets are served with `Cache-Control: no-cache` and an `ETag` (the file's SHA-256): a
//! browser keeps them and asks again with `If-None-Match` (a `304` without a body), so an
//! upgraded daemon's new script is never mixed with an old cached page.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

/// `crates/oftp-http/assets/`.
#[derive(Embed)]
#[folder = "assets/"]
struct Files;

/// The text of the embedded page `name` (`index.html`, `login.html`).
pub(super) fn page(name: &str) -> String {
    Files::get(name)
        .map(|f| String::from_utf8_lossy(&f.data).into_owned())
        .unwrap_or_default()
}

/// The content type of a file by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `GET /assets/{path}`: an embedded file (pages are served at their own paths only).
pub(super) async fn asset(
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let file = (!path.ends_with(".html"))
        .then(|| Files::get(&path))
        .flatten();
    let Some(file) = file else {
        return (StatusCode::NOT_FOUND, "no such console file\n").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let etag = HeaderValue::from_str(&etag).expect("hex is a valid header value");
    let cache = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag.clone()),
    ];
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag);
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&path)),
        )],
        cache,
        file.data.into_owned(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_has_a_known_content_type() {
        let names: Vec<_> = Files::iter().collect();
        assert!(names.iter().any(|n| n == "index.html"), "{names:?}");
        assert!(names.iter().any(|n| n == "js/app.js"), "{names:?}");
        for name in names {
            assert_ne!(
                content_type(&name),
                "application/octet-stream",
                "{name} has no content type"
            );
        }
    }
}
