// What the SDK draws in the developer's container: a grid of video tiles (one per participant,
// one per screen share) and hidden audio elements. It lives in a shadow root so neither the host
// page's CSS nor ours leaks across, and it is styled through the CSSOM (element.style), which a
// host page's Content-Security-Policy allows even without 'unsafe-inline'.

const TILE_MIN_WIDTH = 220;

function el(tag, style = {}, attrs = {}) {
  const e = document.createElement(tag);
  Object.assign(e.style, style);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === true) e.setAttribute(k, '');
    else if (v !== false && v != null) e.setAttribute(k, String(v));
  }
  return e;
}

function initials(name) {
  return (
    String(name || '?')
      .trim()
      .split(/\s+/)
      .slice(0, 2)
      .map((w) => w[0] || '')
      .join('')
      .toUpperCase() || '?'
  );
}

export class MeetingView {
  /**
   * @param {Element} container the developer's element; the view fills it
   * @param {{videoAdded?: (video: HTMLVideoElement, participantId: string, source: string) => void,
   *          videoRemoved?: (video: HTMLVideoElement) => void}} hooks render-size reporting
   */
  constructor(container, hooks = {}) {
    this.hooks = hooks;
    this.host = el('div', { width: '100%', height: '100%', display: 'block' }, { 'data-parley': 'meeting' });
    container.append(this.host);
    const root = this.host.attachShadow({ mode: 'open' });
    this.grid = el(
      'div',
      {
        display: 'grid',
        gridTemplateColumns: `repeat(auto-fit, minmax(min(100%, ${TILE_MIN_WIDTH}px), 1fr))`,
        alignContent: 'center',
        gap: '6px',
        padding: '6px',
        boxSizing: 'border-box',
        width: '100%',
        height: '100%',
        overflow: 'auto',
        background: '#0f1115',
        fontFamily: 'system-ui, sans-serif',
      },
      { role: 'list', 'aria-label': 'Participants' },
    );
    this.audio = el('div', { display: 'none' });
    root.append(this.grid, this.audio);
    /** "pid:source" -> {el, video, label, avatar, participantId, source} */
    this.tiles = new Map();
    /** "pid:source" -> <audio> */
    this.audioEls = new Map();
    this.activeSpeaker = null;
  }

  /** Creates or renames the camera tile of a participant (`local`: our own, mirrored and muted). */
  upsertPerson(participantId, name, { local = false } = {}) {
    const t = this._tile(participantId, 'camera', local);
    const label = local ? `${name} (you)` : name;
    t.label.textContent = label;
    t.avatar.textContent = initials(name);
    t.el.setAttribute('aria-label', label);
  }

  removePerson(participantId) {
    for (const source of ['camera', 'screen']) this._remove(participantId, source);
    for (const [key, a] of this.audioEls) {
      if (key.startsWith(`${participantId}:`)) this.setAudio(key, null);
    }
  }

  /** Shows `track` on the participant's `source` tile (camera or screen); null shows the avatar. */
  setVideo(participantId, source, track, { name = '', local = false } = {}) {
    if (source === 'screen' && !track) {
      this._remove(participantId, 'screen');
      return;
    }
    const t = this._tile(participantId, source, local);
    if (source === 'screen') {
      const label = local ? 'Your screen' : `${name || 'Someone'}'s screen`;
      t.label.textContent = label;
      t.el.setAttribute('aria-label', label);
    }
    const current = t.video.srcObject?.getVideoTracks?.()[0] || null;
    if (current === track) return;
    t.video.srcObject = track ? new MediaStream([track]) : null;
    // The video stays laid out under the avatar so its render size is always reported.
    t.avatar.style.display = track ? 'none' : 'flex';
    if (track) t.video.play().catch(() => {});
  }

  /** Plays a remote audio track under `key` ("pid:source"); null stops it. */
  setAudio(key, track) {
    let a = this.audioEls.get(key);
    if (!track) {
      if (a) {
        a.srcObject = null;
        a.remove();
        this.audioEls.delete(key);
      }
      return;
    }
    if (!a) {
      a = el('audio', {}, { autoplay: true });
      this.audio.append(a);
      this.audioEls.set(key, a);
    }
    if (a.srcObject?.getTracks()[0] !== track) {
      a.srcObject = new MediaStream([track]);
      a.play().catch(() => {
        // Autoplay blocked until the user interacts with the page: retry then.
        document.addEventListener('pointerdown', () => a.play().catch(() => {}), { once: true });
      });
    }
  }

  /** Outlines the active speaker's camera tile. */
  setActiveSpeaker(participantId) {
    this.activeSpeaker = participantId;
    for (const t of this.tiles.values()) {
      const on = t.source === 'camera' && t.participantId === participantId;
      t.el.style.boxShadow = on ? '0 0 0 3px #4f9dff' : 'none';
    }
  }

  keys() {
    return [...this.tiles.keys()];
  }

  destroy() {
    for (const t of this.tiles.values()) {
      this.hooks.videoRemoved?.(t.video);
      t.video.srcObject = null;
    }
    for (const a of this.audioEls.values()) a.srcObject = null;
    this.tiles.clear();
    this.audioEls.clear();
    this.host.remove();
  }

  _tile(participantId, source, local) {
    const key = `${participantId}:${source}`;
    let t = this.tiles.get(key);
    if (t) return t;
    const tile = el(
      'div',
      {
        position: 'relative',
        aspectRatio: '16 / 9',
        background: '#22262e',
        borderRadius: '8px',
        overflow: 'hidden',
        gridColumn: source === 'screen' ? '1 / -1' : 'auto',
      },
      { role: 'listitem', 'data-participant': participantId, 'data-source': source },
    );
    const video = el(
      'video',
      {
        width: '100%',
        height: '100%',
        objectFit: source === 'screen' ? 'contain' : 'cover',
        display: 'block',
        transform: local && source === 'camera' ? 'scaleX(-1)' : 'none',
      },
      { autoplay: true, playsinline: true },
    );
    video.muted = true; // sound plays from the audio elements, whatever happens to tiles
    const avatar = el('div', {
      position: 'absolute',
      inset: '0',
      display: 'flex',
      alignItems: 'center',
      justifyContent: 'center',
      background: '#22262e',
      color: '#e8eaed',
      fontSize: '28px',
      fontWeight: '600',
    });
    const label = el('div', {
      position: 'absolute',
      left: '6px',
      bottom: '6px',
      maxWidth: 'calc(100% - 12px)',
      overflow: 'hidden',
      textOverflow: 'ellipsis',
      whiteSpace: 'nowrap',
      padding: '2px 6px',
      borderRadius: '4px',
      background: 'rgba(0, 0, 0, 0.6)',
      color: '#fff',
      fontSize: '13px',
    });
    tile.append(video, avatar, label);
    t = { el: tile, video, avatar, label, participantId, source, local };
    this.tiles.set(key, t);
    // Shares first: the stage is also first for keyboard and screen-reader users.
    if (source === 'screen') this.grid.prepend(tile);
    else this.grid.append(tile);
    if (!local) this.hooks.videoAdded?.(video, participantId, source);
    return t;
  }

  _remove(participantId, source) {
    const key = `${participantId}:${source}`;
    const t = this.tiles.get(key);
    if (!t) return;
    this.hooks.videoRemoved?.(t.video);
    t.video.srcObject = null;
    t.el.remove();
    this.tiles.delete(key);
  }
}
