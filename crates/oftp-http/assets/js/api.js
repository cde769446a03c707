// What every page shares: the session (and its CSRF token), calls to the API with errors
// turned into messages, the error banner, DOM building without innerHTML, formatting.

let session = null;

/** The logged-in session: {name, role, csrf}. Sends the browser to /login without one. */
export async function loadSession() {
  const r = await fetch('/api/v1/session', { credentials: 'same-origin' });
  if (r.status === 401) {
    location.assign('/login');
    throw new Error('the console session ended; log in again');
  }
  if (!r.ok) throw new Error(`the session could not be read (HTTP ${r.status})`);
  session = await r.json();
  return session;
}

export function isAdmin() {
  return session !== null && session.role === 'admin';
}

/** The headers every request that changes something carries. */
export function csrfHeaders() {
  return { 'X-CSRF-Token': session ? session.csrf : '' };
}

/** An API error with the server's message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The JSON error body of a failed response as an ApiError. */
export async function failure(status, text) {
  let body = null;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  if (status === 401) location.assign('/login');
  const message = body && body.message ? body.message : `HTTP ${status}: ${text.slice(0, 200)}`;
  return new ApiError(status, body && body.error ? body.error : 'http', message);
}

/** Calls the API: `path` under /api/v1, JSON in and out; throws ApiError with the message. */
export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') Object.assign(headers, csrfHeaders());
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(`/api/v1${path}`, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw await failure(r.status, text);
  return text ? JSON.parse(text) : null;
}

/** Shows `err` (an Error or text) in the banner at the top. */
export function showError(err) {
  const box = document.getElementById('error');
  document.getElementById('error-text').textContent =
    typeof err === 'string' ? err : (err && err.message) || String(err);
  box.hidden = false;
}

export function clearError() {
  document.getElementById('error').hidden = true;
}

/** An element: h('a', {href: '#/x', class: 'y'}, 'text', child, ...). Text is never parsed. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A table in a sideways-scrolling box: `head` = column titles, `rows` = <tr> elements. */
export function table(head, rows, empty = 'Nothing to show.') {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows)));
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function stateBadge(state) {
  return h('span', { class: `state state-${state}`, 'data-state': state }, state.replace('_', ' '));
}

/** The page's heading, focused for keyboard and screen-reader users. */
export function heading(text) {
  document.title = `${text} · OFTP gateway`;
  return h('h1', {}, text);
}

/** Runs `fn` and shows what it throws in the banner. */
export async function guarded(fn) {
  try {
    clearError();
    return await fn();
  } catch (e) {
    showError(e);
    return undefined;
  }
}
