// Order licenses: renewal, top-up, renewal with top-up, renewal with reduction, or a first
// purchase. As the inputs change the server prices the order (POST …/quotes, debounced, a
// stale request aborted) and the page shows the formula's inputs — B, D1, D2, days, logistics
// days, basis — the discounts and the total, or the refusal with the window's dates. Confirming
// places the order (POST …/orders with an Idempotency-Key) and shows its invoice.

import { h, replace, loading, showError, dialog, field, money, date, pageHeader, errorText, plural } from '../ui.js';
import { idempotencyKey } from '../api.js';
import { accountOf, isCurrent, moscowToday, orderTypeLabel, tariffName, tariffsByCode } from '../licensing.js';

const TYPES = ['top_up', 'renewal', 'renewal_with_top_up', 'renewal_with_reduction', 'initial'];
const HINTS = {
  top_up: 'Add seats to a license until it ends. Open until 90 days before its end; each seat costs a share of the price for the days left.',
  renewal: 'Extend a license for another term. Opens 90 days before its end; the days left are carried over.',
  renewal_with_top_up: 'Renew and add seats at once. Opens 90 days before the end.',
  renewal_with_reduction: 'Renew with fewer seats. Opens 14 days before the end; the days left are not carried over.',
  initial: 'Buy a new license: seats for the tariff’s full term from the day it is granted.',
};
const QUOTE_DELAY_MS = 300;

