// SDK keys: which web origins may embed the account's meetings (the iframe page and the JS SDK).
// A key is a public handle, not a secret. Creating one needs a tariff with SDK embedding: the
// server's refusal is shown as it words it, with what to do about it.

import { h, replace, table, pager, dialog, dateTime, pageHeader, statusLine, field, errorText } from '../ui.js';
import { accountOf, serverPages } from '../licensing.js';
import { pageHref, withBusy } from './integrations-kit.js';

const REFUSAL_HINT = {
  sdk_not_in_tariff: 'Embedding needs a tariff that includes the SDK. Order one on the Order page, or ask your provider.',
  account_suspended: 'The account is suspended: nothing new can be set up until it is resumed.',
  account_terminated: 'The account is terminated.',
};

export default {
  path: 'sdk-keys',
  title: 'SDK keys',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const status = statusLine();

    const name = h('input', { type: 'text', name: 'name', maxlength: '100', required: true, autocomplete: 'off', placeholder: 'Shop (production)' });
    const origins = h('textarea', { name: 'allowed_origins', rows: '3', required: true, spellcheck: 'false', placeholder: 'https://shop.example' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create SDK key');
    const formError = h('div', { class: 'form-error', role: 'alert', id: 'sdk-key-error' });
    const form = h(
      'form',
      { class: 'stack', novalidate: true },
      h(
        'div',
        { class: 'form-grid' },
        field('Name', name, 'For you: where the key is used.'),
        field('Allowed origins', origins, 'One per line: https://host[:port] (http only for localhost or 127.0.0.1). No paths, no wildcards.'),
      ),
      h('div', { class: 'form-actions' }, submit),
      formError,
    );

    function invalid(input, message) {
      formError.textContent = message;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      name.removeAttribute('aria-invalid');
      origins.removeAttribute('aria-invalid');
      const list_ = origins.value.split(/\s+/).map((s) => s.trim()).filter(Boolean);
      if (!name.value.trim()) return invalid(name, 'Please give the key a name.');
      if (list_.length === 0) return invalid(origins, 'Please give at least one origin allowed to embed.');
      formError.textContent = '';
      const done = await withBusy(submit, 'Creating…', null, async () => {
        try {
          return await ctx.api('POST', `/accounts/${account}/sdk-keys`, { name: name.value.trim(), allowed_origins: list_ });
        } catch (e) {
          replace(formError, h('p', null, errorText(e)), REFUSAL_HINT[e.code] ? h('p', { class: 'hint' }, REFUSAL_HINT[e.code]) : null);
          formError.dataset.code = e.code || '';
          if (e.code === 'invalid_origin') origins.setAttribute('aria-invalid', 'true');
          if (e.code === 'invalid_name') name.setAttribute('aria-invalid', 'true');
          return null;
        }
      });
      if (!done) return;
      status.textContent = `SDK key “${done.name}” created: ${done.id}.`;
      form.reset();
      list.reset();
      name.focus();
    });

    async function revoke(k) {
      const ok = await dialog({
        title: `Revoke the SDK key “${k.name}”?`,
        body: h('p', null, 'Pages on its origins can no longer embed meetings, and tokens minted for it stop working at once.'),
        confirmLabel: 'Revoke',
        danger: true,
        onConfirm: () => ctx.api('DELETE', `/accounts/${account}/sdk-keys/${encodeURIComponent(k.id)}`),
      });
      if (ok) {
        status.textContent = `SDK key “${k.name}” revoked.`;
        list.reload();
      }
    }

    const list = pager({
      label: 'SDK keys',
      load: serverPages(ctx.api, `/accounts/${account}/sdk-keys`, { order: 'newest' }),
      render: (rows) =>
        table({
          caption: 'SDK keys of the account, newest first',
          hideCaption: true,
          empty: 'No SDK keys yet.',
          rows,
          columns: [
            { label: 'Name', value: (k) => k.name },
            { label: 'Key id', value: (k) => h('code', null, k.id) },
            { label: 'Allowed origins', value: (k) => h('ul', { class: 'plain-list' }, k.allowed_origins.map((o) => h('li', null, h('code', null, o)))) },
            { label: 'Created', value: (k) => dateTime(k.created_at) },
            { label: 'Actions', value: (k) => h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Revoke SDK key ${k.name}`, onclick: () => revoke(k) }, 'Revoke') },
          ],
        }),
    });

    replace(
      ctx.main,
      pageHeader('SDK keys', 'Embed meetings in your own site. A key names the origins allowed to embed; your backend mints join tokens for it with an API key.'),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'new-sdk-heading' },
        h('h2', { id: 'new-sdk-heading', class: 'section-title' }, 'New SDK key'),
        form,
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'sdk-keys-heading' },
        h('h2', { id: 'sdk-keys-heading', class: 'section-title' }, 'Keys'),
        h('p', { class: 'hint' }, 'Tokens are minted with an ', h('a', { href: pageHref(ctx, 'api-keys') }, 'API key'), ' (see docs/sdk.md).'),
        status,
        list,
      ),
    );
  },
};
