// The delivery log: filters, pages, live rows, the attempt detail, redeliver
// and bulk replay of failures.
import { api } from './bridge.js';
import { state } from './state.js';
import { onEngineEvent } from './events.js';
import { t } from './i18n.js';
import { h, toast, modal, dateTime, prettyBody, copy, confirmDialog } from './dom.js';
import { errorView } from './errors.js';

const RANGES = { any: null, hour: 3600e3, day: 86400e3, week: 7 * 86400e3 };

function shellQuote(text) {
  return `'${String(text).replace(/'/g, `'\\''`)}'`;
}

/** A curl command that sends exactly the signed request of an attempt. */
export function curlFor(detail) {
  const headers = Object.entries(detail.request.headers)
    .map(([k, v]) => `  -H ${shellQuote(`${k}: ${v}`)} \\`).join('\n');
  return `curl -sS -X POST ${shellQuote(detail.request.url)} \\\n${headers}\n  --data-binary ${shellQuote(detail.request.body ?? '')}`;
}

function toIso(local) {
  return local ? new Date(local).toISOString() : '';
}

/** The page, shown until `signal` is aborted (the route changed). */
export async function renderLog(root, _rest, signal) {
  const webhooks = await api.listWebhooks();
  if (signal.aborted) return;
  const names = new Map(webhooks.map((w) => [w.id, w.url]));
  const f = { webhook_id: '', event_type: '', outcome: '', range: 'any', from: '', to: '' };

  const select = (id, label, options, key) => {
    const el = h('select', { id }, options.map(([v, text]) => h('option', { value: v }, text)));
    el.addEventListener('change', () => { f[key] = el.value; sync(); load(true); });
    return h('label', { class: 'filter' }, h('span', {}, label), el);
  };
  const fromInput = h('input', { type: 'datetime-local', id: 'f-from' });
  const toInput = h('input', { type: 'datetime-local', id: 'f-to' });
  fromInput.addEventListener('change', () => { f.from = toIso(fromInput.value); load(true); });
  toInput.addEventListener('change', () => { f.to = toIso(toInput.value); load(true); });
  const custom = h('div', { class: 'custom-range', hidden: true },
    h('label', { class: 'filter' }, h('span', {}, t('log.from')), fromInput),
    h('label', { class: 'filter' }, h('span', {}, t('log.to')), toInput));
  const replayButton = h('button', { type: 'button', class: 'secondary', id: 'replay', onclick: () => replay() }, t('log.replay'));

  const filters = h('div', { class: 'filters', role: 'search' },
    select('f-webhook', t('log.webhook'), [['', t('common.all')], ...webhooks.map((w) => [w.id, w.url])], 'webhook_id'),
    select('f-type', t('log.eventType'), [['', t('common.all')], ...state.eventTypes.map((e) => [e.type, e.type])], 'event_type'),
    select('f-outcome', t('log.outcome'), [['', t('common.all')], ['success', t('log.success')], ['failure', t('log.failure')]], 'outcome'),
    select('f-range', t('log.range'), [['any', t('log.anyTime')], ['hour', t('log.lastHour')], ['day', t('log.last24h')], ['week', t('log.last7d')], ['custom', t('log.custom')]], 'range'),
    custom, replayButton);

  const tbody = h('tbody', { id: 'attempt-rows' });
  const table = h('table', { class: 'log' },
    h('thead', {}, h('tr', {},
      [t('log.time'), t('log.webhook'), t('log.event'), t('log.status'), t('log.duration'), t('log.outcome'), t('log.error')]
        .map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  const empty = h('p', { class: 'muted empty-log', hidden: true });
  const more = h('button', { type: 'button', class: 'secondary more', hidden: true, onclick: () => load(false) }, t('log.more'));
  root.replaceChildren(h('header', { class: 'page-head' }, h('h1', {}, t('log.title'))), filters,
    h('div', { class: 'table-wrap' }, table), empty, more);

  let cursor = null;
  let loading = false;
  function sync() {
    custom.hidden = f.range !== 'custom';
    replayButton.disabled = !f.webhook_id;
    replayButton.title = f.webhook_id ? '' : t('log.pickWebhook');
  }
  sync();

  function params() {
    const p = { webhook_id: f.webhook_id, event_type: f.event_type, outcome: f.outcome };
    if (f.range === 'custom') { p.from = f.from; p.to = f.to; }
    else if (RANGES[f.range]) p.from = new Date(Date.now() - RANGES[f.range]).toISOString();
    return p;
  }

  function matches(a) {
    const p = params();
    return (!p.webhook_id || a.webhook_id === p.webhook_id)
      && (!p.event_type || a.event_type === p.event_type)
      && (!p.outcome || a.success === (p.outcome === 'success'))
      && (!p.from || a.timestamp >= p.from) && (!p.to || a.timestamp <= p.to);
  }

  function row(a) {
    const open = () => showDetail(a.id);
    const tr = h('tr', { tabindex: '0', class: a.success ? 'ok' : 'bad', 'data-id': a.id, onclick: open,
      onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); } } },
    h('td', { class: 'nowrap' }, dateTime(a.timestamp)),
    h('td', { class: 'url-cell', dir: 'ltr' }, names.get(a.webhook_id) || a.webhook_id),
    h('td', { dir: 'ltr' }, a.event_type, a.test ? h('span', { class: 'chip small' }, t('log.test')) : null),
    h('td', {}, a.status_code ?? '—'),
    h('td', { class: 'num' }, `${a.response_time_ms} ms`),
    h('td', {}, h('span', { class: `badge ${a.success ? 'ok' : 'bad'}` }, a.success ? t('log.success') : t('log.failure'))),
    h('td', { class: 'error-cell' }, a.error || ''));
    return tr;
  }

  async function load(reset) {
    if (loading) return;
    loading = true;
    try {
      const page = await api.listAttempts({ ...params(), limit: 50, cursor: reset ? '' : cursor || '' });
      if (signal.aborted) return;
      // Cleared only now, so rows that arrived live meanwhile are not shown twice.
      if (reset) tbody.replaceChildren();
      for (const a of page.items) {
        if (!tbody.querySelector(`[data-id="${a.id}"]`)) tbody.append(row(a));
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
      const none = tbody.children.length === 0;
      empty.hidden = !none;
      table.hidden = none;
      const anyFilter = f.webhook_id || f.event_type || f.outcome || f.range !== 'any';
      empty.textContent = anyFilter ? t('log.empty') : t('log.emptyAll');
    } catch (e) {
      toast(errorView(e), 'bad');
    } finally {
      loading = false;
    }
  }

  // Infinite scroll: the "Load more" button loads itself when it comes into view.
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && !more.hidden) load(false);
  });
  observer.observe(more);
  signal.addEventListener('abort', () => observer.disconnect(), { once: true });

  onEngineEvent((e) => {
    if (e.kind !== 'attempt_recorded' || !matches(e)) return;
    if (tbody.querySelector(`[data-id="${e.id}"]`)) return;
    const tr = row(e);
    tr.classList.add('fresh');
    tbody.prepend(tr);
    empty.hidden = true;
    table.hidden = false;
  }, { signal });

  async function replay() {
    const p = params();
    const body = { event_type: p.event_type || undefined, from: p.from || undefined, to: p.to || undefined };
    let dry;
    try {
      dry = await api.replay(f.webhook_id, { ...body, dry_run: true });
    } catch (e) {
      toast(errorView(e), 'bad');
      return;
    }
    const ok = await confirmDialog(t('log.replayTitle'),
      dry.count ? t('log.replayCount', { n: dry.count }) : t('log.replayNone'),
      t('log.replayGo', { n: dry.count }));
    if (!ok || !dry.count) return;
    try {
      const done = await api.replay(f.webhook_id, body);
      toast(t('log.replayed', { n: done.count }), 'ok');
    } catch (e) {
      toast(errorView(e), 'bad');
    }
  }

  await load(true);
}

function headersTable(headers) {
  return h('table', { class: 'headers', dir: 'ltr' },
    h('tbody', {}, Object.entries(headers || {}).map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v)))));
}

function headerText(headers) {
  return Object.entries(headers || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
}

async function showDetail(id) {
  let d;
  try {
    d = await api.getAttempt(id);
  } catch (e) {
    toast(errorView(e), 'bad');
    return;
  }
  await modal(t('detail.title', { n: d.attempt, type: d.event_type }), (close) => {
    const redeliver = h('button', { type: 'button', class: 'primary', id: 'redeliver', hidden: d.test }, t('detail.redeliver'));
    redeliver.addEventListener('click', async () => {
      try {
        await api.redeliver(d.delivery_id);
        toast(t('detail.redelivered'), 'ok');
        close(true);
      } catch (e) {
        toast(errorView(e), 'bad');
      }
    });
    const body = prettyBody(d.request.body);
    return h('div', { class: 'modal-body detail' },
      h('dl', { class: 'facts' },
        h('dt', {}, t('log.time')), h('dd', {}, dateTime(d.timestamp)),
        h('dt', {}, t('log.outcome')), h('dd', {}, h('span', { class: `badge ${d.success ? 'ok' : 'bad'}` }, d.success ? t('log.success') : t('log.failure')),
          d.error ? h('span', { class: 'muted' }, ` ${d.error_class}: ${d.error}`) : null),
        h('dt', {}, t('log.duration')), h('dd', {}, `${d.response_time_ms} ms`),
        h('dt', {}, t('detail.delivery')), h('dd', { dir: 'ltr', class: 'mono' }, d.delivery_id),
        h('dt', {}, t('detail.eventId')), h('dd', { dir: 'ltr', class: 'mono' }, d.event_id),
        d.ordering_key ? [h('dt', {}, t('detail.orderingKey')), h('dd', { class: 'mono' }, h('bdi', {}, d.ordering_key))] : null),
      h('section', { class: 'exchange' },
        h('h3', {}, t('detail.request')),
        h('p', { class: 'mono', dir: 'ltr' }, `${d.request.method} ${d.request.url}`),
        h('div', { class: 'section-head' }, h('h4', {}, t('detail.headers')),
          h('button', { type: 'button', class: 'ghost small', onclick: () => copy(headerText(d.request.headers)) }, t('common.copy'))),
        headersTable(d.request.headers),
        h('div', { class: 'section-head' }, h('h4', {}, t('detail.body')),
          h('button', { type: 'button', class: 'ghost small', onclick: () => copy(d.request.body ?? '') }, t('common.copy'))),
        h('pre', { class: 'code', dir: 'ltr', id: 'request-body' }, body)),
      h('section', { class: 'exchange' },
        h('h3', {}, t('detail.response')),
        d.response ? [
          h('p', { class: 'mono', dir: 'ltr' }, `HTTP ${d.response.status}`),
          h('div', { class: 'section-head' }, h('h4', {}, t('detail.headers')),
            h('button', { type: 'button', class: 'ghost small', onclick: () => copy(headerText(d.response.headers)) }, t('common.copy'))),
          headersTable(d.response.headers),
          h('div', { class: 'section-head' }, h('h4', {}, t('detail.body'), d.response.body_truncated ? ` ${t('detail.truncated')}` : ''),
            h('button', { type: 'button', class: 'ghost small', onclick: () => copy(d.response.body) }, t('common.copy'))),
          h('pre', { class: 'code', dir: 'ltr', id: 'response-body' }, prettyBody(d.response.body)),
        ] : h('p', { class: 'banner error' }, t('detail.noResponse', { error: d.error }))),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', id: 'copy-curl', onclick: () => copy(curlFor(d)) }, t('detail.copyCurl')),
        redeliver));
  }, { wide: true });
}
