/**
 * Sans-I/O Twilio Media Streams parser: one instance per WebSocket (one stream of one call).
 * The socket adapter feeds every received frame to `push()` and acts on the result:
 *
 * - `event`: a validated event to handle;
 * - `drop`: the frame is ignored; count it by `code` (for ERR_INGEST_UNKNOWN_EVENT `detail` is
 *   the sanitised event name, safe as a metric label value — cap label cardinality anyway);
 * - `fatal`: close the socket with `closeCode` / `reason`. Every later push is dropped
 *   (ERR_INGEST_AFTER_FATAL).
 *
 * State machine: awaiting-connected → (connected) → awaiting-start → (start) → streaming →
 * (stop) → stopped; `failed` after a fatal result. `connected` is optional (a `start` is
 * accepted first); a missing `stop` is fine (the adapter ends the stream on socket close).
 *
 * Validation order (style.md lesson 3), each step with its own code:
 *  1. binary frame                       → drop  ERR_INGEST_BINARY_FRAME
 *  2. JSON                               → drop  ERR_INGEST_BAD_JSON
 *  3. object with a string `event`       → drop  ERR_INGEST_SCHEMA
 *  4. known event name                   → drop  ERR_INGEST_UNKNOWN_EVENT (detail = name)
 *  5. per-event schema (messages.ts)     → drop  ERR_INGEST_SCHEMA (detail = field path)
 *  6. state:
 *     - anything after `stop`            → drop  ERR_INGEST_AFTER_STOP
 *     - media/dtmf/mark/stop before start→ fatal ERR_INGEST_MEDIA_BEFORE_START (4001)
 *     - a second `start`                 → fatal ERR_INGEST_DUPLICATE_START (4002)
 *     - `connected` after connected/start→ drop  ERR_INGEST_UNEXPECTED_CONNECTED
 *     - `start` with an unsupported mediaFormat → fatal ERR_INGEST_UNSUPPORTED_FORMAT (4003)
 *  7. streamSid ≠ the start's            → drop  ERR_INGEST_STREAM_SID_MISMATCH
 *  8. sequenceNumber / chunk monotonicity: counted in stats (seqGaps, seqRegressions,
 *     chunkRegressions), never dropped — audio is ordered by timestamp downstream.
 *  9. media only: base64 strictly valid  → drop  ERR_INGEST_BAD_BASE64
 *                 payload non-empty      → drop  ERR_INGEST_EMPTY_PAYLOAD
 *                 track inbound|outbound → drop  ERR_INGEST_UNKNOWN_TRACK
 *
 * Decision — a media frame whose track is valid but not listed in `start.tracks` is ACCEPTED
 * and counted (`stats.unlistedTrackFrames`; `event.listedTrack === false`): `start.tracks`
 * defaults to ["inbound"] when absent, and dropping would silently lose a vendor's second
 * party, whereas the audio itself is well-formed and labelled. Create timelines per track
 * lazily.
 *
 * Frame size is not checked here: the WebSocket server's `maxPayload` enforces it (close 1009).
 */
import { newFastMediaFields, scanTwilioMedia } from './fast-media.js';
import type { G711Codec } from '../../codec/g711.js';
import {
  TWILIO_EVENTS,
  base64DecodedLength,
  codecForMediaFormat,
  isRecord,
  isStrictBase64,
  isTwilioEventName,
  isTwilioTrack,
  validateTwilioMessage,
  type TwilioEventName,
  type TwilioMediaFormat,
  type TwilioTrack,
} from './messages.js';

/**
 * WebSocket close codes used by the Twilio ingest (the parser emits 4001–4003; the socket
 * adapter uses the others).
 *
 * | code | name                | meaning                                                   |
 * |------|---------------------|-----------------------------------------------------------|
 * | 1000 | NORMAL              | stream finished (after `stop`)                            |
 * | 1001 | GOING_AWAY          | server shutting down / draining                           |
 * | 1008 | POLICY_VIOLATION    | upgrade/auth policy failed (e.g. bad per-call token)      |
 * | 1009 | MESSAGE_TOO_BIG     | frame larger than TWILIO_MAX_FRAME_BYTES                  |
 * | 1011 | INTERNAL_ERROR      | unexpected server error                                   |
 * | 4001 | MEDIA_BEFORE_START  | media/dtmf/mark/stop arrived before `start`               |
 * | 4002 | DUPLICATE_START     | a second `start` on the same socket                       |
 * | 4003 | UNSUPPORTED_FORMAT  | mediaFormat other than μ-law/A-law, 8000 Hz, mono         |
 * | 4004 | IDLE_TIMEOUT        | nothing received for TWILIO_IDLE_TIMEOUT_MS               |
 * | 4005 | CAPACITY            | MAX_CALLS reached                                         |
 * | 4006 | ASR_UNAVAILABLE     | the recogniser cannot be reached / refused the session    |
 */
