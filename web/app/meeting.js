// The meeting page (/m/{id}?t=… or ?invite=…): pre-join, then the meeting itself. This module wires
// signaling, the two peer connections and the UI together; each of those lives in its own module.

import { ApiError, getJoinToken, getMeeting, signalingUrl } from './api.js';
import { Signaling, SignalingClosed } from './signaling.js';
import { Publisher } from './publisher.js';
import { Subscriber } from './subscriber.js';
import { openDevice, openScreen } from './media.js';
import { VideoSizeReporter } from './video-size.js';
import { $, h, setToggle } from './ui/dom.js';
import { icons } from './ui/icons.js';
import { Grid } from './ui/grid.js';
import { ChatPanel } from './ui/chat.js';
import { ParticipantList } from './ui/participants.js';
import { Prejoin } from './ui/prejoin.js';
import { initAnnouncer, announce } from './ui/announcer.js';

const REACTIONS = ['👍', '👏', '😂', '🎉', '❤️', '🤔'];

// ---- where we are -------------------------------------------------------------------------------

function parseLocation() {
  const m = location.pathname.match(/^\/m\/([^/]+)\/?$/);
  const q = new URLSearchParams(location.search);
  return {
    meetingId: m ? decodeURIComponent(m[1]) : q.get('meeting'),
    hostToken: q.get('t'),
    invite: q.get('invite'),
  };
}

const link = parseLocation();

// ---- state --------------------------------------------------------------------------------------

/** Remote participants by id (the objects from the protocol), plus ourselves under `selfId`. */
const participants = new Map();
let selfId = null;
let role = 'guest';
let meeting = { id: link.meetingId, title: '', locked: false };
const local = { mic: null, cam: null, screen: null, micOn: false, camOn: false, name: '' };
let remoteTracks = []; // latest list from the subscriber
const audioEls = new Map(); // "pid:source" -> <audio>
let signaling = null;
let publisher = null;
let subscriber = null;
let sizes = null;
let grid = null;
let chat = null;
let people = null;
let mediaPending = false; // true from a drop until both connections carry media again
let ended = false;
// Recording: the one running ({recording_id, started_at, started_by}) or null; whether our token
// may start and stop it; a start/stop asked and not yet answered; the recording whose notice was
// already shown (once per recording, however often the state is repeated).
let recording = null;
let canRecord = false;
let recordPending = false;
let noticeShownFor = null;

// ---- screens ------------------------------------------------------------------------------------

function showScreen(id) {
  for (const s of document.querySelectorAll('.screen')) s.hidden = s.id !== id;
}

const END_SCREENS = {
  1000: ['You left the meeting', 'You can rejoin with the same link.', true],
  1001: ['The server restarted', 'The meeting server went away. Rejoin when it is back.', true],
  1006: ['Connection lost', 'We could not reconnect within 30 seconds. Check your network and rejoin.', true],
  1009: ['Disconnected', 'The server closed the connection: a message was too large.', true],
  4000: ['You were removed', 'The host removed you from this meeting.', false],
  4001: ['The meeting has ended', 'The host ended the meeting for everyone.', false],
  4002: ['Joined somewhere else', 'This window was disconnected because you joined the meeting from another window or device.', false],
  4003: ['This meeting is locked', 'The host has locked the meeting. Ask the host to unlock it, then try again.', true],
};

function endScreen(code, reason) {
  let [title, text, canRejoin] = END_SCREENS[code] || [
    'Disconnected',
    `The connection closed${reason ? `: ${reason}` : ''}.`,
    true,
  ];
  if (code === 1008) {
    if (/^invalid token/i.test(reason || '')) {
      title = 'This link does not work';
      text = `The server refused the link (${reason.replace(/^invalid token:?\s*/i, '') || 'invalid'}). Ask the host for a new invite link.`;
      canRejoin = false;
    } else {
      title = 'Disconnected';
      text = `The server closed the connection (${reason || 'policy violation'}).`;
    }
  }
  return { title, text, canRejoin };
}

function showEnded({ title, text, canRejoin }) {
  ended = true;
  teardown();
  $('#ended-title').textContent = title;
  $('#ended-text').textContent = text;
  $('#rejoin').hidden = !canRejoin;
  document.title = `${title} · Parley`;
  showScreen('ended');
  $('#ended-title').focus();
}

