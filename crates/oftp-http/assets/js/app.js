// The console's shell: session, navigation by the address's #fragment, log-out, the open
// alerts badge, live events. Each page is its own module with render(main, arg) returning an
// optional clean-up function.

import { loadSession, showError, clearError, api, csrfHeaders, failure } from './api.js';
import * as events from './events.js';

const PAGES = {
  overview: () => import('./overview.js'),
  live: () => import('./live.js'),
  history: () => import('./history.js'),
  transfer: () => import('./transfer.js'),
  alerts: () => import('./alerts.js'),
  certificates: () => import('./certificates.js'),
  actions: () => import('./actions.js'),
};

let cleanup = null;
let generation = 0;

// `moved`: the operator went to another page, so the keyboard focus moves to its content
// (on the first load it stays at the top, where Tab reaches the skip link first).
async function route(moved) {
  const [, name = 'overview', ...rest] = location.hash.replace(/^#/, '').split('/');
  const page = PAGES[name] ? name : 'overview';
  const nav = page === 'transfer' ? 'history' : page;
  for (const a of document.querySelectorAll('nav a[data-page]')) {
    if (a.dataset.page === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (cleanup) cleanup();
  cleanup = null;
  clearError();
  const mine = ++generation;
  const main = document.getElementById('main');
  main.replaceChildren();
  main.dataset.page = page;
  try {
    const module = await PAGES[page]();
    if (mine !== generation) return;
    cleanup = (await module.render(main, decodeURIComponent(rest.join('/')))) || null;
  } catch (e) {
    // A page that does not load or render is a bug of the console: on the console too.
    console.error(`page ${page}:`, e);
    showError(e);
  }
  if (moved) main.focus({ preventScroll: true });
}

/** Shows the number of open alerts in the navigation. */
export async function refreshAlertCount() {
  try {
    const open = await api('/alerts');
    const badge = document.getElementById('alert-count');
    badge.textContent = String(open.length);
    badge.hidden = open.length === 0;
    badge.setAttribute('aria-label', `${open.length} open`);
  } catch (e) {
    showError(e);
  }
}

async function logout() {
  // Nothing of the page may ask the API once the session is ending: its timers and the live
  // stream stop first (a request racing the log-out would be refused, 401).
  events.stop();
  generation += 1;
  if (cleanup) cleanup();
  cleanup = null;
  const r = await fetch('/logout', { method: 'POST', headers: csrfHeaders(), credentials: 'same-origin' });
  if (!r.ok) {
    showError(await failure(r.status, await r.text()));
    return;
  }
  location.assign('/login');
}

async function main() {
  document.getElementById('error-close').addEventListener('click', clearError);
  const session = await loadSession();
  document.getElementById('who').textContent = `${session.name} (${session.role})`;
  document.getElementById('logout').addEventListener('click', () => logout().catch(showError));
  window.addEventListener('hashchange', () => route(true));
  events.subscribe((name) => {
    if (name === 'alert_raised' || name === 'poll') refreshAlertCount();
  });
  document.addEventListener('alerts-changed', refreshAlertCount);
  events.start();
  refreshAlertCount();
  await route(false);
}

main().catch(showError);
