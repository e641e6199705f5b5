// Tiny DOM helpers: building elements in code keeps each UI module self-contained without a framework.

/** h('button', {class: 'x', onclick}, 'text', child) — attributes starting with "on" become listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'html') el.innerHTML = v; // only ever used with our own static SVG strings
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** Initials for an avatar: "Ada Lovelace" -> "AL". */
export function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return s.toUpperCase();
}

/** Sets a toggle button's pressed state, label and icon in one place so they never disagree. */
export function setToggle(button, pressed, label, iconSvg) {
  button.setAttribute('aria-pressed', pressed ? 'true' : 'false');
  const labelEl = button.querySelector('.label');
  if (labelEl) labelEl.textContent = label;
  else button.textContent = label;
  if (iconSvg) {
    const icon = button.querySelector('.icon');
    if (icon) icon.innerHTML = iconSvg;
  }
}
