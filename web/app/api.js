// REST calls of the meeting app. Everything that depends on the exact shape of the server's HTTP API
// lives here, so adapting to a server change is a one-file edit.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, body, token) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'network', 'The server could not be reached. Check your connection.');
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // A proxy error page or similar: keep the status, report a generic message below.
  }
  if (!res.ok) {
    const err = data && data.error;
    throw new ApiError(
      res.status,
      (err && err.code) || `http_${res.status}`,
      (err && err.message) || `The server answered ${res.status} ${res.statusText}.`,
    );
  }
  return data;
}

/** Creates a meeting; returns the server's meeting object ({id, title, host_link, invite_link, ...}). */
export function createMeeting(title, scheduledStart) {
  const body = { title };
  if (scheduledStart) body.scheduled_start = scheduledStart;
  return request('POST', '/api/v1/meetings', body);
}

/** Best-effort meeting lookup for the pre-join screen (title); null when not allowed or not found. */
export async function getMeeting(meetingId, { hostToken, invite } = {}) {
  const q = invite ? `?invite=${encodeURIComponent(invite)}` : '';
  try {
    return await request('GET', `/api/v1/meetings/${encodeURIComponent(meetingId)}${q}`, undefined, hostToken);
  } catch {
    return null;
  }
}

/**
 * Returns the join token for the WebSocket `join` message, minted with the display name typed on the
 * pre-join screen.
 *
 * Guests exchange the invite secret. The host link carries a host token, which the join endpoint
 * accepts as a bearer credential; should a server not offer that exchange (400/404/405/422), the host
 * token is itself a valid join token and is used as it is.
 */
export async function getJoinToken({ meetingId, hostToken, invite, displayName }) {
  const path = `/api/v1/meetings/${encodeURIComponent(meetingId)}/join`;
  if (invite) {
    const data = await request('POST', path, { invite, display_name: displayName });
    return data.token;
  }
  if (hostToken) {
    try {
      const data = await request('POST', path, { display_name: displayName }, hostToken);
      if (data && data.token) return data.token;
    } catch (e) {
      if (!(e instanceof ApiError) || ![400, 404, 405, 422].includes(e.status)) throw e;
    }
    return hostToken;
  }
  throw new ApiError(400, 'missing_link_secret', 'This link has no invite code. Ask the host for a new link.');
}

/** The WebSocket signaling URL on the same origin. */
export function signalingUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/api/v1/ws`;
}

// ---- users and sessions ----
// The browser's session is the HttpOnly `parley_session` cookie set by sign-in and by accepting an
// invitation; same-origin fetches carry it, so the page never sees or stores the token.

/** Signs in; the answer's cookie is the session. Throws the server's 401/429 messages as they are. */
export function signIn(email, password) {
  return request('POST', '/api/v1/auth/sign-in', { email, password });
}

/** Ends this browser's session (always succeeds server-side, even if it had already ended). */
export function signOut() {
  return request('POST', '/api/v1/auth/sign-out');
}

/** The signed-in user and their account; ApiError 401 (`invalid_session`, `session_expired`) otherwise. */
export function getMe() {
  return request('GET', '/api/v1/me');
}

/** Asks for a reset link; the server answers the same whether or not the address is known. */
export function requestPasswordReset(email) {
  return request('POST', '/api/v1/auth/password-reset', { email });
}

/** Sets a new password with the emailed `rst_…` token; every session of the user ends. */
export function confirmPasswordReset(token, password) {
  return request('POST', '/api/v1/auth/password-reset/confirm', { token, password });
}

/** Whose invitation an `inv_…` token is: {account_name, email, expires_at}. */
export function previewInvitation(token) {
  return request('POST', '/api/v1/invitations/preview', { token });
}

/** Accepts an invitation: sets the name and password and signs in (cookie). */
export function acceptInvitation(token, password, displayName) {
  return request('POST', '/api/v1/invitations/accept', { token, password, display_name: displayName });
}

// ---- recordings ----
// Seen by the meeting's host and the account's admins (session cookie); the files download through
// short-lived signed links made on demand.

/** A recording with its files: {id, meeting_title, status, started_at, stopped_at, files: [...]}. */
export function getRecording(id) {
  return request('GET', `/api/v1/recordings/${encodeURIComponent(id)}`);
}

/** Fresh signed links, one per file: {expires_at, files: [{name, url, path, ...}]}. */
export function recordingLinks(id) {
  return request('POST', `/api/v1/recordings/${encodeURIComponent(id)}/links`);
}
