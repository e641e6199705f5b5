// Licenses overview (the console's start page): every lot of the account with its tariff,
// seats used and free, dates, status and days left, plus the order windows the rules open.

import { h, replace, loading, showError, table, pager, pagesOf, date, pageHeader, plural } from '../ui.js';
import { accountOf, addDays, daysBetween, isCurrent, lotStatusBadge, moscowToday, tariffName, tariffsByCode } from '../licensing.js';

export default {
  path: 'lots',
  title: 'Licenses',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const summary = h('div', { class: 'card' });
    const list = h('div', { class: 'card' });
    replace(
      ctx.main,
      pageHeader(
        'Licenses',
        'Your seat licenses (lots): how many seats each has, how many are assigned, and when it ends.',
        h('a', { class: 'btn btn-primary', href: '#/order' }, 'Order licenses'),
        h('a', { class: 'btn', href: '#/seats' }, 'Assign seats'),
      ),
      summary,
      list,
    );

    async function load() {
      loading(summary, 'Loading licenses…');
      replace(list);
      let lots, seats, tariffs;
      try {
        [lots, seats, tariffs] = await Promise.all([
          ctx.api('GET', `/accounts/${account}/lots`, undefined, { signal: ctx.signal }),
          ctx.api('GET', `/accounts/${account}/seats`, undefined, { signal: ctx.signal }),
          tariffsByCode(ctx.api, { signal: ctx.signal }),
        ]);
      } catch (e) {
        if (e.name === 'AbortError') return;
        showError(summary, e, load);
        return;
      }
      const today = moscowToday();
      const used = new Map();
      for (const s of seats) used.set(s.lot_id, (used.get(s.lot_id) || 0) + 1);
      const current = lots.filter((l) => isCurrent(l, today));
      const total = current.reduce((n, l) => n + l.seats, 0);
      const assigned = current.reduce((n, l) => n + (used.get(l.id) || 0), 0);
      const nextEnd = current.map((l) => l.ends_on).sort()[0];
      replace(
        summary,
        h('h2', { class: 'section-title' }, 'Today'),
        h(
          'dl',
          { class: 'tiles' },
          stat('Seats on valid licenses', String(total)),
          stat('Assigned', String(assigned)),
          stat('Free', String(Math.max(0, total - assigned))),
          stat('Next end', nextEnd ? `${date(nextEnd)} (${plural(daysBetween(today, nextEnd), 'day', 'days')})` : '—'),
        ),
        current.length === 0
          ? h('p', { class: 'notice' }, 'No license is valid today, so nobody in the account can host meetings. ', h('a', { href: '#/order' }, 'Order licenses'), '.')
          : null,
      );

      // Newest first: the current lots are what an admin looks for.
      const sorted = [...lots].sort((a, b) => (a.ends_on < b.ends_on ? 1 : a.ends_on > b.ends_on ? -1 : 0));
      replace(
        list,
        h('h2', { class: 'section-title' }, 'All licenses'),
        pager({
          label: 'Licenses',
          pageSize: 10,
          load: pagesOf(async () => sorted),
          render: (rows) =>
            table({
              caption: 'Licenses of the account',
              hideCaption: true,
              empty: 'The account has no licenses yet.',
              rows,
              columns: [
                { label: 'Tariff', value: (l) => h('span', null, tariffName(tariffs, l.tariff), l.trial ? ' (trial)' : '') },
                { label: 'Seats', align: 'right', value: (l) => String(l.seats) },
                { label: 'Used', align: 'right', value: (l) => String(used.get(l.id) || 0) },
                { label: 'Free', align: 'right', value: (l) => String(Math.max(0, l.seats - (used.get(l.id) || 0))) },
                { label: 'Starts', value: (l) => date(l.starts_on) },
                { label: 'Ends', value: (l) => h('span', { title: 'The first day without access' }, date(l.ends_on)) },
                { label: 'Status', value: (l) => lotStatusBadge(l.status) },
                { label: 'Days left', align: 'right', value: (l) => (l.status === 'active' && today < l.ends_on ? String(daysBetween(today < l.starts_on ? l.starts_on : today, l.ends_on)) : '—') },
                { label: 'Order windows', value: (l) => windows(l, today) },
                {
                  label: 'Actions',
                  value: (l) =>
                    l.status === 'active'
                      ? h(
                          'div',
                          { class: 'row-actions' },
                          h('a', { class: 'btn btn-small', href: `#/seats?lot=${l.id}` }, 'Seats'),
                          h('a', { class: 'btn btn-small', href: `#/order?license=${l.id}` }, 'Renew or top up'),
                        )
                      : '',
                },
              ],
            }),
        }),
      );
    }
    await load();
  },
};

function stat(label, value) {
  return h('div', { class: 'tile-stat' }, h('dt', null, label), h('dd', null, value));
}

/** What may be ordered for the lot and until when (spec: top-up until E−90, renewal from E−90, reduction from E−14). */
function windows(lot, today) {
  if (lot.status !== 'active' || lot.trial || today >= lot.ends_on) return '—';
  const e90 = addDays(lot.ends_on, -90);
  const e14 = addDays(lot.ends_on, -14);
  const parts = [];
  if (today <= e90) parts.push(`Top-up until ${date(e90)}`);
  parts.push(today >= e90 ? 'Renewal open' : `Renewal from ${date(e90)}`);
  parts.push(today >= e14 ? 'Reduction open' : `Reduction from ${date(e14)}`);
  return h('span', { class: 'hint' }, parts.join(' · '));
}
