// The account pages in a real browser, with the mail going over real SMTP: the server sends its
// invitation and reset emails to a small SMTP receiver in this file (TCP on loopback, speaking
// 220/250/354/221), and the test opens the links those emails carry.
//
// An account admin invites a user through the API; the user opens the emailed link, sees who
// invited them, sets a name and a password and lands signed in; signs out; a wrong password shows
// the server's message, repeated failures its lockout message; a password reset through the
// emailed link makes the new password work and the old one fail (and ends the sessions that
// were open); `?next=` never leaves the site. Screenshots: artifacts/users-*.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ARTIFACTS, launchBrowser, startServer, tail, waitFor } from './harness.mjs';

const ADMIN = `e2e-admin-${crypto.randomBytes(8).toString('hex')}`;
const ACCOUNT_NAME = 'ООО Ромашка';
const BORIS = 'boris@example.com';
const FIRST_PASSWORD = 'first correct horse';
const NEW_PASSWORD = 'second battery staple';

let server;
let browser;
let smtp;
const consoleLog = [];

// ---- a minimal SMTP receiver ----

/** Undoes the transfer encoding of a single-part text message (lettre picks 7bit, QP or base64). */
function parseMessage(raw) {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const headers = {};
  for (const line of head.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = raw.slice(split + 4);
  const encoding = (headers['content-transfer-encoding'] || '').toLowerCase();
  if (encoding === 'quoted-printable') {
    const bytes = body
      .replace(/=\r\n/g, '')
      .replace(/=([0-9A-Fa-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
    body = Buffer.from(bytes, 'latin1').toString('utf8');
  } else if (encoding === 'base64') {
    body = Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  }
  return { headers, body };
}

/** Accepts every message on a loopback port; `messages` holds {from, to[], subject, body}. */
async function startSmtp() {
  const messages = [];
  const sockets = new Set();
  const srv = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffer = '';
    let inData = false;
    let envelope = { from: null, to: [] };
    const reply = (line) => socket.write(`${line}\r\n`);
    reply('220 parley-e2e ESMTP ready');
    socket.on('data', (chunk) => {
      buffer += chunk.toString('latin1');
      for (;;) {
        if (inData) {
          const end = buffer.indexOf('\r\n.\r\n');
          if (end < 0) return;
          // Undo dot-stuffing (RFC 5321 4.5.2).
          const raw = buffer.slice(0, end).replace(/^\.\./, '.').replace(/\r\n\.\./g, '\r\n.');
          buffer = buffer.slice(end + 5);
          inData = false;
          const { headers, body } = parseMessage(Buffer.from(raw, 'latin1').toString('utf8'));
          messages.push({ ...envelope, subject: headers.subject || '', headers, body });
          envelope = { from: null, to: [] };
          reply('250 2.0.0 queued');
          continue;
        }
        const eol = buffer.indexOf('\r\n');
        if (eol < 0) return;
        const line = buffer.slice(0, eol);
        buffer = buffer.slice(eol + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') {
          socket.write('250-parley-e2e\r\n250 8BITMIME\r\n');
        } else if (verb === 'HELO' || verb === 'NOOP') {
          reply('250 OK');
        } else if (verb === 'RSET') {
          envelope = { from: null, to: [] };
          reply('250 OK');
        } else if (verb === 'MAIL') {
          envelope.from = (line.match(/<([^>]*)>/) || [])[1] ?? null;
          reply('250 2.1.0 OK');
        } else if (verb === 'RCPT') {
          envelope.to.push(((line.match(/<([^>]*)>/) || [])[1] ?? '').toLowerCase());
          reply('250 2.1.5 OK');
        } else if (verb === 'DATA') {
          inData = true;
          reply('354 End data with <CR><LF>.<CR><LF>');
        } else if (verb === 'QUIT') {
          reply('221 2.0.0 Bye');
          socket.end();
          return;
        } else {
          reply('502 5.5.2 Command not recognized');
        }
      }
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: srv.address().port,
    messages,
    /** The one-time link (`…#token=<prefix>…`) of the `n`th message to `to` with `subject`. */
    async link(to, subject, prefix, n = 1) {
      const re = new RegExp(`https?://\\S+#token=${prefix}[A-Za-z0-9]+`);
      return waitFor(
        () => {
          const mine = messages.filter((m) => m.to.includes(to) && m.subject.includes(subject));
          return mine.length >= n && (mine[n - 1].body.match(re) || [])[0];
        },
        { timeout: 30_000, what: `mail "${subject}" #${n} to ${to}` },
      );
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => srv.close(resolve));
    },
  };
}

// ---- API and page helpers ----

async function api(method, p, bearer, body) {
  const res = await fetch(`${server.url}${p}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
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

async function newPage(name) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  const page = await context.newPage();
  page.on('console', (m) => consoleLog.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`[${name}] pageerror: ${e.message}`));
  // Nothing may ever load from another site; a redirect off-site would fail loudly here.
  await context.route(
    (url) => url.origin !== new URL(server.url).origin,
    (route) => route.abort('blockedbyclient'),
  );
  return page;
}

async function screenshot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `users-${name}.png`), fullPage: true });
}

/** Every visible form control of the page has a label (its accessible name comes from a <label>). */
async function assertLabelled(page) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea')]
      .filter((el) => el.type !== 'hidden' && el.offsetParent !== null)
      .filter((el) => !el.labels || el.labels.length === 0)
      .map((el) => el.id || el.name),
  );
  assert.deepEqual(unlabelled, [], `inputs without a label on ${page.url()}`);
}

/** Submits the sign-in form; returns the server's status and, for a refusal, its JSON body. */
async function submitSignIn(page, email, password) {
  await page.fill('#email', email);
  await page.fill('#password', password);
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/sign-in')),
    page.click('#submit'),
  ]);
  // A success navigates at once, and the body of a response navigated away from is gone.
  return { status: res.status(), body: res.ok() ? null : await res.json() };
}

/** The sign-in form's error once it shows `expected` (the server's own message). */
async function errorShown(page, expected) {
  await page.locator('#form-error').filter({ hasText: expected }).waitFor({ timeout: 10_000 });
  return page.locator('#form-error').textContent();
}

// ---- the run ----

before(async () => {
  smtp = await startSmtp();
  process.env.PARLEY_ADMIN_TOKEN = ADMIN;
  process.env.PARLEY_SMTP_URL = `smtp://127.0.0.1:${smtp.port}`;
  process.env.PARLEY_SMTP_FROM = 'Parley <no-reply@parley.test>';
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'users-browser-console.log'), consoleLog.join('\n'));
  await browser?.close().catch(() => {});
  await server?.stop().catch(() => {});
  await smtp?.close();
});

test('invitation, sign-out, sign-in errors and lockout, password reset, no open redirect', async (t) => {
  try {
    // An account; its API key invites an account admin, who accepts through the API.
    const created = must(
      await api('POST', '/api/v1/accounts', ADMIN, {
        name: ACCOUNT_NAME, kind: 'legal_entity', inn: '7707083893', resident: true,
        crm_system: 'sbercrm', crm_external_id: 'e2e-users', address: 'Москва',
      }),
      201,
      'account',
    );
    const account = created.account.id;
    const key = created.api_key.bearer;
    must(
      await api('POST', `/api/v1/accounts/${account}/invitations`, key, {
        email: 'ada@example.com', role: 'account_admin', display_name: 'Ada',
      }),
      201,
      'invite the admin',
    );
    const adaLink = await smtp.link('ada@example.com', 'You are invited to Parley', 'inv_');
    const adaToken = new URL(adaLink).hash.replace('#token=', '');
    const ada = must(
      await api('POST', '/api/v1/invitations/accept', null, { token: adaToken, password: FIRST_PASSWORD }),
      200,
      'admin accepts',
    );

    // The admin (by session) invites Boris.
    must(
      await api('POST', `/api/v1/accounts/${account}/invitations`, ada.token, { email: BORIS, role: 'member' }),
      201,
      'the admin invites Boris',
    );
    const invitation = await smtp.link(BORIS, 'You are invited to Parley', 'inv_');
    assert.equal(new URL(invitation).origin, server.url);
    assert.equal(new URL(invitation).pathname, '/invitation');

    const boris = await newPage('boris');
    await t.test('the emailed invitation link: who invited, name and password, signed in', async () => {
      await boris.goto(invitation);
      await boris.locator('#accept-form:not([hidden])').waitFor({ timeout: 10_000 });
      assert.equal(await boris.textContent('#invited-by'), `${ACCOUNT_NAME} invited you to Parley.`);
      assert.equal(await boris.textContent('#invited-email'), BORIS);
      assert.match(await boris.textContent('#invited-until'), /\d/);
      assert.ok(!boris.url().includes('inv_'), `the token left the address bar: ${boris.url()}`);
      await assertLabelled(boris);
      await screenshot(boris, 'invitation');

      // By keyboard: the name field has focus; Tab through the fields, Enter submits.
      assert.equal(await boris.evaluate(() => document.activeElement.id), 'display-name');
      await boris.keyboard.type('Boris Petrov');
      await boris.keyboard.press('Tab');
      await boris.keyboard.type('too short');
      await boris.keyboard.press('Tab');
      await boris.keyboard.type('too short');
      await boris.keyboard.press('Enter');
      // The server's password rule, as the server words it.
      const rule = await boris.locator('#form-error').filter({ hasText: 'password' }).textContent();
      assert.equal(rule, 'The password must be 10 to 128 characters.');
      assert.equal(await boris.getAttribute('#password', 'aria-invalid'), 'true');

      await boris.fill('#password', FIRST_PASSWORD);
      await boris.fill('#password2', `${FIRST_PASSWORD}!`);
      await boris.press('#password2', 'Enter');
      await boris.locator('#form-error').filter({ hasText: 'not the same' }).waitFor();

      await boris.fill('#password2', FIRST_PASSWORD);
      await boris.press('#password2', 'Enter');
      await boris.waitForURL(`${server.url}/`);
      await boris.locator('#signed-in:not([hidden])').waitFor({ timeout: 10_000 });
      assert.equal(
        await boris.textContent('#signed-in-as'),
        `Signed in as Boris Petrov (${BORIS}) · ${ACCOUNT_NAME}`,
      );
      await screenshot(boris, 'landing-signed-in');
    });

    await t.test('sign out', async () => {
      await boris.click('#sign-out');
      await boris.locator('#sign-in-link').waitFor({ state: 'visible' });
      assert.equal(await boris.textContent('#account-status'), 'You are signed out.');
      assert.equal(await boris.evaluate(() => document.activeElement.id), 'sign-in-link');
      const status = await boris.evaluate(async () => (await fetch('/api/v1/me')).status);
      assert.equal(status, 401, 'the session is gone');
      await screenshot(boris, 'landing-signed-out');
    });

    await t.test('a wrong password shows the server message; busy while the request runs', async () => {
      await boris.click('#sign-in-link');
      await boris.waitForURL(`${server.url}/sign-in`);
      await assertLabelled(boris);
      assert.equal(await boris.getAttribute('#form-error', 'role'), 'alert');

      // Hold the request to see the page's state while it runs.
      let release;
      const held = new Promise((r) => {
        release = r;
      });
      await boris.route('**/api/v1/auth/sign-in', async (route) => {
        await held;
        await route.continue();
      });
      await boris.fill('#email', BORIS);
      await boris.fill('#password', 'not my password');
      const answer = boris.waitForResponse((r) => r.url().endsWith('/api/v1/auth/sign-in'));
      await boris.click('#submit');
      await boris.locator('#submit[disabled]').waitFor();
      assert.equal(await boris.textContent('#submit'), 'Signing in…');
      assert.equal(await boris.getAttribute('#sign-in-form', 'aria-busy'), 'true');
      release();
      const res = await answer;
      await boris.unroute('**/api/v1/auth/sign-in');
      const body = await res.json();
      assert.equal(res.status(), 401);
      assert.equal(await errorShown(boris, body.error.message), 'The email or the password is wrong.');
      assert.equal(await boris.isEnabled('#submit'), true);
      assert.equal(await boris.getAttribute('#password', 'aria-invalid'), 'true');
      await screenshot(boris, 'sign-in-wrong-password');
    });

    await t.test('repeated failures lock sign-in with the time it ends', async () => {
      let r;
      for (let i = 2; i <= 5; i++) {
        r = await submitSignIn(boris, BORIS, `wrong password ${i}`);
        if (r.status === 429) break;
      }
      assert.equal(r.status, 429, 'locked after five failures');
      const shown = await errorShown(boris, r.body.error.message);
      assert.match(shown, /locked\. Try again after \d{2}:\d{2} \(Europe\/Moscow\)\.$/);
      // Even the right password is refused while the lock runs.
      r = await submitSignIn(boris, BORIS, FIRST_PASSWORD);
      assert.equal(r.status, 429);
      assert.equal(await errorShown(boris, r.body.error.message), shown);
      await screenshot(boris, 'sign-in-locked');
    });

    // Ada signed in from her own browser before the reset.
    const adaPage = await newPage('ada');
    await adaPage.goto(`${server.url}/sign-in`);
    assert.equal((await submitSignIn(adaPage, 'ada@example.com', FIRST_PASSWORD)).status, 200);
    await adaPage.waitForURL(`${server.url}/`);
    await adaPage.locator('#signed-in:not([hidden])').waitFor();

    await t.test('password reset through the emailed link', async () => {
      const page = await newPage('reset');
      await page.goto(`${server.url}/sign-in`);
      await page.click('#forgot-link');
      await page.waitForURL(`${server.url}/forgot-password`);
      await assertLabelled(page);
      // An unknown address gets the same confirmation as a known one.
      await page.fill('#email', 'nobody@example.com');
      await page.press('#email', 'Enter');
      await page.locator('#sent:not([hidden])').waitFor();
      const unknown = await page.textContent('#sent-message');
      await page.goto(`${server.url}/forgot-password`);
      await page.fill('#email', 'ada@example.com');
      await page.click('#submit');
      await page.locator('#sent:not([hidden])').waitFor();
      const known = await page.textContent('#sent-message');
      assert.equal(known.replace('ada@example.com', 'X'), unknown.replace('nobody@example.com', 'X'));
      assert.equal(await page.evaluate(() => document.activeElement.id), 'sent-message');
      await screenshot(page, 'forgot-password');

      const link = await smtp.link('ada@example.com', 'Reset your Parley password', 'rst_');
      assert.equal(new URL(link).pathname, '/reset-password');
      await page.goto(link);
      await page.locator('#reset-form:not([hidden])').waitFor();
      assert.ok(!page.url().includes('rst_'), `the token left the address bar: ${page.url()}`);
      await assertLabelled(page);
      await screenshot(page, 'reset-password');
      await page.fill('#password', NEW_PASSWORD);
      await page.fill('#password2', 'something else entirely');
      await page.click('#submit');
      await page.locator('#form-error').filter({ hasText: 'not the same' }).waitFor();
      await page.fill('#password2', NEW_PASSWORD);
      await page.click('#submit');
      await page.waitForURL(`${server.url}/sign-in?password=changed`);
      assert.equal(await page.textContent('#notice'), 'Your password has been changed. Sign in with the new one.');
      await screenshot(page, 'sign-in-after-reset');

      // The old password fails, the new one works.
      let r = await submitSignIn(page, 'ada@example.com', FIRST_PASSWORD);
      assert.equal(r.status, 401);
      await errorShown(page, r.body.error.message);
      r = await submitSignIn(page, 'ada@example.com', NEW_PASSWORD);
      assert.equal(r.status, 200);
      await page.waitForURL(`${server.url}/`);
      await page.locator('#signed-in-as').filter({ hasText: 'Signed in as Ada (ada@example.com)' }).waitFor();

      // The link is single-use.
      await page.goto(link);
      await page.locator('#reset-form:not([hidden])').waitFor();
      await page.fill('#password', 'a third password here');
      await page.fill('#password2', 'a third password here');
      await page.click('#submit');
      await page.locator('#form-error').filter({ hasText: 'not valid or has expired' }).waitFor();
      await page.locator('#new-link:not([hidden])').waitFor();

      // The session Ada had open elsewhere ended with the reset, and her page says so.
      await adaPage.reload();
      await adaPage.locator('#signed-out:not([hidden])').waitFor();
      assert.equal(await adaPage.textContent('#session-note'), 'The session is not valid; sign in again.');
      await page.context().close();
    });

    await t.test('?next= goes to a path on this site and never off it', async () => {
      const page = await newPage('next');
      const cases = [
        ['/?welcome=1', '/?welcome=1'],
        ['https://evil.example/', '/'],
        ['//evil.example/x', '/'],
        ['/\\evil.example/x', '/'],
        ['javascript:alert(1)', '/'],
      ];
      for (const [next, landing] of cases) {
        await page.goto(`${server.url}/sign-in?next=${encodeURIComponent(next)}`);
        const r = await submitSignIn(page, 'ada@example.com', NEW_PASSWORD);
        assert.equal(r.status, 200, next);
        await page.waitForURL((u) => u.pathname === '/', { timeout: 10_000 });
        assert.equal(page.url(), `${server.url}${landing}`, `next=${next}`);
        await page.locator('#signed-in:not([hidden])').waitFor();
      }
      await screenshot(page, 'sign-in-next-stayed');
      await page.context().close();
    });

    await t.test('an invitation link that was used or mangled says so', async () => {
      const page = await newPage('used-link');
      await page.goto(invitation);
      await page.locator('#invalid:not([hidden])').waitFor();
      assert.equal(
        await page.textContent('#invalid-message'),
        'This invitation link is not valid or has expired; ask for a new one.',
      );
      assert.equal(await page.isHidden('#accept-form'), true);
      await screenshot(page, 'invitation-used');
      await page.goto(`${server.url}/invitation`);
      await page.locator('#invalid:not([hidden])').waitFor();
      await page.context().close();
    });
  } catch (e) {
    throw new Error(`${e.stack || e}\n--- server log ---\n${tail(server.logPath)}`);
  }
});
