// The admin UI in a real browser (Debian's Chromium) against the real
// orki-webhooksd, with real HTTPS receivers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeCerts, startReceiver, startDaemon, postEvent, admin, launch, shot, ADMIN } from './harness.mjs';

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
  assert.doesNotMatch(await result.textContent(), /null/, 'a missing part shown as "null"');
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

test('a page subscribes to engine events once, however often it redraws', async () => {
  const listeners = () => page.evaluate(() => window.__orkiListeners);
  await page.goto(`${daemon.base}/#/webhooks`);
  const card = page.locator('.card', { hasText: good.url });
  await card.waitFor();
  assert.equal(await listeners(), 1);
  // Each toggle saves and redraws the list; before, each redraw subscribed again.
  for (let i = 0; i < 4; i++) {
    const enabled = await card.getByRole('switch').isChecked();
    await page.evaluate(() => { document.querySelector('#webhook-list').dataset.stale = 'true'; });
    await card.locator('label.switch').click();
    await page.waitForFunction(() => {
      const list = document.querySelector('#webhook-list');
      return list && !list.dataset.stale;
    });
    assert.equal(await card.getByRole('switch').isChecked(), !enabled);
  }
  assert.equal(await listeners(), 1);
  // Live updates still arrive, once: the card shows the new attempt.
  const id = await card.getAttribute('data-id');
  await card.evaluate((el) => { el.dataset.stale = 'true'; });
  const before = good.received.length;
  await postEvent(daemon.base, 'message.created', { text: 'after the toggles' });
  await good.waitFor(before + 1);
  await page.waitForFunction((id) => {
    const el = document.querySelector(`.card[data-id="${id}"]`);
    return el && !el.dataset.stale;
  }, id);
  assert.equal(await listeners(), 1);
  // Leaving the page unsubscribes it; the log page has its one listener.
  await page.goto(`${daemon.base}/#/log`);
  await page.locator('#attempt-rows tr').first().waitFor();
  assert.equal(await listeners(), 1);
  await page.goto(`${daemon.base}/#/settings`);
  await page.locator('#ingest-key').waitFor();
  assert.equal(await listeners(), 0);
  await page.goto(`${daemon.base}/#/webhooks`);
  await card.waitFor();
  assert.equal(await listeners(), 1);
});

test('an error is shown by its code in the chosen language, not by the server wording', async () => {
  const server = await admin(daemon.base, 'PATCH', '/v1/settings', { warning_threshold: 0 });
  assert.equal(server.status, 400);
  assert.equal(server.body.error.code, 'invalid_setting');
  const english = 'A setting has a value that cannot be used; nothing was saved.';
  assert.notEqual(server.body.error.message, english);

  await page.goto(`${daemon.base}/#/settings`);
  await page.locator('#set-threshold').waitFor();
  const status = page.locator('.form-status.bad');
  const save = async () => {
    await page.fill('#set-threshold', '0');
    await page.click('#save-settings');
    await status.waitFor();
  };
  await save();
  assert.equal(await status.locator('.error-summary').textContent(), english);
  // The server's own words stay as the detail: they name the field.
  assert.equal(await status.locator('.error-detail').textContent(), server.body.error.message);

  // A known code is translated whatever the message says; an unknown one shows the message.
  const answer = (error) => page.route('**/v1/settings', (route) => (route.request().method() === 'PATCH'
    ? route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error }) })
    : route.continue()));
  await answer({ code: 'storage_unavailable', message: 'the disk fell off' });
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await save();
  assert.equal(await status.locator('.error-summary').textContent(), 'The database is unavailable; nothing was stored. Try again.');
  assert.equal(await status.locator('.error-detail').count(), 0);
  await page.unroute('**/v1/settings');
  await answer({ code: 'brand_new_code', message: 'a failure this UI does not know' });
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await save();
  assert.equal(await status.textContent(), 'a failure this UI does not know');
  await page.unroute('**/v1/settings');

  // In Arabic, the real server error gets the Arabic text.
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await page.selectOption('#set-language', 'ar');
  await page.getByRole('heading', { name: 'الإعدادات' }).waitFor();
  await save();
  assert.equal(await status.locator('.error-summary').textContent(), 'أحد الإعدادات له قيمة لا يمكن استخدامها؛ لم يُحفظ شيء.');
  await page.selectOption('#set-language', 'en');
  await page.waitForFunction(() => document.documentElement.dir === 'ltr');
});

