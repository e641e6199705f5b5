// The WebSocket signaling client (docs/protocol.md): join, message dispatch, keep-alive, and
// reconnection with `resume` so a network blip does not cost the participant its seat.

/** Close codes after which reconnecting is pointless: the server decided we are out. */
const FINAL_CLOSE_CODES = new Set([1000, 1008, 1009, 4000, 4001, 4002, 4003]);
/** The server keeps a dropped participant's seat for 30 s; stop trying a little before that. */
const RESUME_WINDOW_MS = 29_000;
const JOIN_TIMEOUT_MS = 10_000;
/**
 * Close codes after a `redirect` (docs/protocol.md, "Several nodes"): 4010 the meeting is on
 * another node, 4011 this node drains and we rejoin through the public address.
 */
const REDIRECT_CLOSE_CODES = new Set([4010, 4011]);
/** Redirects followed for one join before giving up (nodes that disagree must not loop us). */
const MAX_REDIRECTS = 3;
const PING_INTERVAL_MS = 10_000;
/** No frame at all for this long means the socket is dead even if the browser has not noticed. */
const SILENCE_LIMIT_MS = 25_000;

export class SignalingClosed extends Error {
  constructor(code, reason, redirected = false) {
    super(reason || `connection closed (${code})`);
    this.code = code;
    this.reason = reason || '';
    /** The server sent us elsewhere (`this.url` already points there). */
    this.redirected = redirected;
  }
}

/**
 * Events (all CustomEvent, `detail` = the message or info):
 *  - `message`      every server message (also dispatched under its own `type`, e.g. `chat`)
 *  - `reconnecting` the socket dropped; trying to resume
 *  - `resumed`      resumed as the same participant (detail: the new `joined` message)
 *  - `closed`       for good (detail: {code, reason})
 */
export class Signaling extends EventTarget {
  /**
   * @param {string} url the WebSocket URL (`ws(s)://host/api/v1/ws`)
   * @param {string} token the join token
   * @param {{meetingId?: string}} [options] `meetingId`: sent in `join`; the server refuses a
   *   token for another meeting (the JS SDK passes what the embedding page asked for)
   */
  constructor(url, token, { meetingId = null } = {}) {
    super();
    this.url = url;
    /** The public address: where a drained node sends us and where every reconnect starts. */
    this.homeUrl = url;
    this.token = token;
    this.meetingId = meetingId;
    this.ws = null;
    this.participantId = null;
    this.resumeToken = null;
    this.iceServers = [];
    this.state = 'idle'; // idle | connecting | open | reconnecting | closed
    this.leaving = false;
    this._lastFrameAt = 0;
    this._pingTimer = null;
  }

  /** Opens the socket and joins; resolves with the `joined` message. */
  async connect() {
    this.state = 'connecting';
    const joined = await this._openFollowing(null);
    this._onJoined(joined);
    return joined;
  }

