// Certificates: ours and the partners', with the days left until each expires.

import { api, h, table, when, heading, guarded } from './api.js';

function left(days) {
  if (days < 0) return h('span', { class: 'state bad' }, `expired ${-days} days ago`);
  if (days < 30) return h('span', { class: 'state warn' }, `${days} days left`);
  return h('span', { class: 'state ok' }, `${days} days left`);
}

export async function render(main) {
  main.append(heading('Certificates'));
  const certs = await guarded(() => api('/certificates'));
  if (!certs) return;
  certs.sort((a, b) => a.days_left - b.days_left);
  main.append(table(['Partner', 'Purpose', 'Subject', 'Issuer', 'Serial', 'Expires', ''],
    certs.map((c) => h('tr', {},
      h('td', {}, c.partner || 'ours'), h('td', {}, c.purpose), h('td', { class: 'wrap' }, c.subject),
      h('td', { class: 'wrap' }, c.issuer), h('td', { class: 'wrap' }, c.serial),
      h('td', {}, when(c.not_after)), h('td', {}, left(c.days_left)))),
    'No certificates configured.'));
}
