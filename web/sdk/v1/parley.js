// Parley JS SDK, version 1: join a Parley meeting inside an element of your own page.
//
//   import { Parley } from 'https://parley.example/sdk/v1/parley.js';
//   const meeting = Parley.join({ container: document.querySelector('#call'), token });
//   meeting.on('joined', (e) => console.log('in the meeting as', e.participantId));
//   meeting.on('error', (e) => console.warn(e.code, e.message));
//
// The token comes from your backend (POST /api/v1/meetings/{id}/tokens with your account API key
// and an SDK key; see docs/sdk.md). A token bound to an SDK key works only on the key's allowed
// origins. The path is versioned: /sdk/v1/ keeps this API; an incompatible SDK gets /sdk/v2/.
//
// The SDK reuses the meeting app's own modules (signaling with resume, the publisher with
// simulcast, the subscriber), so an embedded participant behaves exactly like one on Parley's page.
// Types: parley.d.ts next to this file.

import { Signaling, SignalingClosed } from '../../app/signaling.js';
import { Publisher } from '../../app/publisher.js';
import { Subscriber } from '../../app/subscriber.js';
import { openDevice, openScreen } from '../../app/media.js';
import { VideoSizeReporter } from '../../app/video-size.js';
import { MeetingView } from './view.js';

export const VERSION = '1.0.0';

/** Every event a meeting emits (`meeting.on(name, fn)`); the embed page posts the same ones. */
export const EVENTS = Object.freeze([
  'joined',
  'participant_joined',
  'participant_left',
  'active_speaker',
  'recording_started',
  'recording_stopped',
  'disconnected',
  'error',
]);

/** @typedef {import('./parley.d.ts').JoinOptions} JoinOptions */
/** @typedef {import('./parley.d.ts').Participant} Participant */
/** @typedef {import('./parley.d.ts').ParleyError} ParleyError */

/** The Parley server this module was loaded from (`https://parley.example/`). */
function defaultBase() {
  return new URL('../../', import.meta.url).href;
}

function wsUrl(base) {
  const u = new URL('api/v1/ws', base.endsWith('/') ? base : `${base}/`);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

/** `audio`/`video` (and the protocol's `microphone`/`camera`) to a publisher source. */
function sourceOf(kind) {
  switch (kind) {
    case 'audio':
    case 'microphone':
      return 'microphone';
    case 'video':
    case 'camera':
      return 'camera';
    default:
      throw new TypeError(`kind must be 'audio' or 'video', not ${JSON.stringify(kind)}`);
  }
}

/** @returns {Participant} the public shape of a protocol participant */
function participantOf(p) {
  return {
    id: p.id,
    displayName: p.display_name,
    role: p.role,
    tracks: (p.tracks || []).map((t) => ({ source: t.source, muted: !!t.muted })),
    joinedAt: p.joined_at ?? null,
  };
}

/**
 * A refusal's code from a close frame: the reason's text before any ':' in snake case
 * (`invalid token: expired` -> `invalid_token`, `origin not allowed` -> `origin_not_allowed`).
 */
function closeCode(code, reason) {
  const head = String(reason || '').split(':')[0].trim().toLowerCase();
  const snake = head.replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '');
  return snake || `closed_${code}`;
}

/** A meeting joined through the SDK. Create it with {@link join}. */
export class Meeting {
  /** @param {JoinOptions} options */
  constructor(options) {
    this._listeners = new Map();
    this._participants = new Map();
    this._selfId = null;
    this._local = { mic: null, cam: null, screen: null, micOn: false, camOn: false };
    this._remoteTracks = [];
    this._state = 'connecting'; // connecting | joined | reconnecting | disconnected
    this._serverError = null;
    this._options = options;
    /** Settles when the join succeeds (with the `joined` event's detail) or fails (with the error). */
    this.ready = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    // Nobody has to await `ready`: failures also arrive as `error` events.
    this.ready.catch(() => {});
  }

  /** `connecting`, `joined`, `reconnecting` or `disconnected`. */
  get state() {
    return this._state;
  }

  /** Our participant id once joined. */
  get participantId() {
    return this._selfId;
  }

  /** Everyone in the meeting, ourselves included (`isSelf`). */
  participants() {
    return [...this._participants.values()].map((p) => ({
      ...participantOf(p),
      isSelf: p.id === this._selfId,
    }));
  }

