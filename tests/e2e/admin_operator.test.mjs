// The admin console's operator pages in a real browser, against the real server.
//
// Set up through the API: a tariff, two accounts, and an initial order of one seat by the first
// account (its invoice unpaid). The operator signs in to the console with the operator token
// (only an expiring operator session is kept in the tab), finds the account with the unpaid
// invoice by searching, registers the bank transfer with its reference, and sees the license
// turn active and the grant on time — and the account admin's lots API says the lot is active.
// A suspension is set and lifted. With two people in a licensed meeting, the node page shows the
// meeting (account, participants) and the forwarded traffic. A tariff is created and archived and
// a promotion created through their forms. A provider termination shows, before confirming, the
// refund the rules give — computed here from the spec's formula: paid × unexpired days / lot days,
// rounded half up once at the end — and that refund is what the account is then owed. Signing
// out revokes the operator session on the server.
//
// Screenshots: artifacts/admin-operator-<page>.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ARTIFACTS, joinAs, launchBrowser, startServer, waitFor } from './harness.mjs';
import { startSmtp } from './smtp.mjs';

const ADMIN = `e2e-operator-${crypto.randomBytes(12).toString('hex')}`;
const TARIFF = 'business-12';
const SEAT_PRICE = '12000.00';
const ACCOUNT = 'ООО Ромашка';

let server;
let browser;
let smtp;
const consoleLog = [];

before(async () => {
  // The account's admin is invited by email: the invitation link comes through this sink.
  smtp = await startSmtp();
  process.env.PARLEY_SMTP_URL = `smtp://127.0.0.1:${smtp.port}`;
  process.env.PARLEY_SMTP_FROM = 'Parley <no-reply@parley.test>';
  process.env.PARLEY_ADMIN_TOKEN = ADMIN;
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'admin-operator-browser-console.log'), consoleLog.join('\n'));
  await browser?.close().catch(() => {});
  await server?.stop().catch(() => {});
  await smtp?.close().catch(() => {});
});

