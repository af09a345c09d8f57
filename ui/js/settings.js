// Settings: the listener and ingest key (copy, regenerate), a curl example,
// delivery settings, in the desktop window what closing it does and start at
// login, and language and theme.
import { api } from './bridge.js';
import { chosenTheme, setTheme } from './theme.js';
import { t, chosenLanguage, setLanguage } from './i18n.js';
import { h, toast, copy, confirmDialog } from './dom.js';
import { errorView } from './errors.js';
import { curlExample } from './examples.js';

function field(id, label, input, hint) {
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('p', { class: 'hint' }, hint) : null);
}

/** The page, shown until `signal` is aborted (the route changed). */
export async function renderSettings(root, _rest, signal) {
  const [s, desktop] = await Promise.all([api.getSettings(), api.desktopSettings()]);
  if (signal.aborted) return;

  const key = h('input', { type: 'password', readonly: true, dir: 'ltr', id: 'ingest-key', value: s.ingest_key });
  key.value = s.ingest_key;
  const show = h('button', { type: 'button', class: 'ghost' }, t('common.show'));
  show.addEventListener('click', () => {
    const shown = key.type === 'text';
    key.type = shown ? 'password' : 'text';
    show.textContent = shown ? t('common.show') : t('common.hide');
  });
  const regenerate = h('button', { type: 'button', class: 'secondary', disabled: s.ingest_key_from_env, id: 'regenerate' }, t('settings.regenerate'));
  regenerate.addEventListener('click', async () => {
    if (!(await confirmDialog(t('settings.regenerateTitle'), t('settings.regenerateText'), t('settings.regenerate'), true))) return;
    try {
      await api.patchSettings({ regenerate_ingest_key: true });
    } catch (e) {
      toast(errorView(e), 'bad');
      return;
    }
    toast(t('settings.regenerated'), 'ok');
    renderSettings(root, '', signal).catch((e) => toast(errorView(e), 'bad'));
  });
  const example = curlExample(s.listen_address, s.ingest_key);

  const schedule = h('input', { type: 'text', dir: 'ltr', value: s.retry_schedule.join(', ') });
  schedule.value = s.retry_schedule.join(', ');
  const threshold = h('input', { type: 'number', min: '1', max: '1000' });
  threshold.value = s.warning_threshold;
  const autoPause = h('input', { type: 'number', min: '1', max: '8760' });
  autoPause.value = s.auto_pause_after_hours ?? '';
  const retention = h('input', { type: 'number', min: '1', max: '3650' });
  retention.value = s.retention_days;
  // 2^53 - 1: the largest the server takes (exact in JavaScript).
  const maxDb = h('input', { type: 'number', min: '1', max: '9007199254740991' });
  maxDb.value = s.max_database_mb ?? '';
  const port = h('input', { type: 'number', min: '1024', max: '65535' });
  port.value = s.listen_port;
  // --allow-http-localhost turns it on for this run whatever is saved: shown
  // on and locked, and not sent, so saving the rest does not store it.
  const fromFlag = Boolean(s.allow_http_localhost_from_flag);
  const allowHttp = h('input', { type: 'checkbox', id: 'allow-http', checked: s.allow_http_localhost, disabled: fromFlag });
  const status = h('p', { class: 'form-status', role: 'status', 'aria-live': 'polite' });

  const form = h('form', { class: 'form', novalidate: true },
    field('set-schedule', t('settings.schedule'), schedule, t('settings.scheduleHint')),
    field('set-threshold', t('settings.threshold'), threshold),
    field('set-autopause', t('settings.autoPause'), autoPause, t('settings.autoPauseHint')),
    field('set-retention', t('settings.retention'), retention),
    field('set-maxdb', t('settings.maxDb'), maxDb),
    field('set-port', t('settings.port'), port, s.restart_required ? t('settings.restart', { port: s.listen_port, current: s.listen_address.split(':').pop() }) : null),
    h('label', { class: 'check' }, allowHttp, h('span', {}, t('settings.allowHttp'))),
    fromFlag ? h('p', { class: 'hint', id: 'allow-http-flag' }, t('settings.allowHttpFlag')) : null,
    status,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'save-settings' }, t('common.save'))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const patch = {
      retry_schedule: schedule.value.split(',').map((x) => x.trim()).filter(Boolean),
      warning_threshold: Number(threshold.value),
      auto_pause_after_hours: autoPause.value === '' ? null : Number(autoPause.value),
      retention_days: Number(retention.value),
      max_database_mb: maxDb.value === '' ? null : Number(maxDb.value),
      listen_port: Number(port.value),
    };
    if (!fromFlag) patch.allow_http_localhost = allowHttp.checked;
    try {
      await api.patchSettings(patch);
    } catch (err) {
      status.className = 'form-status bad';
      status.replaceChildren(errorView(err));
      return;
    }
    toast(t('settings.saved'), 'ok');
    renderSettings(root, '', signal).catch((e) => toast(errorView(e), 'bad'));
  });

  const language = h('select', { id: 'set-language' },
    [['system', t('settings.system')], ['en', 'English'], ['ar', 'العربية']].map(([v, text]) => h('option', { value: v, selected: chosenLanguage() === v }, text)));
  language.addEventListener('change', () => {
    setLanguage(language.value);
    window.dispatchEvent(new Event('orki:language'));
  });
  const theme = h('select', { id: 'set-theme' },
    [['system', t('settings.system')], ['light', t('settings.light')], ['dark', t('settings.dark')]].map(([v, text]) =>
      h('option', { value: v, selected: chosenTheme() === v }, text)));
  theme.addEventListener('change', () => setTheme(theme.value));

  root.replaceChildren(
    h('header', { class: 'page-head' }, h('h1', {}, t('settings.title'))),
    h('section', { class: 'panel' },
      h('h2', {}, t('settings.listener')),
      h('dl', { class: 'facts' }, h('dt', {}, t('settings.address')), h('dd', { dir: 'ltr', class: 'mono', id: 'listen-address' }, `http://${s.listen_address}`)),
      h('div', { class: 'field' }, h('label', { for: 'ingest-key' }, t('settings.ingestKey')),
        h('div', { class: 'input-row' }, key, show,
          h('button', { type: 'button', class: 'secondary', onclick: () => copy(s.ingest_key) }, t('common.copy')), regenerate),
        h('p', { class: 'hint' }, s.ingest_key_from_env ? t('settings.fromEnv') : t('settings.ingestHint'))),
      h('div', { class: 'section-head' }, h('h3', {}, t('settings.example')),
        h('button', { type: 'button', class: 'ghost small', id: 'copy-example', onclick: () => copy(example) }, t('common.copy'))),
      h('pre', { class: 'code', dir: 'ltr' }, example)),
    h('section', { class: 'panel' }, h('h2', {}, t('settings.delivery')), form),
    desktop ? desktopPanel(desktop) : null,
    h('section', { class: 'panel' }, h('h2', {}, t('settings.appearance')),
      field('set-language', t('settings.language'), language),
      field('set-theme', t('settings.theme'), theme)));
}

