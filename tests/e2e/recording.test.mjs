// A recorded three-party meeting in headless Chromium, checked the way someone playing the files
// would notice. The host (a seat of a licensed account whose tariff includes recording) starts the
// recording with the Record button; everyone sees the indicator; each person speaks in turn while
// the other two are muted (each browser's fake microphone plays its own tone); the host stops.
// Once the recording is ready its files are downloaded through signed links and checked with
// ffprobe: every track has its codec (Opus / VP8) and lasts as long as it was recorded (within
// 10 %); the mixed audio carries each speaker's tone in that speaker's turn (RMS and a Goertzel
// filter per span, decoded with ffmpeg); the composite is 1280x720 and as long as the recording.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ARTIFACTS, inbound, joinAs, launchBrowser, startServer, tail, waitFor } from './harness.mjs';

const ADMIN = `e2e-admin-${crypto.randomBytes(8).toString('hex')}`;
/** Each speaker's tone: far from each other's harmonics, so a Goertzel filter tells them apart. */
const TONES = [220, 370, 590];
/** One speaker's turn: this many of their audio packets (20 ms each) reach the others. */
const TURN_PACKETS = 400;
const TOLERANCE = 0.1;

const haveFfmpeg = ['ffmpeg', 'ffprobe'].every((bin) => {
  try {
    execFileSync(bin, ['-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});

let server;
const browsers = [];
const people = [];
const consoleLog = [];
let downloads;

before(async () => {
  if (!haveFfmpeg) return;
  process.env.PARLEY_ADMIN_TOKEN = ADMIN;
  // The server's own recording directory (with the writer's sidecars) stays for a look, too.
  process.env.PARLEY_RECORDINGS_DIR = path.join(ARTIFACTS, 'recording-server');
  fs.rmSync(process.env.PARLEY_RECORDINGS_DIR, { recursive: true, force: true });
  server = await startServer();
  // One browser per person: each fake microphone plays that person's tone.
  for (const toneHz of TONES) browsers.push(await launchBrowser({ toneHz }));
  // The downloaded files stay in artifacts/recording/ for a look after a failure.
  downloads = path.join(ARTIFACTS, 'recording');
  fs.rmSync(downloads, { recursive: true, force: true });
  fs.mkdirSync(downloads, { recursive: true });
});

after(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'recording-browser-console.log'), consoleLog.join('\n'));
  for (const b of browsers) await b.close().catch(() => {});
  await server?.stop().catch(() => {});
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

/** An account on a tariff with recording, one member holding a seat; returns its key and the user. */
async function licensedHost() {
  must(
    await api('PUT', '/api/v1/tariffs/record-12', ADMIN, {
      name: 'Record', term_months: 12, price_per_seat: '12000.00',
      features: { max_participants: 10, max_meeting_minutes: 240,
        recording: { storage_quota_mb: 1024, retention_days: 30 }, sdk_embedding: false,
        results_to_recipients: false, screen_share: true },
    }),
    200, 'tariff');
  const acc = must(
    await api('POST', '/api/v1/accounts', ADMIN, {
      name: 'ООО Запись', kind: 'legal_entity', inn: '7707083893', resident: true,
      crm_system: 'sbercrm', crm_external_id: 'E2E-REC', address: 'Москва',
    }),
    201, 'account');
  const id = acc.account.id;
  const key = acc.api_key.bearer;
  const order = must(
    await api('POST', `/api/v1/accounts/${id}/orders`, key, { type: 'initial', tariff: 'record-12', seats: 1 },
      { 'idempotency-key': 'e2e-rec-order' }),
    201, 'order');
  const pay = must(
    await api('POST', `/api/v1/accounts/${id}/invoices/${order.invoice.id}/payments`, ADMIN,
      { method: 'bank_transfer', amount: order.invoice.amount }, { 'idempotency-key': 'e2e-rec-pay' }),
    201, 'payment');
  // No SMTP in this run: the invitation is saved even though its email cannot go out (502).
  const inv = await api('POST', `/api/v1/accounts/${id}/invitations`, key, { email: 'host@example.com', role: 'member' });
  assert.ok([201, 502].includes(inv.status), JSON.stringify(inv.body));
  const users = must(await api('GET', `/api/v1/accounts/${id}/users`, key), 200, 'users');
  const user = users.map((u) => u.user).find((u) => u.email === 'host@example.com');
  assert.ok(user, JSON.stringify(users));
  must(await api('PUT', `/api/v1/accounts/${id}/users/${user.id}/seat`, key, { lot_id: pay.lot_id }), 201, 'seat');
  return { key, userId: user.id };
}

function ffprobe(file) {
  const out = execFileSync('ffprobe', [
    '-v', 'error', '-show_entries', 'stream=codec_name,codec_type,width,height:format=duration', '-of', 'json', file,
  ]);
  const v = JSON.parse(out.toString('utf8'));
  return { streams: v.streams, duration: Number(v.format.duration) };
}

/** Mono 16 kHz PCM of a file's audio, as floats in [-1, 1). */
const PCM_RATE = 16000;
function decodePcm(file) {
  const out = execFileSync('ffmpeg', ['-v', 'error', '-nostdin', '-i', file, '-ac', '1', '-ar', String(PCM_RATE), '-f', 's16le', '-'], {
    maxBuffer: 256 * 1024 * 1024,
  });
  const pcm = new Float32Array(out.length / 2);
  for (let i = 0; i < pcm.length; i++) pcm[i] = out.readInt16LE(i * 2) / 32768;
  return pcm;
}

function rms(samples) {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return Math.sqrt(sum / samples.length);
}

/** Power of one frequency in the samples (Goertzel), normalized by length. */
function tonePower(samples, hz) {
  const k = 2 * Math.cos((2 * Math.PI * hz) / PCM_RATE);
  let s1 = 0;
  let s2 = 0;
  for (const x of samples) {
    const s0 = x + k * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return (s1 * s1 + s2 * s2 - k * s1 * s2) / (samples.length * samples.length);
}

/** What the server's writer counted for a file (its sidecar), to explain a failure. */
function sidecarStats(file) {
  try {
    for (const dir of fs.readdirSync(process.env.PARLEY_RECORDINGS_DIR, { recursive: true })) {
      if (path.basename(dir) === file.replace(/\.[a-z0-9]+$/, '.json')) {
        const s = JSON.parse(fs.readFileSync(path.join(process.env.PARLEY_RECORDINGS_DIR, dir), 'utf8'));
        return JSON.stringify({ duration_ms: s.duration_ms, size: [s.width, s.height], stats: s.stats });
      }
    }
  } catch (e) {
    return `no sidecar (${e.message})`;
  }
  return 'no sidecar';
}

function within(actual, expected, what) {
  assert.ok(
    Math.abs(actual - expected) <= TOLERANCE * expected,
    `${what}: ${actual.toFixed(2)} s, expected ${expected.toFixed(2)} s ± ${TOLERANCE * 100} %`,
  );
}

/** Audio packets `listener` has received from `speaker`'s microphone. */
async function packetsFrom(listener, speaker) {
  const s = (await inbound(listener.page)).find((x) => x.participantId === speaker.id && x.source === 'microphone');
  return s?.packetsReceived ?? 0;
}

async function micMutedAsSeenBy(viewer, person) {
  const p = (await viewer.page.evaluate(() => window.parley.participants())).find((x) => x.id === person.id);
  return !!p?.tracks?.find((t) => t.source === 'microphone')?.muted;
}

async function setMic(person, on, viewer) {
  await person.page.evaluate((v) => window.parley.setMicrophone(v), on);
  // The server applied it when the others see it.
  await waitFor(async () => (await micMutedAsSeenBy(viewer, person)) === !on, {
    what: `${viewer.name} to see ${person.name}'s microphone ${on ? 'on' : 'off'}`,
  });
}

/** `speaker` talks until the others have heard TURN_PACKETS of their audio packets (~8 s). */
async function turn(speaker, listener) {
  const from = await packetsFrom(listener, speaker);
  await waitFor(async () => (await packetsFrom(listener, speaker)) >= from + TURN_PACKETS, {
    timeout: 40_000,
    interval: 200,
    what: `${listener.name} to hear ${TURN_PACKETS} packets from ${speaker.name}`,
  });
}

async function failureDetail(e) {
  for (const p of people) {
    await p.page.screenshot({ path: path.join(ARTIFACTS, `failure-recording-${p.name.replace(/\W+/g, '_')}.png`) }).catch(() => {});
  }
  e.message += `\n--- server log (tail) ---\n${tail(server.logPath, 60)}`;
  e.message += `\n--- browser console (tail) ---\n${consoleLog.slice(-30).join('\n')}`;
  return e;
}

test('a recorded three-party meeting gives files that play as recorded', { timeout: 420_000, skip: !haveFfmpeg && 'ffmpeg/ffprobe not installed' }, async (t) => {
  const { key, userId } = await licensedHost();
  const meeting = must(
    await api('POST', '/api/v1/meetings', key, { title: 'Recorded demo', host_user_id: userId }),
    201, 'meeting');
  const abs = (l) => new URL(l, server.url).href;
  try {
    people.push(await joinAs(browsers[0], abs(meeting.host_link), 'Hanna Host', consoleLog));
    people.push(await joinAs(browsers[1], abs(meeting.invite_link), 'Gleb Guest', consoleLog));
    people.push(await joinAs(browsers[2], abs(meeting.invite_link), 'Greta Guest', consoleLog));
  } catch (e) {
    throw await failureDetail(e);
  }
  const [host, gleb, greta] = people;
  const times = {};

  await t.test('everyone is connected; only the host is unmuted', async () => {
    try {
      for (const viewer of people) {
        for (const from of people) {
          if (viewer === from) continue;
          await waitFor(
            async () => ((await inbound(viewer.page)).find((s) => s.participantId === from.id && s.source === 'camera')?.framesDecoded ?? 0) > 0,
            { timeout: 45_000, what: `${viewer.name} decoding ${from.name}'s camera` },
          );
        }
      }
      await setMic(gleb, false, host);
      await setMic(greta, false, host);
      assert.equal(await host.page.evaluate(() => window.parley.canRecord), true, 'the host may record');
      assert.equal(await gleb.page.evaluate(() => window.parley.canRecord), false, 'a guest may not');
    } catch (e) {
      throw await failureDetail(e);
    }
  });

  await t.test('the host records; everyone sees it; each speaks in turn; the host stops', async () => {
    try {
      await host.page.click('#btn-record');
      for (const p of people) {
        await waitFor(() => p.page.evaluate(() => window.parley.recordingUi().indicator), {
          what: `${p.name} to see the recording indicator`,
        });
      }
      // Each switch is timed just before the click: the server applies it within milliseconds
      // (and setMic waits until the others see it).
      await turn(host, gleb);
      times.hostEnd = Date.now();
      await setMic(host, false, gleb);
      times.glebStart = Date.now();
      await setMic(gleb, true, host);
      await turn(gleb, host);
      times.glebEnd = Date.now();
      await setMic(gleb, false, host);
      times.gretaStart = Date.now();
      await setMic(greta, true, host);
      await turn(greta, host);
      host.page.once('dialog', (d) => d.accept());
      await host.page.click('#btn-record');
      for (const p of people) {
        await waitFor(async () => !(await p.page.evaluate(() => window.parley.recordingUi().indicator)), {
          what: `${p.name} to see the recording stop`,
        });
      }
    } catch (e) {
      throw await failureDetail(e);
    }
  });

  await t.test('the files play with their codecs, lengths and sound', async () => {
    let rec;
    try {
      rec = await waitFor(
        async () => {
          const list = must(await api('GET', `/api/v1/meetings/${meeting.id}/recordings`, key), 200, 'recordings');
          const r = list.recordings[0];
          if (r?.status === 'failed') throw new Error(`recording failed: ${r.error}`);
          return r?.status === 'ready' ? r : null;
        },
        { timeout: 240_000, interval: 1_000, what: 'the recording to be ready' },
      );
    } catch (e) {
      throw await failureDetail(e);
    }
    const t0 = Date.parse(rec.started_at);
    const tStop = Date.parse(rec.stopped_at);
    const length = (tStop - t0) / 1000;
    t.diagnostic(`recording ${rec.id}: ${length.toFixed(1)} s, files ${rec.files.map((f) => f.name).join(', ')}`);

    const links = must(await api('POST', `/api/v1/recordings/${rec.id}/links`, key, {}), 200, 'links');
    const local = {};
    for (const f of links.files) {
      const res = await fetch(f.url);
      assert.equal(res.status, 200, `download ${f.name}`);
      const file = path.join(downloads, f.name);
      fs.writeFileSync(file, Buffer.from(await res.arrayBuffer()));
      assert.equal(fs.statSync(file).size, f.bytes, `${f.name} size`);
      local[f.name] = file;
    }
    const byKind = (kind) => rec.files.filter((f) => f.kind === kind);
    const ofPerson = (kind, p) => {
      const found = byKind(kind).filter((f) => f.participant_id === p.id);
      assert.equal(found.length, 1, `one ${kind} of ${p.name}: ${JSON.stringify(rec.files)}`);
      return found[0];
    };

    // Each microphone recorded while its owner was unmuted: host from the start to Gleb's turn,
    // Gleb to Greta's, Greta to the stop. Cameras ran throughout (WebM counts from the start).
    const spans = new Map([
      [host, [t0, times.hostEnd]],
      [gleb, [times.glebStart, times.glebEnd]],
      [greta, [times.gretaStart, tStop]],
    ]);
    for (const p of people) {
      const audio = ofPerson('track_audio', p);
      const a = ffprobe(local[audio.name]);
      assert.equal(a.streams[0].codec_name, 'opus', audio.name);
      const [from, to] = spans.get(p);
      within(a.duration, (to - from) / 1000, `${p.name}'s microphone (${audio.name})`);
      const video = ofPerson('track_video', p);
      const v = ffprobe(local[video.name]);
      assert.equal(v.streams[0].codec_name, 'vp8', video.name);
      within(v.duration, length, `${p.name}'s camera (${video.name}); writer: ${sidecarStats(video.name)}`);
    }

    // The mixed audio: each speaker's tone in their turn (a second off each edge for the
    // switch), louder there than the others' tones.
    const [mixed] = byKind('mixed_audio');
    assert.ok(mixed, 'a mixed audio file');
    const m = ffprobe(local[mixed.name]);
    assert.equal(m.streams[0].codec_name, 'opus');
    within(m.duration, length, 'mixed audio');
    const pcm = decodePcm(local[mixed.name]);
    for (const [i, p] of people.entries()) {
      const [from, to] = spans.get(p).map((ms) => (ms - t0) / 1000);
      const span = pcm.subarray(Math.round((from + 1) * PCM_RATE), Math.round((to - 1) * PCM_RATE));
      assert.ok(span.length > PCM_RATE * 3, `${p.name}'s turn is long enough to measure`);
      const level = rms(span);
      const powers = TONES.map((hz) => tonePower(span, hz));
      t.diagnostic(`${p.name} ${from.toFixed(1)}–${to.toFixed(1)} s: RMS ${level.toFixed(3)}, tones ${powers.map((x) => x.toExponential(1)).join(' ')}`);
      // Chromium's capture processing (noise suppression, gain control) takes the fake tone
      // from about -12 to about -37 dBFS; a turn nobody spoke in would be digital silence.
      assert.ok(level > 0.005, `sound in ${p.name}'s turn (RMS ${level})`);
      for (const [j, power] of powers.entries()) {
        if (j !== i) assert.ok(powers[i] > 10 * power, `${p.name}'s tone dominates their turn (${powers})`);
      }
    }

    // The composite: the configured 1280x720 and the recording's length, with sound.
    const [composite] = byKind('composite');
    assert.ok(composite, `a composite among ${rec.files.map((f) => f.name)}`);
    const c = ffprobe(local[composite.name]);
    const video = c.streams.find((s) => s.codec_type === 'video');
    assert.equal(video.codec_name, 'vp8');
    assert.deepEqual([video.width, video.height], [1280, 720]);
    assert.ok(c.streams.some((s) => s.codec_name === 'opus'), 'composite audio');
    within(c.duration, length, 'composite');
  });
});
