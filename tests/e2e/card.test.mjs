// The CRM deal card in a real browser: a CRM-like page on a second local origin frames the signed
// card URL; the account's CRM connection (a generic webhook CRM: that same local server, which
// answers the signed `deal.read`) holds that origin, so the card loads with the deal's title and
// contacts from the CRM; "Start now" gives the meeting links and the meeting shows among the
// deal's past meetings. A page on a third origin (not the account's CRM) frames a valid card URL
// too, and Chromium refuses it (frame-ancestors). Screenshot to artifacts/card-*.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ARTIFACTS, freePort, launchBrowser, startServer, tail, waitFor } from './harness.mjs';

const ADMIN = `e2e-admin-${crypto.randomBytes(8).toString('hex')}`;
/** The generic CRM's webhook secret (both ways: Parley signs its calls with it). */
const CRM_SECRET = `e2e-crm-${crypto.randomBytes(12).toString('hex')}`;
const DEAL_TITLE = 'Поставка оборудования для ООО Ромашка';
let server;
let browser;
const crmServers = [];
const consoleLog = [];

/** Parley's side of the generic CRM contract: `deal.read` signed with CRM_SECRET. */
function answerCrmCall(req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const ts = req.headers['x-parley-timestamp'] || '';
    const want = `v1=${crypto.createHmac('sha256', CRM_SECRET).update(`${ts}.`).update(body).digest('hex')}`;
    const got = String(req.headers['x-parley-signature'] || '').split(',');
    if (!got.includes(want)) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'bad signature' }));
      return;
    }
    const call = JSON.parse(body.toString('utf8'));
    if (call.type !== 'deal.read' || call.deal_id !== '42') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not found' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      deal: {
        id: '42', title: DEAL_TITLE, responsible_user_id: '7',
        contacts: [{ id: 'c-1', name: 'Анна Смирнова', emails: ['anna@client.example'] }],
      },
    }));
  });
}

/** A local "CRM": `POST /parley` answers Parley's signed calls; every other path answers a page
 * that frames `cardUrl()`. */
async function startCrm(host, cardUrl) {
  const port = await freePort();
  const srv = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/parley') {
      answerCrmCall(req, res);
      return;
    }
    const src = cardUrl().replace(/&/g, '&amp;').replace(/"/g, '&quot;');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><head><title>Deal 42 — CRM</title></head><body>
      <h1>Deal 42 (CRM)</h1>
      <iframe id="card" title="Parley" src="${src}" width="480" height="760" allow="clipboard-write"></iframe>
      </body></html>`);
  });
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  crmServers.push(srv);
  return `http://${host}:${port}`;
}

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

function signedCardUrl(account, secret, deal, crmUser) {
  const exp = Math.floor(Date.now() / 1000) + 600;
  const text = `account=${account}&deal=${deal}&crm_user=${crmUser}&exp=${exp}`;
  const sig = crypto.createHmac('sha256', secret).update(text).digest('hex');
  return `${server.url}/crm/card?${text}&sig=${sig}`;
}

before(async () => {
  process.env.PARLEY_ADMIN_TOKEN = ADMIN;
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'card-browser-console.log'), consoleLog.join('\n'));
  for (const s of crmServers) s.close();
  await browser?.close().catch(() => {});
  await server?.stop().catch(() => {});
});

/** An account with a paid lot, a member with a seat linked to CRM user 7, the CRM at `crmOrigin`
 * connected (its web origin frames the card), and a card secret. */
