// The Webhooks page: list with health, add/edit with the handshake, test events.
import { api } from './bridge.js';
import { state } from './state.js';
import { onEngineEvent } from './events.js';
import { curlExample } from './examples.js';
import { t } from './i18n.js';
import { h, toast, modal, confirmDialog, relativeTime } from './dom.js';
import { errorView } from './errors.js';

// `view` below is the page while it is shown: {root, signal}. The page
// subscribes to engine events once (renderWebhooks); `draw` only redraws.

// While the engine is offline, deliveries to any endpoint but loopback are held.
function held(w) {
  if (state.network !== 'offline') return false;
  const host = (() => { try { return new URL(w.url).hostname; } catch { return ''; } })();
  return !(host === 'localhost' || host === '[::1]' || /^127\./.test(host));
}

function host(w) {
  try { return new URL(w.url).host; } catch { return w.url; }
}

function pausedText(w) {
  if (w.paused_reason === 'gone') return t('webhooks.pausedGone');
  if (w.paused_reason === 'failing') return t('webhooks.pausedFailing', { hours: state.autoPauseHours ?? 24 });
  return t('webhooks.pausedAdmin');
}

function healthBadge(w) {
  if (!w.enabled) return h('span', { class: 'badge muted' }, t('webhooks.disabled'));
  if (w.paused) return h('span', { class: 'badge warn paused' }, pausedText(w), ' · ', t('webhooks.heldCount', { n: w.pending }));
  if (held(w)) return h('span', { class: 'badge warn' }, t('webhooks.held'));
  if (w.warning) return h('span', { class: 'badge bad', role: 'img', 'aria-label': t('webhooks.warning', { n: w.consecutive_failures }) }, '⚠ ', t('webhooks.failing', { n: w.consecutive_failures }));
  if (w.consecutive_failures > 0) return h('span', { class: 'badge warn' }, t('webhooks.failing', { n: w.consecutive_failures }));
  return h('span', { class: 'badge ok' }, t('webhooks.healthy'));
}

function lastLine(w) {
  if (!w.last_attempt_at) return t('webhooks.new');
  const status = w.last_status_code ? `HTTP ${w.last_status_code}` : t('webhooks.noAnswer');
  return t('webhooks.last', { status, when: relativeTime(w.last_attempt_at) });
}

function emptyState(view) {
  const example = h('pre', { class: 'code', dir: 'ltr' }, curlExample(state.status.listen, 'YOUR_INGEST_KEY'));
  return h('section', { class: 'empty' },
    h('h2', {}, t('start.title')),
    h('ol', { class: 'steps' },
      h('li', {}, h('p', {}, t('start.step1')),
        h('button', { class: 'primary', type: 'button', onclick: () => editWebhook(view, null) }, t('webhooks.add'))),
      h('li', {}, h('p', {}, t('start.step2')), example,
        h('a', { href: '#/settings' }, t('settings.ingestKey'), ' →')),
      h('li', {}, h('p', {}, t('start.step3')), h('a', { href: '#/log' }, t('nav.log'), ' →'))));
}

export async function renderWebhooks(root, _rest, signal) {
  const view = { root, signal };
  let pending = null;
  signal.addEventListener('abort', () => clearTimeout(pending), { once: true });
  onEngineEvent((e) => {
    if (!['webhook_health_changed', 'attempt_recorded', 'network_changed'].includes(e.kind)) return;
    // At most one reload per 150 ms: a burst causes one, and steady traffic
    // one every 150 ms (a timer restarted on each event would never fire).
    if (pending) return;
    pending = setTimeout(() => { pending = null; refresh(view); }, 150);
  }, { signal });
  await draw(view);
}

