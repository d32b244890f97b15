/**
 * The shared vocabulary of the pipeline: ingest → codec → asr → utterance → queue → db.
 * All offsets are milliseconds from the call's stream start ("call timeline").
 */

export const ROLES = ['customer', 'agent'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return value === 'customer' || value === 'agent';
}

/** Where a call's audio came from. */
export type CallSource = 'twilio' | 'rtp' | 'sip';

/** Telephony sample rate: everything we receive is 8 kHz G.711. */
export const SAMPLE_RATE_HZ = 8000;
export const SAMPLES_PER_MS = SAMPLE_RATE_HZ / 1000;
/** PCM16 bytes per millisecond of 8 kHz mono audio. */
export const PCM_BYTES_PER_MS = SAMPLES_PER_MS * 2;

/**
 * A chunk of 16-bit little-endian mono PCM at 8 kHz, positioned on the call timeline.
 * `receivedAt` is the wall-clock time (ms since epoch) the newest telephony frame in the chunk
 * arrived; it anchors latency measurements.
 */
export interface PcmChunk {
  readonly pcm: Buffer;
  readonly startMs: number;
  readonly receivedAt: number;
}

export function pcmDurationMs(pcm: Buffer): number {
  return pcm.length / PCM_BYTES_PER_MS;
}

/** Emotion of one final sentence, as the provider gave it plus our normalisation. */
export interface Emotion {
  /** Provider label as received, e.g. "negative" (paraformer) or "angry" (qwen). */
  readonly raw: string;
  /** Model that produced the label. */
  readonly provider: string;
  /** 0..1, or null where the provider gives none. */
  readonly confidence: number | null;
  /** Normalised valence: -1 negative, 0 neutral, 1 positive. */
  readonly valence: -1 | 0 | 1;
  /**
   * Normalised arousal where the label says it: 1 high (qwen `surprised`), 0 low; null or
   * absent when the provider's label does not tell (paraformer's three labels).
   */
  readonly arousal?: 0 | 1 | null;
}

export interface Word {
  readonly startMs: number;
  readonly endMs: number;
  readonly text: string;
  readonly punctuation: string;
}

/** Latency marks of one utterance (wall-clock ms since epoch). */
export interface UtteranceTiming {
  /** When the telephony frame carrying the end of the sentence reached callscribe. */
  readonly audioEndAt: number | null;
  /** When the final result arrived from the recogniser. */
  readonly finalReceivedAt: number;
  /** When the job was added to the queue (set by the producer). */
  enqueuedAt?: number;
}

/** One final sentence of one speaker. */
export interface Utterance {
  readonly callId: string;
  readonly role: Role;
  /** Telephony track or stream label the audio came from (e.g. "inbound"). */
  readonly track: string;
  /** Per (call, role) sentence index, starting at 1, gap-free. */
  readonly seq: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly text: string;
  readonly words: readonly Word[];
  readonly emotion: Emotion | null;
  readonly model: string;
  /** Provider task / session id that produced the sentence. */
  readonly asrTaskId: string;
  readonly timing: UtteranceTiming;
}