  /** Sends one message; returns false when the socket is not open (the caller decides what to do). */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.state !== 'open') return false;
    if (debugEnabled()) console.debug('parley ->', summarize(msg));
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  get isOpen() {
    return this.state === 'open';
  }

  /** Says goodbye; the server answers by closing with 1000 "left". */
  leave() {
    this.leaving = true;
    this.send({ type: 'leave' });
    const ws = this.ws;
    // Do not hang on a server that never closes: close ourselves shortly after.
    setTimeout(() => ws && ws.readyState < WebSocket.CLOSING && ws.close(1000, 'left'), 1000);
    this._finish(1000, 'left', false);
  }

  // Joins, following the server's redirects to the meeting's node (a few at most).
  async _openFollowing(resume) {
    for (let hop = 0; ; hop++) {
      try {
        return await this._open(resume);
      } catch (e) {
        if (!(e instanceof SignalingClosed) || !e.redirected || hop >= MAX_REDIRECTS) throw e;
      }
    }
  }

  // Where a `redirect` sends us: its url when it is a WebSocket URL, else the public address.
  _redirectTarget(msg) {
    const url = typeof msg.url === 'string' ? msg.url : '';
    return /^wss?:\/\//.test(url) ? url : this.homeUrl;
  }

  // One socket: open, send `join`, wait for `joined` (or a close, or a timeout).
  _open(resume) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (e) {
        reject(new SignalingClosed(1006, String(e)));
        return;
      }
      this.ws = ws;
      let joined = false;
      let redirect = null;
      const timer = setTimeout(() => {
        if (!joined) {
          ws.close();
          reject(new SignalingClosed(1006, 'join timed out'));
        }
      }, JOIN_TIMEOUT_MS);

      ws.onopen = () => {
        const msg = { type: 'join', token: this.token };
        if (this.meetingId) msg.meeting_id = this.meetingId;
        if (resume) msg.resume = resume;
        ws.send(JSON.stringify(msg));
      };
      ws.onmessage = (ev) => {
        this._lastFrameAt = Date.now();
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          return; // the server only sends JSON; ignore anything else rather than crash
        }
        if (msg.type === 'redirect') {
          // The close follows; we go where it says then.
          redirect = this._redirectTarget(msg);
          return;
        }
        if (!joined) {
          if (msg.type === 'joined') {
            joined = true;
            clearTimeout(timer);
            resolve(msg);
          } else if (msg.type === 'error') {
            // keep waiting: the close that usually follows carries the reason
            this._dispatch(msg);
          }
          return;
        }
        this._dispatch(msg);
      };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        const redirected = redirect !== null && REDIRECT_CLOSE_CODES.has(ev.code);
        if (redirected) this.url = redirect;
        if (!joined) {
          reject(new SignalingClosed(ev.code, ev.reason, redirected));
        } else if (this.ws === ws) {
          this._onDrop(ev.code, ev.reason);
        }
      };
      ws.onerror = () => {
        // onclose follows with the details
      };
    });
  }

  _onJoined(joined) {
    this.participantId = joined.participant_id;
    this.resumeToken = joined.resume_token;
    // TURN relays with this participant's expiring credentials, when the server has a relay.
    this.iceServers = Array.isArray(joined.ice_servers) ? joined.ice_servers : [];
    this.state = 'open';
    this._lastFrameAt = Date.now();
    clearInterval(this._pingTimer);
    this._pingTimer = setInterval(() => this._keepAlive(), PING_INTERVAL_MS);
  }

  _keepAlive() {
    if (this.state !== 'open') return;
    if (Date.now() - this._lastFrameAt > SILENCE_LIMIT_MS) {
      // A half-open TCP connection can stay "open" for minutes; treat silence as a drop.
      const ws = this.ws;
      this.ws = null;
      try {
        ws.close();
      } catch {}
      this._onDrop(1006, 'no answer from the server');
      return;
    }
    this.send({ type: 'ping' });
  }

  _dispatch(msg) {
    if (debugEnabled()) console.debug('parley <-', summarize(msg));
    this.dispatchEvent(new CustomEvent('message', { detail: msg }));
    if (typeof msg.type === 'string') this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
  }

  _onDrop(code, reason) {
    if (this.leaving || this.state === 'closed') return;
    if (FINAL_CLOSE_CODES.has(code)) {
      this._finish(code, reason, true);
      return;
    }
    this._reconnect(code, reason);
  }

  async _reconnect(code, reason) {
    if (this.state === 'reconnecting') return;
    this.state = 'reconnecting';
    clearInterval(this._pingTimer);
    this.dispatchEvent(new CustomEvent('reconnecting', { detail: { code, reason } }));
    const droppedAt = Date.now();
    // Told to move (the node drains): go at once; `this.url` is where the redirect said.
    let moved = REDIRECT_CLOSE_CODES.has(code);
    let delay = 500;
    let last = { code, reason };
    while (!this.leaving && Date.now() - droppedAt < RESUME_WINDOW_MS) {
      // Exponential backoff with jitter so a restarted server is not hit by everyone at once.
      if (!moved) {
        await sleep(delay * (0.75 + Math.random() * 0.5));
        // Capped at 2 s: a lost node is declared dead after 3 s, and its participants should
        // be back on the meeting's new node soon after, not at the next 8 s step.
        delay = Math.min(delay * 2, 2000);
        // A lost node's address is no use: start again from the public address, which sends
        // us to the meeting's (possibly new) node.
        this.url = this.homeUrl;
      }
      moved = false;
      if (this.leaving) return;
      try {
        const joined = await this._openFollowing({
          participant_id: this.participantId,
          resume_token: this.resumeToken,
        });
        this._onJoined(joined);
        this.dispatchEvent(new CustomEvent('resumed', { detail: joined }));
        return;
      } catch (e) {
        last = { code: e.code ?? 1006, reason: e.reason ?? String(e) };
        if (FINAL_CLOSE_CODES.has(last.code)) break;
      }
    }
    if (!this.leaving) {
      const final = FINAL_CLOSE_CODES.has(last.code) ? last : { code: 1006, reason: 'connection lost' };
      this._finish(final.code, final.reason, true);
    }
  }

  _finish(code, reason, notify) {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearInterval(this._pingTimer);
    if (notify) this.dispatchEvent(new CustomEvent('closed', { detail: { code, reason } }));
  }
}

/** Message tracing for debugging and the e2e test's logs: set localStorage 'parley.debug' to '1'. */
function debugEnabled() {
  try {
    return localStorage.getItem('parley.debug') === '1';
  } catch {
    return false;
  }
}

function summarize(msg) {
  const copy = { ...msg };
  if (copy.sdp) copy.sdp = `<${copy.sdp.length} bytes, ${(copy.sdp.match(/^m=/gm) || []).length} m-lines>`;
  if (copy.token) copy.token = '<token>';
  return JSON.stringify(copy);
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
