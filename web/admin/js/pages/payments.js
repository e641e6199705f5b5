// Payments: what was paid, and how to pay what is open. Legal entities pay an invoice by bank
// transfer, which the provider registers (access is granted then). Individuals and sole
// proprietors may also pay by card up to the card limit (4.7): the server checks the limit and
// refuses in its own words, then the payer goes to the acquirer's page (YooKassa). Access is
// granted when the acquirer confirms the money, so on the way back (`?invoice=…&card=return`)
// the page waits for that confirmation with a deadline.

import { h, replace, loading, showError, table, pager, pagesOf, dialog, money, date, pageHeader, statusLine, badge, errorText } from '../ui.js';
import { idempotencyKey } from '../api.js';
import { accountOf, invoiceStatusBadge, kopecks, serverPages } from '../licensing.js';

const CARD_KINDS = ['individual', 'sole_proprietor'];
// How long to wait for the acquirer's confirmation after the payer comes back, and how often to
// ask. The server looks a payment up at the acquirer itself when a notification is late.
const CONFIRM_DEADLINE_MS = 3 * 60 * 1000;
const CONFIRM_POLL_MS = 3000;

export default {
  path: 'payments',
  title: 'Payments',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const openBox = h('section', { class: 'card', 'aria-labelledby': 'open-h' });
    const paidBox = h('section', { class: 'card', 'aria-labelledby': 'paid-h' });
    const status = statusLine();
    // The wait for the acquirer's confirmation after paying by card (empty otherwise).
    const cardBox = h('div', { id: 'card-return', 'aria-live': 'polite' });
    replace(ctx.main, pageHeader('Payments', 'Open invoices and how to pay them; payments received.'), status, cardBox, openBox, paidBox);

    let acct;
    let invoices = [];
    async function loadOpen() {
      loading(openBox, 'Loading invoices…');
      try {
        [acct, invoices] = await Promise.all([
          ctx.api('GET', `/accounts/${account}`, undefined, { signal: ctx.signal }),
          ctx.api('GET', `/accounts/${account}/invoices?order=newest`, undefined, { signal: ctx.signal }),
        ]);
      } catch (e) {
        if (e.name !== 'AbortError') showError(openBox, e, loadOpen);
        return false;
      }
      const open = invoices.filter((i) => i.status === 'issued');
      const wanted = ctx.params.get('invoice');
      open.sort((a, b) => (a.id === wanted ? -1 : b.id === wanted ? 1 : 0));
      const cardKind = CARD_KINDS.includes(acct.kind);
      const limit = acct.card_limit;
      const cardNote = cardKind
        ? `Card payment is possible for this account${limit ? ` up to ${money(limit)} per invoice` : ' up to the provider’s card limit'}.`
        : 'Card payment is not available for this account: legal entities pay invoices by bank transfer (licence agreement 4.7).';
      replace(
        openBox,
        h('h2', { id: 'open-h', class: 'section-title' }, 'Invoices to pay'),
        h(
          'div',
          { class: 'notice' },
          h('p', { class: 'state-message' }, 'Bank transfer: pay the invoice total to the licensor named on the invoice, quoting the invoice number. The provider registers the payment, and access is granted at that moment.'),
          h('p', { class: 'state-message', id: 'card-note' }, cardNote),
        ),
        pager({
          label: 'Invoices to pay',
          pageSize: 10,
          load: pagesOf(async () => open),
          render: (rows) =>
            table({
              caption: 'Invoices awaiting payment',
              hideCaption: true,
              empty: 'Nothing to pay.',
              rows,
              rowClass: (r) => (r.id === wanted ? 'row-highlight' : null),
              columns: [
                { label: 'Invoice', value: (r) => h('a', { href: `#/documents/view?kind=invoice&id=${r.id}` }, `No. ${r.number_text}`) },
                { label: 'Issued', value: (r) => date(r.issued_on) },
                { label: 'Due', value: (r) => (r.due_on ? date(r.due_on) : 'Before access') },
                { label: 'Amount', align: 'right', value: (r) => money(r.amount) },
                { label: 'Status', value: (r) => invoiceStatusBadge(r.status) },
                {
                  label: 'Pay',
                  value: (r) => {
                    const byCard = cardKind && !(limit && kopecks(r.amount) > kopecks(limit));
                    return h(
                      'div',
                      { class: 'row-actions' },
                      h('a', { class: 'btn btn-small', href: `#/documents/view?kind=invoice&id=${r.id}` }, 'Invoice for bank transfer'),
                      byCard
                        ? h('button', { type: 'button', class: 'btn btn-small btn-primary', onclick: () => payByCard(r), 'aria-label': `Pay invoice ${r.number_text} by card` }, 'Pay by card')
                        : cardKind
                          ? h('span', { class: 'hint' }, 'Above the card limit: bank transfer only')
                          : null,
                    );
                  },
                },
              ],
            }),
        }),
      );
      return true;
    }

    async function payByCard(inv) {
      // One key per attempt: a double click or a retry gets the same payment, never two.
      const key = idempotencyKey();
      let started = null;
      const ok = await dialog({
        title: `Pay ${money(inv.amount)} by card?`,
        body: h('p', null, `Invoice No. ${inv.number_text}. You will enter your card on the payment provider’s page (YooKassa) and come back here; access is granted as soon as the provider confirms the payment.`),
        confirmLabel: 'Continue to payment',
        onConfirm: async () => {
          try {
            started = await ctx.api('POST', `/accounts/${account}/invoices/${inv.id}/card-payments`, undefined, { headers: { 'Idempotency-Key': key } });
          } catch (e) {
            if (e.code === 'card_payments_unavailable') {
              const note = openBox.querySelector('#card-note');
              if (note) note.textContent = 'Card payment is not available on this platform at the moment: please pay by bank transfer.';
            }
            throw e;
          }
        },
      });
      if (!ok || !started) return;
      status.textContent = 'Opening the payment provider’s page…';
      window.location.assign(started.confirmation_url);
    }

    // Back from the acquirer's page: wait for its confirmation (the invoice paid), with a deadline.
    async function awaitConfirmation(invoiceId) {
      const inv = invoices.find((i) => i.id === invoiceId);
      const label = inv ? `invoice No. ${inv.number_text}` : 'the invoice';
      const say = (tone, ...text) => replace(cardBox, h('div', { class: `notice ${tone === 'bad' ? 'notice-error' : ''}`, role: tone === 'bad' ? 'alert' : 'status' }, h('p', { class: 'state-message' }, ...text)));
      say('wait', h('span', { class: 'admin-spinner', 'aria-hidden': 'true' }), ` Waiting for the payment provider to confirm your payment of ${label}…`);
      const deadline = Date.now() + CONFIRM_DEADLINE_MS;
      while (!ctx.signal.aborted) {
        let latest = null;
        let invoice = null;
        try {
          // Listing the card payments also makes the server ask the acquirer about late ones.
          const cps = await ctx.api('GET', `/accounts/${account}/card-payments?order=newest&limit=50`, undefined, { signal: ctx.signal });
          latest = cps.find((c) => c.invoice_id === invoiceId) || null;
          invoice = await ctx.api('GET', `/accounts/${account}/invoices/${invoiceId}`, undefined, { signal: ctx.signal });
        } catch (e) {
          if (e.name === 'AbortError') return;
          // A passing network error: keep waiting until the deadline.
          if (Date.now() > deadline) {
            say('bad', `Could not check the payment: ${errorText(e)} Reload this page to check again.`);
            return;
          }
        }
        if (invoice && invoice.status === 'paid') {
          await showGranted(latest, label, say);
          await loadOpen();
          paid.reset();
          return;
        }
        if (latest && latest.status === 'canceled') {
          say('bad', `The payment of ${label} was not completed (${latest.failure || 'cancelled'}). Nothing was charged; the invoice is still open and you can pay it again.`);
          return;
        }
        if (latest && (latest.status === 'rejected' || latest.status === 'unapplied')) {
          say('bad', `The payment provider’s confirmation for ${label} could not be applied. The provider has been told and will refund or register it; please contact support if you have questions.`);
          return;
        }
        if (Date.now() > deadline) {
          say('bad', `No confirmation from the payment provider yet for ${label}. If your card was charged, access is granted as soon as the confirmation arrives: reopen this page in a few minutes.`);
          return;
        }
        await new Promise((resolve) => {
          const t = setTimeout(resolve, CONFIRM_POLL_MS);
          ctx.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
        });
      }
    }

    async function showGranted(cardPayment, label, say) {
      let lot = null;
      try {
        const list = await ctx.api('GET', `/accounts/${account}/payments?order=newest&limit=50`, undefined, { signal: ctx.signal });
        const payment = cardPayment && list.find((p) => p.id === cardPayment.payment_id);
        if (payment) lot = await ctx.api('GET', `/accounts/${account}/lots/${payment.lot_id}`, undefined, { signal: ctx.signal });
      } catch (e) {
        if (e.name === 'AbortError') return;
      }
      say(
        'ok',
        `Payment of ${label} confirmed. `,
        lot
          ? [`Your license is ${lot.status === 'active' ? 'active' : lot.status}: ${lot.seats} seat${lot.seats === 1 ? '' : 's'} until ${date(lot.ends_on)}. `, h('a', { href: '#/lots' }, 'See licenses')]
          : 'Access has been granted.',
      );
      const box = cardBox.firstElementChild;
      if (box) box.id = 'card-confirmed';
    }

    const METHOD = { card: 'Card', bank_transfer: 'Bank transfer' };
    // After the invoices are loaded: the payments name their invoice by its number.
    await loadOpen();
    const paid = pager({
      label: 'Payments',
      load: serverPages(ctx.api, `/accounts/${account}/payments`),
      render: (rows) =>
        table({
          caption: 'Payments received',
          hideCaption: true,
          empty: 'No payments yet.',
          rows,
          columns: [
            { label: 'Paid on', value: (r) => date(r.paid_on) },
            {
              label: 'Invoice',
              value: (r) => {
                const inv = invoices.find((i) => i.id === r.invoice_id);
                return h('a', { href: `#/documents/view?kind=invoice&id=${r.invoice_id}` }, inv ? `No. ${inv.number_text}` : 'Invoice');
              },
            },
            { label: 'Method', value: (r) => METHOD[r.method] || r.method },
            { label: 'Amount', align: 'right', value: (r) => money(r.amount) },
            { label: 'Access granted', value: (r) => h('span', null, date(r.granted_on), r.granted_late ? [' ', badge(`late: due by ${date(r.grant_deadline)}`, 'bad')] : null) },
          ],
        }),
    });

    replace(paidBox, h('h2', { id: 'paid-h', class: 'section-title' }, 'Payments received'), paid);
    if (ctx.params.get('card') === 'return' && ctx.params.get('invoice')) {
      // Not awaited: the page is usable while it waits (the wait ends with the page's signal).
      awaitConfirmation(ctx.params.get('invoice')).catch(() => {});
    }
  },
};