test('a failed handshake names its step in Arabic too', async () => {
  await page.goto(`${daemon.base}/#/settings`);
  await page.selectOption('#set-language', 'ar');
  await page.getByRole('heading', { name: 'الإعدادات' }).waitFor();
  failing.mode.handshake = 404;
  await page.goto(`${daemon.base}/#/webhooks`);
  await page.locator('#add-webhook').click();
  const dialog = page.locator('dialog[open]');
  await dialog.locator('#wh-url').fill(failing.url.replace('/hooks/orki', '/hooks/other'));
  await dialog.locator('#wh-token').fill(failing.token);
  await dialog.locator('input[value="message.created"]').check();
  await dialog.locator('#wh-save').click();
  const status = dialog.locator('.form-status.bad');
  await status.waitFor();
  assert.equal(await status.locator('.error-summary').textContent(), 'فشل التحقق عند: الحالة (لم تُجب نقطة الاستقبال بـ 2xx).');
  assert.match(await status.locator('.error-detail').textContent(), /404/);
  await dialog.locator('.actions button.secondary').click();
  failing.mode.handshake = 'echo';
  await page.goto(`${daemon.base}/#/settings`);
  await page.selectOption('#set-language', 'en');
  await page.waitForFunction(() => document.documentElement.dir === 'ltr');
});

