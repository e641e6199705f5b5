// Building blocks of the console's pages: an element builder, money and date formats, the
// standard loading and error states, tables, a paged list, a modal dialog and form helpers.
// Nothing here knows about a particular page or endpoint.

/**
 * Creates an element. `attrs`: `class`, `text`, `on<event>` handlers, `aria-*`/`data-*`,
 * boolean attributes (true sets, false/null/undefined skips), DOM properties such as `value`,
 * `checked`, `disabled`. Children: nodes, strings, numbers, arrays (flattened), null (skipped).
 * There is no `style` attribute on purpose (the Content-Security-Policy blocks it): use classes.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'style') throw new Error('h(): use classes, inline styles are blocked by the CSP');
    else if (['value', 'checked', 'disabled', 'selected', 'hidden', 'htmlFor'].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Removes everything in `el` and puts `children` in. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---- formats ----

/**
 * "12 345.67 ₽" from a decimal string ("12345.67", "-5", "0.5"). Works on the digits, never
 * through a float, so kopecks are exact. Anything that is not a plain decimal is shown as it is.
 */
export function money(value, currency = '₽') {
  if (value === null || value === undefined || value === '') return '—';
  const s = String(value).trim();
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(s);
  if (!m) return `${s} ${currency}`;
  const [, sign, int, frac = ''] = m;
  const grouped = int.replace(/^0+(?=\d)/, '').replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
  const cents = frac.length >= 2 ? frac : frac.padEnd(2, '0');
  return `${sign}${grouped}.${cents} ${currency}`;
}

const MSK = 'Europe/Moscow';

function mskParts(d, withTime) {
  const opts = { timeZone: MSK, year: 'numeric', month: '2-digit', day: '2-digit' };
  if (withTime) Object.assign(opts, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const parts = {};
  for (const p of new Intl.DateTimeFormat('en-GB', opts).formatToParts(d)) parts[p.type] = p.value;
  return parts;
}

/**
 * dd.mm.yyyy. A calendar date ("2027-03-01", the server's dates are Moscow dates already) is
 * reformatted as it is; a timestamp is shown as its Moscow date.
 */
export function date(value) {
  if (!value) return '—';
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(value));
  if (m) return `${m[3]}.${m[2]}.${m[1]}`;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const p = mskParts(d, false);
  return `${p.day}.${p.month}.${p.year}`;
}

/** "dd.mm.yyyy hh:mm MSK" for a timestamp. */
export function dateTime(value) {
  if (!value) return '—';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const p = mskParts(d, true);
  return `${p.day}.${p.month}.${p.year} ${p.hour}:${p.minute} MSK`;
}

/** "3 days", "1 day". */
export function plural(n, one, many) {
  return `${n} ${n === 1 || n === -1 ? one : many}`;
}

// ---- states ----

/** Puts a loading state in `container` (role=status, announced). */
export function loading(container, label = 'Loading…') {
  return replace(container, h('p', { class: 'state state-loading', role: 'status' }, h('span', { class: 'admin-spinner', 'aria-hidden': 'true' }), label));
}

/**
 * Puts an error state in `container` (role=alert) with the server's message and, when `retry`
 * is given, a Retry button that calls it.
 */
export function showError(container, err, retry) {
  const message = errorText(err);
  const box = h('div', { class: 'state state-error notice notice-error', role: 'alert' }, h('p', { class: 'state-message' }, message));
  if (retry) {
    box.append(h('button', { type: 'button', class: 'btn btn-small', onclick: () => retry() }, 'Retry'));
  }
  return replace(container, box);
}

/** The message to show a person for an error (the server's own words when it gave some). */
export function errorText(err) {
  if (!err) return 'Something went wrong.';
  if (typeof err === 'string') return err;
  if (err.status === 401) return `${err.message || 'You are not signed in.'}`;
  return err.message || String(err);
}

/** A small status badge: `tone` is one of ok, warn, bad, muted. */
export function badge(text, tone = 'muted') {
  return h('span', { class: `status-badge status-${tone}` }, text);
}

// ---- tables and paged lists ----

/**
 * A table: `columns` [{label, value: row => node|string, align: 'right'?, class?}], `rows`,
 * `empty` text when there are none, `caption` (shown, or visually hidden with `hideCaption`).
 */
