// Live events from /api/v1/events (Server-Sent Events). When the stream breaks, the console
// says so, tells the pages to poll every 5 seconds, and tries the stream again after 15.

const NAMES = ['session_started', 'session_ended', 'progress', 'transfer_changed', 'alert_raised'];
const POLL_MS = 5000;
const RECONNECT_MS = 15000;
const WINDOW_MS = 60000;

const listeners = new Set();
let source = null;
let pollTimer = null;
let stopped = false;
const moved = new Map(); // file key -> bytes so far
const recent = []; // [time, bytes moved since the last event of that file]

/** Calls `fn(name, data)` for every event, and `fn('poll', {})` while polling. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function dispatch(name, data) {
  for (const fn of listeners) {
    try { fn(name, data); } catch (e) { console.warn('event handler failed', e); }
  }
}

function setState(text) {
  const el = document.getElementById('live-state');
  if (el) el.textContent = text;
}

function count(data) {
  const key = `${data.outgoing ? 'out' : 'in'}:${data.partner}:${data.virtual_file_name}:${data.transfer_id}`;
  const before = moved.get(key) || 0;
  moved.set(key, data.bytes);
  if (data.bytes > before) recent.push([Date.now(), data.bytes - before]);
}

/** Bytes per second over the last minute, from the progress events seen. */
export function throughput() {
  const since = Date.now() - WINDOW_MS;
  while (recent.length && recent[0][0] < since) recent.shift();
  return recent.reduce((sum, [, n]) => sum + n, 0) / (WINDOW_MS / 1000);
}

function startPolling() {
  if (pollTimer === null) pollTimer = setInterval(() => dispatch('poll', {}), POLL_MS);
}

function stopPolling() {
  if (pollTimer !== null) clearInterval(pollTimer);
  pollTimer = null;
}

/** Closes the stream and ends polling for good: before a log-out, so that no request of the
 * page races the end of the session (and is refused). */
export function stop() {
  stopped = true;
  stopPolling();
  if (source !== null) source.close();
  source = null;
  listeners.clear();
}

/** Opens the stream (once). */
export function start() {
  if (stopped || source !== null) return;
  source = new EventSource('/api/v1/events');
  source.onopen = () => {
    setState('Live updates on');
    if (pollTimer !== null) dispatch('poll', {});
    stopPolling();
  };
  for (const name of NAMES) {
    source.addEventListener(name, (e) => {
      let data = {};
      try { data = JSON.parse(e.data); } catch { return; }
      if (name === 'progress') count(data);
      dispatch(name, data);
    });
  }
  source.onerror = () => {
    source.close();
    source = null;
    if (stopped) return;
    setState('Live updates interrupted: refreshing every 5 s');
    startPolling();
    setTimeout(start, RECONNECT_MS);
  };
}