export const TwilioCloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  MEDIA_BEFORE_START: 4001,
  DUPLICATE_START: 4002,
  UNSUPPORTED_FORMAT: 4003,
  IDLE_TIMEOUT: 4004,
  CAPACITY: 4005,
  ASR_UNAVAILABLE: 4006,
} as const;
export type TwilioCloseCode = (typeof TwilioCloseCode)[keyof typeof TwilioCloseCode];

export const TWILIO_DROP_CODES = [
  'ERR_INGEST_BINARY_FRAME',
  'ERR_INGEST_BAD_JSON',
  'ERR_INGEST_SCHEMA',
  'ERR_INGEST_UNKNOWN_EVENT',
  'ERR_INGEST_UNEXPECTED_CONNECTED',
  'ERR_INGEST_STREAM_SID_MISMATCH',
  'ERR_INGEST_BAD_BASE64',
  'ERR_INGEST_EMPTY_PAYLOAD',
  'ERR_INGEST_UNKNOWN_TRACK',
  'ERR_INGEST_AFTER_STOP',
  'ERR_INGEST_AFTER_FATAL',
] as const;
export type TwilioDropCode = (typeof TWILIO_DROP_CODES)[number];

export const TWILIO_FATAL_CODES = [
  'ERR_INGEST_MEDIA_BEFORE_START',
  'ERR_INGEST_DUPLICATE_START',
  'ERR_INGEST_UNSUPPORTED_FORMAT',
] as const;
export type TwilioFatalCode = (typeof TWILIO_FATAL_CODES)[number];

const FATAL = {
  ERR_INGEST_MEDIA_BEFORE_START: { closeCode: TwilioCloseCode.MEDIA_BEFORE_START, reason: 'media before start' },
  ERR_INGEST_DUPLICATE_START: { closeCode: TwilioCloseCode.DUPLICATE_START, reason: 'duplicate start' },
  ERR_INGEST_UNSUPPORTED_FORMAT: { closeCode: TwilioCloseCode.UNSUPPORTED_FORMAT, reason: 'unsupported media format' },
} as const satisfies Record<TwilioFatalCode, { closeCode: number; reason: string }>;

export type TwilioParserState =
  | 'awaiting-connected'
  | 'awaiting-start'
  | 'streaming'
  | 'stopped'
  | 'failed';

// ---------------------------------------------------------------------------------------------
// Events (internal pipeline types)
// ---------------------------------------------------------------------------------------------

export interface TwilioConnectedEvent {
  readonly type: 'connected';
  readonly protocol: string | null;
  readonly version: string | null;
}

export interface TwilioStartEvent {
  readonly type: 'start';
  readonly sequenceNumber: number;
  readonly streamSid: string;
  readonly accountSid: string | null;
  readonly callSid: string;
  readonly tracks: readonly TwilioTrack[];
  /** `start.tracks` was absent/empty and ["inbound"] was assumed. */
  readonly tracksDefaulted: boolean;
  readonly customParameters: Readonly<Record<string, string>>;
  readonly droppedCustomParameters: number;
  readonly mediaFormat: TwilioMediaFormat;
  readonly codec: G711Codec;
}

export interface TwilioMediaEvent {
  readonly type: 'media';
  readonly sequenceNumber: number;
  readonly track: TwilioTrack;
  /** ms since the stream started (`media.timestamp`). */
  readonly timestampMs: number;
  readonly chunk: number;
  /**
   * Raw G.711 bytes (μ-law or A-law per `codec`), decoded from base64. The bytes live in the
   * parser's scratch buffer and are valid only until the next push(): consume or copy them.
   */
  readonly payload: Buffer;
  readonly codec: G711Codec;
  /** False when the track is not in `start.tracks` (accepted anyway, see the module doc). */
  readonly listedTrack: boolean;
}

export interface TwilioDtmfEvent {
  readonly type: 'dtmf';
  readonly sequenceNumber: number;
  readonly track: string | null;
  readonly digit: string;
}

