// The delivery log: the account's outbox — webhook events, CRM notes and tasks, emails — with
// each message's status, attempts, next try, last error and (masked) recipient, its attempt log,
// and a Retry button for failed messages.

import { h, replace, table, pager, dateTime, pageHeader, statusLine, field, errorText } from '../ui.js';
import { accountOf } from '../licensing.js';
import { deliveryStatusBadge, offsetPages, pageHref } from './integrations-kit.js';

const KIND = {
  customer_webhook: 'Webhook',
  crm_note: 'CRM note',
  crm_task: 'CRM task',
  email: 'Email',
};

/** What the message is, as a person reads it: "Webhook meeting.ended", "Email invitation". */
function what(m) {
  const kind = KIND[m.kind] || m.kind;
  const p = m.payload || {};
  if (m.kind === 'customer_webhook' && p.type) return [kind, ' ', h('code', null, p.type)];
  if (m.kind === 'email' && p.purpose) return `${kind}: ${String(p.purpose).replace(/_/g, ' ')}`;
  return kind;
}

function attemptLog(m) {
  if (!m.attempt_log || m.attempt_log.length === 0) return h('span', { class: 'hint' }, 'No attempt yet');
  return h(
    'details',
    { class: 'attempts' },
    h('summary', null, `Attempt log (${m.attempt_log.length})`),
    h(
      'ol',
      { class: 'plain-list' },
      m.attempt_log.map((a) =>
        h('li', null, `#${a.attempt} ${dateTime(a.at)} — ${a.outcome}${a.http_status ? ` (HTTP ${a.http_status})` : ''}${a.detail ? `: ${a.detail}` : ''}`),
      ),
    ),
  );
}

export default {
  path: 'deliveries',
  title: 'Delivery log',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const status = statusLine();
    const initial = ['all', 'failed', 'pending', 'delivered'].includes(ctx.params.get('status')) ? ctx.params.get('status') : 'all';
    const filter = h(
      'select',
      { name: 'status', id: 'delivery-status' },
      [
        ['all', 'All messages'],
        ['failed', 'Failed'],
        ['pending', 'Pending'],
        ['delivered', 'Delivered'],
      ].map(([v, t]) => h('option', { value: v, selected: v === initial }, t)),
    );
    const refresh = h('button', { type: 'button', class: 'btn' }, 'Refresh');
    const holder = h('div');
    let list;

    async function retry(m, button) {
      button.disabled = true;
      button.textContent = 'Retrying…';
      try {
        await ctx.api('POST', `/accounts/${account}/outbox/${encodeURIComponent(m.id)}/retry`);
        status.textContent = `Message ${m.id} is queued again; it is sent within seconds.`;
        list.reload();
      } catch (e) {
        status.textContent = errorText(e);
        button.disabled = false;
        button.textContent = 'Retry';
      }
    }

    function build() {
      list = pager({
        label: 'Delivery log',
        pageSize: 20,
        load: offsetPages(ctx.api, `/accounts/${account}/outbox?status=${filter.value}`),
        render: (rows) =>
          table({
            caption: 'Outbound messages, newest first',
            hideCaption: true,
            empty: filter.value === 'all' ? 'Nothing has been sent yet.' : `No ${filter.value} messages.`,
            rows,
            rowClass: (m) => `delivery delivery-${m.status}`,
            columns: [
              { label: 'Created', value: (m) => dateTime(m.created_at) },
              { label: 'Message', value: what },
              { label: 'Recipient', value: (m) => (m.recipient ? h('code', { class: 'nowrap' }, m.recipient) : '—') },
              { label: 'Status', value: (m) => deliveryStatusBadge(m.status) },
              { label: 'Attempts', align: 'right', value: (m) => `${m.attempts} of ${m.max_attempts}` },
              { label: 'Next try', value: (m) => (m.status === 'pending' ? dateTime(m.next_attempt_at) : m.status === 'delivered' ? `Delivered ${dateTime(m.delivered_at)}` : '—') },
              { label: 'Last error', value: (m) => (m.last_error ? h('span', { class: 'break' }, m.last_error) : '—') },
              { label: 'Details', value: attemptLog },
              {
                label: 'Actions',
                value: (m) => {
                  if (m.status !== 'failed') return '—';
                  const b = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Retry message ${m.id}` }, 'Retry');
                  b.addEventListener('click', () => retry(m, b));
                  return b;
                },
              },
            ],
          }),
      });
      replace(holder, list);
    }

    filter.addEventListener('change', () => {
      status.textContent = '';
      build();
    });
    refresh.addEventListener('click', () => list.reload());

    replace(
      ctx.main,
      pageHeader('Delivery log', 'Everything Parley sends for the account: webhook events, CRM notes and tasks, emails. Failed messages can be sent again.', h('a', { class: 'btn', href: pageHref(ctx, 'webhooks') }, 'Webhook endpoints')),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'log-heading' },
        h('h2', { id: 'log-heading', class: 'section-title' }, 'Messages'),
        h('div', { class: 'inline-form' }, field('Show', filter), refresh),
        status,
        holder,
      ),
    );
    build();
  },
};
