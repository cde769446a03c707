// Live transfers: what is queued or moving now, updated by the live events (progress bars),
// and every transfer that changed while the page is open.

import { api, h, when, bytes, heading, guarded, stateBadge, showError } from './api.js';
import { subscribe } from './events.js';

const FINISHED = new Set(['delivered', 'cancelled', 'rejected', 'failed', 'not_delivered']);

export async function render(main) {
  const body = h('tbody', { id: 'live-rows' });
  const empty = h('p', { class: 'muted', id: 'live-empty' }, 'Nothing is queued or moving.');
  main.append(heading('Live transfers'),
    h('p', { class: 'muted' }, 'Files queued or moving now; a file that changes while this page is open stays listed with its new state.'),
    empty,
    h('div', { class: 'scroll', id: 'live-table', hidden: true }, h('table', {},
      h('thead', {}, h('tr', {}, ['Transfer', 'Partner', 'File', 'State', 'Progress', 'Changed']
        .map((t) => h('th', { scope: 'col' }, t)))),
      body)));
  const rows = new Map(); // key -> {tr, cells}

  function row(key) {
    let r = rows.get(key);
    if (r) return r;
    const cells = {
      id: h('td', {}), partner: h('td', {}), file: h('td', { class: 'wrap' }), state: h('td', {}),
      progress: h('td', {}, h('progress', { 'aria-label': 'progress' }), ' ', h('span', {})), at: h('td', {}),
    };
    const tr = h('tr', { 'data-key': key }, Object.values(cells));
    body.prepend(tr);
    empty.hidden = true;
    main.querySelector('#live-table').hidden = false;
    r = { tr, cells, bytes: 0 };
    rows.set(key, r);
    return r;
  }

  function showTransfer(t) {
    const id = t.transfer_id ?? String(t.id);
    const r = row(`t${id}`);
    r.tr.dataset.transferId = id;
    r.tr.dataset.state = t.state;
    r.cells.id.replaceChildren(h('a', { href: `#/transfer/${id}` }, id));
    r.cells.partner.textContent = t.partner;
    r.cells.file.textContent = t.virtual_file_name;
    r.cells.state.replaceChildren(stateBadge(t.state));
    r.cells.at.textContent = when(t.updated_at);
    const bar = r.cells.progress.querySelector('progress');
    const size = t.size ?? t.bytes_total ?? null;
    if (FINISHED.has(t.state) || t.state === 'sent') {
      bar.max = 1;
      bar.value = t.state === 'delivered' || t.state === 'sent' ? 1 : 0;
    } else if (size) {
      bar.max = size;
    }
  }

  function showProgress(p) {
    const key = p.transfer_id ? `t${p.transfer_id}` : `in:${p.partner}:${p.virtual_file_name}`;
    const r = row(key);
    if (!p.transfer_id) {
      r.cells.id.textContent = p.outgoing ? 'out' : 'in';
      r.cells.partner.textContent = p.partner;
      r.cells.file.textContent = p.virtual_file_name;
      r.cells.state.replaceChildren(stateBadge(p.outgoing ? 'in_transfer' : 'receiving'));
    }
    const bar = r.cells.progress.querySelector('progress');
    if (bar.hasAttribute('max') && bar.max > 1) bar.value = p.bytes;
    r.cells.progress.querySelector('span').textContent = bytes(p.bytes);
    r.cells.at.textContent = when(new Date().toISOString());
  }

  // What is queued or moving, and (when polling instead of live events) what changed since
  // the page opened, so a file that went through quickly between two polls is listed too.
  const opened = new Date(Date.now() - 1000).toISOString();
  async function load() {
    const pages = await Promise.all([
      api(`/transfers?since=${encodeURIComponent(opened)}&limit=100`),
      api('/transfers?state=queued&limit=100'), api('/transfers?state=in_transfer&limit=100')]);
    const seen = new Map();
    for (const page of pages) for (const t of page.items) seen.set(t.transfer_id ?? String(t.id), t);
    for (const t of [...seen.values()].sort((a, b) => a.queued_at.localeCompare(b.queued_at))) showTransfer(t);
  }

  await guarded(load);
  const unsubscribe = subscribe((name, data) => {
    if (name === 'transfer_changed') {
      api(`/transfers/${data.transfer_id}`).then(showTransfer).catch(showError);
    } else if (name === 'progress') {
      showProgress(data);
    } else if (name === 'poll') {
      guarded(load);
    }
  });
  return unsubscribe;
}
