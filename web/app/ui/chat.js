// The chat panel: a role="log" list (read out by screen readers as messages arrive) and a form.
// Messages may arrive over both the data channel and the WebSocket; we drop exact repeats.

import { h } from './dom.js';

export class ChatPanel {
  /**
   * @param els {panel, log, form, input, toggle, badge}
   * @param send (text) => boolean — false when the message could not be sent
   */
  constructor(els, send) {
    this.els = els;
    this.send = send;
    this.unread = 0;
    this._seen = new Map(); // "from|text" -> {via, time}
    els.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = els.input.value.trim();
      if (!text) return;
      if (this.send(text.slice(0, 2000))) {
        els.input.value = '';
      } else {
        this.system('Message not sent: the connection is down. Try again in a moment.');
      }
    });
  }

  get isOpen() {
    return !this.els.panel.hidden;
  }

  /**
   * Adds a message. `via` names the channel it came on ('dc' or 'ws'): a message sent over the
   * WebSocket fallback reaches data-channel peers on both, with different timestamps, so the same
   * sender and text on the *other* channel within a few seconds is the same message. Repeats on one
   * channel are real repeats ("ok", "ok") and stay.
   */
  add({ from, name, text, at, via, self = false }) {
    const stamp = at ? new Date(at) : new Date();
    if (via) {
      const key = `${from}|${text}`;
      const prev = this._seen.get(key);
      const now = Date.now();
      if (prev && prev.via !== via && now - prev.time < 5000) {
        this._seen.delete(key);
        return false;
      }
      this._seen.set(key, { via, time: now });
      if (this._seen.size > 200) this._seen.delete(this._seen.keys().next().value);
    }
    const time = isNaN(stamp) ? '' : stamp.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    this.els.log.append(
      h(
        'li',
        { class: self ? 'msg msg-self' : 'msg' },
        h('span', { class: 'msg-from' }, self ? 'You' : name || 'Someone'),
        h('time', { class: 'msg-time', datetime: isNaN(stamp) ? null : stamp.toISOString() }, time),
        h('p', { class: 'msg-text' }, text),
      ),
    );
    this.els.log.scrollTop = this.els.log.scrollHeight;
    if (!self && !this.isOpen) {
      this.unread += 1;
      this._badge();
    }
    return true;
  }

  system(text) {
    this.els.log.append(h('li', { class: 'msg msg-system' }, text));
    this.els.log.scrollTop = this.els.log.scrollHeight;
  }

  opened() {
    this.unread = 0;
    this._badge();
  }

  _badge() {
    const b = this.els.badge;
    b.hidden = this.unread === 0;
    b.textContent = String(this.unread);
    this.els.toggle.setAttribute(
      'aria-label',
      this.unread ? `Chat, ${this.unread} unread message${this.unread > 1 ? 's' : ''}` : 'Chat',
    );
  }
}
