/**
 * Call simulator, Twilio side: plays a fixture call into a WebSocket endpoint exactly as
 * Twilio Media Streams would (spec telephony-ingest.md §1.2–1.4): `connected`, `start`
 * (sequenceNumber "1"), then 20 ms / 160-byte μ-law `media` frames per track — per-track
 * chunk counter from 1, one shared sequenceNumber, timestamp = startTimestampMs + frameMs × i,
 * inbound and outbound interleaved — then `stop`, then close 1000.
 *
 * Deliberately self-contained: it builds its own wire messages and does not import the
 * ingest parser, so a misreading of the protocol is not shared by both sides.
 *
 * Efficiency (the benchmark plays 250 calls = 500 tracks × 50 frames/s from one process):
 * base64 payloads are computed once per fixture track and frame size (cached), messages are
 * built by string concatenation, and each call runs one timer with a drift-free schedule
 * (frames due are computed from the elapsed time at every tick, so late ticks catch up).
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setImmediate as setImmediateP } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { AppError } from '../core/errors.js';
import type { FixtureCall, FixtureTrack, FixtureTwilioTrack } from './fixture-call.js';

export const MULAW_SILENCE_BYTE = 0xff;

export interface PlayTwilioCallOptions {
  readonly fixture: FixtureCall;
  /** ws:// or wss:// URL of the ingest endpoint. */
  readonly url: string;
  /** 1 = real time (default); 10 = ten times faster; 0 or Infinity = as fast as backpressure allows. */
  readonly speed?: number;
  readonly customParameters?: Readonly<Record<string, string>>;
  /** 'both' (default): inbound and outbound (Twilio both_tracks); 'inbound': inbound only. */
  readonly tracks?: 'both' | 'inbound';
  /** Extra upgrade request headers (e.g. X-Twilio-Signature). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Defaults: random realistic ids ('MZ'/'CA'/'AC' + 32 hex). */
  readonly streamSid?: string;
  readonly callSid?: string;
  readonly accountSid?: string;
  /** Timestamp of the first media frame, ms (default 0; real Twilio streams start near 50). */
  readonly startTimestampMs?: number;
  /** Frame duration, ms (default 20 = 160 bytes). */
  readonly frameMs?: number;
  /** Send `stop` before closing (default true; false simulates a missing stop). */
  readonly sendStop?: boolean;
  /** Abort: stops sending and closes with 1000 "aborted" without `stop`; the result has aborted: true. */
  readonly signal?: AbortSignal;
  /** Called after each media frame is handed to the socket; sentAt is Date.now(). */
  readonly onFrameSent?: (track: FixtureTwilioTrack, chunk: number, sentAt: number) => void;
  /**
   * Outbound buffer bound, bytes (default 256 KiB). Fast mode waits for the socket to drain
   * above it; real-time mode skips ticks while above it (and catches up afterwards).
   */
  readonly highWaterMarkBytes?: number;
  /** WebSocket handshake timeout, ms (default 10 000). */
  readonly handshakeTimeoutMs?: number;
  /** After our close frame, terminate the socket if the server has not closed within this, ms (default 5000). */
  readonly closeTimeoutMs?: number;
}

export interface PlayTwilioCallResult {
  readonly streamSid: string;
  readonly callSid: string;
  readonly accountSid: string;
  /** Media messages sent, all tracks. */
  readonly framesSent: number;
  /** Media messages sent per track. */
  readonly framesPerTrack: Readonly<Partial<Record<FixtureTwilioTrack, number>>>;
  /** Audio sent per track, ms (frames × frameMs, of the longest track). */
  readonly audioMs: number;
  /** Wall-clock time from socket open to close, ms. */
  readonly durationMs: number;
  /** Close code received (1000 after a normal end; the server's code if it closed first; 1006 abnormal). */
  readonly closeCode?: number;
  readonly closeReason?: string;
  /** True when the server closed before we did. */
  readonly closedByServer: boolean;
  readonly stopSent: boolean;
  readonly aborted: boolean;
}

// ---------------------------------------------------------------------------------------------
// Payload cache and ids
// ---------------------------------------------------------------------------------------------

const payloadCache = new WeakMap<FixtureTrack, Map<number, readonly string[]>>();

