// The participant list. Host controls (mute, remove) appear only when the local role is host; the
// server enforces the `admin` grant anyway.

import { h } from './dom.js';
import { icons } from './icons.js';

export class ParticipantList {
  /**
   * @param listEl <ul>
   * @param actions {mute(pid), remove(pid, name)}
   */
  constructor(listEl, countEl, actions) {
    this.el = listEl;
    this.countEl = countEl;
    this.actions = actions;
    this.isHost = false;
  }

  /** Re-renders from the full participant map (small lists; simpler than diffing). */
  render(participants, selfId) {
    const items = [...participants.values()].sort((a, b) => {
      if (a.id === selfId) return -1;
      if (b.id === selfId) return 1;
      return String(a.display_name).localeCompare(String(b.display_name));
    });
    // Keep keyboard focus on the same control across re-renders.
    const focused = document.activeElement?.closest?.('[data-pid]');
    const focusKey = focused ? `${focused.dataset.pid}|${document.activeElement.dataset.action}` : null;
    this.el.replaceChildren(...items.map((p) => this._item(p, p.id === selfId)));
    this.countEl.textContent = String(items.length);
    if (focusKey) {
      const [pid, action] = focusKey.split('|');
      const again = this.el.querySelector(`[data-pid="${CSS.escape(pid)}"] [data-action="${action}"]`);
      if (again) again.focus();
    }
  }

  _item(p, self) {
    const mic = (p.tracks || []).find((t) => t.source === 'microphone');
    const micMuted = !mic || mic.muted;
    const cam = (p.tracks || []).find((t) => t.source === 'camera');
    const camOff = !cam || cam.muted;
    const sharing = (p.tracks || []).some((t) => t.source === 'screen' && !t.muted);
    const status = [
      p.role === 'host' ? 'host' : null,
      micMuted ? 'muted' : null,
      camOff ? 'camera off' : null,
      sharing ? 'sharing screen' : null,
    ].filter(Boolean);
    const controls = [];
    if (this.isHost && !self) {
      if (!micMuted) {
        controls.push(
          h('button', {
            type: 'button',
            class: 'btn btn-small',
            dataset: { action: 'mute' },
            'aria-label': `Mute ${p.display_name}`,
            onclick: () => this.actions.mute(p.id),
          }, 'Mute'),
        );
      }
      controls.push(
        h('button', {
          type: 'button',
          class: 'btn btn-small btn-danger',
          dataset: { action: 'remove' },
          'aria-label': `Remove ${p.display_name} from the meeting`,
          onclick: () => this.actions.remove(p.id, p.display_name),
        }, 'Remove'),
      );
    }
    return h(
      'li',
      { class: 'person', dataset: { pid: p.id } },
      h('span', { class: 'person-mic', html: micMuted ? icons.micOff : icons.mic }),
      h(
        'span',
        { class: 'person-name' },
        self ? `${p.display_name} (you)` : p.display_name,
        status.length ? h('span', { class: 'person-status' }, status.join(', ')) : null,
      ),
      controls.length ? h('span', { class: 'person-actions' }, controls) : null,
    );
  }
}
