// Promotions, for the operator: the list, and a new promotion of any kind the rules know
// (percent, fixed amount per seat, progressive by the order's seats, loyalty by the account's
// paid total), permanent or time-limited, for chosen tariffs and order types, automatic or
// behind a promo code with usage limits.

import { h, replace, pager, pagesOf, table, money, date, pageHeader, field, dialog, badge, statusLine } from '../ui.js';
import { orderTypeLabel } from '../licensing.js';
import { checkbox, numberInput, operatorApi, textInput } from './operator-kit.js';

const ORDER_TYPES = ['initial', 'renewal', 'top_up', 'renewal_with_top_up', 'renewal_with_reduction'];
const KINDS = {
  percent: 'Percent off',
  fixed_per_seat: 'Fixed amount off per seat',
  progressive_by_seats: 'Progressive by the order’s seats',
  loyalty: 'Loyalty by the account’s paid total',
};

export default {
  path: 'operator/promotions',
  title: 'Promotions',
  section: 'operator',
  async render(ctx) {
    const api = operatorApi(ctx);
    const note = statusLine();
    const create = h('button', { type: 'button', class: 'btn btn-primary' }, 'New promotion');
    const listCard = h('section', { class: 'card', 'aria-labelledby': 'promotions-title' });
    replace(
      ctx.main,
      pageHeader(
        'Promotions',
        'Discounts on orders. At most one non-combinable promotion applies (the one worth most to the client); combinable ones follow in priority order.',
        create,
      ),
      note,
      listCard,
    );
    const list = pager({
      label: 'Promotions',
      pageSize: 20,
      load: pagesOf(({ signal }) => api('GET', '/promotions', undefined, { signal })),
      render: (rows) =>
        table({
          caption: 'Promotions',
          hideCaption: true,
          empty: 'No promotions yet.',
          rows,
          columns: [
            { label: 'Promotion', value: (p) => h('span', null, h('strong', null, p.name), p.code ? [h('br'), 'Code ', h('code', null, p.code)] : [h('br'), h('span', { class: 'hint' }, 'Automatic')]) },
            { label: 'Discount', value: (p) => describe(p.discount) },
            { label: 'Valid', value: (p) => validity(p) },
            { label: 'Applies to', value: (p) => scope(p) },
            { label: 'Limits', value: (p) => limits(p) },
            { label: 'Stacking', value: (p) => (p.combinable ? `Combinable, priority ${p.priority}` : 'Not combinable') },
            { label: 'Status', value: (p) => (p.active ? badge('Active', 'ok') : badge('Inactive', 'muted')) },
          ],
        }),
    });
    replace(listCard, h('h2', { class: 'section-title', id: 'promotions-title' }, 'Promotions'), list);

    create.addEventListener('click', async () => {
      const made = await promotionDialog(api);
      if (!made) return;
      note.textContent = `Promotion “${made.name}” created.`;
      list.reset();
    });
  },
};

function describe(d) {
  switch (d.kind) {
    case 'percent':
      return `${d.percent} % off`;
    case 'fixed_per_seat':
      return `${money(d.amount)} off per seat`;
    case 'progressive_by_seats':
      return d.tiers.map((t) => `${t.min_seats}+ seats: ${t.percent} %`).join('; ');
    case 'loyalty':
      return d.tiers.map((t) => `paid from ${money(t.min_paid)}: ${t.percent} %`).join('; ');
    default:
      return d.kind;
  }
}

function validity(p) {
  if (!p.valid_from && !p.valid_until) return 'Permanent';
  return `${p.valid_from ? date(p.valid_from) : '…'} – ${p.valid_until ? date(p.valid_until) : '…'}`;
}

function scope(p) {
  const tariffs = p.tariffs.length ? p.tariffs.join(', ') : 'all tariffs';
  const types = p.order_types.length ? p.order_types.map(orderTypeLabel).join(', ') : 'all orders';
  return `${tariffs}; ${types}`;
}

function limits(p) {
  const parts = [];
  if (p.total_limit != null) parts.push(`${p.total_limit} uses in all`);
  if (p.per_account_limit != null) parts.push(`${p.per_account_limit} per account`);
  return parts.length ? parts.join(', ') : '—';
}

/** Rows of tiers: `[threshold input, percent input]` pairs with add/remove buttons. */
function tierRows(thresholdLabel, thresholdAttrs) {
  const rows = [];
  const box = h('div', { class: 'dialog-body' });
  const add = h('button', { type: 'button', class: 'btn btn-small' }, 'Add tier');
  const wrap = h('fieldset', { class: 'choice' }, h('legend', null, 'Tiers'), box, add);
  function addRow(threshold = '', percent = '') {
    const t = textInput({ ...thresholdAttrs, value: threshold });
    const p = textInput({ inputmode: 'decimal', value: percent, maxlength: '6' });
    const remove = h('button', { type: 'button', class: 'btn btn-small' }, 'Remove');
    const row = h('div', { class: 'inline-form' }, field(thresholdLabel, t), field('Percent', p), remove);
    const entry = { t, p, row };
    remove.addEventListener('click', () => {
      rows.splice(rows.indexOf(entry), 1);
      row.remove();
      add.focus();
    });
    rows.push(entry);
    box.append(row);
    return t;
  }
  add.addEventListener('click', () => addRow().focus());
  return { node: wrap, rows, addRow };
}

