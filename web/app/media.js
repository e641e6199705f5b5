// Local capture: microphone, camera and screen. Kept apart from the UI so both the pre-join screen and
// the meeting use the same constraints.

/** 720p ideal: the top simulcast layer needs the resolution, the lower ones are scaled from it. */
export function cameraConstraints(deviceId) {
  const c = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } };
  if (deviceId) c.deviceId = { exact: deviceId };
  return c;
}

export function microphoneConstraints(deviceId) {
  const c = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (deviceId) c.deviceId = { exact: deviceId };
  return c;
}

/** Opens one kind of device; returns the track or throws a user-readable Error. */
export async function openDevice(kind, deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('This browser cannot use a camera or microphone here (a secure https page is required).');
  }
  const constraints =
    kind === 'audio'
      ? { audio: microphoneConstraints(deviceId) }
      : { video: cameraConstraints(deviceId) };
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    return kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
  } catch (e) {
    throw new Error(describeMediaError(kind, e));
  }
}

function describeMediaError(kind, e) {
  const what = kind === 'audio' ? 'microphone' : 'camera';
  switch (e && e.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return `Access to the ${what} was refused. Allow it in the browser's site settings to use it.`;
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `No ${what} was found.`;
    case 'NotReadableError':
    case 'AbortError':
      return `The ${what} is in use by another application.`;
    default:
      return `The ${what} could not be started (${(e && e.message) || e}).`;
  }
}

/** Lists input devices; labels are only filled once the page has had a permission grant. */
export async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return { audio: [], video: [] };
  const all = await navigator.mediaDevices.enumerateDevices();
  const pick = (kind, fallback) =>
    all
      .filter((d) => d.kind === kind && d.deviceId)
      .map((d, i) => ({ deviceId: d.deviceId, label: d.label || `${fallback} ${i + 1}` }));
  return { audio: pick('audioinput', 'Microphone'), video: pick('videoinput', 'Camera') };
}

/** Asks for a screen, window or tab; returns the video track, or null when the user cancelled. */
export async function openScreen() {
  if (!navigator.mediaDevices?.getDisplayMedia) {
    throw new Error('This browser cannot share the screen.');
  }
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: 15, max: 30 } },
      audio: false,
    });
    return stream.getVideoTracks()[0];
  } catch (e) {
    if (e && e.name === 'NotAllowedError') return null; // the user pressed Cancel
    throw new Error(`The screen could not be shared (${(e && e.message) || e}).`);
  }
}
