// Usage: meetings per day, meeting minutes per day and seat utilisation (seats in use against
// seats licensed) over a period, last 30 days unless chosen otherwise. Drawn as inline SVG by
// ./usage-chart.js; every chart says what it shows in words, and the figures are also a table.

import { h, replace, table, pager, pagesOf, date, pageHeader, field, loading, showError, plural } from '../ui.js';
import { accountOf, addDays, daysBetween, moscowToday } from '../licensing.js';
import { barChart, swatch } from './usage-chart.js';

const MAX_DAYS = 366;
const BLUE = '#2459d6';
const GREEN = '#2e7d32';
const RED = '#c62828';

function pct(used, licensed) {
  return licensed > 0 ? `${Math.round((used / licensed) * 100)} %` : '—';
}

/** The day with the most of `key` (the latest of equals), for the words of a chart. */
function peak(days, key) {
  return days.reduce((best, d) => (d[key] >= (best ? best[key] : 0) ? d : best), null);
}

function chartFigure({ heading, svg, legend, note }) {
  return h('figure', { class: 'card usage-figure' }, h('figcaption', null, h('h2', { class: 'section-title' }, heading)), svg, legend ? h('p', { class: 'hint usage-legend' }, legend) : null, note ? h('p', { class: 'hint' }, note) : null);
}

function charts(u) {
  const days = u.days;
  const span = `from ${date(u.from)} to ${date(u.to)}`;
  const pm = peak(days, 'meetings');
  const pmin = peak(days, 'meeting_minutes');
  const pseat = peak(days, 'seats_in_use');
  const lastLicensed = days.length ? days[days.length - 1].seats_licensed : 0;

  const meetings = barChart({
    name: 'meetings',
    days,
    value: (d) => d.meetings,
    barTitle: (d) => `${date(d.date)}: ${plural(d.meetings, 'meeting', 'meetings')}`,
    title: 'Meetings per day',
    desc: `Meetings held per day ${span}: ${u.totals.meetings} in total${pm && pm.meetings ? `, the most on ${date(pm.date)} (${pm.meetings})` : ''}.`,
    fill: BLUE,
  });
  const minutes = barChart({
    name: 'minutes',
    days,
    value: (d) => d.meeting_minutes,
    barTitle: (d) => `${date(d.date)}: ${plural(d.meeting_minutes, 'minute', 'minutes')}`,
    title: 'Meeting minutes per day',
    desc: `Minutes of meetings per day ${span}: ${u.totals.meeting_minutes} in total${pmin && pmin.meeting_minutes ? `, the most on ${date(pmin.date)} (${pmin.meeting_minutes})` : ''}.`,
    fill: GREEN,
  });
  const seats = barChart({
    name: 'seats',
    days,
    value: (d) => d.seats_in_use,
    barTitle: (d) => `${date(d.date)}: ${d.seats_in_use} of ${d.seats_licensed} seats in use (${pct(d.seats_in_use, d.seats_licensed)})`,
    line: { value: (d) => d.seats_licensed, label: 'Seats licensed' },
    title: 'Seat utilisation per day',
    desc: `Seats in use (users who hosted a meeting) against seats licensed, per day ${span}: at most ${u.totals.peak_seats_in_use} in use${pseat && pseat.seats_in_use ? ` on ${date(pseat.date)}` : ''}; ${lastLicensed} licensed on the last day.`,
    fill: BLUE,
    lineColor: RED,
  });
  return [
    chartFigure({ heading: 'Meetings per day', svg: meetings, legend: [swatch(BLUE), ' Meetings held (counted on the day they started)'] }),
    chartFigure({ heading: 'Meeting minutes per day', svg: minutes, legend: [swatch(GREEN), ' Minutes (a meeting across midnight counts on both days)'] }),
    chartFigure({
      heading: 'Seat utilisation',
      svg: seats,
      legend: [swatch(BLUE), ' Seats in use ', swatch(RED, true), ' Seats licensed'],
      note: 'A seat counts as in use on a day when its user hosted a meeting that day.',
    }),
  ];
}

