// API keys: the credentials of the account's own backend (`Authorization: Bearer <key id>.<secret>`).
// A new key's secret is shown once, with a Copy button; the list shows when each key was made and
// last used; revoking stops a key at once (the server keeps one key active: revoking the last
// one is refused in its own words).

import { h, replace, table, pager, dialog, dateTime, pageHeader, statusLine, badge } from '../ui.js';
import { accountOf, serverPages } from '../licensing.js';
import { secretOnce, withBusy } from './integrations-kit.js';

export default {
  path: 'api-keys',
  title: 'API keys',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const status = statusLine();
    const createError = h('p', { class: 'form-error', role: 'alert' });
    const fresh = h('div', { id: 'api-key-fresh' });
    const create = h('button', { type: 'button', class: 'btn btn-primary', id: 'create-api-key' }, 'Create an API key');

    create.addEventListener('click', async () => {
      const key = await withBusy(create, 'Creating…', createError, () => ctx.api('POST', `/accounts/${account}/api-keys`));
      if (!key) return;
      replace(
        fresh,
        secretOnce({
          label: `API key ${key.key_id}`,
          value: key.bearer,
          note: 'Send it as "Authorization: Bearer <this value>" from your server. Never put it in a web page.',
          onDone: () => create.focus(),
        }),
      );
      status.textContent = `API key ${key.key_id} created.`;
      list.reset();
    });

    async function revoke(k) {
      const ok = await dialog({
        title: `Revoke API key ${k.key_id}?`,
        body: h('p', null, 'Calls made with it are refused from now on. This cannot be undone.'),
        confirmLabel: 'Revoke',
        danger: true,
        onConfirm: () => ctx.api('DELETE', `/accounts/${account}/api-keys/${encodeURIComponent(k.key_id)}`),
      });
      if (ok) {
        status.textContent = `API key ${k.key_id} revoked.`;
        list.reload();
      }
    }

    const list = pager({
      label: 'API keys',
      load: serverPages(ctx.api, `/accounts/${account}/api-keys`, { order: 'newest' }),
      render: (rows) =>
        table({
          caption: 'API keys of the account, newest first',
          hideCaption: true,
          empty: 'This account has no API keys.',
          rows,
          rowClass: (k) => (k.revoked_at ? 'row-revoked' : null),
          columns: [
            { label: 'Key id', value: (k) => h('code', null, k.key_id) },
            { label: 'Created', value: (k) => dateTime(k.created_at) },
            { label: 'Last used', value: (k) => (k.last_used_at ? dateTime(k.last_used_at) : 'Never') },
            { label: 'Status', value: (k) => (k.revoked_at ? badge(`Revoked ${dateTime(k.revoked_at)}`, 'muted') : badge('Active', 'ok')) },
            {
              label: 'Actions',
              value: (k) =>
                k.revoked_at
                  ? '—'
                  : h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Revoke API key ${k.key_id}`, onclick: () => revoke(k) }, 'Revoke'),
            },
          ],
        }),
    });

    replace(
      ctx.main,
      pageHeader('API keys', 'Your servers call the Parley API with a key: to mint join tokens for embedded meetings, manage users and read licenses.'),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'new-key-heading' },
        h('h2', { id: 'new-key-heading', class: 'section-title' }, 'New key'),
        h('p', { class: 'hint' }, 'The secret is shown once, right after it is made. Keep one key per server or integration so you can revoke one without stopping the others.'),
        h('div', { class: 'form-actions' }, create),
        createError,
        fresh,
      ),
      h('section', { class: 'card', 'aria-labelledby': 'keys-heading' }, h('h2', { id: 'keys-heading', class: 'section-title' }, 'Keys'), status, list),
    );
  },
};
