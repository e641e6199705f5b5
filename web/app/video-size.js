// Tells the server how large each remote video is drawn (`video_size`), so the SFU sends the simulcast
// layer that fits: a thumbnail gets `q`, the stage gets `f`, a hidden tile gets nothing (0x0).

const DEBOUNCE_MS = 300;

export class VideoSizeReporter {
  constructor(send) {
    this.send = send; // (msg) => boolean
    this.entries = new Map(); // video element -> {participantId, source, w, h, sent, timer}
    this.observer = new ResizeObserver((records) => {
      for (const r of records) this._measured(r.target);
    });
  }

  observe(video, participantId, source) {
    this.entries.set(video, { participantId, source, w: 0, h: 0, sent: null, timer: null });
    this.observer.observe(video);
  }

  unobserve(video) {
    const e = this.entries.get(video);
    if (e) clearTimeout(e.timer);
    this.entries.delete(video);
    this.observer.unobserve(video);
  }

  _measured(video) {
    const e = this.entries.get(video);
    if (!e) return;
    // Device pixels: a 320-CSS-pixel tile on a 2x display needs a 640-pixel layer to look sharp.
    const dpr = window.devicePixelRatio || 1;
    const visible = video.isConnected && video.offsetParent !== null;
    e.w = visible ? Math.round(video.clientWidth * dpr) : 0;
    e.h = visible ? Math.round(video.clientHeight * dpr) : 0;
    clearTimeout(e.timer);
    // Debounced: a window drag produces dozens of sizes; the server needs the final one.
    e.timer = setTimeout(() => this._report(video, false), DEBOUNCE_MS);
  }

  _report(video, force) {
    const e = this.entries.get(video);
    if (!e) return;
    const key = `${e.w}x${e.h}`;
    if (!force && e.sent === key) return;
    const ok = this.send({
      type: 'video_size',
      participant_id: e.participantId,
      source: e.source,
      width: e.w,
      height: e.h,
    });
    if (ok) e.sent = key;
  }

  /** After a resume the server may have forgotten our sizes: send them all again. */
  resendAll() {
    for (const video of this.entries.keys()) this._report(video, true);
  }

  /** Re-measures everything (e.g. after a layout change that ResizeObserver cannot see, like display:none). */
  remeasureAll() {
    for (const video of this.entries.keys()) this._measured(video);
  }
}
