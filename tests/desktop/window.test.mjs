// The desktop binary in a real window (under Xvfb), driven over WebDriver by
// tauri-driver: the window shows the UI, and the engine inside it answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const app = process.env.ORKI_DESKTOP_BIN || join(root, 'target', 'debug', 'orki-webhooks');
const DRIVER = 'http://127.0.0.1:4444';

async function wd(method, path, body) {
  const r = await fetch(DRIVER + path, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(data)}`);
  return data.value;
}

/** X11 windows titled "Orki Webhooks" (narrowed by extra xdotool options). */
function windows(extra) {
  try {
    return execFileSync('xdotool', ['search', '--all', ...extra, '--name', '^Orki Webhooks$'], { encoding: 'utf8' })
      .split('\n').filter(Boolean);
  } catch {
    return []; // xdotool exits 1 when nothing matches
  }
}

function closeWindows(ids) {
  execFileSync('python3', [join(root, 'tests', 'desktop', 'close-window.py'), ...ids]);
}

/** Processes of the app binary that run with this test's data directory. */
function appProcesses(dataHome) {
  const exe = realpathSync(app);
  return readdirSync('/proc').filter((pid) => /^\d+$/.test(pid)).filter((pid) => {
    try {
      return realpathSync(`/proc/${pid}/exe`) === exe
        && readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`XDG_DATA_HOME=${dataHome}`);
    } catch {
      return false; // gone meanwhile, or not ours to read
    }
  }).map(Number);
}

/** Whether a process has ended: gone, or a zombie whose threads have all exited
 * (only then are its files, and so the database lock and the port, released). */
function ended(pid) {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1][0];
    return state === 'Z' && readdirSync(`/proc/${pid}/task`).length <= 1;
  } catch {
    return true;
  }
}

function kill(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

async function until(what, fn, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('the desktop window loads the UI and its engine answers', async () => {
  assert.ok(existsSync(app), `${app} is built`);
  const home = mkdtempSync(join(tmpdir(), 'orki-desktop-'));
  const driverEnv = { ...process.env, XDG_DATA_HOME: join(home, 'data'), XDG_CONFIG_HOME: join(home, 'config'), XDG_CACHE_HOME: join(home, 'cache') };
  const logs = join(home, 'data', 'com.orki.webhooks', 'logs');
  const logText = () => (existsSync(logs) ? readdirSync(logs).map((f) => readFileSync(join(logs, f), 'utf8')).join('') : '');
  const sessionApps = [];
  const driver = spawn('tauri-driver', ['--port', '4444'], { env: driverEnv, stdio: ['ignore', 'inherit', 'inherit'] });
  try {
    await until('tauri-driver', async () => (await fetch(DRIVER + '/status')).ok);
    const session = await wd('POST', '/session', {
      capabilities: { alwaysMatch: { 'tauri:options': { application: app } } },
    });
    const id = session.sessionId;
    const run = (script) => wd('POST', `/session/${id}/execute/sync`, { script, args: [] });
    try {
      await until('the UI to be ready', async () => (await run("return document.body.dataset.ready || ''")) === 'true');
      sessionApps.push(...appProcesses(driverEnv.XDG_DATA_HOME));
      const listener = await run("return document.getElementById('listener').textContent");
      const m = listener.match(/Listening on (127\.0\.0\.1:\d+)/);
      assert.ok(m, `the window shows the listener: ${listener}`);
      const health = await (await fetch(`http://${m[1]}/v1/health`)).json();
      assert.equal(health.status, 'ok', 'the in-process engine answers');
      assert.equal(await run("return document.querySelector('h2')?.textContent || ''"), 'Send your first webhook in three steps');

      // The delivery log goes through the Tauri commands (no HTTP token in the window).
      await run("location.hash = '#/log'; return true");
      await until('the delivery log', async () => (await run("return document.querySelector('.empty-log:not([hidden])')?.textContent || ''")).includes('No deliveries yet'));
      await run("location.hash = '#/settings'; return true");
      const address = await until('settings', () => run("return document.getElementById('listen-address')?.textContent || ''"));
      assert.equal(address, `http://${m[1]}`);
      if (process.env.ORKI_SCREENSHOTS) {
        await run("location.hash = '#/webhooks'; return true");
        await until('webhooks page', () => run("return document.querySelector('.steps') ? 'yes' : ''"));
        const png = await wd('GET', `/session/${id}/screenshot`);
        writeFileSync(join(root, 'docs', 'screenshots', 'desktop-window.png'), Buffer.from(png, 'base64'));
      }
    } finally {
      await wd('DELETE', `/session/${id}`).catch(() => {});
    }
  } finally {
    driver.kill();
  }
  // WebDriver ends its app by killing it, and under load that can lag or be lost
  // with the driver; the single-instance lock must be free before the next start.
  assert.ok(sessionApps.length > 0, 'the WebDriver session\'s app was seen');
  kill(sessionApps);
  await until('the WebDriver session\'s app to end', () => sessionApps.every(ended));

  // Without WebDriver (which ends the app by killing it): a second instance says
  // the app is already running, and closing the window, as a window manager does,
  // stops the engine cleanly.
  const started = () => logText().split('engine started').length - 1;
  const before = started();
  const first = spawn(app, [], { env: driverEnv, stdio: 'ignore' });
  const firstExit = new Promise((r) => first.on('exit', r));
  try {
    await until('the app to start', () => started() > before && windows(['--pid', String(first.pid)]).length > 0);
    const second = spawn(app, [], { env: driverEnv, stdio: 'ignore' });
    const secondExit = new Promise((r) => second.on('exit', r));
    await until('the second instance to refuse', () => logText().includes('already running'));
    await until('its window', () => windows(['--pid', String(second.pid)]).length > 0);
    closeWindows(windows(['--pid', String(second.pid)]));
    await secondExit;
    assert.ok(!logText().includes('engine stopped'), 'the first engine still runs');
    closeWindows(windows(['--pid', String(first.pid)]));
    await until('the engine to stop', () => logText().includes('engine stopped'), 15000);
    await firstExit;
  } finally {
    // A failed step must not leave windows behind (they would keep the test alive).
    kill(appProcesses(driverEnv.XDG_DATA_HOME));
  }
});