async function draw(view) {
  const { root, signal } = view;
  const webhooks = await api.listWebhooks();
  if (webhooks.some((w) => w.paused_reason === 'failing')) {
    const s = await api.getSettings().catch(() => null);
    if (s) state.autoPauseHours = s.auto_pause_after_hours;
  }
  if (signal.aborted) return;
  const list = h('div', { class: 'cards', id: 'webhook-list' });
  for (const w of webhooks) list.append(card(view, w));
  root.replaceChildren(
    h('header', { class: 'page-head' },
      h('h1', {}, t('webhooks.title')),
      webhooks.length ? h('button', { class: 'primary', type: 'button', id: 'add-webhook', onclick: () => editWebhook(view, null) }, '+ ', t('webhooks.add')) : null),
    webhooks.length ? list : emptyState(view));
}

/** After a change made here: the list again, without subscribing again. */
function redraw(view) {
  draw(view).catch((e) => toast(errorView(e), 'bad'));
}

async function refresh(view) {
  const webhooks = await api.listWebhooks().catch(() => null);
  const list = view.root.querySelector('#webhook-list');
  if (!webhooks || !list || view.signal.aborted) return;
  for (const w of webhooks) {
    const old = list.querySelector(`[data-id="${w.id}"]`);
    const fresh = card(view, w);
    if (old) {
      const panel = old.querySelector('.test-panel');
      if (panel) fresh.append(panel);
      old.replaceWith(fresh);
    }
  }
}

function card(view, w) {
  const toggle = h('input', { type: 'checkbox', role: 'switch', checked: w.enabled, 'aria-label': t('webhooks.enabled') });
  toggle.addEventListener('change', async () => {
    let patch = { enabled: toggle.checked };
    if (!toggle.checked && w.pending > 0) {
      const choice = await disableDialog(w);
      if (choice === 'pause') patch = { paused: true };
      else if (choice !== 'disable') { toggle.checked = true; return; }
      if (choice === 'pause') toggle.checked = true;
    }
    try {
      await api.updateWebhook(w.id, patch);
    } catch (e) {
      toggle.checked = !toggle.checked;
      toast(errorView(e), 'bad');
      return;
    }
    redraw(view);
  });
  const el = h('article', { class: `card${w.warning ? ' warning' : ''}`, 'data-id': w.id },
    h('div', { class: 'card-main' },
      h('div', { class: 'url', dir: 'ltr' }, w.url),
      h('div', { class: 'chips' }, w.events.map((e) => h('span', { class: 'chip', dir: 'ltr' }, e))),
      h('div', { class: 'health' }, healthBadge(w), h('span', { class: 'muted' }, lastLine(w))),
      w.ordered ? orderedLine(view, w) : null),
    h('div', { class: 'card-actions' },
      h('label', { class: 'switch' }, toggle, h('span', {}, t('webhooks.enabled'))),
      w.enabled ? pauseButton(view, w) : null,
      h('button', { type: 'button', class: 'secondary', onclick: () => testPanel(el, w) }, t('webhooks.test')),
      h('button', { type: 'button', class: 'ghost', onclick: () => editWebhook(view, w) }, t('common.edit')),
      h('button', { type: 'button', class: 'ghost danger-text', onclick: () => removeWebhook(view, w) }, t('common.delete'))));
  if (w.warning) {
    el.prepend(h('div', { class: 'banner warn', role: 'alert' }, '⚠ ', t('webhooks.warning', { n: w.consecutive_failures })));
  }
  return el;
}

function pauseButton(view, w) {
  const resume = w.paused;
  return h('button', {
    type: 'button', class: resume ? 'primary' : 'secondary', 'data-action': resume ? 'resume' : 'pause',
    'aria-label': t(resume ? 'webhooks.resumeLabel' : 'webhooks.pauseLabel', { host: host(w) }),
    onclick: async () => {
      try {
        await api.updateWebhook(w.id, { paused: !resume });
      } catch (e) {
        toast(errorView(e), 'bad');
        return;
      }
      toast(t(resume ? 'webhooks.resumedToast' : 'webhooks.pausedToast'), 'ok');
      redraw(view);
    },
  }, t(resume ? 'webhooks.resume' : 'webhooks.pause'));
}

