//! Headless Chromium driven over the DevTools protocol, for the console's browser tests.
//!
//! A small client over one WebSocket (`tokio-tungstenite`) instead of a CDP crate: the tests
//! need a dozen commands (evaluate, navigate, screenshot, file input, viewport), and the
//! generated bindings of `chromiumoxide` (every CDP domain as Rust types) take minutes to build
//! on this 2-core machine for nothing the tests use.
//!
//! Chromium is started with `--headless=new --remote-debugging-port=0` and a throw-away
//! profile; it writes the port it chose into `DevToolsActivePort` in the profile. Everything
//! the page reports as a problem is collected ([`Page::problems`]): uncaught exceptions
//! (`Runtime.exceptionThrown`), `console.error` (`Runtime.consoleAPICalled`), the browser's
//! own error log (`Log.entryAdded`: CSP violations, failed loads), failed requests
//! (`Network.loadingFailed`) and answers with an HTTP error status.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// Why there is no browser.
#[derive(Debug)]
pub(crate) enum LaunchError {
    /// The `chromium` command is not installed.
    Missing,
    /// It is installed and did not start.
    Failed(String),
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("the chromium command is missing"),
            Self::Failed(why) => write!(f, "chromium did not start: {why}"),
        }
    }
}

/// The `chromium` command, or `CHROMIUM` from the environment.
fn chromium_command() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
}

/// A running headless Chromium, killed when dropped.
pub(crate) struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Browser {
    /// Starts Chromium and connects to it.
    pub(crate) async fn launch() -> Result<Browser, LaunchError> {
        let command = chromium_command().ok_or(LaunchError::Missing)?;
        let profile = tempfile::tempdir().map_err(|e| LaunchError::Failed(e.to_string()))?;
        let child = tokio::process::Command::new(&command)
            .args([
                "--headless=new",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                // The tests open only the daemon's own pages; the sandbox needs user
                // namespaces, which containers and root often do not give.
                "--no-sandbox",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LaunchError::Failed(format!("{}: {e}", command.display())))?;
        let url = devtools_url(profile.path())
            .await
            .map_err(LaunchError::Failed)?;
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| LaunchError::Failed(format!("DevTools {url}: {e}")))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let problems: Arc<Mutex<Vec<String>>> = Arc::default();
        let (p, pr) = (pending.clone(), problems.clone());
        tokio::spawn(async move {
            // Request ids to URLs, so a failed request says which.
            let mut urls = HashMap::<String, String>::new();
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = v["id"].as_u64() {
                    if let Some(tx) = p.lock().unwrap().remove(&id) {
                        let result = match v.get("error") {
                            Some(e) => Err(e.to_string()),
                            None => Ok(v["result"].clone()),
                        };
                        let _ = tx.send(result);
                    }
                } else if let Some(method) = v["method"].as_str() {
                    let params = &v["params"];
                    let request = params["requestId"].as_str().unwrap_or_default();
                    if method == "Network.requestWillBeSent" {
                        let url = params["request"]["url"].as_str().unwrap_or_default();
                        urls.insert(request.to_owned(), url.to_owned());
                    }
                    let url = urls.get(request).map_or("", String::as_str);
                    if let Some(problem) = problem(method, params, url) {
                        pr.lock().unwrap().push(problem);
                    }
                }
            }
        });
        Ok(Browser {
            child,
            _profile: profile,
            out,
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
            problems,
        })
    }

    async fn send(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.out
            .send(message.to_string())
            .map_err(|_| "the DevTools connection is closed".to_owned())?;
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(result)) => result.map_err(|e| format!("{method}: {e}")),
            Ok(Err(_)) => Err(format!("{method}: the DevTools connection closed")),
            Err(_) => Err(format!("{method}: no answer in 60 s")),
        }
    }

    /// A new tab, with the problems it reports collected.
    pub(crate) async fn new_page(&self) -> Page<'_> {
        let target = self
            .send(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await
            .unwrap();
        let attached = self
            .send(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await
            .unwrap();
        let page = Page {
            browser: self,
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        };
        for domain in ["Page", "Runtime", "Log", "Network"] {
            page.call(&format!("{domain}.enable"), json!({}))
                .await
                .unwrap();
        }
        page
    }
}

/// Waits for Chromium to write the port it listens on into the profile.
async fn devtools_url(profile: &Path) -> Result<String, String> {
    let file = profile.join("DevToolsActivePort");
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return Ok(format!("ws://127.0.0.1:{port}{path}"));
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err("chromium did not open its DevTools port within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an event says went wrong in the page, if anything (`url`: the request's, for
/// network events).
fn problem(method: &str, p: &Value, url: &str) -> Option<String> {
    match method {
        "Runtime.exceptionThrown" => {
            let d = &p["exceptionDetails"];
            Some(format!(
                "uncaught exception: {} {}",
                d["text"].as_str().unwrap_or(""),
                d["exception"]["description"].as_str().unwrap_or("")
            ))
        }
        "Runtime.consoleAPICalled" if matches!(p["type"].as_str(), Some("error" | "assert")) => {
            let args: Vec<String> = p["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    a["value"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| a["description"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| a["value"].to_string())
                })
                .collect();
            Some(format!("console.error: {}", args.join(" ")))
        }
        "Log.entryAdded" if p["entry"]["level"] == "error" => Some(format!(
            "browser log: {} ({})",
            p["entry"]["text"].as_str().unwrap_or(""),
            p["entry"]["url"].as_str().unwrap_or("")
        )),
        // A request the page itself gave up (leaving the page, closing a stream) is not a
        // failure.
        "Network.loadingFailed" if p["canceled"] != true => Some(format!(
            "request failed: {} ({} {url})",
            p["errorText"].as_str().unwrap_or(""),
            p["type"].as_str().unwrap_or("")
        )),
        "Network.responseReceived" if p["response"]["status"].as_u64().unwrap_or(0) >= 400 => {
            Some(format!(
                "HTTP {} for {}",
                p["response"]["status"],
                p["response"]["url"].as_str().unwrap_or("")
            ))
        }
        _ => None,
    }
}

/// One tab.
pub(crate) struct Page<'b> {
    browser: &'b Browser,
    session: String,
}

