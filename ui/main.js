// Placeholder window: shows whether the in-process engine is running.
const status = document.getElementById('status');

async function engineStatus() {
  const tauri = window.__TAURI_INTERNALS__;
  if (tauri) return tauri.invoke('engine_status');
  const r = await fetch('/v1/health');
  const h = await r.json();
  return { state: 'running', listen: location.host, version: h.version };
}

engineStatus().then((s) => {
  if (s.state === 'running') {
    status.textContent = `Engine ${s.version} is running: local tools post events to http://${s.listen}/v1/events`;
    status.className = 'ok';
  } else {
    status.textContent = `The engine did not start: ${s.message}`;
    status.className = 'failed';
  }
}).catch((e) => {
  status.textContent = `Cannot reach the engine: ${e}`;
  status.className = 'failed';
});
