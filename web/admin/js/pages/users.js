// Users & invitations: the account's people, inviting someone by email (the server mails the
// link), changing a role, disabling and re-enabling. Refusals come in the server's words.

import { h, replace, table, pager, dialog, field, busy, dateTime, pageHeader, statusLine, errorText } from '../ui.js';
import { accountOf, roleLabel, serverPages, userStatusBadge } from '../licensing.js';

export default {
  path: 'users',
  title: 'Users & invitations',
  section: 'account',
  async render(ctx) {
    const account = accountOf(ctx);
    const me = ctx.session.me;
    const status = statusLine();

    const email = h('input', { type: 'email', name: 'email', maxlength: '254', required: true, autocomplete: 'off' });
    const name = h('input', { type: 'text', name: 'display_name', maxlength: '64', autocomplete: 'off' });
    const role = h('select', { name: 'role' }, h('option', { value: 'member' }, 'Member'), h('option', { value: 'account_admin' }, 'Account admin'));
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Send invitation');
    const formError = h('p', { class: 'form-error', role: 'alert' });
    const form = h(
      'form',
      { class: 'stack', novalidate: true },
      h('div', { class: 'form-grid' }, field('Email', email), field('Name', name, 'Optional; they can change it when accepting.'), field('Role', role)),
      h('div', { class: 'form-actions' }, submit),
      formError,
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      formError.textContent = '';
      email.removeAttribute('aria-invalid');
      if (!email.value.trim()) {
        formError.textContent = 'Please enter the email address to invite.';
        email.setAttribute('aria-invalid', 'true');
        email.focus();
        return;
      }
      const done = busy(submit, 'Sending…');
      try {
        const body = { email: email.value.trim(), role: role.value };
        if (name.value.trim()) body.display_name = name.value.trim();
        const r = await ctx.api('POST', `/accounts/${account}/invitations`, body);
        status.textContent = `Invitation sent to ${r.user.email}; the link works until ${dateTime(r.invitation_expires_at)}.`;
        form.reset();
        list.reset();
        email.focus();
      } catch (e) {
        formError.textContent = errorText(e);
        if (['invalid_email', 'email_taken'].includes(e.code)) {
          email.setAttribute('aria-invalid', 'true');
          email.focus();
        }
      } finally {
        done();
      }
    });

    async function change(row, patch, title, text, label, danger) {
      const ok = await dialog({
        title,
        body: h('p', null, text),
        confirmLabel: label,
        danger,
        onConfirm: () => ctx.api('PATCH', `/accounts/${account}/users/${row.user.id}`, patch),
      });
      if (ok) {
        status.textContent = `${row.user.email}: saved.`;
        list.reload();
      }
    }

    async function resend(row) {
      const ok = await dialog({
        title: `Send a new invitation to ${row.user.email}?`,
        body: h('p', null, 'A fresh link is mailed; the old one stops working.'),
        confirmLabel: 'Send again',
        onConfirm: () =>
          ctx.api('POST', `/accounts/${account}/invitations`, { email: row.user.email, role: row.user.role, display_name: row.user.display_name }),
      });
      if (ok) status.textContent = `A new invitation went to ${row.user.email}.`;
    }

    function actions(r) {
      const u = r.user;
      const self = me && me.user && me.user.id === u.id;
      const who = u.email;
      const out = [];
      if (u.status === 'invited') {
        out.push(h('button', { type: 'button', class: 'btn btn-small', onclick: () => resend(r), 'aria-label': `Send a new invitation to ${who}` }, 'Resend invitation'));
      }
      if (!self) {
        out.push(
          u.role === 'member'
            ? h('button', { type: 'button', class: 'btn btn-small', onclick: () => change(r, { role: 'account_admin' }, `Make ${who} an account admin?`, 'Admins manage licenses, seats, users and integrations of the account.', 'Make admin'), 'aria-label': `Make ${who} an admin` }, 'Make admin')
            : h('button', { type: 'button', class: 'btn btn-small', onclick: () => change(r, { role: 'member' }, `Make ${who} a member?`, 'They keep their seat and meetings, but can no longer manage the account.', 'Make member'), 'aria-label': `Make ${who} a member` }, 'Make member'),
        );
        if (u.status === 'active') {
          out.push(h('button', { type: 'button', class: 'btn btn-small', onclick: () => change(r, { status: 'disabled' }, `Disable ${who}?`, 'They are signed out everywhere and cannot sign in. Their seat stays until you reclaim it on the Seats page.', 'Disable', true), 'aria-label': `Disable ${who}` }, 'Disable'));
        } else if (u.status === 'disabled') {
          out.push(h('button', { type: 'button', class: 'btn btn-small', onclick: () => change(r, { status: 'active' }, `Enable ${who} again?`, 'They can sign in again with their password.', 'Enable'), 'aria-label': `Enable ${who}` }, 'Enable'));
        }
      } else {
        out.push(h('span', { class: 'hint' }, 'You'));
      }
      return h('div', { class: 'row-actions' }, out);
    }

    const list = pager({
      label: 'Users',
      load: serverPages(ctx.api, `/accounts/${account}/users`, { order: 'newest' }),
      render: (rows) =>
        table({
          caption: 'Users of the account',
          hideCaption: true,
          empty: 'No users yet: invite someone above.',
          rows,
          columns: [
            { label: 'Name', value: (r) => r.user.display_name || '—' },
            { label: 'Email', value: (r) => r.user.email },
            { label: 'Role', value: (r) => roleLabel(r.user.role) },
            { label: 'Status', value: (r) => userStatusBadge(r.user.status) },
            { label: 'Seat', value: (r) => (r.seat_lot_id ? 'Yes' : h('a', { href: '#/seats' }, 'No seat')) },
            { label: 'Last sign-in', value: (r) => (r.user.last_sign_in_at ? dateTime(r.user.last_sign_in_at) : 'Never') },
            { label: 'Actions', value: actions },
          ],
        }),
    });

    replace(
      ctx.main,
      pageHeader('Users & invitations', 'Invite the people of your account and choose who manages it.'),
      h('section', { class: 'card', 'aria-labelledby': 'invite-heading' }, h('h2', { id: 'invite-heading', class: 'section-title' }, 'Invite by email'), form),
      h('section', { class: 'card', 'aria-labelledby': 'users-heading' }, h('h2', { id: 'users-heading', class: 'section-title' }, 'People'), status, list),
    );
  },
};