function teardown() {
  try {
    publisher?.close();
    subscriber?.close();
  } catch {}
  for (const t of [local.mic, local.cam, local.screen]) t && t.stop();
  for (const a of audioEls.values()) a.srcObject = null;
  audioEls.clear();
  if (grid) for (const t of grid.tiles.values()) t.video.srcObject = null;
  $('#reconnecting').hidden = true;
}

// ---- boot ---------------------------------------------------------------------------------------

let prejoin = null;

function fillStaticIcons() {
  const set = (sel, svg) => {
    const el = $(sel);
    if (el) el.innerHTML = svg;
  };
  set('#btn-react .icon', icons.smile);
  set('#btn-chat .icon', icons.chat);
  set('#btn-people .icon', icons.people);
  set('#btn-leave .icon', icons.leave);
  for (const b of document.querySelectorAll('[data-close-panel]')) b.innerHTML = icons.close;
}

async function boot() {
  initAnnouncer($('#announcer'));
  fillStaticIcons();
  if (!link.meetingId) {
    showEnded({ title: 'No meeting here', text: 'This address does not name a meeting.', canRejoin: false });
    return;
  }
  if (!link.hostToken && !link.invite) {
    showEnded({
      title: 'This link is incomplete',
      text: 'The link has no invite code. Ask the host to send the invite link again.',
      canRejoin: false,
    });
    return;
  }
  showScreen('prejoin');
  prejoin = new Prejoin({
    preview: $('#preview'),
    previewBox: $('#preview-box'),
    level: $('#pj-level'),
    name: $('#pj-name'),
    audioSelect: $('#pj-audio'),
    videoSelect: $('#pj-video'),
    micToggle: $('#pj-mic'),
    camToggle: $('#pj-cam'),
    mediaError: $('#pj-media-error'),
  });
  $('#prejoin-form').addEventListener('submit', onJoinSubmit);
  getMeeting(link.meetingId, { hostToken: link.hostToken, invite: link.invite }).then((m) => {
    if (!m) return;
    if (m.title) {
      meeting.title = m.title;
      $('#prejoin-title').textContent = m.title;
      document.title = `Join ${m.title} · Parley`;
    }
    if (m.ended_at || m.status === 'ended') $('#pj-error').textContent = 'This meeting has ended.';
  });
  await prejoin.init();
  $('#pj-join').disabled = false;
}

async function onJoinSubmit(ev) {
  ev.preventDefault();
  const name = $('#pj-name').value.trim();
  if (!name) {
    $('#pj-error').textContent = 'Please enter your name.';
    $('#pj-name').focus();
    return;
  }
  $('#pj-join').disabled = true;
  $('#pj-error').textContent = '';
  $('#pj-status').textContent = 'Joining…';
  try {
    await join(prejoin.finish());
  } catch (e) {
    $('#pj-status').textContent = '';
    $('#pj-join').disabled = false;
    if (e instanceof SignalingClosed) {
      showEnded(endScreen(e.code, e.reason));
    } else if (e instanceof ApiError && [401, 403, 404, 410].includes(e.status)) {
      showEnded({ title: 'This link does not work', text: e.message, canRejoin: false });
    } else {
      console.error(e);
      $('#pj-error').textContent = e.message || String(e);
    }
  }
}

// ---- joining ------------------------------------------------------------------------------------

async function join(choice) {
  Object.assign(local, {
    name: choice.name,
    mic: choice.mic,
    cam: choice.cam,
    micOn: choice.micOn,
    camOn: choice.camOn,
    audioDeviceId: choice.audioDeviceId,
    videoDeviceId: choice.videoDeviceId,
  });
  if (local.mic) local.mic.enabled = local.micOn;

  const token = await getJoinToken({
    meetingId: link.meetingId,
    hostToken: link.hostToken,
    invite: link.invite,
    displayName: local.name,
  });

  canRecord = !!tokenGrants(token).record;
  signaling = new Signaling(signalingUrl(), token);
  // Everything that can receive a message exists before the socket opens: the server may send
  // `subscribe_offer` right behind `joined`.
  publisher = new Publisher(signaling);
  subscriber = new Subscriber(signaling);
  sizes = new VideoSizeReporter((msg) => signaling.send(msg));
  wireSignaling();
  wirePeers();

  const joined = await signaling.connect();
  enterMeeting(joined);
  try {
    await publisher.start({ microphone: local.mic, camera: local.camOn ? local.cam : null });
  } catch (e) {
    // We are in the meeting and can still see and hear others; say what is missing.
    console.error('publishing failed', e);
    showToast(`Your camera and microphone could not be connected (${e.message}).`);
  }
  sendMuteState();
}

