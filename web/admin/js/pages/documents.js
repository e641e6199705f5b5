// Documents: invoices, transfer documents (UPD or act) and corrective invoices. Each can be
// viewed in its printable form, printed and downloaded; a transfer document not yet accepted
// can be objected to with reasons (which opens a dispute, 3.2.6).

import { h, replace, table, pager, dialog, field, money, date, pageHeader, statusLine } from '../ui.js';
import { apiText } from '../api.js';
import { accountOf, documentStatusBadge, invoiceStatusBadge, serverPages } from '../licensing.js';

/** Where each kind of document lives under the account, and what it is called. */
export const KINDS = {
  invoice: { path: 'invoices', name: 'Invoice' },
  document: { path: 'documents', name: 'Transfer document' },
  corrective: { path: 'corrective-invoices', name: 'Corrective invoice' },
};

/** Saves the printable HTML of a document as a file. */
export async function download(ctx, account, kind, row) {
  const html = await apiText(`/accounts/${account}/${KINDS[kind].path}/${row.id}.html`);
  const blob = new Blob([html], { type: 'text/html;charset=utf-8' });
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: `${kind}-${row.number_text}.html`, class: 'visually-hidden' }, 'download');
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Asks for the reasons of an objection and sends it; resolves to the disputed document or null. */
export async function object(ctx, account, doc) {
  const reason = h('textarea', { name: 'reason', maxlength: '2000', required: true, rows: '5' });
  let updated = null;
  const ok = await dialog({
    title: `Object to ${doc.kind === 'upd' ? 'UPD' : 'act'} No. ${doc.number_text}`,
    body: h(
      'div',
      { class: 'stack' },
      h('p', null, `Without a reasoned objection the document is accepted automatically after ${date(doc.accept_by)}. An objection opens a dispute with the provider.`),
      field('Reasons', reason, 'What is wrong with the document, 1 to 2000 characters.'),
    ),
    confirmLabel: 'Send objection',
    danger: true,
    onConfirm: async () => {
      if (!reason.value.trim()) {
        reason.setAttribute('aria-invalid', 'true');
        throw new Error('Please give the reasons for the objection.');
      }
      updated = await ctx.api('POST', `/accounts/${account}/documents/${doc.id}/objection`, { reason: reason.value.trim() });
    },
  });
  return ok ? updated : null;
}

function docButtons(ctx, account, kind, row, status) {
  const dl = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Download ${KINDS[kind].name.toLowerCase()} ${row.number_text}` }, 'Download');
  dl.addEventListener('click', async () => {
    try {
      status.textContent = '';
      await download(ctx, account, kind, row);
    } catch (e) {
      status.textContent = e.message;
    }
  });
  return [
    h('a', { class: 'btn btn-small', href: `#/documents/view?kind=${kind}&id=${row.id}`, 'aria-label': `View ${KINDS[kind].name.toLowerCase()} ${row.number_text}` }, 'View'),
    dl,
  ];
}

export default {
  path: 'documents',
  title: 'Documents',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const status = statusLine();

    const invoices = pager({
      label: 'Invoices',
      load: serverPages(ctx.api, `/accounts/${account}/invoices`),
      render: (rows) =>
        table({
          caption: 'Invoices',
          hideCaption: true,
          empty: 'No invoices yet.',
          rows,
          columns: [
            { label: 'No.', value: (r) => r.number_text },
            { label: 'Issued', value: (r) => date(r.issued_on) },
            { label: 'Amount', align: 'right', value: (r) => money(r.amount) },
            { label: 'VAT', value: (r) => (r.vat === 'exempt' ? 'Without VAT' : '20 %') },
            { label: 'Status', value: (r) => invoiceStatusBadge(r.status) },
            { label: 'Due', value: (r) => (r.due_on ? date(r.due_on) : '—') },
            { label: 'Actions', value: (r) => h('div', { class: 'row-actions' }, docButtons(ctx, account, 'invoice', r, status)) },
          ],
        }),
    });

    const documents = pager({
      label: 'Transfer documents',
      load: serverPages(ctx.api, `/accounts/${account}/documents`),
      render: (rows) =>
        table({
          caption: 'Transfer documents',
          hideCaption: true,
          empty: 'No transfer documents yet: one is made for each paid order.',
          rows,
          columns: [
            { label: 'Document', value: (r) => `${r.kind === 'upd' ? 'UPD' : 'Act'} No. ${r.number_text}` },
            { label: 'Issued', value: (r) => date(r.issued_on) },
            { label: 'Access from', value: (r) => date(r.grant_date) },
            { label: 'Amount', align: 'right', value: (r) => money(r.amount) },
            { label: 'Status', value: (r) => h('span', null, documentStatusBadge(r.status), r.status === 'sent' ? h('span', { class: 'hint' }, ` accepted after ${date(r.accept_by)}`) : null) },
            {
              label: 'Actions',
              value: (r) => {
                const buttons = docButtons(ctx, account, 'document', r, status);
                if (r.status === 'sent') {
                  buttons.push(
                    h('button', {
                      type: 'button',
                      class: 'btn btn-small',
                      'aria-label': `Object to document ${r.number_text}`,
                      onclick: async () => {
                        const d = await object(ctx, account, r);
                        if (d) {
                          status.textContent = `Your objection to No. ${d.number_text} is sent; the document is disputed.`;
                          documents.reload();
                        }
                      },
                    }, 'Object'),
                  );
                }
                return h('div', { class: 'row-actions' }, buttons);
              },
            },
          ],
        }),
    });

    const correctives = pager({
      label: 'Corrective invoices',
      load: serverPages(ctx.api, `/accounts/${account}/corrective-invoices`),
      render: (rows) =>
        table({
          caption: 'Corrective invoices',
          hideCaption: true,
          empty: 'No corrective invoices: they appear when a discount is granted after payment.',
          rows,
          columns: [
            { label: 'No.', value: (r) => r.number_text },
            { label: 'Issued', value: (r) => date(r.issued_on) },
            { label: 'Before', align: 'right', value: (r) => money(r.before) },
            { label: 'After', align: 'right', value: (r) => money(r.after) },
            { label: 'Difference', align: 'right', value: (r) => money(r.difference) },
            { label: 'Reason', value: (r) => r.reason },
            { label: 'Actions', value: (r) => h('div', { class: 'row-actions' }, docButtons(ctx, account, 'corrective', r, status)) },
          ],
        }),
    });

    replace(
      ctx.main,
      pageHeader('Documents', 'Invoices, transfer documents and corrective invoices: view, print or download them.'),
      status,
      h('section', { class: 'card', 'aria-labelledby': 'inv-h' }, h('h2', { id: 'inv-h', class: 'section-title' }, 'Invoices'), invoices),
      h('section', { class: 'card', 'aria-labelledby': 'doc-h' }, h('h2', { id: 'doc-h', class: 'section-title' }, 'Transfer documents (UPD, act)'), documents),
      h('section', { class: 'card', 'aria-labelledby': 'cor-h' }, h('h2', { id: 'cor-h', class: 'section-title' }, 'Corrective invoices'), correctives),
    );
  },
};