async function setUpAccount(crmOrigin) {
  must(
    await api('PUT', '/api/v1/tariffs/business-12', ADMIN, {
      name: 'Business', term_months: 12, price_per_seat: '12000.00',
      features: { max_participants: 10, max_meeting_minutes: 240,
        recording: { storage_quota_mb: 1024, retention_days: 30 }, sdk_embedding: true,
        results_to_recipients: true, screen_share: true },
    }),
    200, 'tariff');
  const acc = must(
    await api('POST', '/api/v1/accounts', ADMIN, {
      name: 'ООО Ромашка', kind: 'legal_entity', inn: '7707083893', resident: true,
      crm_system: 'sbercrm', crm_external_id: 'E2E-CARD', address: 'Москва',
    }),
    201, 'account');
  const id = acc.account.id;
  const key = acc.api_key.bearer;
  const order = must(
    await api('POST', `/api/v1/accounts/${id}/orders`, key, { type: 'initial', tariff: 'business-12', seats: 1 },
      { 'idempotency-key': 'e2e-order' }),
    201, 'order');
  const pay = must(
    await api('POST', `/api/v1/accounts/${id}/invoices/${order.invoice.id}/payments`, ADMIN,
      { method: 'bank_transfer', amount: order.invoice.amount }, { 'idempotency-key': 'e2e-pay' }),
    201, 'payment');
  // No SMTP in this run: the invitation is saved even though its email cannot go out (502).
  const inv = await api('POST', `/api/v1/accounts/${id}/invitations`, key, { email: 'rep@example.com', role: 'member' });
  assert.ok([201, 502].includes(inv.status), JSON.stringify(inv.body));
  const users = must(await api('GET', `/api/v1/accounts/${id}/users`, key), 200, 'users');
  const user = users.map((u) => u.user).find((u) => u.email === 'rep@example.com');
  assert.ok(user, JSON.stringify(users));
  must(await api('PUT', `/api/v1/accounts/${id}/users/${user.id}/seat`, key, { lot_id: pay.lot_id }), 201, 'seat');
  must(await api('POST', `/api/v1/accounts/${id}/crm/users`, key, { crm_user_id: '7', user_id: user.id }), 201, 'link');
  const crm = must(
    await api('PUT', `/api/v1/accounts/${id}/crm`, key, {
      kind: 'webhook', frame_origin: crmOrigin, settings: { url: `${crmOrigin}/parley`, secret: CRM_SECRET },
    }),
    200, 'CRM connection');
  assert.equal(crm.frame_origin, crmOrigin);
  const card = must(await api('POST', `/api/v1/accounts/${id}/crm/card-secret`, key, {}), 201, 'card secret');
  assert.equal(card.crm_origin, crmOrigin, 'the card is framed by the connection\'s origin');
  return { id, secret: card.secret };
}

test('the deal card works inside the CRM and nowhere else', async () => {
  let account;
  const crm = await startCrm('127.0.0.1', () => signedCardUrl(account.id, account.secret, '42', '7'));
  // Same page, another origin (localhost is not 127.0.0.1 for the browser): not the account's CRM.
  const evil = await startCrm('localhost', () => signedCardUrl(account.id, account.secret, '42', '7'));
  account = await setUpAccount(crm);

  const context = await browser.newContext({ viewport: { width: 640, height: 860 } });
  const page = await context.newPage();
  page.on('console', (m) => consoleLog.push(`[crm] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`[crm] pageerror: ${e.message}`));
  try {
    await page.goto(`${crm}/deals/42`);
    const frame = await waitFor(async () => {
      const f = await (await page.$('#card'))?.contentFrame();
      return f && (await f.getAttribute('body', 'data-ready').catch(() => null)) === 'true' ? f : null;
    }, { what: 'the card to load in the CRM iframe' });
    // Read from the CRM through the connection.
    assert.equal(await frame.textContent('#deal-title'), DEAL_TITLE);
    assert.equal(await frame.isVisible('#contacts-empty'), false);
    assert.match(await frame.textContent('#contacts'), /Анна Смирнова <anna@client\.example>/);

    // Keyboard: focus Start now and press Enter.
    await frame.focus('#start-now');
    await page.keyboard.press('Enter');
    const hostLink = await waitFor(async () => frame.inputValue('#host-link').catch(() => ''), {
      what: 'the host link after Start now',
    });
    assert.match(hostLink, /\/m\/[^?]+\?t=/);
    assert.match(await frame.inputValue('#invite-link'), /\/m\/[^?]+\?invite=/);
    await waitFor(async () => (await frame.$$('#past li.past-meeting')).length === 1, {
      what: 'the meeting among the past meetings',
    });
    await frame.click('#copy-links');
    await waitFor(async () => /Copied|Ctrl\+C/.test(await frame.textContent('#status')), { what: 'copy feedback' });
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'card-in-crm.png') });

    // The other origin: Chromium refuses to render the card in its frame.
    const other = await context.newPage();
    const refusals = [];
    other.on('console', (m) => {
      consoleLog.push(`[evil] ${m.type()}: ${m.text()}`);
      if (/frame-ancestors/.test(m.text())) refusals.push(m.text());
    });
    await other.goto(`${evil}/deals/42`);
    const blocked = await waitFor(async () => {
      const f = await (await other.$('#card'))?.contentFrame();
      if (!f) return null;
      const url = f.url();
      if (url.startsWith('chrome-error://')) return url;
      return refusals.length ? `refused: ${refusals[0]}` : null;
    }, { what: 'Chromium to refuse the card in a foreign frame' });
    const f = await (await other.$('#card')).contentFrame();
    assert.equal(await f.$('#deal-title').catch(() => null), null, `card content rendered in a foreign frame (${blocked})`);
    await other.screenshot({ path: path.join(ARTIFACTS, 'card-foreign-origin-refused.png') });
  } catch (e) {
    await page.screenshot({ path: path.join(ARTIFACTS, 'failure-card.png') }).catch(() => {});
    throw new Error(`${e.message}\n--- server log ---\n${tail(server.logPath)}`);
  } finally {
    await context.close();
  }
});
