/**
 * RTP jitter buffer for one SSRC, sans-I/O: the caller passes arrival and poll times (ms, any
 * monotonic clock) and gets frames back in sequence order.
 *
 * - Extended sequence numbers as in RFC 3550 A.1: a packet up to MAX_DROPOUT (3000) ahead of
 *   the highest seen is in order (a gap means loss), up to MAX_MISORDER (100) behind is
 *   reordered or a duplicate; anything else is a jump, dropped unless the next packet confirms
 *   it (seq = jump + 1), which restarts the sequence (`resync` on that frame: new time base).
 * - Extended timestamps: a signed 32-bit delta from the previous packet's, so 2^32 wraps.
 * - Release: a frame is released as soon as it directly follows the last released one; a
 *   frame behind a gap waits until the earliest-arrived held packet is `windowMs` old, then
 *   the missing packets are declared lost (`lostPackets`; `lostMs` from the timestamp gap
 *   between the end of the audio released so far and the next frame). The first frame after
 *   start or reset also waits `windowMs`, so a reordered stream start is sorted.
 * - Frame duration is the caller's `samples` (G.711: payload bytes; 0 for DTMF/CN), so any
 *   ptime, mixed within a stream, is handled. Silence suppression (consecutive sequence numbers,
 *   timestamp jump) is not loss.
 * - Dropped and counted: duplicates (held, or released recently), late packets (behind what was
 *   released, e.g. after their gap was declared lost), unconfirmed sequence jumps.
 * - Bounded: at most `maxPackets` held; one more releases the oldest early (counted).
 */
import type { RtpPacket } from './packet.js';

const SAMPLES_PER_MS = 8;
const SEQ_MOD = 0x10000;
const MAX_DROPOUT = 3000;
const MAX_MISORDER = 100;
/** Ring of recently released sequence numbers, to tell duplicates from late packets. */
const RECENT = 256;

export interface JitterBufferOptions {
  /** How long a packet behind a gap waits for the missing ones, ms. Default 60. */
  readonly windowMs?: number;
  /** Packets held at most; the oldest is released early beyond it. Default 64. */
  readonly maxPackets?: number;
}

export interface JitterFrame {
  readonly packet: RtpPacket;
  readonly extSeq: number;
  readonly extTimestamp: number;
  /** Duration in samples (8 per ms) as given to push(). */
  readonly samples: number;
  readonly arrivalMs: number;
  /** Packets declared lost right before this frame. */
  readonly lostPackets: number;
  /** Audio missing before this frame by the timestamps, ms (0 when no packet was lost). */
  readonly lostMs: number;
  /** First frame of a restarted sequence (after a confirmed jump): its timestamp is a new base. */
  readonly resync: boolean;
}

type Frame = { -readonly [K in keyof JitterFrame]: JitterFrame[K] };

export type JitterPushResult = 'queued' | 'duplicate' | 'late' | 'jump-dropped';

export interface JitterBufferStats {
  pushed: number;
  released: number;
  duplicates: number;
  late: number;
  /** Packets that arrived after a higher sequence number (and were still in time). */
  reordered: number;
  lostPackets: number;
  lostMs: number;
  /** Frames released before their time because the buffer was full. */
  overflowReleases: number;
  /** Packets dropped as unconfirmed sequence jumps. */
  jumpsDropped: number;
  /** Confirmed sequence restarts. */
  resyncs: number;
  /** Discarded by reset() while held. */
  discarded: number;
  /** Packets held now. */
  held: number;
}

const EMPTY: readonly JitterFrame[] = Object.freeze([]);

