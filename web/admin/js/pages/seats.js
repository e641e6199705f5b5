// Seats: who holds a seat of which license, with Assign and Reclaim. A user without a seat
// cannot host meetings. The server's refusals (no free seat, license not active, user disabled)
// are shown in its own words inside the dialog.

import { h, replace, loading, showError, table, pager, dialog, field, date, pageHeader, statusLine } from '../ui.js';
import { accountOf, isCurrent, moscowToday, roleLabel, serverPages, tariffName, tariffsByCode, userStatusBadge } from '../licensing.js';

export default {
  path: 'seats',
  title: 'Seats',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const lotsBox = h('div', { class: 'card' });
    const usersBox = h('div', { class: 'card' });
    const status = statusLine();
    replace(
      ctx.main,
      pageHeader('Seats', 'Give each person who hosts meetings a seat of a license. Guests of a meeting need no seat.'),
      lotsBox,
      usersBox,
    );

    let lots = [];
    let tariffs = new Map();
    let today = moscowToday();
    const used = new Map();

    async function loadLots() {
      const [l, seats, t] = await Promise.all([
        ctx.api('GET', `/accounts/${account}/lots`, undefined, { signal: ctx.signal }),
        ctx.api('GET', `/accounts/${account}/seats`, undefined, { signal: ctx.signal }),
        tariffsByCode(ctx.api, { signal: ctx.signal }),
      ]);
      today = moscowToday();
      lots = l.filter((x) => isCurrent(x, today));
      tariffs = t;
      used.clear();
      for (const s of seats) used.set(s.lot_id, (used.get(s.lot_id) || 0) + 1);
    }

    function lotLabel(lot) {
      const free = lot.seats - (used.get(lot.id) || 0);
      return `${tariffName(tariffs, lot.tariff)} · until ${date(lot.ends_on)} · ${free} of ${lot.seats} free`;
    }

    function renderLots() {
      replace(
        lotsBox,
        h('h2', { class: 'section-title' }, 'Licenses valid today'),
        table({
          caption: 'Licenses valid today',
          hideCaption: true,
          empty: 'No license is valid today: order one before assigning seats.',
          rows: lots,
          columns: [
            { label: 'Tariff', value: (l) => tariffName(tariffs, l.tariff) },
            { label: 'Ends', value: (l) => date(l.ends_on) },
            { label: 'Seats', align: 'right', value: (l) => String(l.seats) },
            { label: 'Assigned', align: 'right', value: (l) => String(used.get(l.id) || 0) },
            { label: 'Free', align: 'right', value: (l) => String(Math.max(0, l.seats - (used.get(l.id) || 0))) },
          ],
        }),
      );
    }

    async function refreshLots() {
      try {
        await loadLots();
        renderLots();
      } catch (e) {
        if (e.name !== 'AbortError') showError(lotsBox, e, refreshLots);
      }
    }

    function lotOf(id) {
      return lots.find((l) => l.id === id);
    }

    async function assign(row) {
      const select = h(
        'select',
        { name: 'lot' },
        lots.map((l) => h('option', { value: l.id }, lotLabel(l))),
      );
      // Preselect the lot the page was opened for (?lot=), else the first with a free seat.
      const wanted = ctx.params.get('lot');
      const pick = lots.find((l) => l.id === wanted) || lots.find((l) => l.seats > (used.get(l.id) || 0)) || lots[0];
      if (pick) select.value = pick.id;
      const who = row.user.display_name || row.user.email;
      const ok = await dialog({
        title: `Assign a seat to ${who}`,
        body: lots.length
          ? field('License', select)
          : h('p', null, 'No license is valid today, so there is no seat to assign.'),
        confirmLabel: lots.length ? 'Assign seat' : undefined,
        onConfirm: async () => {
          await ctx.api('PUT', `/accounts/${account}/users/${row.user.id}/seat`, { lot_id: select.value });
        },
      });
      if (ok) {
        status.textContent = `${who} now holds a seat and can host meetings.`;
        await refreshLots();
        users.reload();
      }
    }

    async function reclaim(row) {
      const who = row.user.display_name || row.user.email;
      const ok = await dialog({
        title: `Reclaim ${who}'s seat?`,
        body: h('p', null, `${who} will no longer be able to host meetings until given a seat again. Their meetings and recordings stay.`),
        confirmLabel: 'Reclaim seat',
        danger: true,
        onConfirm: async () => {
          await ctx.api('DELETE', `/accounts/${account}/users/${row.user.id}/seat`);
        },
      });
      if (ok) {
        status.textContent = `${who}'s seat is free again.`;
        await refreshLots();
        users.reload();
      }
    }

    loading(lotsBox, 'Loading licenses…');
    try {
      await loadLots();
    } catch (e) {
      if (e.name === 'AbortError') return;
      showError(lotsBox, e, () => ctx.navigate('#/seats'));
      return;
    }
    renderLots();

    const users = pager({
      label: 'Users and seats',
      load: serverPages(ctx.api, `/accounts/${account}/users`, { order: 'oldest' }),
      render: (rows) =>
        table({
          caption: 'Users and their seats',
          hideCaption: true,
          empty: 'No users yet. Invite people on the Users page.',
          rows,
          columns: [
            { label: 'Name', value: (r) => h('span', null, h('strong', null, r.user.display_name || '—'), h('br'), h('span', { class: 'hint' }, r.user.email)) },
            { label: 'Role', value: (r) => roleLabel(r.user.role) },
            { label: 'Status', value: (r) => userStatusBadge(r.user.status) },
            {
              label: 'Seat',
              value: (r) => {
                if (!r.seat_lot_id) return h('span', { class: 'hint' }, 'No seat');
                const lot = lotOf(r.seat_lot_id);
                return lot ? `${tariffName(tariffs, lot.tariff)} until ${date(lot.ends_on)}` : 'Seat of a license not valid today';
              },
            },
            {
              label: 'Actions',
              value: (r) =>
                r.seat_lot_id
                  ? h('button', { type: 'button', class: 'btn btn-small', onclick: () => reclaim(r), 'aria-label': `Reclaim the seat of ${r.user.email}` }, 'Reclaim seat')
                  : h('button', { type: 'button', class: 'btn btn-small btn-primary', onclick: () => assign(r), 'aria-label': `Assign a seat to ${r.user.email}` }, 'Assign seat'),
            },
          ],
        }),
    });
    replace(usersBox, h('h2', { class: 'section-title' }, 'People'), status, users);
  },
};
