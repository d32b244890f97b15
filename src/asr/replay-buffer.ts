/**
 * Sans-I/O audio bookkeeping for the AsrStreamRunner:
 * - ReplayBuffer: the audio since the last final sentence (call timeline), bounded by
 *   duration; over the bound the oldest audio is dropped and reported to the caller.
 * - ReceivedMarks: a bounded ring of (chunk span → wall-clock receivedAt) marks, to find when
 *   the audio at a sentence's end reached us.
 * - toSendFrames: cuts chunks into ≤ maxBytes frames, merging contiguous chunks.
 * All positions are ms on the call timeline; PCM is 16-bit LE mono at 8 kHz, cut only at
 * sample boundaries (2-byte aligned).
 */
import { PCM_BYTES_PER_MS, SAMPLES_PER_MS, type PcmChunk } from '../core/types.js';

/** Positions closer than this are the same instant (ms). */
const EPSILON_MS = 1e-6;

export function chunkEndMs(chunk: PcmChunk): number {
  return chunk.startMs + chunk.pcm.length / PCM_BYTES_PER_MS;
}

/** The chunk without its first `bytes` bytes (must be even). */
function dropHead(chunk: PcmChunk, bytes: number): PcmChunk {
  return {
    pcm: chunk.pcm.subarray(bytes),
    startMs: chunk.startMs + bytes / PCM_BYTES_PER_MS,
    receivedAt: chunk.receivedAt,
  };
}

/** A span of audio dropped from the replay buffer. */
export interface DroppedSpan {
  readonly startMs: number;
  readonly durationMs: number;
}

export class ReplayBuffer {
  private chunks: PcmChunk[] = [];
  private bytes = 0;
  readonly maxBytes: number;

  constructor(maxMs: number) {
    if (!(maxMs > 0)) throw new RangeError('maxMs must be positive');
    this.maxBytes = Math.floor(maxMs) * PCM_BYTES_PER_MS;
  }

  get durationMs(): number {
    return this.bytes / PCM_BYTES_PER_MS;
  }

  get isEmpty(): boolean {
    return this.chunks.length === 0;
  }

  /** Call-timeline position of the oldest buffered audio, or null when empty. */
  get startMs(): number | null {
    return this.chunks[0]?.startMs ?? null;
  }

  /** A copy of the buffered chunks, oldest first. */
  snapshot(): PcmChunk[] {
    return this.chunks.slice();
  }

  /**
   * Appends a chunk (its PCM length must be even). When the buffer then holds more than the
   * bound, the oldest audio is dropped, in whole milliseconds; the dropped spans are returned.
   */
  push(chunk: PcmChunk): DroppedSpan[] {
    if (chunk.pcm.length === 0) return [];
    this.chunks.push(chunk);
    this.bytes += chunk.pcm.length;
    if (this.bytes <= this.maxBytes) return [];
    // drop whole ms so that integer chunk positions stay integers
    let excess = Math.ceil((this.bytes - this.maxBytes) / PCM_BYTES_PER_MS) * PCM_BYTES_PER_MS;
    const dropped: DroppedSpan[] = [];
    while (excess > 0) {
      const head = this.chunks[0];
      if (!head) break;
      if (head.pcm.length <= excess) {
        this.chunks.shift();
        this.bytes -= head.pcm.length;
        excess -= head.pcm.length;
        dropped.push({ startMs: head.startMs, durationMs: head.pcm.length / PCM_BYTES_PER_MS });
      } else {
        this.chunks[0] = dropHead(head, excess);
        this.bytes -= excess;
        dropped.push({ startMs: head.startMs, durationMs: excess / PCM_BYTES_PER_MS });
        excess = 0;
      }
    }
    return dropped;
  }