/** An ordered webhook's line on its card: what waits, and the way to the held keys. */
function orderedLine(view, w) {
  return h('div', { class: 'ordered-line' },
    h('span', { class: 'chip' }, t('webhooks.ordered')),
    w.pending > 0
      ? h('button', { type: 'button', class: 'link', 'data-action': 'held', 'aria-label': t('held.label', { host: host(w) }), onclick: () => heldDialog(view, w) }, t('held.open'))
      : null);
}

/** The keys held back by a failing delivery, each with a Skip button. */
async function heldDialog(view, w) {
  const body = h('div', { class: 'held-body', 'aria-live': 'polite' }, t('common.loading'));
  const load = async () => {
    let held;
    try { held = await api.heldDeliveries(w.id); } catch (e) { body.replaceChildren(errorView(e)); return; }
    const rows = held.items.map((k) => h('tr', {},
      h('td', { dir: 'auto' }, h('bdi', {}, k.ordering_key || '—')),
      h('td', { dir: 'ltr' }, k.event_type),
      h('td', {}, String(k.attempts)),
      h('td', {}, k.next_attempt_at ? relativeTime(k.next_attempt_at) : t('held.whenResumed')),
      h('td', {}, String(k.waiting)),
      h('td', {}, h('button', {
        type: 'button', class: 'secondary', 'aria-label': t('held.skipLabel', { key: k.ordering_key || '' }),
        onclick: async () => {
          const ok = await confirmDialog(t('held.skipTitle'), t('held.skipText', { key: k.ordering_key || '', n: k.waiting }), t('held.skip'), true);
          if (!ok) return;
          try { await api.skipDelivery(k.delivery_id); } catch (e) { toast(errorView(e), 'bad'); return; }
          toast(t('held.skipped'), 'ok');
          await load();
        },
      }, t('held.skip')))));
    body.replaceChildren(
      h('p', {}, t('held.summary', { n: held.waiting })),
      rows.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'held' },
          h('thead', {}, h('tr', {}, ['held.key', 'held.type', 'held.attempts', 'held.next', 'held.waiting', 'held.action'].map((c) => h('th', { scope: 'col' }, t(c))))),
          h('tbody', {}, rows)))
        : h('p', { class: 'muted' }, t('held.none')));
  };
  const done = modal(t('held.title'), (close) => h('div', { class: 'modal-body' },
    h('p', { class: 'url', dir: 'ltr' }, w.url),
    body,
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', autofocus: true, onclick: () => close(null) }, t('common.close')))), { wide: true });
  await load();
  await done;
  redraw(view);
}

/** Disabling cancels what is queued: 'disable', 'pause' or null (keep it). Focus starts on the safe choice. */
function disableDialog(w) {
  return modal(t('webhooks.disableTitle'), (close) => {
    const pause = h('button', { type: 'button', class: 'primary', id: 'pause-instead', autofocus: true, onclick: () => close('pause') }, t('webhooks.pauseInstead'));
    return h('div', { class: 'modal-body' },
      h('p', {}, t('webhooks.disableText', { n: w.pending })),
      h('p', { class: 'url', dir: 'ltr' }, w.url),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => close(null) }, t('common.cancel')),
        h('button', { type: 'button', class: 'danger', id: 'disable-anyway', onclick: () => close('disable') }, t('webhooks.disableConfirm', { n: w.pending })),
        pause));
  });
}

/** `Name: value` lines → an object; a bad line throws its number. */
function parseHeaders(text) {
  const out = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i].trim();
    if (!line) continue;
    const at = line.indexOf(':');
    if (at < 1) throw new Error(t('form.headersBad', { n: i + 1 }));
    out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