function enterMeeting(joined) {
  selfId = joined.participant_id;
  const you = joined.you || { id: selfId, display_name: local.name, role: 'guest', tracks: [] };
  role = you.role || 'guest';
  meeting = { ...meeting, ...(joined.meeting || {}) };
  participants.clear();
  participants.set(selfId, { ...you, id: selfId });
  for (const p of joined.participants || []) participants.set(p.id, p);
  setRecording(joined.meeting?.recording || null);

  buildMeetingUi();
  showScreen('meeting');
  document.title = `${meeting.title || 'Meeting'} · Parley`;
  announce(`You joined ${meeting.title || 'the meeting'}. ${participants.size - 1} other participant${participants.size === 2 ? '' : 's'} here.`);
  renderAll();
  $('#btn-mic').focus();
}

function sendMuteState() {
  signaling.send({ type: 'mute', source: 'microphone', muted: !local.micOn });
  signaling.send({ type: 'mute', source: 'camera', muted: !local.camOn });
}

// ---- signaling events ---------------------------------------------------------------------------

function wireSignaling() {
  const on = (type, fn) => signaling.addEventListener(type, (ev) => fn(ev.detail));

  on('publish_answer', (m) => publisher.onAnswer(m.sdp));
  on('subscribe_offer', (m) =>
    subscriber.onOffer(m).catch((e) => console.error('subscribe offer failed', e)),
  );
  on('participant_joined', (m) => {
    const p = m.participant;
    const isNew = !participants.has(p.id);
    participants.set(p.id, p);
    if (isNew) announce(`${p.display_name} joined`);
    renderAll();
  });
  on('participant_updated', (m) => {
    const p = m.participant;
    if (p.id === selfId) {
      role = p.role || role;
    }
    participants.set(p.id, { ...participants.get(p.id), ...p });
    renderAll();
  });
  on('participant_left', (m) => {
    const p = participants.get(m.participant_id);
    participants.delete(m.participant_id);
    grid.removePerson(m.participant_id);
    if (p) {
      const why = { removed: ' (removed by the host)', timeout: ' (connection lost)' }[m.reason] || '';
      announce(`${p.display_name} left${why}`);
    }
    renderAll();
  });
  on('active_speaker', (m) => grid?.setActiveSpeaker(m.participant_id));
  on('chat', (m) => onChat(m, 'ws'));
  on('reaction', (m) => onReaction(m));
  on('mute_request', (m) => {
    if (m.source === 'microphone' && local.micOn) setMic(false);
    if (m.source === 'camera' && local.camOn) setCamera(false);
    if (m.source === 'screen' && local.screen) stopScreen();
    announce(`The host turned off your ${m.source === 'microphone' ? 'microphone' : m.source}.`);
    showToast(`The host turned off your ${m.source === 'microphone' ? 'microphone' : m.source}.`);
  });
  on('meeting_ending', (m) => {
    // The tariff's maximum meeting length: everyone hears it, and sees when the call will end.
    const at = new Date(m.ends_at);
    const when = Number.isNaN(at.getTime()) ? '' : ` at ${at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`;
    const text = `This meeting reaches its time limit in ${m.minutes_left} minutes${when} and will then end.`;
    announce(text);
    showToast(text);
  });
  on('recording', (m) => {
    recordPending = false;
    if (m.active) {
      setRecording(m);
      announce(`${m.started_by || 'The host'} started recording. This meeting is being recorded.`);
    } else {
      setRecording(null);
      const why = {
        quota_exceeded: 'Recording stopped: the account’s recording storage is full.',
        meeting_ended: 'Recording stopped: the meeting ended.',
        failed: 'Recording stopped: the recording could not be written.',
      }[m.reason] || 'Recording stopped.';
      announce(why);
      showToast(why);
    }
    renderRecording();
  });
  on('recording_degraded', () => {
    if (!recording || recording.degraded) return;
    recording.degraded = true;
    showToast('The recording is missing some media: the server cannot keep up. The meeting goes on.');
  });
  on('meeting_locked', (m) => {
    meeting.locked = !!m.locked;
    announce(meeting.locked ? 'The meeting is now locked' : 'The meeting is now unlocked');
    renderMeetingState();
  });
  on('error', (m) => {
    console.warn('server error', m);
    if (m.code && /chat/.test(m.code)) chat?.system(`Message not sent: ${m.message}`);
    if (recordPending) {
      // The answer to our record/stop request: the server says why it refused, in its words.
      recordPending = false;
      showToast(m.message || 'The recording could not be started.');
      announce(m.message || 'The recording could not be started.');
      renderRecording();
    }
  });

  signaling.addEventListener('reconnecting', () => {
    mediaPending = true;
    announce('Connection lost. Reconnecting…');
    updateConnectionBanner();
  });
  signaling.addEventListener('resumed', (ev) => onResumed(ev.detail));
  signaling.addEventListener('closed', (ev) => {
    if (ended) return;
    showEnded(endScreen(ev.detail.code, ev.detail.reason));
  });
}

