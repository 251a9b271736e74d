// What the browser tests share: a `candor demo` on a fresh data directory (port 0, a small
// shop), Debian's chromium through playwright-core, the API over fetch, axe-core, and the
// byte check of the data directory.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/// The candor binary: CANDOR_BIN, else the workspace's debug build.
export const bin = process.env.CANDOR_BIN || join(here, '../../target/debug/candor');

/// Starts `candor demo` (with `env` added to a clean environment) and resolves once it
/// printed its links and admin key.
export async function startDemo(env = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'candor-browser-'));
  const child = spawn(bin, ['demo', '--data-dir', dataDir, '--listen', '127.0.0.1:0',
    '--subjects', '60', '--items', '150'], {
    env: { ...cleanEnv(), RUST_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const demo = { child, dataDir, links: {} };
  const lines = createInterface({ input: child.stdout });
  await new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`candor demo exited with ${code}`)));
    lines.on('line', (line) => {
      const listening = line.match(/^listening on (\S+)/);
      if (listening) demo.base = listening[1];
      const link = line.match(/^ {2}(a consenting person|a person without consent): (\S+)$/);
      if (link) demo.links[link[1] === 'a consenting person' ? 'consenting' : 'none'] = link[2];
      const key = line.match(/^admin key: (\S+)$/);
      if (key) { demo.key = key[1]; resolve(); }
    });
  });
  demo.stop = () => {
    child.removeAllListeners('exit');
    child.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  };
  return demo;
}

function cleanEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CANDOR_')));
}

/// One API call with a bearer token; resolves to { status, body } (body parsed when JSON).
export async function api(demo, token, method, path, body, headers = {}) {
  const res = await fetch(demo.base + path, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    redirect: 'manual',
  });
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

/// A fresh privacy-center session link for a subject, opened with the admin key.
export async function sessionLink(demo, subject, ttlSeconds) {
  const body = ttlSeconds ? { ttl_seconds: ttlSeconds } : {};
  const res = await api(demo, demo.key, 'POST', `/v1/subjects/${subject}/sessions`, body);
  if (res.status !== 201) throw new Error(`session: ${res.status} ${JSON.stringify(res.body)}`);
  return { url: demo.base + res.body.link, token: res.body.token };
}

/// Debian's chromium, headless.
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/// axe-core's serious and critical violations on the page.
export async function axeViolations(page) {
  // Evaluated through the devtools protocol, which the page's own CSP does not govern.
  await page.evaluate(readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
  const results = await page.evaluate(async () => await window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
  }));
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join('; ')})`);
}

/// Whether any file under `dir` holds `needle` (as bytes): the byte check of erasure.
export function dataDirHolds(dir, needle) {
  const bytes = Buffer.from(needle);
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (dataDirHolds(path, needle)) return true;
    } else if (readFileSync(path).includes(bytes)) {
      return true;
    }
  }
  return false;
}

/// Checks an Ed25519-signed document (signature over its JSON with `signature` empty).
export async function verifySigned(document) {
  const { verify, createPublicKey } = await import('node:crypto');
  const unsigned = { ...document, signature: '' };
  const key = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(document.public_key, 'hex').toString('base64url') },
    format: 'jwk',
  });
  return verify(null, Buffer.from(JSON.stringify(unsigned)), key, Buffer.from(document.signature, 'hex'));
}

/// Saves a screenshot of the page (or of one element of it) into docs/screenshots when
/// SCREENSHOTS=1.
export async function screenshot(page, name, selector) {
  if (process.env.SCREENSHOTS !== '1') return;
  const path = join(here, '../../docs/screenshots', `${name}.png`);
  if (selector) await page.locator(selector).screenshot({ path });
  else await page.screenshot({ path });
}
