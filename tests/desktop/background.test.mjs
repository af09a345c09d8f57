// The desktop app as a service with a window (issue 16): closing the window
// keeps it delivering without a web engine, launching it again brings the
// window back, `--quit` and SIGTERM stop it cleanly, and a start at login
// (`--hidden`) opens no window. The real binary under Xvfb, a D-Bus session
// bus (scripts/desktop-test), a real HTTP receiver on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { app, windows, closeWindows, appProcesses, ended, kill, until, logText } from './lib.mjs';

const ADMIN = 'desktop-test-admin-token';
const INGEST = 'desktop-test-ingest-key';
const BASE = 'http://127.0.0.1:8787';

/** A receiver that answers the handshake and keeps every delivery. */
async function receiver() {
  const got = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (req.method === 'GET') {
      res.end(url.searchParams.get('hub.challenge') || '');
      return;
    }
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      got.push(JSON.parse(body));
      res.end('ok');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { got, port: server.address().port, close: () => server.close() };
}

async function api(method, path, body, key = ADMIN) {
  const r = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Child processes of `pid` whose name starts with `prefix` (WebKit's helpers). */
function children(pid, prefix) {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return ppid === pid && name.startsWith(prefix);
    } catch {
      return false;
    }
  });
}

function start(env, args = []) {
  const child = spawn(app, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => { stderr += c; });
  const exit = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal, stderr })));
  return { child, exit, pid: child.pid };
}

test('closing the window keeps delivering; a second launch shows it; --quit and SIGTERM stop cleanly', async () => {
  assert.ok(existsSync(app), `${app} is built`);
  const home = mkdtempSync(join(tmpdir(), 'orki-background-'));
  const env = {
    ...process.env,
    HOME: home,
    XDG_DATA_HOME: join(home, 'data'),
    XDG_CONFIG_HOME: join(home, 'config'),
    XDG_CACHE_HOME: join(home, 'cache'),
    ORKI_ADMIN_TOKEN: ADMIN,
    ORKI_INGEST_KEY: INGEST,
  };
  const log = () => logText(env.XDG_DATA_HOME);
  const count = (line) => log().split(line).length - 1;
  const sink = await receiver();
  try {
    // --quit before anything ran: "not running", and no database made for it.
    const early = await start(env, ['--quit']).exit;
    assert.equal(early.code, 0);
    assert.match(early.stderr, /not running/);
    assert.ok(!existsSync(join(env.XDG_DATA_HOME, 'com.orki.webhooks', 'orki-webhooks.redb')), 'no database made');

    const first = start(env);
    await until('the app to start with its window', () => count('engine started') === 1 && windows(['--pid', String(first.pid)]).length > 0);
    await api('PATCH', '/v1/settings', { allow_http_localhost: true });
    await api('POST', '/v1/webhooks', { url: `http://127.0.0.1:${sink.port}/hook`, verify_token: 'tok', events: ['message.created'] });
    await until('the window to have a web process', () => children(first.pid, 'WebKitWebProces').length > 0);

    // Close the window as a window manager does: the app stays, its webview goes.
    closeWindows(windows(['--pid', String(first.pid)]));
    await until('the window to go', () => windows(['--pid', String(first.pid)]).length === 0);
    await until('the log to say it keeps delivering', () => log().includes('window closed: delivering in the background'));
    await until('the web process to end', () => children(first.pid, 'WebKitWebProces').length === 0);
    await until('the network process to end', () => children(first.pid, 'WebKitNetworkP').length === 0);
    assert.ok(!ended(first.pid), 'the app still runs');
    const desktopJson = JSON.parse(readFileSync(join(env.XDG_DATA_HOME, 'com.orki.webhooks', 'desktop.json'), 'utf8'));
    assert.equal(desktopJson.background_notice_shown, true, 'the first close tells the admin, once');

    // It still delivers: an event posted now reaches the receiver.
    const accepted = await api('POST', '/v1/events', { type: 'message.created', data: { text: 'after the close' } }, INGEST);
    await until('the delivery', () => sink.got.some((e) => e.id === accepted.id));

    // Launching it again shows the running one's window; the second process ends.
    const second = start(env);
    const secondEnd = await second.exit;
    assert.equal(secondEnd.code, 0, `the second launch hands over and ends: ${secondEnd.stderr}`);
    await until('the window to come back', () => windows(['--pid', String(first.pid)]).length > 0);
    await until('its page to load (WebKit started again)', () => children(first.pid, 'WebKitWebProces').length > 0 && children(first.pid, 'WebKitNetworkP').length > 0);
    assert.equal(count('engine started'), 1, 'no second engine');

    // --quit asks it to stop: the engine stops cleanly and the port is free.
    const quit = start(env, ['--quit']);
    assert.equal((await quit.exit).code, 0);
    const firstEnd = await first.exit;
    assert.equal(firstEnd.code, 0, `a clean exit: ${firstEnd.stderr}`);
    assert.equal(count('engine stopped'), 1);
    assert.ok(log().includes('quit requested by orki-webhooks --quit'));
    await assert.rejects(fetch(BASE + '/v1/health'), 'nothing listens any more');

    // --quit with nothing running says so and starts nothing.
    const none = start(env, ['--quit']);
    const noneEnd = await none.exit;
    assert.equal(noneEnd.code, 0);
    assert.match(noneEnd.stderr, /not running/);
    assert.equal(count('engine started'), 1);

    // Started at login: no window, delivering; SIGTERM stops it cleanly.
    const hidden = start(env, ['--hidden']);
    await until('the hidden start', () => count('engine started') === 2 && log().includes('started hidden: delivering in the background'));
    assert.deepEqual(windows(['--pid', String(hidden.pid)]), [], 'no window');
    assert.deepEqual(children(hidden.pid, 'WebKit'), [], 'no web engine');
    const again = await api('POST', '/v1/events', { type: 'message.created', data: { text: 'hidden' } }, INGEST);
    await until('the delivery while hidden', () => sink.got.some((e) => e.id === again.id));
    hidden.child.kill('SIGTERM');
    const hiddenEnd = await hidden.exit;
    assert.equal(hiddenEnd.code, 0, `SIGTERM is a clean exit: ${hiddenEnd.stderr}`);
    assert.equal(count('engine stopped'), 2);
    assert.ok(log().includes('signal="SIGTERM"') || log().includes('signal=SIGTERM'), 'the log names the signal');

    // The admin chose "quit" on close (the settings page writes desktop.json):
    // closing the window then stops the app cleanly.
    const settingsFile = join(env.XDG_DATA_HOME, 'com.orki.webhooks', 'desktop.json');
    writeFileSync(settingsFile, JSON.stringify({ ...JSON.parse(readFileSync(settingsFile, 'utf8')), close_action: 'quit' }));
    const quitter = start(env);
    await until('the window', () => count('engine started') === 3 && windows(['--pid', String(quitter.pid)]).length > 0);
    closeWindows(windows(['--pid', String(quitter.pid)]));
    const quitterEnd = await quitter.exit;
    assert.equal(quitterEnd.code, 0, `closing quits cleanly: ${quitterEnd.stderr}`);
    assert.equal(count('engine stopped'), 3);
  } finally {
    sink.close();
    kill(appProcesses(env.XDG_DATA_HOME));
  }
});
