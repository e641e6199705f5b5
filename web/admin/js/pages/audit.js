// The audit log: who did what to personal data and licenses, when and from where. Filtered by
// action (one, or a group such as "seat.") and by a period of Moscow days; paged newest first
// (the server pages by cursor; the pager's page numbers map to the cursors seen).

import { h, replace, table, pager, dateTime, pageHeader, field, errorText } from '../ui.js';
import { accountOf } from '../licensing.js';

// Known actions, for the suggestions of the filter (the server takes any name or group).
const ACTIONS = [
  'api_key.', 'api_key.issue', 'api_key.revoke', 'auth.', 'auth.sign_in', 'auth.sign_out', 'chat.read',
  'contact.add', 'deal.', 'document.object', 'meeting.end', 'order.', 'order.cancel', 'order.place', 'order.sign',
  'payment.register', 'person.erase', 'recording.', 'recording.download', 'recording.link', 'recording.start',
  'recording.stop', 'sdk_key.', 'sdk_key.create', 'sdk_key.revoke', 'seat.', 'seat.assign', 'seat.reclaim',
  'summary.read', 'user.', 'user.accept_invitation', 'user.invite', 'user.update',
];

const ACTOR = { user: 'User', api_key: 'API key', operator: 'Operator', meeting_host: 'Meeting host', anonymous: 'Anonymous' };

function who(e) {
  const kind = ACTOR[e.actor_kind] || e.actor_kind;
  return e.actor_id ? [kind, ' ', h('code', { class: 'break' }, e.actor_id)] : kind;
}

function target(e) {
  if (!e.target_kind) return '—';
  return e.target_id ? [e.target_kind, ' ', h('code', { class: 'break' }, e.target_id)] : e.target_kind;
}

export default {
  path: 'audit',
  title: 'Audit log',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const action = h('input', { type: 'text', name: 'action', list: 'audit-actions', maxlength: '64', autocomplete: 'off', spellcheck: 'false', placeholder: 'seat. or seat.assign' });
    const from = h('input', { type: 'date', name: 'from' });
    const to = h('input', { type: 'date', name: 'to' });
    const apply = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply');
    const clear = h('button', { type: 'button', class: 'btn' }, 'Clear');
    const formError = h('p', { class: 'form-error', role: 'alert' });
    const form = h(
      'form',
      { class: 'stack', novalidate: true, 'aria-label': 'Filter the audit log' },
      h('datalist', { id: 'audit-actions' }, ACTIONS.map((a) => h('option', { value: a }))),
      h('div', { class: 'inline-form' }, field('Action', action, 'A name, or a group ending with a dot.'), field('From', from), field('To', to), h('div', { class: 'form-actions' }, apply, clear)),
      formError,
    );
    const holder = h('div');

    function build() {
      const q = new URLSearchParams();
      if (action.value.trim()) q.set('action', action.value.trim());
      if (from.value) q.set('from', from.value);
      if (to.value) q.set('to', to.value);
      // Page start offset → the cursor that page starts after (the first page needs none).
      const cursors = new Map([[0, null]]);
      const list = pager({
        label: 'Audit log',
        pageSize: 25,
        load: async ({ limit, offset, signal }) => {
          const p = new URLSearchParams(q);
          p.set('limit', String(limit));
          const cursor = cursors.get(offset);
          if (cursor) p.set('cursor', cursor);
          let page;
          try {
            page = await ctx.api('GET', `/accounts/${account}/audit?${p}`, undefined, { signal });
            formError.textContent = '';
          } catch (e) {
            if (e.status === 400) formError.textContent = errorText(e);
            throw e;
          }
          if (page.next_cursor) cursors.set(offset + limit, page.next_cursor);
          return { items: page.entries, hasMore: Boolean(page.next_cursor) };
        },
        render: (rows) =>
          table({
            caption: 'Audit log entries, newest first',
            hideCaption: true,
            empty: q.toString() ? 'No entries match the filter.' : 'Nothing recorded yet.',
            rows,
            columns: [
              { label: 'When', value: (e) => dateTime(e.at) },
              { label: 'Action', value: (e) => h('code', null, e.action) },
              { label: 'Who', value: who },
              { label: 'What', value: target },
              { label: 'From', value: (e) => e.from_ip || '—' },
            ],
          }),
      });
      replace(holder, list);
    }

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (from.value && to.value && from.value > to.value) {
        formError.textContent = '“From” must be on or before “To”.';
        from.focus();
        return;
      }
      formError.textContent = '';
      build();
    });
    clear.addEventListener('click', () => {
      form.reset();
      formError.textContent = '';
      build();
      action.focus();
    });

    replace(
      ctx.main,
      pageHeader('Audit log', 'Every action on personal data and licenses: who, what, when (Moscow time) and from which address.'),
      h('section', { class: 'card', 'aria-labelledby': 'audit-heading' }, h('h2', { id: 'audit-heading', class: 'section-title' }, 'Entries'), form, holder),
    );
    build();
  },
};
