// Pieces shared by the account pages (sign-in, password reset, invitation): a form's busy state,
// error display tied to its field, the one-time token of an emailed link, and the `?next=` guard.

/**
 * Marks a form busy while a request runs: the submit button is disabled and says what is happening,
 * the form has aria-busy. Returns the function that undoes it.
 */
export function busy(form, button, label) {
  const idle = button.textContent;
  button.disabled = true;
  button.textContent = label;
  form.setAttribute('aria-busy', 'true');
  return () => {
    button.disabled = false;
    button.textContent = idle;
    form.removeAttribute('aria-busy');
  };
}

/**
 * Shows `message` in the form's alert region (announced by screen readers) and marks `field`
 * invalid, moving focus there so the person can correct it. An empty message clears both.
 */
export function showError(region, message, field) {
  region.textContent = message || '';
  for (const el of region.closest('form')?.querySelectorAll('[aria-invalid]') ?? []) {
    el.removeAttribute('aria-invalid');
  }
  if (message && field) {
    field.setAttribute('aria-invalid', 'true');
    field.focus();
    if (typeof field.select === 'function') field.select();
  }
}

/**
 * The token of an emailed link (`…#token=<prefix>…`). The server puts it in the fragment so it is
 * never sent to a server or leaked as a Referer; once read it is also taken out of the address bar
 * and the history entry. Null when missing or of another kind.
 */
export function takeLinkToken(prefix) {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const token = params.get('token');
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  return token && token.startsWith(prefix) ? token : null;
}

/**
 * Where to go after signing in: `next` only when it is a path on this site (no scheme, no other
 * host, no `//host` or `/\host` tricks, which the URL parser would resolve off-site); else `/`.
 */
export function safeNext(raw) {
  if (typeof raw !== 'string' || !raw.startsWith('/')) return '/';
  let url;
  try {
    url = new URL(raw, location.origin);
  } catch {
    return '/';
  }
  if (url.origin !== location.origin) return '/';
  return url.pathname + url.search + url.hash;
}

/** A timestamp as a person reads it, in their own time zone. */
export function formatWhen(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { dateStyle: 'long', timeStyle: 'short' });
}
