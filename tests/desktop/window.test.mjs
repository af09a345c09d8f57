// The desktop binary in a real window (under Xvfb), driven over WebDriver by
// tauri-driver: the window shows the UI, the engine inside it answers, and
// the desktop settings (start at login) do what they say.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync, readFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root, app, DRIVER, wd, appProcesses, ended, kill, until } from './lib.mjs';

test('the desktop window loads the UI and its engine answers', async () => {
  assert.ok(existsSync(app), `${app} is built`);
  const home = mkdtempSync(join(tmpdir(), 'orki-desktop-'));
  // HOME too: the autostart entry goes to $HOME/.config/autostart.
  const driverEnv = { ...process.env, HOME: home, XDG_DATA_HOME: join(home, 'data'), XDG_CONFIG_HOME: join(home, 'config'), XDG_CACHE_HOME: join(home, 'cache') };
  const entry = join(home, '.config', 'autostart', 'Orki Webhooks.desktop');
  const desktopJson = join(home, 'data', 'com.orki.webhooks', 'desktop.json');
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

      // This computer: start at login writes the autostart entry (hidden start)
      // and removes it; the close action is kept in desktop.json.
      const click = (sel) => run(`document.querySelector(${JSON.stringify(sel)}).click(); return true`);
      assert.equal(await run("return document.getElementById('start-at-login').checked"), false);
      assert.ok(!existsSync(entry), 'no autostart entry before it is switched on');
      await click('#start-at-login');
      await until('the autostart entry', () => existsSync(entry));
      const text = readFileSync(entry, 'utf8');
      assert.match(text, /^\[Desktop Entry\]/);
      assert.ok(text.split('\n').includes(`Exec=${realpathSync(app)} --hidden`), `a hidden start of this binary:\n${text}`);
      await click('#start-at-login');
      await until('the autostart entry to go', () => !existsSync(entry));
      assert.equal(await run("return document.getElementById('set-on-close').value"), 'background');
      await run("const s = document.getElementById('set-on-close'); s.value = 'quit'; s.dispatchEvent(new Event('change')); return true");
      await until('desktop.json to say quit', () => existsSync(desktopJson) && JSON.parse(readFileSync(desktopJson, 'utf8')).close_action === 'quit');
      await run("const s = document.getElementById('set-on-close'); s.value = 'background'; s.dispatchEvent(new Event('change')); return true");
      await until('desktop.json to say background', () => JSON.parse(readFileSync(desktopJson, 'utf8')).close_action === 'background');
      if (process.env.ORKI_SCREENSHOTS) {
        await run("location.hash = '#/webhooks'; return true");
        await until('webhooks page', () => run("return document.querySelector('.steps') ? 'yes' : ''"));
        const png = await wd('GET', `/session/${id}/screenshot`);
        writeFileSync(join(root, 'docs', 'screenshots', 'desktop-window.png'), Buffer.from(png, 'base64'));
        // The settings page with its "This computer" panel, in every look.
        const out = process.env.ORKI_SCREENSHOTS;
        for (const [w, hgt] of [[1280, 800], [800, 600]]) {
          await wd('POST', `/session/${id}/window/rect`, { width: w, height: hgt });
          for (const lang of ['en', 'ar']) {
            for (const theme of ['light', 'dark']) {
              // A fresh page in that look (the toasts of the steps above gone).
              await run(`localStorage.setItem('orki.lang', '${lang}'); localStorage.setItem('orki.theme', '${theme}'); location.hash = '#/settings'; window.orkiOldPage = true; location.reload(); return true`);
              await until('settings', () => run(`return !window.orkiOldPage && document.documentElement.lang === '${lang}' && document.body.dataset.ready === 'true' && document.getElementById('desktop-settings') ? 'yes' : ''`));
              // In view twice in a row: the reload's own scroll restoring comes late.
              let seen = 0;
              await until('the panel in view', async () => {
                const inView = await run("const p = document.getElementById('desktop-settings'); document.getElementById('set-on-close').focus(); p.scrollIntoView({ block: 'center' }); const r = p.getBoundingClientRect(); return document.readyState === 'complete' && r.top >= 0 && r.bottom <= innerHeight");
                seen = inView ? seen + 1 : 0;
                return seen >= 2;
              });
              const shot = await wd('GET', `/session/${id}/screenshot`);
              writeFileSync(join(out, `desktop-settings-${lang}-${theme}-${w}.png`), Buffer.from(shot, 'base64'));
            }
          }
        }
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
});