/** The desktop app's own settings (only in its window), saved on change. */
function desktopPanel(d) {
  const onClose = h('select', { id: 'set-on-close' },
    [['background', t('settings.onCloseBackground')], ['quit', t('settings.onCloseQuit')]].map(([v, text]) =>
      h('option', { value: v, selected: d.close_action === v }, text)));
  const atLogin = h('input', { type: 'checkbox', id: 'start-at-login', checked: d.start_at_login });
  const status = h('p', { class: 'form-status', role: 'status', 'aria-live': 'polite', id: 'desktop-status' });
  async function save(patch, undo) {
    try {
      await api.patchDesktopSettings(patch);
    } catch (e) {
      undo();
      status.className = 'form-status bad';
      status.replaceChildren(errorView(e));
      return;
    }
    status.className = 'form-status';
    status.replaceChildren();
    toast(t('settings.desktopSaved'), 'ok');
  }
  onClose.addEventListener('change', () => {
    const before = d.close_action;
    d.close_action = onClose.value;
    save({ close_action: onClose.value }, () => { onClose.value = before; d.close_action = before; });
  });
  atLogin.addEventListener('change', () => {
    save({ start_at_login: atLogin.checked }, () => { atLogin.checked = !atLogin.checked; });
  });
  return h('section', { class: 'panel', id: 'desktop-settings' }, h('h2', {}, t('settings.desktop')),
    field('set-on-close', t('settings.onClose'), onClose, t('settings.onCloseHint')),
    h('label', { class: 'check' }, atLogin, h('span', {}, t('settings.startAtLogin'))),
    status);
}
