// The landing page: create a meeting, hand out its invite link, open it as the host.

import { createMeeting } from './api.js';

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
