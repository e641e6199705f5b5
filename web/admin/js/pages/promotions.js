// Promotions applied: the discounts the account's orders received (promo codes, progressive and
// loyalty discounts), as the quote fixed them when each order was placed. Codes are entered on
// the order form.

import { h, replace, table, pager, pagesOf, money, date, pageHeader } from '../ui.js';
import { accountOf, orderStatusBadge, orderTypeLabel } from '../licensing.js';

export default {
  path: 'promotions',
  title: 'Promotions applied',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const list = pager({
      label: 'Orders with discounts',
      load: pagesOf(async ({ signal }) => {
        const orders = await ctx.api('GET', `/accounts/${account}/orders?order=newest`, undefined, { signal: signal || ctx.signal });
        return orders.filter((o) => o.quote.discounts && o.quote.discounts.length);
      }),
      render: (rows) =>
        table({
          caption: 'Orders with discounts',
          hideCaption: true,
          empty: 'No discounts applied yet. Enter a promo code on the order form; progressive and loyalty discounts apply by themselves.',
          rows,
          columns: [
            { label: 'Placed', value: (o) => date(o.placed_on) },
            { label: 'Order', value: (o) => orderTypeLabel(o.quote.type) },
            {
              label: 'Discounts',
              value: (o) =>
                h('ul', { class: 'plain-list' }, o.quote.discounts.map((d) => h('li', null, `${d.name}${d.code ? ` (code ${d.code})` : ''}: −${money(d.amount)}`))),
            },
            { label: 'Before', align: 'right', value: (o) => money(o.quote.subtotal) },
            { label: 'Total', align: 'right', value: (o) => money(o.quote.total) },
            { label: 'Status', value: (o) => orderStatusBadge(o.status) },
          ],
        }),
    });
    replace(
      ctx.main,
      pageHeader('Promotions applied', 'Discounts your orders received.', h('a', { class: 'btn', href: '#/order' }, 'Order with a promo code')),
      h('section', { class: 'card' }, list),
    );
  },
};
