// Overview: partners with their state, the queue by state, throughput, open alerts.

import { api, h, table, when, bytes, heading, guarded, stateBadge } from './api.js';
import { subscribe, throughput } from './events.js';

function partnerRow(p) {
  const s = p.state || {};
  const c = p.counters || null;
  const last = s.last_call;
  return h('tr', { 'data-partner': p.name },
    h('td', {}, h('strong', {}, p.name), h('div', { class: 'muted' }, p.ssid)),
    h('td', { class: 'wrap' }, p.address || h('span', { class: 'muted' }, 'calls us')),
    h('td', { class: 'num' }, `${s.sessions ?? 0} / ${s.max_sessions ?? '—'}`),
    h('td', {}, last
      ? [h('span', { class: `state ${last.ok ? 'ok' : 'bad'}` }, last.ok ? 'ok' : 'failed'), ' ',
        when(last.started_at), h('div', { class: 'muted' }, last.text)]
      : h('span', { class: 'muted' }, 'none yet')),
    h('td', {}, when(s.next_call)),
    h('td', { class: 'num hide-narrow' }, c ? `${c.files_sent} · ${bytes(c.bytes_sent)}` : '—'),
    h('td', { class: 'num hide-narrow' }, c ? `${c.files_received} · ${bytes(c.bytes_received)}` : '—'));
}

async function draw(box) {
  const [status, partners] = await Promise.all([api('/status'), api('/partners')]);
  const queue = status.queue.length
    ? h('ul', {}, status.queue.map((q) => h('li', {}, stateBadge(q.state), ' ',
      h('a', { href: `#/history/${encodeURIComponent(q.state)}` }, String(q.count)))))
    : h('p', { class: 'muted' }, 'The queue is empty.');
  const alerts = status.open_alerts.length
    ? h('ul', {}, status.open_alerts.slice(-5).reverse().map((a) => h('li', {}, a.text)))
    : h('p', { class: 'muted' }, 'No open alerts.');
  box.replaceChildren(
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'queue-h' },
        h('h2', { id: 'queue-h' }, 'Queue'), queue),
      h('section', { class: 'card', 'aria-labelledby': 'tp-h' },
        h('h2', { id: 'tp-h' }, 'Throughput'),
        h('p', { class: 'big', id: 'throughput' }, `${bytes(Math.round(throughput()))}/s`),
        h('p', { class: 'muted' }, 'over the last minute, from the live events')),
      h('section', { class: 'card', 'aria-labelledby': 'alerts-h' },
        h('h2', { id: 'alerts-h' }, h('a', { href: '#/alerts' }, `Open alerts: ${status.open_alerts.length}`)),
        alerts),
      h('section', { class: 'card', 'aria-labelledby': 'daemon-h' },
        h('h2', { id: 'daemon-h' }, 'Daemon'),
        h('p', {}, `version ${status.daemon.version}, process ${status.daemon.pid}`),
        h('p', { class: 'muted' }, `running since ${when(status.daemon.started_at)}`))),
    h('h2', {}, 'Partners'),
    table(['Partner', 'Address', 'Sessions', 'Last call', 'Next call', 'Sent', 'Received'],
      partners.map(partnerRow), 'No partners configured.'));
}

export async function render(main) {
  const box = h('div', {});
  main.append(heading('Overview'), box);
  await guarded(() => draw(box));
  let pending = null;
  const again = () => {
    if (pending === null) pending = setTimeout(() => { pending = null; guarded(() => draw(box)); }, 500);
  };
  const unsubscribe = subscribe((name) => {
    if (name !== 'progress') again();
  });
  const tick = setInterval(() => {
    const el = document.getElementById('throughput');
    if (el) el.textContent = `${bytes(Math.round(throughput()))}/s`;
  }, 2000);
  return () => { unsubscribe(); clearInterval(tick); if (pending !== null) clearTimeout(pending); };
}