test('delivery controls: headers, Standard Webhooks with rotation, pause that keeps, resume', async () => {
  const ctl = await startReceiver(certs);
  try {
    const dialog = await addWebhook(ctl);
    await dialog.waitFor({ state: 'detached' });
    const cardOf = () => page.locator('.card', { hasText: ctl.url });
    await cardOf().waitFor();
    // Edit: a header and Standard Webhooks signatures.
    await cardOf().getByRole('button', { name: 'Edit' }).click();
    const form = page.locator('dialog[open]');
    await form.locator('summary').click();
    await form.locator('#wh-headers').fill('Authorization: Basic b3JraQ==\nBad line');
    await form.locator('#wh-save').click();
    await form.locator('#wh-headers-error').getByText('Line 2').waitFor();
    await form.locator('#wh-headers').fill('Host: nope');
    await form.locator('#wh-save').click();
    await form.locator('#wh-headers-error').getByText(/Host/).waitFor();
    await form.locator('#wh-headers').fill('Authorization: Basic b3JraQ==');
    await form.locator('#wh-signature').selectOption('standard');
    await form.locator('#wh-rate').fill('50');
    await shot(page, 'controls-form-en');
    await form.locator('#wh-save').click();
    // The new secret is shown once, in full.
    const secret = await page.locator('#new-secret').textContent();
    assert.match(secret, /^whsec_/);
    await page.keyboard.press('Enter');
    await page.locator('#new-secret').waitFor({ state: 'detached' });

    // Rotation from the edit form: masked until revealed, then the notice.
    await cardOf().getByRole('button', { name: 'Edit' }).click();
    const again = page.locator('dialog[open]');
    assert.equal(await again.locator('#wh-secret').textContent(), '••••••••');
    await again.locator('#wh-reveal').click();
    assert.equal(await again.locator('#wh-secret').textContent(), secret);
    await again.locator('#wh-rotate').click();
    await page.locator('dialog[open] .actions .primary', { hasText: 'Rotate secret' }).click();
    await again.locator('#wh-rotation').getByText('Both signatures are sent until', { exact: false }).waitFor();
    assert.notEqual(await again.locator('#wh-secret').textContent(), secret);
    await shot(page, 'controls-rotation-en');
    await again.getByRole('button', { name: 'Cancel' }).click();

    // Pause from the card, by keyboard; an event is held, and counted.
    const pause = cardOf().getByRole('button', { name: `Pause ${new URL(ctl.url).host}` });
    await pause.focus();
    await page.keyboard.press('Enter');
    await cardOf().locator('.badge.paused').waitFor();
    const before = ctl.received.length;
    await postEvent(daemon.base, 'message.created', { text: 'kept while paused' });
    await page.reload();
    await page.waitForSelector('body[data-ready="true"]');
    await cardOf().locator('.badge.paused', { hasText: '1 held' }).waitFor();
    assert.equal(ctl.received.length, before, 'sent while paused');
    await shot(page, 'controls-paused-en');

    // Disabling would cancel it: the dialog says so and starts on "Pause instead".
    await cardOf().getByRole('switch').click();
    const ask = page.locator('dialog[open]');
    await ask.getByText('Disabling cancels the 1 deliveries').waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.id), 'pause-instead');
    await page.keyboard.press('Escape');
    assert.equal(await cardOf().getByRole('switch').isChecked(), true);

    // Arabic: the paused card.
    await page.goto(`${daemon.base}/#/settings`);
    await page.selectOption('#set-language', 'ar');
    await page.goto(`${daemon.base}/#/webhooks`);
    await cardOf().getByText('موقوف مؤقتًا بواسطتك', { exact: false }).waitFor();
    await shot(page, 'controls-paused-ar');
    await cardOf().getByRole('button', { name: 'تعديل' }).click();
    const arForm = page.locator('dialog[open]');
    // Open by itself: the webhook has delivery options set.
    await arForm.locator('#wh-reveal').waitFor();
    await arForm.locator('details.controls').scrollIntoViewIfNeeded();
    await shot(page, 'controls-form-ar');
    await page.keyboard.press('Escape');
    await page.goto(`${daemon.base}/#/settings`);
    await page.selectOption('#set-language', 'en');
    await page.waitForFunction(() => document.documentElement.dir === 'ltr');

    // Resume: the held delivery goes out, with the header.
    await page.goto(`${daemon.base}/#/webhooks`);
    await cardOf().getByRole('button', { name: `Resume ${new URL(ctl.url).host}` }).click();
    const got = await ctl.waitFor(before + 1);
    const last = got[got.length - 1];
    assert.equal(last.headers.authorization, 'Basic b3JraQ==');
    assert.ok(last.headers['webhook-signature'].startsWith('v1,'));
    assert.match(last.body, /kept while paused/);
    // The list shows the header's value masked.
    const listed = await admin(daemon.base, 'GET', '/v1/webhooks');
    const row = listed.body.items.find((w) => w.url === ctl.url);
    assert.equal(row.headers.Authorization, '••••');
  } finally {
    await ctl.close();
  }
});

