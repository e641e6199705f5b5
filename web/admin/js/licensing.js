// Shared words and date arithmetic of the account pages (licenses, seats, orders). Dates are
// the server's calendar dates (`YYYY-MM-DD`, Moscow); arithmetic on them is done in UTC so no
// local time zone or daylight saving can shift a day.

import { badge } from './ui.js';

/** Today's date in Moscow as `YYYY-MM-DD` (the licensing rules' "today"). */
export function moscowToday(now = new Date()) {
  const p = {};
  for (const x of new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Moscow', year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(now)) p[x.type] = x.value;
  return `${p.year}-${p.month}-${p.day}`;
}

function utc(d) {
  const [y, m, day] = d.split('-').map(Number);
  return Date.UTC(y, m - 1, day);
}

/** Whole days from `a` to `b` (b − a). */
export function daysBetween(a, b) {
  return Math.round((utc(b) - utc(a)) / 86400000);
}

/** `d` plus `n` days. */
export function addDays(d, n) {
  return new Date(utc(d) + n * 86400000).toISOString().slice(0, 10);
}

const LOT_STATUS = {
  pending_payment: ['Pending payment', 'warn'],
  active: ['Active', 'ok'],
  suspended: ['Suspended', 'bad'],
  expired: ['Expired', 'muted'],
  superseded: ['Superseded', 'muted'],
  terminated: ['Terminated', 'bad'],
};

export function lotStatusBadge(status) {
  const [text, tone] = LOT_STATUS[status] || [status, 'muted'];
  return badge(text, tone);
}

const ORDER_TYPES = {
  initial: 'Initial purchase',
  renewal: 'Renewal',
  top_up: 'Top-up',
  renewal_with_top_up: 'Renewal with top-up',
  renewal_with_reduction: 'Renewal with reduction',
};

export function orderTypeLabel(t) {
  return ORDER_TYPES[t] || t;
}

const INVOICE_STATUS = { issued: ['Awaiting payment', 'warn'], paid: ['Paid', 'ok'], cancelled: ['Cancelled', 'muted'] };
export function invoiceStatusBadge(s) {
  const [text, tone] = INVOICE_STATUS[s] || [s, 'muted'];
  return badge(text, tone);
}

const DOC_STATUS = { sent: ['Awaiting acceptance', 'warn'], accepted: ['Accepted', 'ok'], disputed: ['Disputed', 'bad'] };
export function documentStatusBadge(s) {
  const [text, tone] = DOC_STATUS[s] || [s, 'muted'];
  return badge(text, tone);
}

const ORDER_STATUS = {
  pending_payment: ['Awaiting payment', 'warn'],
  signed: ['Signed, invoice unpaid', 'warn'],
  paid: ['Paid', 'ok'],
  cancelled: ['Cancelled', 'muted'],
};
export function orderStatusBadge(s) {
  const [text, tone] = ORDER_STATUS[s] || [s, 'muted'];
  return badge(text, tone);
}

let tariffCache = null;

/** The tariff catalogue by code (fetched once per page load; it changes rarely). */
export async function tariffsByCode(api, { signal } = {}) {
  if (!tariffCache) {
    tariffCache = api('GET', '/tariffs', undefined, { signal }).then(
      (list) => new Map(list.map((t) => [t.code, t])),
      (e) => {
        tariffCache = null;
        throw e;
      },
    );
  }
  return tariffCache;
}

/** A lot's tariff as a person reads it: "Business 12 (business-12)". */
export function tariffName(tariffs, code) {
  const t = tariffs && tariffs.get(code);
  return t ? t.name : code;
}

/** Whether a lot grants access today (`starts_on <= today < ends_on`, active). */
export function isCurrent(lot, today) {
  return lot.status === 'active' && lot.starts_on <= today && today < lot.ends_on;
}

/** The account id the pages work on (the admin's own; the operator's from `?account=`). */
export function accountOf(ctx) {
  return ctx.accountId || (typeof ctx.session === 'function' ? ctx.session().accountId : ctx.session.accountId);
}

/**
 * A pager's `load` over a list endpoint with `?limit&offset&order`: asks one entry more than
 * the page to know whether a next page exists, newest first unless told otherwise.
 */
export function serverPages(api, path, { order = 'newest', map } = {}) {
  return async ({ limit, offset, signal }) => {
    const sep = path.includes('?') ? '&' : '?';
    const rows = await api('GET', `${path}${sep}limit=${limit + 1}&offset=${offset}&order=${order}`, undefined, { signal });
    const items = rows.slice(0, limit);
    return { items: map ? await map(items) : items, hasMore: rows.length > limit };
  };
}

const ROLE = { account_admin: 'Account admin', member: 'Member' };
export function roleLabel(r) {
  return ROLE[r] || r;
}

const USER_STATUS = { invited: ['Invited', 'warn'], active: ['Active', 'ok'], disabled: ['Disabled', 'muted'] };
export function userStatusBadge(s) {
  const [text, tone] = USER_STATUS[s] || [s, 'muted'];
  return badge(text, tone);
}

/** A decimal amount string ("15245.9", "-3.00") as whole kopecks (BigInt), for exact comparison. */
export function kopecks(value) {
  const m = /^(-?)(\d+)(?:\.(\d{1,2}))?$/.exec(String(value).trim());
  if (!m) return null;
  const k = BigInt(m[2]) * 100n + BigInt((m[3] || '').padEnd(2, '0'));
  return m[1] ? -k : k;
}