/**
 * The track cut into frames of `frameBytes` μ-law bytes, each base64-encoded; the last frame is
 * padded with μ-law silence (0xFF). Cached per fixture track and frame size.
 */
export function base64Frames(track: FixtureTrack, frameBytes: number): readonly string[] {
  let bySize = payloadCache.get(track);
  if (bySize === undefined) {
    bySize = new Map();
    payloadCache.set(track, bySize);
  }
  const cached = bySize.get(frameBytes);
  if (cached !== undefined) return cached;
  const audio = track.mulaw;
  const count = Math.ceil(audio.length / frameBytes);
  const frames: string[] = new Array<string>(count);
  for (let i = 0; i < count; i++) {
    const start = i * frameBytes;
    const end = start + frameBytes;
    if (end <= audio.length) {
      frames[i] = audio.toString('base64', start, end);
    } else {
      const last = Buffer.alloc(frameBytes, MULAW_SILENCE_BYTE);
      audio.copy(last, 0, start, audio.length);
      frames[i] = last.toString('base64');
    }
  }
  bySize.set(frameBytes, frames);
  return frames;
}

function randomSid(prefix: string): string {
  return prefix + randomBytes(16).toString('hex');
}

/**
 * Frames due at `elapsedMs` after the first one (sent at 0), at one frame per `intervalMs`,
 * capped at `total`: the drift-free schedule.
 */
export function framesDue(elapsedMs: number, intervalMs: number, total: number): number {
  if (elapsedMs < 0) return 0;
  return Math.min(total, Math.floor(elapsedMs / intervalMs) + 1);
}

// ---------------------------------------------------------------------------------------------
// Wire messages (the simulator's own builders)
// ---------------------------------------------------------------------------------------------

export function buildConnectedMessage(): string {
  return '{"event":"connected","protocol":"Call","version":"1.0.0"}';
}

export function buildStartMessage(p: {
  streamSid: string;
  accountSid: string;
  callSid: string;
  tracks: readonly FixtureTwilioTrack[];
  customParameters: Readonly<Record<string, string>>;
}): string {
  return JSON.stringify({
    event: 'start',
    sequenceNumber: '1',
    streamSid: p.streamSid,
    start: {
      streamSid: p.streamSid,
      accountSid: p.accountSid,
      callSid: p.callSid,
      tracks: p.tracks,
      customParameters: p.customParameters,
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
    },
  });
}

export function buildStopMessage(p: {
  sequenceNumber: number;
  streamSid: string;
  accountSid: string;
  callSid: string;
}): string {
  return JSON.stringify({
    event: 'stop',
    sequenceNumber: String(p.sequenceNumber),
    streamSid: p.streamSid,
    stop: { accountSid: p.accountSid, callSid: p.callSid },
  });
}

/**
 * A media message builder bound to one stream (string concatenation, no JSON.stringify), in
 * the key order real Twilio streams use: event, sequenceNumber, media{track, chunk, timestamp,
 * payload}, streamSid (as in captured Twilio logs).
 */
export function mediaMessageBuilder(
  streamSid: string,
): (sequenceNumber: number, track: FixtureTwilioTrack, chunk: number, timestampMs: number, payload: string) => string {
  const tail = '"},"streamSid":' + JSON.stringify(streamSid) + '}';
  return (seq, track, chunk, ts, payload) =>
    '{"event":"media","sequenceNumber":"' +
    seq +
    '","media":{"track":"' +
    track +
    '","chunk":"' +
    chunk +
    '","timestamp":"' +
    ts +
    '","payload":"' +
    payload +
    tail;
}

// ---------------------------------------------------------------------------------------------
// Playing a call
// ---------------------------------------------------------------------------------------------

function simError(code: string, message: string, cause?: unknown, details?: Record<string, unknown>): AppError {
  return new AppError(code, message, { category: 'connectivity', cause, ...(details ? { details } : {}) });
}

function connect(url: string, headers: Readonly<Record<string, string>> | undefined, timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: headers ? { ...headers } : undefined,
      handshakeTimeout: timeoutMs,
      perMessageDeflate: false,
    });
    const onError = (err: Error): void => {
      ws.off('open', onOpen);
      const m = /Unexpected server response: (\d+)/.exec(err.message);
      if (m) {
        reject(simError('ERR_SIMULATOR_UPGRADE_REJECTED', 'upgrade rejected', err, { status: Number(m[1]) }));
      } else {
        reject(simError('ERR_SIMULATOR_CONNECT', 'cannot connect', err));
      }
    };
    const onOpen = (): void => {
      ws.off('error', onError);
      resolve(ws);
    };
    ws.once('error', onError);
    ws.once('open', onOpen);
  });
}

