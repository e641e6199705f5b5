// The node and its meetings, for the operator: the load of this server (participants, rooms,
// forwarded packets and bitrate, CPU, memory, uptime) and the meetings live on it, refreshed
// every few seconds while the page is open (with a pause button: moving content must be
// stoppable). Rates are the difference of two samples, so they show from the second one on.

import { h, replace, dateTime, pageHeader, badge, errorText, table } from '../ui.js';
import { bytes, duration, operatorApi } from './operator-kit.js';

const REFRESH_MS = 5000;
const PAGE = 10;

export default {
  path: 'operator/node',
  title: 'Node and meetings',
  section: 'operator',
  async render(ctx) {
    const api = operatorApi(ctx);
    const pause = h('button', { type: 'button', class: 'btn', 'aria-pressed': 'false' }, 'Pause updates');
    const updated = h('p', { class: 'hint', 'data-role': 'updated' }, 'Loading…');
    const problem = h('div', { role: 'alert' });
    const tiles = h('dl', { class: 'tiles', 'data-role': 'node-tiles' });
    const meetingsBody = h('div', { 'aria-live': 'off' });
    const prev = h('button', { type: 'button', class: 'btn btn-small' }, '← Previous');
    const next = h('button', { type: 'button', class: 'btn btn-small' }, 'Next →');
    const where = h('span', { class: 'pager-where' });
    const nav = h('nav', { class: 'pager-nav', 'aria-label': 'Live meetings: pages' }, prev, where, next);
    replace(
      ctx.main,
      pageHeader('Node and meetings', `This server’s load and the meetings running on it, updated every ${REFRESH_MS / 1000} seconds.`, pause),
      updated,
      problem,
      h('section', { class: 'card', 'aria-labelledby': 'node-title' }, h('h2', { class: 'section-title', id: 'node-title' }, 'Load'), tiles),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'live-title' },
        h('h2', { class: 'section-title', id: 'live-title' }, 'Live meetings'),
        meetingsBody,
        nav,
      ),
    );

    let last = null; // the previous node sample, for rates
    let offset = 0;
    let shownMeetings = '';
    let paused = false;
    let timer = null;
    let running = false;

    async function tick() {
      if (running) return;
      running = true;
      try {
        const [node, live] = await Promise.all([
          api('GET', '/operator/node'),
          api('GET', `/operator/meetings?limit=${PAGE}&offset=${offset}`),
        ]);
        if (live.items.length === 0 && offset > 0) {
          // The page emptied (meetings ended): step back and show that one.
          offset = Math.max(0, offset - PAGE);
          running = false;
          return tick();
        }
        showNode(node);
        showMeetings(live);
        replace(problem);
        updated.textContent = `Updated ${new Date(node.sampled_at_ms).toLocaleTimeString('en-GB', { timeZone: 'Europe/Moscow' })} MSK${paused ? ' · paused' : ''}`;
      } catch (e) {
        if (e.name === 'AbortError' || ctx.signal.aborted) return;
        // Keep the last figures on screen; say they are stale.
        replace(problem, h('p', { class: 'notice notice-error' }, `Could not update: ${errorText(e)} The figures below may be out of date.`));
      } finally {
        running = false;
      }
    }

    function showNode(n) {
      const rate = (key) => {
        if (!last) return null;
        const dt = (n.sampled_at_ms - last.sampled_at_ms) / 1000;
        return dt > 0 ? (key(n) - key(last)) / dt : null;
      };
      const pps = rate((x) => x.media.packets_out);
      const bpsOut = rate((x) => x.media.bytes_out * 8);
      const bpsIn = rate((x) => x.media.bytes_in * 8);
      const cpu = n.process.cpu_seconds === null || !last || last.process.cpu_seconds === null ? null : rate((x) => x.process.cpu_seconds);
      last = n;
      const measuring = 'measuring…';
      replace(
        tiles,
        stat('Participants', String(n.signaling.participants), `${n.media.participants} with media`),
        stat('Meetings live', String(n.signaling.meetings_active), `${n.media.rooms} media rooms, ${n.media.tracks} tracks`),
        stat('Forwarded packets', pps === null ? measuring : `${Math.round(pps)}/s`, `${n.media.packets_out.toLocaleString('en-GB')} in all`),
        stat('Bitrate out', bpsOut === null ? measuring : bitrate(bpsOut), bpsIn === null ? null : `in ${bitrate(bpsIn)}`),
        stat('CPU', cpu === null ? measuring : `${(cpu * 100).toFixed(1)} %`, `of one core; ${n.host.cpus} cores${n.host.load_average_1m == null ? '' : `, load ${n.host.load_average_1m.toFixed(2)}`}`),
        stat('Memory', bytes(n.process.memory_rss_bytes), n.host.memory_total_bytes ? `${bytes(n.host.memory_available_bytes)} free of ${bytes(n.host.memory_total_bytes)}` : null),
        stat('Uptime', duration(n.uptime_seconds), `version ${n.version}`),
        stat('Connections', String(n.signaling.ws_connections), `${n.media.packets_dropped.toLocaleString('en-GB')} packets dropped`),
      );
    }

    function showMeetings(live) {
      // Re-render only on change, so a focused link is not pulled from under the keyboard.
      const key = JSON.stringify(live);
      if (key !== shownMeetings) {
        shownMeetings = key;
        const now = Date.now();
        replace(
          meetingsBody,
          table({
            caption: 'Meetings with participants now',
            hideCaption: true,
            empty: 'No meeting is running on this node.',
            rows: live.items,
            columns: [
              { label: 'Meeting', value: (m) => m.title },
              {
                label: 'Account',
                value: (m) => (m.account_id ? h('a', { href: `#/operator/accounts/view?id=${encodeURIComponent(m.account_id)}` }, m.account_name || m.account_id) : h('span', { class: 'hint' }, 'Unlicensed')),
              },
              { label: 'Participants', align: 'right', value: (m) => (m.max_participants ? `${m.participants} / ${m.max_participants}` : String(m.participants)) },
              { label: 'Started', value: (m) => (m.started_at ? `${dateTime(m.started_at)} (${duration((now - Date.parse(m.started_at)) / 1000)})` : '—') },
              { label: 'Recording', value: (m) => (m.recording ? badge('Recording', 'bad') : badge('No', 'muted')) },
            ],
          }),
        );
      }
      const pages = Math.max(1, Math.ceil(live.total / PAGE));
      where.textContent = `Page ${Math.floor(offset / PAGE) + 1} of ${pages} · ${live.total} live`;
      prev.disabled = offset === 0;
      next.disabled = offset + PAGE >= live.total;
      nav.hidden = live.total <= PAGE && offset === 0;
    }

    prev.addEventListener('click', () => {
      offset = Math.max(0, offset - PAGE);
      tick();
    });
    next.addEventListener('click', () => {
      offset += PAGE;
      tick();
    });
    pause.addEventListener('click', () => {
      paused = !paused;
      pause.setAttribute('aria-pressed', String(paused));
      pause.textContent = paused ? 'Resume updates' : 'Pause updates';
      if (paused) {
        clearInterval(timer);
        timer = null;
        updated.textContent = `${updated.textContent.replace(/ · paused$/, '')} · paused`;
      } else {
        // Rates across a pause would average over it: start measuring afresh.
        last = null;
        tick();
        timer = setInterval(tick, REFRESH_MS);
      }
    });
    // Only while the page is open: the router aborts the signal when it leaves.
    ctx.signal.addEventListener('abort', () => clearInterval(timer));
    await tick();
    if (!ctx.signal.aborted) timer = setInterval(tick, REFRESH_MS);
  },
};

function stat(label, value, detail) {
  // The detail shares the figure's <dd> (a second <dd> would take the figure's large type).
  return h('div', { class: 'tile-stat' }, h('dt', null, label), h('dd', null, value, detail ? [h('br'), h('span', { class: 'hint field-hint' }, detail)] : null));
}

function bitrate(bps) {
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(1)} kbit/s`;
  return `${Math.round(bps)} bit/s`;
}