export function table({ columns, rows, empty = 'Nothing here yet.', caption, hideCaption = false, rowClass }) {
  if (!rows || rows.length === 0) return h('p', { class: 'empty' }, empty);
  const head = h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.align === 'right' ? 'num' : null }, c.label)));
  const body = rows.map((r) =>
    h(
      'tr',
      { class: rowClass ? rowClass(r) : null },
      columns.map((c) => {
        const v = c.value(r);
        return h('td', { class: [c.align === 'right' ? 'num' : null, c.class].filter(Boolean).join(' ') || null }, v ?? '—');
      }),
    ),
  );
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'admin-table' },
      caption ? h('caption', { class: hideCaption ? 'visually-hidden' : null }, caption) : null,
      h('thead', null, head),
      h('tbody', null, body),
    ),
  );
}

let pagerSeq = 0;

/**
 * A paged list. `load({limit, offset, signal, fresh})` resolves to `{items, total?, hasMore?}`
 * (`fresh`: the first show or a reload, not a page turn);
 * `render(items)` makes the node shown for a page. Previous/Next buttons, "Page N of M",
 * loading and error states (with Retry). The returned element has `reload()` (same page) and
 * `reset()` (first page) for after an action changed the list.
 */
export function pager({ load, render, pageSize = 20, label = 'List' }) {
  const id = `pager-${++pagerSeq}`;
  const region = h('div', { class: 'pager-body', id, 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', class: 'btn btn-small', 'aria-controls': id }, '← Previous');
  const next = h('button', { type: 'button', class: 'btn btn-small', 'aria-controls': id }, 'Next →');
  const where = h('span', { class: 'pager-where' });
  const nav = h('nav', { class: 'pager-nav', 'aria-label': `${label}: pages` }, prev, where, next);
  const el = h('div', { class: 'pager' }, region, nav);
  let offset = 0;
  let controller = null;

  async function show(at, focusFirst, fresh = false) {
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    offset = Math.max(0, at);
    prev.disabled = true;
    next.disabled = true;
    el.setAttribute('aria-busy', 'true');
    loading(region, 'Loading…');
    try {
      const page = await load({ limit: pageSize, offset, signal: mine.signal, fresh });
      if (mine.signal.aborted) return;
      const items = page.items || [];
      if (items.length === 0 && offset > 0) {
        // The list shrank under us (e.g. the last item of the last page was removed).
        return show(Math.max(0, offset - pageSize), focusFirst, fresh);
      }
      replace(region, render(items));
      const n = Math.floor(offset / pageSize) + 1;
      const total = typeof page.total === 'number' ? page.total : null;
      const more = typeof page.hasMore === 'boolean' ? page.hasMore : total !== null ? offset + items.length < total : items.length === pageSize;
      const pages = total !== null ? Math.max(1, Math.ceil(total / pageSize)) : null;
      where.textContent = pages ? `Page ${n} of ${pages}` : `Page ${n}`;
      prev.disabled = offset === 0;
      next.disabled = !more;
      nav.hidden = offset === 0 && !more;
      if (focusFirst) region.querySelector('a, button, input, select, textarea, [tabindex]')?.focus();
    } catch (e) {
      if (e && e.name === 'AbortError') return;
      showError(region, e, () => show(offset, focusFirst, true));
      nav.hidden = false;
      where.textContent = '';
      prev.disabled = offset === 0;
    } finally {
      if (controller === mine) el.removeAttribute('aria-busy');
    }
  }

  prev.addEventListener('click', () => show(offset - pageSize, false));
  next.addEventListener('click', () => show(offset + pageSize, false));
  el.reload = () => show(offset, false, true);
  el.reset = () => show(0, false, true);
  show(0, false, true);
  return el;
}

/**
 * Turns a whole array into a pager's `load` (for endpoints that answer the full list; the
 * list is fetched on the first show and on reload, and cut into pages here).
 */
export function pagesOf(fetchAll) {
  let cache = null;
  return async ({ limit, offset, signal, fresh }) => {
    if (fresh || !cache) cache = await fetchAll({ signal });
    return { items: cache.slice(offset, offset + limit), total: cache.length };
  };
}

// ---- dialog ----

/**
 * A modal dialog: `title`, `body` (node or string), `confirmLabel` (omit for a dialog with only
 * Close), `onConfirm` (may be async; while it runs the button is busy; if it throws, the error
 * is shown inside and the dialog stays open). Escape and Cancel close it; focus stays inside
 * while open and returns to where it was. Resolves true when confirmed, false when dismissed.
 */
export function dialog({ title, body, confirmLabel, cancelLabel, onConfirm, danger = false }) {
  return new Promise((resolve) => {
    const back = document.activeElement;
    const titleId = `dlg-${++pagerSeq}`;
    const error = h('p', { class: 'form-error', role: 'alert' });
    const cancel = h('button', { type: 'button', class: 'btn' }, cancelLabel || (confirmLabel ? 'Cancel' : 'Close'));
    const confirm = confirmLabel
      ? h('button', { type: 'submit', class: danger ? 'btn btn-danger' : 'btn btn-primary' }, confirmLabel)
      : null;
    const form = h(
      'form',
      { method: 'dialog', class: 'dialog-form', novalidate: true },
      h('h2', { id: titleId, class: 'dialog-title' }, title),
      h('div', { class: 'dialog-body' }, body),
      error,
      h('div', { class: 'dialog-actions' }, confirm, cancel),
    );
    const dlg = h('dialog', { class: 'admin-dialog', 'aria-labelledby': titleId }, form);
    let result = false;
    let running = false;

    function close() {
      if (running) return;
      dlg.close();
    }
    dlg.addEventListener('cancel', (ev) => {
      // Escape while the confirmation runs would leave it orphaned; wait for it.
      if (running) ev.preventDefault();
    });
    dlg.addEventListener('close', () => {
      dlg.remove();
      if (back && typeof back.focus === 'function' && document.contains(back)) back.focus();
      resolve(result);
    });
    cancel.addEventListener('click', close);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!confirm || running) return;
      error.textContent = '';
      running = true;
      const done = busy(confirm, 'Working…');
      cancel.disabled = true;
      try {
        if (onConfirm) await onConfirm();
        result = true;
        running = false;
        done();
        dlg.close();
      } catch (e) {
        running = false;
        done();
        cancel.disabled = false;
        error.textContent = errorText(e);
        confirm.focus();
      }
    });
    // Keep Tab inside (showModal makes the rest inert in current browsers; this covers older ones).
    dlg.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Tab') return;
      const f = [...dlg.querySelectorAll('button, a[href], input, select, textarea, [tabindex]:not([tabindex="-1"])')].filter((x) => !x.disabled);
      if (f.length === 0) return;
      const first = f[0];
      const last = f[f.length - 1];
      if (ev.shiftKey && document.activeElement === first) {
        ev.preventDefault();
        last.focus();
      } else if (!ev.shiftKey && document.activeElement === last) {
        ev.preventDefault();
        first.focus();
      }
    });
    document.body.append(dlg);
    dlg.showModal();
    (dlg.querySelector('input, select, textarea') || confirm || cancel).focus();
  });
}

