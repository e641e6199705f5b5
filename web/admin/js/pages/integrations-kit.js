// Pieces shared by the integration pages (CRM, keys, webhooks, delivery log, recordings, audit,
// usage). Not a page itself: pages/index.js does not list it.

import { h, badge, busy, errorText } from '../ui.js';

/** A console link to `path` that keeps the operator's `?account=` (an admin has none). */
export function pageHref(ctx, path) {
  const account = ctx.params && ctx.params.get('account');
  return account ? `#/${path}?account=${encodeURIComponent(account)}` : `#/${path}`;
}

/**
 * Copies `text()` to the clipboard; says how it went in `status` (a role=status element).
 * Falls back to selecting `input` so the person can press Ctrl+C when the browser refuses.
 */
export async function copyText(text, status, input) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = 'Copied to the clipboard.';
  } catch {
    if (input) {
      input.focus();
      input.select();
    }
    status.textContent = 'The browser did not allow copying: the text is selected, press Ctrl+C.';
  }
}

/**
 * A secret shown once, right after it was made: a read-only field, a Copy button, the warning
 * that it will not be shown again, and a "Done" button that removes it (`onDone` after).
 */
export function secretOnce({ label, value, note, onDone }) {
  const input = h('input', { type: 'text', readonly: true, value, class: 'secret-value', spellcheck: 'false', autocomplete: 'off', 'data-secret': '' });
  const status = h('p', { class: 'form-note', role: 'status' });
  const copy = h('button', { type: 'button', class: 'btn', onclick: () => copyText(value, status, input) }, 'Copy');
  const box = h(
    'div',
    { class: 'notice secret-once', role: 'region', 'aria-label': label },
    h('p', null, h('strong', null, label), ' — shown only now. Copy it and keep it somewhere safe: Parley cannot show it again.'),
    note ? h('p', { class: 'hint' }, note) : null,
    h('div', { class: 'copy-row' }, input, copy),
    status,
    h('button', { type: 'button', class: 'btn btn-small', onclick: () => { box.remove(); if (onDone) onDone(); } }, 'Done, hide it'),
  );
  queueMicrotask(() => input.focus());
  input.addEventListener('focus', () => input.select());
  return box;
}

/** "1.5 MB" (powers of 1024, as storage quotas are counted). */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  if (i === 0) return `${v} ${units[0]}`;
  // One decimal below 10 (1.5 MB), none when it would be .0 (1 GB) or above (12 MB).
  const r = Math.round(v * 10) / 10;
  return `${r >= 10 ? Math.round(r) : r} ${units[i]}`;
}

/** "1 h 05 min", "12 min 30 s", "45 s" from seconds. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (hh) return `${hh} h ${String(mm).padStart(2, '0')} min`;
  if (mm) return `${mm} min${ss ? ` ${ss} s` : ''}`;
  return `${ss} s`;
}

const DELIVERY_STATUS = { pending: ['Pending', 'warn'], delivered: ['Delivered', 'ok'], failed: ['Failed', 'bad'] };
export function deliveryStatusBadge(s) {
  const [text, tone] = DELIVERY_STATUS[s] || [s, 'muted'];
  return badge(text, tone);
}

/** The event types a webhook endpoint may subscribe to, with what each means. */
export const EVENT_TYPES = [
  ['meeting.started', 'A meeting started (someone joined)'],
  ['meeting.ended', 'A meeting ended'],
  ['participant.joined', 'Someone joined a meeting'],
  ['participant.left', 'Someone left a meeting'],
  ['recording.ready', 'A recording is ready'],
  ['order.paid', 'An order was paid'],
  ['license.expiring', 'A license is about to expire'],
  ['seats.review', 'The monthly review of unused seats'],
];

/**
 * Runs `action` with `button` busy; errors go to `errorRegion` (role=alert) in the server's
 * words. Resolves to the action's result, or undefined after an error.
 */
export async function withBusy(button, label, errorRegion, action) {
  const done = busy(button, label);
  if (errorRegion) errorRegion.textContent = '';
  try {
    return await action();
  } catch (e) {
    if (errorRegion) errorRegion.textContent = errorText(e);
    else throw e;
    return undefined;
  } finally {
    done();
  }
}

/** A pager `load` over an endpoint answering a plain array with `?limit&offset` (one extra asked). */
export function offsetPages(api, path, { extra = '' } = {}) {
  return async ({ limit, offset, signal }) => {
    const sep = path.includes('?') ? '&' : '?';
    const rows = await api('GET', `${path}${sep}limit=${limit + 1}&offset=${offset}${extra}`, undefined, { signal });
    return { items: rows.slice(0, limit), hasMore: rows.length > limit };
  };
}
