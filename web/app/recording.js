// A recording's page (/recordings/{id}), linked from the meeting summary: for the meeting's host and
// the account's admins, its files with their length and size, each downloaded through a signed link
// fetched at the moment of the click (links live minutes). Anyone not signed in is sent to sign in
// and back here.

import { ApiError, getRecording, recordingLinks } from './api.js';
import { $, h } from './ui/dom.js';

const id = decodeURIComponent((location.pathname.match(/^\/recordings\/([^/]+)\/?$/) || [])[1] || '');
/** While the files are being finished, the page looks again this often. */
const POLL_MS = 3000;

const KIND_LABELS = {
  composite: 'Video of the meeting (grid, all voices)',
  mixed_audio: 'Audio of the meeting (all voices)',
  track_audio: 'Microphone',
  track_video: 'Camera',
};

function problem(text) {
  $('#status').textContent = '';
  $('#problem').textContent = text;
  $('#problem').hidden = false;
}

function duration(ms) {
  if (ms == null) return '—';
  const s = Math.round(ms / 1000);
  const [hh, mm, ss] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const two = (n) => String(n).padStart(2, '0');
  return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

function label(f) {
  const kind = KIND_LABELS[f.kind] || f.kind;
  if (f.kind === 'track_audio' || f.kind === 'track_video') {
    const who = f.display_name || 'a participant';
    return `${kind} of ${who}`;
  }
  return kind;
}

async function download(name, button) {
  const error = $('#download-error');
  error.textContent = '';
  button.disabled = true;
  try {
    const links = await recordingLinks(id);
    const link = (links.files || []).find((f) => f.name === name);
    if (!link) throw new Error('This file is no longer part of the recording.');
    // The server sends it as an attachment: the browser saves it and this page stays.
    location.assign(link.path || link.url);
  } catch (e) {
    error.textContent = `The download could not start: ${e.message || e}`;
  } finally {
    button.disabled = false;
  }
}

function render(rec) {
  document.title = `Recording: ${rec.meeting_title} · Parley`;
  $('#recording-heading').textContent = `Recording: ${rec.meeting_title}`;
  $('#fact-meeting').textContent = rec.meeting_title;
  $('#fact-when').textContent = when(rec.started_at);
  const length = rec.stopped_at ? new Date(rec.stopped_at) - new Date(rec.started_at) : null;
  $('#fact-length').textContent = duration(length);
  $('#fact-by').textContent = rec.started_by;
  $('#fact-expires').textContent = rec.expires_at ? when(rec.expires_at) : 'until deleted';
  $('#facts').hidden = false;

  const status = {
    recording: 'The meeting is still being recorded. The files appear here when it stops.',
    processing: 'The recording has stopped; its files are being finished. This page updates by itself.',
    ready: '',
    failed: `Part of the recording could not be made (${rec.error || 'unknown error'}). The files written are below.`,
  }[rec.status];
  $('#status').textContent = status ?? '';

  const rows = (rec.files || []).map((f) =>
    h('tr', {},
      h('td', {}, h('span', { class: 'file-label' }, label(f)), h('br'), h('span', { class: 'form-note' }, f.name)),
      h('td', {}, duration(f.duration_ms)),
      h('td', {}, size(f.bytes)),
      h('td', {},
        h('button', {
          type: 'button',
          class: 'btn btn-small',
          'aria-label': `Download ${label(f)}`,
          onclick: (ev) => download(f.name, ev.currentTarget),
        }, 'Download'),
      ),
    ),
  );
  $('#file-rows').replaceChildren(...rows);
  $('#files').hidden = rows.length === 0;
  return rec.status === 'recording' || rec.status === 'processing';
}

async function load() {
  let rec;
  try {
    rec = await getRecording(id);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      $('#status').textContent = '';
      $('#sign-in-link').href = `/sign-in?next=${encodeURIComponent(location.pathname)}`;
      $('#sign-in').hidden = false;
    } else if (e instanceof ApiError && e.status === 403) {
      problem('Only the meeting’s host and the account’s admins may see this recording.');
    } else if (e instanceof ApiError && e.status === 404) {
      problem('There is no such recording. It may have been deleted, or its retention period has ended.');
    } else {
      problem(e.message || String(e));
    }
    return;
  }
  if (render(rec)) setTimeout(load, POLL_MS);
}

if (!id) problem('This address does not name a recording.');
else load();