async function api(method, p, bearer, body, extra = {}) {
  const res = await fetch(`${server.url}${p}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
      ...extra,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

function must(r, status, what) {
  assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Today in Moscow, `YYYY-MM-DD` (the licensing rules' today). */
function moscowToday() {
  const p = {};
  for (const x of new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Moscow', year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(new Date())) p[x.type] = x.value;
  return `${p.year}-${p.month}-${p.day}`;
}

const day = (s) => Date.UTC(Number(s.slice(0, 4)), Number(s.slice(5, 7)) - 1, Number(s.slice(8, 10)));
const daysBetween = (a, b) => Math.round((day(b) - day(a)) / 86400000);
const addDays = (s, n) => new Date(day(s) + n * 86400000).toISOString().slice(0, 10);
const ddmmyyyy = (s) => `${s.slice(8, 10)}.${s.slice(5, 7)}.${s.slice(0, 4)}`;

/** "12 345.67 ₽", as the console writes amounts. */
function rub(kopecks) {
  const k = BigInt(kopecks);
  const whole = (k / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
  return `${whole}.${(k % 100n).toString().padStart(2, '0')} ₽`;
}

/** The spec's refund (8.3.3): paid × unexpired days / lot days, in kopecks, rounded half up at the end. */
function expectedRefund(paidKopecks, startsOn, endsOn, effectiveOn) {
  const days = BigInt(daysBetween(startsOn, endsOn));
  const unexpired = BigInt(Math.max(0, Math.min(daysBetween(effectiveOn, endsOn), Number(days))));
  const numerator = BigInt(paidKopecks) * unexpired;
  return (2n * numerator + days) / (2n * days);
}

async function shot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `admin-operator-${name}.png`), fullPage: true });
}

/**
 * The two accounts, the first one's admin (invited, signed in) and its unpaid order: returns the
 * first account's id, key, admin (`{id, session}`) and invoice.
 */
async function setUp() {
  must(
    await api('PUT', `/api/v1/tariffs/${TARIFF}`, ADMIN, {
      name: 'Business', term_months: 12, price_per_seat: SEAT_PRICE,
      features: { max_participants: 10, max_meeting_minutes: 240, sdk_embedding: false,
        results_to_recipients: false, screen_share: true },
    }),
    200, 'tariff');
  const a = must(
    await api('POST', '/api/v1/accounts', ADMIN, {
      name: ACCOUNT, kind: 'legal_entity', inn: '7707083893', resident: true,
      crm_system: 'sbercrm', crm_external_id: 'E2E-OP-1', address: 'Москва',
    }),
    201, 'account');
  must(
    await api('POST', '/api/v1/accounts', ADMIN, {
      name: 'Василёк', kind: 'individual', crm_system: 'amocrm', crm_external_id: 'E2E-OP-2',
    }),
    201, 'second account');
  const id = a.account.id;
  const key = a.api_key.bearer;
  const email = 'admin@romashka.example';
  must(await api('POST', `/api/v1/accounts/${id}/invitations`, key, { email, role: 'account_admin', display_name: 'Ольга' }), 201, 'invitation');
  const invitation = await smtp.token(email, 'You are invited to Parley', 'inv_');
  const accepted = must(
    await api('POST', '/api/v1/invitations/accept', null, { token: invitation, password: 'correct horse battery' }),
    200, 'the admin accepts');
  const admin = { id: accepted.user.id, session: accepted.token };
  const order = must(
    await api('POST', `/api/v1/accounts/${id}/orders`, key, { type: 'initial', tariff: TARIFF, seats: 1 },
      { 'idempotency-key': 'e2e-operator-order' }),
    201, 'order');
  assert.equal(order.invoice.status, 'issued');
  return { id, key, admin, invoice: order.invoice };
}

test('the operator registers a bank payment and terminates with the refund the rules give', async () => {
  const acc = await setUp();
  const today = moscowToday();
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('console', (m) => consoleLog.push(`[operator] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`[operator] pageerror: ${e.message}`));
  // Which calls failed (URLs carry ids, never credentials): expected ones are the wrong token
  // and the console's session probe before signing in.
  page.on('response', (r) => r.status() >= 400 && consoleLog.push(`[operator] ${r.status()} ${r.request().method()} ${r.url()}`));
  const people = [];
  try {
    // Not signed in: an operator page leads to the operator sign-in.
    await page.goto(`${server.url}/admin/#/operator/accounts`);
    const token = page.getByLabel('Operator token');
    await token.waitFor();
    await shot(page, 'sign-in');
    await token.fill('not-the-operator-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not the operator token' }).waitFor();
    await token.fill(ADMIN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Accounts' }).waitFor();
    // The tab keeps an operator session, never the token itself.
    const stored = await page.evaluate(() => Object.keys(sessionStorage).map((k) => sessionStorage.getItem(k)));
    assert.ok(!stored.some((v) => v && v.includes(ADMIN)), 'the operator token is not kept in the tab');
    const session = stored.find((v) => v && v.startsWith('op_'));
    assert.ok(session, `an operator session is kept: ${stored.length} entries`);
    must(await api('GET', '/api/v1/operator/node', session), 200, 'the session acts as the operator');

    // Find the account with the unpaid invoice (a lower-case search finds the Cyrillic name).
    await page.getByLabel('Search accounts').fill('ромашка');
    await page.getByLabel('Search accounts').press('Enter');
    const row = page.locator('tbody tr', { hasText: ACCOUNT });
    await row.filter({ hasText: '1 unpaid' }).waitFor();
    assert.equal(await page.locator('tbody tr').count(), 1, 'only the matching account is listed');
    await shot(page, 'accounts');
    await row.getByRole('link', { name: ACCOUNT }).click();
    await page.getByRole('heading', { level: 1, name: ACCOUNT }).waitFor();

    // Register the bank transfer against the invoice.
    await page.getByRole('button', { name: `Register payment for ${acc.invoice.number_text}` }).click();
    const payDialog = page.getByRole('dialog');
    await payDialog.getByLabel('Bank reference').fill('п/п 1842');
    assert.equal(await payDialog.getByLabel('Amount received').inputValue(), SEAT_PRICE);
    assert.equal(await payDialog.getByLabel('Received on').inputValue(), today);
    await shot(page, 'payment');
    await payDialog.getByRole('button', { name: 'Register payment' }).click();
    const notice = page.locator('.notice', { hasText: 'registered for invoice' });
    await notice.waitFor();
    const noticeText = await notice.innerText();
    assert.match(noticeText, new RegExp(`Payment of ${rub(1200000n)} registered for invoice ${acc.invoice.number_text}`));
    assert.match(noticeText, new RegExp(`active from ${ddmmyyyy(today)}`));
    assert.match(noticeText, /granted on time/);
    const lotsCard = page.locator('section.card', { has: page.getByRole('heading', { name: 'Licenses' }) });
    await lotsCard.locator('tbody tr', { hasText: 'Active' }).waitFor();
    const paymentsCard = page.locator('section.card', { has: page.getByRole('heading', { name: 'Payments' }) });
    await paymentsCard.locator('tbody tr', { hasText: 'п/п 1842' }).filter({ hasText: 'On time' }).waitFor();
    const invoicesCard = page.locator('section.card', { has: page.getByRole('heading', { name: 'Invoices' }) });
    await invoicesCard.locator('tbody tr', { hasText: 'Paid' }).waitFor();
    await shot(page, 'account');

    // The account admin's own view of the licenses says the lot is active.
    const lots = must(await api('GET', `/api/v1/accounts/${acc.id}/lots`, acc.admin.session), 200, 'the admin\'s lots');
    assert.equal(lots.length, 1, JSON.stringify(lots));
    const lot = lots[0];
    assert.equal(lot.status, 'active');
    assert.equal(lot.starts_on, today);

    // Suspend with a reason, then lift it.
    await page.getByRole('button', { name: 'Suspend…' }).click();
    await page.getByRole('dialog').getByLabel('Reason').fill('Неоплата');
    await page.getByRole('dialog').getByRole('button', { name: 'Suspend' }).click();
    const summary = page.locator('section.card', { has: page.getByRole('heading', { name: 'Account', exact: true }) });
    await summary.getByText('Suspended', { exact: true }).waitFor();
    assert.equal(must(await api('GET', `/api/v1/accounts/${acc.id}`, acc.key), 200, 'account').status.status, 'suspended');
    await page.getByRole('button', { name: 'Lift suspension' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Lift suspension' }).click();
    await summary.getByText('Active', { exact: true }).waitFor();

    // Two people in a licensed meeting of the account: the node page shows them.
    must(await api('PUT', `/api/v1/accounts/${acc.id}/users/${acc.admin.id}/seat`, acc.key, { lot_id: lot.id }), 201, 'seat');
    const meeting = must(
      await api('POST', '/api/v1/meetings', acc.key, { title: 'Demo for Romashka', host_user_id: acc.admin.id }),
      201, 'meeting');
    people.push(await joinAs(browser, meeting.host_link, 'Анна', consoleLog));
    people.push(await joinAs(browser, meeting.invite_link, 'Борис', consoleLog));

    await page.goto(`${server.url}/admin/#/operator/node`);
    await page.getByRole('heading', { level: 1, name: 'Node and meetings' }).waitFor();
    const liveRow = page.locator('tbody tr', { hasText: 'Demo for Romashka' });
    await liveRow.filter({ hasText: ACCOUNT }).filter({ hasText: '2 / 10' }).waitFor({ timeout: 20_000 });
    const tiles = page.locator('[data-role=node-tiles]');
    // Rates need a second sample (the page refreshes by itself every few seconds), and media
    // flows between the two people, so packets are being forwarded.
    await waitFor(
      async () => {
        const t = await tiles.innerText();
        const m = /Forwarded packets\s+(\d+)\/s/.exec(t);
        return m && Number(m[1]) > 0 && /Bitrate out\s+[\d.]+ (k|M)?bit\/s/.test(t) && /CPU\s+[\d.]+ %/.test(t);
      },
      { timeout: 30_000, what: 'forwarded packets, bitrate and CPU on the node page' },
    );
    const tilesText = await tiles.innerText();
    assert.match(tilesText, /Participants\s+2/);
    assert.match(tilesText, /Memory\s+[\d.]+ (MB|GB)/);
    await shot(page, 'node');
    // Both leave (the Leave button, not a dropped connection that keeps a seat for a while).
    for (const p of people) await p.page.click('#btn-leave');
    await liveRow.waitFor({ state: 'detached', timeout: 20_000 });
    for (const p of people.splice(0)) await p.context.close();

    // Tariffs: create one through the form, then archive it; sold ones stay on sale.
    await page.goto(`${server.url}/admin/#/operator/tariffs`);
    await page.getByRole('heading', { level: 1, name: 'Tariffs' }).waitFor();
    await page.locator('tbody tr', { hasText: TARIFF }).waitFor();
    await page.getByRole('button', { name: 'New tariff' }).click();
    const tDialog = page.getByRole('dialog');
    await tDialog.getByLabel('Code').fill('start-6');
    await tDialog.getByLabel('Name', { exact: true }).fill('Start');
    await tDialog.getByLabel('Term, months').fill('6');
    await tDialog.getByLabel('Price per seat for the term, ₽').fill('4500.00');
    await tDialog.getByRole('button', { name: 'Create tariff' }).click();
    const startRow = page.locator('tbody tr', { hasText: 'start-6' });
    await startRow.filter({ hasText: '4 500.00 ₽' }).filter({ hasText: 'On sale' }).waitFor();
    await startRow.getByRole('button', { name: 'Archive start-6' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Archive' }).click();
    await page.locator('tbody tr', { hasText: 'start-6' }).filter({ hasText: 'Archived' }).waitFor();
    const catalogue = must(await api('GET', '/api/v1/tariffs'), 200, 'tariffs');
    assert.deepEqual(
      catalogue.map((t) => [t.code, t.archived]).sort(),
      [[TARIFF, false], ['start-6', true]],
    );
    await shot(page, 'tariffs');

    // Promotions: a code with a usage limit.
    await page.goto(`${server.url}/admin/#/operator/promotions`);
    await page.getByRole('heading', { level: 1, name: 'Promotions' }).waitFor();
    await page.getByRole('button', { name: 'New promotion' }).click();
    const pDialog = page.getByRole('dialog');
    await pDialog.getByLabel('Name', { exact: true }).fill('Весна');
    await pDialog.getByLabel('Promo code').fill('SPRING');
    await pDialog.getByLabel('Percent off').fill('10');
    await pDialog.getByLabel('Uses in all').fill('100');
    await pDialog.getByRole('button', { name: 'Create promotion' }).click();
    await page.locator('tbody tr', { hasText: 'SPRING' }).filter({ hasText: '10 % off' }).filter({ hasText: '100 uses in all' }).waitFor();
    const promos = must(await api('GET', '/api/v1/promotions', ADMIN), 200, 'promotions');
    assert.equal(promos.length, 1);
    assert.deepEqual([promos[0].code, promos[0].discount, promos[0].total_limit], ['SPRING', { kind: 'percent', percent: '10' }, 100]);
    await shot(page, 'promotions');

    // The provider's termination: 45 days' notice; the refund is shown before confirming.
    await page.goto(`${server.url}/admin/#/operator/accounts/view?id=${acc.id}`);
    await page.getByRole('heading', { level: 1, name: ACCOUNT }).waitFor();
    await page.getByRole('button', { name: 'Terminate…' }).click();
    const tdlg = page.getByRole('dialog');
    const effective = addDays(today, 45);
    assert.equal(await tdlg.getByLabel('Effective on').inputValue(), effective);
    const want = rub(expectedRefund(1200000n, lot.starts_on, lot.ends_on, effective));
    const refund = tdlg.locator('[data-role=refund]');
    await refund.waitFor();
    assert.equal(await refund.innerText(), want, `paid ${SEAT_PRICE} for ${lot.starts_on} .. ${lot.ends_on}, ended ${effective}`);
    const shownText = await tdlg.locator('[data-role=termination-preview]').innerText();
    assert.match(shownText, new RegExp(`The agreement ends\\s+${ddmmyyyy(effective)}`));
    assert.match(shownText, /Refund due by\s+\d{2}\.\d{2}\.\d{4}/);
    // Breach shows no refund; back to the provider's termination before confirming.
    await tdlg.getByLabel(/For the client’s breach/).check();
    await tdlg.locator('[data-role=refund]', { hasText: '0.00 ₽' }).waitFor();
    await tdlg.getByLabel(/By the provider/).check();
    await tdlg.locator('[data-role=refund]', { hasText: want }).waitFor();
    await shot(page, 'termination');
    await tdlg.getByRole('button', { name: 'Terminate the agreement' }).click();
    await page.locator('.notice', { hasText: `ends on ${ddmmyyyy(effective)}` }).filter({ hasText: want }).waitFor();
    const refundsCard = page.locator('section.card', { has: page.getByRole('heading', { name: 'Refunds' }) });
    await refundsCard.locator('tbody tr', { hasText: want }).waitFor();
    const refunds = must(await api('GET', `/api/v1/accounts/${acc.id}/refunds`, acc.key), 200, 'refunds');
    assert.equal(rub(BigInt(refunds[0].amount.replace('.', ''))), want);

    // Signing out ends the operator session on the server, not only in the tab.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Operator token').waitFor();
    await waitFor(async () => (await api('GET', '/api/v1/operator/node', session)).status === 401, {
      what: 'the signed-out operator session refused',
    });
  } finally {
    for (const p of people) await p.context.close().catch(() => {});
    await context.close();
  }
});
