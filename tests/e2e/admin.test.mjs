// The admin console in a real browser, account side. Set up through the API (the operator's
// token creates a tariff and an account; invitations go through a real SMTP sink so the admin
// and a member can set passwords; the first license is bought and paid):
// (a) the admin signs in at /sign-in?next=/admin/, opens the console, orders a top-up of 5
//     seats and sees the spec's pro-rated price (computed here from the formula and today's
//     Moscow date) with its inputs before confirming; a refused order type shows the server's
//     own words; confirming shows the invoice, which opens in its printable form;
// (b) a member without a seat is refused when starting a meeting, and sees "only account
//     admins" in the console; the admin assigns a seat in the console; the member's start now
//     works;
// (c) screenshots of every account page: artifacts/admin-<page>.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ARTIFACTS, launchBrowser, startServer, waitFor } from './harness.mjs';
import { startSmtp } from './smtp.mjs';

const OPERATOR = `e2e-operator-${crypto.randomBytes(8).toString('hex')}`;
const ADA = 'ada@example.com';
const BORIS = 'boris@example.com';
const PASSWORD = 'console correct horse';
const PRICE = '12000.00';
const ADD_SEATS = 5;

let server;
let browser;
let smtp;
const consoleLog = [];

// ---- the spec's arithmetic, done here independently of the server ----

const pad = (n) => String(n).padStart(2, '0');

function moscowToday() {
  const p = {};
  for (const x of new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Moscow', year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(new Date())) p[x.type] = x.value;
  return `${p.year}-${p.month}-${p.day}`;
}

/** Adds months, clamping to the month's last day (licensing spec: 2026-01-31 + 1 month = 2026-02-28). */
function addMonths(d, n) {
  const [y, m, day] = d.split('-').map(Number);
  const t = m - 1 + n;
  const yy = y + Math.floor(t / 12);
  const mm = ((t % 12) + 12) % 12;
  const last = new Date(Date.UTC(yy, mm + 1, 0)).getUTCDate();
  return `${yy}-${pad(mm + 1)}-${pad(Math.min(day, last))}`;
}

const dayNumber = (d) => Date.UTC(...d.split('-').map((x, i) => Number(x) - (i === 1 ? 1 : 0))) / 86_400_000;

/** A = B × days / basis, rounded half-up to kopecks only at the end (spec 5.3.4). */
function proRated(priceKopecks, days, basis) {
  const num = BigInt(priceKopecks) * BigInt(days);
  return (num * 2n + BigInt(basis)) / (2n * BigInt(basis));
}

/** Kopecks as the console shows money: "58 688.50 ₽". */
function rub(kopecks) {
  const k = BigInt(kopecks);
  const int = (k / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
  return `${int}.${pad(Number(k % 100n))} ₽`;
}

const ddmmyyyy = (d) => d.split('-').reverse().join('.');

// ---- API and page helpers ----

async function api(method, p, bearer, body, headers = {}) {
  const res = await fetch(`${server.url}${p}`, {
    method,
    headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

function must(r, status, what) {
  assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
  return r.body;
}

async function newPage(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.on('console', (m) => consoleLog.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`[${name}] pageerror: ${e.message}`));
  await context.route((url) => url.origin !== new URL(server.url).origin, (route) => route.abort('blockedbyclient'));
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `admin-${name}.png`), fullPage: true });
}

/** Opens a console page through its nav link and waits for its heading to have focus. */
async function openPage(page, linkText, heading) {
  await page.locator('#admin-nav a', { hasText: linkText }).first().click();
  await page.locator('#admin-main h1', { hasText: heading }).waitFor({ timeout: 10_000 });
  await waitFor(() => page.evaluate((h) => document.activeElement?.tagName === 'H1' && document.activeElement.textContent === h, heading), {
    timeout: 5_000,
    what: `focus on the "${heading}" heading`,
  });
}

async function signIn(page, email, next) {
  await page.goto(`${server.url}/sign-in?next=${encodeURIComponent(next)}`);
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  await page.click('#submit');
  await page.waitForURL((u) => u.pathname === next.split('#')[0], { timeout: 10_000 });
}

before(async () => {
  smtp = await startSmtp();
  process.env.PARLEY_ADMIN_TOKEN = OPERATOR;
  process.env.PARLEY_SMTP_URL = `smtp://127.0.0.1:${smtp.port}`;
  process.env.PARLEY_SMTP_FROM = 'Parley <no-reply@parley.test>';
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'admin-browser-console.log'), consoleLog.join('\n'));
  await browser?.close().catch(() => {});
  await server?.stop().catch(() => {});
  await smtp?.close();
});

