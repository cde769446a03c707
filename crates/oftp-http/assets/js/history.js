// History: every transfer, newest first, filtered by partner, direction, state and time
// range, a page at a time ("Next page" follows the API's cursor).

import { api, h, table, when, heading, guarded, stateBadge } from './api.js';

const STATES = ['queued', 'in_transfer', 'sent', 'delivered', 'not_delivered', 'rejected', 'failed', 'cancelled'];
const PAGE = 50;

function field(id, label, input) {
  input.id = id;
  input.name = id;
  return h('div', {}, h('label', { for: id }, label), input);
}

function options(values, chosen) {
  return values.map(([value, text]) => h('option', { value, selected: value === chosen }, text));
}

function iso(local) {
  return local ? new Date(local).toISOString() : '';
}

function transferRow(t) {
  const id = t.transfer_id ?? String(t.id);
  return h('tr', { 'data-transfer-id': id },
    h('td', {}, h('a', { href: `#/transfer/${id}` }, id)),
    h('td', {}, t.direction === 'in' ? 'in' : 'out'),
    h('td', {}, t.partner),
    h('td', { class: 'wrap' }, t.virtual_file_name),
    h('td', {}, stateBadge(t.state)),
    h('td', { class: 'num' }, String(t.attempts ?? '')),
    h('td', {}, when(t.updated_at)),
    h('td', { class: 'wrap hide-narrow' }, t.last_error || ''));
}

export async function render(main, presetState) {
  const partners = (await guarded(() => api('/partners'))) || [];
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter transfers' },
    field('f-partner', 'Partner', h('select', {},
      options([['', 'any'], ...partners.map((p) => [p.name, p.name])], ''))),
    field('f-direction', 'Direction', h('select', {},
      options([['', 'any'], ['out', 'sent by us'], ['in', 'received']], ''))),
    field('f-state', 'State', h('select', {},
      options([['', 'any'], ...STATES.map((s) => [s, s.replace('_', ' ')])], presetState || ''))),
    field('f-since', 'Changed from', h('input', { type: 'datetime-local' })),
    field('f-until', 'until', h('input', { type: 'datetime-local' })),
    h('button', { type: 'submit' }, 'Search'));
  const results = h('div', { id: 'history-results' });
  const more = h('button', { type: 'button', class: 'secondary', id: 'next-page', hidden: true }, 'Next page');
  main.append(heading('History'), form, results, h('div', { class: 'actions' }, more));

  let cursor = null;
  let shown = [];

  function query() {
    const q = new URLSearchParams();
    const set = (k, v) => { if (v) q.set(k, v); };
    set('partner', form.elements['f-partner'].value);
    set('direction', form.elements['f-direction'].value);
    set('state', form.elements['f-state'].value);
    set('since', iso(form.elements['f-since'].value));
    set('until', iso(form.elements['f-until'].value));
    q.set('limit', String(PAGE));
    if (cursor) q.set('cursor', cursor);
    return q;
  }

  async function search(next) {
    if (!next) { cursor = null; shown = []; }
    const page = await api(`/transfers?${query()}`);
    shown = shown.concat(page.items);
    cursor = page.next_cursor;
    results.replaceChildren(
      h('p', { class: 'muted' }, `${shown.length} transfer${shown.length === 1 ? '' : 's'}${cursor ? ' so far' : ''}`),
      table(['Transfer', 'Direction', 'Partner', 'File', 'State', 'Attempts', 'Changed', 'Last error'],
        shown.map(transferRow), 'No transfer matches.'));
    more.hidden = !cursor;
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); guarded(() => search(false)); });
  more.addEventListener('click', () => guarded(() => search(true)));
  await guarded(() => search(false));
}