export interface TwilioMarkEvent {
  readonly type: 'mark';
  readonly sequenceNumber: number;
  readonly name: string;
}

export interface TwilioStopEvent {
  readonly type: 'stop';
  readonly sequenceNumber: number;
  readonly accountSid: string | null;
  readonly callSid: string | null;
}

export type TwilioStreamEvent =
  | TwilioConnectedEvent
  | TwilioStartEvent
  | TwilioMediaEvent
  | TwilioDtmfEvent
  | TwilioMarkEvent
  | TwilioStopEvent;

export type TwilioParseResult =
  | { readonly kind: 'event'; readonly event: TwilioStreamEvent }
  | { readonly kind: 'drop'; readonly code: TwilioDropCode; readonly detail?: string }
  | {
      readonly kind: 'fatal';
      readonly code: TwilioFatalCode;
      readonly closeCode: number;
      readonly reason: string;
    };

export interface TwilioParserStats {
  /** Every push. */
  messages: number;
  /** Accepted events by type. */
  events: Record<TwilioEventName, number>;
  /** Dropped frames by code. */
  drops: Record<TwilioDropCode, number>;
  /** The fatal code, once one was returned. */
  fatal: TwilioFatalCode | null;
  /** sequenceNumber jumped forward (one per jump) / messages missing in those jumps. */
  seqGaps: number;
  seqMissing: number;
  /** sequenceNumber not greater than the previous one (duplicates and reordering). */
  seqRegressions: number;
  /** media.chunk not greater than the previous one on the same track. */
  chunkRegressions: number;
  /** Accepted media frames on a track not listed in start.tracks. */
  unlistedTrackFrames: number;
  /** customParameters entries dropped at start. */
  droppedCustomParameters: number;
}

/** Sanitises an unknown event name for use as a label: [a-z_], at most 32 characters. */
export function sanitizeEventName(name: string): string {
  const s = name.slice(0, 32).toLowerCase().replace(/[^a-z_]/g, '_');
  return s.length === 0 ? '_' : s;
}

function zeroCounts<K extends string>(keys: readonly K[]): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of keys) out[k] = 0;
  return out;
}

type DropResult = Extract<TwilioParseResult, { kind: 'drop' }>;

/** Preallocated results for drops without detail (no allocation on the drop path). */
const DROP: Readonly<Record<TwilioDropCode, DropResult>> = (() => {
  const out = {} as Record<TwilioDropCode, DropResult>;
  for (const code of TWILIO_DROP_CODES) out[code] = Object.freeze({ kind: 'drop', code });
  return out;
})();

export interface TwilioStreamParserOptions {
  /**
   * Recognise Twilio's exact media layout byte by byte before falling back to JSON.parse
   * (see fast-media.ts). Same results either way; default true. Off only for tests.
   */
  readonly fastPath?: boolean;
}