impl Page<'_> {
    /// Sends a command to this tab.
    pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.browser.send(Some(&self.session), method, params).await
    }

    /// Opens `url` and waits until the document is loaded.
    pub(crate) async fn goto(&self, url: &str) {
        let r = self
            .call("Page.navigate", json!({ "url": url }))
            .await
            .unwrap();
        assert!(r.get("errorText").is_none(), "opening {url}: {r}");
        self.wait_for(
            "document.readyState === 'complete'",
            &format!("{url} loaded"),
        )
        .await;
    }

    /// The value of the JavaScript expression `js` (promises awaited).
    pub(crate) async fn eval(&self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": js, "awaitPromise": true, "returnByValue": true }),
            )
            .await
            .unwrap();
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{js}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// The text of the first element matching `selector` ("" when there is none).
    pub(crate) async fn text(&self, selector: &str) -> String {
        let js = format!(
            "(document.querySelector({s}) || {{}}).textContent || ''",
            s = json!(selector)
        );
        self.eval(&js).await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits up to 30 s until `condition` (JavaScript) is true; panics with `what` otherwise.
    pub(crate) async fn wait_for(&self, condition: &str, what: &str) {
        self.wait_for_within(Duration::from_secs(30), condition, what)
            .await;
    }

    /// Waits up to `limit` until `condition` (JavaScript) is true.
    pub(crate) async fn wait_for_within(&self, limit: Duration, condition: &str, what: &str) {
        let start = Instant::now();
        let js = format!(
            "(() => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }})()"
        );
        loop {
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({ "expression": js, "returnByValue": true }),
                )
                .await;
            if r.is_ok_and(|r| r["result"]["value"] == true) {
                return;
            }
            if start.elapsed() > limit {
                let body = self.text("body").await;
                panic!(
                    "timed out waiting for {what} ({condition}); the page says: {}\nproblems: {:?}",
                    body.split_whitespace().collect::<Vec<_>>().join(" "),
                    self.problems()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Focuses the input matching `selector` and sets its value, as typing would.
    pub(crate) async fn fill(&self, selector: &str, value: &str) {
        let js = format!(
            "(() => {{ const el = document.querySelector({s}); el.focus(); el.value = {v}; \
             el.dispatchEvent(new Event('input', {{bubbles: true}})); \
             el.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()",
            s = json!(selector),
            v = json!(value)
        );
        assert_eq!(self.eval(&js).await, true, "fill {selector}");
    }

    /// Clicks the element matching `selector`.
    pub(crate) async fn click(&self, selector: &str) {
        let js = format!(
            "(() => {{ const el = document.querySelector({s}); if (!el) return false; el.click(); return true; }})()",
            s = json!(selector)
        );
        assert_eq!(self.eval(&js).await, true, "no {selector} to click");
    }

    /// Presses a key (`Tab`, `Enter`) as the keyboard would.
    pub(crate) async fn press(&self, key: &str) {
        let (code, vk) = match key {
            "Tab" => ("Tab", 9),
            "Enter" => ("Enter", 13),
            other => panic!("no key code for {other}"),
        };
        for kind in ["rawKeyDown", "keyUp"] {
            let mut params = json!({
                "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": vk,
            });
            if key == "Enter" && kind == "rawKeyDown" {
                self.call("Input.dispatchKeyEvent", params.clone())
                    .await
                    .unwrap();
                params = json!({ "type": "char", "text": "\r", "key": key, "code": code });
            }
            self.call("Input.dispatchKeyEvent", params).await.unwrap();
        }
    }

    /// Puts `file` into the file input matching `selector`.
    pub(crate) async fn set_file(&self, selector: &str, file: &Path) {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": format!("document.querySelector({})", json!(selector)) }),
            )
            .await
            .unwrap();
        let object = r["result"]["objectId"].clone();
        assert!(object.is_string(), "no {selector}: {r}");
        self.call(
            "DOM.setFileInputFiles",
            json!({ "files": [file.display().to_string()], "objectId": object }),
        )
        .await
        .unwrap();
    }

    /// Makes the viewport `width` x `height` CSS pixels (`mobile`: a phone's).
    pub(crate) async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await
        .unwrap();
    }

    /// Writes a PNG of the viewport to `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// The problems reported so far (and forgets them).
    pub(crate) fn problems(&self) -> Vec<String> {
        std::mem::take(&mut *self.browser.problems.lock().unwrap())
    }
}
