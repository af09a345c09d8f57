// What the desktop tests share: the app binary, a WebDriver client, and X11
// and /proc helpers to find, close and wait for the app's windows and processes.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const app = process.env.ORKI_DESKTOP_BIN || join(root, 'target', 'debug', 'orki-webhooks');
export const DRIVER = 'http://127.0.0.1:4444';

export async function wd(method, path, body) {
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
export function windows(extra) {
  try {
    return execFileSync('xdotool', ['search', '--all', ...extra, '--name', '^Orki Webhooks$'], { encoding: 'utf8' })
      .split('\n').filter(Boolean);
  } catch {
    return []; // xdotool exits 1 when nothing matches
  }
}

export function closeWindows(ids) {
  execFileSync('python3', [join(root, 'tests', 'desktop', 'close-window.py'), ...ids]);
}

/** Processes of the app binary that run with this test's data directory. */
export function appProcesses(dataHome) {
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
export function ended(pid) {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1][0];
    return state === 'Z' && readdirSync(`/proc/${pid}/task`).length <= 1;
  } catch {
    return true;
  }
}

export function kill(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

export async function until(what, fn, ms = 30000) {
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


/** The log text of an app whose data lives under `dataHome`. */
export function logText(dataHome) {
  const logs = join(dataHome, 'com.orki.webhooks', 'logs');
  return existsSync(logs) ? readdirSync(logs).map((f) => readFileSync(join(logs, f), 'utf8')).join('') : '';
}
