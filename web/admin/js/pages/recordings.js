// Recordings: the account's recordings (meeting, date, length, size, status, when retention
// deletes them), the storage they take against the tariff's quota, opening one (its own page)
// and deleting it.

import { h, replace, table, pager, dialog, dateTime, pageHeader, statusLine, badge } from '../ui.js';
import { accountOf } from '../licensing.js';
import { bytes, duration } from './integrations-kit.js';

const STATUS = {
  recording: ['Recording', 'warn'],
  processing: ['Processing', 'warn'],
  ready: ['Ready', 'ok'],
  failed: ['Failed', 'bad'],
};

function statusBadge(r) {
  const [text, tone] = STATUS[r.status] || [r.status, 'muted'];
  return badge(text, tone);
}

function length(r) {
  if (!r.stopped_at) return r.status === 'recording' ? 'Still recording' : '—';
  return duration((new Date(r.stopped_at) - new Date(r.started_at)) / 1000);
}

export default {
  path: 'recordings',
  title: 'Recordings',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const status = statusLine();
    const storage = h('div', { class: 'storage', id: 'storage', 'aria-live': 'polite' }, h('p', { class: 'form-note' }, 'Storage: loading…'));

    function showStorage(s) {
      if (!s) return;
      if (s.quota_bytes === null || s.quota_bytes === undefined) {
        replace(storage, h('p', null, `Storage used: ${bytes(s.used_bytes)}. `, h('span', { class: 'hint' }, 'No license in force includes recording, so there is no quota.')));
        return;
      }
      const pct = s.quota_bytes > 0 ? Math.min(100, (s.used_bytes / s.quota_bytes) * 100) : 100;
      const label = `${bytes(s.used_bytes)} of ${bytes(s.quota_bytes)} used (${pct.toFixed(pct < 10 ? 1 : 0)} %)`;
      replace(
        storage,
        h('label', { for: 'storage-meter' }, 'Storage used'),
        h('meter', { id: 'storage-meter', min: '0', max: String(s.quota_bytes), value: String(s.used_bytes), high: String(Math.floor(s.quota_bytes * 0.9)), optimum: '0', 'aria-valuetext': label }, label),
        h('p', { class: 'storage-figures', id: 'storage-figures' }, label),
        pct >= 100 ? h('p', { class: 'notice notice-error' }, 'The quota is full: new recordings cannot start until some are deleted.') : null,
      );
    }

    async function remove(r) {
      const ok = await dialog({
        title: `Delete the recording of “${r.meeting_title}”?`,
        body: h('p', null, `Made ${dateTime(r.started_at)}, ${bytes(r.bytes)}. Its files are deleted and its links stop working. This cannot be undone.`),
        confirmLabel: 'Delete recording',
        danger: true,
        onConfirm: () => ctx.api('DELETE', `/recordings/${encodeURIComponent(r.id)}`),
      });
      if (ok) {
        status.textContent = `The recording of “${r.meeting_title}” is deleted.`;
        list.reload();
      }
    }

    const list = pager({
      label: 'Recordings',
      pageSize: 20,
      load: async ({ limit, offset, signal }) => {
        const page = await ctx.api('GET', `/accounts/${account}/recordings?limit=${limit}&offset=${offset}`, undefined, { signal });
        showStorage(page.storage);
        return { items: page.recordings, total: page.total };
      },
      render: (rows) =>
        table({
          caption: 'Recordings, newest first',
          hideCaption: true,
          empty: 'No recordings yet. Hosts record from the meeting (tariffs with recording only).',
          rows,
          columns: [
            { label: 'Meeting', value: (r) => r.meeting_title },
            { label: 'Date', value: (r) => dateTime(r.started_at) },
            { label: 'Length', align: 'right', value: length },
            { label: 'Size', align: 'right', value: (r) => bytes(r.bytes) },
            { label: 'Status', value: (r) => [statusBadge(r), r.error ? h('span', { class: 'hint' }, ` ${r.error}`) : null] },
            { label: 'Kept until', value: (r) => (r.expires_at ? dateTime(r.expires_at) : 'Until deleted') },
            {
              label: 'Actions',
              value: (r) =>
                h(
                  'div',
                  { class: 'row-actions' },
                  h('a', { class: 'btn btn-small', href: `/recordings/${encodeURIComponent(r.id)}`, 'aria-label': `Open the recording of ${r.meeting_title}` }, 'Open'),
                  h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Delete the recording of ${r.meeting_title}`, disabled: r.status === 'recording', onclick: () => remove(r) }, 'Delete'),
                ),
            },
          ],
        }),
    });

    replace(
      ctx.main,
      pageHeader('Recordings', 'Recordings of the account’s meetings. They are deleted automatically when the tariff’s retention period ends.'),
      h('section', { class: 'card', 'aria-labelledby': 'storage-heading' }, h('h2', { id: 'storage-heading', class: 'section-title' }, 'Storage'), storage),
      h('section', { class: 'card', 'aria-labelledby': 'rec-heading' }, h('h2', { id: 'rec-heading', class: 'section-title' }, 'All recordings'), status, list),
    );
  },
};
