// Shared pieces of the operator's pages (not a page itself): signing in and out with an
// operator session, calls that notice an ended session, and the words of statuses.
//
// The operator token is typed once on the sign-in page and traded for an operator session
// (POST /api/v1/operator/sessions): only the session's `op_…` token is kept, in this tab's
// sessionStorage (through api.js). It expires after 30 idle minutes or 8 hours; signing out
// revokes it on the server. Neither token is ever written to the console or a log.

import { setOperatorToken, operatorToken, ApiError } from '../api.js';
import { badge, h } from '../ui.js';

export const SIGN_IN = 'operator/sign-in';

/**
 * Opens an operator session with `token` (the operator token itself) and keeps the session in
 * this tab. Resolves to the session's description; rejects with ApiError (401: not the token).
 */
export async function signInWithToken(token) {
  let res;
  try {
    // A plain fetch: api() would send whatever bearer this tab already holds instead.
    res = await fetch('/api/v1/operator/sessions', {
      method: 'POST',
      headers: { Accept: 'application/json', Authorization: `Bearer ${token}` },
      credentials: 'omit',
    });
  } catch {
    throw new ApiError(0, 'network', 'The server could not be reached. Check your connection and try again.');
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: a proxy's page
  }
  if (!res.ok) {
    const err = (body && body.error) || {};
    const message =
      res.status === 401
        ? 'That is not the operator token of this server.'
        : err.message || `The server answered ${res.status}.`;
    throw new ApiError(res.status, err.code || `http_${res.status}`, message);
  }
  await setOperatorToken(body.token);
  held = body.token;
  return body;
}

// The session this tab signed in with, kept so that signing out (the shell's button, which
// forgets the token) can still revoke it on the server.
let held = operatorToken();

function revoke(token) {
  // keepalive: the page may be navigating away while this goes out. Failure needs no handling:
  // the session then ends at its idle timeout anyway.
  fetch('/api/v1/operator/sessions/current', {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${token}` },
    credentials: 'omit',
    keepalive: true,
  }).catch(() => {});
}

window.addEventListener('parley-admin-session', (ev) => {
  const kind = ev.detail && ev.detail.kind;
  if (kind === 'operator') {
    held = operatorToken() || held;
  } else if (held) {
    if (held.startsWith('op_')) revoke(held);
    held = null;
  }
});

/**
 * `ctx.api` for the operator's pages: an ended session (401) forgets the session and goes to
 * the sign-in page, which says why and comes back here afterwards.
 */
export function operatorApi(ctx) {
  return async (method, path, body, opts = {}) => {
    try {
      return await ctx.api(method, path, body, { signal: ctx.signal, ...opts });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        held = null;
        await setOperatorToken(null);
        const back = location.hash.replace(/^#\/?/, '');
        ctx.navigate(`#/${SIGN_IN}?ended=1&next=${encodeURIComponent(back)}`);
      }
      throw e;
    }
  };
}

const ACCOUNT_STATUS = { active: ['Active', 'ok'], suspended: ['Suspended', 'bad'], terminated: ['Terminated', 'bad'] };

/** The account's status (`{status, reason?}` as the API gives it) as a badge. */
export function accountStatusBadge(status) {
  const s = (status && status.status) || status;
  const [text, tone] = ACCOUNT_STATUS[s] || [String(s), 'muted'];
  return badge(text, tone);
}

const KINDS = { individual: 'Individual', sole_proprietor: 'Sole proprietor', legal_entity: 'Legal entity' };
export function accountKindLabel(k) {
  return KINDS[k] || k;
}

/** A <dl> of label/value pairs (values: strings or nodes; null values are left out). */
export function facts(pairs, cls = 'facts') {
  return h(
    'dl',
    { class: cls },
    pairs.filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]),
  );
}

/** A number input. */
export function numberInput(attrs = {}) {
  return h('input', { type: 'number', inputmode: 'numeric', ...attrs });
}

/** A text input. */
export function textInput(attrs = {}) {
  return h('input', { type: 'text', autocomplete: 'off', ...attrs });
}

/** A checkbox with its label after it (put it in a `fieldset.choice`). */
export function checkbox(label, attrs = {}) {
  const input = h('input', { type: 'checkbox', ...attrs });
  return { input, node: h('label', null, input, label) };
}

/** Bytes as "12.3 MB" (powers of 1024, as memory is counted). */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** "2 h 05 min", "3 d 4 h" for a number of seconds. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${hr} h`;
  if (hr > 0) return `${hr} h ${String(m).padStart(2, '0')} min`;
  if (m > 0) return `${m} min`;
  return `${s} s`;
}
