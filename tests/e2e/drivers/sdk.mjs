// The browser half of the SDK test (tests/tests/sdk.rs starts Parley on http://localhost:<port>,
// makes the account, SDK key, meeting and tokens, and runs a native webrtc-rs participant). Not a
// `*.test.mjs` file: the e2e runner does not pick it up; the Rust test runs it with
//
//   node tests/e2e/drivers/sdk.mjs '{"parley": "http://localhost:…", "meetingId": "…",
//     "allowedPort": 5123, "foreignPort": 5124, "token": "…", "foreignToken": "…", "embedUrl": "…"}'
//
// It serves docs/examples/ on two other origins, http://127.0.0.1:<allowedPort> (in the SDK key's
// allowed origins) and http://127.0.0.1:<foreignPort> (not), and talks to the Rust side in JSON
// lines: on stdout the steps it reached, on stdin `next` when the Rust side has checked its part.
//
//   1. the token example page on the allowed origin imports the SDK from Parley and joins:
//      prints {"step": "joined", "participantId"}; the Rust side then brings its native participant in;
//   2. the page sees `participant_joined` and receives the native participant's audio and video
//      (inbound-rtp bytes growing): prints {"step": "media", …}; waits for `next` (the Rust side
//      checks that the native participant receives the page's media, and the host starts and
//      stops a recording); then the page has seen `recording_started` and `recording_stopped`:
//      prints {"step": "recording", …};
//   3. the same page on the foreign origin: the join is refused, the `error` event carries the
//      server's code: prints {"step": "foreign", …};
//   4. the iframe example on the allowed origin frames the embed page: `joined` arrives over
//      postMessage, the frame decodes the customer's video, and a `mute` command is answered:
//      prints {"step": "embed", …}.
// Last line: {"ok": true} (exit 0) or {"ok": false, "error"} (exit 1). Screenshots go to the
// artifacts directory.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { ARTIFACTS, ROOT, launchBrowser, waitFor } from '../harness.mjs';

const MEDIA_TIMEOUT = 45_000;
const OVERALL_TIMEOUT = 240_000;
const EXAMPLES = path.join(ROOT, 'docs', 'examples');

const args = JSON.parse(process.argv[2] || '{}');
for (const k of ['parley', 'meetingId', 'allowedPort', 'foreignPort', 'token', 'foreignToken', 'embedUrl']) {
  if (!args[k]) {
    console.error(`missing ${k} in the JSON argument`);
    process.exit(2);
  }
}

const consoleLog = [];
const pages = [];
const servers = [];
let browser;

function log(text) {
  process.stderr.write(`[sdk ${new Date().toISOString().slice(11, 23)}] ${text}\n`);
}

function say(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** The developer's site: the example pages, as plain static files. */
function serveExamples(port) {
  const server = http.createServer((req, res) => {
    const name = path.basename(new URL(req.url, 'http://x').pathname);
    const file = path.join(EXAMPLES, name);
    if (!name.endsWith('.html') || !fs.existsSync(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(fs.readFileSync(file));
  });
  servers.push(server);
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(`http://127.0.0.1:${port}`));
  });
}

const stdinLines = readline.createInterface({ input: process.stdin });
const waiting = [];
stdinLines.on('line', (line) => waiting.shift()?.(line.trim()));
function nextLine() {
  return new Promise((resolve) => waiting.push(resolve));
}

async function openPage(name, url) {
  const context = await browser.newContext({
    viewport: { width: 1000, height: 700 },
    permissions: ['camera', 'microphone'],
  });
  const page = await context.newPage();
  page.on('console', (m) => consoleLog.push(`${new Date().toISOString().slice(11, 23)} [${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`[${name}] pageerror: ${e.message}`));
  pages.push({ name, page });
  await page.goto(url);
  return page;
}

const events = (page) => page.evaluate(() => window.__events || []);

async function eventOf(page, name, what, pred = () => true) {
  return waitFor(async () => (await events(page)).find((e) => e.name === name && pred(e.detail)), {
    timeout: MEDIA_TIMEOUT,
    what,
  });
}

/** The page's inbound stats of `pid`'s `kind` track. */
async function inboundOf(page, pid, kind) {
  const stats = await page.evaluate(async () => (await window.__meeting.getStats()).inbound);
  return stats.find((s) => s.participantId === pid && s.kind === kind);
}

async function growing(page, pid, kind) {
  const what = `the page receiving the native participant's ${kind}`;
  const first = await waitFor(async () => (await inboundOf(page, pid, kind))?.bytesReceived || 0, {
    timeout: MEDIA_TIMEOUT,
    what,
  });
  const later = await waitFor(
    async () => {
      const b = (await inboundOf(page, pid, kind))?.bytesReceived || 0;
      return b > first ? b : 0;
    },
    { timeout: 15_000, what: `${what} to keep growing past ${first} bytes` },
  );
  return { first, later };
}

async function screenshots(prefix) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const { name, page } of pages) {
    await page.screenshot({ path: path.join(ARTIFACTS, `${prefix}-${name}.png`), timeout: 5_000 }).catch(() => {});
  }
}

