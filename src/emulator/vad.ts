/**
 * Energy VAD for the emulator (pure, no I/O). Audio is PCM16LE mono cut into 10 ms windows; a
 * window is speech when its RMS exceeds a threshold. `SpeechSegmenter` turns the window stream
 * into speech segments: a segment starts at the first voiced window and ends when the silence
 * after the last voiced window reaches `maxSilenceMs`; its end is the end of that last voiced
 * window.
 *
 * Hot path: samples are read straight from the bytes (no Int16Array copy, no per-sample or
 * per-window allocation); a chunk may have any length, odd lengths included.
 */

export interface VadOptions {
  readonly sampleRateHz: number;
  /** RMS on the PCM16 scale (0..32767) above which a window counts as speech. */
  readonly thresholdRms: number;
  /** Window length, ms (default 10). */
  readonly windowMs?: number;
}

/** Receives every completed window; return false to stop processing the current chunk. */
export interface VadWindowSink {
  onVadWindow(voiced: boolean, windowIndex: number): boolean;
}

export class EnergyVad {
  readonly windowMs: number;
  readonly windowSamples: number;
  private readonly thresholdSumSq: number;
  private sumSq = 0;
  private count = 0;
  /** Low byte of a sample split across two chunks, or -1. */
  private carry = -1;
  private windowIndex = 0;

  constructor(opts: VadOptions) {
    this.windowMs = opts.windowMs ?? 10;
    this.windowSamples = Math.max(1, Math.round((opts.sampleRateHz * this.windowMs) / 1000));
    this.thresholdSumSq = opts.thresholdRms * opts.thresholdRms * this.windowSamples;
  }

  /** Windows completed so far. */
  get windows(): number {
    return this.windowIndex;
  }

  /**
   * Feeds PCM16LE bytes. Calls `sink.onVadWindow` for every window completed by this chunk, in
   * order. Returns false if the sink stopped early (the rest of the chunk is not consumed).
   */
  push(pcm: Uint8Array, sink: VadWindowSink): boolean {
    const len = pcm.length;
    const n = this.windowSamples;
    const thr = this.thresholdSumSq;
    let i = 0;
    let sumSq = this.sumSq;
    let count = this.count;
    if (this.carry >= 0 && len > 0) {
      const s = ((((pcm[0] as number) << 8) | this.carry) << 16) >> 16;
      this.carry = -1;
      i = 1;
      sumSq += s * s;
      if (++count === n) {
        const voiced = sumSq > thr;
        sumSq = 0;
        count = 0;
        this.sumSq = 0;
        this.count = 0;
        if (!sink.onVadWindow(voiced, this.windowIndex++)) return false;
      }
    }
    for (; i + 1 < len; i += 2) {
      const s = ((((pcm[i + 1] as number) << 8) | (pcm[i] as number)) << 16) >> 16;
      sumSq += s * s;
      if (++count === n) {
        const voiced = sumSq > thr;
        sumSq = 0;
        count = 0;
        this.sumSq = 0;
        this.count = 0;
        if (!sink.onVadWindow(voiced, this.windowIndex++)) {
          return false;
        }
      }
    }
    if (i < len) this.carry = pcm[i] as number;
    this.sumSq = sumSq;
    this.count = count;
    return true;
  }
}

export const SEGMENT_NONE = 0;
export const SEGMENT_START = 1;
export const SEGMENT_END = 2;
export type SegmentEvent = typeof SEGMENT_NONE | typeof SEGMENT_START | typeof SEGMENT_END;

/** Segments a stream of VAD windows (pure state machine; times are ms from the first window). */
export class SpeechSegmenter {
  inSpeech = false;
  /** Start of the current (or last) segment: start of its first voiced window. */
  segmentStartMs = 0;
  /** End of the last voiced window seen. */
  lastVoicedEndMs = 0;
  /** Continuous non-speech audio up to the latest window (from the start if nothing was voiced). */
  silenceRunMs = 0;

  constructor(
    readonly windowMs: number,
    public maxSilenceMs: number,
  ) {}

  onWindow(voiced: boolean, windowIndex: number): SegmentEvent {
    const startMs = windowIndex * this.windowMs;
    const endMs = startMs + this.windowMs;
    if (voiced) {
      this.silenceRunMs = 0;
      this.lastVoicedEndMs = endMs;
      if (!this.inSpeech) {
        this.inSpeech = true;
        this.segmentStartMs = startMs;
        return SEGMENT_START;
      }
      return SEGMENT_NONE;
    }
    this.silenceRunMs += this.windowMs;
    if (this.inSpeech && endMs - this.lastVoicedEndMs >= this.maxSilenceMs) {
      this.inSpeech = false;
      return SEGMENT_END;
    }
    return SEGMENT_NONE;
  }

  /** Ends the current segment now (a forced final); the next voiced window starts a new one. */
  forceEnd(): void {
    this.inSpeech = false;
  }
}

export interface SpeechSegment {
  readonly startMs: number;
  readonly endMs: number;
}

/** Segments a whole PCM16LE buffer (tests, tools). A segment still open at the end is closed there. */
export function segmentPcm(
  pcm: Uint8Array,
  opts: VadOptions & { readonly maxSilenceMs: number },
): SpeechSegment[] {
  const vad = new EnergyVad(opts);
  const seg = new SpeechSegmenter(vad.windowMs, opts.maxSilenceMs);
  const out: SpeechSegment[] = [];
  vad.push(pcm, {
    onVadWindow(voiced, index) {
      if (seg.onWindow(voiced, index) === SEGMENT_END) {
        out.push({ startMs: seg.segmentStartMs, endMs: seg.lastVoicedEndMs });
      }
      return true;
    },
  });
  if (seg.inSpeech) out.push({ startMs: seg.segmentStartMs, endMs: seg.lastVoicedEndMs });
  return out;
}

/**
 * Keeps the last `tail.length` bytes of a PCM stream in `tail` (its first `tailLen` bytes are
 * valid): appends `chunk` and returns the new valid length. Used to look back at the audio just
 * before a sentence starts without keeping the whole stream.
 */
export function appendToTail(tail: Buffer, tailLen: number, chunk: Buffer): number {
  const T = tail.length;
  if (chunk.length >= T) {
    chunk.copy(tail, 0, chunk.length - T);
    return T;
  }
  const keep = Math.min(tailLen, T - chunk.length);
  tail.copyWithin(0, tailLen - keep, tailLen);
  chunk.copy(tail, keep);
  return keep + chunk.length;
}
