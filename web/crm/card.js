// The deal card: a CRM shows it in an iframe for one deal. The server opened a card session at
// launch and put its token in a <meta> tag (third-party iframes over http get no cookies), so
// every call here sends it as a bearer. No build step: plain ES module.

const token = document.querySelector('meta[name="parley-card-token"]')?.content ?? '';
const $ = (id) => document.getElementById(id);

const state = { deal: null, current: null, invited: [] };

/** Calls the card API; throws an Error whose message is the server's sentence for a person. */
async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (token && !token.startsWith('__')) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(`/api/v1/crm/card/${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch {
    throw Object.assign(new Error('Parley cannot be reached; check your connection and try again.'), { code: 'network' });
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const message = data?.error?.message || `The request failed (HTTP ${res.status}).`;
    throw Object.assign(new Error(message), { code: data?.error?.code || `http_${res.status}` });
  }
  return data;
}

/** Adds invited contacts to the meeting with its host key (the card's user created it). */
async function addContacts(meeting, people) {
  let res;
  try {
    res = await fetch(`/api/v1/meetings/${encodeURIComponent(meeting.id)}/contacts`, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json', Authorization: `Bearer ${meeting.host_key}` },
      body: JSON.stringify({ contacts: people }),
    });
  } catch {
    throw Object.assign(new Error('Parley cannot be reached; check your connection and try again.'), { code: 'network' });
  }
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    throw Object.assign(new Error(data?.error?.message || `The contacts could not be added (HTTP ${res.status}).`), {
      code: data?.error?.code || `http_${res.status}`,
    });
  }
  return res.json();
}

function showError(e) {
  const box = $('error');
  box.textContent = '';
  const p = document.createElement('p');
  p.textContent = e.message;
  box.append(p);
  box.dataset.code = e.code || '';
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

function say(text) {
  $('status').textContent = text;
}

function setBusy(busy) {
  for (const id of ['start-now', 'schedule']) $(id).disabled = busy || !state.deal;
  $('invite-contacts').disabled = busy || !state.deal || !selectedContacts().length;
  document.querySelector('main').setAttribute('aria-busy', busy ? 'true' : 'false');
}

const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const when = (iso) => (iso ? fmt.format(new Date(iso)) : '');

function duration(seconds) {
  if (seconds == null) return '';
  const h = Math.floor(seconds / 3600);
  const m = Math.round((seconds % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min`;
}

function renderDeal(deal) {
  $('deal-title').textContent = deal.title;
  const src = { crm: '', unavailable: ' · CRM not connected: contacts unavailable', error: ' · the CRM could not be read' };
  $('deal-meta').textContent = `Deal ${deal.deal_id} · you are ${deal.user.display_name || 'signed in'}${src[deal.source] ?? ''}`;
  const list = $('contacts');
  list.textContent = '';
  const people = deal.contacts.flatMap((c) => (c.emails.length ? [{ name: c.name, email: c.emails[0] }] : []));
  $('contacts-empty').hidden = people.length > 0;
  $('contacts-fieldset').hidden = people.length === 0;
  people.forEach((p, i) => {
    const li = document.createElement('li');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.id = `contact-${i}`;
    box.value = p.email;
    box.dataset.name = p.name;
    box.checked = true;
    box.addEventListener('change', () => setBusy(false));
    const label = document.createElement('label');
    label.htmlFor = box.id;
    label.textContent = ` ${p.name} <${p.email}>`;
    li.append(box, label);
    list.append(li);
  });
}

function selectedContacts() {
  return [...document.querySelectorAll('#contacts input:checked')].map((b) => ({ name: b.dataset.name, email: b.value }));
}

/** 75 → "1 min 15 s", 3725 → "1 h 02 min": a summary's durations, to the second when short. */
function clock(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h) return `${h} h ${String(m).padStart(2, '0')} min`;
  return m ? `${m} min ${s} s` : `${s} s`;
}

/** Chat lines shown in the card; the whole chat is in the summary email and the CRM note. */
const CHAT_EXCERPT = 5;

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