export class TwilioStreamParser {
  #state: TwilioParserState = 'awaiting-connected';
  #streamSid: string | null = null;
  #codec: G711Codec = 'pcmu';
  #listed = { inbound: false, outbound: false };
  #lastSeq = -1;
  /** Reused decode target for media payloads (see TwilioMediaEvent.payload). */
  #scratch = Buffer.allocUnsafe(1024);
  readonly #fastPath: boolean;
  readonly #fastFields = newFastMediaFields();
  #streamSidBytes: Buffer = Buffer.alloc(0);
  #lastChunk = { inbound: -1, outbound: -1 };
  readonly #stats: TwilioParserStats = {
    messages: 0,
    events: zeroCounts(TWILIO_EVENTS),
    drops: zeroCounts(TWILIO_DROP_CODES),
    fatal: null,
    seqGaps: 0,
    seqMissing: 0,
    seqRegressions: 0,
    chunkRegressions: 0,
    unlistedTrackFrames: 0,
    droppedCustomParameters: 0,
  };

  constructor(options: TwilioStreamParserOptions = {}) {
    this.#fastPath = options.fastPath ?? true;
  }

  /**
   * The byte-level media path: returns null whenever the frame is not Twilio's exact media
   * layout for this stream, and the general path then decides (drops included).
   */
  #fastMedia(data: Buffer): TwilioParseResult | null {
    if (this.#scratch.length < data.length) this.#scratch = Buffer.allocUnsafe(data.length * 2);
    const f = this.#fastFields;
    if (!scanTwilioMedia(data, this.#scratch, f)) return null;
    const sid = this.#streamSidBytes;
    if (f.sidEnd - f.sidStart !== sid.length || data.compare(sid, 0, sid.length, f.sidStart, f.sidEnd) !== 0) {
      return null;
    }
    this.#noteSeq(f.sequenceNumber);
    return this.#mediaEvent(f.sequenceNumber, f.track, f.chunk, f.timestampMs, this.#scratch.subarray(0, f.payloadBytes));
  }

  /** The accepted media frame: per-track chunk bookkeeping, counters, the event. */
  #mediaEvent(
    sequenceNumber: number,
    track: TwilioTrack,
    chunk: number,
    timestampMs: number,
    payload: Buffer,
  ): TwilioParseResult {
    if (chunk <= this.#lastChunk[track]) this.#stats.chunkRegressions++;
    this.#lastChunk[track] = chunk;
    const listedTrack = this.#listed[track];
    if (!listedTrack) this.#stats.unlistedTrackFrames++;
    this.#stats.events.media++;
    return {
      kind: 'event',
      event: { type: 'media', sequenceNumber, track, timestampMs, chunk, payload, codec: this.#codec, listedTrack },
    };
  }

  /**
   * Decodes base64 into the parser's scratch buffer (grown when a larger frame comes): the
   * media path then allocates no backing memory per frame.
   */
  #decodePayload(text: string, bytes: number): Buffer {
    if (this.#scratch.length < bytes) this.#scratch = Buffer.allocUnsafe(Math.max(bytes, this.#scratch.length * 2));
    const n = this.#scratch.write(text, 0, 'base64');
    return this.#scratch.subarray(0, n);
  }

  get state(): TwilioParserState {
    return this.#state;
  }

  /** The stream's sid once `start` was accepted. */
  get streamSid(): string | null {
    return this.#streamSid;
  }

  /** A snapshot of the counters. */
  get stats(): TwilioParserStats {
    const s = this.#stats;
    return { ...s, events: { ...s.events }, drops: { ...s.drops } };
  }

  /**
   * Parses one WebSocket frame. `data` may be any form `ws` delivers (Buffer, ArrayBuffer,
   * Buffer[] fragments) or a string.
   */
  push(data: Buffer | string | ArrayBuffer | readonly Buffer[], isBinary: boolean): TwilioParseResult {
    this.#stats.messages++;
    if (this.#state === 'failed') return this.#drop('ERR_INGEST_AFTER_FATAL');
    if (isBinary) return this.#drop('ERR_INGEST_BINARY_FRAME');
    if (this.#fastPath && this.#state === 'streaming' && Buffer.isBuffer(data)) {
      const fast = this.#fastMedia(data);
      if (fast !== null) return fast;
    }

    let parsed: unknown;
    try {
      parsed = JSON.parse(toText(data));
    } catch {
      return this.#drop('ERR_INGEST_BAD_JSON');
    }
    if (!isRecord(parsed)) return this.#drop('ERR_INGEST_SCHEMA', '(root)');
    const name = parsed['event'];
    if (typeof name !== 'string') return this.#drop('ERR_INGEST_SCHEMA', 'event');
    if (!isTwilioEventName(name)) {
      return this.#drop('ERR_INGEST_UNKNOWN_EVENT', sanitizeEventName(name));
    }

    const msg = validateTwilioMessage(name, parsed);
    if (typeof msg === 'string') return this.#drop('ERR_INGEST_SCHEMA', msg);

    switch (msg.event) {
      case 'media': {
        const pre = this.#checkStreaming(msg.streamSid, msg.sequenceNumber);
        if (pre !== null) return pre;
        const payloadText = msg.payload;
        if (!isStrictBase64(payloadText)) return this.#drop('ERR_INGEST_BAD_BASE64');
        const payloadBytes = base64DecodedLength(payloadText);
        if (payloadBytes === 0) return this.#drop('ERR_INGEST_EMPTY_PAYLOAD');
        const track = msg.track;
        if (!isTwilioTrack(track)) return this.#drop('ERR_INGEST_UNKNOWN_TRACK');
        return this.#mediaEvent(msg.sequenceNumber, track, msg.chunk, msg.timestampMs, this.#decodePayload(payloadText, payloadBytes));
      }
      case 'connected': {
        if (this.#state === 'stopped') return this.#drop('ERR_INGEST_AFTER_STOP');
        if (this.#state !== 'awaiting-connected') return this.#drop('ERR_INGEST_UNEXPECTED_CONNECTED');
        this.#state = 'awaiting-start';
        this.#stats.events.connected++;
        return {
          kind: 'event',
          event: { type: 'connected', protocol: msg.protocol, version: msg.version },
        };
      }
      case 'start': {
        if (this.#state === 'stopped') return this.#drop('ERR_INGEST_AFTER_STOP');
        if (this.#state === 'streaming') return this.#fail('ERR_INGEST_DUPLICATE_START');
        const codec = codecForMediaFormat(msg.mediaFormat);
        if (codec === null) return this.#fail('ERR_INGEST_UNSUPPORTED_FORMAT');
        this.#state = 'streaming';
        this.#streamSid = msg.streamSid;
        this.#streamSidBytes = Buffer.from(msg.streamSid, 'utf8');
        this.#codec = codec;
        for (const t of msg.tracks) this.#listed[t] = true;
        this.#lastSeq = msg.sequenceNumber;
        this.#stats.droppedCustomParameters += msg.droppedCustomParameters;
        this.#stats.events.start++;
        return {
          kind: 'event',
          event: {
            type: 'start',
            sequenceNumber: msg.sequenceNumber,
            streamSid: msg.streamSid,
            accountSid: msg.accountSid,
            callSid: msg.callSid,
            tracks: msg.tracks,
            tracksDefaulted: msg.tracksDefaulted,
            customParameters: msg.customParameters,
            droppedCustomParameters: msg.droppedCustomParameters,
            mediaFormat: msg.mediaFormat,
            codec,
          },
        };
      }
      case 'dtmf': {
        const pre = this.#checkStreaming(msg.streamSid, msg.sequenceNumber);
        if (pre !== null) return pre;
        this.#stats.events.dtmf++;
        return {
          kind: 'event',
          event: { type: 'dtmf', sequenceNumber: msg.sequenceNumber, track: msg.track, digit: msg.digit },
        };
      }
      case 'mark': {
        const pre = this.#checkStreaming(msg.streamSid, msg.sequenceNumber);
        if (pre !== null) return pre;
        this.#stats.events.mark++;
        return {
          kind: 'event',
          event: { type: 'mark', sequenceNumber: msg.sequenceNumber, name: msg.name },
        };
      }
      case 'stop': {
        const pre = this.#checkStreaming(msg.streamSid, msg.sequenceNumber);
        if (pre !== null) return pre;
        this.#state = 'stopped';
        this.#stats.events.stop++;
        return {
          kind: 'event',
          event: {
            type: 'stop',
            sequenceNumber: msg.sequenceNumber,
            accountSid: msg.accountSid,
            callSid: msg.callSid,
          },
        };
      }
    }
  }

  /** State, streamSid and sequence checks shared by media/dtmf/mark/stop. */
  #checkStreaming(streamSid: string, seq: number): TwilioParseResult | null {
    if (this.#state !== 'streaming') {
      if (this.#state === 'stopped') return this.#drop('ERR_INGEST_AFTER_STOP');
      return this.#fail('ERR_INGEST_MEDIA_BEFORE_START');
    }
    if (streamSid !== this.#streamSid) return this.#drop('ERR_INGEST_STREAM_SID_MISMATCH');
    this.#noteSeq(seq);
    return null;
  }

  /** sequenceNumber bookkeeping: gaps and regressions are counted, never dropped. */
  #noteSeq(seq: number): void {
    const last = this.#lastSeq;
    if (seq > last + 1) {
      this.#stats.seqGaps++;
      this.#stats.seqMissing += seq - last - 1;
    } else if (seq <= last) {
      this.#stats.seqRegressions++;
    }
    if (seq > last) this.#lastSeq = seq;
  }

  #drop(code: TwilioDropCode, detail?: string): DropResult {
    this.#stats.drops[code]++;
    return detail === undefined ? DROP[code] : { kind: 'drop', code, detail };
  }

  #fail(code: TwilioFatalCode): TwilioParseResult {
    const spec = FATAL[code];
    this.#state = 'failed';
    this.#stats.fatal = code;
    return { kind: 'fatal', code, closeCode: spec.closeCode, reason: spec.reason };
  }
}

function toText(data: Buffer | string | ArrayBuffer | readonly Buffer[]): string {
  if (typeof data === 'string') return data;
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return Buffer.concat(data).toString('utf8');
}
