// Errors as a person reads them. The text is chosen by the error's `code` (and
// `step` for a failed handshake), never by the server's English wording; the
// server's message is shown as the detail where it carries specifics (which
// field, which HTTP status), and is the whole text only for an unknown code.
import { t, has } from './i18n.js';
import { h } from './dom.js';

// Codes whose message names what exactly was wrong: shown under the text.
const DETAILED = new Set([
  'verification_failed', 'invalid_setting', 'invalid_url', 'invalid_verify_token', 'invalid_field',
  'invalid_body', 'invalid_json', 'invalid_query', 'invalid_idempotency_key', 'unknown_event_type', 'internal',
]);

function known(e) {
  return Boolean(e && typeof e === 'object' && typeof e.code === 'string' && has('error.' + e.code));
}

/** The translated text of an error; the server's message for an unknown code. */
export function errorText(e) {
  if (!e) return '';
  if (e.code === 'verification_failed' && e.step && has('step.' + e.step)) {
    return `${t('step.title')}: ${t('step.' + e.step)}.`;
  }
  if (known(e)) return t('error.' + e.code);
  return (e && e.message) || String(e);
}

/** The server's own words, when they add to the text. */
export function errorDetail(e) {
  return known(e) && DETAILED.has(e.code) && e.message ? e.message : '';
}

/** The text and its detail, for a toast, a banner or a form status. */
export function errorView(e) {
  const detail = errorDetail(e);
  return h('span', { class: 'error-text' },
    h('strong', { class: 'error-summary' }, errorText(e)),
    detail ? h('span', { class: 'error-detail' }, h('bdi', { dir: 'ltr' }, detail)) : null);
}
