// The admin console's integration pages in a real browser. Set up through the API (the
// operator's token makes a tariff with the SDK and an account; the admin's invitation goes
// through a real SMTP sink; the admin holds a seat), then, signed in as the account admin:
// - API keys: a new key's secret is shown once (and works), copied with the Copy button, gone
//   after "Done" and never listed;
// - SDK keys: a key with an origin appears in the list;
// - Webhooks: an endpoint pointing at a receiver in this file, its signing secret shown once;
// - the delivery log: with the receiver answering 500, the meeting.started event of a meeting
//   the admin really joins fails (masked recipient, attempts, last error); the receiver then
//   answers 200 and the Retry button (by keyboard) delivers it, correctly signed;
// - the CRM page: a generic webhook CRM connected (the secret never shown back), the deal
//   card secret created once, a CRM user linked;
// - Usage: today's meeting is a bar of the meetings chart, in its words and in the data table;
// - screenshots of each page: artifacts/admin-<page>.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ARTIFACTS, joinAs, launchBrowser, startServer, tail, waitFor } from './harness.mjs';
import { startSmtp } from './smtp.mjs';

const OPERATOR = `e2e-operator-${crypto.randomBytes(8).toString('hex')}`;
const ADA = 'ada@integrations.example';
const PASSWORD = 'integrations correct horse';
const CRM_SECRET = `crm-shared-secret-${crypto.randomBytes(6).toString('hex')}`;

let server;
let browser;
let smtp;
let receiver;
const consoleLog = [];

// ---- a webhook receiver whose answer the test chooses ----

async function startReceiver() {
  const requests = [];
  const state = { status: 500 };
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ path: req.url, headers: req.headers, body, answered: state.status });
      res.writeHead(state.status, { 'content-type': 'text/plain' });
      res.end(state.status === 200 ? 'ok' : 'receiver down');
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${srv.address().port}`,
    requests,
    answer(status) {
      state.status = status;
    },
    close: () => new Promise((resolve) => srv.close(resolve)),
  };
}

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

function moscowToday() {
  const p = {};
  for (const x of new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Moscow', year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(new Date())) p[x.type] = x.value;
  return `${p.year}-${p.month}-${p.day}`;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `admin-${name}.png`), fullPage: true });
}

/** Opens a console page from the nav and waits until its heading has focus. */
async function openPage(page, linkText, heading = linkText) {
  await page.locator('#admin-nav').getByRole('link', { name: linkText, exact: true }).click();
  await page.locator('#admin-main h1', { hasText: heading }).waitFor({ timeout: 10_000 });
  await waitFor(() => page.evaluate((h) => document.activeElement?.tagName === 'H1' && document.activeElement.textContent === h, heading), {
    timeout: 5_000,
    what: `focus on the "${heading}" heading`,
  });
}

/** Whether `text` is anywhere a person could see or copy it: the page's text or a field's value. */
function onPage(page, text) {
  return page.evaluate(
    (t) => document.body.innerText.includes(t) || [...document.querySelectorAll('input, textarea')].some((el) => el.value.includes(t)),
    text,
  );
}

/** Every visible form control has a label. */
async function assertLabelled(page) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('#admin-main input, #admin-main select, #admin-main textarea')]
      .filter((el) => el.type !== 'hidden' && el.offsetParent !== null)
      .filter((el) => !el.labels || el.labels.length === 0)
      .map((el) => el.name || el.id),
  );
  assert.deepEqual(unlabelled, [], `inputs without a label on ${page.url()}`);
}

before(async () => {
  smtp = await startSmtp();
  receiver = await startReceiver();
  process.env.PARLEY_ADMIN_TOKEN = OPERATOR;
  process.env.PARLEY_SMTP_URL = `smtp://127.0.0.1:${smtp.port}`;
  process.env.PARLEY_SMTP_FROM = 'Parley <no-reply@parley.test>';
  // Two quick attempts: a delivery to a receiver answering 500 fails within a second or two.
  process.env.PARLEY_OUTBOX_MAX_ATTEMPTS = '2';
  process.env.PARLEY_OUTBOX_BASE_DELAY_MS = '200';
  process.env.PARLEY_OUTBOX_MAX_DELAY_SECS = '1';
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'admin-integrations-browser-console.log'), consoleLog.join('\n'));
  await browser?.close().catch(() => {});
  await server?.stop().catch(() => {});
  await smtp?.close();
  await receiver?.close();
});

