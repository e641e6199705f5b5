// The monthly inactive-seat review (the review email links here): seats unused for 30 days or
// more, longest first; reclaim the chosen ones or all. The server reclaims a seat only if it is
// still unused, so someone who hosted since the list was read keeps theirs (reported as skipped).

import { h, replace, loading, showError, table, pager, pagesOf, dialog, date, pageHeader, statusLine, plural } from '../ui.js';
import { accountOf, roleLabel } from '../licensing.js';

export default {
  path: 'seat-review',
  title: 'Seat review',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const box = h('div', { class: 'card' });
    const status = statusLine();
    replace(
      ctx.main,
      pageHeader('Seat review', 'Seats nobody used for a month or more. Reclaim them to give them to someone who hosts meetings.'),
      status,
      box,
    );
    const chosen = new Set();

    async function load() {
      loading(box, 'Loading the review…');
      let review;
      try {
        review = await ctx.api('GET', `/accounts/${account}/seat-review`, undefined, { signal: ctx.signal });
      } catch (e) {
        if (e.name !== 'AbortError') showError(box, e, load);
        return;
      }
      chosen.clear();
      const seats = review.seats;
      const reclaimChosen = h('button', { type: 'button', class: 'btn btn-primary', disabled: true }, 'Reclaim chosen seats');
      const reclaimAll = h('button', { type: 'button', class: 'btn btn-danger', disabled: seats.length === 0 }, `Reclaim all ${seats.length}`);
      const sync = () => {
        reclaimChosen.disabled = chosen.size === 0;
        reclaimChosen.textContent = chosen.size ? `Reclaim ${plural(chosen.size, 'chosen seat', 'chosen seats')}` : 'Reclaim chosen seats';
      };
      reclaimChosen.addEventListener('click', () => reclaim([...chosen]));
      reclaimAll.addEventListener('click', () => reclaim(null));
      const who = (s) => s.display_name || s.email || s.user_id;

      replace(
        box,
        h('p', { class: 'form-note' }, `As of ${date(review.as_of)}: seats unused for ${review.inactive_days} days or more.`),
        h('div', { class: 'form-actions' }, reclaimChosen, reclaimAll),
        pager({
          label: 'Inactive seats',
          load: pagesOf(async () => seats),
          render: (rows) =>
            table({
              caption: 'Inactive seats',
              hideCaption: true,
              empty: 'Every seat was used in the last month. Nothing to review.',
              rows,
              columns: [
                {
                  label: 'Choose',
                  value: (s) => {
                    const box = h('input', { type: 'checkbox', checked: chosen.has(s.user_id), 'aria-label': `Choose ${who(s)}` });
                    box.addEventListener('change', () => {
                      if (box.checked) chosen.add(s.user_id);
                      else chosen.delete(s.user_id);
                      sync();
                    });
                    return box;
                  },
                },
                { label: 'User', value: (s) => h('span', null, h('strong', null, who(s)), s.email && s.display_name ? h('span', { class: 'hint' }, ` · ${s.email}`) : null) },
                { label: 'Role', value: (s) => (s.role ? roleLabel(s.role) : 'CRM user') },
                { label: 'Last hosted', value: (s) => (s.last_active_on ? date(s.last_active_on) : 'Never') },
                { label: 'Seat since', value: (s) => date(s.assigned_on) },
                { label: 'Days unused', align: 'right', value: (s) => String(s.days_inactive) },
              ],
            }),
        }),
      );
    }

    async function reclaim(ids) {
      const n = ids ? ids.length : null;
      let report = null;
      const ok = await dialog({
        title: ids ? `Reclaim ${plural(n, 'seat', 'seats')}?` : 'Reclaim every inactive seat?',
        body: h('p', null, 'The people lose the seat and cannot host until given one again. A seat used since this list was loaded is kept.'),
        confirmLabel: 'Reclaim',
        danger: true,
        onConfirm: async () => {
          report = await ctx.api('POST', `/accounts/${account}/seat-review/reclaim`, ids ? { user_ids: ids } : { all: true });
        },
      });
      if (!ok || !report) return;
      const kept = report.skipped.filter((s) => s.reason === 'active').length;
      status.textContent =
        `${plural(report.reclaimed.length, 'seat', 'seats')} reclaimed.` +
        (kept ? ` ${plural(kept, 'seat was', 'seats were')} used since the list was loaded and kept.` : '');
      await load();
    }

    await load();
  },
};
