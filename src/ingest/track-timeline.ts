/**
 * Per-track audio timeline (sans-I/O): timestamped G.711 frames in, fixed-size PCM16LE chunks
 * out, positioned on the call timeline (ms from stream start). One instance per speaker track.
 *
 * The position is kept in SAMPLES (8 per ms) so nothing drifts. For each frame at
 * `timestampMs` with n samples (start = timestampMs × 8, end = start + n):
 *
 * - end ≤ position          → dropped: a duplicate when its timestamp equals one of the last
 *                              16 accepted frames' (stats.duplicateFrames), else late
 *                              (stats.lateFrames);
 * - start < position < end  → only the new tail is kept (stats.overlapTrimmedSamples);
 * - start > position + gapFillThresholdMs → silence (PCM zeros) fills the gap up to start
 *                              (stats.gaps, stats.gapFillMs); before the first frame this is
 *                              the lead-in (stats.leadInFillMs: the timeline starts at 0, so a
 *                              first frame at 52 ms is preceded by 52 ms of silence);
 * - otherwise (0 < gap ≤ threshold: jitter) → appended contiguously; the gap is absorbed
 *                              (stats.jitterFrames; stats.lagMs is how far the newest frame
 *                              sits before its timestamp), so the track is never more than
 *                              gapFillThresholdMs behind its timestamps.
 *
 * A gap longer than maxGapFillMs is capped (stats.gapsCapped): that much silence (rounded up
 * to finish the current chunk, so chunks stay full-size) is emitted, then the timeline JUMPS to
 * the frame's timestamp (stats.gapSkippedMs) — the next chunk's startMs shows the jump. This
 * bounds the output of a corrupt or absolute timestamp.
 *
 * Frames are decoded straight into a preallocated chunk buffer; a full chunk is handed out as
 * is and a fresh buffer allocated (one allocation per chunk, none per frame). Emitted chunks
 * are owned by the caller. Chunk startMs values are multiples of chunkMs unless flush() or a
 * capped gap moved the grid (and may then be fractional ms for odd-sized frames).
 */
import { decodeG711Into, type G711Codec } from '../codec/g711.js';
import { SAMPLES_PER_MS, type PcmChunk } from '../core/types.js';

export interface TrackTimelineOptions {
  /** Codec of the frames; push() can override it per frame. */
  readonly codec: G711Codec;
  /** Emitted chunk duration, ms (integer). Default 100 (1600 bytes of PCM16LE). */
  readonly chunkMs?: number;
  /** Gaps longer than this are filled with silence; shorter ones are absorbed. Default 20. */
  readonly gapFillThresholdMs?: number;
  /** Longest gap filled with silence; longer gaps are capped and jumped. Default 10 min. */
  readonly maxGapFillMs?: number;
}

export interface TrackTimelineStats {
  framesIn: number;
  framesAccepted: number;
  /** Zero-length frames (ignored). */
  emptyFrames: number;
  /** Frames with a negative or non-finite timestamp (ignored). */
  invalidFrames: number;
  lateFrames: number;
  duplicateFrames: number;
  overlapTrimmedSamples: number;
  /** Gaps filled with silence (lead-in excluded). */
  gaps: number;
  /** Silence inserted for gaps, ms (lead-in excluded). */
  gapFillMs: number;
  /** Gaps longer than maxGapFillMs. */
  gapsCapped: number;
  /** Timeline skipped (not filled) for capped gaps, ms. */
  gapSkippedMs: number;
  /** Silence before the first frame, ms. */
  leadInFillMs: number;
  /** Frames placed early (gap ≤ threshold absorbed by appending contiguously). */
  jitterFrames: number;
  /** How far the newest accepted frame was placed before its timestamp, ms (0..threshold). */
  lagMs: number;
  /** Silence added by padSilence(), ms. */
  paddedSilenceMs: number;
  chunksEmitted: number;
  /** Frames whose codec differs from the previous frame's. */
  codecSwitches: number;
}

const EMPTY: readonly PcmChunk[] = Object.freeze([]);
const RECENT = 16;