async function onResumed(joined) {
  // The server gives the resumed participant fresh peer connections: drop ours synchronously,
  // before its new subscriber offer (right behind `joined`) is handled.
  subscriber.reset();
  if (joined.participant_id !== selfId) {
    // The seat was gone (resume window passed): the server joined us afresh under a new id.
    grid.removePerson(selfId);
    if (local.screen) {
      local.screen.stop();
      local.screen = null;
      publisher.tracks.screen = null;
    }
    selfId = joined.participant_id;
    role = joined.you?.role || role;
    announce('You rejoined the meeting.');
  }
  // The server's view is the truth after a gap: replace our participant list with it.
  const mine = participants.get(selfId);
  participants.clear();
  participants.set(selfId, { ...mine, ...(joined.you || {}), id: selfId });
  for (const p of joined.participants || []) participants.set(p.id, p);
  for (const pid of [...grid.tiles.values()].map((t) => t.participantId)) {
    if (!participants.has(pid)) grid.removePerson(pid);
  }
  meeting = { ...meeting, ...(joined.meeting || {}) };
  setRecording(joined.meeting?.recording || null);
  renderAll();
  try {
    await publisher.rebuild();
  } catch (e) {
    console.error('publishing again after resume failed', e);
  }
  // After the publish offer: the server applies mute state to tracks it knows.
  sendMuteState();
  sizes.resendAll();
  updateConnectionBanner();
}

// ---- peer connection events ---------------------------------------------------------------------

function wirePeers() {
  publisher.addEventListener('data', (ev) => {
    const m = ev.detail;
    if (m.type === 'chat') onChat(m, 'dc');
    else if (m.type === 'reaction') onReaction(m);
  });
  publisher.addEventListener('state', (ev) => {
    if (ev.detail === 'failed' && signaling.isOpen) {
      // Media broke while signaling is fine (e.g. a network change): restart ICE.
      publisher.restartIce().catch((e) => console.error(e));
    }
    updateConnectionBanner();
  });
  subscriber.addEventListener('state', () => updateConnectionBanner());
  subscriber.addEventListener('tracks', (ev) => {
    remoteTracks = ev.detail;
    renderMedia();
  });
}

function updateConnectionBanner() {
  const pubState = publisher?.pc?.connectionState;
  const subState = subscriber?.pc?.connectionState;
  const bad = (s) => s === 'disconnected' || s === 'failed';
  if (mediaPending && signaling?.isOpen) {
    const pubOk = pubState === 'connected';
    // Without anyone else publishing there is no subscriber offer to wait for.
    const othersPublish = [...participants.values()].some((p) => p.id !== selfId && (p.tracks || []).length);
    const subOk = subState === 'connected' || (!subscriber?.pc && !othersPublish);
    if (pubOk && subOk) {
      mediaPending = false;
      announce('Reconnected');
    }
  }
  const show = !ended && (signaling?.state === 'reconnecting' || mediaPending || bad(pubState) || bad(subState));
  $('#reconnecting').hidden = !show;
}

