// Webhook endpoints: where Parley posts the account's events (signed with the endpoint's secret,
// shown once when the endpoint is made). What was sent and how it went is the delivery log.

import { h, replace, table, pager, dialog, dateTime, pageHeader, statusLine, field } from '../ui.js';
import { accountOf, serverPages } from '../licensing.js';
import { EVENT_TYPES, pageHref, secretOnce, withBusy } from './integrations-kit.js';

export default {
  path: 'webhooks',
  title: 'Webhooks',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const status = statusLine();
    const fresh = h('div', { id: 'webhook-fresh' });

    const url = h('input', { type: 'text', inputmode: 'url', name: 'url', maxlength: '2048', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'https://example.com/parley-events' });
    const boxes = EVENT_TYPES.map(([type, what]) =>
      h('label', null, h('input', { type: 'checkbox', name: 'events', value: type }), h('code', null, type), h('span', { class: 'hint' }, ` ${what}`)),
    );
    const events = h('fieldset', { class: 'choice event-choice' }, h('legend', null, 'Events'), boxes.map((b) => h('div', null, b)));
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Add endpoint');
    const formError = h('p', { class: 'form-error', role: 'alert' });
    const form = h('form', { class: 'stack', novalidate: true }, field('Endpoint URL', url, 'https (plain http only on this machine for testing).'), events, h('div', { class: 'form-actions' }, submit), formError);

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      url.removeAttribute('aria-invalid');
      const chosen = [...form.querySelectorAll('input[name=events]:checked')].map((c) => c.value);
      if (!url.value.trim()) {
        formError.textContent = 'Please enter the URL to post events to.';
        url.setAttribute('aria-invalid', 'true');
        url.focus();
        return;
      }
      if (chosen.length === 0) {
        formError.textContent = 'Please choose at least one event.';
        form.querySelector('input[name=events]').focus();
        return;
      }
      const created = await withBusy(submit, 'Adding…', formError, () => ctx.api('POST', `/accounts/${account}/webhooks`, { url: url.value.trim(), events: chosen }));
      if (!created) {
        if (/url/i.test(formError.textContent)) url.setAttribute('aria-invalid', 'true');
        return;
      }
      replace(
        fresh,
        secretOnce({
          label: `Signing secret of ${created.url}`,
          value: created.secret,
          note: 'Check X-Parley-Signature: v1=<hex HMAC-SHA256(secret, "{X-Parley-Timestamp}.{body}")> on every request.',
          onDone: () => url.focus(),
        }),
      );
      status.textContent = `Endpoint ${created.url} added.`;
      form.reset();
      list.reset();
    });

    async function remove(e) {
      const ok = await dialog({
        title: 'Delete this endpoint?',
        body: [h('p', null, h('code', null, e.url)), h('p', null, 'Events are no longer sent to it; messages still waiting for it fail (you will see them in the delivery log).')],
        confirmLabel: 'Delete endpoint',
        danger: true,
        onConfirm: () => ctx.api('DELETE', `/accounts/${account}/webhooks/${encodeURIComponent(e.id)}`),
      });
      if (ok) {
        status.textContent = `Endpoint ${e.url} deleted.`;
        list.reload();
      }
    }

    const list = pager({
      label: 'Webhook endpoints',
      load: serverPages(ctx.api, `/accounts/${account}/webhooks`, { order: 'newest' }),
      render: (rows) =>
        table({
          caption: 'Webhook endpoints, newest first',
          hideCaption: true,
          empty: 'No endpoints yet.',
          rows,
          columns: [
            { label: 'URL', value: (e) => h('code', { class: 'break' }, e.url) },
            { label: 'Events', value: (e) => h('ul', { class: 'plain-list' }, e.events.map((t) => h('li', null, h('code', null, t)))) },
            { label: 'Added', value: (e) => dateTime(e.created_at) },
            { label: 'Actions', value: (e) => h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Delete endpoint ${e.url}`, onclick: () => remove(e) }, 'Delete') },
          ],
        }),
    });

    replace(
      ctx.main,
      pageHeader('Webhooks', 'Parley posts the account’s events to your endpoints, signed, retried with backoff when they fail.', h('a', { class: 'btn', href: pageHref(ctx, 'deliveries') }, 'Delivery log')),
      h('section', { class: 'card', 'aria-labelledby': 'new-hook-heading' }, h('h2', { id: 'new-hook-heading', class: 'section-title' }, 'New endpoint'), form, fresh),
      h('section', { class: 'card', 'aria-labelledby': 'hooks-heading' }, h('h2', { id: 'hooks-heading', class: 'section-title' }, 'Endpoints'), status, list),
    );
  },
};
