// The consent banner on a shop's own page (another origin): equal first-layer choices, what
// each records, GPC, that it does not come back once answered, that it talks to no one but
// Candor and sets no cookie, and axe-core on the page with the banner open.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { api, axeViolations, launch, screenshot, sessionLink, startDemo } from './support.js';

let demo;
let browser;
let shop;
let shopOrigin;

before(async () => {
  // The shop's page: its own origin (localhost), embedding the banner from Candor (127.0.0.1).
  shop = createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const session = url.searchParams.get('session') || '';
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Example Shop</title>
      <meta name="viewport" content="width=device-width, initial-scale=1"></head>
      <body><main><h1>Example Shop</h1><p>Welcome back.</p></main>
      <script src="${demo.base}/assets/v1/consent.js" data-session="${session}" defer></script></body></html>`);
  });
  await new Promise((resolve) => { shop.listen(0, '127.0.0.1', resolve); });
  shopOrigin = `http://localhost:${shop.address().port}`;
  demo = await startDemo({ CANDOR__SERVER__ALLOWED_ORIGINS: `["${shopOrigin}"]` });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  demo?.stop();
  shop?.close();
});

const banner = (page) => page.locator('#candor-consent .banner');

async function shopPage(context, subject) {
  const link = await sessionLink(demo, subject);
  const page = await context.newPage();
  const foreign = [];
  page.on('request', (r) => {
    const origin = new URL(r.url()).origin;
    if (origin !== shopOrigin && origin !== demo.base) foreign.push(r.url());
  });
  const url = `${shopOrigin}/?session=${encodeURIComponent(link.token)}`;
  await page.goto(url);
  return { page, url, foreign };
}

async function granted(subject) {
  const res = await api(demo, demo.key, 'GET', `/v1/subjects/${subject}/consent`);
  return Object.entries(res.body.purposes).filter(([, c]) => c.state === 'granted').map(([p]) => p);
}

test('Reject all records no grant, and the banner does not come back', async () => {
  const context = await browser.newContext();
  const { page, url, foreign } = await shopPage(context, 'user-0018');
  await banner(page).waitFor();
  const buttons = banner(page).locator('.actions button');
  assert.deepEqual(await buttons.allTextContents(), ['Accept all', 'Reject all', 'Choose']);
  const sizes = await buttons.evaluateAll((bs) => bs.map((b) => {
    const s = getComputedStyle(b);
    return [Math.round(b.getBoundingClientRect().height), s.backgroundColor, s.fontSize].join(' ');
  }));
  assert.equal(new Set(sizes).size, 1, `equal prominence: ${sizes}`);
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'consent-banner');
  await banner(page).getByRole('button', { name: 'Reject all' }).click();
  await banner(page).waitFor({ state: 'detached' });
  assert.deepEqual(await granted('user-0018'), []);
  const consent = await api(demo, demo.key, 'GET', '/v1/subjects/user-0018/consent');
  const methods = Object.values(consent.body.purposes).flatMap((p) => p.categories.map((c) => c.method));
  assert.ok(methods.every((m) => m === 'banner'), `recorded as banner: ${methods}`);
  await page.goto(url);
  await page.waitForLoadState('networkidle');
  assert.equal(await banner(page).count(), 0, 'answered: not shown again');
  assert.deepEqual(foreign, [], 'no third-party requests');
  assert.deepEqual(await context.cookies(), [], 'no cookies');
  await context.close();
});

test('Accept all records every purpose; Choose records only the switches turned on', async () => {
  const context = await browser.newContext();
  const { page, url } = await shopPage(context, 'user-0028');
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  await banner(page).waitFor({ state: 'detached' });
  const policy = await api(demo, null, 'GET', '/v1/policy');
  const all = Object.values(policy.body.purposes).filter((p) => p.legal_basis === 'consent').map((p) => p.name).sort();
  assert.deepEqual((await granted('user-0028')).sort(), all);
  await page.goto(url);
  await page.waitForLoadState('networkidle');
  assert.equal(await banner(page).count(), 0);

  const chooser = await shopPage(context, 'user-0038');
  await banner(chooser.page).getByRole('button', { name: 'Choose' }).click();
  const profiling = banner(chooser.page).getByRole('switch', { name: /Recommend items/ });
  await profiling.check();
  await screenshot(chooser.page, 'consent-banner-choose');
  await banner(chooser.page).getByRole('button', { name: 'Save my choices' }).click();
  await banner(chooser.page).waitFor({ state: 'detached' });
  assert.deepEqual(await granted('user-0038'), ['personalize.content.profiling']);
  await context.close();
});

test('with Global Privacy Control, Accept all still leaves sale and sharing off', async () => {
  const context = await browser.newContext({ extraHTTPHeaders: { 'Sec-GPC': '1' } });
  await context.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true });
  });
  const { page } = await shopPage(context, 'user-0048');
  await banner(page).getByText('Your browser sends Global Privacy Control').waitFor();
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  await banner(page).waitFor({ state: 'detached' });
  const on = await granted('user-0048');
  assert.ok(on.includes('personalize.content.profiling'));
  assert.ok(!on.includes('third_party_sharing'));
  assert.ok(!on.includes('marketing.advertising.third_party.targeted'));
  await context.close();
});
