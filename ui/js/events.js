// Live engine events (SSE in the browser, Tauri events in the window), handed
// to the pages that listen. A page subscribes once while it is shown: pass the
// page's AbortSignal (the router aborts it when the route changes) or call the
// function that `onEngineEvent` returns.
const listeners = new Set();

export function onEngineEvent(fn, { signal } = {}) {
  if (signal?.aborted) return () => {};
  listeners.add(fn);
  const off = () => { listeners.delete(fn); signal?.removeEventListener('abort', off); };
  signal?.addEventListener('abort', off, { once: true });
  return off;
}

/** Called by app.js for every event from the engine. */
export function emitEngineEvent(event) {
  for (const fn of [...listeners]) fn(event);
}

// For the browser tests: how many listeners are registered right now.
Object.defineProperty(window, '__orkiListeners', { get: () => listeners.size, configurable: true });
