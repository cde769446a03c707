// Alerts: the open ones (or all), each acknowledged with one button.

import { api, h, table, when, heading, guarded, isAdmin, showError } from './api.js';
import { subscribe } from './events.js';

export async function render(main) {
  const all = h('input', { type: 'checkbox', id: 'all-alerts' });
  const box = h('div', {});
  main.append(heading('Alerts'),
    h('p', { class: 'check' }, all, h('label', { for: 'all-alerts' }, 'Show acknowledged alerts too')), box);

  async function acknowledge(a, button) {
    button.disabled = true;
    try {
      await api(`/alerts/${a.id}/acknowledge`, { method: 'POST' });
      document.dispatchEvent(new Event('alerts-changed'));
      await draw();
    } catch (e) {
      showError(e);
      button.disabled = false;
    }
  }

  async function draw() {
    const alerts = await api(`/alerts?all=${all.checked}`);
    box.replaceChildren(table(['Raised', 'Kind', 'Partner', 'File', 'What happened', ''],
      alerts.map((a) => {
        let action = h('span', { class: 'muted' }, a.acknowledged_at ? `acknowledged ${when(a.acknowledged_at)}` : '');
        if (!a.acknowledged_at && isAdmin()) {
          action = h('button', { type: 'button', class: 'secondary', 'aria-label': `Acknowledge alert ${a.id}` }, 'Acknowledge');
          const b = action;
          b.addEventListener('click', () => acknowledge(a, b));
        }
        return h('tr', { 'data-alert-id': a.id },
          h('td', {}, when(a.raised_at)), h('td', {}, a.kind), h('td', {}, a.partner || '—'),
          h('td', { class: 'wrap' }, a.file || '—'), h('td', { class: 'wrap' }, a.text), h('td', {}, action));
      }), all.checked ? 'No alerts.' : 'No open alerts.'));
  }

  all.addEventListener('change', () => guarded(draw));
  await guarded(draw);
  return subscribe((name) => {
    if (name === 'alert_raised' || name === 'poll') draw().catch(showError);
  });
}