// ---- rendering ----------------------------------------------------------------------------------

function buildMeetingUi() {
  if (grid) return; // a resume keeps the UI
  grid = new Grid($('#grid'), {
    videoAdded: (video, pid, source) => sizes.observe(video, pid, source),
    videoRemoved: (video) => sizes.unobserve(video),
  });
  chat = new ChatPanel(
    {
      panel: $('#panel-chat'),
      log: $('#chat-log'),
      form: $('#chat-form'),
      input: $('#chat-input'),
      toggle: $('#btn-chat'),
      badge: $('#chat-badge'),
    },
    sendChat,
  );
  people = new ParticipantList($('#people-list'), $('#people-count'), {
    mute: (pid) => hostAction('mute', pid, 'microphone'),
    remove: (pid, name) => {
      if (confirm(`Remove ${name} from the meeting?`)) hostAction('remove', pid);
    },
  });
  wireControls();
}

function renderAll() {
  if (!grid) return;
  const me = participants.get(selfId);
  // Our own state is known locally before the server echoes it back.
  if (me) {
    me.tracks = [
      { source: 'microphone', muted: !local.micOn },
      { source: 'camera', muted: !local.camOn },
      ...(local.screen ? [{ source: 'screen', muted: false }] : []),
    ];
  }
  grid.upsertPerson(selfId, { name: local.name || me?.display_name || 'You', role, local: true });
  grid.setTrack(selfId, 'camera', local.camOn ? local.cam : null);
  grid.setMicMuted(selfId, !local.micOn);
  grid.setCameraMuted(selfId, !local.camOn);
  for (const p of participants.values()) {
    if (p.id === selfId) continue;
    grid.upsertPerson(p.id, { name: p.display_name, role: p.role });
    const track = (src) => (p.tracks || []).find((t) => t.source === src);
    grid.setMicMuted(p.id, !track('microphone') || track('microphone').muted);
    grid.setCameraMuted(p.id, !!track('camera')?.muted);
  }
  renderMedia();
  people.isHost = role === 'host';
  people.render(participants, selfId);
  renderMeetingState();
}

/** Attaches subscribed tracks to tiles and audio elements; removes what is no longer subscribed. */
function renderMedia() {
  if (!grid) return;
  const camera = new Map();
  const screen = new Map();
  const audio = new Map();
  for (const t of remoteTracks) {
    // A track of someone we do not know (yet, or any more) waits for participant_joined.
    if (!participants.has(t.participantId) || t.participantId === selfId) continue;
    if (t.kind === 'audio') audio.set(`${t.participantId}:${t.source}`, t.track);
    else if (t.source === 'screen') screen.set(t.participantId, t.track);
    else camera.set(t.participantId, t.track);
  }
  for (const p of participants.values()) {
    if (p.id !== selfId) grid.setTrack(p.id, 'camera', camera.get(p.id) || null);
  }
  for (const t of [...grid.tiles.values()]) {
    if (t.source === 'screen' && !t.local && !screen.has(t.participantId)) {
      grid.remove(t.participantId, 'screen');
    }
  }
  for (const [pid, track] of screen) {
    grid.ensureScreen(pid, participants.get(pid)?.display_name || 'Someone');
    grid.setTrack(pid, 'screen', track);
  }
  // Audio plays from its own elements so it keeps playing whatever happens to the tiles.
  const sink = $('#audio-sink');
  for (const [key, el] of audioEls) {
    if (!audio.has(key)) {
      el.srcObject = null;
      el.remove();
      audioEls.delete(key);
    }
  }
  for (const [key, track] of audio) {
    let el = audioEls.get(key);
    if (!el) {
      el = h('audio', { autoplay: true });
      sink.append(el);
      audioEls.set(key, el);
    }
    if (el.srcObject?.getTracks()[0] !== track) {
      el.srcObject = new MediaStream([track]);
      el.play().catch(() => {
        // Autoplay blocked (no user gesture yet): retry on the next interaction.
        document.addEventListener('pointerdown', () => el.play().catch(() => {}), { once: true });
      });
    }
  }
}

