// One document in its printable form (the server's HTML in a frame), with Print and Download,
// and for a transfer document not yet accepted, Object.

import { h, replace, loading, showError, money, date, pageHeader, statusLine } from '../ui.js';
import { apiText } from '../api.js';
import { accountOf, documentStatusBadge, invoiceStatusBadge } from '../licensing.js';
import { KINDS, download, object } from './documents.js';

export default {
  path: 'documents/view',
  title: 'Document',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const kind = ctx.params.get('kind');
    const id = ctx.params.get('id') || '';
    const box = h('div');
    replace(ctx.main, box);
    if (!KINDS[kind] || !/^[0-9a-f-]{36}$/i.test(id)) {
      replace(box, pageHeader('Document not found'), h('p', null, h('a', { href: '#/documents' }, 'Back to documents')));
      return;
    }
    const base = `/accounts/${account}/${KINDS[kind].path}/${id}`;
    loading(box, 'Loading the document…');
    let doc;
    try {
      doc = await ctx.api('GET', base, undefined, { signal: ctx.signal });
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(box, pageHeader(KINDS[kind].name), h('div'));
      showError(box.lastChild, e, () => ctx.navigate(`#/documents/view?kind=${kind}&id=${id}`));
      return;
    }
    const title = kind === 'document' ? `${doc.kind === 'upd' ? 'UPD' : 'Act'} No. ${doc.number_text}` : `${KINDS[kind].name} No. ${doc.number_text}`;
    document.title = `${title} · Parley admin`;
    const status = statusLine();
    // An admin's cookie opens the printable page directly. The operator's token cannot travel
    // in a frame's request, so the page is fetched with it and shown as the frame's document.
    const operator = ctx.session.kind === 'operator';
    const frame = h('iframe', { class: 'doc-frame', title, id: 'doc-frame', sandbox: operator ? 'allow-same-origin allow-modals' : null });
    if (operator) {
      apiText(`${base}.html`, { signal: ctx.signal }).then(
        (html) => {
          frame.srcdoc = html;
        },
        (e) => {
          if (e.name !== 'AbortError') status.textContent = e.message;
        },
      );
    } else {
      frame.src = `/api/v1${base}.html`;
    }
    const print = h('button', { type: 'button', class: 'btn btn-primary' }, 'Print');
    print.addEventListener('click', () => {
      try {
        frame.contentWindow.focus();
        frame.contentWindow.print();
      } catch {
        status.textContent = 'The document could not be printed from here; download it and print the file.';
      }
    });
    const dl = h('button', { type: 'button', class: 'btn' }, 'Download');
    dl.addEventListener('click', async () => {
      try {
        await download(ctx, account, kind, doc);
        status.textContent = 'Downloaded.';
      } catch (e) {
        status.textContent = e.message;
      }
    });
    const actions = [print, dl];
    if (kind === 'document' && doc.status === 'sent') {
      const obj = h('button', { type: 'button', class: 'btn' }, 'Object');
      obj.addEventListener('click', async () => {
        const d = await object(ctx, account, doc);
        if (d) ctx.navigate(`#/documents/view?kind=${kind}&id=${id}`);
      });
      actions.push(obj);
    }
    const facts = [];
    if (kind === 'invoice') {
      facts.push(['Issued', date(doc.issued_on)], ['Amount', money(doc.amount)], ['Status', invoiceStatusBadge(doc.status)]);
      if (doc.due_on) facts.push(['Due', date(doc.due_on)]);
    } else if (kind === 'document') {
      facts.push(['Issued', date(doc.issued_on)], ['Access from', date(doc.grant_date)], ['Amount', money(doc.amount)], ['Status', documentStatusBadge(doc.status)]);
      if (doc.status === 'sent') facts.push(['Accepted automatically after', date(doc.accept_by)]);
      if (doc.objection) facts.push(['Objection', doc.objection]);
    } else {
      facts.push(['Issued', date(doc.issued_on)], ['Before', money(doc.before)], ['After', money(doc.after)], ['Difference', money(doc.difference)], ['Reason', doc.reason]);
    }
    replace(
      box,
      pageHeader(title, null, ...actions),
      h('p', null, h('a', { href: '#/documents' }, '← All documents'), kind === 'invoice' && doc.status === 'issued' ? [' · ', h('a', { href: `#/payments?invoice=${doc.id}` }, 'How to pay this invoice')] : null),
      status,
      h('div', { class: 'card' }, h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]))),
      frame,
    );
  },
};