test('integrations: API and SDK keys, webhooks with a failed delivery retried, CRM, usage', async (t) => {
  // ---- set-up through the API ----
  must(
    await api('PUT', '/api/v1/tariffs/business-12', OPERATOR, {
      name: 'Business 12', term_months: 12, price_per_seat: '12000.00',
      features: { max_participants: 10, max_meeting_minutes: 240, sdk_embedding: true, screen_share: true,
        recording: { storage_quota_mb: 1024, retention_days: 30 } },
    }),
    200, 'tariff');
  const created = must(
    await api('POST', '/api/v1/accounts', OPERATOR, {
      name: 'ООО Интеграции', kind: 'legal_entity', inn: '7707083893', resident: true,
      crm_system: 'sbercrm', crm_external_id: 'e2e-integrations', address: 'Москва',
    }),
    201, 'account');
  const account = created.account.id;
  const key = created.api_key.bearer;
  const order = must(
    await api('POST', `/api/v1/accounts/${account}/orders`, key, { type: 'initial', tariff: 'business-12', seats: 3 }, { 'idempotency-key': 'e2e-int-order' }),
    201, 'order');
  const paid = must(
    await api('POST', `/api/v1/accounts/${account}/invoices/${order.invoice.id}/payments`, OPERATOR,
      { method: 'bank_transfer', amount: order.invoice.amount }, { 'idempotency-key': 'e2e-int-pay' }),
    201, 'payment');
  must(await api('POST', `/api/v1/accounts/${account}/invitations`, key, { email: ADA, role: 'account_admin', display_name: 'Ada Admin' }), 201, 'invite');
  const invitation = await smtp.token(ADA, 'You are invited to Parley', 'inv_');
  const ada = must(await api('POST', '/api/v1/invitations/accept', null, { token: invitation, password: PASSWORD }), 200, 'accept');
  must(await api('PUT', `/api/v1/accounts/${account}/users/${ada.user.id}/seat`, key, { lot_id: paid.lot_id }, { 'idempotency-key': 'e2e-int-seat' }), 201, 'seat');

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, permissions: ['clipboard-read', 'clipboard-write'] });
  await context.route((url) => url.origin !== new URL(server.url).origin, (route) => route.abort('blockedbyclient'));
  const page = await context.newPage();
  page.on('console', (m) => consoleLog.push(`[admin] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`[admin] pageerror: ${e.message}`));

  try {
    await page.goto(`${server.url}/sign-in?next=${encodeURIComponent('/admin/')}`);
    await page.fill('#email', ADA);
    await page.fill('#password', PASSWORD);
    await page.click('#submit');
    await page.waitForURL((u) => u.pathname === '/admin/', { timeout: 10_000 });
    await page.locator('#admin-nav a').first().waitFor();

    await t.test('API keys: the secret is shown once, works, is copied, and never listed', async () => {
      await openPage(page, 'API keys');
      await page.click('#create-api-key');
      const secretInput = page.locator('#api-key-fresh input[data-secret]');
      await secretInput.waitFor();
      const bearer = await secretInput.inputValue();
      assert.match(bearer, /^[^.\s]+\.[A-Za-z0-9_-]{20,}$/, 'key id and secret');
      const [keyId, secret] = bearer.split('.');
      assert.ok(await onPage(page, secret), 'shown while fresh');
      must(await api('GET', `/api/v1/accounts/${account}`, bearer), 200, 'the new key works');

      await page.locator('#api-key-fresh button', { hasText: 'Copy' }).click();
      await page.locator('#api-key-fresh [role=status]', { hasText: 'Copied' }).waitFor();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), bearer);

      // Listed by id, never with its secret.
      const row = page.locator('.admin-table tbody tr', { hasText: keyId });
      await row.waitFor();
      assert.match(await row.textContent(), /Active/);
      await page.locator('#api-key-fresh button', { hasText: 'Done' }).click();
      assert.equal(await page.locator('#api-key-fresh input').count(), 0);
      assert.ok(!(await onPage(page, secret)), 'the secret is gone from the page');
      await assertLabelled(page);
      await shot(page, 'api-keys');
      // After a reload too: only the id.
      await page.reload();
      await page.locator('.admin-table tbody tr', { hasText: keyId }).waitFor();
      assert.ok(!(await onPage(page, secret)), 'the secret is not listed');
    });

    await t.test('SDK keys: a key with an allowed origin', async () => {
      await openPage(page, 'SDK keys');
      await page.getByLabel('Name').fill('Shop (production)');
      await page.getByLabel('Allowed origins').fill('https://shop.example');
      await page.getByRole('button', { name: 'Create SDK key' }).click();
      const row = page.locator('.admin-table tbody tr', { hasText: 'Shop (production)' });
      await row.waitFor();
      assert.match(await row.textContent(), /https:\/\/shop\.example/);
      assert.match(await row.textContent(), /sdk_/);
      const keys = must(await api('GET', `/api/v1/accounts/${account}/sdk-keys`, key), 200, 'sdk keys');
      assert.deepEqual(keys.map((k) => k.allowed_origins), [['https://shop.example']]);
      await assertLabelled(page);
      await shot(page, 'sdk-keys');

      // The provider takes the SDK out of the tariff: a new key is refused, in the server's words.
      must(
        await api('PUT', '/api/v1/tariffs/business-12', OPERATOR, {
          name: 'Business 12', term_months: 12, price_per_seat: '12000.00',
          features: { max_participants: 10, max_meeting_minutes: 240, sdk_embedding: false, screen_share: true,
            recording: { storage_quota_mb: 1024, retention_days: 30 } },
        }),
        200, 'tariff without the SDK');
      const refusal = await api('POST', `/api/v1/accounts/${account}/sdk-keys`, key, { name: 'probe', allowed_origins: ['https://shop.example'] });
      assert.equal(refusal.status, 403, JSON.stringify(refusal.body));
      await page.getByLabel('Name').fill('Shop (staging)');
      await page.getByLabel('Allowed origins').fill('https://staging.shop.example');
      await page.getByRole('button', { name: 'Create SDK key' }).click();
      const alert = page.locator('#sdk-key-error');
      await alert.locator('p').first().waitFor();
      assert.equal(await alert.getAttribute('role'), 'alert');
      assert.equal(await alert.getAttribute('data-code'), refusal.body.error.code);
      assert.equal(await alert.locator('p').first().textContent(), refusal.body.error.message);
      assert.match(await alert.textContent(), /tariff that includes the SDK/);
      await shot(page, 'sdk-keys-refused');
      assert.equal(await page.locator('.admin-table tbody tr', { hasText: 'Shop (staging)' }).count(), 0);
    });

    let webhookSecret;
    await t.test('Webhooks: an endpoint with its signing secret shown once', async () => {
      await openPage(page, 'Webhooks');
      await page.getByLabel('Endpoint URL').fill(`${receiver.url}/parley-events`);
      await page.getByRole('checkbox', { name: /meeting\.started/ }).check();
      await page.getByRole('checkbox', { name: /meeting\.ended/ }).check();
      await page.getByRole('button', { name: 'Add endpoint' }).click();
      const secretInput = page.locator('#webhook-fresh input[data-secret]');
      await secretInput.waitFor();
      webhookSecret = await secretInput.inputValue();
      assert.match(webhookSecret, /^whsec_/);
      await page.locator('.admin-table tbody tr', { hasText: '/parley-events' }).waitFor();
      await shot(page, 'webhooks');
      await page.locator('#webhook-fresh button', { hasText: 'Done' }).click();
    });

    let meeting;
    let host;
    await t.test('a failed delivery shows in the log, and Retry delivers it', async () => {
      // The admin starts a meeting and really joins it: meeting.started goes to the receiver,
      // which answers 500 twice.
      meeting = must(await api('POST', '/api/v1/meetings', ada.token, { title: 'Integration demo' }), 201, 'meeting');
      host = await joinAs(browser, meeting.host_link, 'Ada', consoleLog);
      await waitFor(() => receiver.requests.filter((r) => r.body.includes('"meeting.started"')).length >= 2, {
        what: 'two failed attempts of meeting.started at the receiver',
      });

      await openPage(page, 'Delivery log');
      const failedRow = page.locator('tr.delivery-failed', { hasText: 'meeting.started' });
      await waitFor(async () => {
        await page.getByRole('button', { name: 'Refresh' }).click();
        await page.locator('.pager[aria-busy]').waitFor({ state: 'detached' });
        return (await failedRow.count()) === 1;
      }, { what: 'the failed meeting.started message in the log' });
      const cells = await failedRow.locator('td').allTextContents();
      assert.equal(cells[2], `${receiver.url}/…`, 'the recipient, its path masked');
      assert.equal(cells[3], 'Failed');
      assert.equal(cells[4], '2 of 2');
      assert.match(cells[6], /500/, 'the last error names the receiver\'s answer');
      await failedRow.locator('summary').click();
      assert.match(await failedRow.locator('details').textContent(), /#1 .*HTTP 500[\s\S]*#2 .*HTTP 500/);
      await shot(page, 'deliveries');

      // The receiver is back; Retry, by keyboard.
      receiver.answer(200);
      const before = receiver.requests.length;
      await failedRow.getByRole('button', { name: /^Retry message/ }).focus();
      await page.keyboard.press('Enter');
      const delivered = await waitFor(
        () => receiver.requests.slice(before).find((r) => r.answered === 200 && r.body.includes('"meeting.started"')),
        { what: 'the retried meeting.started delivered' },
      );
      const ts = delivered.headers['x-parley-timestamp'];
      const expected = crypto.createHmac('sha256', webhookSecret).update(`${ts}.${delivered.body}`).digest('hex');
      assert.equal(delivered.headers['x-parley-signature'], `v1=${expected}`, 'signed with the secret shown once');
      assert.equal(JSON.parse(delivered.body).data.meeting_id, meeting.id);
      await page.locator('[role=status]', { hasText: 'queued again' }).waitFor();
      const deliveredRow = page.locator('tr.delivery-delivered', { hasText: 'meeting.started' });
      await waitFor(async () => {
        await page.getByRole('button', { name: 'Refresh' }).click();
        await page.locator('.pager[aria-busy]').waitFor({ state: 'detached' });
        return (await deliveredRow.count()) === 1;
      }, { what: 'the message shown delivered' });
      assert.equal(await page.locator('tr.delivery-failed', { hasText: 'meeting.started' }).count(), 0);
      await shot(page, 'deliveries-after-retry');
    });

    await t.test('CRM: a generic webhook CRM, the card secret once, a CRM user linked', async () => {
      await openPage(page, 'CRM connection');
      await page.locator('#crm-current', { hasText: 'Not connected' }).waitFor();
      await page.getByRole('radio', { name: 'Generic webhook' }).check();
      await page.getByLabel('Your CRM’s endpoint URL').fill(`${receiver.url}/crm`);
      await page.getByLabel('Shared secret').fill(CRM_SECRET);
      await page.getByLabel('CRM web address (frame origin)').fill('https://crm.example.com');
      await assertLabelled(page);
      await page.locator('#crm-connect').click();
      // Not 'Connected': hasText is a case-insensitive substring, and 'Not connected' matches it.
      await page.locator('#crm-current', { hasText: 'Generic webhook' }).waitFor();
      const current = await page.textContent('#crm-current');
      assert.match(current, /Generic webhook/);
      assert.match(current, /webhook secret/, 'which secrets are stored');
      assert.ok(!(await onPage(page, CRM_SECRET)), 'the CRM secret is never shown back, nor left in its field');
      const crm = must(await api('GET', `/api/v1/accounts/${account}/crm`, key), 200, 'crm');
      assert.equal(crm.kind, 'webhook');
      assert.equal(crm.frame_origin, 'https://crm.example.com');

      await page.locator('#card-secret-state', { hasText: 'No secret yet' }).waitFor();
      await page.click('#card-secret-rotate');
      await page.getByRole('dialog').getByRole('button', { name: 'Create' }).click();
      const cardSecret = await page.locator('.secret-once input[data-secret]').inputValue();
      assert.ok(cardSecret.length >= 32, 'a card secret');
      await page.locator('#card-secret-state', { hasText: 'A secret is set' }).waitFor();

      await page.getByLabel('CRM user id').fill('7');
      await page.getByLabel('Parley user').selectOption({ label: `Ada Admin <${ADA}>` });
      await page.getByRole('button', { name: 'Link', exact: true }).click();
      await page.locator('.admin-table tbody tr', { hasText: ADA }).waitFor();
      const links = must(await api('GET', `/api/v1/accounts/${account}/crm/users`, key), 200, 'links');
      assert.deepEqual(links.links.map((l) => [l.crm_user_id, l.user_id]), [['7', ada.user.id]]);
      await shot(page, 'crm');
    });

    await t.test('Usage: today\'s meeting is a bar, in words and in the table', async () => {
      const today = moscowToday();
      await openPage(page, 'Usage');
      const bar = page.locator(`svg[data-chart="meetings"] rect.bar[data-date="${today}"]`);
      await bar.waitFor();
      assert.equal(await bar.getAttribute('data-value'), '1');
      assert.ok(Number(await bar.getAttribute('height')) > 0, 'a visible bar');
      assert.match(await bar.locator('title').textContent(), /1 meeting$/);
      const svg = page.locator('svg[data-chart="meetings"]');
      assert.equal(await svg.getAttribute('role'), 'img');
      assert.match(await svg.locator('desc').textContent(), /1 in total/);
      assert.equal(await page.textContent('#total-meetings'), '1');
      // The seat chart: the admin hosted today, one of three seats.
      const seat = page.locator(`svg[data-chart="seats"] rect.bar[data-date="${today}"]`);
      assert.equal(await seat.getAttribute('data-value'), '1');
      assert.match(await seat.locator('title').textContent(), /1 of 3 seats in use/);
      // The data table alternative.
      await page.locator('summary', { hasText: 'The figures as a table' }).click();
      const first = page.locator('#usage-table tbody tr').first();
      const cells = await first.locator('td').allTextContents();
      assert.equal(cells[0], today.split('-').reverse().join('.'));
      assert.equal(cells[1], '1');
      assert.equal(cells[4], '3');
      await shot(page, 'usage');
    });

    await t.test('Recordings: listed with their size against the quota, opened, deleted', async () => {
      // The host records a few seconds of the running meeting.
      const path_ = `/api/v1/meetings/${meeting.id}/recording`;
      const rid = must(await api('POST', path_, meeting.host_key), 201, 'start recording').recording_id;
      await waitFor(async () => {
        const r = must(await api('GET', `/api/v1/accounts/${account}/recordings`, key), 200, 'recordings');
        return r.storage.used_bytes > 20_000;
      }, { what: 'media written to the recording' });
      must(await api('DELETE', path_, meeting.host_key), 200, 'stop recording');
      const rec = await waitFor(async () => {
        const r = must(await api('GET', `/api/v1/recordings/${rid}`, key), 200, 'recording');
        return !['recording', 'processing'].includes(r.status) && r;
      }, { timeout: 60_000, what: 'the recording finished' });

      await openPage(page, 'Recordings');
      const row = page.locator('.admin-table tbody tr', { hasText: 'Integration demo' });
      await row.waitFor();
      const cells = await row.locator('td').allTextContents();
      // The size as shown (KB or MB, 1024-based) is the recording's size, to the rounding.
      const size = /^(\d+(?:\.\d)?) (KB|MB)$/.exec(cells[3]);
      assert.ok(size, `a size: ${cells[3]}`);
      const shown = Number(size[1]) * (size[2] === 'KB' ? 1024 : 1024 * 1024);
      assert.ok(Math.abs(shown - rec.bytes) <= 0.05 * rec.bytes, `${cells[3]} for ${rec.bytes} bytes`);
      assert.match(cells[2], /^\d+ s$|^\d+ min/, 'its length');
      assert.ok(cells[4].startsWith(rec.status === 'ready' ? 'Ready' : 'Failed'), cells[4]);
      assert.equal(await row.getByRole('link', { name: /Open the recording/ }).getAttribute('href'), `/recordings/${rid}`);
      assert.doesNotMatch(await page.textContent('#storage-figures'), /^0 bytes/, 'the storage used counts it');
      assert.match(await page.textContent('#storage-figures'), /of 1 GB used/);
      await shot(page, 'recordings');

      // Delete, by keyboard, through the confirmation dialog.
      await row.getByRole('button', { name: /Delete the recording/ }).focus();
      await page.keyboard.press('Enter');
      const dialog = page.getByRole('dialog');
      await dialog.waitFor();
      await page.keyboard.press('Escape');
      await dialog.waitFor({ state: 'detached' });
      assert.equal(await row.count(), 1, 'Escape cancels');
      await row.getByRole('button', { name: /Delete the recording/ }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Delete recording' }).click();
      await page.locator('.pager .empty', { hasText: 'No recordings yet' }).waitFor();
      assert.match(await page.textContent('#storage-figures'), /^0 bytes of 1 GB used/);
      must(await api('GET', `/api/v1/recordings/${rid}`, key), 404, 'deleted');
    });

    await t.test('the audit log, filtered', async () => {

      await openPage(page, 'Audit log');
      await page.getByLabel('Action').fill('sdk_key.');
      await page.getByRole('button', { name: 'Apply' }).click();
      const row = page.locator('.admin-table tbody tr', { hasText: 'sdk_key.create' });
      await row.waitFor();
      assert.equal(await page.locator('.admin-table tbody tr').count(), 1, 'only the SDK key action');
      assert.match(await row.textContent(), new RegExp(`User\\s*${ada.user.id}`));
      await shot(page, 'audit');
    });

    must(await api('POST', `/api/v1/meetings/${meeting.id}/end`, meeting.host_key), 204, 'end the meeting');
    await host.context.close();
  } catch (e) {
    await page.screenshot({ path: path.join(ARTIFACTS, 'failure-admin-integrations.png'), fullPage: true }).catch(() => {});
    throw new Error(`${e.message}\n--- server log ---\n${tail(server.logPath)}`);
  }
});