// ---- forms ----

let fieldSeq = 0;

/** A labelled form field: the input gets an id tied to its <label>; `hint` goes to aria-describedby. */
export function field(label, input, hint) {
  if (!input.id) input.id = `f-${++fieldSeq}`;
  const parts = [h('label', { for: input.id }, label), input];
  if (hint) {
    const hid = `${input.id}-hint`;
    input.setAttribute('aria-describedby', hid);
    parts.push(h('span', { id: hid, class: 'hint field-hint' }, hint));
  }
  return h('div', { class: 'field' }, parts);
}

/**
 * Marks a button busy while a request runs (disabled, says what happens, aria-busy on its form).
 * Returns the function that undoes it.
 */
export function busy(button, label = 'Working…') {
  const idle = button.textContent;
  const form = button.closest('form');
  button.disabled = true;
  button.textContent = label;
  button.setAttribute('aria-busy', 'true');
  if (form) form.setAttribute('aria-busy', 'true');
  return () => {
    button.disabled = false;
    button.textContent = idle;
    button.removeAttribute('aria-busy');
    if (form) form.removeAttribute('aria-busy');
  };
}

/** A page heading block: <h1> (focused by the router on navigation) and an optional lead line. */
export function pageHeader(title, lead, ...actions) {
  return h(
    'div',
    { class: 'page-header' },
    h('div', null, h('h1', { tabindex: '-1' }, title), lead ? h('p', { class: 'lead' }, lead) : null),
    actions.length ? h('div', { class: 'page-actions' }, actions) : null,
  );
}

/** A polite status line for confirmations ("Seat assigned."). */
export function statusLine() {
  return h('p', { class: 'form-note admin-note', role: 'status' });
}