function renderMeetingState() {
  $('#meeting-title').textContent = meeting.title || 'Meeting';
  $('#locked-badge').hidden = !meeting.locked;
  renderRecording();
  const isHost = role === 'host';
  for (const el of document.querySelectorAll('.host-only')) el.hidden = !isHost;
  const lockBtn = $('#btn-lock');
  setToggle(lockBtn, meeting.locked, 'Lock meeting', meeting.locked ? icons.lock : icons.unlock);
}

// ---- chat and reactions -------------------------------------------------------------------------

function sendChat(text) {
  // The data channel is the primary path; the WebSocket carries chat while it is not open.
  const ok = publisher.sendData({ type: 'chat', text }) || signaling.send({ type: 'chat', text });
  if (ok) chat.add({ from: selfId, name: local.name, text, self: true });
  return ok;
}

function onChat(m, via) {
  if (m.from === selfId) return;
  const name = m.display_name || participants.get(m.from)?.display_name;
  const added = chat.add({ from: m.from, name, text: m.text, at: m.at, via });
  if (added && !chat.isOpen) showToast(`${name || 'Someone'}: ${truncate(m.text, 80)}`);
}

function onReaction(m) {
  if (m.from === selfId) return;
  grid.showReaction(m.from, m.emoji);
  const name = participants.get(m.from)?.display_name || m.display_name || 'Someone';
  announce(`${name} reacted ${m.emoji}`);
}

function sendReaction(emoji) {
  if (!publisher.sendData({ type: 'reaction', emoji })) {
    showToast('Reactions are unavailable until the connection is back.');
    return;
  }
  grid.showReaction(selfId, emoji);
}

// ---- local media controls -----------------------------------------------------------------------

async function setMic(on) {
  if (on && !local.mic) {
    try {
      local.mic = await openDevice('audio', local.audioDeviceId);
      await publisher.replaceTrack('microphone', local.mic);
    } catch (e) {
      showToast(e.message);
      return;
    }
  }
  local.micOn = on && !!local.mic;
  // Disabling (not stopping) the track sends silence and makes unmuting instant.
  if (local.mic) local.mic.enabled = local.micOn;
  signaling.send({ type: 'mute', source: 'microphone', muted: !local.micOn });
  renderControls();
  renderAll();
}

async function setCamera(on) {
  if (on) {
    try {
      local.cam = await openDevice('video', local.videoDeviceId);
    } catch (e) {
      showToast(e.message);
      return;
    }
    await publisher.replaceTrack('camera', local.cam);
    local.camOn = true;
  } else {
    // Stop the device so its light goes off; the transceiver stays for turning it on again.
    await publisher.replaceTrack('camera', null);
    local.cam && local.cam.stop();
    local.cam = null;
    local.camOn = false;
  }
  signaling.send({ type: 'mute', source: 'camera', muted: !local.camOn });
  renderControls();
  renderAll();
}

/** Shares the screen; `track` lets a test publish a synthetic track when capture is unavailable. */
async function startScreen(track) {
  if (local.screen) return;
  try {
    track = track || (await openScreen());
  } catch (e) {
    showToast(e.message);
    return;
  }
  if (!track) return; // cancelled
  local.screen = track;
  track.addEventListener('ended', () => stopScreen()); // the browser's own "Stop sharing" button
  grid.ensureScreen(selfId, local.name, true);
  grid.setTrack(selfId, 'screen', track);
  renderControls();
  renderAll();
  announce('You are sharing your screen');
  await publisher.startScreen(track);
}

async function stopScreen() {
  if (!local.screen) return;
  const track = local.screen;
  local.screen = null;
  track.stop();
  grid.remove(selfId, 'screen');
  renderControls();
  renderAll();
  announce('You stopped sharing your screen');
  await publisher.stopScreen();
}

// ---- recording -------------------------------------------------------------------------------

/** The grants of our join token (its payload is plain base64url JSON; the server checks it anyway). */
function tokenGrants(token) {
  try {
    const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, '='))).grants || {};
  } catch {
    return {};
  }
}

