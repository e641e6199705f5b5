// The CRM connection: amoCRM, Bitrix24 or a generic signed webhook. Shows the connection's status
// and last error, connects or replaces it, disconnects; the deal card's launch secret (made or
// rotated here, shown once); and which CRM users are which Parley users. Secrets are write-only:
// the server never returns them and this page never fills them in.

import { h, replace, table, pager, dialog, dateTime, pageHeader, statusLine, field, badge, errorText } from '../ui.js';
import { accountOf } from '../licensing.js';
import { secretOnce, withBusy } from './integrations-kit.js';

const KIND_NAME = { amocrm: 'amoCRM', bitrix24: 'Bitrix24', webhook: 'Generic webhook' };

const SETTING_LABEL = {
  base_url: 'API address',
  client_id: 'Client id',
  redirect_uri: 'Redirect URI',
  portal: 'Portal',
  default_responsible_id: 'Default responsible user id',
  url: 'Webhook URL',
};

function text(name, attrs = {}) {
  return h('input', { type: 'text', name, autocomplete: 'off', spellcheck: 'false', maxlength: '2048', ...attrs });
}

// Secrets: password inputs, never pre-filled, not remembered by the browser.
function secret(name) {
  return h('input', { type: 'password', name, autocomplete: 'new-password', spellcheck: 'false', maxlength: '2048' });
}

/** The form's fields per kind: [key, label, input, hint, required]. */
function kindFields() {
  return {
    amocrm: [
      ['subdomain', 'amoCRM subdomain', text('subdomain', { placeholder: 'mycompany' }), 'mycompany for https://mycompany.amocrm.ru', true],
      ['client_id', 'Integration id (client id)', text('client_id'), null, true],
      ['client_secret', 'Secret key (client secret)', secret('client_secret'), 'Write-only: never shown again.', true],
      ['redirect_uri', 'Redirect URI', text('redirect_uri', { placeholder: 'https://…' }), null, true],
      ['access_token', 'Access token', secret('access_token'), 'Write-only.', true],
      ['refresh_token', 'Refresh token', secret('refresh_token'), 'Write-only.', true],
    ],
    bitrix24: [
      ['webhook_url', 'Incoming webhook URL', secret('webhook_url'), 'https://portal.bitrix24.ru/rest/<user>/<code>/ — it works as a password: write-only.', true],
      ['default_responsible_id', 'Default responsible user id', text('default_responsible_id'), 'Optional: who gets tasks when the deal has nobody.', false],
    ],
    webhook: [
      ['url', 'Your CRM’s endpoint URL', text('url', { placeholder: 'https://crm.example.com/parley' }), 'Where Parley posts notes and tasks.', true],
      ['secret', 'Shared secret', secret('secret'), 'At least 16 characters; signs both directions. Write-only.', true],
    ],
  };
}

