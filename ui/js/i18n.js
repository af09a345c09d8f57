// Strings in English and Arabic; the language follows the system unless chosen
// in Settings, and Arabic turns the layout right-to-left.
import en from '../i18n/en.js';
import ar from '../i18n/ar.js';

const dictionaries = { en, ar };
let current = 'en';

export function chosenLanguage() {
  return localStorage.getItem('orki.lang') || 'system';
}

export function applyLanguage(choice = chosenLanguage()) {
  const system = (navigator.language || 'en').toLowerCase().startsWith('ar') ? 'ar' : 'en';
  current = choice === 'system' ? system : dictionaries[choice] ? choice : 'en';
  document.documentElement.lang = current;
  document.documentElement.dir = current === 'ar' ? 'rtl' : 'ltr';
  document.title = t('app.name');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
}

export function setLanguage(choice) {
  localStorage.setItem('orki.lang', choice);
  applyLanguage(choice);
}

/** Whether there is a text for `key` (in the current language or English). */
export function has(key) {
  return key in dictionaries[current] || key in en;
}

export function t(key, vars = {}) {
  const text = dictionaries[current][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] ?? `{${name}}`));
}
