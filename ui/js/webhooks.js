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

function healthBadge(w) {
  if (!w.enabled) return h('span', { class: 'badge muted' }, t('webhooks.disabled'));
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
    // Several events in a burst cause one reload.
    clearTimeout(pending);
    pending = setTimeout(() => refresh(view), 150);
  }, { signal });
  await draw(view);
}

async function draw(view) {
  const { root, signal } = view;
  const webhooks = await api.listWebhooks();
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
    try {
      await api.updateWebhook(w.id, { enabled: toggle.checked });
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
      h('div', { class: 'health' }, healthBadge(w), h('span', { class: 'muted' }, lastLine(w)))),
    h('div', { class: 'card-actions' },
      h('label', { class: 'switch' }, toggle, h('span', {}, t('webhooks.enabled'))),
      h('button', { type: 'button', class: 'secondary', onclick: () => testPanel(el, w) }, t('webhooks.test')),
      h('button', { type: 'button', class: 'ghost', onclick: () => editWebhook(view, w) }, t('common.edit')),
      h('button', { type: 'button', class: 'ghost danger-text', onclick: () => removeWebhook(view, w) }, t('common.delete'))));
  if (w.warning) {
    el.prepend(h('div', { class: 'banner warn', role: 'alert' }, '⚠ ', t('webhooks.warning', { n: w.consecutive_failures })));
  }
  return el;
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
      result.replaceChildren(
        h('strong', {}, a.success
          ? t('test.ok', { status: a.status_code, ms: a.response_time_ms })
          : t('test.failed', { error: a.error })),
        a.success || !a.status_code ? null : h('span', { class: 'muted' }, ` · ${a.response_time_ms} ms`),
        body ? h('pre', { class: 'code small', dir: 'ltr' }, body) : null);
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

async function editWebhook(view, w) {
  const settings = await api.getSettings().catch(() => ({}));
  const saved = await modal(w ? t('form.editTitle') : t('form.addTitle'), (close) => {
    const url = h('input', { id: 'wh-url', type: 'url', required: true, dir: 'ltr', placeholder: 'https://crm.example.com/hooks/orki', autocomplete: 'off', 'aria-describedby': 'wh-url-hint wh-url-error' });
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
    const progress = h('div', { class: 'form-status', role: 'status', 'aria-live': 'polite' });
    const submit = h('button', { type: 'submit', class: 'primary', id: 'wh-save' }, t('form.save'));
    const form = h('form', { class: 'form modal-body', novalidate: true },
      h('div', { class: 'field' }, h('label', { for: 'wh-url' }, t('form.url')), url,
        h('p', { id: 'wh-url-hint', class: 'hint' }, t('form.urlHint')), urlError),
      h('div', { class: 'field' }, h('label', { for: 'wh-token' }, t('form.token')),
        h('div', { class: 'input-row' }, token, showToken, gen),
        h('p', { id: 'wh-token-hint', class: 'hint' }, t('form.tokenHint'))),
      h('fieldset', { class: 'field' }, h('legend', {}, t('form.events')), boxes, eventsError),
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
      submit.disabled = true;
      progress.className = 'form-status busy';
      progress.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), t('form.verifying'));
      try {
        const body = { url: url.value.trim(), events };
        if (token.value) body.verify_token = token.value;
        const result = w ? await api.updateWebhook(w.id, body) : await api.createWebhook(body);
        close(result);
      } catch (e) {
        progress.className = 'form-status bad';
        progress.replaceChildren(errorView(e));
        submit.disabled = false;
      }
    });
    setTimeout(() => url.focus(), 0);
    return form;
  }, { wide: true });
  if (saved) {
    toast(t('webhooks.saved'), 'ok');
    redraw(view);
  }
}