/** The summary of a past meeting, as the API gives it, inside `box`. */
function renderSummary(box, s) {
  box.textContent = '';
  const share = s.talk_ratio.rep_share;
  const ratio =
    share == null ? 'Nobody spoke.' : `Talk ratio: rep ${Math.round(share * 100)}% / client ${100 - Math.round(share * 100)}%`;
  box.append(
    el('h3', { className: 'summary-title', textContent: s.title }),
    el('p', { className: 'muted', textContent: `${when(s.started_at)} – ${when(s.ended_at)} · ${clock(s.duration_secs)}` }),
    el('p', { className: 'summary-ratio', textContent: ratio }),
  );
  const people = el('ul', { className: 'plain summary-participants' });
  for (const p of s.participants) {
    const li = el('li', { className: 'summary-participant' });
    Object.assign(li.dataset, { name: p.name, side: p.side, talkSecs: String(p.talk_time_secs) });
    li.append(el('strong', { textContent: p.name }), ` (${p.side}) · talked ${clock(p.talk_time_secs)}`);
    people.append(li);
  }
  box.append(el('h4', { textContent: 'Participants' }), people);
  if (s.chat.length) {
    const chat = el('ul', { className: 'plain summary-chat' });
    for (const c of s.chat.slice(0, CHAT_EXCERPT)) {
      chat.append(el('li', {}, el('span', { className: 'muted', textContent: `${when(c.at)} ` }), el('strong', { textContent: `${c.from}: ` }), c.text));
    }
    if (s.chat.length > CHAT_EXCERPT) chat.append(el('li', { className: 'muted', textContent: `… and ${s.chat.length - CHAT_EXCERPT} more` }));
    box.append(el('h4', { textContent: 'Chat' }), chat);
  }
  if (s.recording_url) {
    box.append(el('p', {}, el('a', { href: s.recording_url, target: '_blank', rel: 'noopener noreferrer', textContent: 'Recording' })));
  }
}

/** The "Summary" button of a past meeting: loads the summary with the card session, shows it. */
function summaryToggle(m, li) {
  const box = el('div', { className: 'summary', id: `summary-${m.id}`, hidden: true });
  box.setAttribute('aria-live', 'polite');
  const button = el('button', { type: 'button', className: 'summary-toggle', textContent: 'Summary' });
  button.setAttribute('aria-expanded', 'false');
  button.setAttribute('aria-controls', box.id);
  let loaded = false;
  button.addEventListener('click', async () => {
    if (loaded) {
      box.hidden = !box.hidden;
      button.setAttribute('aria-expanded', String(!box.hidden));
      return;
    }
    button.disabled = true;
    box.hidden = false;
    box.textContent = 'Loading the summary…';
    try {
      renderSummary(box, await api(`meetings/${encodeURIComponent(m.id)}/summary`));
      loaded = true;
      button.setAttribute('aria-expanded', 'true');
    } catch (e) {
      box.textContent = '';
      box.append(el('p', { className: 'error', textContent: e.message }));
    } finally {
      button.disabled = false;
    }
  });
  li.append(' ', button, box);
}

function renderPast(meetings) {
  const list = $('past');
  list.textContent = '';
  $('past-empty').hidden = meetings.length > 0;
  for (const m of meetings) {
    const li = document.createElement('li');
    li.className = 'past-meeting';
    li.dataset.meetingId = m.id;
    const title = document.createElement('strong');
    title.textContent = m.title;
    const info = document.createElement('div');
    info.className = 'muted';
    const parts = [];
    if (m.started_at) parts.push(`${when(m.started_at)}${m.ended_at ? ` – ${when(m.ended_at)}` : ' (running)'}`);
    else if (m.scheduled_start) parts.push(`scheduled ${when(m.scheduled_start)}`);
    else parts.push(`created ${when(m.created_at)}`);
    if (m.duration_seconds != null) parts.push(duration(m.duration_seconds));
    info.textContent = parts.join(' · ');
    li.append(title, info);
    for (const [key, label] of [['recording_url', 'Recording'], ['invite_link', 'Invite link']]) {
      if (!m[key]) continue;
      const a = document.createElement('a');
      a.href = m[key];
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.textContent = label;
      li.append(' ', a);
    }
    // The summary API wants the card session, which a plain link would not send: shown here.
    if (m.summary_url) summaryToggle(m, li);
    list.append(li);
  }
}

