// The subscriber peer connection: the server offers one receive-only transceiver per remote track and
// says, in `subscribe_offer.tracks`, whose media each mid carries. We answer and tell the UI which
// MediaStreamTrack belongs to which participant and source.

/**
 * Events: `tracks` (detail: array of {mid, participantId, source, kind, track}) after each applied
 * offer — the complete current set, so the UI can add what is new and remove what vanished;
 * `state` (detail: connectionState).
 */
export class Subscriber extends EventTarget {
  constructor(signaling) {
    super();
    this.signaling = signaling;
    this.pc = null;
    this.current = [];
    this._queue = Promise.resolve();
    this._candidateBuffer = null;
    this._generation = 0;
  }

  _build() {
    const pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
      iceServers: this.signaling.iceServers ?? [],
    });
    pc.onicecandidate = (ev) => {
      if (!ev.candidate || !ev.candidate.candidate) return;
      const msg = {
        type: 'ice_candidate',
        target: 'subscriber',
        candidate: {
          candidate: ev.candidate.candidate,
          sdpMid: ev.candidate.sdpMid,
          sdpMLineIndex: ev.candidate.sdpMLineIndex,
        },
      };
      if (this._candidateBuffer) this._candidateBuffer.push(msg);
      else this.signaling.send(msg);
    };
    pc.onconnectionstatechange = () => {
      this.dispatchEvent(new CustomEvent('state', { detail: pc.connectionState }));
    };
    this.pc = pc;
    return pc;
  }

  /** Handles a `subscribe_offer`. Offers are applied one at a time, in arrival order. */
  onOffer(msg) {
    const generation = this._generation;
    // An offer queued before a reset belongs to the server's previous connection: skip it.
    const run = () => (generation === this._generation ? this._apply(msg) : undefined);
    this._queue = this._queue.then(run, run);
    return this._queue;
  }

  async _apply(msg) {
    if (!this.pc) this._build();
    try {
      await this._answer(msg);
    } catch (e) {
      // After a resume the server may offer with a new DTLS/ICE identity, which an existing
      // connection refuses; a fresh connection accepts it.
      console.warn('subscriber offer failed on the current connection, rebuilding', e);
      const old = this.pc;
      this._build();
      try {
        old.close();
      } catch {}
      await this._answer(msg);
    }
  }

  async _answer(msg) {
    const pc = this.pc;
    this._candidateBuffer = [];
    try {
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      this.signaling.send({ type: 'subscribe_answer', sdp: pc.localDescription.sdp });
    } finally {
      const buffered = this._candidateBuffer || [];
      this._candidateBuffer = null;
      for (const m of buffered) this.signaling.send(m);
    }
    if (this.pc === pc) this._reconcile(pc, msg.tracks || []);
  }

  // Maps mids to transceivers. We read receiver.track rather than relying on `ontrack` because the
  // server may reuse a mid for another participant's track, which fires no new `track` event.
  _reconcile(pc, tracks) {
    const byMid = new Map(tracks.map((t) => [String(t.mid), t]));
    const list = [];
    for (const tx of pc.getTransceivers()) {
      if (tx.mid == null) continue;
      const info = byMid.get(String(tx.mid));
      if (!info) continue;
      list.push({
        mid: String(tx.mid),
        participantId: info.participant_id,
        source: info.source,
        kind: info.kind || tx.receiver.track.kind,
        track: tx.receiver.track,
        receiver: tx.receiver,
      });
    }
    this.current = list;
    this.dispatchEvent(new CustomEvent('tracks', { detail: list }));
  }

  /** Per remote track inbound RTP statistics (what the e2e test and the debug overlay read). */
  async inboundStats() {
    const out = [];
    for (const t of this.current) {
      let report;
      try {
        report = await t.receiver.getStats();
      } catch {
        continue;
      }
      let inbound = null;
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && !s.isRemote) inbound = s;
      });
      out.push({
        mid: t.mid,
        participantId: t.participantId,
        source: t.source,
        kind: t.kind,
        framesDecoded: inbound?.framesDecoded ?? 0,
        frameWidth: inbound?.frameWidth ?? 0,
        frameHeight: inbound?.frameHeight ?? 0,
        packetsReceived: inbound?.packetsReceived ?? 0,
        packetsLost: inbound?.packetsLost ?? 0,
        bytesReceived: inbound?.bytesReceived ?? 0,
        totalAudioEnergy: inbound?.totalAudioEnergy,
      });
    }
    return out;
  }

  /**
   * After a signaling resume the server starts a fresh subscriber connection and offers again; drop
   * ours so that offer lands on a new one. The current tracks stay on screen until it arrives.
   */
  reset() {
    this._generation += 1;
    this._queue = Promise.resolve();
    try {
      this.pc && this.pc.close();
    } catch {}
    this.pc = null;
  }

  close() {
    this._generation += 1;
    try {
      this.pc && this.pc.close();
    } catch {}
    this.pc = null;
    this.current = [];
  }
}
