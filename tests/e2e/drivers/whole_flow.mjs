// The browser half of the whole-flow test (tests/tests/whole_flow.rs starts the server, the CRM
// stand-in, the SMTP server and the webhook receiver, and checks what arrives there). Not a
// `*.test.mjs` file: the e2e runner does not pick it up; the Rust test runs it with
//
//   node tests/e2e/drivers/whole_flow.mjs '{"crmPage": "...", "repName": "...", "clientName": "...", "talkMs": 3000}'
//
// As people would: the rep opens the deal's page in the CRM, where the deal card sits in an
// iframe; reads the deal and its contacts there, clicks "Start now" and "Invite selected
// contacts"; opens the host link; the client opens the invite link from the invitation in a
// second browser context. Both wait until they receive each other's video and audio, talk for
// a few seconds (fake audio), and the rep ends the meeting for everyone from the meeting UI.
// Finally the card lists the meeting, and its "Summary" shows the meeting's summary inside the
// card (read with the card's own session). Prints one JSON line of what it saw on
// stdout and exits 0, or prints {"ok": false, "error": …} and exits 1 (screenshots of every page
// go to the artifacts directory).

import fs from 'node:fs';
import path from 'node:path';
import { ARTIFACTS, inbound, joinAs, launchBrowser, waitFor } from '../harness.mjs';

const MEDIA_TIMEOUT = 45_000;
/** The whole run; the Rust side has its own, longer deadline. */
const OVERALL_TIMEOUT = 240_000;

const args = JSON.parse(process.argv[2] || '{}');
for (const k of ['crmPage', 'repName', 'clientName']) {
  if (!args[k]) {
    console.error(`missing ${k} in the JSON argument`);
    process.exit(2);
  }
}
const talkMs = Number(args.talkMs ?? 3000);

const consoleLog = [];
const pages = []; // [{name, page}] for failure screenshots
let browser;

function log(text) {
  process.stderr.write(`[whole_flow ${new Date().toISOString().slice(11, 23)}] ${text}\n`);
}

async function screenshotAll(prefix) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const { name, page } of pages) {
    await page
      .screenshot({ path: path.join(ARTIFACTS, `${prefix}-${name}.png`), timeout: 5_000 })
      .catch(() => {});
  }
}

/** The stats entry of `from`'s `source` track as `viewer` receives it. */
async function received(viewer, from, source) {
  const stats = await inbound(viewer.page);
  return stats.find((s) => s.participantId === from.id && s.source === source);
}

/** Waits until `viewer` receives `from`'s `source` and `counter` keeps growing. */
async function assertFlowing(viewer, from, source, counter) {
  const what = `${viewer.name} receiving ${from.name}'s ${source} (${counter})`;
  const first = await waitFor(
    async () => {
      const s = await received(viewer, from, source);
      return s && s[counter] > 0 ? s[counter] : 0;
    },
    { timeout: MEDIA_TIMEOUT, what },
  );
  const later = await waitFor(
    async () => {
      const s = await received(viewer, from, source);
      return s && s[counter] > first ? s[counter] : 0;
    },
    { timeout: 15_000, what: `${what} to keep growing past ${first}` },
  );
  return { first, later };
}

/** The card frame inside the CRM page, once the card has loaded (or failed to). */
async function cardFrame(page) {
  return waitFor(
    async () => {
      const f = await (await page.$('#card'))?.contentFrame();
      if (!f) return null;
      const ready = await f.getAttribute('body', 'data-ready').catch(() => null);
      if (ready === 'error') throw new Error(`the card failed to load: ${await f.textContent('#error')}`);
      return ready === 'true' ? f : null;
    },
    { timeout: 30_000, what: 'the deal card to load in the CRM page' },
  );
}

async function setMic(person, on) {
  const pressed = on ? 'false' : 'true';
  if ((await person.page.getAttribute('#btn-mic', 'aria-pressed')) !== pressed) {
    await person.page.click('#btn-mic');
  }
  await person.page.locator(`#btn-mic[aria-pressed="${pressed}"]`).waitFor({ timeout: 5_000 });
}

