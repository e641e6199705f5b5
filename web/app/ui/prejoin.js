// The pre-join screen: camera preview, microphone level, device choice, name, and whether to join
// with the microphone and camera on. Hands the opened tracks to the meeting so nothing is re-asked.

import { openDevice, listDevices } from '../media.js';
import { h, setToggle } from './dom.js';
import { icons } from './icons.js';

const NAME_KEY = 'parley.displayName';

export class Prejoin {
  constructor(els) {
    this.els = els;
    this.mic = null;
    this.cam = null;
    this.micOn = true;
    this.camOn = true;
    this._meter = null;
    els.name.value = localStorage.getItem(NAME_KEY) || '';
    els.micToggle.addEventListener('click', () => this.toggleMic());
    els.camToggle.addEventListener('click', () => this.toggleCam());
    els.audioSelect.addEventListener('change', () => this._switch('audio'));
    els.videoSelect.addEventListener('change', () => this._switch('video'));
  }

  async init() {
    const errors = [];
    // Ask for both at once where possible: one permission prompt instead of two.
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } },
      });
      this.mic = stream.getAudioTracks()[0] || null;
      this.cam = stream.getVideoTracks()[0] || null;
    } catch {
      // One of the two may still work alone (e.g. no camera attached): try each separately.
      try {
        this.mic = await openDevice('audio');
      } catch (e) {
        errors.push(e.message);
      }
      try {
        this.cam = await openDevice('video');
      } catch (e) {
        errors.push(e.message);
      }
    }
    if (!this.mic) this.micOn = false;
    if (!this.cam) this.camOn = false;
    this.els.mediaError.textContent = errors.join(' ');
    await this._fillDevices();
    this._showPreview();
    this._startMeter();
    this._renderToggles();
    navigator.mediaDevices?.addEventListener?.('devicechange', () => this._fillDevices());
  }

  async _fillDevices() {
    const { audio, video } = await listDevices();
    const fill = (select, list, current, none) => {
      const currentId = current?.getSettings?.().deviceId;
      select.replaceChildren(
        ...(list.length ? list : [{ deviceId: '', label: none }]).map((d) =>
          h('option', { value: d.deviceId, selected: d.deviceId === currentId }, d.label),
        ),
      );
      select.disabled = list.length === 0;
    };
    fill(this.els.audioSelect, audio, this.mic, 'No microphone found');
    fill(this.els.videoSelect, video, this.cam, 'No camera found');
  }

  async _switch(kind) {
    const select = kind === 'audio' ? this.els.audioSelect : this.els.videoSelect;
    const old = kind === 'audio' ? this.mic : this.cam;
    try {
      const track = await openDevice(kind, select.value);
      old && old.stop();
      if (kind === 'audio') {
        this.mic = track;
        track.enabled = this.micOn;
        this._startMeter();
      } else {
        this.cam = track;
        if (!this.camOn) {
          track.stop();
          this.cam = null;
        }
        this._showPreview();
      }
      this.els.mediaError.textContent = '';
    } catch (e) {
      this.els.mediaError.textContent = e.message;
    }
  }

  async toggleMic() {
    if (!this.mic) {
      try {
        this.mic = await openDevice('audio', this.els.audioSelect.value || undefined);
        this._startMeter();
        await this._fillDevices();
      } catch (e) {
        this.els.mediaError.textContent = e.message;
        return;
      }
      this.micOn = true;
    } else {
      this.micOn = !this.micOn;
    }
    this.mic.enabled = this.micOn;
    this._renderToggles();
  }

  async toggleCam() {
    if (this.camOn) {
      // Stop the device, not just the preview: the camera light should go off.
      this.cam && this.cam.stop();
      this.cam = null;
      this.camOn = false;
    } else {
      try {
        this.cam = await openDevice('video', this.els.videoSelect.value || undefined);
        await this._fillDevices();
      } catch (e) {
        this.els.mediaError.textContent = e.message;
        return;
      }
      this.camOn = true;
    }
    this._showPreview();
    this._renderToggles();
  }

  _renderToggles() {
    // Constant names; aria-pressed carries on/off (and the icon shows it).
    setToggle(this.els.micToggle, this.micOn, 'Microphone', this.micOn ? icons.mic : icons.micOff);
    setToggle(this.els.camToggle, this.camOn, 'Camera', this.camOn ? icons.cam : icons.camOff);
  }

  _showPreview() {
    const v = this.els.preview;
    v.srcObject = this.cam ? new MediaStream([this.cam]) : null;
    this.els.previewBox.classList.toggle('no-video', !this.cam);
    if (this.cam) v.play().catch(() => {});
  }

  // A live input level so people can see the microphone works before joining.
  _startMeter() {
    this._stopMeter();
    if (!this.mic || !window.AudioContext) return;
    try {
      const ctx = new AudioContext();
      const src = ctx.createMediaStreamSource(new MediaStream([this.mic]));
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 512;
      src.connect(analyser);
      const data = new Uint8Array(analyser.fftSize);
      const meter = this.els.level;
      let raf = 0;
      const tick = () => {
        analyser.getByteTimeDomainData(data);
        let peak = 0;
        for (const x of data) peak = Math.max(peak, Math.abs(x - 128));
        meter.value = this.micOn ? Math.min(1, peak / 64) : 0;
        raf = requestAnimationFrame(tick);
      };
      tick();
      // Autoplay policy may keep the context suspended until the first click anywhere.
      const resume = () => ctx.resume().catch(() => {});
      document.addEventListener('pointerdown', resume, { once: true });
      this._meter = { ctx, stop: () => cancelAnimationFrame(raf) };
    } catch {
      this._meter = null;
    }
  }

  _stopMeter() {
    if (this._meter) {
      this._meter.stop();
      this._meter.ctx.close().catch(() => {});
      this._meter = null;
    }
  }

  /** What the meeting starts with. The pre-join screen stops owning the tracks. */
  finish() {
    this._stopMeter();
    const name = this.els.name.value.trim();
    localStorage.setItem(NAME_KEY, name);
    this.els.preview.srcObject = null;
    return {
      name,
      mic: this.mic,
      cam: this.cam,
      micOn: this.micOn && !!this.mic,
      camOn: this.camOn && !!this.cam,
      audioDeviceId: this.els.audioSelect.value || undefined,
      videoDeviceId: this.els.videoSelect.value || undefined,
    };
  }
}
