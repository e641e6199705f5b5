// Types of the Parley JS SDK v1 (https://<your Parley>/sdk/v1/parley.js). Hand-written; kept in
// step with parley.js. See docs/sdk.md.

/** What `Parley.join` needs. */
export interface JoinOptions {
  /** The element the meeting fills (or a CSS selector for it). */
  container: Element | string;
  /** A join token minted by your backend (`POST /api/v1/meetings/{id}/tokens`). */
  token: string;
  /** The meeting the token is for; when given, a token for another meeting is refused. */
  meetingId?: string;
  /** The Parley server, e.g. `https://parley.example/`. Default: where this module was loaded from. */
  baseUrl?: string;
  /**
   * Label of your own tile. The name the others see is the one in the token (your backend sets
   * it when minting); default: that name.
   */
  displayName?: string;
  /** Open the microphone at join (default true). */
  audio?: boolean;
  /** Open the camera at join (default true). */
  video?: boolean;
}

export type Role = 'host' | 'guest';
export type Source = 'microphone' | 'camera' | 'screen' | 'screen_audio';
/** `audio`/`video`; the protocol's `microphone`/`camera` are accepted too. */
export type MediaKind = 'audio' | 'video' | 'microphone' | 'camera';

export interface Participant {
  id: string;
  displayName: string;
  role: Role;
  tracks: { source: Source; muted: boolean }[];
  /** RFC 3339. */
  joinedAt: string | null;
}

export interface JoinedEvent {
  participantId: string;
  meeting: { id: string | null; title: string; locked: boolean };
  you: Participant;
  /** The others already in the meeting. */
  participants: Participant[];
}

/** A failure, with the server's code where the server refused (e.g. `origin_not_allowed`). */
export interface ParleyError {
  code: string;
  message: string;
  /** For a refused join: the WebSocket close code and reason (docs/protocol.md). */
  closeCode?: number;
  closeReason?: string;
}

export interface ParleyEvents {
  joined: JoinedEvent;
  participant_joined: { participant: Participant };
  participant_left: { participantId: string; displayName: string | null; reason: 'left' | 'removed' | 'timeout' | string };
  active_speaker: { participantId: string | null };
  recording_started: { recordingId: string | null; startedAt: string | null; startedBy: string | null };
  recording_stopped: { recordingId: string | null; reason: string | null };
  /** The meeting is over for this page: `1000 left`, `4001 meeting ended`, a refused join, … */
  disconnected: { code: number; reason: string };
  error: ParleyError;
}

export type ParleyEventName = keyof ParleyEvents;

export interface TrackStats {
  mid: string;
  participantId: string;
  source: Source;
  kind: 'audio' | 'video';
  framesDecoded: number;
  frameWidth: number;
  frameHeight: number;
  packetsReceived: number;
  packetsLost: number;
  bytesReceived: number;
  totalAudioEnergy?: number;
}

export interface OutboundStats {
  mid: string;
  source: Source | null;
  kind: 'audio' | 'video';
  rid: string | null;
  packetsSent: number;
  bytesSent: number;
}

export declare class Meeting {
  /** Settles with the `joined` detail, or rejects with the `error` of a refused join. */
  readonly ready: Promise<JoinedEvent>;
  readonly state: 'connecting' | 'joined' | 'reconnecting' | 'disconnected';
  readonly participantId: string | null;
  participants(): (Participant & { isSelf: boolean })[];
  /** Returns a function that removes the listener. */
  on<K extends ParleyEventName>(name: K, fn: (detail: ParleyEvents[K]) => void): () => void;
  off<K extends ParleyEventName>(name: K, fn: (detail: ParleyEvents[K]) => void): void;
  mute(kind: MediaKind): Promise<void>;
  unmute(kind: MediaKind): Promise<void>;
  setCamera(on: boolean): Promise<void>;
  /** Resolves false when the user cancelled the screen picker. */
  startScreenShare(track?: MediaStreamTrack): Promise<boolean>;
  stopScreenShare(): Promise<void>;
  leave(): Promise<void>;
  getStats(): Promise<{ inbound: TrackStats[]; outbound: OutboundStats[] }>;
}

export interface EmbedOptions {
  container: Element | string;
  /** The `embed_url` your backend got when minting the token. */
  url: string;
  /** The iframe's accessible title (default "Meeting"). */
  title?: string;
}

/** The iframe embed, driven over postMessage (only with Parley's origin). */
export interface EmbeddedMeeting {
  readonly iframe: HTMLIFrameElement;
  on<K extends ParleyEventName>(name: K, fn: (detail: ParleyEvents[K]) => void): () => void;
  off<K extends ParleyEventName>(name: K, fn: (detail: ParleyEvents[K]) => void): void;
  mute(kind: MediaKind): Promise<void>;
  unmute(kind: MediaKind): Promise<void>;
  setCamera(on: boolean): Promise<void>;
  startScreenShare(): Promise<boolean>;
  stopScreenShare(): Promise<void>;
  leave(): Promise<void>;
  /** Stops listening and removes the iframe. */
  destroy(): void;
}

export declare const VERSION: string;
export declare const EVENTS: readonly ParleyEventName[];
/** Joins at once (listeners registered in the same task see every event). */
export declare function join(options: JoinOptions): Meeting;
export declare function embed(options: EmbedOptions): EmbeddedMeeting;
export declare const Parley: {
  readonly join: typeof join;
  readonly embed: typeof embed;
  readonly VERSION: string;
  readonly EVENTS: readonly ParleyEventName[];
};
export default Parley;