export class JitterBuffer {
  readonly #windowMs: number;
  readonly #maxPackets: number;
  #started = false;
  #highest = 0;
  #badSeq = -1;
  #refTs32 = 0;
  #refExtTs = 0;
  #resyncNext = false;
  /** Held frames, ascending extSeq. */
  #held: Frame[] = [];
  /** Frames released by push() (overflow, resync), handed out by the next poll(). */
  #ready: Frame[] = [];
  #releasedAny = false;
  #lastReleased = 0;
  /** End (extended timestamp) of the audio released so far. */
  #endTs = 0;
  readonly #recent = new Float64Array(RECENT).fill(Number.NaN);
  #lostSamples = 0;
  readonly #stats = {
    pushed: 0,
    released: 0,
    duplicates: 0,
    late: 0,
    reordered: 0,
    lostPackets: 0,
    overflowReleases: 0,
    jumpsDropped: 0,
    resyncs: 0,
    discarded: 0,
  };

  constructor(opts: JitterBufferOptions = {}) {
    const windowMs = opts.windowMs ?? 60;
    const maxPackets = opts.maxPackets ?? 64;
    if (!(windowMs >= 0) || !Number.isFinite(windowMs)) throw new RangeError('windowMs must be a finite number >= 0');
    if (!Number.isInteger(maxPackets) || maxPackets < 1) throw new RangeError('maxPackets must be an integer >= 1');
    this.#windowMs = windowMs;
    this.#maxPackets = maxPackets;
  }

  /** Packets held (waiting for a gap to fill or for the start window). */
  get held(): number {
    return this.#held.length;
  }

  /**
   * When poll() next has something to release without further input (ms on the caller's
   * clock): Infinity when nothing is held, -Infinity when frames are ready now.
   */
  get nextDeadlineMs(): number {
    if (this.#ready.length > 0) return Number.NEGATIVE_INFINITY;
    if (this.#held.length === 0) return Number.POSITIVE_INFINITY;
    return this.#minArrival() + this.#windowMs;
  }

  /**
   * Queues one packet. `samples`: its duration in 8 kHz samples (default: payload bytes, right
   * for G.711; pass 0 for packets that carry no audio time, e.g. telephone-event or CN).
   */
  push(packet: RtpPacket, arrivalMs: number, samples: number = packet.payload.length): JitterPushResult {
    const stats = this.#stats;
    stats.pushed++;
    const seq = packet.sequenceNumber;
    let ext: number;
    if (!this.#started) {
      this.#start(packet);
      ext = this.#highest;
    } else {
      const h = this.#highest;
      const d = (seq - h) & 0xffff;
      if (d < MAX_DROPOUT) {
        ext = h + d;
      } else if (d > SEQ_MOD - MAX_MISORDER) {
        ext = h - (SEQ_MOD - d);
      } else if (seq === this.#badSeq) {
        // the jump is confirmed by a consecutive packet: restart the sequence here
        stats.resyncs++;
        this.#releaseAllInto(this.#ready);
        this.#restart();
        this.#start(packet);
        this.#resyncNext = true;
        ext = this.#highest;
      } else {
        this.#badSeq = (seq + 1) & 0xffff;
        stats.jumpsDropped++;
        return 'jump-dropped';
      }
    }
    if (this.#releasedAny && ext <= this.#lastReleased) {
      if (this.#recent[ext % RECENT] === ext) {
        stats.duplicates++;
        return 'duplicate';
      }
      stats.late++;
      return 'late';
    }
    const held = this.#held;
    let i = held.length - 1;
    while (i >= 0 && held[i]!.extSeq > ext) i--;
    if (i >= 0 && held[i]!.extSeq === ext) {
      stats.duplicates++;
      return 'duplicate';
    }
    const ts = packet.timestamp;
    const extTs = this.#refExtTs + ((ts - this.#refTs32) | 0);
    this.#refTs32 = ts;
    this.#refExtTs = extTs;
    if (ext < this.#highest) stats.reordered++;
    else this.#highest = ext;
    const frame: Frame = {
      packet,
      extSeq: ext,
      extTimestamp: extTs,
      samples,
      arrivalMs,
      lostPackets: 0,
      lostMs: 0,
      resync: this.#resyncNext,
    };
    this.#resyncNext = false;
    if (i === held.length - 1) held.push(frame);
    else held.splice(i + 1, 0, frame);
    if (held.length > this.#maxPackets) {
      stats.overflowReleases++;
      this.#releaseHead(this.#ready);
    }
    return 'queued';
  }

  /** The frames ready at `nowMs`, in sequence order (a shared empty array when none). */
  poll(nowMs: number): readonly JitterFrame[] {
    const held = this.#held;
    let out: Frame[] | null = null;
    if (this.#ready.length > 0) {
      out = this.#ready;
      this.#ready = [];
    }
    let deadline = Number.NaN;
    while (held.length > 0) {
      const head = held[0]!;
      if (this.#releasedAny && head.extSeq === this.#lastReleased + 1) {
        this.#releaseHead((out ??= []));
        continue;
      }
      if (Number.isNaN(deadline)) deadline = this.#minArrival() + this.#windowMs;
      if (nowMs < deadline) break;
      this.#releaseHead((out ??= []));
      deadline = Number.NaN;
    }
    return out ?? EMPTY;
  }

  /** Releases everything held (gaps counted as lost), e.g. at the end of the stream. */
  flush(): readonly JitterFrame[] {
    const out = this.#ready;
    this.#ready = [];
    this.#releaseAllInto(out);
    return out.length > 0 ? out : EMPTY;
  }

  /** Forgets the sequence and timestamp state (new SSRC); held frames are discarded (flush first). */
  reset(): void {
    this.#stats.discarded += this.#held.length + this.#ready.length;
    this.#held = [];
    this.#ready = [];
    this.#restart();
    this.#started = false;
  }

  stats(): JitterBufferStats {
    return { ...this.#stats, lostMs: this.#lostSamples / SAMPLES_PER_MS, held: this.#held.length };
  }

  #start(packet: RtpPacket): void {
    this.#started = true;
    // one cycle up, so a packet reordered before the first never gets a negative number
    this.#highest = SEQ_MOD + packet.sequenceNumber;
    this.#badSeq = -1;
    this.#refTs32 = packet.timestamp;
    this.#refExtTs = 0x100000000 + packet.timestamp;
  }

  #restart(): void {
    this.#releasedAny = false;
    this.#lastReleased = 0;
    this.#endTs = 0;
    this.#resyncNext = false;
    this.#recent.fill(Number.NaN);
  }

  #minArrival(): number {
    const held = this.#held;
    let min = held[0]!.arrivalMs;
    for (let i = 1; i < held.length; i++) {
      const a = held[i]!.arrivalMs;
      if (a < min) min = a;
    }
    return min;
  }

  #releaseAllInto(out: Frame[]): void {
    while (this.#held.length > 0) this.#releaseHead(out);
  }

  #releaseHead(out: Frame[]): void {
    const f = this.#held.shift()!;
    const stats = this.#stats;
    const end = f.extTimestamp + f.samples;
    if (this.#releasedAny) {
      const gap = f.extSeq - this.#lastReleased - 1;
      if (gap > 0) {
        stats.lostPackets += gap;
        f.lostPackets = gap;
        const missing = f.extTimestamp - this.#endTs;
        if (missing > 0) {
          this.#lostSamples += missing;
          f.lostMs = missing / SAMPLES_PER_MS;
        }
      }
      if (end > this.#endTs) this.#endTs = end;
    } else {
      this.#releasedAny = true;
      this.#endTs = end;
    }
    this.#lastReleased = f.extSeq;
    this.#recent[f.extSeq % RECENT] = f.extSeq;
    stats.released++;
    out.push(f);
  }
}
