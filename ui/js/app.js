// Starts the UI: language and theme, navigation between the three pages, and
// live updates from the engine.
import { api, hasToken } from './bridge.js';
import { applyLanguage, t } from './i18n.js';
import { h } from './dom.js';
import { renderWebhooks } from './webhooks.js';
import { renderLog } from './log.js';
import { renderSettings } from './settings.js';

export const state = { status: null, eventTypes: [], listeners: new Set() };

/** Views register for engine events while they are shown. */
export function onEngineEvent(fn) {
  state.listeners.add(fn);
  return () => state.listeners.delete(fn);
}

export function applyTheme(choice = localStorage.getItem('orki.theme') || 'system') {
  if (choice === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = choice;
}

const pages = { webhooks: renderWebhooks, log: renderLog, settings: renderSettings };

async function route() {
  const main = document.getElementById('main');
  const [, name = 'webhooks', rest = ''] = location.hash.match(/^#\/(\w+)\/?(.*)$/) || [];
  const page = pages[name] ? name : 'webhooks';
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  state.listeners.clear();
  main.replaceChildren(h('p', { class: 'muted' }, t('common.loading')));
  try {
    await pages[page](main, decodeURIComponent(rest));
  } catch (e) {
    main.replaceChildren(h('div', { class: 'banner error', role: 'alert' }, t('common.error'), ': ', e.message || String(e)));
  }
}

function showStatus() {
  const box = document.getElementById('listener');
  const s = state.status;
  box.replaceChildren(
    h('span', { class: `dot ${s && s.state === 'running' ? 'ok' : 'bad'}`, 'aria-hidden': 'true' }),
    s && s.state === 'running' ? t('listener.running', { addr: s.listen }) : t('listener.failed'),
  );
}

async function start() {
  applyTheme();
  applyLanguage();
  const main = document.getElementById('main');
  if (!hasToken()) {
    main.replaceChildren(h('div', { class: 'banner error', role: 'alert' }, t('auth.missing')));
    return;
  }
  try {
    state.status = await api.status();
  } catch (e) {
    state.status = { state: 'failed', message: e.message };
  }
  showStatus();
  if (state.status.state !== 'running') {
    main.replaceChildren(h('div', { class: 'banner error', role: 'alert' }, state.status.message));
    return;
  }
  state.eventTypes = await api.eventTypes();
  api.subscribe((event) => { for (const fn of state.listeners) fn(event); });
  window.addEventListener('hashchange', route);
  window.addEventListener('orki:language', () => { showStatus(); route(); });
  if (!location.hash.startsWith('#/')) history.replaceState(null, '', '#/webhooks');
  await route();
  document.body.dataset.ready = 'true';
}

start();