/** Plays one fixture call as a Twilio Media Stream; resolves once the socket has closed. */
export async function playTwilioCall(opts: PlayTwilioCallOptions): Promise<PlayTwilioCallResult> {
  const speed = opts.speed ?? 1;
  if (Number.isNaN(speed) || speed < 0) throw new RangeError('speed must be >= 0 (0 or Infinity = as fast as possible)');
  const fast = speed === 0 || speed === Infinity;
  const frameMs = opts.frameMs ?? 20;
  if (!Number.isInteger(frameMs) || frameMs <= 0) throw new RangeError('frameMs must be a positive integer');
  const frameBytes = frameMs * 8;
  const startTs = opts.startTimestampMs ?? 0;
  const hwm = opts.highWaterMarkBytes ?? 256 * 1024;
  const closeTimeoutMs = opts.closeTimeoutMs ?? 5000;
  const streamSid = opts.streamSid ?? randomSid('MZ');
  const callSid = opts.callSid ?? randomSid('CA');
  const accountSid = opts.accountSid ?? randomSid('AC');
  const onFrameSent = opts.onFrameSent;
  const signal = opts.signal;

  const wanted: readonly FixtureTwilioTrack[] = (opts.tracks ?? 'both') === 'both' ? ['inbound', 'outbound'] : ['inbound'];
  const playing = opts.fixture.tracks.filter((t) => wanted.includes(t.track));
  if (playing.length === 0) throw new RangeError(`fixture ${opts.fixture.name} has no ${wanted.join('/')} track`);
  const names = playing.map((t) => t.track);
  const frames = playing.map((t) => base64Frames(t, frameBytes));
  const total = Math.max(...frames.map((f) => f.length));
  const perTrack = playing.map(() => 0);
  const media = mediaMessageBuilder(streamSid);

  if (signal?.aborted) throw simError('ERR_SIMULATOR_ABORTED', 'aborted before connecting', signal.reason);
  const ws = await connect(opts.url, opts.headers, opts.handshakeTimeoutMs ?? 10_000);
  const openedAt = performance.now();

  let seq = 1;
  let next = 0;
  let framesSent = 0;
  let stopped = false;
  let closingByUs = false;
  let stopSent = false;
  let aborted = false;
  let timer: NodeJS.Timeout | null = null;
  let closeTimer: NodeJS.Timeout | null = null;

  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') }));
  });
  // errors after open are followed by 'close'; keep them from being unhandled
  ws.on('error', () => undefined);

  const sendFrame = (i: number, cb?: (err?: Error) => void): void => {
    const ts = startTs + frameMs * i;
    const chunk = i + 1;
    let last = -1;
    for (let t = 0; t < frames.length; t++) if (frames[t]![i] !== undefined) last = t;
    for (let t = 0; t <= last; t++) {
      const payload = frames[t]![i];
      if (payload === undefined) continue;
      const track = names[t]!;
      seq++;
      ws.send(media(seq, track, chunk, ts, payload), t === last ? cb : undefined);
      perTrack[t]!++;
      framesSent++;
      if (onFrameSent) onFrameSent(track, chunk, Date.now());
    }
    if (last < 0 && cb) cb();
  };

  const closeOurs = (reason: string): void => {
    if (closingByUs || ws.readyState !== WebSocket.OPEN) return;
    closingByUs = true;
    ws.close(1000, reason);
    closeTimer = setTimeout(() => ws.terminate(), closeTimeoutMs);
    closeTimer.unref();
  };

  const finish = (): void => {
    if (stopped) return;
    stopped = true;
    if (ws.readyState !== WebSocket.OPEN) return;
    if (opts.sendStop ?? true) {
      seq++;
      ws.send(buildStopMessage({ sequenceNumber: seq, streamSid, accountSid, callSid }));
      stopSent = true;
    }
    closeOurs('stream ended');
  };

  const onAbort = (): void => {
    if (stopped) return;
    stopped = true;
    aborted = true;
    if (timer) clearTimeout(timer);
    closeOurs('aborted');
  };
  signal?.addEventListener('abort', onAbort, { once: true });

  void closed.then(() => {
    stopped = true;
    if (timer) clearTimeout(timer);
  });

  ws.send(buildConnectedMessage());
  ws.send(
    buildStartMessage({
      streamSid,
      accountSid,
      callSid,
      tracks: names,
      customParameters: opts.customParameters ?? {},
    }),
  );

  if (fast) {
    const BATCH = 50;
    while (!stopped && next < total) {
      const end = Math.min(total, next + BATCH);
      let flushed: Promise<void> | null = null;
      while (next < end - 1) sendFrame(next++);
      if (ws.bufferedAmount > hwm) {
        flushed = new Promise<void>((resolve) => sendFrame(next++, () => resolve()));
      } else {
        sendFrame(next++);
      }
      if (flushed) await Promise.race([flushed, closed]);
      else await setImmediateP();
    }
    finish();
  } else {
    const intervalMs = frameMs / speed;
    const t0 = performance.now();
    const tick = (): void => {
      timer = null;
      if (stopped) return;
      if (ws.bufferedAmount > hwm) {
        // congested: skip this tick (the schedule catches up once the socket drains)
        timer = setTimeout(tick, Math.max(1, intervalMs));
        return;
      }
      const due = framesDue(performance.now() - t0, intervalMs, total);
      while (next < due) sendFrame(next++);
      if (next >= total) {
        finish();
        return;
      }
      const delay = next * intervalMs - (performance.now() - t0);
      timer = setTimeout(tick, delay > 0 ? delay : 0);
    };
    tick();
  }

  const { code, reason } = await closed;
  if (closeTimer) clearTimeout(closeTimer);
  signal?.removeEventListener('abort', onAbort);
  const framesPerTrack: Partial<Record<FixtureTwilioTrack, number>> = {};
  names.forEach((n, i) => (framesPerTrack[n] = perTrack[i]!));
  return {
    streamSid,
    callSid,
    accountSid,
    framesSent,
    framesPerTrack,
    audioMs: Math.max(...perTrack) * frameMs,
    durationMs: performance.now() - openedAt,
    closeCode: code,
    closeReason: reason,
    closedByServer: !closingByUs,
    stopSent,
    aborted,
  };
}

