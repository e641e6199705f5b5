// The sign-in page: email and password; on success the session cookie is set and the browser goes
// to `?next=` (a path on this site only) or the landing page. The server's refusals are shown as
// they come: a wrong email or password, a lockout with the time it ends.

import { ApiError, getMe, signIn } from './api.js';
import { busy, safeNext, showError } from './account.js';

const $ = (s) => document.querySelector(s);
const params = new URLSearchParams(location.search);
const next = safeNext(params.get('next'));

const form = $('#sign-in-form');
const email = $('#email');
const password = $('#password');
const error = $('#form-error');

function notice(text) {
  const el = $('#notice');
  el.textContent = text;
  el.hidden = !text;
}

// The forgot-password page can come back here after a reset; keep the destination.
if (params.has('next')) $('#forgot-link').href = `/forgot-password?next=${encodeURIComponent(next)}`;
if (params.get('password') === 'changed') {
  notice('Your password has been changed. Sign in with the new one.');
}

// Tell an expired session apart from a first visit, and do not make a signed-in person sign in twice.
getMe().then(
  (me) => {
    const who = me.user.display_name || me.user.email;
    notice(`You are already signed in as ${who}.`);
    const link = document.createElement('a');
    link.href = next;
    link.textContent = 'Continue';
    link.className = 'notice-action';
    $('#notice').append(' ', link);
  },
  (e) => {
    if (e instanceof ApiError && e.code === 'session_expired') notice(e.message);
  },
);

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  showError(error, '');
  if (!email.value.trim()) return showError(error, 'Please enter your email address.', email);
  if (!password.value) return showError(error, 'Please enter your password.', password);
  const done = busy(form, $('#submit'), 'Signing in…');
  try {
    await signIn(email.value.trim(), password.value);
    location.assign(next);
    return; // stays busy while the next page loads
  } catch (e) {
    // 401 wrong email or password, 429 locked (the message says until when), 422 not an email.
    const field = e.code === 'invalid_email' ? email : e.code === 'account_locked' ? null : password;
    done();
    showError(error, e.message || String(e), field);
  }
});
