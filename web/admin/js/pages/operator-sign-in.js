// The platform operator's sign-in: the operator token (PARLEY_ADMIN_TOKEN) is typed once and
// traded for an operator session; the token itself is not kept anywhere in the browser.

import { h, replace, pageHeader, busy, field, errorText } from '../ui.js';
import { SIGN_IN, signInWithToken } from './operator-kit.js';

const DEFAULT_NEXT = 'operator/accounts';

/** Only a console page of the operator section may be the way back (no other site, no script). */
function safeNext(raw) {
  const next = (raw || '').replace(/^#?\/?/, '');
  return /^operator\/[a-z0-9/_-]*(\?[A-Za-z0-9=&%._-]*)?$/.test(next) && !next.startsWith(SIGN_IN) ? next : DEFAULT_NEXT;
}

export default {
  path: SIGN_IN,
  title: 'Operator sign-in',
  section: 'operator',
  public: true,
  async render(ctx) {
    const next = safeNext(ctx.params.get('next'));
    const s = ctx.session();
    if (s.kind === 'operator') {
      replace(
        ctx.main,
        pageHeader('Operator sign-in'),
        h(
          'section',
          { class: 'card' },
          h('p', null, 'This tab is signed in as the platform operator.'),
          h('p', null, h('a', { class: 'btn btn-primary', href: `#/${next}` }, 'Continue to the operator pages')),
        ),
      );
      return;
    }
    const token = h('input', {
      type: 'password',
      name: 'operator-token',
      required: true,
      autocomplete: 'off',
      spellcheck: 'false',
      autocapitalize: 'off',
    });
    const error = h('p', { class: 'form-error', role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Sign in');
    const form = h(
      'form',
      { class: 'card', novalidate: true },
      field(
        'Operator token',
        token,
        'The server’s PARLEY_ADMIN_TOKEN. It is exchanged for a session that ends after 30 idle minutes or 8 hours; the token itself is not stored in this browser.',
      ),
      error,
      h('div', { class: 'form-actions' }, submit),
    );
    const ended = ctx.params.get('ended')
      ? h('p', { class: 'notice', role: 'status' }, 'Your operator session has ended. Sign in again to continue.')
      : null;
    replace(ctx.main, pageHeader('Operator sign-in', 'For the platform operator: tariffs, promotions, accounts, payments, and the node.'), ended, form);

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      const value = token.value.trim();
      if (!value) {
        token.setAttribute('aria-invalid', 'true');
        error.textContent = 'Enter the operator token.';
        token.focus();
        return;
      }
      token.removeAttribute('aria-invalid');
      const done = busy(submit, 'Signing in…');
      try {
        await signInWithToken(value);
        // Nothing of the token stays in the page.
        token.value = '';
        ctx.navigate(`#/${next}`);
      } catch (e) {
        done();
        token.setAttribute('aria-invalid', 'true');
        error.textContent = errorText(e);
        token.select();
        token.focus();
      }
    });
    token.focus();
  },
};
