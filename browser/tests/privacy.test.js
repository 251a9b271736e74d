// The privacy center in a real browser: consent switches and what they change, GPC, the
// export download, erasure with its certificate, the session's limits, forms without their
// token, and axe-core on every page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  api, axeViolations, dataDirHolds, launch, screenshot, sessionLink, startDemo, verifySigned,
} from './support.js';

let demo;
let browser;
let expiring;
let expiringSince;

before(async () => {
  demo = await startDemo();
  browser = await launch();
  // Checked in the last test, once it has lapsed.
  expiring = await sessionLink(demo, 'user-0002', 60);
  expiringSince = Date.now();
});

after(async () => {
  await browser?.close();
  demo?.stop();
});

const PROFILING = 'input[value="personalize.content.profiling"]';
const tier = (page) => page.locator('#recommendations').getAttribute('data-tier');

test('a person without consent turns personalization on, then off again', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(demo.links.none);
  assert.equal(new URL(page.url()).search, '', 'the token is dropped from the address bar');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'candor_session');
  assert.ok(session.httpOnly, 'HttpOnly');
  assert.equal(session.sameSite, 'Strict');
  for (const s of await page.locator('input[role=switch]').all()) {
    assert.equal(await s.isChecked(), false, 'every switch starts off');
  }
  assert.equal(await tier(page), 'contextual');
  await screenshot(page, 'privacy-center-no-consent');

  await page.check(PROFILING);
  await page.getByRole('button', { name: 'Save my choices' }).click();
  await page.locator('.flash details.receipt').waitFor();
  const receipt = JSON.parse(await page.locator('.flash details.receipt pre').textContent());
  assert.ok(receipt.consentReceiptId);
  await page.getByRole('button', { name: 'Verify this receipt' }).click();
  await page.getByText('This receipt is genuine').waitFor();

  // Now that the person allows it, the shop records what they look at.
  for (const item of ['item-00001', 'item-00002', 'item-00003', 'item-00004']) {
    const res = await api(demo, demo.key, 'POST', '/v1/events', { subject: 'user-0008', item, type: 'view' });
    assert.equal(res.status, 202, JSON.stringify(res.body));
  }
  await page.goto(`${demo.base}/privacy`);
  assert.equal(await tier(page), 'server');
  const why = await page.locator('#recommendations .why').first().textContent();
  assert.match(why, /Because you showed interest in: /);
  assert.doesNotMatch(why, /item-\d{5}/, 'explanations name titles, not ids');
  assert.match(why, /browsing history/);
  await screenshot(page, 'privacy-center-recommendations', '#recommendations');

  await page.uncheck(PROFILING);
  await page.getByRole('button', { name: 'Save my choices' }).click();
  await page.locator('.flash details.receipt').waitFor();
  await page.goto(`${demo.base}/privacy`);
  assert.equal(await tier(page), 'contextual', 'off again on the next load');
  // Both changes' receipts are listed, newest first, and each verifies.
  const listed = page.locator('#receipts ul.receipts > li');
  assert.equal(await listed.count(), 2);
  assert.match(await listed.first().locator('summary').textContent(), /off: /);
  await listed.nth(1).getByRole('button', { name: /^Verify receipt / }).click();
  await page.getByText('This receipt is genuine').waitFor();
  assert.deepEqual(await axeViolations(page), []);
  await context.close();
});

test('with JavaScript off, at 360 px, by keyboard alone', async () => {
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 360, height: 740 } });
  const page = await context.newPage();
  const link = await sessionLink(demo, 'user-0058');
  await page.goto(link.url);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 360, `no sideways scrolling at 360 px (${width} px)`);
  // Tab to the personalization switch, turn it on, tab on to the save button and press it.
  let reached = false;
  for (let i = 0; i < 60 && !reached; i += 1) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.value === 'personalize.content.profiling');
  }
  assert.ok(reached, 'the switch is reachable by Tab');
  await page.keyboard.press('Space');
  for (let i = 0; i < 60; i += 1) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement?.textContent === 'Save my choices')) break;
  }
  await page.keyboard.press('Enter');
  await page.locator('.flash details.receipt').waitFor();
  await screenshot(page, 'privacy-center-360px');
  await context.close();
});

test('a lapsed consent asks to be renewed; a purpose can be narrowed to some of its data', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  // user-0009 was imported with a consent given 400 days ago: it has lapsed.
  const lapsed = await sessionLink(demo, 'user-0009');
  await page.goto(lapsed.url);
  const profiling = page.locator('fieldset.purpose', { has: page.locator(PROFILING) });
  assert.match(await profiling.locator('.renew').textContent(), /has lapsed/);
  assert.equal(await page.locator(PROFILING).isChecked(), false);
  // Renew it, narrowed to browsing history only.
  await page.check(PROFILING);
  await profiling.locator('summary').click();
  await profiling.getByLabel('purchase history').uncheck();
  await page.getByRole('button', { name: 'Save my choices' }).click();
  await page.locator('.flash details.receipt').waitFor();
  const consent = await api(demo, demo.key, 'GET', '/v1/subjects/user-0009/consent');
  const states = Object.fromEntries(consent.body.purposes['personalize.content.profiling'].categories
    .map((c) => [c.category, c.state]));
  assert.deepEqual(states, {
    'user.behavior.browsing_history': 'granted',
    'user.behavior.purchase_history': 'withdrawn',
  });
  await page.goto(`${demo.base}/privacy`);
  assert.equal(await profiling.locator('.renew').count(), 0, 'renewed: no prompt');
  // With the switch on but no category ticked, nothing is granted.
  await profiling.locator('summary').click();
  await profiling.getByLabel('browsing history').uncheck();
  await page.getByRole('button', { name: 'Save my choices' }).click();
  await page.locator('.flash details.receipt').waitFor();
  const none = await api(demo, demo.key, 'GET', '/v1/subjects/user-0009/consent');
  assert.equal(none.body.purposes['personalize.content.profiling'].state, 'withdrawn');
  await context.close();
});

