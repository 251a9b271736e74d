// The operator console in a real browser: sign-in with a key, the request queue with overdue
// requests first, a DP query that lowers the budget meter by its stated cost, the audit check,
// the model page, keys, what an analyst may not see, forms without their token, and axe-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, axeViolations, launch, screenshot, startDemo } from './support.js';

let demo;
let browser;

before(async () => {
  demo = await startDemo();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  demo?.stop();
});

async function mint(role) {
  const res = await api(demo, demo.key, 'POST', '/v1/keys', { role, label: `browser ${role}` });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.key;
}

async function signIn(key) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${demo.base}/console`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  const cookie = (await context.cookies()).find((c) => c.name === 'candor_console');
  assert.ok(cookie.httpOnly && cookie.sameSite === 'Strict');
  assert.ok(!page.url().includes(key), 'the key never reaches a URL');
  return { context, page };
}

test('admin: overview, model with its Lorenz curve, keys minted and revoked', async () => {
  const { context, page } = await signIn(demo.key);
  assert.match(await page.locator('main').textContent(), /Subjects with a live grant/);
  const decided = page.locator('table.decisions tbody tr');
  assert.ok(await decided.count() > 0, 'consent decisions over time');
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'console-overview');
  await page.getByRole('link', { name: 'Model' }).click();
  await page.getByRole('img', { name: 'Lorenz curve of item exposure' }).waitFor();
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'console-model');
  await page.getByRole('button', { name: 'Retrain now' }).click();
  await page.getByText(/Trained version \d+/).waitFor();

  await page.getByRole('link', { name: 'Keys' }).click();
  await screenshot(page, 'console-keys');
  await page.getByLabel('Role').selectOption('service');
  await page.getByLabel('Label').fill('from the console');
  await page.getByRole('button', { name: 'Mint a key' }).click();
  const minted = await page.locator('code.new-key').textContent();
  assert.equal((await api(demo, minted, 'GET', '/v1/items?limit=1')).status, 200);
  const id = minted.split('_')[1];
  assert.deepEqual(await axeViolations(page), []);
  await page.getByRole('button', { name: `Revoke key ${id}` }).click();
  await page.waitForURL('**/console/keys');
  assert.equal((await api(demo, minted, 'GET', '/v1/items?limit=1')).status, 401);
  await context.close();
});

test('dpo: overdue requests first, the audit chain intact', async () => {
  const old = new Date(Date.now() - 40 * 86_400_000).toISOString();
  const late = await api(demo, demo.key, 'POST', '/v1/requests',
    { kind: 'access', subject: 'user-0003', jurisdiction: 'gdpr', received_at: old });
  assert.equal(late.status, 201, JSON.stringify(late.body));
  const fresh = await api(demo, demo.key, 'POST', '/v1/requests',
    { kind: 'erasure', subject: 'user-0004', jurisdiction: 'ccpa' });
  assert.equal(fresh.status, 201);
  const { context, page } = await signIn(await mint('dpo'));
  await page.getByRole('link', { name: 'Rights requests' }).click();
  const first = page.locator('table.queue tbody tr').first();
  assert.equal(await first.getAttribute('class'), 'overdue');
  assert.match(await first.textContent(), new RegExp(late.body.id));
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'console-requests');
  await first.getByRole('button', { name: 'Acknowledge' }).click();
  await page.getByText('Acknowledged.').waitFor();

  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByRole('button', { name: 'Verify the chain' }).click();
  await page.getByText(/The chain is intact/).waitFor();
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'console-audit');
  await context.close();
});

test('analyst: a DP query lowers the meter by its cost; no per-subject page', async () => {
  const { context, page } = await signIn(await mint('analyst'));
  assert.equal(await page.getByRole('link', { name: 'Rights requests' }).count(), 0);
  assert.doesNotMatch(await page.locator('main').textContent(), /Subjects with a live grant/);
  for (const path of ['/console/requests', '/console/audit', '/console/keys']) {
    const response = await page.goto(`${demo.base}${path}`);
    assert.equal(response.status(), 403, path);
  }
  await page.goto(`${demo.base}/console`);
  await page.getByRole('button', { name: 'Count with differential privacy' }).click();
  const counted = page.locator('.flash table tbody tr');
  assert.equal(await counted.count(), 5, 'one noisy row per purpose');
  assert.match(await page.locator('.flash').textContent(), /95% interval/);
  await page.goto(`${demo.base}/console/analytics`);
  const before = Number(await page.locator('#budget').getAttribute('data-spent-rho'));
  await page.getByLabel('Kind').selectOption('top_k');
  await page.getByLabel('ε').fill('0.5');
  await page.getByRole('button', { name: 'Ask' }).click();
  const cost = Number(await page.locator('.flash .cost-rho').textContent());
  const after = Number(await page.locator('#budget').getAttribute('data-spent-rho'));
  assert.ok(cost > 0);
  assert.ok(Math.abs(after - before - cost) < 1e-5, `meter ${before} -> ${after}, cost ${cost}`);
  assert.ok(await page.locator('.flash table tbody tr').count() > 0, 'the answer has rows');
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'console-analytics');

  // A form without its token is refused.
  await page.evaluate(() => document.querySelector('form.query input[name=form_token]').remove());
  await page.getByRole('button', { name: 'Ask' }).click();
  await page.getByRole('heading', { name: 'This form was refused' }).waitFor();
  await context.close();
});

test('a wrong key does not sign in', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${demo.base}/console`);
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'console-sign-in');
  await page.getByLabel('API key').fill('cnd_000000000000000000000000_wrong');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('That key is unknown, revoked or expired.').waitFor();
  assert.deepEqual(await context.cookies(), []);
  await context.close();
});