/** `speaker` talks alone until `listener` sees them highlighted as the active speaker. */
async function heardSpeaking(speaker, listener) {
  await setMic(listener, false);
  await listener.page
    .locator(`.tile.speaking[data-participant-id="${speaker.id}"]`)
    .first()
    .waitFor({ state: 'attached', timeout: MEDIA_TIMEOUT });
  await setMic(listener, true);
}

async function run() {
  browser = await launchBrowser();
  const seen = { ok: false };

  // 1. The rep opens the deal in the CRM; the card is in the page's iframe.
  const crmContext = await browser.newContext({ viewport: { width: 900, height: 1000 } });
  const crm = await crmContext.newPage();
  pages.push({ name: 'crm', page: crm });
  crm.on('console', (m) => consoleLog.push(`[crm] ${m.type()}: ${m.text()}`));
  crm.on('pageerror', (e) => consoleLog.push(`[crm] pageerror: ${e.message}`));
  await crm.goto(args.crmPage);
  let card = await cardFrame(crm);
  const contacts = await card.$$eval('#contacts input[type="checkbox"]', (boxes) =>
    boxes.map((b) => ({ name: b.dataset.name, email: b.value, checked: b.checked })),
  );
  seen.card = {
    title: await card.textContent('#deal-title'),
    meta: await card.textContent('#deal-meta'),
    contacts,
  };
  log(`card: ${JSON.stringify(seen.card)}`);
  if (!contacts.length) throw new Error(`the card shows no contacts: ${seen.card.meta}`);

  // 2. Start now, then invite the deal's contacts (all are selected by default).
  await card.click('#start-now');
  const hostLink = await waitFor(async () => card.inputValue('#host-link').catch(() => ''), {
    timeout: 15_000,
    what: 'the host link after Start now',
  });
  const openHref = await card.getAttribute('#open-host', 'href');
  if (openHref !== hostLink) throw new Error(`"Open meeting" points to ${openHref}, not ${hostLink}`);
  await card.locator('#invite-contacts:not([disabled])').waitFor({ timeout: 10_000 });
  await card.click('#invite-contacts');
  await waitFor(
    async () => {
      if (await card.isVisible('#error')) throw new Error(`inviting failed: ${await card.textContent('#error')}`);
      return card.isVisible('#invitation');
    },
    { timeout: 15_000, what: 'the invitation after "Invite selected contacts"' },
  );
  const invitation = await card.inputValue('#invitation-text');
  const inviteLink = invitation.match(/https?:\/\/\S+\?invite=\S+/)?.[0];
  if (!inviteLink) throw new Error(`no invite link in the invitation: ${invitation}`);
  seen.invitation = { text: invitation, status: await card.textContent('#status') };
  seen.meeting = { hostLink, inviteLink, id: new URL(hostLink).pathname.split('/').pop() };
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await crm.screenshot({ path: path.join(ARTIFACTS, 'whole-flow-1-card.png') });

  // 3. The rep opens the meeting; the client opens the link from the invitation.
  const rep = await joinAs(browser, hostLink, args.repName, consoleLog);
  pages.push({ name: 'rep', page: rep.page });
  const client = await joinAs(browser, inviteLink, args.clientName, consoleLog);
  pages.push({ name: 'client', page: client.page });
  seen.rep = { id: rep.id, role: await rep.page.evaluate(() => window.parley.role) };
  seen.client = { id: client.id, role: await client.page.evaluate(() => window.parley.role) };

  // 4. Each receives the other's video and audio, and it keeps flowing.
  const pairs = [
    [rep, client],
    [client, rep],
  ];
  const flows = await Promise.all(
    pairs.flatMap(([viewer, from]) => [
      assertFlowing(viewer, from, 'camera', 'framesDecoded'),
      assertFlowing(viewer, from, 'microphone', 'bytesReceived'),
    ]),
  );
  seen.media = {
    repSeesClient: { framesDecoded: flows[0].later, audioBytes: flows[1].later },
    clientSeesRep: { framesDecoded: flows[2].later, audioBytes: flows[3].later },
  };
  await rep.page.screenshot({ path: path.join(ARTIFACTS, 'whole-flow-2-rep.png') });
  await client.page.screenshot({ path: path.join(ARTIFACTS, 'whole-flow-2-client.png') });

  // 5. They talk: each is heard as the active speaker by the other, then both talk on.
  await heardSpeaking(rep, client);
  await heardSpeaking(client, rep);
  log(`both heard speaking; talking for ${talkMs} ms`);
  await new Promise((r) => setTimeout(r, talkMs));

  // 6. The rep ends the meeting for everyone from the participant panel.
  rep.page.on('dialog', (d) => d.accept().catch(() => {}));
  await rep.page.click('#btn-people');
  await rep.page.locator('#btn-end').waitFor({ state: 'visible', timeout: 10_000 });
  await rep.page.click('#btn-end');
  for (const p of [rep, client]) {
    await p.page.locator('#ended:not([hidden])').waitFor({ timeout: 20_000 });
  }
  seen.ended = {
    rep: await rep.page.textContent('#ended-title'),
    client: await client.page.textContent('#ended-title'),
  };
  await client.page.screenshot({ path: path.join(ARTIFACTS, 'whole-flow-3-client-ended.png') });

  // 7. Back in the CRM: the card lists the meeting, now with its summary.
  const item = () => card.locator(`#past li.past-meeting[data-meeting-id="${seen.meeting.id}"]`);
  const listed = await waitFor(
    async () => {
      await crm.reload();
      card = await cardFrame(crm);
      if (!(await item().count())) return null;
      const buttons = await item().locator('button.summary-toggle').allTextContents();
      return buttons.includes('Summary') ? { text: await item().textContent(), buttons } : null;
    },
    { timeout: 30_000, interval: 1_000, what: 'the ended meeting with its summary on the deal card' },
  );
  seen.cardAfter = listed;

  // 8. "Summary" shows it in the card: who was there, who talked how much.
  await item().locator('button.summary-toggle').click();
  const summary = item().locator('.summary');
  await summary.locator('.summary-participant').first().waitFor({ timeout: 15_000 });
  const error = summary.locator('.error');
  if (await error.count()) throw new Error(`the card's summary failed: ${await error.textContent()}`);
  seen.cardSummary = {
    title: await summary.locator('.summary-title').textContent(),
    ratio: await summary.locator('.summary-ratio').textContent(),
    participants: await summary.locator('.summary-participant').evaluateAll((items) =>
      items.map((li) => ({ name: li.dataset.name, side: li.dataset.side, talkSecs: Number(li.dataset.talkSecs) })),
    ),
  };
  log(`card summary: ${JSON.stringify(seen.cardSummary)}`);
  await crm.screenshot({ path: path.join(ARTIFACTS, 'whole-flow-4-card-after.png') });
  seen.ok = true;
  return seen;
}

const overall = setTimeout(async () => {
  log(`overall deadline of ${OVERALL_TIMEOUT} ms passed`);
  await screenshotAll('failure-whole-flow');
  process.stdout.write(`${JSON.stringify({ ok: false, error: `timed out after ${OVERALL_TIMEOUT} ms` })}\n`);
  await Promise.race([browser?.close().catch(() => {}), new Promise((r) => setTimeout(r, 5_000))]);
  process.exit(1);
}, OVERALL_TIMEOUT);

let code = 1;
try {
  const seen = await run();
  process.stdout.write(`${JSON.stringify(seen)}\n`);
  code = 0;
} catch (e) {
  log(`failed: ${e.stack || e.message}`);
  await screenshotAll('failure-whole-flow');
  process.stdout.write(`${JSON.stringify({ ok: false, error: e.message })}\n`);
} finally {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'whole-flow-browser-console.log'), consoleLog.join('\n'));
  await browser?.close().catch(() => {});
  clearTimeout(overall);
}
process.exit(code);
