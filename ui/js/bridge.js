// The one module that knows whether the UI runs in the Tauri window or in a
// browser against `orki-webhooksd serve`. Every other module calls `api`.
// Errors are thrown as {code, message, step?} in both cases.

const tauri = window.__TAURI__;

function tokenFromFragment() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem('orki.token', decodeURIComponent(match[1]));
    history.replaceState(null, '', location.pathname + location.search + '#/webhooks');
  }
  return sessionStorage.getItem('orki.token');
}

const token = tauri ? null : tokenFromFragment();

/** Keeps a token the admin pasted, for this tab, and starts again with it. */
export function useToken(value) {
  sessionStorage.setItem('orki.token', value.trim());
  location.reload();
}

async function http(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw { code: 'unreachable', message: String(e) };
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw (data && data.error) || { code: 'http_' + response.status, message: response.statusText };
  }
  return data;
}

async function call(command, args) {
  try {
    return await tauri.core.invoke(command, args);
  } catch (e) {
    throw typeof e === 'object' && e && e.code ? e : { code: 'internal', message: String(e) };
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}

function clean(params) {
  const out = {};
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') out[k] = String(v);
  return out;
}

export const mode = tauri ? 'desktop' : 'browser';
export const hasToken = () => Boolean(tauri || token);

export const api = tauri
  ? {
      status: () => call('engine_status'),
      eventTypes: () => call('event_types'),
      listWebhooks: () => call('list_webhooks'),
      createWebhook: (body) => call('create_webhook', { body }),
      getWebhook: (id) => call('get_webhook', { id }),
      updateWebhook: (id, patch) => call('update_webhook', { id, patch }),
      rotateSecret: (id, body) => call('rotate_secret', { id, body }),
      deleteWebhook: (id) => call('delete_webhook', { id }),
      testWebhook: (id, eventType) => call('test_webhook', { id, eventType }),
      replay: (id, body) => call('replay_failed', { id, body }),
      redeliver: (id) => call('redeliver', { id }),
      skipDelivery: (id) => call('skip_delivery', { id }),
      heldDeliveries: (id) => call('held_deliveries', { id }),
      listAttempts: (params) => call('list_attempts', { query: clean(params) }),
      getAttempt: (id) => call('get_attempt', { id }),
      getSettings: () => call('get_settings'),
      patchSettings: (patch) => call('update_settings', { patch }),
      desktopSettings: () => call('desktop_settings'),
      patchDesktopSettings: (patch) => call('update_desktop_settings', { patch }),
      subscribe: (onEvent) => tauri.event.listen('engine-event', (e) => onEvent(e.payload)),
    }
  : {
      status: async () => {
        const h = await http('GET', '/v1/health');
        return { state: 'running', listen: location.host, version: h.version, network: h.network };
      },
      eventTypes: () => http('GET', '/v1/event-types'),
      listWebhooks: async () => (await http('GET', '/v1/webhooks')).items,
      createWebhook: (body) => http('POST', '/v1/webhooks', body),
      getWebhook: (id) => http('GET', `/v1/webhooks/${id}`),
      updateWebhook: (id, patch) => http('PATCH', `/v1/webhooks/${id}`, patch),
      rotateSecret: (id, body) => http('POST', `/v1/webhooks/${id}/rotate-secret`, body),
      deleteWebhook: (id) => http('DELETE', `/v1/webhooks/${id}`),
      testWebhook: (id, eventType) => http('POST', `/v1/webhooks/${id}/test`, { event_type: eventType }),
      replay: (id, body) => http('POST', `/v1/webhooks/${id}/replay`, body),
      redeliver: (id) => http('POST', `/v1/deliveries/${id}/redeliver`),
      skipDelivery: (id) => http('POST', `/v1/deliveries/${id}/skip`),
      heldDeliveries: (id) => http('GET', `/v1/webhooks/${id}/held`),
      listAttempts: (params) => http('GET', '/v1/attempts' + query(params)),
      getAttempt: (id) => http('GET', `/v1/attempts/${id}`),
      getSettings: () => http('GET', '/v1/settings'),
      patchSettings: (patch) => http('PATCH', '/v1/settings', patch),
      // The desktop app's own settings: none in a browser.
      desktopSettings: async () => null,
      patchDesktopSettings: async () => null,
      subscribe: (onEvent, onConnection) => streamEvents(onEvent, onConnection),
    };

// Server-Sent Events over fetch (EventSource cannot send the Authorization
// header). `onConnection(true | false)` says when the stream is up or lost
// (the server stopped): the UI must not keep saying "Listening".
async function streamEvents(onEvent, onConnection = () => {}) {
  for (;;) {
    try {
      const response = await fetch('/v1/stream', { headers: { Authorization: `Bearer ${token}` } });
      if (!response.ok) { onConnection(false); return; }
      onConnection(true);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
          if (data) {
            try { onEvent(JSON.parse(data)); } catch { /* a malformed event is skipped */ }
          }
        }
      }
    } catch { /* reconnect below */ }
    onConnection(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}
