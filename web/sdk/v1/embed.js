// The embed page (/embed/{meeting}?token=…): the SDK full-frame inside a developer's iframe,
// driven by postMessage (docs/sdk.md, "Iframe embed"):
//
//   to the parent:   {type: 'parley:ready'}
//                    {type: 'parley:event', event: 'joined' | 'participant_joined' | …, detail}
//                    {type: 'parley:result', id, ok: true, value} | {…, ok: false, error: {code, message}}
//   from the parent: {type: 'parley:command', id, command: 'mute' | 'unmute' | 'setCamera' |
//                     'startScreenShare' | 'stopScreenShare' | 'leave', args: [...]}
//
// Messages go only to the SDK key's allowed origins (never '*'), and commands are accepted only
// from the parent window on one of them. The server already let only those origins frame us
// (CSP frame-ancestors); this is the same rule on the messaging side.

import { EVENTS, join } from './parley.js';

/** The commands and the arguments each takes from a message (nothing else reaches the SDK). */
const COMMANDS = {
  mute: (args) => [String(args[0])],
  unmute: (args) => [String(args[0])],
  setCamera: (args) => [args[0] === true],
  startScreenShare: () => [],
  stopScreenShare: () => [],
  leave: () => [],
};

function meta(name) {
  return document.querySelector(`meta[name="${name}"]`)?.content ?? '';
}

const allowed = meta('parley-allowed-origins').split(/\s+/).filter(Boolean);

/**
 * Where our messages go. Browsers that tell us the parent's origin (ancestorOrigins) get exactly
 * that one when allowed; others get one message per allowed origin, which the browser delivers
 * only to the one the parent really has.
 */
function targets() {
  if (window.parent === window) return [];
  const ancestors = location.ancestorOrigins;
  if (ancestors && ancestors.length) return allowed.includes(ancestors[0]) ? [ancestors[0]] : [];
  return allowed;
}

function post(msg, only) {
  for (const origin of only ? [only] : targets()) window.parent.postMessage(msg, origin);
}

function fail(code, message) {
  post({ type: 'parley:event', event: 'error', detail: { code, message } });
}

function start() {
  const refused = meta('parley-error-code');
  if (refused) {
    fail(refused, document.getElementById('error-message')?.textContent || refused);
    return;
  }
  const token = new URLSearchParams(location.search).get('token');
  const meetingId = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
  const meeting = join({ container: document.getElementById('meeting'), token, meetingId });
  for (const name of EVENTS) meeting.on(name, (detail) => post({ type: 'parley:event', event: name, detail }));
  // The frame's own end screen: why the meeting is gone (the parent gets the events too).
  let lastError = null;
  meeting.on('error', (e) => (lastError = e));
  meeting.on('disconnected', (d) => {
    const title =
      d.code === 1000 ? 'You left the meeting' : d.code === 4001 ? 'The meeting has ended' : 'Disconnected';
    document.getElementById('error-title').textContent = title;
    document.getElementById('error-message').textContent =
      d.code === 1000 ? '' : lastError?.closeCode === d.code ? lastError.message : d.reason;
    document.getElementById('error-code').textContent =
      lastError?.closeCode === d.code ? lastError.code : String(d.code);
    document.getElementById('error').hidden = false;
  });

  window.addEventListener('message', async (ev) => {
    if (ev.source !== window.parent || !allowed.includes(ev.origin)) return;
    const m = ev.data;
    if (!m || typeof m !== 'object' || m.type !== 'parley:command') return;
    const reply = (body) => post({ type: 'parley:result', id: m.id ?? null, ...body }, ev.origin);
    if (!Object.hasOwn(COMMANDS, m.command)) {
      reply({ ok: false, error: { code: 'unknown_command', message: `Unknown command ${String(m.command).slice(0, 40)}.` } });
      return;
    }
    try {
      const args = COMMANDS[m.command](Array.isArray(m.args) ? m.args : []);
      const value = await meeting[m.command](...args);
      reply({ ok: true, value: value ?? null });
    } catch (e) {
      reply({ ok: false, error: { code: e?.code || 'command_failed', message: e?.message || String(e) } });
    }
  });
  // A test or debugging handle, like the meeting page's window.parley.
  window.parleyEmbed = meeting;
}

start();
post({ type: 'parley:ready' });
