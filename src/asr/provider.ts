/**
 * The provider-neutral ASR contract (agents-js STT/SpeechStream shape, reduced to what a
 * telephony transcriber needs). A provider knows one wire protocol and nothing else: retries,
 * replay after a reconnect, rate limiting, timeline offsets and metrics live in the shared
 * `AsrStreamRunner` (session-runner.ts). One folder per vendor under providers/.
 */
import type { AppError } from '../core/errors.js';
import type { Emotion } from '../core/types.js';

export interface AsrCapabilities {
  /** Raw emotion labels the model can emit (empty: no emotion). */
  readonly emotionLabels: readonly string[];
  /** Whether emotion labels come with a 0..1 confidence. */
  readonly emotionConfidence: boolean;
  /** Whether final sentences carry per-word timings. */
  readonly wordTimestamps: boolean;
  /** Sample rates the model accepts; we always send 8000 Hz telephony audio. */
  readonly sampleRatesHz: readonly number[];
}

export interface AsrConnectOptions {
  readonly model: string;
  readonly sampleRateHz: number;
  /** Paraformer `vocabulary_id` (a hotword list created with the DashScope API). */
  readonly vocabularyId?: string | undefined;
  /** Language hint (e.g. "zh"); providers that cannot use it ignore it. */
  readonly language?: string | undefined;
  /** Context biasing text (qwen `corpus.text`: hotwords, names, domain terms). */
  readonly corpusText?: string | undefined;
  readonly disfluencyRemoval: boolean;
  /** Silence that ends a sentence, ms. */
  readonly maxSentenceSilenceMs: number;
  /** Opaque labels for the provider's logs (never PII). */
  readonly logContext?: Readonly<Record<string, string>>;
}

/** A word with times relative to the start of the connection's audio ("task time"). */
export interface AsrWord {
  readonly startMs: number;
  readonly endMs: number;
  readonly text: string;
  readonly punctuation: string;
}

/** Events from a provider connection. All times are task time: ms from the first audio byte sent on this connection. */
export type AsrEvent =
  | { readonly type: 'interim'; readonly startMs: number; readonly text: string }
  | {
      readonly type: 'final';
      readonly startMs: number;
      readonly endMs: number;
      readonly text: string;
      readonly words: readonly AsrWord[];
      /** Raw provider emotion, if any. */
      readonly emotion: { readonly raw: string; readonly confidence: number | null } | null;
    };

export interface AsrConnectionHandlers {
  /** Interim and final results, in arrival order. */
  onEvent(event: AsrEvent): void;
  /**
   * The connection ended without `finish()` having completed: a dropped socket, a task
   * failure, a protocol error. Called at most once; never called after finish() resolved.
   */
  onError(error: AppError): void;
}

/** One started task on one open connection. */
export interface AsrConnection {
  /** Provider task/session id (for logs and the database). */
  readonly taskId: string;
  /** Sends PCM16LE audio (any length; the runner sends 100 ms chunks). */
  sendAudio(pcm: Buffer): void;
  /** Bytes queued on the socket but not yet written (backpressure signal). */
  readonly bufferedAmount: number;
  /**
   * Ends the task politely (finish-task / session.finish) and resolves once the provider said
   * it is done (task-finished / session.finished); every remaining final has been delivered to
   * onEvent by then. Rejects with an AppError on failure or timeout.
   */
  finish(timeoutMs: number): Promise<void>;
  /** Closes at once without finishing (abort). Idempotent. */
  close(): void;
}

export interface AsrProvider {
  /** Provider family, e.g. "dashscope-paraformer". */
  readonly name: string;
  /** Models this provider can run. */
  readonly models: readonly string[];
  capabilities(model: string): AsrCapabilities;
  /**
   * Opens a connection and starts a task; resolves once the provider accepted it
   * (task-started). Rejects with an AppError whose `retryable` says whether to try again.
   */
  connect(options: AsrConnectOptions, handlers: AsrConnectionHandlers): Promise<AsrConnection>;
  /** Maps a raw provider emotion onto the common model (raw label always kept). */
  normaliseEmotion(model: string, raw: string, confidence: number | null): Emotion;
}
