// Asks for a password reset link. The server answers the same for every address, known or not, so
// the page does too: one neutral confirmation that never says whether the address has an account.

import { requestPasswordReset } from './api.js';
import { busy, safeNext, showError } from './account.js';

const $ = (s) => document.querySelector(s);
const form = $('#forgot-form');
const email = $('#email');
const error = $('#form-error');

const params = new URLSearchParams(location.search);
if (params.has('next')) {
  $('#sign-in-link').href = `/sign-in?next=${encodeURIComponent(safeNext(params.get('next')))}`;
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  showError(error, '');
  const address = email.value.trim();
  if (!address) return showError(error, 'Please enter your email address.', email);
  const done = busy(form, $('#submit'), 'Sending…');
  try {
    await requestPasswordReset(address);
  } catch (e) {
    // Only a transport failure or a malformed request gets here; the answer itself is always 202.
    done();
    return showError(error, e.message || String(e), email);
  }
  done();
  form.hidden = true;
  const sent = $('#sent-message');
  sent.textContent = `If ${address} belongs to a Parley account, a link to choose a new password is on its way. It works for one hour.`;
  $('#sent').hidden = false;
  sent.focus();
});
