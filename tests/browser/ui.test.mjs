// The admin UI in a real browser (Debian's Chromium) against the real
// orki-webhooksd, with real HTTPS receivers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeCerts, startReceiver, startDaemon, postEvent, admin, launch, shot } from './harness.mjs';

let certs, daemon, browser, page, good, failing;

before(async () => {
  certs = makeCerts();
  daemon = await startDaemon(certs, ['--retry-schedule', '100ms,100ms,100ms,100ms,100ms,100ms']);
  good = await startReceiver(certs);
  failing = await startReceiver(certs);
  browser = await launch();
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 }, locale: 'en-US' });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: daemon.base });
  page = await context.newPage();
  page.on('pageerror', (e) => { throw e; });
  await page.goto(daemon.adminUrl);
  await page.waitForSelector('body[data-ready="true"]');
});

after(async () => {
  await browser?.close();
  await daemon?.stop();
  await good?.close();
  await failing?.close();
});

async function addWebhook(receiver, { token = receiver.token, events = ['message.created'] } = {}) {
  await page.goto(`${daemon.base}/#/webhooks`);
  await page.locator('main').getByRole('button', { name: /Add webhook/ }).first().click();
  const dialog = page.locator('dialog[open]');
  await dialog.locator('#wh-url').fill(receiver.url);
  await dialog.locator('#wh-token').fill(token);
  for (const e of events) await dialog.getByLabel(e).check();
  await dialog.locator('#wh-save').click();
  return dialog;
}

test('the first run teaches the three steps', async () => {
  await page.goto(`${daemon.base}/#/webhooks`);
  await page.getByRole('heading', { name: 'Send your first webhook in three steps' }).waitFor();
  assert.equal(await page.locator('.steps li').count(), 3);
  await shot(page, 'first-run');
});

test('a plain http URL is refused inline before anything is sent', async () => {
  await page.goto(`${daemon.base}/#/webhooks`);
  await page.locator('main').getByRole('button', { name: /Add webhook/ }).first().click();
  const dialog = page.locator('dialog[open]');
  await dialog.locator('#wh-url').fill('http://crm.example.com/hooks');
  await dialog.locator('#wh-save').click();
  await dialog.getByText('Use an https:// address').waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
});

test('a failed handshake shows exactly which step failed', async () => {
  failing.mode.handshake = 404;
  const dialog = await addWebhook(failing);
  const status = dialog.locator('.form-status.bad');
  await status.waitFor();
  const text = await status.textContent();
  assert.match(text, /Verification failed at: status/);
  assert.match(text, /404/);
  await shot(page, 'handshake-failed');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  const list = await admin(daemon.base, 'GET', '/v1/webhooks');
  assert.equal(list.body.items.length, 0, 'nothing was saved');
  failing.mode.handshake = 'echo';
});

test('registering verifies the endpoint and lists the webhook', async () => {
  const dialog = await addWebhook(good, { events: ['message.created', 'chat.status_changed'] });
  await dialog.waitFor({ state: 'detached' });
  const card = page.locator('.card', { hasText: good.url });
  await card.waitFor();
  await card.getByText('No delivery yet').waitFor();
  assert.equal(await card.locator('.chip').count(), 2);
  await shot(page, 'webhooks');
});

test('a test event shows its result in place', async () => {
  const card = page.locator('.card', { hasText: good.url });
  await card.getByRole('button', { name: 'Send test event' }).click();
  await card.locator('.test-panel select').selectOption('meta.message');
  await card.locator('.test-panel').getByRole('button', { name: 'Send' }).click();
  const result = card.locator('.test-result.ok');
  await result.waitFor({ timeout: 7000 });
  assert.match(await result.textContent(), /Delivered: HTTP 200 in \d+ ms/);
  await good.waitFor(1);
  assert.equal(good.received[0].headers['x-orki-event'], 'meta.message');
  assert.ok(good.received[0].signatureOk);
});

