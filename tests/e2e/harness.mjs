// Shared pieces of the browser tests: start the real server binary on free ports with a temporary
// SQLite database, launch Debian's Chromium with fake devices, and wait on conditions with deadlines
// (never fixed sleeps).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ARTIFACTS = process.env.PARLEY_ARTIFACTS || path.join(ROOT, 'artifacts');
// Relative PARLEY_BIN is taken from the caller's directory (the server itself runs in a temp dir).
const BIN = path.resolve(process.env.PARLEY_BIN || path.join(ROOT, 'target', 'release', 'parley'));
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // getDisplayMedia in headless Chromium with the fake UI returns a synthetic screen; this flag
  // keeps it working on builds that still show a picker.
  '--auto-select-desktop-capture-source=Entire screen',
  '--autoplay-policy=no-user-gesture-required',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  // Several pages in one headless browser: keep background pages running at full speed.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

/** Polls `fn` until it returns a truthy value; throws with `what` and the last value at the deadline. */
export async function waitFor(fn, { timeout = 30_000, interval = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      lastError = e;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
  const detail = lastError ? ` (last error: ${lastError.message})` : ` (last value: ${JSON.stringify(last)})`;
  throw new Error(`timed out after ${timeout} ms waiting for ${what}${detail}`);
}

export function freePort(type = 'tcp') {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `parley` with a fresh database; returns {url, stop(), kill(), logPath}. `env` adds to
 * or replaces the settings (a cluster node's database, Redis and node id); `name` names its log.
 */
export async function startServer({ env = {}, name = 'server' } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`server binary not found at ${BIN}: run cargo build --release -p parley-signaling or set PARLEY_BIN`);
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-'));
  const httpPort = await freePort();
  const url = `http://127.0.0.1:${httpPort}`;
  const logPath = path.join(ARTIFACTS, `${name}.log`);
  const log = fs.openSync(logPath, 'w');
  const child = spawn(BIN, [], {
    cwd: dir,
    env: {
      ...process.env,
      DATABASE_URL: `sqlite://${path.join(dir, 'parley.db')}?mode=rwc`,
      PARLEY_HTTP_ADDR: `127.0.0.1:${httpPort}`,
      PARLEY_UDP_PORT: '0',
      PARLEY_ANNOUNCED_IPS: '127.0.0.1',
      PARLEY_PUBLIC_URL: url,
      PARLEY_WEB_ROOT: path.join(ROOT, 'web'),
      RUST_LOG: process.env.RUST_LOG || 'info',
      ...(typeof env === 'function' ? env(url) : env),
    },
    stdio: ['ignore', log, log],
  });
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });
  child.on('error', (e) => {
    exited = { error: e.message };
  });
  try {
    await waitFor(
      async () => {
        if (exited) throw new Error(`server exited early (${JSON.stringify(exited)}); see ${logPath}`);
        const res = await fetch(`${url}/readyz`).catch(() => null);
        return res && res.ok;
      },
      { timeout: 30_000, what: `${url}/readyz` },
    );
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${e.message}\n--- server log ---\n${tail(logPath)}`);
  }
  return {
    url,
    logPath,
    /** Ends the process at once, as a crashed machine stops (no drain, no goodbye). */
    async kill() {
      if (!exited) {
        child.kill('SIGKILL');
        await waitFor(() => exited, { timeout: 10_000, what: 'server exit' });
      }
    },
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        await waitFor(() => exited, { timeout: 10_000, what: 'server exit' }).catch(() => child.kill('SIGKILL'));
      }
      fs.closeSync(log);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function tail(file, lines = 60) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * A WAV file of continuous "speech" for the fake microphone: a tone (220 Hz unless said otherwise)
 * with a slow tremolo, loud enough (about -12 dBFS) to count as voice. Chromium's built-in fake
 * microphone only beeps once a second, too little for the SFU's dominant-speaker detector to call
 * anyone a speaker. A different tone per browser tells speakers apart in a recording.
 */
function speechWav(hz = 220) {
  const file = path.join(os.tmpdir(), `parley-e2e-speech-${hz}.wav`);
  if (fs.existsSync(file)) return file;
  const rate = 48000;
  const seconds = 4;
  const samples = rate * seconds;
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) {
    const t = i / rate;
    const tremolo = 0.75 + 0.25 * Math.sin(2 * Math.PI * 3 * t);
    const v = 0.25 * tremolo * Math.sin(2 * Math.PI * hz * t);
    data.writeInt16LE(Math.round(v * 32767), i * 2);
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16); // PCM chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  fs.writeFileSync(file, Buffer.concat([header, data]));
  return file;
}

/** Launches Chromium; every page's fake microphone plays a tone of `toneHz` (default 220 Hz). */
export function launchBrowser({ toneHz = 220 } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, `--use-file-for-fake-audio-capture=${speechWav(toneHz)}`],
  });
}

/** POST JSON to the server; throws with the server's error body on failure. */
export async function postJson(url, body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${url} -> ${res.status}: ${text}`);
  return JSON.parse(text);
}

/**
 * Opens a participant in its own browser context (separate storage, like a separate person), goes
 * through the pre-join screen and waits until the meeting view is up.
 */
export async function joinAs(browser, link, name, consoleLog) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 720 },
    permissions: ['camera', 'microphone'],
  });
  // Trace signaling messages into the console log (saved as an artifact).
  await context.addInitScript(() => localStorage.setItem('parley.debug', '1'));
  const page = await context.newPage();
  page.on('console', (m) => consoleLog.push(`${new Date().toISOString().slice(11, 23)} [${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`[${name}] pageerror: ${e.message}`));
  await page.goto(link);
  await page.locator('#pj-join:not([disabled])').waitFor({ timeout: 20_000 });
  await page.fill('#pj-name', name);
  await page.click('#pj-join');
  await page.locator('#meeting:not([hidden])').waitFor({ timeout: 20_000 });
  const id = await page.evaluate(() => window.parley.participantId);
  return { name, id, page, context };
}

/** Inbound RTP stats per remote track, as the app exposes them. */
export function inbound(page) {
  return page.evaluate(async () => (await window.parley.getStats()).inbound);
}
