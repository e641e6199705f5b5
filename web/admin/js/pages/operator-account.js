// One account, for the operator: what it is and holds (lots, invoices, payments, refunds), and
// the operator's acts on it: registering a bank transfer against an invoice (the lot turns
// active at once; the deadline the agreement allows for the grant and whether it was met are
// shown), suspending and lifting a suspension, and ending the agreement, with the refund the
// rules give and its due date shown before confirming.

import { idempotencyKey } from '../api.js';
import { h, replace, loading, showError, table, pager, pagesOf, money, date, pageHeader, field, dialog, badge, errorText } from '../ui.js';
import { addDays, invoiceStatusBadge, lotStatusBadge, moscowToday, serverPages, tariffName, tariffsByCode } from '../licensing.js';
import { accountKindLabel, accountStatusBadge, facts, operatorApi, textInput } from './operator-kit.js';

/** 45 days' notice for the provider's termination (8.3.3). */
const PROVIDER_NOTICE_DAYS = 45;

export default {
  path: 'operator/accounts/view',
  title: 'Account',
  section: 'operator',
  async render(ctx) {
    const api = operatorApi(ctx);
    const id = ctx.params.get('id') || '';
    const head = h('div');
    // Outcomes of the operator's acts; focused after each so keyboard users land on it.
    const result = h('div', { role: 'status', 'aria-live': 'polite', tabindex: '-1', 'data-role': 'result' });
    const summary = h('section', { class: 'card', 'aria-labelledby': 'acc-summary' });
    const invoicesCard = h('section', { class: 'card', 'aria-labelledby': 'acc-invoices' });
    const lotsCard = h('section', { class: 'card', 'aria-labelledby': 'acc-lots' });
    const paymentsCard = h('section', { class: 'card', 'aria-labelledby': 'acc-payments' });
    const refundsCard = h('section', { class: 'card', 'aria-labelledby': 'acc-refunds' });
    replace(ctx.main, head, result, summary, invoicesCard, lotsCard, paymentsCard, refundsCard);
    const base = `/accounts/${encodeURIComponent(id)}`;
    let account = null;
    let tariffs = null;

    async function loadAccount() {
      // The first load shows a plain heading; a refresh keeps the page as it is until it has news.
      if (!account) {
        replace(head, pageHeader('Account'));
        loading(summary, 'Loading the account…');
      }
      let listed;
      try {
        [account, listed, tariffs] = await Promise.all([
          api('GET', base),
          api('GET', `/accounts?limit=1&q=${encodeURIComponent(id)}`),
          tariffsByCode(ctx.api, { signal: ctx.signal }),
        ]);
      } catch (e) {
        if (e.name === 'AbortError') return false;
        showError(summary, e.status === 404 ? 'There is no such account.' : e, e.status === 404 ? null : () => loadAccount().then((ok) => ok && loadLists()));
        return false;
      }
      const today = (listed.items || []).find((a) => a.id === account.id) || {};
      document.title = `${account.name} · Parley admin`;
      const suspended = account.status.status === 'suspended';
      const terminated = account.status.status === 'terminated';
      const actions = [
        suspended
          ? h('button', { type: 'button', class: 'btn', onclick: () => lift() }, 'Lift suspension')
          : h('button', { type: 'button', class: 'btn', disabled: terminated, onclick: () => suspend() }, 'Suspend…'),
        h('button', { type: 'button', class: 'btn btn-danger', disabled: terminated, onclick: () => terminate() }, 'Terminate…'),
      ];
      replace(
        head,
        h('p', null, h('a', { href: '#/operator/accounts' }, '← All accounts')),
        pageHeader(account.name, `${accountKindLabel(account.kind)} · CRM ${account.crm.system} / ${account.crm.external_id}`, ...actions),
      );
      replace(
        summary,
        h('h2', { class: 'section-title', id: 'acc-summary' }, 'Account'),
        facts([
          ['Status', h('span', null, accountStatusBadge(account.status), account.status.reason ? ` ${account.status.reason}` : '')],
          ['Agreement ends', today.terminates_on ? date(today.terminates_on) : null],
          ['Seats today', String(today.seats ?? '—')],
          ['Unpaid invoices', String(today.unpaid_invoices ?? '—')],
          ['INN', account.inn || '—'],
          ['Resident', account.resident ? 'Yes' : 'No'],
          ['Payment terms', account.postpay_allowed ? 'Prepay or postpay' : 'Prepay'],
          ['Card limit', account.card_limit ? money(account.card_limit) : 'Platform default'],
          ['Address', account.address || '—'],
          ['Account id', h('code', null, account.id)],
        ]),
        h(
          'p',
          { class: 'hint' },
          'The account’s own pages: ',
          h('a', { href: `#/lots?account=${encodeURIComponent(account.id)}` }, 'licenses'),
          ' · ',
          h('a', { href: `#/documents?account=${encodeURIComponent(account.id)}` }, 'documents'),
          ' · ',
          h('a', { href: `#/users?account=${encodeURIComponent(account.id)}` }, 'users'),
        ),
      );
      return true;
    }

    let lists = [];
    function loadLists() {
      const invoices = pager({
        label: 'Invoices',
        pageSize: 10,
        load: serverPages(api, `${base}/invoices`),
        render: (rows) =>
          table({
            caption: 'Invoices of the account, newest first',
            hideCaption: true,
            empty: 'No invoices yet.',
            rows,
            columns: [
              { label: 'Invoice', value: (i) => i.number_text },
              { label: 'Issued', value: (i) => date(i.issued_on) },
              { label: 'Amount', align: 'right', value: (i) => money(i.amount) },
              { label: 'Status', value: (i) => invoiceStatusBadge(i.status) },
              { label: 'Due', value: (i) => (i.due_on ? date(i.due_on) : '—') },
              {
                label: 'Actions',
                value: (i) =>
                  i.status === 'issued'
                    ? h('button', { type: 'button', class: 'btn btn-small btn-primary', onclick: () => registerPayment(i) }, `Register payment for ${i.number_text}`)
                    : '',
              },
            ],
          }),
      });
      const lots = pager({
        label: 'Licenses',
        pageSize: 10,
        load: serverPages(api, `${base}/lots`),
        render: (rows) =>
          table({
            caption: 'Licenses (lots) of the account, newest first',
            hideCaption: true,
            empty: 'No licenses yet: an initial order becomes a license when it is paid.',
            rows,
            columns: [
              { label: 'Tariff', value: (l) => tariffName(tariffs, l.tariff) },
              { label: 'Seats', align: 'right', value: (l) => String(l.seats) },
              { label: 'Starts', value: (l) => date(l.starts_on) },
              { label: 'Ends', value: (l) => h('span', { title: 'The first day without access' }, date(l.ends_on)) },
              { label: 'Status', value: (l) => lotStatusBadge(l.status) },
            ],
          }),
      });
      const payments = pager({
        label: 'Payments',
        pageSize: 10,
        load: serverPages(api, `${base}/payments`),
        render: (rows) =>
          table({
            caption: 'Payments of the account, newest first',
            hideCaption: true,
            empty: 'No payments yet.',
            rows,
            columns: [
              { label: 'Paid on', value: (p) => date(p.paid_on) },
              { label: 'Amount', align: 'right', value: (p) => money(p.amount) },
              { label: 'Method', value: (p) => (p.method === 'bank_transfer' ? 'Bank transfer' : 'Card') },
              { label: 'Reference', value: (p) => p.reference || '—' },
              { label: 'Granted', value: (p) => date(p.granted_on) },
              { label: 'Grant deadline', value: (p) => date(p.grant_deadline) },
              { label: 'Grant', value: (p) => (p.granted_late ? badge('Late', 'bad') : badge('On time', 'ok')) },
            ],
          }),
      });
      const refunds = pager({
        label: 'Refunds',
        pageSize: 10,
        load: pagesOf(({ signal }) => api('GET', `${base}/refunds`, undefined, { signal })),
        render: (rows) =>
          table({
            caption: 'Refunds owed to the account',
            hideCaption: true,
            empty: 'No refunds.',
            rows,
            columns: [
              { label: 'Amount', align: 'right', value: (r) => money(r.amount) },
              { label: 'Reason', value: (r) => r.reason },
              { label: 'Due by', value: (r) => date(r.due_on) },
            ],
          }),
      });
      replace(invoicesCard, h('h2', { class: 'section-title', id: 'acc-invoices' }, 'Invoices'), invoices);
      replace(lotsCard, h('h2', { class: 'section-title', id: 'acc-lots' }, 'Licenses'), lots);
      replace(paymentsCard, h('h2', { class: 'section-title', id: 'acc-payments' }, 'Payments'), payments);
      replace(refundsCard, h('h2', { class: 'section-title', id: 'acc-refunds' }, 'Refunds'), refunds);
      lists = [invoices, lots, payments, refunds];
    }

    async function refresh() {
      if (await loadAccount()) lists.forEach((l) => l.reload());
    }

    function announce(tone, ...text) {
      replace(result, h('div', { class: tone === 'error' ? 'notice notice-error' : 'notice' }, ...text));
      result.focus();
    }

    // ---- acts ----

    async function registerPayment(invoice) {
      const today = moscowToday();
      const amount = textInput({ required: true, inputmode: 'decimal', value: invoice.amount, maxlength: '20' });
      const paidOn = h('input', { type: 'date', required: true, value: today, max: today });
      const reference = textInput({ required: true, maxlength: '100' });
      // One key per registration: a retry after a lost answer returns the first registration.
      const key = idempotencyKey();
      let payment = null;
      const ok = await dialog({
        title: `Register the bank transfer for invoice ${invoice.number_text}`,
        body: h(
          'div',
          { class: 'dialog-body' },
          h('p', null, `Invoice ${invoice.number_text} of ${date(invoice.issued_on)}, ${money(invoice.amount)}. Registering the payment grants the license at once.`),
          h(
            'p',
            { class: 'hint' },
            'The agreement allows the grant within 5 business days of the payment for an initial purchase (3.2.7), 3 for renewals and top-ups (5.1). The deadline and whether it was met are recorded with the payment.',
          ),
          field('Amount received', amount, 'The whole invoice amount.'),
          field('Received on', paidOn, 'The day the money reached the bank account.'),
          field('Bank reference', reference, 'The payment order’s number, as on the bank statement.'),
        ),
        confirmLabel: 'Register payment',
        onConfirm: async () => {
          if (!reference.value.trim()) {
            reference.setAttribute('aria-invalid', 'true');
            reference.focus();
            throw new Error('Enter the bank reference of the transfer.');
          }
          payment = await api(
            'POST',
            `${base}/invoices/${encodeURIComponent(invoice.id)}/payments`,
            { method: 'bank_transfer', amount: amount.value.trim(), paid_on: paidOn.value || undefined, reference: reference.value.trim() },
            { headers: { 'Idempotency-Key': key } },
          );
        },
      });
      if (!ok || !payment) return;
      announce(
        'ok',
        h('p', null, h('strong', null, `Payment of ${money(payment.amount)} registered for invoice ${invoice.number_text}.`), ` The license is active from ${date(payment.granted_on)}.`),
        h(
          'p',
          null,
          `The agreement allows the grant until ${date(payment.grant_deadline)}: `,
          payment.granted_late ? badge('granted late', 'bad') : badge('granted on time', 'ok'),
        ),
      );
      await refresh();
    }

    async function suspend() {
      const reason = h('textarea', { required: true, maxlength: '500', rows: '3' });
      const ok = await dialog({
        title: `Suspend ${account.name}`,
        body: h(
          'div',
          { class: 'dialog-body' },
          h('p', null, 'The account’s users can neither start nor join meetings while it is suspended. The license term keeps running (3.5, 6.5).'),
          field('Reason', reason, 'Non-payment, a breach, a lawful order… The account’s users see it.'),
        ),
        confirmLabel: 'Suspend',
        danger: true,
        onConfirm: async () => {
          if (!reason.value.trim()) {
            reason.setAttribute('aria-invalid', 'true');
            throw new Error('State the reason of the suspension.');
          }
          await api('POST', `${base}/suspension`, { reason: reason.value.trim() });
        },
      });
      if (!ok) return;
      announce('ok', h('p', null, `${account.name} is suspended.`));
      await refresh();
    }

    async function lift() {
      const ok = await dialog({
        title: `Lift the suspension of ${account.name}`,
        body: h('p', null, `Suspended for: ${account.status.reason || '—'}. Its users may start and join meetings again.`),
        confirmLabel: 'Lift suspension',
        onConfirm: () => api('DELETE', `${base}/suspension`),
      });
      if (!ok) return;
      announce('ok', h('p', null, `The suspension of ${account.name} is lifted.`));
      await refresh();
    }

    async function terminate() {
      const today = moscowToday();
      const earliest = addDays(today, PROVIDER_NOTICE_DAYS);
      const kinds = [
        ['provider', 'By the provider, with 45 days’ notice (8.3.3): the unexpired part is refunded'],
        ['breach', 'For the client’s breach (8.3.4): at once, no refund'],
        ['client', 'At the client’s request (8.3.5): at the end of the paid month, no refund'],
      ];
      const radios = kinds.map(([value, label], i) => {
        const input = h('input', { type: 'radio', name: 'termination-kind', value, checked: i === 0 });
        return { input, node: h('label', null, input, label) };
      });
      const effective = h('input', { type: 'date', value: earliest, min: earliest });
      const effectiveField = field('Effective on', effective, `At least ${PROVIDER_NOTICE_DAYS} days from today: ${date(earliest)} or later.`);
      const outcome = h('div', { 'aria-live': 'polite', 'data-role': 'termination-preview' });
      let shown = null;
      let inFlight = null;

      const kind = () => radios.find((r) => r.input.checked).input.value;
      const request = () => (kind() === 'provider' ? { kind: 'provider', effective_on: effective.value || undefined } : { kind: kind() });

      async function preview() {
        if (inFlight) inFlight.abort();
        const mine = new AbortController();
        inFlight = mine;
        effectiveField.hidden = kind() !== 'provider';
        const body = request();
        shown = null;
        loading(outcome, 'Working out the refund…');
        try {
          const o = await api('POST', `${base}/termination/preview`, body, { signal: mine.signal });
          if (mine.signal.aborted) return;
          shown = { body: JSON.stringify(body), outcome: o };
          replace(
            outcome,
            h('h3', { class: 'section-title' }, 'What this termination gives'),
            facts(
              [
              ['Notice given', date(o.notice_on)],
              ['The agreement ends', date(o.effective_on)],
              ['Refund', h('span', { 'data-role': 'refund' }, money(o.refund))],
              ['Refund due by', o.refund_due_on ? date(o.refund_due_on) : '—'],
              ],
              'facts compact',
            ),
            h(
              'p',
              { class: 'hint' },
              o.kind === 'provider'
                ? 'Refund = amount paid × unexpired days ÷ paid days, for every paid period, rounded to kopecks once at the end; due within 10 business days of the end.'
                : 'No refund is due for this kind of termination.',
            ),
          );
        } catch (e) {
          if (e.name === 'AbortError' || mine.signal.aborted) return;
          replace(outcome, h('p', { class: 'notice notice-error', role: 'alert' }, errorText(e)));
        }
      }
      for (const r of radios) r.input.addEventListener('change', preview);
      effective.addEventListener('change', preview);

      let done = null;
      const open = dialog({
        title: `Terminate the agreement with ${account.name}`,
        body: h(
          'div',
          { class: 'dialog-body' },
          h('fieldset', { class: 'choice' }, h('legend', null, 'Kind of termination'), radios.map((r) => h('div', null, r.node))),
          effectiveField,
          outcome,
        ),
        confirmLabel: 'Terminate the agreement',
        danger: true,
        onConfirm: async () => {
          const body = request();
          if (!shown || shown.body !== JSON.stringify(body)) {
            throw new Error('Wait for the refund of this choice to show, then confirm.');
          }
          done = await api('POST', `${base}/termination`, body);
        },
      });
      // The dialog is on screen now: show what the default choice gives while the operator reads.
      preview();
      await open;
      if (inFlight) inFlight.abort();
      if (!done) return;
      announce(
        'ok',
        h(
          'p',
          null,
          h('strong', null, `The agreement with ${account.name} ends on ${date(done.effective_on)}.`),
          done.refund_due_on ? ` Refund ${money(done.refund)} due by ${date(done.refund_due_on)}.` : ' No refund is due.',
        ),
      );
      await refresh();
    }

    if (!id) {
      replace(head, pageHeader('Account'));
      showError(summary, 'No account was chosen. Open one from the account list.');
      return;
    }
    if (await loadAccount()) loadLists();
  },
};
