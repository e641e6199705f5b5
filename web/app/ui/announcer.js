// One polite live region for join/leave and state announcements. Screen readers read additions; we
// clear old entries so the region does not grow forever.

let region = null;

export function initAnnouncer(el) {
  region = el;
}

export function announce(text) {
  if (!region) return;
  const p = document.createElement('p');
  p.textContent = text;
  region.append(p);
  while (region.childElementCount > 5) region.firstElementChild.remove();
}