test('Global Privacy Control shows the notice and keeps sharing off', async () => {
  const context = await browser.newContext({ extraHTTPHeaders: { 'Sec-GPC': '1' } });
  await context.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true });
  });
  const page = await context.newPage();
  const link = await sessionLink(demo, 'user-0003');
  await page.goto(link.url);
  await page.getByText('Your browser sends a Global Privacy Control signal').waitFor();
  const sharing = page.locator('input[value="third_party_sharing"]');
  assert.equal(await sharing.isChecked(), false);
  assert.equal(await sharing.isDisabled(), true);
  await screenshot(page, 'privacy-center-gpc');
  await context.close();
});

test('download the data, then delete it with a confirmation and a certificate', async () => {
  const marker = 'browser-marker-7c41e9';
  const res = await api(demo, demo.key, 'POST', '/v1/events', {
    subject: 'user-0001', item: 'item-00005', type: 'view', context: { page: marker },
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  await page.goto(demo.links.consenting);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Download everything (JSON)' }).click(),
  ]);
  const exported = JSON.parse(readFileSync(await download.path(), 'utf8'));
  assert.equal(exported.schema, 'candor.export/1');
  assert.ok(exported.events.length > 1);
  assert.ok(exported.events.some((e) => e.context.page === marker));

  await page.getByRole('link', { name: 'See your events and delete any that are wrong' }).click();
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'privacy-events');
  const before = await page.locator('tbody tr').count();
  await page.locator('tbody tr button').first().click();
  await page.waitForURL('**/privacy/events');
  assert.equal(await page.locator('tbody tr').count(), before - 1, 'one event deleted');

  await page.goto(`${demo.base}/privacy/erase`);
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'privacy-erase-confirm');
  await page.check('#confirm');
  await page.getByRole('button', { name: 'Delete my data' }).click();
  await page.getByRole('heading', { name: 'Your data is deleted' }).waitFor();
  const certificate = JSON.parse(await page.locator('pre.certificate').textContent());
  assert.ok(await verifySigned(certificate), 'the certificate verifies with its key');
  const key = await api(demo, null, 'GET', '/v1/keys/receipts');
  assert.equal(certificate.public_key, key.body.public_key, 'signed by this server');
  assert.equal(await page.locator('form').count(), 0, 'the page shows the certificate and nothing else');
  await screenshot(page, 'privacy-erased');
  assert.equal(dataDirHolds(demo.dataDir, marker), false, 'no byte of the marker is left');
  // The erasure ended the session.
  await page.goto(`${demo.base}/privacy`);
  await page.getByRole('heading', { name: 'Your session has ended' }).waitFor();
  assert.deepEqual(await axeViolations(page), []);
  await context.close();
});

test('a session acts for its own person only, and forms need their token', async () => {
  const mine = await sessionLink(demo, 'user-0004');
  for (const [method, path] of [
    ['GET', '/v1/subjects/user-0005/consent'],
    ['GET', '/v1/requests'], ['GET', '/v1/audit/verify'], ['GET', '/v1/keys'],
    ['POST', '/v1/analytics/query'], ['POST', '/v1/models/train'], ['GET', '/metrics'],
  ]) {
    const res = await api(demo, mine.token, method, path);
    assert.equal(res.status, 403, `${method} ${path}`);
  }
  assert.equal((await api(demo, mine.token, 'GET', '/v1/subjects/user-0004/consent')).status, 200);

  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(mine.url);
  assert.deepEqual(await axeViolations(page), []);
  await page.evaluate(() => {
    document.querySelector('form[action="/privacy/consent"] input[name=form_token]').remove();
  });
  await page.check(PROFILING);
  await page.getByRole('button', { name: 'Save my choices' }).click();
  await page.getByRole('heading', { name: 'This form was refused' }).waitFor();
  assert.equal(await page.locator('[data-error-code]').getAttribute('data-error-code'), 'forbidden');
  // From another origin, even with the token and the cookie.
  const cookie = (await context.cookies()).find((c) => c.name === 'candor_session');
  const forged = await fetch(`${demo.base}/privacy/objection`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example',
      cookie: `candor_session=${cookie.value}` },
    body: 'form_token=anything',
  });
  assert.equal(forged.status, 403);
  await context.close();
});

test('an expired session is refused', async () => {
  const wait = 61_000 - (Date.now() - expiringSince);
  if (wait > 0) await new Promise((resolve) => { setTimeout(resolve, wait); });
  const res = await api(demo, expiring.token, 'GET', '/v1/subjects/user-0002/consent');
  assert.equal(res.status, 401);
  const context = await browser.newContext();
  const page = await context.newPage();
  const response = await page.goto(expiring.url);
  assert.equal(response.status(), 401);
  await context.close();
});
