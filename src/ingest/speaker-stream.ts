/**
 * One speaker of one call: telephony frames → TrackTimeline (gap fill, 100 ms PCM chunks on
 * the call timeline) → AsrStreamRunner (recogniser connection, replay, retries) → utterances.
 *
 * Keep-alive: while the call is live, the recogniser must never go 23 s without audio, and a
 * stalled line must not desynchronise the timeline. When no frame has arrived for
 * `keepaliveAfterMs`, `tick()` advances the timeline with silence in real time; real frames
 * that arrive later for audio already covered are dropped as late (counted).
 */
import type { AsrStreamRunner } from '../asr/session-runner.js';
import type { G711Codec } from '../codec/g711.js';
import type { PcmChunk, Role } from '../core/types.js';
import type { Metrics } from '../observability/metrics.js';
import { TrackTimeline } from './track-timeline.js';

export interface SpeakerStreamOptions {
  readonly role: Role;
  readonly track: string;
  readonly codec: G711Codec;
  readonly runner: AsrStreamRunner;
  readonly metrics: Metrics;
  readonly source: string;
  readonly keepaliveAfterMs: number;
  readonly now: () => number;
  /** Sees every PCM chunk handed to the recogniser (tests, recording); absent in production. */
  readonly tap?: ((chunk: PcmChunk) => void) | undefined;
}

export class SpeakerStream {
  readonly role: Role;
  readonly track: string;
  readonly runner: AsrStreamRunner;
  private readonly timeline: TrackTimeline;
  private readonly metrics: Metrics;
  private readonly source: string;
  private readonly keepaliveAfterMs: number;
  private readonly now: () => number;
  private lastAudioAt: number;
  private framesIn = 0;
  private reported = { gapFillMs: 0, duplicateFrames: 0, lateFrames: 0 };
  private keepaliveMs = 0;
  private finished = false;
  private readonly tap: ((chunk: PcmChunk) => void) | undefined;

  constructor(options: SpeakerStreamOptions) {
    this.role = options.role;
    this.track = options.track;
    this.runner = options.runner;
    this.metrics = options.metrics;
    this.source = options.source;
    this.keepaliveAfterMs = options.keepaliveAfterMs;
    this.now = options.now;
    this.tap = options.tap;
    this.timeline = new TrackTimeline({ codec: options.codec });
    this.lastAudioAt = options.now();
  }

  start(): void {
    this.runner.start();
  }

  /** A telephony frame for this speaker; `timestampMs` is its position on the call timeline. */
  pushFrame(timestampMs: number, payload: Uint8Array, codec: G711Codec, receivedAt: number): void {
    if (this.finished) return;
    this.framesIn++;
    this.lastAudioAt = receivedAt;
    this.forward(this.timeline.push(timestampMs, payload, receivedAt, codec));
  }

  /**
   * Periodic check (the call registry calls it every few hundred ms): keep-alive silence, and
   * the timeline's counters → Prometheus when `syncMetrics`.
   */
  tick(now: number, syncMetrics = true): void {
    if (this.finished) return;
    if (syncMetrics) this.syncMetrics();
    const quietMs = now - this.lastAudioAt;
    if (quietMs < this.keepaliveAfterMs) return;
    const padMs = Math.floor(quietMs);
    this.lastAudioAt = now;
    this.keepaliveMs += padMs;
    this.metrics.keepaliveSilenceMs.inc(padMs);
    this.forward(this.timeline.padSilence(padMs, now));
  }

  /** Flushes the partial last chunk and finishes the recogniser task (waits for the last finals). */
  async finish(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    this.syncMetrics();
    const tail = this.timeline.flush();
    if (tail) this.forward([tail]);
    await this.runner.finish();
  }

  abort(): void {
    this.finished = true;
    this.runner.abort();
  }

  get positionMs(): number {
    return this.timeline.positionMs;
  }

  /** Non-PII counters for the call-end record. */
  stats(): Record<string, number> {
    const t = this.timeline.stats;
    const prefix = this.track;
    const out: Record<string, number> = {
      [`${prefix}.frames`]: this.framesIn,
      [`${prefix}.keepaliveMs`]: this.keepaliveMs,
      [`${prefix}.positionMs`]: Math.round(this.timeline.positionMs),
    };
    for (const [k, v] of Object.entries(t)) if (typeof v === 'number') out[`${prefix}.${k}`] = v;
    const r = this.runner.stats;
    for (const [k, v] of Object.entries(r)) if (typeof v === 'number') out[`${prefix}.asr.${k}`] = v;
    return out;
  }

  /**
   * Timeline counters → Prometheus, as deltas. Done on the periodic tick rather than per frame,
   * so the per-frame path allocates nothing for metrics.
   */
  private syncMetrics(): void {
    const t = this.timeline.stats;
    const source = this.source;
    const d = this.reported;
    if (t.gapFillMs > d.gapFillMs) this.metrics.gapFillMs.inc({ source }, t.gapFillMs - d.gapFillMs);
    if (t.duplicateFrames > d.duplicateFrames) {
      this.metrics.framesDropped.inc({ source, reason: 'ERR_INGEST_DUPLICATE_FRAME' }, t.duplicateFrames - d.duplicateFrames);
    }
    if (t.lateFrames > d.lateFrames) {
      this.metrics.framesDropped.inc({ source, reason: 'ERR_INGEST_LATE_FRAME' }, t.lateFrames - d.lateFrames);
    }
    this.reported = { gapFillMs: t.gapFillMs, duplicateFrames: t.duplicateFrames, lateFrames: t.lateFrames };
  }

  private forward(chunks: readonly PcmChunk[]): void {
    const tap = this.tap;
    for (const chunk of chunks) {
      if (tap) tap(chunk);
      this.runner.push(chunk);
    }
  }
}
