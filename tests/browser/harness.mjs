// Test support for the browser tests: certificates made here with openssl, HTTPS
// receivers on 127.0.0.1, the real orki-webhooksd, and Debian's Chromium.
import { execFileSync, spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..');
export const ADMIN = 'at_browser_admin_token_0123456789';
export const INGEST = 'ik_browser_ingest_key_0123456789';

/** A CA and a server certificate for 127.0.0.1/localhost, made with openssl. */
export function makeCerts() {
  const dir = mkdtempSync(join(tmpdir(), 'orki-certs-'));
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key',
    '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Orki Browser Test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key',
    '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf');
  return { dir, ca: join(dir, 'ca.pem'), cert: readFileSync(join(dir, 'server.pem')), key: readFileSync(join(dir, 'server.key')) };
}

/** An HTTPS webhook receiver; `mode` tells it how to answer. */
export async function startReceiver(certs) {
  const token = 'vt_' + randomBytes(12).toString('hex');
  const mode = { handshake: 'echo', status: 200, failNext: 0 };
  const received = [];
  const waiters = [];
  const server = https.createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
    const url = new URL(req.url, 'https://127.0.0.1');
    if (req.method === 'GET') {
      const ok = url.searchParams.get('hub.verify_token') === token;
      if (mode.handshake === 'echo' && ok) { res.writeHead(200); res.end(url.searchParams.get('hub.challenge')); }
      else { res.writeHead(typeof mode.handshake === 'number' ? mode.handshake : 403); res.end('no'); }
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const expected = 'sha256=' + createHmac('sha256', token).update(body).digest('hex');
      const status = mode.failNext > 0 ? (mode.failNext--, 500) : mode.status;
      const item = { headers: req.headers, body: body.toString(), status, signatureOk: req.headers['x-hub-signature-256'] === expected };
      received.push(item);
      waiters.splice(0).forEach((w) => w());
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ received: true }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    url: `https://127.0.0.1:${port}/hooks/orki`,
    token,
    mode,
    received,
    /** Resolves when `received.length >= n` (or rejects after `ms`). */
    async waitFor(n, ms = 15000) {
      const deadline = Date.now() + ms;
      while (received.length < n) {
        if (Date.now() > deadline) throw new Error(`receiver got ${received.length} of ${n}`);
        await new Promise((r) => { waiters.push(r); setTimeout(r, 500); });
      }
      return received;
    },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

export function binary() {
  const bin = process.env.ORKI_WEBHOOKSD || join(root, 'target', 'debug', 'orki-webhooksd');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build it with cargo build -p orki-engine`);
  return bin;
}

/** Starts `orki-webhooksd serve` on port 0 and waits for its address. */
export async function startDaemon(certs, extra = []) {
  const dataDir = mkdtempSync(join(tmpdir(), 'orki-data-'));
  const child = spawn(binary(), ['serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--ca-file', certs.ca, ...extra], {
    env: { ...process.env, ORKI_ADMIN_TOKEN: ADMIN, ORKI_INGEST_KEY: INGEST, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('orki-webhooksd did not start')), 30000);
    lines.on('line', (line) => {
      const m = line.match(/listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => reject(new Error(`orki-webhooksd exited with ${code}`)));
  });
  return {
    base,
    dataDir,
    adminUrl: `${base}/#token=${ADMIN}`,
    stop: () => new Promise((r) => {
      if (child.exitCode !== null || child.signalCode !== null) { r(); return; }
      child.on('exit', r);
      child.kill('SIGTERM');
    }),
  };
}

export async function postEvent(base, type, data, extra = {}) {
  const r = await fetch(`${base}/v1/events`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${INGEST}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ type, data, ...extra }),
  });
  if (r.status !== 202) throw new Error(`ingest answered ${r.status}: ${await r.text()}`);
  return r.json();
}

export async function admin(base, method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: r.status === 204 ? null : await r.json() };
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** Saves a screenshot into docs/screenshots when ORKI_SCREENSHOTS is set. */
export async function shot(page, name) {
  if (!process.env.ORKI_SCREENSHOTS) return;
  await page.screenshot({ path: join(root, 'docs', 'screenshots', `${name}.png`) });
}
