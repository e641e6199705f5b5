// The meeting app in headless Chromium on a cluster: three `parley` nodes over one PostgreSQL
// schema and one Redis prefix. Three people open their links on three different nodes (their
// "public address"); the meeting lives on one of them. That node is killed (SIGKILL): the two
// people whose address survives reconnect by themselves, with no reload, and see each other's
// video again from the node the meeting moved to.
//
// Needs PARLEY_TEST_POSTGRES_URL and Redis (PARLEY_TEST_REDIS_URL, default 127.0.0.1:6379), as
// .ci/run provides; without them the test says so and is skipped.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ARTIFACTS, inbound, joinAs, launchBrowser, postJson, startServer, tail, waitFor } from './harness.mjs';

const ADMIN = 'e2e-cluster-operator-token';
const PG = process.env.PARLEY_TEST_POSTGRES_URL || '';
const REDIS = process.env.PARLEY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
// 32 bytes in base64: nodes sharing a database must share the key that seals its secrets.
const SECRETS_KEY = crypto.randomBytes(32).toString('base64');

let nodes = [];
let browser;
const people = [];
const consoleLog = [];

function redisReachable() {
  const { hostname, port } = new URL(REDIS);
  return new Promise((resolve) => {
    const s = net.connect({ host: hostname, port: Number(port || 6379) });
    s.setTimeout(2000);
    s.on('connect', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
    s.on('timeout', () => { s.destroy(); resolve(false); });
  });
}

const skip = PG ? false : 'PARLEY_TEST_POSTGRES_URL is not set';

before(async () => {
  if (skip) return;
  if (!(await redisReachable())) throw new Error(`Redis not reachable at ${REDIS}`);
  const schema = `e2e_${crypto.randomBytes(6).toString('hex')}`;
  const prefix = `parley-e2e-${crypto.randomBytes(6).toString('hex')}`;
  for (const id of ['node-a', 'node-b', 'node-c']) {
    nodes.push(
      await startServer({
        name: `cluster-${id}`,
        env: (url) => ({
          DATABASE_URL: PG,
          PARLEY_DATABASE_SCHEMA: schema,
          PARLEY_SECRETS_KEY: SECRETS_KEY,
          PARLEY_JWT_SECRET: 'e2e-cluster-jwt-secret-0123456789abcdef',
          PARLEY_ADMIN_TOKEN: ADMIN,
          PARLEY_REDIS_URL: REDIS,
          PARLEY_REDIS_PREFIX: prefix,
          PARLEY_NODE_ID: id,
          PARLEY_NODE_URL: url,
        }),
      }),
    );
  }
  browser = await launchBrowser();
});

after(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'browser-console-cluster.log'), consoleLog.join('\n'));
  await browser?.close().catch(() => {});
  for (const n of nodes) await n.stop().catch(() => {});
});

/** How many meetings a node holds now (the operator's node page). */
async function meetingsOn(node) {
  const res = await fetch(`${node.url}/api/v1/operator/node`, { headers: { authorization: `Bearer ${ADMIN}` } });
  if (!res.ok) return null;
  return (await res.json()).signaling.meetings_active;
}

/** Video frames `viewer` decoded from `from` on their current connections. */
async function framesFrom(viewer, fromId) {
  const s = (await inbound(viewer.page)).find((x) => x.participantId === fromId && x.source === 'camera');
  return s?.framesDecoded ?? 0;
}

test('the meeting app moves with its meeting when the meeting\'s node dies', { skip, timeout: 300_000 }, async () => {
  try {
    const meeting = await postJson(`${nodes[0].url}/api/v1/meetings`, { title: 'Cluster e2e' });
    // The links name the public URL of the node that made them; each person opens theirs on
    // another node, as a load balancer in front of the nodes would send them.
    const on = (node, link) => {
      const u = new URL(link, node.url);
      return new URL(u.pathname + u.search, node.url).href;
    };
    // Each opens the meeting on a node of their own: that node is their public address.
    people.push({ ...(await joinAs(browser, on(nodes[0], meeting.host_link), 'Hanna Host', consoleLog)), home: 0 });
    people.push({ ...(await joinAs(browser, on(nodes[1], meeting.invite_link), 'Gleb Guest', consoleLog)), home: 1 });
    people.push({ ...(await joinAs(browser, on(nodes[2], meeting.invite_link), 'Greta Guest', consoleLog)), home: 2 });
    for (const p of people) {
      await waitFor(async () => (await p.page.evaluate(() => window.parley.participants().length)) === 3, {
        what: `${p.name} to see three participants`,
      });
    }
    const counts = await Promise.all(nodes.map(meetingsOn));
    const owner = counts.findIndex((n) => n === 1);
    assert.ok(owner >= 0, `one node holds the meeting: ${JSON.stringify(counts)}`);
    assert.deepEqual(counts.filter((n) => n === 1).length, 1, `only one: ${JSON.stringify(counts)}`);

    // The two whose address survives the owner.
    const [a, b] = people.filter((p) => p.home !== owner);
    for (const [viewer, from] of [[a, b], [b, a]]) {
      await waitFor(async () => (await framesFrom(viewer, from.id)) > 10, {
        timeout: 45_000,
        what: `${viewer.name} decoding ${from.name}'s video before the failure`,
      });
    }

    const killedAt = Date.now();
    await nodes[owner].kill();
    // Back in the meeting on a surviving node, each decoding the other's (current) video.
    await waitFor(
      async () => {
        for (const [viewer, from] of [[a, b], [b, a]]) {
          const conn = await viewer.page.evaluate(() => window.parley.connection());
          if (conn.signaling !== 'open') return false;
          const fromId = await from.page.evaluate(() => window.parley.participantId);
          if ((await framesFrom(viewer, fromId)) <= 10) return false;
        }
        return true;
      },
      { timeout: 30_000, interval: 200, what: 'video both ways again after the meeting\'s node died' },
    );
    const took = Date.now() - killedAt;
    console.log(`cluster e2e: video back ${took} ms after the meeting's node (${owner}) was killed`);
    const after = await Promise.all(nodes.map((n, i) => (i === owner ? null : meetingsOn(n))));
    assert.equal(after.filter((n) => n === 1).length, 1, `the meeting now lives on one survivor: ${JSON.stringify(after)}`);
    for (const p of [a, b]) {
      await p.page.screenshot({ path: path.join(ARTIFACTS, `cluster-after-failover-${p.name.replace(/\W+/g, '_')}.png`) });
    }
  } catch (e) {
    for (const n of nodes) e.message += `\n--- ${path.basename(n.logPath)} (tail) ---\n${tail(n.logPath, 20)}`;
    e.message += `\n--- browser console (tail) ---\n${consoleLog.slice(-40).join('\n')}`;
    throw e;
  }
});