  /**
   * Listens to an event; returns a function that stops listening.
   * @param {string} name one of {@link EVENTS}
   * @param {(detail: any) => void} fn
   */
  on(name, fn) {
    if (!EVENTS.includes(name)) throw new TypeError(`unknown Parley event ${JSON.stringify(name)}`);
    if (typeof fn !== 'function') throw new TypeError('the listener must be a function');
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  off(name, fn) {
    this._listeners.get(name)?.delete(fn);
  }

  _emit(name, detail) {
    for (const fn of [...(this._listeners.get(name) || [])]) {
      try {
        fn(detail);
      } catch (e) {
        // A throwing listener must not break the meeting (or the other listeners).
        console.error(`Parley: a '${name}' listener threw`, e);
      }
    }
  }

  /** Turns a local source off: `'audio'` sends silence, `'video'` sends black frames. */
  async mute(kind) {
    this._setMuted(sourceOf(kind), true);
  }

  /** Turns a local source on again (opening the device if it was never opened). */
  async unmute(kind) {
    const source = sourceOf(kind);
    const local = this._local;
    const key = source === 'microphone' ? 'mic' : 'cam';
    if (!local[key]) {
      local[key] = await openDevice(source === 'microphone' ? 'audio' : 'video');
      await this._publisher?.replaceTrack(source, local[key]);
    }
    this._setMuted(source, false);
  }

  _setMuted(source, muted) {
    const local = this._local;
    const track = source === 'microphone' ? local.mic : local.cam;
    // Disabling (not stopping) the track keeps the device open: unmuting is instant.
    if (track) track.enabled = !muted;
    if (source === 'microphone') local.micOn = !muted && !!track;
    else local.camOn = !muted && !!track;
    this._signaling?.send({ type: 'mute', source, muted: source === 'microphone' ? !local.micOn : !local.camOn });
    this._renderSelf();
  }

  /** Opens (`true`) or releases (`false`, the camera light goes off) the camera. */
  async setCamera(on) {
    const local = this._local;
    if (on) {
      if (!local.cam || local.cam.readyState === 'ended') {
        local.cam = await openDevice('video');
        await this._publisher?.replaceTrack('camera', local.cam);
      }
      this._setMuted('camera', false);
    } else {
      await this._publisher?.replaceTrack('camera', null);
      local.cam?.stop();
      local.cam = null;
      this._setMuted('camera', true);
    }
  }

  /**
   * Shares a screen, window or tab (the browser asks which). Resolves false when the user
   * cancelled. A MediaStreamTrack may be passed to publish it instead.
   */
  async startScreenShare(track) {
    if (this._local.screen) return true;
    track = track || (await openScreen());
    if (!track) return false;
    this._local.screen = track;
    track.addEventListener('ended', () => this.stopScreenShare()); // the browser's own Stop button
    this._view.setVideo(this._selfId, 'screen', track, { local: true });
    await this._publisher.startScreen(track);
    return true;
  }

  async stopScreenShare() {
    const track = this._local.screen;
    if (!track) return;
    this._local.screen = null;
    track.stop();
    this._view.setVideo(this._selfId, 'screen', null);
    await this._publisher.stopScreen();
  }

  /** Leaves the meeting and removes the SDK's elements from the container. */
  async leave() {
    if (this._state === 'disconnected') return;
    this._signaling?.leave();
    this._end(1000, 'left');
  }

  /** WebRTC statistics: per remote track (`inbound`) and per sent stream (`outbound`). */
  async getStats() {
    return {
      inbound: this._subscriber ? await this._subscriber.inboundStats() : [],
      outbound: this._publisher ? await this._publisher.outboundStats() : [],
    };
  }

  // ---- joining ----------------------------------------------------------------------------------

  async _start() {
    const o = this._options;
    const base = o.baseUrl || defaultBase();
    this._view = new MeetingView(o.container, {
      videoAdded: (video, pid, source) => this._sizes?.observe(video, pid, source),
      videoRemoved: (video) => this._sizes?.unobserve(video),
    });
    await this._openDevices(o.audio !== false, o.video !== false);

    const signaling = new Signaling(wsUrl(base), o.token, { meetingId: o.meetingId || null });
    this._signaling = signaling;
    // Everything that can receive a message exists before the socket opens: the server may send
    // `subscribe_offer` right behind `joined`.
    this._publisher = new Publisher(signaling);
    this._subscriber = new Subscriber(signaling);
    this._sizes = new VideoSizeReporter((msg) => signaling.send(msg));
    this._wire();

    let joined;
    try {
      joined = await signaling.connect();
    } catch (e) {
      const err = this._refusal(e);
      this._emit('error', err);
      this._reject(Object.assign(new Error(err.message), err));
      this._end(err.closeCode ?? 1006, err.closeReason ?? err.message);
      return;
    }
    this._onJoined(joined);
    try {
      await this._publisher.start({
        microphone: this._local.mic,
        camera: this._local.camOn ? this._local.cam : null,
      });
    } catch (e) {
      // Still in the meeting, seeing and hearing the others.
      this._emit('error', { code: 'publish_failed', message: `Your camera and microphone could not be connected (${e.message}).` });
    }
    this._sendMuteState();
  }

  async _openDevices(audio, video) {
    const local = this._local;
    for (const [kind, wanted] of [['audio', audio], ['video', video]]) {
      if (!wanted) continue;
      try {
        const track = await openDevice(kind);
        if (kind === 'audio') local.mic = track;
        else local.cam = track;
      } catch (e) {
        this._emit('error', { code: 'media_unavailable', message: e.message });
      }
    }
    local.micOn = !!local.mic;
    local.camOn = !!local.cam;
  }

  /** The error of a refused join: the server's `error` message when it sent one, else the close. */
  _refusal(e) {
    const closeCodeNum = e instanceof SignalingClosed ? e.code : 1006;
    const reason = e instanceof SignalingClosed ? e.reason : String(e?.message || e);
    const server = this._serverError;
    return {
      code: server?.code || closeCode(closeCodeNum, reason),
      message: server?.message || reason || 'The connection to Parley failed.',
      closeCode: closeCodeNum,
      closeReason: reason,
    };
  }

  _onJoined(joined) {
    this._state = 'joined';
    this._selfId = joined.participant_id;
    this._participants.clear();
    const you = joined.you || { id: this._selfId, display_name: this._options.displayName || 'You', role: 'guest', tracks: [] };
    this._participants.set(this._selfId, { ...you, id: this._selfId });
    for (const p of joined.participants || []) this._participants.set(p.id, p);
    this._renderAll();
    const detail = {
      participantId: this._selfId,
      meeting: {
        id: joined.meeting?.id ?? this._options.meetingId ?? null,
        title: joined.meeting?.title ?? '',
        locked: !!joined.meeting?.locked,
      },
      you: participantOf(this._participants.get(this._selfId)),
      participants: (joined.participants || []).map(participantOf),
    };
    this._emit('joined', detail);
    this._resolve(detail);
    // Someone arriving while a recording runs must know it too.
    const rec = joined.meeting?.recording;
    if (rec && rec.active !== false) this._onRecording({ ...rec, active: true });
  }

  _sendMuteState() {
    this._signaling.send({ type: 'mute', source: 'microphone', muted: !this._local.micOn });
    this._signaling.send({ type: 'mute', source: 'camera', muted: !this._local.camOn });
  }

  _wire() {
    const s = this._signaling;
    const on = (type, fn) => s.addEventListener(type, (ev) => fn(ev.detail));
    on('publish_answer', (m) => this._publisher.onAnswer(m.sdp));
    on('subscribe_offer', (m) =>
      this._subscriber.onOffer(m).catch((e) => console.error('Parley: subscribe offer failed', e)),
    );
    on('participant_joined', (m) => {
      const isNew = !this._participants.has(m.participant.id);
      this._participants.set(m.participant.id, m.participant);
      this._renderAll();
      if (isNew) this._emit('participant_joined', { participant: participantOf(m.participant) });
    });
    on('participant_updated', (m) => {
      const p = m.participant;
      this._participants.set(p.id, { ...this._participants.get(p.id), ...p });
      this._renderAll();
    });
    on('participant_left', (m) => {
      const p = this._participants.get(m.participant_id);
      this._participants.delete(m.participant_id);
      this._view.removePerson(m.participant_id);
      this._emit('participant_left', {
        participantId: m.participant_id,
        displayName: p?.display_name ?? null,
        reason: m.reason,
      });
    });
    on('active_speaker', (m) => {
      this._view.setActiveSpeaker(m.participant_id);
      this._emit('active_speaker', { participantId: m.participant_id ?? null });
    });
    on('recording', (m) => this._onRecording(m));
    on('mute_request', (m) => {
      // The host turned one of our sources off; obey, the server expects it.
      if (m.source === 'screen') this.stopScreenShare();
      else if (m.source === 'microphone' || m.source === 'camera') this._setMuted(m.source, true);
    });
    on('error', (m) => {
      if (this._state === 'connecting') {
        // A refusal: the close that follows carries the outcome; report the server's words then.
        this._serverError = { code: m.code, message: m.message };
        return;
      }
      this._emit('error', { code: m.code, message: m.message });
    });
    s.addEventListener('reconnecting', () => {
      this._state = 'reconnecting';
    });
    s.addEventListener('resumed', (ev) => this._onResumed(ev.detail));
    s.addEventListener('closed', (ev) => this._end(ev.detail.code, ev.detail.reason));

    this._publisher.addEventListener('state', (ev) => {
      if (ev.detail === 'failed' && s.isOpen) this._publisher.restartIce().catch((e) => console.error(e));
    });
    this._subscriber.addEventListener('tracks', (ev) => {
      this._remoteTracks = ev.detail;
      this._renderMedia();
    });
  }

  _onRecording(m) {
    if (m.active) {
      this._recording = true;
      this._emit('recording_started', {
        recordingId: m.recording_id ?? null,
        startedAt: m.started_at ?? null,
        startedBy: m.started_by ?? null,
      });
    } else if (this._recording !== false) {
      this._recording = false;
      this._emit('recording_stopped', { recordingId: m.recording_id ?? null, reason: m.reason ?? null });
    }
  }

  async _onResumed(joined) {
    // The server gives a resumed participant fresh peer connections: drop ours before its new
    // subscriber offer (right behind `joined`) is handled.
    this._subscriber.reset();
    this._state = 'joined';
    if (joined.participant_id !== this._selfId) {
      // The seat was gone (resume window over): joined afresh under a new id.
      this._view.removePerson(this._selfId);
      this._selfId = joined.participant_id;
    }
    const mine = this._participants.get(this._selfId);
    this._participants.clear();
    this._participants.set(this._selfId, { ...mine, ...(joined.you || {}), id: this._selfId });
    for (const p of joined.participants || []) this._participants.set(p.id, p);
    for (const key of this._view.keys()) {
      const pid = key.slice(0, key.lastIndexOf(':'));
      if (!this._participants.has(pid)) this._view.removePerson(pid);
    }
    this._renderAll();
    try {
      await this._publisher.rebuild();
    } catch (e) {
      console.error('Parley: publishing again after a reconnect failed', e);
    }
    this._sendMuteState();
    this._sizes.resendAll();
  }

  /** Ends the meeting object for good: one `disconnected` event, devices released, view removed. */
  _end(code, reason) {
    if (this._state === 'disconnected') return;
    const wasConnecting = this._state === 'connecting';
    this._state = 'disconnected';
    try {
      this._publisher?.close();
      this._subscriber?.close();
    } catch {}
    for (const t of [this._local.mic, this._local.cam, this._local.screen]) t?.stop();
    this._view?.destroy();
    if (wasConnecting) {
      this._reject(Object.assign(new Error(reason || 'disconnected'), { code: closeCode(code, reason), closeCode: code, closeReason: reason }));
    }
    this._emit('disconnected', { code, reason: reason || '' });
  }

  // ---- rendering --------------------------------------------------------------------------------

  _renderSelf() {
    if (!this._selfId || this._state === 'disconnected') return;
    const me = this._participants.get(this._selfId);
    const name = this._options.displayName || me?.display_name || 'You';
    this._view.upsertPerson(this._selfId, name, { local: true });
    this._view.setVideo(this._selfId, 'camera', this._local.camOn ? this._local.cam : null, { local: true });
  }

  _renderAll() {
    if (!this._view || this._state === 'disconnected') return;
    this._renderSelf();
    for (const p of this._participants.values()) {
      if (p.id !== this._selfId) this._view.upsertPerson(p.id, p.display_name);
    }
    this._renderMedia();
  }

  /** Puts subscribed tracks on tiles and audio elements; removes what is no longer subscribed. */
  _renderMedia() {
    if (!this._view || this._state === 'disconnected') return;
    const camera = new Map();
    const screen = new Map();
    const audio = new Map();
    for (const t of this._remoteTracks) {
      // A track of someone not (or no longer) known waits for participant_joined.
      if (!this._participants.has(t.participantId) || t.participantId === this._selfId) continue;
      if (t.kind === 'audio') audio.set(`${t.participantId}:${t.source}`, t.track);
      else if (t.source === 'screen') screen.set(t.participantId, t.track);
      else camera.set(t.participantId, t.track);
    }
    for (const p of this._participants.values()) {
      if (p.id === this._selfId) continue;
      this._view.setVideo(p.id, 'camera', camera.get(p.id) || null);
      this._view.setVideo(p.id, 'screen', screen.get(p.id) || null, { name: p.display_name });
    }
    for (const key of [...this._view.audioEls.keys()]) {
      if (!audio.has(key)) this._view.setAudio(key, null);
    }
    for (const [key, track] of audio) this._view.setAudio(key, track);
  }
}

/**
 * Joins a meeting into `options.container`. Returns at once; register listeners right away
 * (the connection starts after the current task, so no event is missed), or await
 * `meeting.ready`.
 * @param {JoinOptions} options
 * @returns {Meeting}
 */
export function join(options) {
  const o = { ...(options || {}) };
  if (typeof o.container === 'string') o.container = document.querySelector(o.container);
  if (!(o.container instanceof Element)) throw new TypeError('Parley.join: container must be an element or a selector');
  if (typeof o.token !== 'string' || !o.token) throw new TypeError('Parley.join: token is required');
  const meeting = new Meeting(o);
  setTimeout(() => {
    meeting._start().catch((e) => {
      const err = { code: 'internal', message: e?.message || String(e) };
      meeting._emit('error', err);
      meeting._end(1006, err.message);
    });
  }, 0);
  return meeting;
}

/**
 * Puts the embed page (`/embed/{meeting}?token=…`) into `container` as an iframe and speaks its
 * postMessage API: the same events as {@link Meeting}, and the same commands.
 * @param {import('./parley.d.ts').EmbedOptions} options
 * @returns {import('./parley.d.ts').EmbeddedMeeting}
 */
export function embed({ container, url, title = 'Meeting' }) {
  if (typeof container === 'string') container = document.querySelector(container);
  if (!(container instanceof Element)) throw new TypeError('Parley.embed: container must be an element or a selector');
  const origin = new URL(url, location.href).origin;
  const iframe = document.createElement('iframe');
  iframe.src = url;
  iframe.title = title;
  iframe.allow = 'camera; microphone; display-capture; autoplay';
  Object.assign(iframe.style, { width: '100%', height: '100%', border: '0', display: 'block' });
  container.append(iframe);
  const listeners = new Map();
  const pending = new Map();
  let nextId = 1;
  const onMessage = (ev) => {
    // Only the frame we made, from Parley's origin.
    if (ev.source !== iframe.contentWindow || ev.origin !== origin) return;
    const m = ev.data;
    if (!m || typeof m !== 'object') return;
    if (m.type === 'parley:event' && EVENTS.includes(m.event)) {
      for (const fn of [...(listeners.get(m.event) || [])]) {
        try {
          fn(m.detail);
        } catch (e) {
          console.error(`Parley: a '${m.event}' listener threw`, e);
        }
      }
    } else if (m.type === 'parley:result' && pending.has(m.id)) {
      const { resolve, reject } = pending.get(m.id);
      pending.delete(m.id);
      if (m.ok) resolve(m.value);
      else reject(Object.assign(new Error(m.error?.message || 'command failed'), m.error || {}));
    }
  };
  window.addEventListener('message', onMessage);
  const command = (name, ...args) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      iframe.contentWindow?.postMessage({ type: 'parley:command', id, command: name, args }, origin);
    });
  return {
    iframe,
    on(name, fn) {
      if (!EVENTS.includes(name)) throw new TypeError(`unknown Parley event ${JSON.stringify(name)}`);
      if (!listeners.has(name)) listeners.set(name, new Set());
      listeners.get(name).add(fn);
      return () => listeners.get(name)?.delete(fn);
    },
    off(name, fn) {
      listeners.get(name)?.delete(fn);
    },
    mute: (kind) => command('mute', kind),
    unmute: (kind) => command('unmute', kind),
    setCamera: (on) => command('setCamera', on),
    startScreenShare: () => command('startScreenShare'),
    stopScreenShare: () => command('stopScreenShare'),
    leave: () => command('leave'),
    destroy() {
      window.removeEventListener('message', onMessage);
      iframe.remove();
    },
  };
}

export const Parley = Object.freeze({ join, embed, VERSION, EVENTS });
export default Parley;
