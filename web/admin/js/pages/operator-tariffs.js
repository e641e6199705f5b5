// The tariff catalogue, for the operator: every tariff including archived ones, a new tariff,
// changes to one (name and features; price and term stay as sold, 4.3), and archiving (no new
// purchases; licenses already sold keep their terms).

import { h, replace, pager, pagesOf, table, money, pageHeader, field, dialog, badge, statusLine } from '../ui.js';
import { kopecks } from '../licensing.js';
import { checkbox, numberInput, operatorApi, textInput } from './operator-kit.js';

export default {
  path: 'operator/tariffs',
  title: 'Tariffs',
  section: 'operator',
  async render(ctx) {
    const api = operatorApi(ctx);
    const note = statusLine();
    const create = h('button', { type: 'button', class: 'btn btn-primary' }, 'New tariff');
    const listCard = h('section', { class: 'card', 'aria-labelledby': 'tariffs-title' });
    replace(
      ctx.main,
      pageHeader('Tariffs', 'License types on sale and archived. Archiving stops new purchases only: licenses already sold keep their terms.', create),
      note,
      listCard,
    );
    const list = pager({
      label: 'Tariffs',
      pageSize: 20,
      // On sale first, then archived; by name within each.
      load: pagesOf(async ({ signal }) =>
        (await api('GET', '/tariffs', undefined, { signal })).sort((a, b) => Number(a.archived) - Number(b.archived) || a.name.localeCompare(b.name)),
      ),
      render: (rows) =>
        table({
          caption: 'Tariffs',
          hideCaption: true,
          empty: 'No tariffs yet. Create the first one.',
          rows,
          columns: [
            { label: 'Tariff', value: (t) => h('span', null, h('strong', null, t.name), h('br'), h('code', null, t.code)) },
            { label: 'Term', value: (t) => `${t.term_months} mo` },
            { label: 'Price per seat', align: 'right', value: (t) => money(t.price_per_seat) },
            { label: 'VAT', value: (t) => (t.vat === 'exempt' ? 'Without VAT' : t.vat) },
            { label: 'Includes', value: (t) => features(t) },
            {
              label: 'Status',
              value: (t) => h('span', null, t.archived ? badge('Archived', 'muted') : badge('On sale', 'ok'), t.trial ? [' ', badge('Trial', 'warn')] : null),
            },
            {
              label: 'Actions',
              value: (t) =>
                h(
                  'div',
                  { class: 'row-actions' },
                  h('button', { type: 'button', class: 'btn btn-small', onclick: () => edit(t) }, `Edit ${t.code}`),
                  t.archived ? null : h('button', { type: 'button', class: 'btn btn-small', onclick: () => archive(t) }, `Archive ${t.code}`),
                ),
            },
          ],
        }),
    });
    replace(listCard, h('h2', { class: 'section-title', id: 'tariffs-title' }, 'Catalogue'), list);

    async function edit(existing) {
      const answer = await tariffDialog(api, existing);
      if (!answer) return;
      const { saved, asked } = answer;
      // The server keeps a sold tariff's price and term; say so when the answer differs.
      const kept = kopecks(asked.price_per_seat) !== kopecks(saved.price_per_seat);
      const keptTerm = asked.term_months !== saved.term_months;
      note.textContent = existing
        ? `Tariff ${saved.code} saved.${kept || keptTerm ? ' It has been sold, so its price and term stay as they were.' : ''}`
        : `Tariff ${saved.code} created.`;
      list.reload();
    }

    async function archive(t) {
      const ok = await dialog({
        title: `Archive ${t.name}`,
        body: h('p', null, `No new purchases of ${t.name} (${t.code}) after this. Licenses already sold on it keep their terms and features until they end.`),
        confirmLabel: 'Archive',
        danger: true,
        onConfirm: () => api('POST', `/tariffs/${encodeURIComponent(t.code)}/archive`),
      });
      if (!ok) return;
      note.textContent = `Tariff ${t.code} archived.`;
      list.reload();
    }

    create.addEventListener('click', () => edit(null));
  },
};

function features(t) {
  const f = t.features;
  const parts = [`up to ${f.max_participants} people`, `${f.max_meeting_minutes} min meetings`];
  if (f.recording) parts.push(`recording (${f.recording.storage_quota_mb} MB, kept ${f.recording.retention_days} d)`);
  if (f.screen_share) parts.push('screen share');
  if (f.sdk_embedding) parts.push('SDK');
  if (f.results_to_recipients) parts.push('results to recipients');
  return parts.join(', ');
}

