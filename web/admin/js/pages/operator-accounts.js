// The operator's accounts: every client account, newest first, a page at a time, searchable by
// name, INN, CRM system or CRM id; what each holds today and whether an invoice waits for its
// bank transfer. A new account is created here too (with its first API key, shown once).

import { h, replace, pager, table, pageHeader, badge, field, dialog, statusLine, date } from '../ui.js';
import { accountKindLabel, accountStatusBadge, checkbox, operatorApi, textInput } from './operator-kit.js';

const PAGE = 20;

export default {
  path: 'operator/accounts',
  title: 'Accounts',
  section: 'operator',
  async render(ctx) {
    const api = operatorApi(ctx);
    let query = ctx.params.get('q') || '';
    const search = h('input', { type: 'search', name: 'q', value: query, maxlength: '100', autocomplete: 'off' });
    const clear = h('button', { type: 'button', class: 'btn' }, 'Clear');
    const form = h(
      'form',
      { class: 'inline-form', role: 'search', 'aria-label': 'Accounts' },
      field('Search accounts', search, 'Name, INN, CRM system or CRM id (any part), or an account id.'),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Search'), clear),
    );
    const note = statusLine();
    const listCard = h('section', { class: 'card', 'aria-labelledby': 'accounts-list-title' });
    const create = h('button', { type: 'button', class: 'btn' }, 'New account');
    replace(
      ctx.main,
      pageHeader('Accounts', 'Client accounts with their seats today, unpaid invoices and status. Open one to register a payment, suspend or terminate it.', create),
      h('section', { class: 'card' }, form, note),
      listCard,
    );

    let list;
    function showList() {
      list = pager({
        label: 'Accounts',
        pageSize: PAGE,
        load: async ({ limit, offset, signal }) => {
          const q = query ? `&q=${encodeURIComponent(query)}` : '';
          const page = await api('GET', `/accounts?limit=${limit}&offset=${offset}${q}`, undefined, { signal });
          return { items: page.items, total: page.total };
        },
        render: (rows) =>
          table({
            caption: query ? `Accounts matching “${query}”` : 'All accounts',
            empty: query ? `No account matches “${query}”.` : 'No accounts yet.',
            rows,
            columns: [
              { label: 'Name', value: (a) => h('a', { href: `#/operator/accounts/view?id=${encodeURIComponent(a.id)}` }, a.name) },
              { label: 'Kind', value: (a) => accountKindLabel(a.kind) },
              { label: 'INN', value: (a) => a.inn || '—' },
              { label: 'CRM', value: (a) => `${a.crm.system} / ${a.crm.external_id}` },
              {
                label: 'Status',
                value: (a) =>
                  h(
                    'span',
                    null,
                    accountStatusBadge(a.status),
                    a.status.reason ? h('span', { class: 'hint' }, ` ${a.status.reason}`) : null,
                    a.terminates_on && a.status.status !== 'terminated' ? h('span', { class: 'hint' }, ` ends ${date(a.terminates_on)}`) : null,
                  ),
              },
              { label: 'Seats today', align: 'right', value: (a) => String(a.seats) },
              {
                label: 'Unpaid invoices',
                align: 'right',
                value: (a) => (a.unpaid_invoices > 0 ? badge(`${a.unpaid_invoices} unpaid`, 'warn') : '0'),
              },
            ],
          }),
      });
      replace(listCard, h('h2', { class: 'section-title', id: 'accounts-list-title' }, 'Accounts'), list);
    }

    function setQuery(q) {
      query = q.trim();
      search.value = query;
      // Keep the search in the address (back and reload find it), without re-rendering the page.
      history.replaceState(null, '', `#/operator/accounts${query ? `?q=${encodeURIComponent(query)}` : ''}`);
      showList();
    }

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      setQuery(search.value);
    });
    clear.addEventListener('click', () => {
      setQuery('');
      search.focus();
    });
    search.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && search.value) {
        ev.preventDefault();
        setQuery('');
      }
    });
    create.addEventListener('click', () => newAccount(api, ctx, note));
    showList();
  },
};

/** The new-account form in a dialog; on success shows the first API key once. */
async function newAccount(api, ctx, note) {
  const name = textInput({ required: true, maxlength: '300' });
  const kind = h(
    'select',
    { required: true },
    h('option', { value: 'legal_entity' }, 'Legal entity'),
    h('option', { value: 'sole_proprietor' }, 'Sole proprietor'),
    h('option', { value: 'individual' }, 'Individual'),
  );
  const inn = textInput({ inputmode: 'numeric', maxlength: '12', pattern: '\\d{10}|\\d{12}' });
  const crmSystem = textInput({ required: true, maxlength: '128', value: 'sbercrm' });
  const crmId = textInput({ required: true, maxlength: '128' });
  const address = textInput({ maxlength: '500' });
  const resident = checkbox('Resident of the Russian Federation', { checked: true });
  const postpay = checkbox('Postpay agreed (5.3.4.1)');
  const body = h(
    'div',
    { class: 'form-grid' },
    field('Name', name),
    field('Kind', kind),
    field('INN', inn, '10 digits for a legal entity, 12 otherwise.'),
    field('CRM system', crmSystem),
    field('CRM account id', crmId),
    field('Address', address),
    h('fieldset', { class: 'choice' }, h('legend', null, 'Terms'), resident.node, postpay.node),
  );
  let created = null;
  await dialog({
    title: 'New account',
    body,
    confirmLabel: 'Create account',
    onConfirm: async () => {
      const req = {
        name: name.value,
        kind: kind.value,
        crm_system: crmSystem.value,
        crm_external_id: crmId.value,
        resident: resident.input.checked,
        postpay_allowed: postpay.input.checked,
      };
      if (inn.value.trim()) req.inn = inn.value.trim();
      if (address.value.trim()) req.address = address.value.trim();
      created = await api('POST', '/accounts', req);
    },
  });
  if (!created) return;
  note.textContent = `Account “${created.account.name}” created.`;
  // The key's secret exists only in this answer: show it once, for the account's integrator.
  await dialog({
    title: 'The account’s first API key',
    body: h(
      'div',
      null,
      h('p', null, 'Give this key to the account’s integrator. It is shown only now.'),
      h('p', null, h('code', null, created.api_key.bearer)),
    ),
  });
  ctx.navigate(`#/operator/accounts/view?id=${encodeURIComponent(created.account.id)}`);
}