export interface PlayManyCallsOptions
  extends Omit<PlayTwilioCallOptions, 'streamSid' | 'callSid' | 'customParameters' | 'onFrameSent'> {
  /** Number of concurrent calls. */
  readonly calls: number;
  /** Delay between call starts, ms (default 0). */
  readonly staggerMs?: number;
  /** The same parameters for every call, or per call index (e.g. a per-call token). */
  readonly customParameters?:
    | Readonly<Record<string, string>>
    | ((index: number) => Readonly<Record<string, string>>);
  readonly onFrameSent?: (callIndex: number, track: FixtureTwilioTrack, chunk: number, sentAt: number) => void;
}

/**
 * Plays `calls` copies of the fixture concurrently (fresh random ids per call), starting one
 * every `staggerMs`. Settles when every call has settled; never rejects.
 */
export async function playManyCalls(opts: PlayManyCallsOptions): Promise<PromiseSettledResult<PlayTwilioCallResult>[]> {
  const { calls, staggerMs = 0, customParameters, onFrameSent, ...rest } = opts;
  if (!Number.isInteger(calls) || calls < 0) throw new RangeError('calls must be a non-negative integer');
  const signal = opts.signal;
  const runs: Promise<PlayTwilioCallResult>[] = [];
  for (let i = 0; i < calls; i++) {
    const delay = i * staggerMs;
    runs.push(
      (async () => {
        if (delay > 0) await sleep(delay, signal);
        if (signal?.aborted) throw simError('ERR_SIMULATOR_ABORTED', 'aborted before starting', signal.reason);
        return playTwilioCall({
          ...rest,
          customParameters: typeof customParameters === 'function' ? customParameters(i) : customParameters,
          onFrameSent: onFrameSent ? (track, chunk, sentAt) => onFrameSent(i, track, chunk, sentAt) : undefined,
        });
      })(),
    );
  }
  return Promise.allSettled(runs);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const onAbort = (): void => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