/** Takes the server's recording state; a recording we have not yet told about gets its notice. */
function setRecording(state) {
  const active = state && state.active !== false ? state : null;
  recording = active
    ? { recording_id: active.recording_id, started_at: active.started_at, started_by: active.started_by }
    : null;
  if (recording && noticeShownFor !== recording.recording_id) {
    noticeShownFor = recording.recording_id;
    $('#rec-notice-text').textContent = recording.started_by
      ? `This meeting is being recorded (started by ${recording.started_by}).`
      : 'This meeting is being recorded.';
    $('#rec-notice').hidden = false;
  }
  if (!recording) $('#rec-notice').hidden = true;
  renderRecording();
}

function renderRecording() {
  $('#rec-indicator').hidden = !recording;
  const btn = $('#btn-record');
  btn.hidden = !canRecord;
  btn.disabled = recordPending;
  setToggle(btn, !!recording, 'Record', recording ? icons.recordStop : icons.record);
  btn.title = recording ? 'Stop recording' : 'Record the meeting';
}

function toggleRecording() {
  if (recordPending) return;
  const action = recording ? 'stop' : 'start';
  if (action === 'stop' && !confirm('Stop recording the meeting?')) return;
  requestRecording(action);
}

/** Asks the server to start or stop; the answer is the `recording` broadcast or an `error`. */
function requestRecording(action) {
  if (!signaling?.send({ type: 'recording', action })) {
    showToast('Not connected. Try again in a moment.');
    return;
  }
  recordPending = true;
  renderRecording();
  // No answer (a lost socket): let the person try again.
  setTimeout(() => {
    if (recordPending) {
      recordPending = false;
      renderRecording();
    }
  }, 10000);
}

function hostAction(action, participantId, source) {
  const msg = { type: 'host', action };
  if (participantId) msg.participant_id = participantId;
  if (source) msg.source = source;
  if (!signaling.send(msg)) showToast('Not connected. Try again in a moment.');
}

function leave() {
  ended = true;
  signaling.leave();
  showEnded(endScreen(1000, 'left'));
}

// Toggle buttons keep one name and expose their state with aria-pressed (a name that flips between
// "Mute" and "Unmute" while also pressed/unpressed reads as a double negative); the icon shows it too.
function renderControls() {
  setToggle($('#btn-mic'), !local.micOn, 'Mute', local.micOn ? icons.mic : icons.micOff);
  setToggle($('#btn-cam'), !local.camOn, 'Stop video', local.camOn ? icons.cam : icons.camOff);
  setToggle($('#btn-screen'), !!local.screen, 'Share screen', icons.screen);
  if (!navigator.mediaDevices?.getDisplayMedia) $('#btn-screen').disabled = true;
}

// ---- controls wiring ----------------------------------------------------------------------------

function togglePanel(which) {
  const panels = { chat: $('#panel-chat'), people: $('#panel-people') };
  const buttons = { chat: $('#btn-chat'), people: $('#btn-people') };
  for (const [name, panel] of Object.entries(panels)) {
    const open = name === which && panel.hidden;
    panel.hidden = !open;
    buttons[name].setAttribute('aria-expanded', String(open));
    if (open) {
      if (name === 'chat') {
        chat.opened();
        $('#chat-input').focus();
      } else {
        panel.querySelector('h2').focus();
      }
    }
  }
  $('#meeting').classList.toggle('panel-open', !panels.chat.hidden || !panels.people.hidden);
  grid.layout();
  sizes.remeasureAll();
}

