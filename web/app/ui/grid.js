// The adaptive video grid. One tile per participant (camera or avatar) plus one per screen share.
// Without a share, tiles form the most space-filling grid of 16:9 cells; with a share, the first
// share takes the stage and the other tiles form a filmstrip beside (or below) it.

import { h, initials } from './dom.js';
import { icons } from './icons.js';

const ASPECT = 16 / 9;

export class Grid {
  /**
   * @param container the grid element
   * @param hooks {videoAdded(el, participantId, source), videoRemoved(el)} — used to report render sizes
   */
  constructor(container, hooks = {}) {
    this.el = container;
    this.hooks = hooks;
    this.tiles = new Map(); // key "pid:source" -> {el, video, participantId, source, local}
    this._resize = new ResizeObserver(() => this.layout());
    this._resize.observe(container);
  }

  static key(participantId, source) {
    return `${participantId}:${source}`;
  }

  /** Creates or updates the camera tile of a participant (also used for the local self-view). */
  upsertPerson(participantId, { name, role, local = false }) {
    const key = Grid.key(participantId, 'camera');
    let t = this.tiles.get(key);
    if (!t) {
      t = this._createTile(participantId, 'camera', local);
      this.tiles.set(key, t);
      this.el.append(t.el);
      this.layout();
    }
    const label = local ? `${name} (you)` : name;
    t.nameEl.textContent = label + (role === 'host' ? ' · host' : '');
    t.avatar.textContent = initials(name);
    t.el.setAttribute('aria-label', `${label}${role === 'host' ? ', host' : ''}`);
    t.name = name;
    return t;
  }

  /** A screen-share tile, created when the share's track arrives. */
  ensureScreen(participantId, name, local = false) {
    const key = Grid.key(participantId, 'screen');
    let t = this.tiles.get(key);
    if (!t) {
      t = this._createTile(participantId, 'screen', local);
      this.tiles.set(key, t);
      // Shares go first in DOM order so the stage tile is also first for keyboard/screen reader users.
      this.el.prepend(t.el);
    }
    const label = local ? 'Your screen' : `${name}'s screen`;
    t.nameEl.textContent = label;
    t.el.setAttribute('aria-label', label);
    t.avatar.textContent = '';
    this.layout();
    return t;
  }

  _createTile(participantId, source, local) {
    const video = h('video', { autoplay: true, playsinline: true, muted: true });
    // Remote audio plays from separate <audio> elements; the tile's video stays muted so autoplay
    // policies never block it.
    video.muted = true;
    const avatar = h('div', { class: 'avatar', 'aria-hidden': 'true' });
    const micOff = h('span', { class: 'mic-off', title: 'Microphone off', html: icons.micOff });
    micOff.append(h('span', { class: 'visually-hidden' }, 'microphone off'));
    const nameEl = h('span', { class: 'name-text' });
    const el = h(
      'figure',
      {
        class: `tile tile-${source}${local ? ' tile-local' : ''} no-video`,
        role: 'group',
        dataset: { participantId, source },
      },
      video,
      avatar,
      h('figcaption', { class: 'name' }, micOff, nameEl),
    );
    const t = { el, video, avatar, nameEl, micOff, participantId, source, local, track: null };
    if (!local && this.hooks.videoAdded) this.hooks.videoAdded(video, participantId, source);
    return t;
  }

  /** Shows a video track in a tile, or the avatar when track is null. */
  setTrack(participantId, source, track) {
    const t = this.tiles.get(Grid.key(participantId, source));
    if (!t) return;
    if (t.track === track) return;
    t.track = track;
    if (track) {
      t.video.srcObject = new MediaStream([track]);
      t.video.play().catch(() => {}); // autoplay of muted video is allowed; ignore a racing pause
    } else {
      t.video.srcObject = null;
    }
    this._refreshVideoState(t);
  }

  setMicMuted(participantId, muted) {
    const t = this.tiles.get(Grid.key(participantId, 'camera'));
    if (t) t.el.classList.toggle('mic-muted', !!muted);
  }

  setCameraMuted(participantId, muted) {
    const t = this.tiles.get(Grid.key(participantId, 'camera'));
    if (!t) return;
    t.cameraMuted = !!muted;
    this._refreshVideoState(t);
  }

  _refreshVideoState(t) {
    t.el.classList.toggle('no-video', !t.track || !!t.cameraMuted);
  }

  setActiveSpeaker(participantId) {
    for (const t of this.tiles.values()) {
      t.el.classList.toggle('speaking', t.source === 'camera' && t.participantId === participantId);
    }
  }

  remove(participantId, source) {
    const key = Grid.key(participantId, source);
    const t = this.tiles.get(key);
    if (!t) return;
    if (!t.local && this.hooks.videoRemoved) this.hooks.videoRemoved(t.video);
    t.video.srcObject = null;
    t.el.remove();
    this.tiles.delete(key);
    this.layout();
  }

  removePerson(participantId) {
    this.remove(participantId, 'camera');
    this.remove(participantId, 'screen');
  }

  /** Floats an emoji over a participant's tile for a moment. */
  showReaction(participantId, emoji) {
    const t = this.tiles.get(Grid.key(participantId, 'camera'));
    if (!t) return;
    const bubble = h('span', { class: 'reaction-bubble', 'aria-hidden': 'true' }, emoji);
    t.el.append(bubble);
    setTimeout(() => bubble.remove(), 3000);
  }

  layout() {
    const tiles = [...this.tiles.values()];
    const screens = tiles.filter((t) => t.source === 'screen');
    const stage = screens[0] || null;
    for (const t of tiles) t.el.classList.toggle('stage-tile', t === stage);
    const W = this.el.clientWidth || 1;
    const H = this.el.clientHeight || 1;
    const style = this.el.style;
    if (stage) {
      const others = tiles.length - 1;
      const side = W >= H; // landscape: filmstrip on the right; portrait: below
      this.el.classList.add('has-stage');
      this.el.classList.toggle('stage-portrait', !side);
      const strip = Math.max(others, 1);
      if (side) {
        style.gridTemplateColumns = others ? 'minmax(0, 1fr) minmax(140px, 22%)' : 'minmax(0, 1fr)';
        style.gridTemplateRows = `repeat(${strip}, minmax(0, 1fr))`;
      } else {
        style.gridTemplateColumns = `repeat(${strip}, minmax(0, 1fr))`;
        style.gridTemplateRows = others ? 'minmax(0, 3fr) minmax(0, 1fr)' : 'minmax(0, 1fr)';
      }
      return;
    }
    this.el.classList.remove('has-stage', 'stage-portrait');
    const n = Math.max(tiles.length, 1);
    // Try every column count; keep the one giving the largest 16:9 tile.
    let best = { cols: 1, size: 0 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const w = Math.min(W / cols, (H / rows) * ASPECT);
      if (w > best.size) best = { cols, size: w };
    }
    const rows = Math.ceil(n / best.cols);
    style.gridTemplateColumns = `repeat(${best.cols}, minmax(0, 1fr))`;
    style.gridTemplateRows = `repeat(${rows}, minmax(0, 1fr))`;
  }
}