async function run() {
  const allowed = await serveExamples(args.allowedPort);
  const foreign = await serveExamples(args.foreignPort);
  browser = await launchBrowser();
  const q = (token) =>
    new URLSearchParams({ parley: args.parley, token, meeting: args.meetingId }).toString();

  // 1. The allowed origin joins.
  const shop = await openPage('allowed-origin', `${allowed}/sdk-example-token.html?${q(args.token)}`);
  const joined = await eventOf(shop, 'joined', 'the joined event on the allowed origin');
  log(`joined as ${joined.detail.participantId}`);
  say({ step: 'joined', participantId: joined.detail.participantId, origin: allowed });

  // 2. The native participant arrives; media both ways.
  const arrived = await eventOf(shop, 'participant_joined', 'participant_joined for the native participant');
  const nativeId = arrived.detail.participant.id;
  const video = await growing(shop, nativeId, 'video');
  const audio = await growing(shop, nativeId, 'audio');
  const tiles = await shop.evaluate(
    () => document.querySelector('[data-parley]')?.shadowRoot?.querySelectorAll('video').length ?? 0,
  );
  await screenshots('sdk');
  say({ step: 'media', nativeId, video, audio, tiles, participantJoined: arrived.detail });
  const go = await nextLine();
  if (go !== 'next') throw new Error(`the Rust side said ${JSON.stringify(go)}`);
  // Meanwhile the host recorded for a moment.
  const started = await eventOf(shop, 'recording_started', 'recording_started on the page');
  const stopped = await eventOf(shop, 'recording_stopped', 'recording_stopped on the page');
  say({ step: 'recording', started: started.detail, stopped: stopped.detail });

  // 3. A site that is not in the key's list.
  const other = await openPage('foreign-origin', `${foreign}/sdk-example-token.html?${q(args.foreignToken)}`);
  const error = await eventOf(other, 'error', 'the error event on the foreign origin');
  const disconnected = await eventOf(other, 'disconnected', 'the disconnected event on the foreign origin');
  const foreignEvents = (await events(other)).map((e) => e.name);
  const status = await other.locator('#status').textContent();
  await screenshots('sdk');
  say({ step: 'foreign', error: error.detail, disconnected: disconnected.detail, events: foreignEvents, status });

  // 4. The iframe embed on the allowed origin, driven over postMessage.
  const framed = await openPage(
    'embed',
    `${allowed}/embed-example.html?${new URLSearchParams({ parley: args.parley, embed: args.embedUrl })}`,
  );
  const embedJoined = await eventOf(framed, 'joined', 'joined over postMessage from the embed page');
  // Inside the frame, the customer's camera (a real Chromium simulcast stream) is decoded.
  const frame = await waitFor(() => framed.frames().find((f) => f.url().includes('/embed/')), {
    what: 'the embed frame',
  });
  const customer = joined.detail.participantId;
  const framesDecoded = await waitFor(
    async () => {
      const stats = await frame.evaluate(async () => (await window.parleyEmbed.getStats()).inbound);
      const v = stats.find((s) => s.participantId === customer && s.kind === 'video');
      return v?.framesDecoded || 0;
    },
    { timeout: MEDIA_TIMEOUT, what: "the embed page decoding the customer's video" },
  );
  const muted = await framed.evaluate(() => window.__embed.mute('audio').then(() => 'ok', (e) => `failed: ${e.message}`));
  // The others see the framed participant's microphone muted.
  const framedId = embedJoined.detail.participantId;
  const seenMuted = await waitFor(
    () =>
      shop.evaluate(
        (id) =>
          window.__meeting
            .participants()
            .find((p) => p.id === id)
            ?.tracks.some((t) => t.source === 'microphone' && t.muted) ?? false,
        framedId,
      ),
    { what: 'the framed participant muted, as the customer page sees it' },
  );
  await screenshots('sdk');
  say({ step: 'embed', joined: embedJoined.detail, framesDecoded, mute: muted, seenMuted });
}

const overall = setTimeout(() => {
  say({ ok: false, error: `the SDK driver did not finish within ${OVERALL_TIMEOUT} ms` });
  process.exit(1);
}, OVERALL_TIMEOUT);

let code = 0;
try {
  await run();
  say({ ok: true });
} catch (e) {
  log(e.stack || String(e));
  await screenshots('sdk-failure').catch(() => {});
  say({ ok: false, error: e.message || String(e) });
  code = 1;
} finally {
  clearTimeout(overall);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'sdk-browser-console.log'), consoleLog.join('\n'));
  await browser?.close().catch(() => {});
  for (const s of servers) s.close();
  stdinLines.close();
}
process.exit(code);