export class TrackTimeline {
  readonly #chunkSamples: number;
  readonly #thresholdSamples: number;
  readonly #maxGapSamples: number;
  #codec: G711Codec;
  #lastCodec: G711Codec | null = null;
  #buf: Buffer;
  /** Samples written into #buf. */
  #fill = 0;
  /** Timeline sample index of #buf[0]. The position is #chunkStart + #fill. */
  #chunkStart = 0;
  /** Newest receivedAt of anything in the current chunk (NaN when empty). */
  #chunkReceivedAt = Number.NaN;
  #started = false;
  #out: PcmChunk[] | null = null;
  readonly #recent = new Float64Array(RECENT).fill(Number.NaN);
  #recentNext = 0;
  #overlapTrimmedSamples = 0;
  #gapFillSamples = 0;
  #gapSkippedSamples = 0;
  #leadInSamples = 0;
  #lagSamples = 0;
  #paddedSamples = 0;
  readonly #stats = {
    framesIn: 0,
    framesAccepted: 0,
    emptyFrames: 0,
    invalidFrames: 0,
    lateFrames: 0,
    duplicateFrames: 0,
    gaps: 0,
    gapsCapped: 0,
    jitterFrames: 0,
    chunksEmitted: 0,
    codecSwitches: 0,
  };

  constructor(opts: TrackTimelineOptions) {
    const chunkMs = opts.chunkMs ?? 100;
    const thresholdMs = opts.gapFillThresholdMs ?? 20;
    const maxGapMs = opts.maxGapFillMs ?? 10 * 60_000;
    if (!Number.isInteger(chunkMs) || chunkMs <= 0) throw new RangeError('chunkMs must be a positive integer');
    if (!(thresholdMs >= 0) || !Number.isFinite(thresholdMs)) throw new RangeError('gapFillThresholdMs must be >= 0');
    if (!(maxGapMs >= 0) || !Number.isFinite(maxGapMs)) throw new RangeError('maxGapFillMs must be >= 0');
    this.#codec = opts.codec;
    this.#chunkSamples = chunkMs * SAMPLES_PER_MS;
    this.#thresholdSamples = Math.round(thresholdMs * SAMPLES_PER_MS);
    this.#maxGapSamples = Math.round(maxGapMs * SAMPLES_PER_MS);
    this.#buf = Buffer.allocUnsafe(this.#chunkSamples * 2);
  }

  /** End of the audio placed so far, ms from stream start. */
  get positionMs(): number {
    return (this.#chunkStart + this.#fill) / SAMPLES_PER_MS;
  }

  /** Audio buffered in the partial chunk, ms. */
  get bufferedMs(): number {
    return this.#fill / SAMPLES_PER_MS;
  }

  get codec(): G711Codec {
    return this.#codec;
  }

  /** A snapshot of the counters. */
  get stats(): TrackTimelineStats {
    return {
      ...this.#stats,
      overlapTrimmedSamples: this.#overlapTrimmedSamples,
      gapFillMs: this.#gapFillSamples / SAMPLES_PER_MS,
      gapSkippedMs: this.#gapSkippedSamples / SAMPLES_PER_MS,
      leadInFillMs: this.#leadInSamples / SAMPLES_PER_MS,
      lagMs: this.#lagSamples / SAMPLES_PER_MS,
      paddedSilenceMs: this.#paddedSamples / SAMPLES_PER_MS,
    };
  }

  /**
   * Places one G.711 frame (1 byte = 1 sample) at `timestampMs` and returns the chunks it
   * completed (often none; the returned array is shared and frozen when empty).
   * `receivedAt`: wall-clock ms the frame arrived. `codec` overrides the default for this frame.
   */
  push(
    timestampMs: number,
    payload: Uint8Array,
    receivedAt: number,
    codec: G711Codec = this.#codec,
  ): readonly PcmChunk[] {
    const stats = this.#stats;
    stats.framesIn++;
    const n = payload.length;
    if (n === 0) {
      stats.emptyFrames++;
      return EMPTY;
    }
    if (!(timestampMs >= 0) || !Number.isFinite(timestampMs)) {
      stats.invalidFrames++;
      return EMPTY;
    }
    if (codec !== this.#lastCodec) {
      if (this.#lastCodec !== null) stats.codecSwitches++;
      this.#lastCodec = codec;
    }
    const start = Math.round(timestampMs * SAMPLES_PER_MS);
    const end = start + n;
    const pos = this.#chunkStart + this.#fill;
    if (end <= pos) {
      if (this.#isRecent(timestampMs)) stats.duplicateFrames++;
      else stats.lateFrames++;
      return EMPTY;
    }
    this.#out = null;
    let from = 0;
    let lag = 0;
    if (start < pos) {
      from = pos - start;
      this.#overlapTrimmedSamples += from;
    } else if (start > pos) {
      const gap = start - pos;
      if (gap > this.#thresholdSamples) {
        this.#fillGap(gap, receivedAt, !this.#started);
      } else {
        lag = gap;
        stats.jitterFrames++;
      }
    }
    this.#lagSamples = lag;
    this.#started = true;
    this.#appendAudio(codec, payload, from, receivedAt);
    this.#recent[this.#recentNext] = timestampMs;
    this.#recentNext = (this.#recentNext + 1) % RECENT;
    stats.framesAccepted++;
    return this.#takeOut();
  }

  /**
   * Advances the timeline by `ms` of silence (keepalive when the line goes quiet) and returns
   * the chunks completed. Real frames for the padded span that arrive later are late (dropped)
   * or trimmed.
   */
  padSilence(ms: number, receivedAt: number): readonly PcmChunk[] {
    const samples = Math.round(ms * SAMPLES_PER_MS);
    if (!(samples > 0)) return EMPTY;
    this.#out = null;
    this.#started = true;
    this.#paddedSamples += samples;
    this.#appendSilence(samples, receivedAt);
    return this.#takeOut();
  }

  /**
   * Emits the partial tail chunk (a copy of the buffered samples), or null when nothing is
   * buffered. The timeline continues from the same position: the next chunk starts there.
   */
  flush(): PcmChunk | null {
    if (this.#fill === 0) return null;
    const chunk: PcmChunk = {
      pcm: Buffer.from(this.#buf.subarray(0, this.#fill * 2)),
      startMs: this.#chunkStart / SAMPLES_PER_MS,
      receivedAt: this.#chunkReceivedAt,
    };
    this.#chunkStart += this.#fill;
    this.#fill = 0;
    this.#chunkReceivedAt = Number.NaN;
    this.#stats.chunksEmitted++;
    return chunk;
  }

  #isRecent(timestampMs: number): boolean {
    const r = this.#recent;
    for (let i = 0; i < RECENT; i++) if (r[i] === timestampMs) return true;
    return false;
  }

  #fillGap(gap: number, receivedAt: number, leadIn: boolean): void {
    let fill = gap;
    let skip = 0;
    if (gap > this.#maxGapSamples) {
      // cap, rounded up so the current chunk is completed and chunks stay full-size
      const cs = this.#chunkSamples;
      const capped = this.#maxGapSamples + ((cs - ((this.#fill + this.#maxGapSamples) % cs)) % cs);
      if (capped < gap) {
        fill = capped;
        skip = gap - capped;
      }
    }
    this.#appendSilence(fill, receivedAt);
    if (skip > 0) {
      // #fill is 0 here: the silence finished the chunk
      this.#chunkStart += skip;
      this.#gapSkippedSamples += skip;
      this.#stats.gapsCapped++;
    }
    if (leadIn) {
      this.#leadInSamples += fill;
    } else {
      this.#gapFillSamples += fill;
      this.#stats.gaps++;
    }
  }

  #noteReceived(receivedAt: number): void {
    const cur = this.#chunkReceivedAt;
    if (!(cur >= receivedAt)) this.#chunkReceivedAt = receivedAt;
  }

  #appendSilence(samples: number, receivedAt: number): void {
    const cs = this.#chunkSamples;
    let left = samples;
    while (left > 0) {
      const n = Math.min(left, cs - this.#fill);
      this.#buf.fill(0, this.#fill * 2, (this.#fill + n) * 2);
      this.#fill += n;
      left -= n;
      this.#noteReceived(receivedAt);
      if (this.#fill === cs) this.#emit();
    }
  }

  #appendAudio(codec: G711Codec, payload: Uint8Array, from: number, receivedAt: number): void {
    const cs = this.#chunkSamples;
    const total = payload.length;
    let i = from;
    while (i < total) {
      const n = Math.min(total - i, cs - this.#fill);
      const src = i === 0 && n === total ? payload : payload.subarray(i, i + n);
      decodeG711Into(codec, src, this.#buf, this.#fill * 2);
      this.#fill += n;
      i += n;
      this.#noteReceived(receivedAt);
      if (this.#fill === cs) this.#emit();
    }
  }

  #emit(): void {
    const chunk: PcmChunk = {
      pcm: this.#buf,
      startMs: this.#chunkStart / SAMPLES_PER_MS,
      receivedAt: this.#chunkReceivedAt,
    };
    (this.#out ??= []).push(chunk);
    this.#stats.chunksEmitted++;
    this.#chunkStart += this.#fill;
    this.#fill = 0;
    this.#chunkReceivedAt = Number.NaN;
    this.#buf = Buffer.allocUnsafe(this.#chunkSamples * 2);
  }

  #takeOut(): readonly PcmChunk[] {
    const out = this.#out;
    this.#out = null;
    return out ?? EMPTY;
  }
}
