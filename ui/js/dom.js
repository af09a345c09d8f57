// Small DOM helpers shared by the views.
import { t } from './i18n.js';

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A short notice; `message` is a string or a node (e.g. `errorView(e)`). */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const el = h('div', { class: `toast ${kind}` }, message);
  box.append(el);
  setTimeout(() => el.remove(), 3500);
}

export async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast(t('common.copied'), 'ok');
  } catch {
    // Clipboard API refused (no permission): fall back to a selection copy.
    const area = h('textarea', { class: 'offscreen' });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
    toast(t('common.copied'), 'ok');
  }
}

/** A modal dialog; resolves with the value passed to `close`. */
export function modal(title, build, { wide = false } = {}) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: wide ? 'modal wide' : 'modal', 'aria-labelledby': 'modal-title' });
    const close = (value) => { dialog.close(); dialog.remove(); resolve(value); };
    const body = build(close);
    dialog.append(
      h('header', { class: 'modal-head' },
        h('h2', { id: 'modal-title' }, title),
        h('button', { class: 'icon ghost', type: 'button', 'aria-label': t('common.close'), onclick: () => close(undefined) }, '×')),
      body,
    );
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); close(undefined); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function confirmDialog(title, message, action, danger = false) {
  return modal(title, (close) => h('div', { class: 'modal-body' },
    h('p', {}, message),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', onclick: () => close(false) }, t('common.cancel')),
      h('button', { type: 'button', class: danger ? 'danger' : 'primary', onclick: () => close(true), autofocus: true }, action))));
}

export function relativeTime(iso) {
  if (!iso) return t('common.never');
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(document.documentElement.lang, { numeric: 'auto' });
  if (Math.abs(seconds) < 60) return rtf.format(-seconds, 'second');
  if (Math.abs(seconds) < 3600) return rtf.format(-Math.round(seconds / 60), 'minute');
  if (Math.abs(seconds) < 86400) return rtf.format(-Math.round(seconds / 3600), 'hour');
  return rtf.format(-Math.round(seconds / 86400), 'day');
}

export function dateTime(iso) {
  return new Date(iso).toLocaleString(document.documentElement.lang, {
    year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

export function prettyBody(text) {
  if (text === null || text === undefined) return '';
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}