  /**
   * Removes all audio before `callMs`, cutting inside a chunk at the nearest sample boundary,
   * so that the buffer starts exactly at `callMs` (when it holds audio there). Returns the ms
   * removed.
   */
  trimBefore(callMs: number): number {
    let removed = 0;
    while (this.chunks.length > 0) {
      const head = this.chunks[0];
      if (!head) break;
      if (chunkEndMs(head) <= callMs + EPSILON_MS) {
        this.chunks.shift();
        this.bytes -= head.pcm.length;
        removed += head.pcm.length;
        continue;
      }
      if (head.startMs < callMs - EPSILON_MS) {
        const cut = Math.round((callMs - head.startMs) * SAMPLES_PER_MS) * 2;
        if (cut > 0) {
          this.chunks[0] = dropHead(head, cut);
          this.bytes -= cut;
          removed += cut;
        }
      }
      break;
    }
    return removed / PCM_BYTES_PER_MS;
  }

  clear(): void {
    this.chunks = [];
    this.bytes = 0;
  }
}

/** A frame ready to send: PCM and its call-timeline position. */
export interface SendFrame {
  readonly pcm: Buffer;
  readonly startMs: number;
}

/**
 * Cuts chunks into frames of at most `maxBytes` (even), merging chunks that are contiguous on
 * the call timeline; a discontinuity always starts a new frame.
 */
export function toSendFrames(chunks: readonly PcmChunk[], maxBytes: number): SendFrame[] {
  const frameBytes = Math.max(2, maxBytes - (maxBytes % 2));
  const frames: SendFrame[] = [];
  let parts: Buffer[] = [];
  let partsBytes = 0;
  let frameStart = 0;
  let expectedNext: number | null = null;
  const flush = (): void => {
    if (partsBytes === 0) return;
    frames.push({ pcm: parts.length === 1 && parts[0] ? parts[0] : Buffer.concat(parts, partsBytes), startMs: frameStart });
    parts = [];
    partsBytes = 0;
  };
  for (const chunk of chunks) {
    if (expectedNext !== null && Math.abs(chunk.startMs - expectedNext) > EPSILON_MS) {
      flush();
    }
    let offset = 0;
    while (offset < chunk.pcm.length) {
      if (partsBytes === 0) frameStart = chunk.startMs + offset / PCM_BYTES_PER_MS;
      const take = Math.min(frameBytes - partsBytes, chunk.pcm.length - offset);
      parts.push(chunk.pcm.subarray(offset, offset + take));
      partsBytes += take;
      offset += take;
      if (partsBytes >= frameBytes) flush();
    }
    expectedNext = chunkEndMs(chunk);
  }
  flush();
  return frames;
}

interface Mark {
  readonly startMs: number;
  readonly endMs: number;
  readonly receivedAt: number;
}

/** Bounded ring of chunk spans and the wall-clock time each chunk reached us. */
export class ReceivedMarks {
  private marks: Mark[] = [];
  private head = 0;

  constructor(private readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError('capacity must be >= 1');
  }

  get size(): number {
    return this.marks.length - this.head;
  }

  add(chunk: PcmChunk): void {
    this.marks.push({ startMs: chunk.startMs, endMs: chunkEndMs(chunk), receivedAt: chunk.receivedAt });
    if (this.size > this.capacity) this.head++;
    this.compact();
  }

  /**
   * When the audio just before `callMs` reached us: the mark with startMs < callMs ≤ endMs;
   * past the newest mark, the newest mark's time; null when nothing covers it.
   */
  lookup(callMs: number): number | null {
    for (let i = this.marks.length - 1; i >= this.head; i--) {
      const m = this.marks[i];
      if (!m) continue;
      if (i === this.marks.length - 1 && callMs > m.endMs) return m.receivedAt;
      if (m.startMs + EPSILON_MS < callMs && callMs <= m.endMs + EPSILON_MS) return m.receivedAt;
      if (m.endMs < callMs) return null; // in a gap between marks
    }
    return null;
  }

  /** Forgets marks that end at or before `callMs` (no later sentence can end there). */
  pruneBefore(callMs: number): void {
    while (this.head < this.marks.length) {
      const m = this.marks[this.head];
      if (!m || m.endMs > callMs) break;
      this.head++;
    }
    this.compact();
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.marks.length) {
      this.marks = this.marks.slice(this.head);
      this.head = 0;
    }
  }
}