function wireControls() {
  $('#btn-mic').addEventListener('click', () => setMic(!local.micOn));
  $('#btn-cam').addEventListener('click', () => setCamera(!local.camOn));
  $('#btn-screen').addEventListener('click', () => (local.screen ? stopScreen() : startScreen()));
  $('#btn-chat').addEventListener('click', () => togglePanel('chat'));
  $('#btn-people').addEventListener('click', () => togglePanel('people'));
  for (const btn of document.querySelectorAll('[data-close-panel]')) {
    btn.addEventListener('click', () => {
      const which = btn.dataset.closePanel;
      togglePanel(which);
      $(`#btn-${which}`).focus();
    });
  }
  $('#btn-leave').addEventListener('click', leave);
  $('#btn-record').addEventListener('click', toggleRecording);
  $('#rec-notice-ok').addEventListener('click', () => {
    $('#rec-notice').hidden = true;
    $('#btn-mic').focus();
  });
  $('#btn-end').addEventListener('click', () => {
    if (confirm('End the meeting for everyone?')) hostAction('end');
  });
  $('#btn-lock').addEventListener('click', () => hostAction(meeting.locked ? 'unlock' : 'lock'));

  // Reactions: a small popover of emoji buttons.
  const pop = $('#reaction-menu');
  const rbtn = $('#btn-react');
  pop.replaceChildren(
    ...REACTIONS.map((e) =>
      h('button', {
        type: 'button',
        class: 'reaction-choice',
        'aria-label': `React ${e}`,
        onclick: () => {
          sendReaction(e);
          closeReactions();
          rbtn.focus();
        },
      }, e),
    ),
  );
  const closeReactions = () => {
    pop.hidden = true;
    rbtn.setAttribute('aria-expanded', 'false');
  };
  rbtn.addEventListener('click', () => {
    pop.hidden = !pop.hidden;
    rbtn.setAttribute('aria-expanded', String(!pop.hidden));
    if (!pop.hidden) pop.querySelector('button').focus();
  });

  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape') return;
    if (!pop.hidden) {
      closeReactions();
      rbtn.focus();
    } else if (!$('#panel-chat').hidden) {
      togglePanel('chat');
      $('#btn-chat').focus();
    } else if (!$('#panel-people').hidden) {
      togglePanel('people');
      $('#btn-people').focus();
    }
  });
  renderControls();
}

// ---- small helpers ------------------------------------------------------------------------------

let toastTimer = null;
function showToast(text) {
  const t = $('#toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 5000);
}

function truncate(s, n) {
  s = String(s);
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

// ---- test and debugging surface -----------------------------------------------------------------

// Stable hooks for the end-to-end test (and for people debugging in the console).
window.parley = {
  get participantId() {
    return selfId;
  },
  get role() {
    return role;
  },
  participants: () =>
    [...participants.values()].map((p) => ({ ...p, isSelf: p.id === selfId })),
  /** Tile keys currently in the grid ("pid:camera", "pid:screen"). */
  tiles: () => (grid ? [...grid.tiles.keys()] : []),
  getStats: async () => ({
    inbound: subscriber ? await subscriber.inboundStats() : [],
    outbound: publisher ? await publisher.outboundStats() : [],
  }),
  connection: () => ({
    signaling: signaling?.state ?? 'idle',
    publisher: publisher?.pc?.connectionState ?? 'new',
    subscriber: subscriber?.pc?.connectionState ?? 'new',
    dataChannel: publisher?.dc?.readyState ?? 'none',
  }),
  setMicrophone: (on) => setMic(on),
  setCamera: (on) => setCamera(on),
  /** Shares a screen; pass a MediaStreamTrack to publish it instead of calling getDisplayMedia. */
  startScreenShare: (track) => startScreen(track),
  stopScreenShare: () => stopScreen(),
  /** The running recording ({recording_id, started_at, started_by}) or null. */
  get recording() {
    return recording;
  },
  get canRecord() {
    return canRecord;
  },
  /** What the person sees of it: the top-bar indicator and the notice banner. */
  recordingUi: () => ({
    indicator: !$('#rec-indicator').hidden,
    notice: !$('#rec-notice').hidden,
    button: !$('#btn-record').hidden,
  }),
  startRecording: () => requestRecording('start'),
  stopRecording: () => requestRecording('stop'),
  sendChat: (text) => sendChat(text),
  leave: () => leave(),
  /** Drops the signaling socket as a network failure would (tests the resume path). */
  simulateDrop: () => signaling?.ws?.close(4999, 'simulated drop'),
};

$('#rejoin').addEventListener('click', () => location.reload());
boot().catch((e) => {
  console.error(e);
  showEnded({ title: 'Something went wrong', text: e.message || String(e), canRejoin: true });
});