/**
 * The tariff form (new, or editing `t`); resolves to `{saved, asked}` (the tariff in force after
 * saving, and the body sent), or null when dismissed.
 */
async function tariffDialog(api, t) {
  const f = (t && t.features) || {};
  const code = textInput({ required: true, maxlength: '64', pattern: '[a-z0-9_-]+', value: t ? t.code : '', disabled: Boolean(t) });
  const name = textInput({ required: true, maxlength: '200', value: t ? t.name : '' });
  const term = numberInput({ required: true, min: '1', max: '120', value: t ? String(t.term_months) : '12' });
  const price = textInput({ required: true, inputmode: 'decimal', value: t ? t.price_per_seat : '', maxlength: '20' });
  const vat = h(
    'select',
    null,
    h('option', { value: 'exempt', selected: !t || t.vat === 'exempt' }, 'Without VAT (licenses, 149.2.26)'),
    h('option', { value: 'rate20', selected: t && t.vat === 'rate20' }, 'VAT 20 %'),
  );
  const participants = numberInput({ required: true, min: '1', max: '10000', value: String(f.max_participants ?? 10) });
  const minutes = numberInput({ required: true, min: '1', max: '10080', value: String(f.max_meeting_minutes ?? 60) });
  const recording = checkbox('Recording', { checked: Boolean(f.recording) });
  const quota = numberInput({ min: '1', value: String(f.recording ? f.recording.storage_quota_mb : 1024) });
  const retention = numberInput({ min: '1', value: String(f.recording ? f.recording.retention_days : 30) });
  const screen = checkbox('Screen sharing', { checked: t ? Boolean(f.screen_share) : true });
  const sdk = checkbox('SDK embedding on the client’s sites', { checked: Boolean(f.sdk_embedding) });
  const results = checkbox('Meeting results to recipients', { checked: Boolean(f.results_to_recipients) });
  const trial = checkbox('Free trial (one per account, no top-ups)', { checked: Boolean(t && t.trial) });
  const recordingFields = h('div', { class: 'form-grid' }, field('Storage quota, MB', quota), field('Kept for, days', retention));
  const sync = () => {
    recordingFields.hidden = !recording.input.checked;
  };
  recording.input.addEventListener('change', sync);
  sync();
  let saved = null;
  let asked = null;
  await dialog({
    title: t ? `Edit ${t.name}` : 'New tariff',
    body: h(
      'div',
      { class: 'dialog-body' },
      t ? h('p', { class: 'hint' }, 'Once sold, a tariff’s price and term are fixed: a changed offer is a new tariff code.') : null,
      h('div', { class: 'form-grid' }, field('Code', code, 'Lowercase letters, digits, - and _.'), field('Name', name)),
      h('div', { class: 'form-grid' }, field('Term, months', term), field('Price per seat for the term, ₽', price), field('VAT', vat)),
      h('div', { class: 'form-grid' }, field('Participants per meeting', participants), field('Meeting length, minutes', minutes)),
      h('fieldset', { class: 'choice' }, h('legend', null, 'Features'), recording.node, screen.node, sdk.node, results.node, trial.node),
      recordingFields,
    ),
    confirmLabel: t ? 'Save tariff' : 'Create tariff',
    onConfirm: async () => {
      const c = code.value.trim();
      if (!c) throw new Error('Enter the tariff code.');
      const body = {
        name: name.value,
        term_months: Number(term.value),
        price_per_seat: price.value.trim(),
        vat: vat.value,
        trial: trial.input.checked,
        features: {
          max_participants: Number(participants.value),
          max_meeting_minutes: Number(minutes.value),
          screen_share: screen.input.checked,
          sdk_embedding: sdk.input.checked,
          results_to_recipients: results.input.checked,
        },
      };
      if (recording.input.checked) {
        body.features.recording = { storage_quota_mb: Number(quota.value), retention_days: Number(retention.value) };
      }
      saved = await api('PUT', `/tariffs/${encodeURIComponent(c)}`, body);
      asked = body;
    },
  });
  return saved ? { saved, asked } : null;
}