/** Invites `email` with `role` by the account key and accepts by the mailed token. */
async function person(account, key, email, role, name) {
  must(await api('POST', `/api/v1/accounts/${account}/invitations`, key, { email, role, display_name: name }), 201, `invite ${email}`);
  const token = await smtp.token(email, 'You are invited to Parley', 'inv_');
  return must(await api('POST', '/api/v1/invitations/accept', null, { token, password: PASSWORD }), 200, `${email} accepts`).user;
}

test('admin console: top-up with the live quote, seat assignment that lets a member host, every page', async (t) => {
  // ---- set-up through the API ----
  must(
    await api('PUT', '/api/v1/tariffs/business-12', OPERATOR, {
      name: 'Business 12', term_months: 12, price_per_seat: PRICE,
      features: { max_participants: 10, max_meeting_minutes: 240, screen_share: true },
    }),
    200, 'tariff');
  const created = must(
    await api('POST', '/api/v1/accounts', OPERATOR, {
      name: 'ООО Ромашка', kind: 'legal_entity', inn: '7707083893', resident: true,
      crm_system: 'sbercrm', crm_external_id: 'e2e-admin', address: 'Москва',
    }),
    201, 'account');
  const account = created.account.id;
  const key = created.api_key.bearer;
  const first = must(
    await api('POST', `/api/v1/accounts/${account}/orders`, key, { type: 'initial', tariff: 'business-12', seats: 10 }, { 'idempotency-key': 'e2e-admin-initial' }),
    201, 'initial order');
  const paid = must(
    await api('POST', `/api/v1/accounts/${account}/invoices/${first.invoice.id}/payments`, OPERATOR,
      { method: 'bank_transfer', amount: first.invoice.amount }, { 'idempotency-key': 'e2e-admin-pay' }),
    201, 'bank transfer');
  await person(account, key, ADA, 'account_admin', 'Ada Admin');
  const boris = await person(account, key, BORIS, 'member', 'Boris Rep');

  // The spec's figures with today's dates: the lot runs [grant, grant + 12 months) and a
  // prepaid portal top-up pays D1 − D2 − 7 days of B over a 366-day basis.
  const today = moscowToday();
  const lot = must(await api('GET', `/api/v1/accounts/${account}/lots/${paid.lot_id}`, key), 200, 'lot');
  const D1 = addMonths(today, 12);
  assert.equal(lot.starts_on, today, 'granted at payment');
  assert.equal(lot.ends_on, D1, 'a 12-month term');
  const days = dayNumber(D1) - dayNumber(today) - 7;
  const unit = proRated(1_200_000, days, 366);
  const total = unit * BigInt(ADD_SEATS);

  const admin = await newPage('admin');

  await t.test('(a) sign in, the licenses overview, the live quote of a top-up, the invoice', async () => {
    await admin.goto(`${server.url}/admin/`);
    // Not signed in: the console sends the browser to the sign-in page, which comes back.
    await admin.waitForURL((u) => u.pathname === '/sign-in', { timeout: 10_000 });
    assert.match(new URL(admin.url()).searchParams.get('next'), /^\/admin\//, 'back to the console after sign-in');
    await admin.fill('#email', ADA);
    await admin.fill('#password', PASSWORD);
    await admin.click('#submit');
    await admin.waitForURL((u) => u.pathname === '/admin/', { timeout: 10_000 });
    await admin.locator('#admin-main h1', { hasText: 'Licenses' }).waitFor();
    assert.equal(await admin.textContent('#who-account'), 'ООО Ромашка');
    const row = admin.locator('.admin-table tbody tr').first();
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    assert.equal(cells[0], 'Business 12');
    assert.deepEqual(cells.slice(1, 4), ['10', '0', '10'], 'seats, used, free');
    assert.equal(cells[5], ddmmyyyy(D1));
    assert.equal(cells[6], 'Active');
    assert.equal(cells[7], String(dayNumber(D1) - dayNumber(today)), 'days left');
    await shot(admin, 'lots');

    await openPage(admin, 'Order licenses', 'Order licenses');
    assert.equal(await admin.isChecked('#type-top_up'), true, 'a top-up is offered first for an active lot');
    await admin.fill('#order-add-seats', String(ADD_SEATS));
    // The quote follows the input: the total the spec gives, with the formula's inputs.
    await admin.locator('#quote-total', { hasText: rub(total) }).waitFor({ timeout: 10_000 });
    const formula = async (k) => admin.textContent(`[data-formula="${k}"]`);
    assert.equal(await formula('B'), rub(1_200_000));
    assert.equal(await formula('D1'), ddmmyyyy(D1));
    assert.equal(await formula('D2'), ddmmyyyy(today));
    assert.equal(await formula('logistics_days'), '7');
    assert.equal(await formula('days'), String(days));
    assert.equal(await formula('basis'), '366');
    assert.equal(await admin.textContent('.line-unit'), rub(unit));
    assert.equal(await admin.isEnabled('#place-order'), true);
    await shot(admin, 'order');

    // A renewal with reduction is not open yet: the refusal in the server's own words.
    const refused = await api('POST', `/api/v1/accounts/${account}/quotes`, key, { type: 'renewal_with_reduction', license_id: lot.id, seats: 10, channel: 'portal', payment_terms: 'prepay' });
    assert.equal(refused.status, 422);
    await admin.check('#type-renewal_with_reduction');
    await admin.fill('#order-seats', '10');
    const refusal = admin.locator('.refusal[data-code="window_not_open"]');
    await refusal.waitFor({ timeout: 10_000 });
    assert.equal(await refusal.locator('.state-message').textContent(), refused.body.error.message);
    assert.match(await refusal.textContent(), new RegExp(ddmmyyyy(refused.body.error.opens_on).replace(/\./g, '\\.')));
    assert.equal(await admin.isDisabled('#place-order'), true, 'nothing to order while refused');
    await shot(admin, 'order-refused');

    await admin.check('#type-top_up');
    await admin.locator('#quote-total', { hasText: rub(total) }).waitFor({ timeout: 10_000 });
    await admin.click('#place-order');
    const dlg = admin.locator('dialog[open]');
    await dlg.waitFor();
    assert.match(await dlg.locator('h2').textContent(), new RegExp(rub(total).replace('.', '\\.')));
    await dlg.locator('button', { hasText: 'Place order' }).click();
    await admin.locator('#order-placed').waitFor({ timeout: 10_000 });
    const invoices = must(await api('GET', `/api/v1/accounts/${account}/invoices?order=newest&limit=1`, key), 200, 'invoices');
    assert.equal(invoices[0].amount, `${total / 100n}.${pad(Number(total % 100n))}`, 'the invoice is the quoted price');
    assert.equal(
      await admin.textContent('#placed-invoice'),
      `Invoice No. ${invoices[0].number_text} of ${ddmmyyyy(today)} for ${rub(total)}.`,
    );
    await admin.click('#open-invoice');
    await admin.locator('#admin-main h1', { hasText: `Invoice No. ${invoices[0].number_text}` }).waitFor();
    const frame = admin.frameLocator('#doc-frame');
    await frame.locator('h1').waitFor({ timeout: 10_000 });
    assert.match(await frame.locator('h1').textContent(), new RegExp(invoices[0].number_text));
    await shot(admin, 'invoice');
  });

  await t.test('(b) a member cannot host nor use the console; the admin assigns a seat; now the member hosts', async () => {
    const member = await newPage('boris');
    await signIn(member, BORIS, '/');
    await member.fill('#title', 'Demo for Acme');
    await member.click('#create');
    await member.locator('#create-error', { hasText: 'holds no seat' }).waitFor({ timeout: 10_000 });
    assert.equal(await member.isHidden('#result'), true);
    assert.equal(await member.isHidden('#admin-link'), true, 'no console link for a member');

    await member.goto(`${server.url}/admin/`);
    await member.locator('#admin-main h1', { hasText: 'Only account admins' }).waitFor({ timeout: 10_000 });
    assert.equal(await member.isHidden('#admin-nav'), true, 'no console pages for a member');
    await shot(member, 'member');

    await openPage(admin, 'Seats', 'Seats');
    const assign = admin.getByRole('button', { name: `Assign a seat to ${BORIS}` });
    // Keyboard: the dialog opens with focus inside, Escape closes it and focus comes back.
    await assign.focus();
    await admin.keyboard.press('Enter');
    await admin.locator('dialog[open]').waitFor();
    assert.equal(await admin.evaluate(() => document.activeElement.closest('dialog') !== null), true);
    await admin.keyboard.press('Escape');
    await admin.locator('dialog').waitFor({ state: 'detached' });
    assert.equal(await admin.evaluate(() => document.activeElement.getAttribute('aria-label')), `Assign a seat to ${BORIS}`);

    await assign.click();
    const dlg = admin.locator('dialog[open]');
    await dlg.getByLabel('License').selectOption(lot.id);
    await shot(admin, 'seats-assign');
    await dlg.locator('button', { hasText: 'Assign seat' }).click();
    await admin.locator('.admin-note', { hasText: 'Boris Rep now holds a seat' }).waitFor({ timeout: 10_000 });
    await admin.getByRole('button', { name: `Reclaim the seat of ${BORIS}` }).waitFor();
    await shot(admin, 'seats');

    await member.goto(`${server.url}/`);
    await member.fill('#title', 'Demo for Acme');
    await member.click('#create');
    await member.locator('#result:not([hidden])').waitFor({ timeout: 10_000 });
    const host = await member.inputValue('#host-link');
    assert.match(new URL(host).pathname, /^\/m\//);
    const me = must(await api('GET', '/api/v1/me', null, undefined, { cookie: (await member.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ') }), 200, 'me');
    assert.equal(me.may_host, true);
    assert.equal(me.user.id, boris.id);
    await member.context().close();
  });

  await t.test('(c) the other account pages', async () => {
    await openPage(admin, 'Users', 'Users & invitations');
    await admin.locator('.admin-table td', { hasText: ADA }).waitFor();
    await shot(admin, 'users');
    await openPage(admin, 'Seat review', 'Seat review');
    await admin.locator('.empty, .admin-table').first().waitFor();
    await shot(admin, 'seat-review');
    await openPage(admin, 'Documents', 'Documents');
    await admin.locator('.admin-table td', { hasText: first.invoice.number_text }).first().waitFor();
    await shot(admin, 'documents');
    await openPage(admin, 'Payments', 'Payments');
    await admin.locator('#card-note', { hasText: 'not available for this account' }).waitFor();
    await admin.locator('.admin-table td', { hasText: rub(total) }).first().waitFor();
    await shot(admin, 'payments');
    await openPage(admin, 'Promotions', 'Promotions applied');
    await admin.locator('.empty', { hasText: 'No discounts applied yet' }).waitFor();
    await shot(admin, 'promotions');

    // The landing page links a signed-in admin to the console.
    await admin.goto(`${server.url}/`);
    await admin.locator('#admin-link:not([hidden])').click();
    await admin.locator('#admin-main h1', { hasText: 'Licenses' }).waitFor({ timeout: 10_000 });
    assert.equal(consoleLog.filter((l) => l.includes('pageerror')).join('\n'), '', 'no script errors');
  });
});
