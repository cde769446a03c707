// One transfer: its fields, every change of its state, the OFTP commands of the sessions
// that moved it (when the journal recorded them), and retry / cancel.

import { api, h, table, when, heading, guarded, stateBadge, isAdmin, showError } from './api.js';
import { subscribe } from './events.js';

const RETRYABLE = new Set(['failed', 'rejected', 'not_delivered', 'cancelled']);
const CANCELLABLE = new Set(['queued', 'failed', 'rejected', 'not_delivered']);

function fields(t) {
  const rows = [
    ['Partner', t.partner], ['Direction', t.direction === 'in' ? 'received' : 'sent by us'],
    ['Virtual file', t.virtual_file_name], ['Source', t.source_path], ['State', stateBadge(t.state)],
    ['Attempts', String(t.attempts)], ['Last error', t.last_error || '—'], ['Queued', when(t.queued_at)],
    ['Next attempt', t.state === 'queued' ? when(t.next_attempt_at) : '—'], ['Changed', when(t.updated_at)],
  ];
  return h('dl', { class: 'fields card' }, rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** One recorded session: who, how it ended, and every OFTP command (the PI trail). */
function session(s) {
  const title = `Session #${s.id} with ${s.partner} (${s.role}${s.remote ? `, ${s.remote}` : ''}), ${when(s.started_at)}`
    + (s.ended_at ? `, ended ${when(s.ended_at)}: ${s.result || ''}` : ', no end recorded');
  const rows = (s.commands || []).map((c) => h('tr', {},
    h('td', {}, when(c.at)),
    h('td', {}, c.direction === 'in' ? 'from partner' : 'by us'),
    h('td', {}, h('code', {}, c.command)),
    h('td', { class: 'wrap' }, c.description)));
  return [h('h3', {}, title), table(['When', 'Direction', 'Command', 'Fields'], rows, 'No commands recorded.')];
}

/** The sessions that moved the transfer, when the journal recorded them. */
function trail(d) {
  const sessions = d.sessions;
  if (!Array.isArray(sessions)) return [];
  return [h('h2', {}, 'Session trail'),
    ...(sessions.length ? sessions.flatMap(session) : [h('p', { class: 'muted' }, 'No session recorded for this transfer.')])];
}

export async function render(main, arg) {
  // `42` (a file we send) or `in-42` (a file we received).
  const id = arg;
  const box = h('div', {});
  main.append(heading(`Transfer ${arg}`), box);
  if (!/^(in-)?[0-9]+$/.test(id)) {
    showError(`"${arg}" is not a transfer number (42, or in-42 for a received file)`);
    return undefined;
  }

  async function act(verb, button) {
    button.disabled = true;
    try {
      await api(`/transfers/${id}/${verb}`, { method: 'POST' });
      await draw(`${verb === 'retry' ? 'Queued again' : 'Cancelled'}.`);
    } catch (e) {
      showError(e);
      button.disabled = false;
    }
  }

  let partner = null;

  async function draw(notice) {
    const d = await api(`/transfers/${id}`);
    partner = d.partner;
    const buttons = [];
    if (isAdmin() && d.direction !== 'in') {
      if (RETRYABLE.has(d.state)) {
        const b = h('button', { type: 'button', id: 'retry' }, 'Retry');
        b.addEventListener('click', () => act('retry', b));
        buttons.push(b);
      }
      if (CANCELLABLE.has(d.state)) {
        const b = h('button', { type: 'button', id: 'cancel', class: 'danger' }, 'Cancel');
        b.addEventListener('click', () => act('cancel', b));
        buttons.push(b);
      }
    }
    box.replaceChildren(
      notice ? h('p', { class: 'notice', role: 'status' }, notice) : '',
      fields(d),
      buttons.length ? h('div', { class: 'actions' }, buttons) : '',
      h('h2', {}, 'History'),
      table(['When', 'From', 'To', 'Note'], (d.history || []).map((t) => h('tr', {},
        h('td', {}, when(t.at)), h('td', {}, t.from ? stateBadge(t.from) : '—'), h('td', {}, stateBadge(t.to)),
        h('td', { class: 'wrap' }, t.note || '')))),
      ...trail(d));
  }

  await guarded(() => draw());
  return subscribe((name, data) => {
    // A session's trail is written at its end, often after the transfer's last change.
    if ((name === 'transfer_changed' && String(data.transfer_id) === id)
      || (name === 'session_ended' && data.partner === partner) || name === 'poll') {
      draw().catch(showError);
    }
  });
}