test('ordered delivery: the held keys are shown, and a stuck delivery is skipped by keyboard', async () => {
  // Its own daemon, retrying only after an hour: a failed first delivery stays stuck.
  const slow = await startDaemon(certs, ['--retry-schedule', '1h']);
  const rx = await startReceiver(certs);
  try {
    rx.mode.status = 503;
    const made = await admin(slow.base, 'POST', '/v1/webhooks',
      { url: rx.url, verify_token: rx.token, events: ['message.created'], ordered: true });
    assert.equal(made.status, 201);
    for (const seq of [0, 1, 2]) {
      await postEvent(slow.base, 'message.created', { seq }, { ordering_key: 'chat-42' });
    }
    await rx.waitFor(1);
    await page.goto(slow.adminUrl);
    await page.waitForSelector('body[data-ready="true"]');
    const card = page.locator('.card', { hasText: rx.url });
    await card.getByText('In order per key').waitFor();
    const open = card.getByRole('button', { name: `Held deliveries of ${new URL(rx.url).host}` });
    await open.focus();
    await page.keyboard.press('Enter');
    const dialog = page.locator('dialog[open]');
    const row = dialog.locator('table.held tbody tr');
    await row.getByText('chat-42').waitFor();
    assert.equal(await row.locator('td').nth(4).textContent(), '2');
    await dialog.getByText('2 deliveries wait behind an earlier delivery').waitFor();
    await shot(page, 'controls-held-en');

    // Skip it, by keyboard: the confirmation starts on its action.
    rx.mode.status = 200;
    await row.getByRole('button', { name: 'Skip the stuck delivery of chat-42' }).focus();
    await page.keyboard.press('Enter');
    await page.locator('dialog[open]', { hasText: 'Skip this delivery?' }).waitFor();
    await page.keyboard.press('Enter');
    await dialog.getByText('No key is held back').waitFor();
    const got = await rx.waitFor(3);
    const seqs = got.filter((r) => r.status === 200).map((r) => JSON.parse(r.body).data.seq);
    assert.deepEqual(seqs, [1, 2], 'the next ones, in order');
    await page.keyboard.press('Escape');

    // The form keeps the choice; and the held view in Arabic.
    await card.getByRole('button', { name: 'Edit' }).click();
    assert.equal(await page.locator('dialog[open] #wh-ordered').isChecked(), true);
    await page.keyboard.press('Escape');
    rx.mode.status = 503;
    await postEvent(slow.base, 'message.created', { seq: 3 }, { ordering_key: 'chat-42' });
    await postEvent(slow.base, 'message.created', { seq: 4 }, { ordering_key: 'chat-42' });
    await rx.waitFor(4);
    await page.goto(`${slow.base}/#/settings`);
    await page.selectOption('#set-language', 'ar');
    await page.goto(`${slow.base}/#/webhooks`);
    await card.getByText('بالترتيب لكل مفتاح').waitFor();
    await card.locator('button[data-action="held"]').click();
    await page.locator('dialog[open] table.held').getByText('chat-42').waitFor();
    await page.locator('.toast').first().waitFor({ state: 'detached' });
    await page.setViewportSize({ width: 800, height: 600 });
    await shot(page, 'controls-held-800-ar');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot(page, 'controls-held-800-ar-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1280, height: 820 });
    await shot(page, 'controls-held-ar');
    await page.keyboard.press('Escape');
  } finally {
    await rx.close();
    await slow.stop();
  }
});

test('live state: the cards follow steady traffic, and a stopped server is said to be unreachable', async () => {
  const own = await startDaemon(certs, ['--retry-schedule', '1h']);
  const rx = await startReceiver(certs);
  let posting = null;
  try {
    rx.mode.status = 500;
    const made = await admin(own.base, 'POST', '/v1/webhooks', { url: rx.url, verify_token: rx.token, events: ['message.created'] });
    assert.equal(made.status, 201);
    await page.goto(own.adminUrl);
    await page.waitForSelector('body[data-ready="true"]');
    const card = page.locator('.card', { hasText: rx.url });
    await card.getByText('Healthy').waitFor();
    // About 30 events a second, each a failed attempt: the card shows the
    // failures while the traffic goes on, not only after it stops.
    posting = setInterval(() => { postEvent(own.base, 'message.created', { n: 1 }).catch(() => {}); }, 33);
    await card.getByText(/Failing/).waitFor({ timeout: 5000 });
    clearInterval(posting);
    posting = null;
    await own.stop();
    await page.locator('#listener').getByText('Not reachable').waitFor({ timeout: 10000 });
    assert.equal(await page.locator('#listener .dot.bad').count(), 1);
  } finally {
    if (posting) clearInterval(posting);
    await rx.close();
    await own.stop().catch(() => {});
  }
});

test('a wrong admin token says what to do, and a pasted one opens the app', async () => {
  await page.goto(`${daemon.base}/#token=at_not_the_right_one`);
  await page.reload();
  await page.locator('#token-why').getByText('This admin token was refused').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'token-input');
  await shot(page, 'token-refused');
  await page.keyboard.type(ADMIN);
  await page.keyboard.press('Enter');
  await page.waitForSelector('body[data-ready="true"] .page-head');
  await page.getByRole('heading', { name: 'Webhooks' }).waitFor();
});