function testPanel(cardEl, w) {
  const existing = cardEl.querySelector('.test-panel');
  if (existing) { existing.remove(); return; }
  const select = h('select', { 'aria-label': t('test.type') },
    state.eventTypes.map((et) => h('option', { value: et.type, selected: w.events[0] === et.type }, et.type)));
  const result = h('div', { class: 'test-result', role: 'status', 'aria-live': 'polite' });
  const send = h('button', { type: 'button', class: 'primary' }, t('test.send'));
  send.addEventListener('click', async () => {
    send.disabled = true;
    result.className = 'test-result';
    result.replaceChildren(t('test.sending'));
    try {
      const a = await api.testWebhook(w.id, select.value);
      result.className = `test-result ${a.success ? 'ok' : 'bad'}`;
      const body = a.response ? a.response.body : '';
      // replaceChildren writes a null as the text "null": leave them out.
      result.replaceChildren(...[
        h('strong', {}, a.success
          ? t('test.ok', { status: a.status_code, ms: a.response_time_ms })
          : t('test.failed', { error: a.error })),
        a.success || !a.status_code ? null : h('span', { class: 'muted' }, ` · ${a.response_time_ms} ms`),
        body ? h('pre', { class: 'code small', dir: 'ltr' }, body) : null].filter(Boolean));
    } catch (e) {
      result.className = 'test-result bad';
      result.replaceChildren(errorView(e));
    } finally {
      send.disabled = false;
    }
  });
  cardEl.append(h('div', { class: 'test-panel' },
    h('label', {}, t('test.type'), select), send, result));
  select.focus();
}

async function removeWebhook(view, w) {
  if (!(await confirmDialog(t('webhooks.deleteTitle'), t('webhooks.deleteText', { url: w.url }), t('common.delete'), true))) return;
  try {
    await api.deleteWebhook(w.id);
  } catch (e) {
    toast(errorView(e), 'bad');
    return;
  }
  toast(t('webhooks.deleted'), 'ok');
  redraw(view);
}

