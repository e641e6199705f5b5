// The landing page: who is signed in (with sign-out) or a sign-in link; create a meeting, hand out
// its invite link, open it as the host.

import { ApiError, createMeeting, getMe, signOut } from './api.js';

const $ = (s) => document.querySelector(s);

$('#create-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const title = $('#title').value.trim();
  const error = $('#create-error');
  error.textContent = '';
  if (!title) {
    error.textContent = 'Please give the meeting a title.';
    $('#title').focus();
    return;
  }
  const button = $('#create');
  button.disabled = true;
  button.textContent = 'Starting…';
  try {
    const m = await createMeeting(title);
    // Links may be absolute (PARLEY_PUBLIC_URL) or relative; show them absolute so they can be sent.
    const invite = new URL(m.invite_link, location.href).href;
    const host = new URL(m.host_link, location.href).href;
    $('#result-title').textContent = m.title || title;
    $('#invite-link').value = invite;
    $('#host-link').value = host;
    $('#open-host').href = host;
    $('#result').hidden = false;
    $('#result-heading').focus();
  } catch (e) {
    error.textContent = e.message || String(e);
  } finally {
    button.disabled = false;
    button.textContent = 'Start meeting';
  }
});

for (const btn of document.querySelectorAll('[data-copy]')) {
  btn.addEventListener('click', async () => {
    const input = document.getElementById(btn.dataset.copy);
    const status = $('#copy-status');
    try {
      await navigator.clipboard.writeText(input.value);
    } catch {
      // The async clipboard needs a secure context; the old API still works on plain http.
      input.select();
      if (!document.execCommand('copy')) {
        status.textContent = 'Copying is blocked here: select the link and copy it by hand.';
        return;
      }
    }
    status.textContent = btn.dataset.copy === 'invite-link' ? 'Invite link copied.' : 'Host link copied.';
  });
}

// ---- who is signed in ----

function showSignedIn(me) {
  const who = me.user.display_name || me.user.email;
  $('#signed-in-as').textContent = `Signed in as ${who} (${me.user.email}) · ${me.account.name}`;
  // The console is for the account's admins; members would only find a "not for you" page there.
  $('#admin-link').hidden = me.user.role !== 'account_admin';
  $('#account-loading').hidden = true;
  $('#signed-out').hidden = true;
  $('#signed-in').hidden = false;
}

function showSignedOut(note) {
  $('#session-note').textContent = note || '';
  $('#account-loading').hidden = true;
  $('#signed-in').hidden = true;
  $('#signed-out').hidden = false;
}

async function loadAccount() {
  try {
    showSignedIn(await getMe());
  } catch (e) {
    // 401: no session, or one that expired or was ended elsewhere (the server says which).
    const ended = e instanceof ApiError && ['session_expired', 'invalid_session'].includes(e.code);
    showSignedOut(ended ? e.message : e instanceof ApiError && e.status === 401 ? '' : e.message);
  }
}

$('#sign-out').addEventListener('click', async () => {
  const button = $('#sign-out');
  button.disabled = true;
  button.textContent = 'Signing out…';
  try {
    await signOut();
    showSignedOut('');
    $('#account-status').textContent = 'You are signed out.';
    $('#sign-in-link').focus();
  } catch (e) {
    $('#account-status').textContent = e.message || String(e);
  } finally {
    button.disabled = false;
    button.textContent = 'Sign out';
  }
});

loadAccount();