async function promotionDialog(api) {
  const name = textInput({ required: true, maxlength: '200' });
  const code = textInput({ maxlength: '64' });
  const kind = h('select', null, Object.entries(KINDS).map(([v, label]) => h('option', { value: v }, label)));
  const percent = textInput({ inputmode: 'decimal', maxlength: '6', value: '10' });
  const amount = textInput({ inputmode: 'decimal', maxlength: '20' });
  const seatTiers = tierRows('From seats', { inputmode: 'numeric', maxlength: '6' });
  seatTiers.addRow('10', '5');
  seatTiers.addRow('50', '10');
  const paidTiers = tierRows('From paid total, ₽', { inputmode: 'decimal', maxlength: '20' });
  paidTiers.addRow('100000.00', '5');
  paidTiers.addRow('1000000.00', '7');
  const percentField = field('Percent off', percent);
  const amountField = field('Amount off per seat, ₽', amount);
  const validFrom = h('input', { type: 'date' });
  const validUntil = h('input', { type: 'date' });
  const combinable = checkbox('Combinable with other promotions');
  const priority = numberInput({ value: '0', min: '-1000', max: '1000' });
  const totalLimit = numberInput({ min: '1' });
  const perAccount = numberInput({ min: '1' });
  const types = ORDER_TYPES.map((t) => ({ t, ...checkbox(orderTypeLabel(t)) }));
  const tariffBox = h('div', null, h('p', { class: 'hint', role: 'status' }, 'Loading tariffs…'));
  let tariffChecks = [];
  api('GET', '/tariffs')
    .then((list) => {
      tariffChecks = list.filter((t) => !t.archived).map((t) => ({ code: t.code, ...checkbox(`${t.name} (${t.code})`) }));
      replace(tariffBox, tariffChecks.length ? tariffChecks.map((c) => c.node) : h('p', { class: 'hint' }, 'No tariffs on sale.'));
    })
    .catch((e) => replace(tariffBox, h('p', { class: 'form-error', role: 'alert' }, `Tariffs could not be loaded: ${e.message}`)));

  const sync = () => {
    percentField.hidden = kind.value !== 'percent';
    amountField.hidden = kind.value !== 'fixed_per_seat';
    seatTiers.node.hidden = kind.value !== 'progressive_by_seats';
    paidTiers.node.hidden = kind.value !== 'loyalty';
  };
  kind.addEventListener('change', sync);
  sync();

  let made = null;
  await dialog({
    title: 'New promotion',
    body: h(
      'div',
      { class: 'dialog-body' },
      h('div', { class: 'form-grid' }, field('Name', name), field('Promo code', code, 'Leave empty to apply automatically.')),
      field('Kind', kind),
      percentField,
      amountField,
      seatTiers.node,
      paidTiers.node,
      h('div', { class: 'form-grid' }, field('Valid from', validFrom, 'Empty: from now on.'), field('Valid until', validUntil, 'Inclusive. Empty: permanent.')),
      h('fieldset', { class: 'choice' }, h('legend', null, 'Tariffs (none ticked: all)'), tariffBox),
      h('fieldset', { class: 'choice' }, h('legend', null, 'Orders (none ticked: all)'), types.map((x) => x.node)),
      h('div', { class: 'form-grid' }, field('Uses in all', totalLimit, 'Empty: no limit.'), field('Uses per account', perAccount, 'Empty: no limit.')),
      h('fieldset', { class: 'choice' }, h('legend', null, 'Stacking'), combinable.node, field('Priority (lower applies first)', priority)),
    ),
    confirmLabel: 'Create promotion',
    onConfirm: async () => {
      let discount;
      switch (kind.value) {
        case 'percent':
          discount = { kind: 'percent', percent: percent.value.trim() };
          break;
        case 'fixed_per_seat':
          discount = { kind: 'fixed_per_seat', amount: amount.value.trim() };
          break;
        case 'progressive_by_seats':
          discount = { kind: 'progressive_by_seats', tiers: seatTiers.rows.map((r) => ({ min_seats: Number(r.t.value), percent: r.p.value.trim() })) };
          break;
        default:
          discount = { kind: 'loyalty', tiers: paidTiers.rows.map((r) => ({ min_paid: r.t.value.trim(), percent: r.p.value.trim() })) };
      }
      const body = {
        name: name.value,
        discount,
        combinable: combinable.input.checked,
        priority: Number(priority.value || 0),
        tariffs: tariffChecks.filter((c) => c.input.checked).map((c) => c.code),
        order_types: types.filter((x) => x.input.checked).map((x) => x.t),
      };
      if (code.value.trim()) body.code = code.value.trim();
      if (validFrom.value) body.valid_from = validFrom.value;
      if (validUntil.value) body.valid_until = validUntil.value;
      if (totalLimit.value) body.total_limit = Number(totalLimit.value);
      if (perAccount.value) body.per_account_limit = Number(perAccount.value);
      made = await api('POST', '/promotions', body);
    },
  });
  return made;
}