function generateToken() {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function urlProblem(value, allowHttp) {
  let url;
  try { url = new URL(value); } catch { return t('form.urlInvalid'); }
  if (url.protocol === 'https:') return null;
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  if (url.protocol === 'http:' && loopback && allowHttp) return null;
  return url.protocol === 'http:' ? t('form.urlHttps') : t('form.urlInvalid');
}

async function editWebhook(view, listed) {
  const settings = await api.getSettings().catch(() => ({}));
  // The single answer has the header values and the signing secret.
  const w = listed ? await api.getWebhook(listed.id).catch(() => listed) : null;
  const saved = await modal(w ? t('form.editTitle') : t('form.addTitle'), (close) => {
    const url = h('input', { id: 'wh-url', type: 'url', required: true, dir: 'ltr', placeholder: 'https://crm.example.com/hooks/orki', autocomplete: 'off', autofocus: true, 'aria-describedby': 'wh-url-hint wh-url-error' });
    url.value = w ? w.url : '';
    const urlError = h('p', { id: 'wh-url-error', class: 'field-error', role: 'alert' });
    const token = h('input', { id: 'wh-token', type: 'password', required: !w, dir: 'ltr', autocomplete: 'off', 'aria-describedby': 'wh-token-hint' });
    token.value = w && w.verify_token ? w.verify_token : '';
    const showToken = h('button', { type: 'button', class: 'ghost', 'aria-pressed': 'false' }, t('common.show'));
    showToken.addEventListener('click', () => {
      const shown = token.type === 'text';
      token.type = shown ? 'password' : 'text';
      showToken.textContent = shown ? t('common.show') : t('common.hide');
      showToken.setAttribute('aria-pressed', String(!shown));
    });
    const gen = h('button', { type: 'button', class: 'secondary', id: 'wh-generate' }, t('form.generate'));
    gen.addEventListener('click', () => { token.value = generateToken(); token.type = 'text'; showToken.textContent = t('common.hide'); });
    const boxes = state.eventTypes.map((et) => h('label', { class: 'check' },
      h('input', { type: 'checkbox', name: 'events', value: et.type, checked: w ? w.events.includes(et.type) : false }),
      h('span', {}, h('strong', { dir: 'ltr' }, et.type), h('small', { class: 'muted' }, et.description))));
    const eventsError = h('p', { class: 'field-error', role: 'alert' });
    const rate = h('input', { id: 'wh-rate', type: 'number', min: '1', max: '10000', step: '1', dir: 'ltr', inputmode: 'numeric', 'aria-describedby': 'wh-rate-hint wh-rate-error' });
    rate.value = w && w.rate_limit_per_s ? String(w.rate_limit_per_s) : '';
    const rateError = h('p', { id: 'wh-rate-error', class: 'field-error', role: 'alert' });
    const signature = h('select', { id: 'wh-signature' },
      h('option', { value: 'hub', selected: !w || w.signature !== 'standard' }, t('form.sigHub')),
      h('option', { value: 'standard', selected: Boolean(w && w.signature === 'standard') }, t('form.sigStandard')));
    const headers = h('textarea', { id: 'wh-headers', rows: '3', dir: 'ltr', spellcheck: 'false', autocomplete: 'off', placeholder: 'Authorization: Basic …', 'aria-describedby': 'wh-headers-hint wh-headers-error' });
    headers.value = w && w.headers ? Object.entries(w.headers).map(([k, v]) => `${k}: ${v}`).join('\n') : '';
    const headersError = h('p', { id: 'wh-headers-error', class: 'field-error', role: 'alert' });
    const ordered = h('input', { id: 'wh-ordered', type: 'checkbox', checked: Boolean(w && w.ordered), 'aria-describedby': 'wh-ordered-hint' });
    const secretBox = w && w.signature === 'standard' ? secretField(w) : null;
    const progress = h('div', { class: 'form-status', role: 'status', 'aria-live': 'polite' });
    const submit = h('button', { type: 'submit', class: 'primary', id: 'wh-save' }, t('form.save'));
    const form = h('form', { class: 'form modal-body', novalidate: true },
      h('div', { class: 'field' }, h('label', { for: 'wh-url' }, t('form.url')), url,
        h('p', { id: 'wh-url-hint', class: 'hint' }, t('form.urlHint')), urlError),
      h('div', { class: 'field' }, h('label', { for: 'wh-token' }, t('form.token')),
        h('div', { class: 'input-row' }, token, showToken, gen),
        h('p', { id: 'wh-token-hint', class: 'hint' }, t('form.tokenHint'))),
      h('fieldset', { class: 'field' }, h('legend', {}, t('form.events')), boxes, eventsError),
      h('details', { class: 'field controls', open: Boolean(w && (w.rate_limit_per_s || w.signature === 'standard' || w.ordered || Object.keys(w.headers || {}).length)) },
        h('summary', {}, t('form.controls')),
        h('div', { class: 'field' }, h('label', { for: 'wh-signature' }, t('form.signature')), signature, secretBox),
        h('div', { class: 'field' }, h('label', { for: 'wh-headers' }, t('form.headers')), headers,
          h('p', { id: 'wh-headers-hint', class: 'hint' }, t('form.headersHint')), headersError),
        h('div', { class: 'field' }, h('label', { for: 'wh-rate' }, t('form.rate')), rate,
          h('p', { id: 'wh-rate-hint', class: 'hint' }, t('form.rateHint')), rateError),
        h('div', { class: 'field' }, h('label', { class: 'check' }, ordered, h('span', {}, t('form.ordered'))),
          h('p', { id: 'wh-ordered-hint', class: 'hint' }, t('form.orderedHint')))),
      progress,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => close(null) }, t('common.cancel')), submit));
    url.addEventListener('input', () => { urlError.textContent = url.value ? urlProblem(url.value.trim(), settings.allow_http_localhost) || '' : ''; });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const events = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      const problem = urlProblem(url.value.trim(), settings.allow_http_localhost);
      urlError.textContent = problem || '';
      eventsError.textContent = events.length ? '' : t('form.eventsNone');
      if (problem) { url.focus(); return; }
      if (!events.length || (!w && !token.value)) { (events.length ? token : boxes[0].querySelector('input')).focus(); return; }
      let headerMap;
      try { headerMap = parseHeaders(headers.value); headersError.textContent = ''; } catch (e) { headersError.textContent = e.message; headers.focus(); return; }
      rateError.textContent = '';
      headersError.textContent = '';
      submit.disabled = true;
      progress.className = 'form-status busy';
      progress.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), t('form.verifying'));
      try {
        const body = { url: url.value.trim(), events, signature: signature.value, ordered: ordered.checked };
        // Masked values (the list's, if the single answer failed) are never sent back.
        if (!Object.values(headerMap).includes('••••')) body.headers = headerMap;
        body.rate_limit_per_s = rate.value ? Number(rate.value) : (w ? null : undefined);
        if (token.value) body.verify_token = token.value;
        const result = w ? await api.updateWebhook(w.id, body) : await api.createWebhook(body);
        close(result);
      } catch (e) {
        // Mark the field the error is about, next to it.
        const code = e && e.code;
        const at = code === 'invalid_header' ? headersError : code === 'invalid_rate_limit' ? rateError : null;
        if (at) {
          at.textContent = e.message || '';
          progress.className = 'form-status';
          progress.replaceChildren();
          (at === headersError ? headers : rate).focus();
        } else {
          progress.className = 'form-status bad';
          progress.replaceChildren(errorView(e));
        }
        submit.disabled = false;
      }
    });
    return form;
  }, { wide: true });
  if (saved) {
    toast(t('webhooks.saved'), 'ok');
    if (saved.signing_secret && !(w && w.signature === 'standard')) await showSecretOnce(saved);
    redraw(view);
  }
}

