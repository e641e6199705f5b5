// The publisher peer connection: the client offers its microphone, camera (simulcast), screen share
// and the `parley` data channel; the server answers. See docs/protocol.md, "Media model".

/** Three simulcast layers; the SFU picks one per subscriber from its bandwidth and render size. */
export const CAMERA_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', maxBitrate: 1_500_000 },
];
const ANSWER_TIMEOUT_MS = 15_000;

/**
 * Events: `data` (detail: parsed data-channel message), `state` (detail: connectionState),
 * `channel` (detail: 'open'|'closed').
 */
export class Publisher extends EventTarget {
  constructor(signaling) {
    super();
    this.signaling = signaling;
    // Tracks by source, kept so that a rebuilt connection can publish the same media again.
    this.tracks = { microphone: null, camera: null, screen: null };
    this.pc = null;
    this.dc = null;
    this.tx = {};
    this._queue = Promise.resolve();
    this._answerWaiter = null;
    this._candidateBuffer = null;
  }

  /** Creates the connection with the current tracks and makes the first offer. */
  async start({ microphone = null, camera = null } = {}) {
    this.tracks.microphone = microphone;
    this.tracks.camera = camera;
    this._build();
    await this.negotiate();
  }

  _build() {
    // No STUN: the SFU is ICE-lite and puts its reachable host candidates in its answer. TURN
    // only when the server hands out a relay, for networks that block its UDP port.
    const pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
      iceServers: this.signaling.iceServers ?? [],
    });
    this.pc = pc;
    this.tx = {};
    // The data channel must exist before the first offer so the offer has an m=application section.
    this.dc = pc.createDataChannel('parley', { ordered: true });
    this._wireChannel(this.dc);

    // Microphone and camera transceivers exist even while the device is off, so turning it on later
    // is a replaceTrack (no renegotiation) and the server always knows both sources.
    const stream = new MediaStream();
    this.tx.microphone = pc.addTransceiver(this.tracks.microphone || 'audio', {
      direction: 'sendonly',
      streams: [stream],
    });
    this.tx.camera = this._addCamera(pc, stream);
    if (this.tracks.screen) {
      this.tx.screen = pc.addTransceiver(this.tracks.screen, {
        direction: 'sendonly',
        streams: [new MediaStream([this.tracks.screen])],
      });
    }

    pc.onicecandidate = (ev) => {
      if (!ev.candidate || !ev.candidate.candidate) return; // end of candidates: nothing to say
      const msg = {
        type: 'ice_candidate',
        target: 'publisher',
        candidate: {
          candidate: ev.candidate.candidate,
          sdpMid: ev.candidate.sdpMid,
          sdpMLineIndex: ev.candidate.sdpMLineIndex,
        },
      };
      // Candidates must not overtake the offer they belong to.
      if (this._candidateBuffer) this._candidateBuffer.push(msg);
      else this.signaling.send(msg);
    };
    pc.onconnectionstatechange = () => {
      this.dispatchEvent(new CustomEvent('state', { detail: pc.connectionState }));
    };
  }

  _addCamera(pc, stream) {
    const track = this.tracks.camera || 'video';
    try {
      return pc.addTransceiver(track, {
        direction: 'sendonly',
        streams: [stream],
        sendEncodings: CAMERA_ENCODINGS,
      });
    } catch (e) {
      // A browser without simulcast in addTransceiver still gets a single-layer camera.
      console.warn('simulcast unavailable, publishing one layer', e);
      return pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    }
  }

  _wireChannel(dc) {
    dc.onopen = () => this.dispatchEvent(new CustomEvent('channel', { detail: 'open' }));
    dc.onclose = () => this.dispatchEvent(new CustomEvent('channel', { detail: 'closed' }));
    dc.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.dispatchEvent(new CustomEvent('data', { detail: msg }));
    };
  }

  get channelOpen() {
    return !!this.dc && this.dc.readyState === 'open';
  }

  /** Sends a chat/reaction over the data channel; false when it is not open (use the WS fallback). */
  sendData(obj) {
    if (!this.channelOpen) return false;
    try {
      this.dc.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  /** Swaps the track of a source without renegotiation (device change, camera on/off). */
  async replaceTrack(source, track) {
    this.tracks[source] = track;
    const tx = this.tx[source];
    if (tx) await tx.sender.replaceTrack(track);
  }

  /** Publishes a screen-share track as source `screen`, on a new transceiver each time. */
  async startScreen(track) {
    if ('contentHint' in track) track.contentHint = 'detail';
    this.tracks.screen = track;
    this.tx.screen = this.pc.addTransceiver(track, {
      direction: 'sendonly',
      streams: [new MediaStream([track])],
    });
    await this.negotiate();
  }

  async stopScreen() {
    this.tracks.screen = null;
    const tx = this.tx.screen;
    this.tx.screen = null;
    if (!tx) return;
    // Stopping (not just 'inactive') rejects the m-line (port 0): the SFU sees the remote track end
    // and removes it from everyone's subscription. The browser may recycle the m-line later.
    tx.stop();
    await this.negotiate();
  }

  /** What we publish, by the mids the browser assigned (known after setLocalDescription). */
  describeTracks() {
    const out = [];
    for (const [source, tx] of Object.entries(this.tx)) {
      if (tx && tx.mid != null && tx.direction === 'sendonly') out.push({ mid: tx.mid, source });
    }
    return out;
  }

  /** Offer → publish_offer → publish_answer. Serialized: a change during a negotiation waits its turn. */
  negotiate(opts = {}) {
    const run = () => this._negotiate(opts);
    this._queue = this._queue.then(run, run);
    return this._queue;
  }

  async _negotiate({ iceRestart = false } = {}) {
    const pc = this.pc;
    if (!pc || pc.signalingState === 'closed') return;
    this._candidateBuffer = [];
    const offer = await pc.createOffer({ iceRestart });
    await pc.setLocalDescription(offer);
    const answerPromise = this._waitAnswer();
    const sent = this.signaling.send({
      type: 'publish_offer',
      sdp: pc.localDescription.sdp,
      tracks: this.describeTracks(),
    });
    const buffered = this._candidateBuffer;
    this._candidateBuffer = null;
    for (const m of buffered) this.signaling.send(m);
    if (!sent) {
      // The socket is down; after resume the whole negotiation is redone.
      this._answerWaiter = null;
      await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      return;
    }
    const sdp = await answerPromise;
    if (sdp == null) return; // superseded (resume, close)
    await pc.setRemoteDescription({ type: 'answer', sdp });
  }

  _waitAnswer() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._answerWaiter = null;
        reject(new Error('the server did not answer the publish offer'));
      }, ANSWER_TIMEOUT_MS);
      this._answerWaiter = (sdp) => {
        clearTimeout(timer);
        this._answerWaiter = null;
        resolve(sdp);
      };
    });
  }

  /** Called with the server's `publish_answer`. */
  onAnswer(sdp) {
    if (this._answerWaiter) this._answerWaiter(sdp);
  }

  /**
   * Media broke while signaling still works (e.g. the network changed): restart ICE on the same
   * connection, and rebuild it if the server refuses that.
   */
  async restartIce() {
    try {
      await this.negotiate({ iceRestart: true });
    } catch (e) {
      console.warn('ICE restart failed, rebuilding the publisher connection', e);
      await this.rebuild();
    }
  }

  /**
   * A fresh connection with the same tracks and a fresh offer. Used after a signaling resume: the
   * server then starts new peer connections for us, which an old DTLS session cannot talk to.
   */
  async rebuild() {
    if (this._answerWaiter) this._answerWaiter(null);
    const old = this.pc;
    this._build();
    try {
      old && old.close();
    } catch {}
    this._queue = Promise.resolve();
    await this.negotiate();
  }

  /** Per outbound RTP stream (one per simulcast layer) statistics, for diagnostics. */
  async outboundStats() {
    if (!this.pc) return [];
    const sourceByMid = new Map(this.describeTracks().map((t) => [t.mid, t.source]));
    const report = await this.pc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type !== 'outbound-rtp') return;
      out.push({
        mid: s.mid,
        source: sourceByMid.get(s.mid) ?? null,
        kind: s.kind,
        rid: s.rid ?? null,
        packetsSent: s.packetsSent ?? 0,
        bytesSent: s.bytesSent ?? 0,
        framesEncoded: s.framesEncoded,
        keyFramesEncoded: s.keyFramesEncoded,
        frameWidth: s.frameWidth,
        pliCount: s.pliCount,
        nackCount: s.nackCount,
        qualityLimitationReason: s.qualityLimitationReason,
      });
    });
    return out;
  }

  close() {
    if (this._answerWaiter) this._answerWaiter(null);
    try {
      this.pc && this.pc.close();
    } catch {}
    this.pc = null;
  }
}