test('the log filters narrow the attempts, and an attempt opens with what was sent', async () => {
  const bad = await addWebhook(failing);
  await bad.waitFor({ state: 'detached' });
  failing.mode.status = 500;
  await postEvent(daemon.base, 'message.created', { text: 'hello from the browser test' });
  await postEvent(daemon.base, 'chat.status_changed', { chat: { status: 'closed' } });
  await good.waitFor(3);
  await page.goto(`${daemon.base}/#/log`);
  const rows = page.locator('#attempt-rows tr');
  // 1 test + 2 good deliveries + the failing endpoint's attempts, arriving live.
  await page.waitForFunction(() => document.querySelectorAll('#attempt-rows tr.bad').length >= 2);
  await shot(page, 'delivery-log');
  const all = await rows.count();
  await page.selectOption('#f-outcome', 'success');
  // The test event and the two deliveries to the good endpoint, and nothing else.
  await page.waitForFunction(() => {
    const r = [...document.querySelectorAll('#attempt-rows tr')];
    return r.length === 3 && r.every((x) => x.classList.contains('ok'));
  });
  assert.ok(all > 3, `the unfiltered log had ${all} rows`);
  await page.selectOption('#f-type', 'chat.status_changed');
  await page.waitForFunction(() => document.querySelectorAll('#attempt-rows tr').length === 1);
  await page.selectOption('#f-range', 'hour');
  await page.waitForFunction(() => document.querySelectorAll('#attempt-rows tr').length === 1);

  await rows.first().click();
  const dialog = page.locator('dialog[open]');
  await dialog.getByText('Request sent').waitFor();
  const body = JSON.parse(await dialog.locator('#request-body').textContent());
  assert.deepEqual(body.data, { chat: { status: 'closed' } });
  await dialog.getByText('X-Hub-Signature-256').waitFor();
  await dialog.locator('#copy-curl').click();
  const curl = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(curl, /^curl -sS -X POST 'https:\/\/127\.0\.0\.1:\d+\/hooks\/orki'/);
  assert.match(curl, /X-Hub-Signature-256: sha256=[0-9a-f]{64}/);
  await shot(page, 'attempt-detail');

  // Redeliver: the same delivery arrives again.
  const before = good.received.length;
  const deliveryId = (await dialog.locator('.facts dd.mono').first().textContent()).trim();
  await dialog.locator('#redeliver').click();
  await good.waitFor(before + 1);
  assert.equal(good.received.at(-1).headers['x-orki-delivery'], deliveryId);
});

test('a failing webhook shows the warning', async () => {
  await page.goto(`${daemon.base}/#/webhooks`);
  const card = page.locator('.card', { hasText: failing.url });
  await card.locator('.banner.warn').waitFor({ timeout: 15000 });
  assert.match(await card.locator('.banner.warn').textContent(), /Deliveries are failing: \d+ in a row/);
  assert.equal(await card.evaluate((el) => el.classList.contains('warning')), true);
  await shot(page, 'warning');
});

test('settings show the ingest key and a ready curl example', async () => {
  await page.goto(`${daemon.base}/#/settings`);
  await page.locator('#ingest-key').waitFor();
  assert.equal(await page.locator('#ingest-key').inputValue(), 'ik_browser_ingest_key_0123456789');
  await page.getByText('curl -sS http://').waitFor();
  await page.fill('#set-threshold', '0');
  await page.click('#save-settings');
  await page.locator('.form-status.bad').waitFor();
  assert.match(await page.locator('.form-status.bad').textContent(), /warning_threshold/);
  await shot(page, 'settings');
});

test('Arabic turns the whole layout right to left', async () => {
  await page.goto(`${daemon.base}/#/settings`);
  await page.selectOption('#set-language', 'ar');
  await page.waitForFunction(() => document.documentElement.dir === 'rtl');
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'ar');
  await page.goto(`${daemon.base}/#/webhooks`);
  await page.getByRole('heading', { name: 'الويب هوكس' }).waitFor();
  const nav = await page.locator('.sidebar').boundingBox();
  const main = await page.locator('main').boundingBox();
  assert.ok(nav.x > main.x, 'the sidebar is on the right');
  await shot(page, 'arabic-rtl');
  await page.goto(`${daemon.base}/#/settings`);
  await page.selectOption('#set-language', 'en');
  await page.waitForFunction(() => document.documentElement.dir === 'ltr');
});