export default {
  path: 'crm',
  title: 'CRM connection',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const status = statusLine();
    const current = h('div', { id: 'crm-current', 'aria-live': 'polite' });
    let connection = null;

    // ---- the connection form ----
    const fields = kindFields();
    const kindRadios = Object.keys(fields).map((k) =>
      h('label', null, h('input', { type: 'radio', name: 'kind', value: k, checked: k === 'amocrm' }), KIND_NAME[k]),
    );
    const groups = {};
    for (const [k, list] of Object.entries(fields)) {
      groups[k] = h('div', { class: 'form-grid', 'data-kind': k, hidden: k !== 'amocrm' }, list.map(([, label, input, hint]) => field(label, input, hint)));
    }
    const frameOrigin = text('frame_origin', { placeholder: 'https://mycompany.amocrm.ru' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'crm-connect' }, 'Connect');
    const cancel = h('button', { type: 'button', class: 'btn', hidden: true }, 'Cancel');
    const formError = h('p', { class: 'form-error', role: 'alert' });
    const form = h(
      'form',
      { class: 'stack', novalidate: true, id: 'crm-form', autocomplete: 'off' },
      h('fieldset', { class: 'choice' }, h('legend', null, 'CRM'), kindRadios),
      Object.values(groups),
      field('CRM web address (frame origin)', frameOrigin, 'Optional: where the deal card is shown, https://host. amoCRM and Bitrix24 use their own address when left empty.'),
      h('div', { class: 'form-actions' }, submit, cancel),
      formError,
    );
    const formCard = h('section', { class: 'card', 'aria-labelledby': 'crm-form-heading' }, h('h2', { id: 'crm-form-heading', class: 'section-title' }, 'Connect a CRM'), form);

    const kind = () => form.querySelector('input[name=kind]:checked').value;
    form.addEventListener('change', (ev) => {
      if (ev.target.name !== 'kind') return;
      for (const [k, g] of Object.entries(groups)) g.hidden = k !== kind();
    });

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
      const k = kind();
      const settings = {};
      for (const [key, label, input, , required] of fields[k]) {
        const v = input.value.trim();
        if (!v && required) {
          formError.textContent = `Please fill in “${label}”.`;
          input.setAttribute('aria-invalid', 'true');
          input.focus();
          return;
        }
        if (v) settings[key] = v;
      }
      const body = { kind: k, settings };
      if (frameOrigin.value.trim()) body.frame_origin = frameOrigin.value.trim();
      const saved = await withBusy(submit, 'Connecting…', formError, () => ctx.api('PUT', `/accounts/${account}/crm`, body));
      if (!saved) {
        if (formError.textContent.includes('frame_origin')) frameOrigin.setAttribute('aria-invalid', 'true');
        return;
      }
      // Secrets leave the page as soon as the server has them.
      form.reset();
      for (const [g, el] of Object.entries(groups)) el.hidden = g !== 'amocrm';
      status.textContent = `${KIND_NAME[saved.kind]} connected.`;
      showConnection(saved);
      loadCardSecret();
    });
    cancel.addEventListener('click', () => {
      form.reset();
      formError.textContent = '';
      formCard.hidden = true;
      current.querySelector('button')?.focus();
    });

    // ---- the current connection ----
    function showConnection(c) {
      connection = c;
      if (!c) {
        replace(current, h('p', null, badge('Not connected', 'muted'), ' This account has no CRM connection. Connect one below.'));
        formCard.hidden = false;
        cancel.hidden = true;
        submit.textContent = 'Connect';
        return;
      }
      const tone = c.status === 'connected' ? 'ok' : 'bad';
      const settings = Object.entries(c.settings || {}).filter(([, v]) => v !== null && v !== '');
      const secrets = Object.keys(c.secrets || {});
      const replaceBtn = h('button', { type: 'button', class: 'btn' }, 'Replace connection');
      const disconnect = h('button', { type: 'button', class: 'btn btn-danger' }, 'Disconnect');
      replaceBtn.addEventListener('click', () => {
        formCard.hidden = false;
        cancel.hidden = false;
        submit.textContent = 'Replace connection';
        const radio = form.querySelector(`input[name=kind][value="${c.kind}"]`);
        if (radio) {
          radio.checked = true;
          for (const [k, g] of Object.entries(groups)) g.hidden = k !== c.kind;
        }
        radio?.focus();
      });
      disconnect.addEventListener('click', async () => {
        const ok = await dialog({
          title: `Disconnect ${KIND_NAME[c.kind] || c.kind}?`,
          body: h('p', null, 'Meeting notes and tasks waiting for it fail (you will see them in the delivery log), and the deal card stops opening until a CRM is connected again.'),
          confirmLabel: 'Disconnect',
          danger: true,
          onConfirm: () => ctx.api('DELETE', `/accounts/${account}/crm`),
        });
        if (ok) {
          status.textContent = 'The CRM is disconnected.';
          showConnection(null);
        }
      });
      replace(
        current,
        h('p', null, h('strong', null, KIND_NAME[c.kind] || c.kind), ' ', badge(c.status === 'connected' ? 'Connected' : 'Error', tone)),
        c.last_error ? h('div', { class: 'notice notice-error' }, h('p', null, `Last error (${dateTime(c.last_error_at)}): ${c.last_error}`)) : null,
        h(
          'dl',
          { class: 'facts' },
          settings.map(([k, v]) => [h('dt', null, SETTING_LABEL[k] || k), h('dd', null, String(v))]),
          h('dt', null, 'Frame origin'),
          h('dd', null, c.frame_origin || 'None (the deal card cannot be shown until one is set)'),
          h('dt', null, 'Secrets stored'),
          h('dd', null, secrets.length ? secrets.map((s) => s.replace(/_/g, ' ')).join(', ') : 'None'),
          h('dt', null, 'Last success'),
          h('dd', null, c.last_success_at ? dateTime(c.last_success_at) : 'No call yet'),
          h('dt', null, 'Connected'),
          h('dd', null, dateTime(c.created_at)),
        ),
        h('div', { class: 'form-actions' }, replaceBtn, disconnect),
      );
      formCard.hidden = true;
    }

    async function loadConnection() {
      replace(current, h('p', { class: 'state state-loading', role: 'status' }, 'Loading…'));
      try {
        showConnection(await ctx.api('GET', `/accounts/${account}/crm`, undefined, { signal: ctx.signal }));
      } catch (e) {
        if (e.name === 'AbortError') return;
        if (e.status === 404 && e.code === 'not_found') return showConnection(null);
        replace(current, h('div', { class: 'notice notice-error', role: 'alert' }, h('p', null, errorText(e)), h('button', { type: 'button', class: 'btn btn-small', onclick: loadConnection }, 'Retry')));
      }
    }

    // ---- the deal card's secret ----
    const cardState = h('div', { id: 'card-secret-state', 'aria-live': 'polite' });
    const cardFresh = h('div');
    const rotate = h('button', { type: 'button', class: 'btn', id: 'card-secret-rotate' }, 'Create the card secret');

    async function loadCardSecret() {
      try {
        const s = await ctx.api('GET', `/accounts/${account}/crm/card-secret`, undefined, { signal: ctx.signal });
        replace(cardState, h('p', null, s.configured ? `A secret is set (since ${dateTime(s.set_at)}).` : 'No secret yet: the deal card cannot be launched.'));
        rotate.textContent = s.configured ? 'Rotate the card secret' : 'Create the card secret';
        rotate.dataset.configured = s.configured ? 'true' : 'false';
      } catch (e) {
        if (e.name === 'AbortError') return;
        replace(cardState, h('p', { class: 'form-error', role: 'alert' }, errorText(e)));
      }
    }

    rotate.addEventListener('click', async () => {
      const rotating = rotate.dataset.configured === 'true';
      let made = null;
      const ok = await dialog({
        title: rotating ? 'Rotate the deal card secret?' : 'Create the deal card secret?',
        body: h('p', null, rotating ? 'A new secret replaces the old one at once: launch links your CRM signs with the old secret stop working until it uses the new one.' : 'Your CRM signs deal card launch links with it.'),
        confirmLabel: rotating ? 'Rotate' : 'Create',
        danger: rotating,
        onConfirm: async () => {
          made = await ctx.api('POST', `/accounts/${account}/crm/card-secret`, {});
        },
      });
      if (!ok || !made) return;
      replace(
        cardFresh,
        secretOnce({
          label: 'Deal card secret',
          value: made.secret,
          note: `Sign ${made.signed_text} with HMAC-SHA256 (hex) and pass it as sig=.`,
          onDone: () => rotate.focus(),
        }),
      );
      status.textContent = rotating ? 'The card secret is rotated.' : 'The card secret is created.';
      loadCardSecret();
    });

    // ---- CRM users → Parley users ----
    const crmUser = text('crm_user_id', { maxlength: '64', placeholder: '7' });
    const user = h('select', { name: 'user_id' }, h('option', { value: '' }, 'Loading users…'));
    const link = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Link');
    const linkError = h('p', { class: 'form-error', role: 'alert' });
    const linkForm = h('form', { class: 'stack', novalidate: true }, h('div', { class: 'inline-form' }, field('CRM user id', crmUser, 'The user’s id in the CRM.'), field('Parley user', user), h('div', { class: 'form-actions' }, link)), linkError);

    async function loadUsers() {
      try {
        const rows = await ctx.api('GET', `/accounts/${account}/users?limit=500`, undefined, { signal: ctx.signal });
        replace(
          user,
          h('option', { value: '' }, 'Choose a user'),
          rows.filter((r) => r.user.status !== 'disabled').map((r) => h('option', { value: r.user.id }, `${r.user.display_name} <${r.user.email}>`)),
        );
      } catch (e) {
        if (e.name === 'AbortError') return;
        replace(user, h('option', { value: '' }, 'Users could not be loaded'));
        linkError.textContent = errorText(e);
      }
    }

    linkForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      crmUser.removeAttribute('aria-invalid');
      if (!crmUser.value.trim()) {
        linkError.textContent = 'Please enter the CRM user id.';
        crmUser.setAttribute('aria-invalid', 'true');
        crmUser.focus();
        return;
      }
      if (!user.value) {
        linkError.textContent = 'Please choose the Parley user.';
        user.focus();
        return;
      }
      const done = await withBusy(link, 'Linking…', linkError, () => ctx.api('POST', `/accounts/${account}/crm/users`, { crm_user_id: crmUser.value.trim(), user_id: user.value }));
      if (!done) {
        if (/crm_user_id/.test(linkError.textContent)) crmUser.setAttribute('aria-invalid', 'true');
        return;
      }
      status.textContent = `CRM user ${done.crm_user_id} linked.`;
      linkForm.reset();
      links.reload();
      crmUser.focus();
    });

    async function unlink(l, button) {
      const ok = await dialog({
        title: `Unlink CRM user ${l.crm_user_id}?`,
        body: h('p', null, `${l.display_name} <${l.email}> can no longer open the deal card as this CRM user; their open card sessions end.`),
        confirmLabel: 'Unlink',
        danger: true,
        onConfirm: () => ctx.api('DELETE', `/accounts/${account}/crm/users/${encodeURIComponent(l.crm_user_id)}`),
      });
      if (ok) {
        status.textContent = `CRM user ${l.crm_user_id} unlinked.`;
        links.reload();
      } else button.focus();
    }

    const links = pager({
      label: 'CRM users',
      pageSize: 20,
      load: async ({ limit, offset, signal }) => {
        const r = await ctx.api('GET', `/accounts/${account}/crm/users?limit=${limit}&offset=${offset}`, undefined, { signal });
        return { items: r.links, total: r.total };
      },
      render: (rows) =>
        table({
          caption: 'CRM users and their Parley users',
          hideCaption: true,
          empty: 'No CRM user is linked yet.',
          rows,
          columns: [
            { label: 'CRM user id', value: (l) => h('code', null, l.crm_user_id) },
            { label: 'Parley user', value: (l) => `${l.display_name} <${l.email}>` },
            { label: 'Linked', value: (l) => dateTime(l.created_at) },
            {
              label: 'Actions',
              value: (l) => {
                const b = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Unlink CRM user ${l.crm_user_id}` }, 'Unlink');
                b.addEventListener('click', () => unlink(l, b));
                return b;
              },
            },
          ],
        }),
    });

    replace(
      ctx.main,
      pageHeader('CRM connection', 'Meeting notes and follow-up tasks go to the deal in your CRM; the deal card starts meetings from it.'),
      status,
      h('section', { class: 'card', 'aria-labelledby': 'crm-current-heading' }, h('h2', { id: 'crm-current-heading', class: 'section-title' }, 'Connection'), current),
      formCard,
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'card-heading' },
        h('h2', { id: 'card-heading', class: 'section-title' }, 'Deal card secret'),
        h('p', { class: 'hint' }, 'The CRM signs the deal card’s launch links with this secret. The card is shown only inside the connection’s frame origin.'),
        cardState,
        h('div', { class: 'form-actions' }, rotate),
        cardFresh,
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'links-heading' },
        h('h2', { id: 'links-heading', class: 'section-title' }, 'CRM users'),
        h('p', { class: 'hint' }, 'Who a CRM user is in Parley: their meetings run on that user’s seat.'),
        linkForm,
        links,
      ),
    );
    await Promise.all([loadConnection(), loadCardSecret(), loadUsers()]);
  },
};
