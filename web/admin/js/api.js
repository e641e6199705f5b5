// The console's one door to the server: every call goes through `api()`, relative to /api/v1.
//
// Two ways to be signed in:
// - an account admin: the HttpOnly `parley_session` cookie set by /api/v1/auth/sign-in (the
//   page never sees it; same-origin fetches carry it);
// - the platform operator: the operator token, typed on the operator sign-in page and kept in
//   sessionStorage only (gone when the tab closes), sent as `Authorization: Bearer …`.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    // The rest of the server's error object (a refusal's dates, for instance).
    this.details = details || {};
  }
}

const OPERATOR_KEY = 'parley.admin.operatorToken';

/** The operator token of this tab, or null. */
export function operatorToken() {
  try {
    return sessionStorage.getItem(OPERATOR_KEY);
  } catch {
    return null;
  }
}

/**
 * Sets (or with null, forgets) the operator token of this tab, then reloads the session so the
 * header and the nav follow. Resolves to the new session.
 */
export async function setOperatorToken(token) {
  try {
    if (token) sessionStorage.setItem(OPERATOR_KEY, token);
    else sessionStorage.removeItem(OPERATOR_KEY);
  } catch {
    // Storage disabled: the token then lasts only as long as this page (held below).
  }
  memoryToken = token || null;
  return refreshSession();
}

let memoryToken = null;
function bearer() {
  return operatorToken() || memoryToken;
}

/**
 * Calls the server. `path` is relative to /api/v1 (`/accounts/${id}/lots`); a body is sent as
 * JSON; `headers` adds request headers (e.g. Idempotency-Key). Resolves to the parsed JSON (null
 * for an empty answer); rejects with ApiError carrying the server's {"error":{"code","message"}}.
 * An aborted call rejects with the DOMException 'AbortError' as fetch does.
 */
export async function api(method, path, body, { signal, headers: extra } = {}) {
  const headers = { Accept: 'application/json', ...(extra || {}) };
  if (body !== undefined && body !== null) headers['Content-Type'] = 'application/json';
  const token = bearer();
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined || body === null ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The server could not be reached. Check your connection and try again.');
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // A proxy's error page: keep the status, say it plainly below.
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const { code, message, ...details } = err;
    throw new ApiError(
      res.status,
      code || `http_${res.status}`,
      message || `The server answered ${res.status} ${res.statusText}.`,
      details,
    );
  }
  return data;
}

/** Fetches a server page as text (printable documents: `….html`), with the same credentials. */
export async function apiText(path, { signal } = {}) {
  const headers = { Accept: 'text/html' };
  const token = bearer();
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(`/api/v1${path}`, { headers, credentials: 'same-origin', signal });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The server could not be reached. Check your connection and try again.');
  }
  const text = await res.text();
  if (!res.ok) {
    let err = {};
    try {
      err = JSON.parse(text).error || {};
    } catch {
      // not JSON
    }
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || `The server answered ${res.status}.`);
  }
  return text;
}

// ---- who is signed in ----

let current = { kind: null };

/**
 * The console's session: `{kind: 'admin', me, accountId}` for a signed-in user (`me` is
 * GET /api/v1/me; `isAdmin` tells an account admin from a member), `{kind: 'operator'}` for the
 * operator token, `{kind: null, error?}` when nobody is signed in.
 */
export function session() {
  return current;
}

/** Reloads the session from the server; dispatches `parley-admin-session` on window. */
export async function refreshSession() {
  let next;
  if (bearer()) {
    next = { kind: 'operator' };
  } else {
    try {
      const me = await api('GET', '/me');
      next = {
        kind: 'admin',
        me,
        accountId: me.account.id,
        isAdmin: me.user.role === 'account_admin',
      };
    } catch (e) {
      next = { kind: null, error: e };
    }
  }
  current = next;
  window.dispatchEvent(new CustomEvent('parley-admin-session', { detail: next }));
  return next;
}

/** Signs out: the operator forgets the token; an admin ends the cookie session on the server. */
export async function signOut() {
  if (bearer()) {
    await setOperatorToken(null);
    return;
  }
  await api('POST', '/auth/sign-out');
  current = { kind: null };
}

/** A fresh key for the Idempotency-Key header (one per operation, reused when retrying it). */
export function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
