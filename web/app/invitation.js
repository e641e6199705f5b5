// The page of the emailed invitation link (`/invitation#token=inv_…`): says which account invited
// whom, then takes a name and a password. Accepting signs the person in (the server sets the
// session cookie) and the landing page greets them.

import { acceptInvitation, previewInvitation } from './api.js';
import { busy, formatWhen, showError, takeLinkToken } from './account.js';

const $ = (s) => document.querySelector(s);
const token = takeLinkToken('inv_');
const form = $('#accept-form');
const name = $('#display-name');
const password = $('#password');
const password2 = $('#password2');
const error = $('#form-error');
const status = $('#invitation-status');

function invalid(message) {
  status.textContent = '';
  form.hidden = true;
  $('#invalid-message').textContent = message;
  $('#invalid').hidden = false;
}

async function load() {
  if (!token) {
    invalid('This page opens from the link in the invitation email. The link is missing or incomplete.');
    return;
  }
  let invitation;
  try {
    invitation = await previewInvitation(token);
  } catch (e) {
    invalid(e.message || String(e));
    return;
  }
  $('#invited-by').textContent = `${invitation.account_name} invited you to Parley.`;
  $('#invited-email').textContent = invitation.email;
  $('#invited-until').textContent = formatWhen(invitation.expires_at);
  status.textContent = `Invitation from ${invitation.account_name} for ${invitation.email}.`;
  status.classList.add('visually-hidden'); // the same facts are on screen just below
  form.hidden = false;
  name.focus();
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  showError(error, '');
  if (!name.value.trim()) return showError(error, 'Please enter your name.', name);
  if (!password.value) return showError(error, 'Please choose a password.', password);
  if (password.value !== password2.value) {
    return showError(error, 'The two passwords are not the same.', password2);
  }
  const done = busy(form, $('#submit'), 'Accepting…');
  try {
    await acceptInvitation(token, password.value, name.value.trim());
    location.assign('/');
  } catch (e) {
    done();
    if (e.code === 'invalid_token') return invalid(e.message);
    const field = e.code === 'invalid_display_name' ? name : password;
    showError(error, e.message || String(e), field);
  }
});

load();
