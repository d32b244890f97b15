/**
 * Client-side turn detection for qwen's manual mode (`turn_detection: null`, spec B3.1/B3.3):
 * a small energy VAD over the PCM16LE the client sends (pure, no I/O).
 *
 * Audio is cut into 10 ms windows; a window is speech when its RMS (PCM16 scale, 0..32767)
 * exceeds `thresholdRms`. A turn starts at its first voiced window and ends when
 * - `maxSilenceMs` of silence follow its last voiced window (its end: the end of that window), or
 * - it has lasted `maxTurnMs` (spec B6: keep each commit to about 60 s or less); a forced end
 *   closes the turn at the current window and the next voiced window opens a new turn.
 * Silence alone never makes a turn, so a turn end always means "speech was appended since the
 * last commit" (the server refuses a commit of an empty buffer).
 *
 * Times are ms from the first byte pushed, i.e. session time when every byte sent on the
 * connection goes through `push`. Each turn end reports `byteOffset`: how many bytes of the
 * current chunk belong before the commit, so the caller can commit exactly at the window
 * boundary where the turn ended.
 *
 * Hot path: samples are read straight from the bytes (no copy, no per-window allocation); a
 * chunk may have any length, odd lengths included.
 */

export interface LocalVadOptions {
  readonly sampleRateHz: number;
  /** RMS on the PCM16 scale above which a 10 ms window counts as speech. */
  readonly thresholdRms: number;
  /** Silence after speech that ends a turn, ms. */
  readonly maxSilenceMs: number;
  /** Longest turn, ms, from its first voiced window (default 60 000, spec B6). */
  readonly maxTurnMs?: number | undefined;
  /** Window length, ms (default 10). */
  readonly windowMs?: number | undefined;
}

/** Receives every turn end found by `push`, in order. */
export interface TurnSink {
  /**
   * @param startMs start of the turn's first voiced window
   * @param endMs end of its last voiced window
   * @param byteOffset bytes of the chunk being pushed that precede the turn end
   */
  onTurnEnd(startMs: number, endMs: number, byteOffset: number): void;
}

export interface LocalTurn {
  readonly startMs: number;
  readonly endMs: number;
}

export const DEFAULT_MANUAL_VAD_RMS = 300;
export const DEFAULT_MAX_TURN_MS = 60_000;

export class LocalTurnDetector {
  readonly windowMs: number;
  readonly windowSamples: number;
  readonly maxSilenceMs: number;
  readonly maxTurnMs: number;
  private readonly thresholdSumSq: number;
  private sumSq = 0;
  private count = 0;
  /** Low byte of a sample split across two chunks, or -1. */
  private carry = -1;
  private windowIndex = 0;
  private open = false;
  private turnStartMs = 0;
  private lastVoicedEndMs = 0;
  /** Turns ended by `maxTurnMs` rather than by silence. */
  forcedEnds = 0;

  constructor(opts: LocalVadOptions) {
    this.windowMs = opts.windowMs ?? 10;
    this.windowSamples = Math.max(1, Math.round((opts.sampleRateHz * this.windowMs) / 1000));
    this.thresholdSumSq = opts.thresholdRms * opts.thresholdRms * this.windowSamples;
    this.maxSilenceMs = opts.maxSilenceMs;
    this.maxTurnMs = opts.maxTurnMs ?? DEFAULT_MAX_TURN_MS;
  }

  /** Whether speech has been heard since the last turn end (a commit would not be empty). */
  get inTurn(): boolean {
    return this.open;
  }

  /** Audio pushed so far in whole windows, ms. */
  get elapsedMs(): number {
    return this.windowIndex * this.windowMs;
  }

  /** Feeds PCM16LE bytes; calls `sink.onTurnEnd` for every turn this chunk ends. */
  push(pcm: Uint8Array, sink: TurnSink): void {
    const len = pcm.length;
    const n = this.windowSamples;
    let i = 0;
    let sumSq = this.sumSq;
    let count = this.count;
    if (this.carry >= 0 && len > 0) {
      const s = ((((pcm[0] as number) << 8) | this.carry) << 16) >> 16;
      this.carry = -1;
      i = 1;
      sumSq += s * s;
      if (++count === n) {
        this.onWindow(sumSq > this.thresholdSumSq, 1, sink);
        sumSq = 0;
        count = 0;
      }
    }
    for (; i + 1 < len; i += 2) {
      const s = ((((pcm[i + 1] as number) << 8) | (pcm[i] as number)) << 16) >> 16;
      sumSq += s * s;
      if (++count === n) {
        this.onWindow(sumSq > this.thresholdSumSq, i + 2, sink);
        sumSq = 0;
        count = 0;
      }
    }
    if (i < len) this.carry = pcm[i] as number;
    this.sumSq = sumSq;
    this.count = count;
  }

  /** Ends the open turn now (e.g. before session.finish); null when no speech is pending. */
  flush(): LocalTurn | null {
    if (!this.open) return null;
    this.open = false;
    return { startMs: this.turnStartMs, endMs: this.lastVoicedEndMs };
  }

  private onWindow(voiced: boolean, byteOffset: number, sink: TurnSink): void {
    const startMs = this.windowIndex * this.windowMs;
    const endMs = startMs + this.windowMs;
    this.windowIndex++;
    if (voiced) {
      if (!this.open) {
        this.open = true;
        this.turnStartMs = startMs;
      }
      this.lastVoicedEndMs = endMs;
    } else if (!this.open) {
      return;
    } else if (endMs - this.lastVoicedEndMs >= this.maxSilenceMs) {
      this.open = false;
      sink.onTurnEnd(this.turnStartMs, this.lastVoicedEndMs, byteOffset);
      return;
    }
    if (endMs - this.turnStartMs >= this.maxTurnMs) {
      this.open = false;
      this.forcedEnds++;
      sink.onTurnEnd(this.turnStartMs, this.lastVoicedEndMs, byteOffset);
    }
  }
}