function dataTable(u) {
  // Newest day first, a month a page.
  const rows = [...u.days].reverse();
  return pager({
    label: 'Usage by day',
    pageSize: 31,
    load: pagesOf(async () => rows),
    render: (items) =>
      table({
        caption: `Usage by day, ${date(u.from)} – ${date(u.to)} (Moscow days)`,
        rows: items,
        columns: [
          { label: 'Day', value: (d) => date(d.date) },
          { label: 'Meetings', align: 'right', value: (d) => String(d.meetings) },
          { label: 'Minutes', align: 'right', value: (d) => String(d.meeting_minutes) },
          { label: 'Seats in use', align: 'right', value: (d) => String(d.seats_in_use) },
          { label: 'Seats licensed', align: 'right', value: (d) => String(d.seats_licensed) },
          { label: 'Utilisation', align: 'right', value: (d) => pct(d.seats_in_use, d.seats_licensed) },
        ],
      }),
  });
}

export default {
  path: 'usage',
  title: 'Usage',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const today = moscowToday();
    const valid = (d) => /^\d{4}-\d{2}-\d{2}$/.test(d || '');
    const to = h('input', { type: 'date', name: 'to', value: valid(ctx.params.get('to')) ? ctx.params.get('to') : today, max: today });
    const from = h('input', { type: 'date', name: 'from', value: valid(ctx.params.get('from')) ? ctx.params.get('from') : addDays(to.value, -29) });
    const apply = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Show');
    const formError = h('p', { class: 'form-error', role: 'alert' });
    const presets = [7, 30, 90, 365].map((n) =>
      h('button', { type: 'button', class: 'btn btn-small', 'data-days': n, onclick: () => { to.value = today; from.value = addDays(today, -(n - 1)); show(); } }, `Last ${n} days`),
    );
    const form = h(
      'form',
      { class: 'stack', novalidate: true, 'aria-label': 'Period' },
      h('div', { class: 'inline-form' }, field('From', from), field('To', to), h('div', { class: 'form-actions' }, apply)),
      h('div', { class: 'form-actions', role: 'group', 'aria-label': 'Quick periods' }, presets),
      formError,
    );
    const totals = h('div', { id: 'usage-totals', 'aria-live': 'polite' });
    const figures = h('div', { class: 'usage-charts', id: 'usage-charts' });
    const tableBox = h('div', { id: 'usage-table' });
    let controller = null;

    async function show() {
      formError.textContent = '';
      for (const el of [from, to]) el.removeAttribute('aria-invalid');
      if (!valid(from.value) || !valid(to.value)) {
        formError.textContent = 'Please give both dates.';
        (valid(from.value) ? to : from).setAttribute('aria-invalid', 'true');
        return;
      }
      const n = daysBetween(from.value, to.value) + 1;
      if (n < 1 || n > MAX_DAYS) {
        formError.textContent = n < 1 ? '“From” must be on or before “To”.' : `The period may be at most ${MAX_DAYS} days.`;
        from.setAttribute('aria-invalid', 'true');
        from.focus();
        return;
      }
      if (controller) controller.abort();
      controller = new AbortController();
      const mine = controller;
      replace(totals);
      replace(tableBox);
      loading(figures, 'Loading usage…');
      figures.setAttribute('aria-busy', 'true');
      try {
        const u = await ctx.api('GET', `/accounts/${account}/usage?from=${from.value}&to=${to.value}`, undefined, { signal: mine.signal });
        if (mine.signal.aborted) return;
        replace(
          totals,
          h(
            'dl',
            { class: 'tiles' },
            h('div', { class: 'tile-stat' }, h('dt', null, 'Meetings'), h('dd', { id: 'total-meetings' }, String(u.totals.meetings))),
            h('div', { class: 'tile-stat' }, h('dt', null, 'Meeting minutes'), h('dd', { id: 'total-minutes' }, String(u.totals.meeting_minutes))),
            h('div', { class: 'tile-stat' }, h('dt', null, 'Most seats in use on a day'), h('dd', { id: 'peak-seats' }, String(u.totals.peak_seats_in_use))),
          ),
        );
        replace(figures, charts(u));
        replace(tableBox, h('details', { class: 'card usage-data' }, h('summary', null, 'The figures as a table'), dataTable(u)));
      } catch (e) {
        if (e && e.name === 'AbortError') return;
        showError(figures, e, show);
      } finally {
        if (controller === mine) figures.removeAttribute('aria-busy');
      }
    }

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      show();
    });

    replace(
      ctx.main,
      pageHeader('Usage', 'Meetings, meeting minutes and seats per day (Moscow days).'),
      h('section', { class: 'card', 'aria-labelledby': 'period-heading' }, h('h2', { id: 'period-heading', class: 'section-title' }, 'Period'), form, totals),
      figures,
      tableBox,
    );
    await show();
  },
};