export default {
  path: 'order',
  title: 'Order licenses',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const body = h('div');
    replace(ctx.main, pageHeader('Order licenses', 'Choose what to order; the price is calculated as you type.'), body);
    loading(body, 'Loading licenses and tariffs…');

    let acct, lots, tariffs;
    try {
      [acct, lots, tariffs] = await Promise.all([
        ctx.api('GET', `/accounts/${account}`, undefined, { signal: ctx.signal }),
        ctx.api('GET', `/accounts/${account}/lots`, undefined, { signal: ctx.signal }),
        tariffsByCode(ctx.api, { signal: ctx.signal }),
      ]);
    } catch (e) {
      if (e.name !== 'AbortError') showError(body, e, () => ctx.navigate('#/order'));
      return;
    }
    const today = moscowToday();
    const active = lots.filter((l) => isCurrent(l, today));
    const buyable = [...tariffs.values()].filter((t) => !t.archived);

    // ---- the form ----

    const wantedType = ctx.params.get('type');
    const typeRadios = TYPES.map((t) =>
      h('input', { type: 'radio', name: 'type', value: t, id: `type-${t}`, checked: t === (TYPES.includes(wantedType) ? wantedType : active.length ? 'top_up' : 'initial') }),
    );
    const typeSet = h(
      'fieldset',
      { class: 'choice' },
      h('legend', null, 'What to order'),
      TYPES.map((t, i) => h('label', { for: `type-${t}` }, typeRadios[i], orderTypeLabel(t))),
    );
    const typeHint = h('p', { class: 'form-note', id: 'type-hint' });

    const license = h(
      'select',
      { name: 'license_id', id: 'order-license' },
      active.map((l) => h('option', { value: l.id }, `${tariffName(tariffs, l.tariff)} · ${plural(l.seats, 'seat', 'seats')} · until ${date(l.ends_on)}`)),
    );
    if (ctx.params.get('license') && active.some((l) => l.id === ctx.params.get('license'))) license.value = ctx.params.get('license');
    const tariff = h('select', { name: 'tariff', id: 'order-tariff' });
    const seats = h('input', { type: 'number', name: 'seats', id: 'order-seats', min: '1', max: '100000', step: '1', inputmode: 'numeric', value: '1' });
    const addSeats = h('input', { type: 'number', name: 'add_seats', id: 'order-add-seats', min: '1', max: '100000', step: '1', inputmode: 'numeric', value: '1' });
    const prepay = h('input', { type: 'radio', name: 'payment_terms', value: 'prepay', id: 'terms-prepay', checked: true });
    const postpay = h('input', { type: 'radio', name: 'payment_terms', value: 'postpay', id: 'terms-postpay', disabled: !acct.postpay_allowed });
    const terms = h(
      'fieldset',
      { class: 'choice' },
      h('legend', null, 'Payment'),
      h('label', { for: 'terms-prepay' }, prepay, 'Prepay (pay the invoice, access at payment)'),
      h('label', { for: 'terms-postpay' }, postpay, 'Postpay (sign now, pay later)'),
      acct.postpay_allowed ? null : h('p', { class: 'form-note' }, 'Postpay is available only by agreement with the provider.'),
    );
    const promo = h('input', { type: 'text', name: 'promo_code', id: 'order-promo', maxlength: '64', autocomplete: 'off', spellcheck: 'false' });

    const licenseField = field('License', license);
    const tariffField = field('Tariff', tariff);
    const seatsField = field('Seats', seats, 'Seats of the new license.');
    const addField = field('Seats to add', addSeats);
    const form = h(
      'form',
      { class: 'stack', novalidate: true, id: 'order-form' },
      typeSet,
      typeHint,
      h('div', { class: 'form-grid' }, licenseField, tariffField, seatsField, addField),
      terms,
      h('div', { class: 'form-grid' }, field('Promo code', promo, 'Optional. Applied discounts show in the price.')),
      h('p', { class: 'form-note' }, `Ordered on the portal on ${date(today)}: for a prepaid top-up the rules count 7 days for processing.`),
    );

    // ---- the quote ----

    const quoteBody = h('div', { class: 'quote-figures', id: 'quote', 'aria-live': 'polite' });
    const place = h('button', { type: 'button', class: 'btn btn-primary', id: 'place-order', disabled: true }, 'Place order');
    const quoteCard = h(
      'section',
      { class: 'card quote-card', 'aria-labelledby': 'quote-heading' },
      h('h2', { id: 'quote-heading', class: 'section-title' }, 'Price'),
      quoteBody,
      h('div', { class: 'form-actions' }, place),
    );
    const result = h('div', { id: 'order-result' });

    replace(body, h('div', { class: 'order-layout' }, h('section', { class: 'card', 'aria-label': 'Order' }, form), quoteCard), result);

    function type() {
      return typeRadios.find((r) => r.checked).value;
    }

    // A tariff the admin picked is kept across order types; otherwise renewals default to the
    // license's own tariff ("Same tariff") and a purchase to the first in the catalogue.
    let tariffPicked = false;
    tariff.addEventListener('change', () => {
      tariffPicked = true;
    });

    function fillTariffs() {
      const t = type();
      const lot = active.find((l) => l.id === license.value);
      const keep = tariffPicked ? tariff.value : null;
      const options = [];
      if (t !== 'initial' && t !== 'top_up') {
        options.push(h('option', { value: '' }, lot ? `Same tariff (${tariffName(tariffs, lot.tariff)})` : 'Same tariff'));
      }
      for (const x of buyable.filter((x) => !(x.trial && t !== 'initial'))) {
        options.push(h('option', { value: x.code }, `${x.name} · ${money(x.price_per_seat)} per seat · ${x.term_months} months`));
      }
      replace(tariff, options);
      if ([...tariff.options].some((o) => o.value === keep)) tariff.value = keep;
    }

    function layout() {
      const t = type();
      typeHint.textContent = HINTS[t];
      licenseField.hidden = t === 'initial';
      tariffField.hidden = t === 'top_up';
      seatsField.hidden = !(t === 'initial' || t === 'renewal_with_reduction');
      addField.hidden = !(t === 'top_up' || t === 'renewal_with_top_up');
      fillTariffs();
    }

    function request() {
      const t = type();
      const req = { type: t, channel: 'portal', payment_terms: postpay.checked ? 'postpay' : 'prepay' };
      if (t !== 'initial') req.license_id = license.value;
      if (t !== 'top_up' && tariff.value) req.tariff = tariff.value;
      if (t === 'initial' || t === 'renewal_with_reduction') req.seats = Number(seats.value);
      if (t === 'top_up' || t === 'renewal_with_top_up') req.add_seats = Number(addSeats.value);
      if (promo.value.trim()) req.promo_code = promo.value.trim();
      return req;
    }

    function localProblem(req) {
      if (req.type !== 'initial' && !req.license_id) return 'There is no license valid today to renew or top up; choose Initial purchase.';
      if (req.type === 'initial' && !req.tariff) return 'Choose a tariff.';
      for (const k of ['seats', 'add_seats']) {
        if (k in req && !(Number.isInteger(req[k]) && req[k] >= 1)) return `${k === 'seats' ? 'Seats' : 'Seats to add'} must be a whole number of at least 1.`;
      }
      return null;
    }

    let current = null; // {req, quote} the Place order button would order
    let controller = null;
    let timer = null;
    let seq = 0;

    function schedule() {
      clearTimeout(timer);
      current = null;
      place.disabled = true;
      timer = setTimeout(runQuote, QUOTE_DELAY_MS);
    }

    async function runQuote() {
      const mine = ++seq;
      if (controller) controller.abort();
      const req = request();
      const problem = localProblem(req);
      if (problem) {
        replace(quoteBody, h('p', { class: 'notice notice-error refusal', role: 'alert' }, problem));
        return;
      }
      controller = new AbortController();
      quoteCard.setAttribute('aria-busy', 'true');
      if (!quoteBody.firstChild) loading(quoteBody, 'Calculating…');
      try {
        const quote = await ctx.api('POST', `/accounts/${account}/quotes`, req, { signal: controller.signal });
        if (mine !== seq) return;
        current = { req, quote };
        replace(quoteBody, renderQuote(quote));
        place.disabled = false;
      } catch (e) {
        if (e.name === 'AbortError' || mine !== seq) return;
        replace(quoteBody, renderRefusal(e));
      } finally {
        if (mine === seq) quoteCard.removeAttribute('aria-busy');
      }
    }

    function renderQuote(q) {
      return h(
        'div',
        null,
        h('p', { class: 'form-note' }, `${orderTypeLabel(q.type)} · ${tariffName(tariffs, q.tariff)} · start date ${date(q.start_date)}`),
        h('div', { class: 'quote-lines' }, q.lines.map((l) => renderLine(l))),
        q.discounts.length
          ? h(
              'div',
              { class: 'quote-discounts', id: 'quote-discounts' },
              h('h3', { class: 'section-title' }, 'Discounts'),
              h(
                'dl',
                { class: 'facts compact' },
                q.discounts.map((d) => [h('dt', null, `${d.name}${d.code ? ` (code ${d.code})` : ''}`), h('dd', null, `−${money(d.amount)}`)]),
              ),
            )
          : null,
        h('dl', { class: 'facts compact' }, h('dt', null, 'Subtotal'), h('dd', { id: 'quote-subtotal' }, money(q.subtotal))),
        h('p', { class: 'quote-total' }, h('span', { class: 'visually-hidden' }, 'Total: '), h('span', { id: 'quote-total' }, money(q.total))),
        h('p', { class: 'form-note' }, 'Without VAT (licenses are VAT-exempt).'),
      );
    }

    function renderLine(l) {
      const f = l.formula;
      const what = {
        initial: 'New license',
        renewal: 'Renewal',
        top_up: 'Added seats',
        renewal_with_reduction: 'Renewal with fewer seats',
      }[l.kind] || l.kind;
      return h(
        'div',
        { class: 'quote-line', 'data-kind': l.kind },
        h('h3', null, `${what}: ${plural(l.seats, 'seat', 'seats')}`),
        h('p', { class: 'form-note' }, `${date(l.starts_on)} – ${date(l.ends_on)} (the end date is the first day without access)`),
        f
          ? [
              h(
                'dl',
                { class: 'facts compact formula-inputs' },
                h('dt', null, 'B, price of a seat for the term'), h('dd', { 'data-formula': 'B' }, money(f.B)),
                h('dt', null, 'D1, end of the license'), h('dd', { 'data-formula': 'D1' }, date(f.D1)),
                h('dt', null, 'D2, start date'), h('dd', { 'data-formula': 'D2' }, date(f.D2)),
                h('dt', null, 'Processing days deducted'), h('dd', { 'data-formula': 'logistics_days' }, String(f.logistics_days)),
                h('dt', null, 'Days paid'), h('dd', { 'data-formula': 'days' }, String(f.days)),
                h('dt', null, 'Days in the term (basis)'), h('dd', { 'data-formula': 'basis' }, String(f.basis)),
              ),
              h(
                'p',
                { class: 'formula' },
                `days = D1 − D2${f.logistics_days ? ` − ${f.logistics_days}` : ''} = ${f.days}`,
                h('br'),
                `A = B × days / basis = ${money(f.B, '')}× ${f.days} / ${f.basis} = ${money(l.unit_price)}`,
              ),
            ]
          : null,
        h(
          'dl',
          { class: 'facts compact' },
          h('dt', null, f ? 'Price per seat (A)' : 'Price per seat'), h('dd', { class: 'line-unit' }, money(l.unit_price)),
          h('dt', null, 'Amount'), h('dd', { class: 'line-amount' }, `${l.seats} × ${money(l.unit_price)} = ${money(l.amount)}`),
        ),
      );
    }

    function renderRefusal(e) {
      const d = e.details || {};
      const facts = [];
      if (d.opens_on) facts.push(h('dt', null, 'Opens on'), h('dd', null, date(d.opens_on)));
      if (d.closed_on) facts.push(h('dt', null, 'Closed on'), h('dd', null, date(d.closed_on)));
      if (d.ended_on) facts.push(h('dt', null, 'License ended'), h('dd', null, date(d.ended_on)));
      const alt = d.alternative && TYPES.includes(d.alternative)
        ? h('button', { type: 'button', class: 'btn btn-small', onclick: () => switchTo(d.alternative) }, `Switch to ${orderTypeLabel(d.alternative).toLowerCase()}`)
        : null;
      const pending = d.order_id ? h('a', { href: '#/documents' }, 'See the unpaid invoice') : null;
      return h(
        'div',
        { class: 'notice notice-error refusal', role: 'alert', 'data-code': e.code || '' },
        h('p', { class: 'state-message' }, errorText(e)),
        facts.length ? h('dl', { class: 'facts compact' }, facts) : null,
        alt,
        pending,
      );
    }

    function switchTo(t) {
      const r = typeRadios.find((x) => x.value === t);
      if (!r) return;
      r.checked = true;
      layout();
      schedule();
      r.focus();
    }

    form.addEventListener('input', (ev) => {
      if (ev.target.name === 'type' || ev.target === license) layout();
      schedule();
    });
    form.addEventListener('change', (ev) => {
      if (ev.target.name === 'type' || ev.target === license) {
        layout();
        schedule();
      }
    });
    form.addEventListener('submit', (ev) => ev.preventDefault());

    place.addEventListener('click', async () => {
      if (!current) return;
      const { req, quote } = current;
      const key = idempotencyKey(); // one per order: a retry inside the dialog resends it
      let placed = null;
      const ok = await dialog({
        title: `Place the order for ${money(quote.total)}?`,
        body: h(
          'div',
          null,
          h('p', null, `${orderTypeLabel(quote.type)}, ${tariffName(tariffs, quote.tariff)}: ${quote.lines.map((l) => plural(l.seats, 'seat', 'seats')).join(' + ')}.`),
          h('p', null, req.payment_terms === 'postpay'
            ? 'An invoice is issued; sign the order to get access now and pay by the invoice’s due date.'
            : 'An invoice is issued; access is granted when its payment is registered. The price is fixed now.'),
        ),
        confirmLabel: 'Place order',
        onConfirm: async () => {
          placed = await ctx.api('POST', `/accounts/${account}/orders`, req, { headers: { 'Idempotency-Key': key } });
        },
      });
      if (!ok || !placed) return;
      showPlaced(placed);
    });

    function showPlaced(p) {
      const inv = p.invoice;
      const heading = h('h2', { class: 'section-title', tabindex: '-1' }, 'Order placed');
      const sign = h('button', { type: 'button', class: 'btn btn-primary' }, 'Sign the order');
      sign.addEventListener('click', async () => {
        const key = idempotencyKey();
        const ok = await dialog({
          title: 'Sign the order?',
          body: h('p', null, 'Signing grants access now; the invoice is then due by its payment date.'),
          confirmLabel: 'Sign',
          onConfirm: async () => {
            const s = await ctx.api('POST', `/accounts/${account}/orders/${p.order.id}/sign`, undefined, { headers: { 'Idempotency-Key': key } });
            note.textContent = `Signed on ${date(s.signed_on)}; pay by ${date(s.payment_due_on)}.`;
          },
        });
        if (ok) sign.hidden = true;
      });
      const note = h('p', { class: 'form-note', role: 'status' });
      replace(
        result,
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'placed-heading', id: 'order-placed' },
          heading,
          inv
            ? h(
                'div',
                null,
                h('p', { id: 'placed-invoice' }, `Invoice No. ${inv.number_text} of ${date(inv.issued_on)} for `, h('strong', null, money(inv.amount)), '.'),
                h(
                  'div',
                  { class: 'form-actions' },
                  h('a', { class: 'btn btn-primary', href: `#/documents/view?kind=invoice&id=${inv.id}`, id: 'open-invoice' }, 'Open the invoice'),
                  h('a', { class: 'btn', href: `#/payments?invoice=${inv.id}` }, 'How to pay'),
                  p.order.quote.payment_terms === 'postpay' ? sign : null,
                ),
                note,
              )
            : h('p', null, 'Nothing to pay: the license is granted already. ', h('a', { href: '#/lots' }, 'See your licenses'), '.'),
        ),
      );
      heading.id = 'placed-heading';
      heading.focus();
      current = null;
      place.disabled = true;
    }

    layout();
    runQuote();
  },
};