async function refreshPast() {
  const { meetings } = await api('meetings');
  renderPast(meetings);
}

function showLinks(created) {
  state.current = created;
  $('host-link').value = created.host_link;
  $('invite-link').value = created.invite_link;
  $('open-host').href = created.host_link;
  $('links').hidden = false;
}

async function create(body, doneText) {
  clearError();
  setBusy(true);
  say('Creating the meeting…');
  try {
    const created = await api('meetings', { method: 'POST', body });
    showLinks(created);
    say(doneText);
    $('host-link').focus();
    await refreshPast().catch(() => {});
  } catch (e) {
    say('');
    showError(e);
  } finally {
    setBusy(false);
  }
}

/** Clipboard API first; in frames without the clipboard-write permission, select-and-copy. */
async function copy(text, field) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = field ?? Object.assign(document.createElement('textarea'), { value: text });
    if (!field) document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    if (!field) area.remove();
    return ok;
  }
}

async function copyWithMessage(text, field) {
  const ok = await copy(text, field);
  say(ok ? 'Copied to the clipboard.' : 'Copying is blocked here: the text is selected, press Ctrl+C (⌘C).');
  if (!ok && field) field.select();
}

function wire() {
  $('start-now').addEventListener('click', () => create({}, 'The meeting is ready: open it or share the links.'));
  $('schedule-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = $('schedule-at').value;
    const at = value ? new Date(value) : null;
    if (!at || Number.isNaN(at.getTime())) {
      showError({ message: 'Choose a date and time for the meeting.', code: 'invalid_date' });
      $('schedule-at').focus();
      return;
    }
    create({ scheduled_start: at.toISOString() }, `Scheduled for ${when(at.toISOString())}.`);
  });
  $('copy-links').addEventListener('click', () => {
    if (!state.current) return;
    copyWithMessage(`Host: ${state.current.host_link}\nGuests: ${state.current.invite_link}`, null);
  });
  $('invite-contacts').addEventListener('click', async () => {
    clearError();
    if (!state.current) {
      showError({ message: 'Start or schedule a meeting first; then its invite link can be sent.', code: 'no_meeting' });
      return;
    }
    const people = selectedContacts();
    setBusy(true);
    try {
      // The meeting keeps its invited contacts: they get the summary by email when it ends
      // (if the account's tariff sends results to recipients).
      await addContacts(state.current, people);
    } catch (e) {
      showError(e);
      return;
    } finally {
      setBusy(false);
    }
    state.invited = [...new Map([...state.invited, ...people].map((p) => [p.email.toLowerCase(), p])).values()];
    const to = people.map((p) => `${p.name} <${p.email}>`).join(', ');
    $('invitation-text').value = `To: ${to}\n\nHello,\n\nplease join our meeting "${state.current.title}":\n${state.current.invite_link}\n`;
    $('invitation').hidden = false;
    $('invitation-text').focus();
    say(`Invitation prepared for ${people.length} contact(s); they are added to the meeting.`);
  });
  $('copy-invitation').addEventListener('click', () => copyWithMessage($('invitation-text').value, $('invitation-text')));
}

async function main() {
  wire();
  setBusy(true);
  say('Loading…');
  try {
    const [deal, past] = await Promise.all([api('deal'), api('meetings')]);
    state.deal = deal;
    renderDeal(deal);
    renderPast(past.meetings);
    say('');
    document.body.dataset.ready = 'true';
  } catch (e) {
    $('deal-title').textContent = 'The deal card could not load';
    say('');
    showError(e);
    document.body.dataset.ready = 'error';
  } finally {
    setBusy(false);
  }
}

main();
