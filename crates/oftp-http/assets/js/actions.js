// Actions: call a partner now, upload a file for a partner (with a progress bar), retry or
// cancel a transfer by its number. Each sends the session's X-CSRF-Token.

import { api, h, heading, guarded, isAdmin, showError, clearError, csrfHeaders, failure, bytes } from './api.js';

function notice(box, text, link) {
  box.replaceChildren(h('p', { class: 'notice', role: 'status' }, text, link ? [' ', link] : []));
}

/** POSTs `file` with progress events; resolves with the JSON answer. */
function upload(partner, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const name = encodeURIComponent(file.name);
    xhr.open('POST', `/api/v1/partners/${encodeURIComponent(partner)}/files?name=${name}`);
    for (const [k, v] of Object.entries(csrfHeaders())) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener('load', async () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText || '{}'));
      else reject(await failure(xhr.status, xhr.responseText));
    });
    xhr.addEventListener('error', () => reject(new Error('the upload broke off (connection lost); try again')));
    xhr.send(file);
  });
}

function partnerSelect(id, partners) {
  return h('select', { id, name: id, required: true },
    partners.map((p) => h('option', { value: p.name }, p.name)));
}

export async function render(main) {
  main.append(heading('Actions'));
  if (!isAdmin()) {
    main.append(h('p', {}, 'Your role is read-only: actions need an admin user or token.'));
    return;
  }
  const partners = (await guarded(() => api('/partners'))) || [];

  // Call now.
  const callable = partners.filter((p) => p.address);
  const callSelect = partnerSelect('call-partner', callable);
  const callResult = h('div', { 'aria-live': 'polite' });
  const callForm = h('form', { class: 'stack card', id: 'call-form' },
    h('h2', {}, 'Call a partner now'),
    h('div', {}, h('label', { for: 'call-partner' }, 'Partner'), callSelect),
    h('div', {}, h('button', { type: 'submit' }, 'Call now')), callResult);
  callForm.addEventListener('submit', (e) => {
    e.preventDefault();
    guarded(async () => {
      await api(`/partners/${encodeURIComponent(callSelect.value)}/call`, { method: 'POST' });
      notice(callResult, `Calling ${callSelect.value}.`);
    });
  });

  // Upload.
  const upSelect = partnerSelect('upload-partner', partners);
  const fileInput = h('input', { type: 'file', id: 'upload-file', name: 'upload-file', required: true });
  const bar = h('progress', { id: 'upload-progress', max: 1, value: 0, 'aria-label': 'upload progress' });
  const barText = h('span', { id: 'upload-progress-text' });
  const upButton = h('button', { type: 'submit', id: 'upload-button' }, 'Upload and send');
  const upResult = h('div', { id: 'upload-result', 'aria-live': 'polite' });
  const upForm = h('form', { class: 'stack card', id: 'upload-form' },
    h('h2', {}, 'Send a file to a partner'),
    h('div', {}, h('label', { for: 'upload-partner' }, 'Partner'), upSelect),
    h('div', {}, h('label', { for: 'upload-file' }, 'File'), fileInput),
    h('div', {}, bar, ' ', barText),
    h('div', {}, upButton), upResult);
  upForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const file = fileInput.files[0];
    if (!file) { showError('choose a file to upload'); return; }
    clearError();
    upButton.disabled = true;
    upResult.replaceChildren();
    try {
      const r = await upload(upSelect.value, file, (done, total) => {
        bar.max = total || 1;
        bar.value = done;
        barText.textContent = `${bytes(done)} of ${bytes(total)}`;
      });
      const link = r.transfer_id ? h('a', { href: `#/transfer/${r.transfer_id}` }, `transfer #${r.transfer_id}`) : null;
      notice(upResult, `Uploaded ${r.file} (${bytes(r.bytes)}) for ${r.partner}; the gateway sends it.`, link);
    } catch (err) {
      showError(err);
    } finally {
      upButton.disabled = false;
    }
  });

  // Retry or cancel by number.
  const idInput = h('input', { id: 'transfer-id', name: 'transfer-id', type: 'number', min: 1, required: true });
  const byIdResult = h('div', { 'aria-live': 'polite' });
  const byId = (verb) => guarded(async () => {
    const t = await api(`/transfers/${Number(idInput.value)}/${verb}`, { method: 'POST' });
    notice(byIdResult, `Transfer ${t.id} is now ${t.state.replace('_', ' ')}.`,
      h('a', { href: `#/transfer/${t.id}` }, 'Details'));
  });
  const idForm = h('form', { class: 'stack card', id: 'transfer-form' },
    h('h2', {}, 'Retry or cancel a transfer'),
    h('div', {}, h('label', { for: 'transfer-id' }, 'Transfer number'), idInput),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', id: 'retry-by-id' }, 'Retry'),
      h('button', { type: 'button', id: 'cancel-by-id', class: 'danger', onclick: () => byId('cancel') }, 'Cancel')),
    byIdResult);
  idForm.addEventListener('submit', (e) => { e.preventDefault(); byId('retry'); });

  main.append(h('div', { class: 'grid' }, callForm, upForm, idForm));
}
