// The page of the emailed reset link (`/reset-password#token=rst_…`): a new password, typed twice.
// The server checks the rules and the token; on success every session of the user has ended, so
// the person signs in again with the new password.

import { confirmPasswordReset } from './api.js';
import { busy, showError, takeLinkToken } from './account.js';

const $ = (s) => document.querySelector(s);
const token = takeLinkToken('rst_');
const form = $('#reset-form');
const password = $('#password');
const password2 = $('#password2');
const error = $('#form-error');

if (!token) {
  $('#no-link').hidden = false;
} else {
  form.hidden = false;
  password.focus();
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  showError(error, '');
  $('#new-link').hidden = true;
  if (!password.value) return showError(error, 'Please choose a new password.', password);
  if (password.value !== password2.value) {
    return showError(error, 'The two passwords are not the same.', password2);
  }
  const done = busy(form, $('#submit'), 'Changing password…');
  try {
    await confirmPasswordReset(token, password.value);
    location.assign('/sign-in?password=changed');
  } catch (e) {
    done();
    if (e.code === 'invalid_token') {
      // Used, replaced by a newer link, or older than an hour: only a new link helps.
      $('#new-link').hidden = false;
      showError(error, e.message);
    } else {
      showError(error, e.message || String(e), password);
    }
  }
});
