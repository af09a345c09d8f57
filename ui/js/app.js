// Starts the UI and routes between the three pages. Nothing imports this
// module (scripts/check-ui-cycles checks it): what the pages share lives in
// state.js, events.js, theme.js and the other small modules.
//
// A page is `render(root, rest, signal)`. It subscribes to engine events and
// adds window/document listeners once, tied to `signal`, which is aborted when
// the route changes; after each await it returns quietly if it was aborted.
import { api, hasToken, mode, useToken } from './bridge.js';
import { applyLanguage, t } from './i18n.js';
import { h } from './dom.js';
import { state } from './state.js';
import { emitEngineEvent } from './events.js';
import { applyTheme } from './theme.js';
import { errorView } from './errors.js';
import { renderWebhooks } from './webhooks.js';
import { renderLog } from './log.js';
import { renderSettings } from './settings.js';

const pages = { webhooks: renderWebhooks, log: renderLog, settings: renderSettings };

/** The page shown now: aborted when it is left. */
let shown = null;

async function route() {
  shown?.abort();
  const page = new AbortController();
  shown = page;
  const main = document.getElementById('main');
  const [, name = 'webhooks', rest = ''] = location.hash.match(/^#\/(\w+)\/?(.*)$/) || [];
  const current = pages[name] ? name : 'webhooks';
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  main.replaceChildren(h('p', { class: 'muted' }, t('common.loading')));
  try {
    await pages[current](main, decodeURIComponent(rest), page.signal);
  } catch (e) {
    if (page.signal.aborted) return;
    main.replaceChildren(h('div', { class: 'banner error', role: 'alert' }, t('common.error'), ': ', errorView(e)));
  }
}

function showStatus() {
  const box = document.getElementById('listener');
  const s = state.status;
  if (state.connected === false) {
    box.replaceChildren(h('span', { class: 'dot bad', 'aria-hidden': 'true' }),
      h('span', { role: 'status' }, t('listener.lost')));
    return;
  }
  const running = s && s.state === 'running';
  // The engine's `network` (from /v1/health, then `network_changed` events).
  const offline = running && state.network === 'offline';
  box.replaceChildren(
    h('span', { class: `dot ${running && !offline ? 'ok' : offline ? 'warn' : 'bad'}`, 'aria-hidden': 'true' }),
    h('span', {},
      running ? t('listener.running', { addr: s.listen }) : t('listener.failed'),
      offline ? h('span', { class: 'offline', role: 'status' }, t('listener.offline')) : null),
  );
}

/** No token, or one the server refused: say what to do, and take a pasted one. */
function tokenPage(main, why) {
  const input = h('input', { id: 'token-input', type: 'password', autocomplete: 'off', dir: 'ltr', required: true, 'aria-describedby': 'token-why' });
  const form = h('form', { class: 'form token-form' },
    h('div', { class: 'banner error', role: 'alert', id: 'token-why' }, t(why === 'wrong' ? 'auth.wrong' : 'auth.missing')),
    h('div', { class: 'field' }, h('label', { for: 'token-input' }, t('auth.paste')), input,
      h('p', { class: 'hint' }, t('auth.pasteHint'))),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'token-use' }, t('auth.use'))));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (input.value.trim()) useToken(input.value);
  });
  main.replaceChildren(form);
  input.focus();
  document.body.dataset.ready = 'true';
}

/** The server answered again after it was lost: fresh state, the page again. */
async function reconnected() {
  try {
    state.status = await api.status();
    state.network = state.status.network || 'online';
  } catch { /* the next loss or answer says more */ }
  showStatus();
  route();
}

async function start() {
  applyTheme();
  applyLanguage();
  const main = document.getElementById('main');
  if (!hasToken()) {
    tokenPage(main, 'missing');
    return;
  }
  let failure = null;
  try {
    state.status = await api.status();
  } catch (e) {
    failure = e;
    state.status = { state: 'failed', message: e.message };
  }
  showStatus();
  if (state.status.state !== 'running') {
    // The desktop shell reports a failed start as {state, message} (no code).
    main.replaceChildren(h('div', { class: 'banner error', role: 'alert' }, failure ? errorView(failure) : state.status.message));
    return;
  }
  state.network = state.status.network || 'online';
  showStatus();
  try {
    state.eventTypes = await api.eventTypes();
  } catch (e) {
    if (mode === 'browser' && e && e.code === 'unauthorized') { tokenPage(main, 'wrong'); return; }
    throw e;
  }
  api.subscribe((event) => {
    if (event && event.kind === 'network_changed') {
      state.network = event.network;
      showStatus();
    }
    emitEngineEvent(event);
  }, (up) => {
    const was = state.connected;
    state.connected = up;
    if (up && was === false) reconnected();
    else if (!up && was !== false) showStatus();
  });
  window.addEventListener('hashchange', route);
  window.addEventListener('orki:language', () => { showStatus(); route(); });
  if (!location.hash.startsWith('#/')) history.replaceState(null, '', '#/webhooks');
  await route();
  document.body.dataset.ready = 'true';
}

start();