function copyButton(get) {
  const b = h('button', { type: 'button', class: 'secondary' }, t('form.copy'));
  b.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(get()); b.textContent = t('form.copied'); } catch { /* no clipboard: the text is selectable */ }
  });
  return b;
}

/** A new whsec_ secret, shown in full once. */
function showSecretOnce(webhook) {
  return modal(t('form.secret'), (close) => {
    const ok = h('button', { type: 'button', class: 'primary', autofocus: true, onclick: () => close(true) }, t('common.close'));
    return h('div', { class: 'modal-body' },
      h('p', {}, t('form.secretOnce')),
      h('div', { class: 'input-row' }, h('code', { class: 'secret', dir: 'ltr', id: 'new-secret' }, webhook.signing_secret), copyButton(() => webhook.signing_secret)),
      h('div', { class: 'actions' }, ok));
  });
}

/** The signing secret of a Standard Webhooks webhook: masked, revealable, rotatable. */
function secretField(w) {
  let secret = w.signing_secret || '';
  const value = h('code', { class: 'secret', dir: 'ltr', id: 'wh-secret' }, '••••••••');
  const reveal = h('button', { type: 'button', class: 'ghost', id: 'wh-reveal' }, t('form.reveal'));
  reveal.addEventListener('click', () => { value.textContent = secret; });
  const when = (iso) => h('bdi', {}, new Date(iso).toLocaleString(document.documentElement.lang));
  const notice = h('p', { class: 'hint', role: 'status', id: 'wh-rotation' },
    w.rotation_ends_at ? t('form.rotating', { when: '' }) : '', w.rotation_ends_at ? when(w.rotation_ends_at) : '');
  const rotate = h('button', { type: 'button', class: 'secondary', id: 'wh-rotate' }, t('form.rotate'));
  rotate.addEventListener('click', async () => {
    const yes = await confirmDialog(t('form.rotateTitle'), t('form.rotateText', { hours: 24 }), t('form.rotate'));
    if (!yes) return;
    try {
      const rotated = await api.rotateSecret(w.id, { grace_hours: 24 });
      secret = rotated.signing_secret;
      value.textContent = secret;
      notice.replaceChildren(t('form.rotated', { when: '' }), rotated.rotation_ends_at ? when(rotated.rotation_ends_at) : '');
    } catch (e) {
      toast(errorView(e), 'bad');
    }
  });
  return h('div', { class: 'secret-box' },
    h('span', { class: 'muted' }, t('form.secret'), ': '),
    h('div', { class: 'input-row' }, value, reveal, copyButton(() => secret), rotate), notice);
}
