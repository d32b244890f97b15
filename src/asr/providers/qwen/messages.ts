/**
 * Qwen3-ASR-Flash-Realtime wire messages (OpenAI-Realtime-style protocol): types, runtime
 * validation of every server event, builders for the client events, the error mapping, and
 * the sans-I/O item tracker that turns VAD/transcription events into provider-neutral
 * AsrEvents. Pure functions and classes, no I/O
 * (spec: /work/shared/specs/dashscope-protocol.md, Part B).
 *
 * Leniency rules (the spec leaves much unconfirmed, B4/B5 and "Open items" 7):
 * - unknown keys are ignored everywhere (`session` contents, `create_response`, `usage`, …);
 * - `event_id`, `item_id`, `previous_item_id`, `content_index`, `language`, `emotion` and
 *   `stash` may be missing or null; events without an `item_id` belong to the item of the
 *   latest `speech_started`;
 * - `…transcription.text` needs a string `text`; `…completed` a string (or null → "")
 *   `transcript`; `speech_started` / `speech_stopped` a numeric `audio_start_ms` /
 *   `audio_end_ms`; `session.created` a string `session.id`; `error` an `error` object;
 * - an event type not in SERVER_EVENT_TYPES is reported as 'unknown-event' (the provider
 *   counts and ignores it: OpenAI-style servers add events freely).
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { AppError } from '../../../core/errors.js';
import type { AsrEvent } from '../../provider.js';
import { AUTH, BAD_REQUEST, QUOTA, TASK_FAILED, THROTTLED, handshakeError, issuePaths, type ErrorClass } from '../dashscope-errors.js';

export const QWEN_MODELS = [
  'qwen3-asr-flash-realtime',
  'qwen3-asr-flash-realtime-2026-02-10',
  'qwen3-asr-flash-realtime-2025-10-27',
] as const;
export type QwenModel = (typeof QWEN_MODELS)[number];

export function isQwenModel(model: string): model is QwenModel {
  return (QWEN_MODELS as readonly string[]).includes(model);
}

/** Sample rates `session.sample_rate` accepts (spec B3.1). */
export const QWEN_SAMPLE_RATES_HZ = [8000, 16000] as const;
/** `turn_detection.silence_duration_ms` range (spec B3.1). */
export const SILENCE_DURATION_MIN_MS = 200;
export const SILENCE_DURATION_MAX_MS = 6000;
/** `corpus.text` is limited to 10 000 tokens; we cap characters (≥ 1 char per token in practice). */
export const MAX_CORPUS_CHARS = 10_000;

// ---------------------------------------------------------------------------------------------
// Server → client

export const TRANSCRIPTION_TEXT = 'conversation.item.input_audio_transcription.text';
export const TRANSCRIPTION_COMPLETED = 'conversation.item.input_audio_transcription.completed';
export const TRANSCRIPTION_FAILED = 'conversation.item.input_audio_transcription.failed';

export const SERVER_EVENT_TYPES = [
  'session.created',
  'session.updated',
  'input_audio_buffer.speech_started',
  'input_audio_buffer.speech_stopped',
  'input_audio_buffer.committed',
  'conversation.item.created',
  TRANSCRIPTION_TEXT,
  TRANSCRIPTION_COMPLETED,
  TRANSCRIPTION_FAILED,
  'error',
  'session.finished',
] as const;
export type ServerEventType = (typeof SERVER_EVENT_TYPES)[number];

function isServerEventType(type: string): type is ServerEventType {
  return (SERVER_EVENT_TYPES as readonly string[]).includes(type);
}

const optId = z.string().nullish();
const optString = z.string().nullish();
const optIndex = z.number().int().nullish();

export const envelopeSchema = z.object({ type: z.string().min(1), event_id: optId });

const errorBodySchema = z.object({
  type: optString,
  code: z.union([z.string(), z.number()]).nullish(),
  message: optString,
  param: optString,
  event_id: optId,
});

const sessionCreatedSchema = z.object({ session: z.object({ id: z.string().min(1) }) });
const sessionUpdatedSchema = z.object({ session: z.object({ id: optId }).nullish() });
const speechStartedSchema = z.object({ audio_start_ms: z.number(), item_id: optId });
const speechStoppedSchema = z.object({ audio_end_ms: z.number(), item_id: optId });
const committedSchema = z.object({ item_id: optId, previous_item_id: optId });
const itemCreatedSchema = z.object({
  previous_item_id: optId,
  item: z.object({ id: optId }).nullish(),
});
export const transcriptionTextSchema = z.object({
  item_id: optId,
  content_index: optIndex,
  language: optString,
  emotion: optString,
  text: z.string(),
  stash: optString,
});
const transcriptionCompletedSchema = z.object({
  item_id: optId,
  content_index: optIndex,
  language: optString,
  emotion: optString,
  transcript: z.string().nullable(),
});
const transcriptionFailedSchema = z.object({
  item_id: optId,
  content_index: optIndex,
  error: errorBodySchema.nullish(),
});
const errorEventSchema = z.object({ error: errorBodySchema });

/** A provider error as carried by `error` and `…transcription.failed`. */
export interface ServerErrorBody {
  readonly type: string | null;
  readonly code: string | null;
  readonly message: string;
  readonly param: string | null;
}

/** A validated server event, flattened (camelCase; `type` keeps the wire name). */
export type QwenServerEvent =
  | { readonly type: 'session.created'; readonly sessionId: string }
  | { readonly type: 'session.updated'; readonly sessionId: string | null }
  | { readonly type: 'input_audio_buffer.speech_started'; readonly itemId: string | null; readonly audioStartMs: number }
  | { readonly type: 'input_audio_buffer.speech_stopped'; readonly itemId: string | null; readonly audioEndMs: number }
  | { readonly type: 'input_audio_buffer.committed'; readonly itemId: string | null }
  | { readonly type: 'conversation.item.created'; readonly itemId: string | null }
  | {
      readonly type: typeof TRANSCRIPTION_TEXT;
      readonly itemId: string | null;
      readonly text: string;
      readonly stash: string;
      readonly language: string | null;
      readonly emotion: string | null;
    }
  | {
      readonly type: typeof TRANSCRIPTION_COMPLETED;
      readonly itemId: string | null;
      readonly transcript: string;
      readonly language: string | null;
      readonly emotion: string | null;
    }
  | { readonly type: typeof TRANSCRIPTION_FAILED; readonly itemId: string | null; readonly error: ServerErrorBody }
  | {
      readonly type: 'error';
      readonly error: ServerErrorBody;
      /** `error.event_id`: the client event that caused the error, when the server says. */
      readonly clientEventId: string | null;
    }
  | { readonly type: 'session.finished' };

export type ParseFailureReason = 'binary-frame' | 'not-json' | 'bad-envelope' | 'unknown-event' | 'bad-payload';

export type ParseResult =
  | { readonly ok: true; readonly event: QwenServerEvent }
  | {
      readonly ok: false;
      readonly reason: ParseFailureReason;
      /** Event type when the envelope was readable (never payload content); ≤ 64 chars. */
      readonly eventType: string | null;
      /** Failing field paths, for logs (no values). */
      readonly paths: readonly string[];
    };

function failure(reason: ParseFailureReason, eventType: string | null = null, paths: readonly string[] = []): ParseResult {
  return { ok: false, reason, eventType: eventType === null ? null : eventType.slice(0, 64), paths };
}

type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNullish = (v: unknown): v is null | undefined => v === null || v === undefined;
const isOptString = (v: unknown): v is string | null | undefined => isNullish(v) || typeof v === 'string';

/**
 * `…transcription.text` arrives several times a second per speaker: a hand-written guard
 * checks the same rules as `transcriptionTextSchema` (and the envelope); anything it does not
 * accept goes through zod, which then reports the exact failure. A differential test keeps
 * the two in step.
 */
function fastTranscriptionText(json: unknown): ParseResult | null {
  if (!isRec(json) || json['type'] !== TRANSCRIPTION_TEXT) return null;
  const itemId = json['item_id'];
  const language = json['language'];
  const emotion = json['emotion'];
  const text = json['text'];
  const stash = json['stash'];
  const contentIndex = json['content_index'];
  if (
    !isOptString(json['event_id']) ||
    !isOptString(itemId) ||
    !(isNullish(contentIndex) || Number.isSafeInteger(contentIndex)) ||
    !isOptString(language) ||
    !isOptString(emotion) ||
    typeof text !== 'string' ||
    !isOptString(stash)
  ) {
    return null;
  }
  return {
    ok: true,
    event: {
      type: TRANSCRIPTION_TEXT,
      itemId: itemId ?? null,
      text,
      stash: stash ?? '',
      language: language ?? null,
      emotion: emotion ?? null,
    },
  };
}

/** Validates one text frame from the server. Never throws. */
export function parseServerMessage(text: string): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return failure('not-json');
  }
  return fastTranscriptionText(json) ?? parseWithSchemas(json);
}

function errorBody(e: z.infer<typeof errorBodySchema> | null | undefined): ServerErrorBody {
  const code = e?.code;
  return {
    type: e?.type ?? null,
    code: code === null || code === undefined ? null : String(code),
    message: e?.message ?? '',
    param: e?.param ?? null,
  };
}

/** The schema path alone (exported for the differential test of the fast guard). */
export function parseWithSchemas(json: unknown): ParseResult {
  const envelope = envelopeSchema.safeParse(json);
  if (!envelope.success) return failure('bad-envelope', null, issuePaths(envelope.error));
  const type = envelope.data.type;
  if (!isServerEventType(type)) return failure('unknown-event', type);
  const bad = (error: z.ZodError): ParseResult => failure('bad-payload', type, issuePaths(error));
  switch (type) {
    case 'session.created': {
      const p = sessionCreatedSchema.safeParse(json);
      return p.success ? { ok: true, event: { type, sessionId: p.data.session.id } } : bad(p.error);
    }
    case 'session.updated': {
      const p = sessionUpdatedSchema.safeParse(json);
      return p.success ? { ok: true, event: { type, sessionId: p.data.session?.id ?? null } } : bad(p.error);
    }
    case 'input_audio_buffer.speech_started': {
      const p = speechStartedSchema.safeParse(json);
      return p.success
        ? { ok: true, event: { type, itemId: p.data.item_id ?? null, audioStartMs: p.data.audio_start_ms } }
        : bad(p.error);
    }
    case 'input_audio_buffer.speech_stopped': {
      const p = speechStoppedSchema.safeParse(json);
      return p.success
        ? { ok: true, event: { type, itemId: p.data.item_id ?? null, audioEndMs: p.data.audio_end_ms } }
        : bad(p.error);
    }
    case 'input_audio_buffer.committed': {
      const p = committedSchema.safeParse(json);
      return p.success ? { ok: true, event: { type, itemId: p.data.item_id ?? null } } : bad(p.error);
    }
    case 'conversation.item.created': {
      const p = itemCreatedSchema.safeParse(json);
      return p.success ? { ok: true, event: { type, itemId: p.data.item?.id ?? null } } : bad(p.error);
    }
    case TRANSCRIPTION_TEXT: {
      const p = transcriptionTextSchema.safeParse(json);
      return p.success
        ? {
            ok: true,
            event: {
              type,
              itemId: p.data.item_id ?? null,
              text: p.data.text,
              stash: p.data.stash ?? '',
              language: p.data.language ?? null,
              emotion: p.data.emotion ?? null,
            },
          }
        : bad(p.error);
    }
    case TRANSCRIPTION_COMPLETED: {
      const p = transcriptionCompletedSchema.safeParse(json);
      return p.success
        ? {
            ok: true,
            event: {
              type,
              itemId: p.data.item_id ?? null,
              transcript: p.data.transcript ?? '',
              language: p.data.language ?? null,
              emotion: p.data.emotion ?? null,
            },
          }
        : bad(p.error);
    }
    case TRANSCRIPTION_FAILED: {
      const p = transcriptionFailedSchema.safeParse(json);
      return p.success
        ? { ok: true, event: { type, itemId: p.data.item_id ?? null, error: errorBody(p.data.error) } }
        : bad(p.error);
    }
    case 'error': {
      const p = errorEventSchema.safeParse(json);
      return p.success
        ? { ok: true, event: { type, error: errorBody(p.data.error), clientEventId: p.data.error.event_id ?? null } }
        : bad(p.error);
    }
    case 'session.finished':
      return { ok: true, event: { type } };
  }
}

// ---------------------------------------------------------------------------------------------
// Client → server

/**
 * Client event ids: `event_` + a per-connection random prefix (12 hex digits) + a counter
 * (8+ hex digits). Cheaper than a uuid per append, unique per connection, and hex like the
 * SDKs' `event_<uuid hex>` (the server accepts any string, spec B2).
 */
export function createEventIds(): () => string {
  const prefix = `event_${randomBytes(6).toString('hex')}`;
  let n = 0;
  return () => prefix + (n++).toString(16).padStart(8, '0');
}

/** Who decides the turns: the server's VAD, or the client (`turn_detection: null` + commits). */
export type QwenTurnDetection = 'server_vad' | 'manual';
export const QWEN_TURN_DETECTIONS: readonly QwenTurnDetection[] = ['server_vad', 'manual'];

export interface SessionUpdateOptions {
  readonly sampleRateHz: number;
  /** Default 'server_vad'; 'manual' sends `turn_detection: null` (threshold / silence unused). */
  readonly turnDetection?: QwenTurnDetection | undefined;
  readonly language?: string | undefined;
  readonly corpusText?: string | undefined;
  readonly vadThreshold: number;
  readonly silenceDurationMs: number;
}

export interface SessionUpdateMessage {
  readonly event_id: string;
  readonly type: 'session.update';
  readonly session: {
    readonly modalities: readonly ['text'];
    readonly input_audio_format: 'pcm';
    readonly sample_rate: number;
    readonly input_audio_transcription?: {
      readonly language?: string;
      readonly corpus?: { readonly text: string };
    };
    readonly turn_detection: {
      readonly type: 'server_vad';
      readonly threshold: number;
      readonly silence_duration_ms: number;
    } | null;
  };
}

/** Truncates a corpus to MAX_CORPUS_CHARS code points (never splits a surrogate pair). */
export function capCorpus(text: string): string {
  if (text.length <= MAX_CORPUS_CHARS) return text;
  return Array.from(text).slice(0, MAX_CORPUS_CHARS).join('');
}

/**
 * `session.update` (spec B3.1): PCM at the given rate (8000: telephony audio as it is, the
 * server upsamples), server VAD — or `turn_detection: null` in manual mode (the client
 * commits each turn itself, B3.3). `input_audio_transcription` carries `language` and
 * `corpus.text` only when set, and is left out when both are unset (server defaults: auto
 * language, no context).
 */
export function buildSessionUpdate(eventId: string, o: SessionUpdateOptions): SessionUpdateMessage {
  const language = o.language?.trim();
  const corpus = o.corpusText && o.corpusText.trim() !== '' ? capCorpus(o.corpusText) : undefined;
  const transcription = {
    ...(language ? { language } : {}),
    ...(corpus !== undefined ? { corpus: { text: corpus } } : {}),
  };
  return {
    event_id: eventId,
    type: 'session.update',
    session: {
      modalities: ['text'],
      input_audio_format: 'pcm',
      sample_rate: o.sampleRateHz,
      ...(Object.keys(transcription).length > 0 ? { input_audio_transcription: transcription } : {}),
      turn_detection:
        o.turnDetection === 'manual'
          ? null
          : { type: 'server_vad', threshold: o.vadThreshold, silence_duration_ms: o.silenceDurationMs },
    },
  };
}

/**
 * `input_audio_buffer.append` as a JSON string, built by concatenation: base64 and the hex
 * event id never need JSON escaping, and this runs 10× a second per speaker.
 */
export function buildAppend(eventId: string, pcm: Buffer): string {
  return `{"event_id":"${eventId}","type":"input_audio_buffer.append","audio":"${pcm.toString('base64')}"}`;
}

/** `input_audio_buffer.commit` (manual mode only, spec B3.3) as a JSON string. */
export function buildCommit(eventId: string): string {
  return `{"event_id":"${eventId}","type":"input_audio_buffer.commit"}`;
}

export function buildSessionFinish(eventId: string): { readonly event_id: string; readonly type: 'session.finish' } {
  return { event_id: eventId, type: 'session.finish' };
}

// ---------------------------------------------------------------------------------------------
// Item tracker (sans-I/O): VAD + transcription events → AsrEvents in session time

interface ItemTimes {
  startMs: number | null;
  endMs: number | null;
}

/** Items tracked at once; a server that never completes items cannot grow the map past it. */
export const MAX_TRACKED_ITEMS = 256;

/**
 * Derives utterance times from the VAD events, since Qwen has no word timestamps (spec B4,
 * B6). All times are session time: ms of audio sent on this connection, which is what the
 * server's `audio_start_ms` / `audio_end_ms` count.
 *
 * - start = `audio_start_ms` of the item's `speech_started`; if none was seen, the end of the
 *   previous final on this connection (0 at first) — the earliest the speech can have begun;
 * - end = `audio_end_ms` of its `speech_stopped`; if none came (e.g. `session.finish` in the
 *   middle of speech), the audio sent so far — the server cannot have heard further;
 * - interim text = `text + stash` (each event is a full snapshot, spec B4.7), accepted at any
 *   time after `speech_started`, before or after `speech_stopped` (the order varies, B5);
 * - events without `item_id` belong to the item of the latest `speech_started`.
 */
export class QwenItemTracker {
  private readonly items = new Map<string, ItemTimes>();
  private latestItemKey: string | null = null;
  private anonymous = 0;
  private lastFinalEndMs = 0;
  /** Items forgotten because the map was full. */
  evicted = 0;

  constructor(private readonly maxItems = MAX_TRACKED_ITEMS) {}

  get size(): number {
    return this.items.size;
  }

  /** Whether the item's times are known (manual mode binds local-VAD times to new items). */
  has(itemId: string): boolean {
    return this.items.has(itemId);
  }

  speechStarted(itemId: string | null, audioStartMs: number): void {
    const key = itemId ?? `#${++this.anonymous}`;
    const item = this.item(key);
    item.startMs = Math.max(0, audioStartMs);
    this.latestItemKey = key;
  }

  speechStopped(itemId: string | null, audioEndMs: number): void {
    this.item(this.key(itemId)).endMs = Math.max(0, audioEndMs);
  }

  interim(itemId: string | null, text: string, stash: string): AsrEvent {
    const times = this.items.get(this.key(itemId));
    return { type: 'interim', startMs: times?.startMs ?? this.lastFinalEndMs, text: text + stash };
  }

  /** The item's final (empty transcripts included); the item is forgotten. */
  completed(itemId: string | null, transcript: string, emotion: string | null, sentMs: number): AsrEvent {
    const key = this.key(itemId);
    const times = this.items.get(key);
    this.items.delete(key);
    const rawStart = times?.startMs ?? this.lastFinalEndMs;
    const endMs = Math.max(0, times?.endMs ?? sentMs);
    const startMs = Math.min(rawStart, endMs);
    this.lastFinalEndMs = Math.max(this.lastFinalEndMs, endMs);
    const label = emotion?.trim() ? emotion : null;
    return {
      type: 'final',
      startMs,
      endMs,
      text: transcript,
      words: [],
      emotion: label === null ? null : { raw: label, confidence: null },
    };
  }

  /** A failed item is forgotten (its audio is recognised again after the reconnect). */
  failed(itemId: string | null): void {
    this.items.delete(this.key(itemId));
  }

  private key(itemId: string | null): string {
    return itemId ?? this.latestItemKey ?? '#0';
  }

  private item(key: string): ItemTimes {
    let item = this.items.get(key);
    if (!item) {
      if (this.items.size >= this.maxItems) {
        const oldest = this.items.keys().next();
        if (!oldest.done) this.items.delete(oldest.value);
        this.evicted++;
      }
      item = { startMs: null, endMs: null };
      this.items.set(key, item);
    }
    return item;
  }
}

// ---------------------------------------------------------------------------------------------
// Error mapping (stable codes; provider type/code/message kept in details)

/**
 * Maps an `error` event onto a stable class (spec B4.10, B6): Throttling* codes or "rate
 * limit" text → throttled (retryable; checked first, whatever the type); InvalidApiKey /
 * invalid_api_key / AccessDenied* / authentication_error → auth (permanent); Arrearage →
 * quota (permanent); type invalid_request_error or code invalid_value / InvalidParameter* →
 * bad request (permanent); anything else (server_error, unknown) → task failed (retryable).
 */
export function classifyServerError(e: ServerErrorBody): ErrorClass {
  const code = (e.code ?? '').trim();
  const type = (e.type ?? '').trim().toLowerCase();
  const msg = e.message.toLowerCase();
  if (/^throttling/i.test(code) || /rate[ _]?limit/i.test(code) || msg.includes('rate limit') || msg.includes('rate increased too quickly')) {
    return THROTTLED;
  }
  if (/^(invalidapikey|invalid_api_key|accessdenied)/i.test(code) || type === 'authentication_error') return AUTH;
  if (/^arrearage/i.test(code)) return QUOTA;
  if (type === 'invalid_request_error' || /^(invalid_value|invalidparameter)/i.test(code)) return BAD_REQUEST;
  return TASK_FAILED;
}

function errorDetails(e: ServerErrorBody, sessionId: string): Record<string, unknown> {
  return {
    providerType: e.type,
    providerCode: e.code,
    providerMessage: e.message.slice(0, 200),
    providerParam: e.param,
    taskId: sessionId,
  };
}

/** An `error` event as an AppError. */
export function serverError(e: ServerErrorBody, sessionId: string): AppError {
  const c = classifyServerError(e);
  return new AppError(c.code, 'recogniser reported an error', {
    category: c.category,
    retryable: c.retryable,
    details: errorDetails(e, sessionId),
  });
}

/**
 * `…transcription.failed` → ERR_ASR_ITEM_FAILED, always retryable: the runner reconnects and
 * resends the audio since the last final, so the failed item is recognised again instead of
 * being lost (a gap in the transcript is worse than one reconnect).
 */
export function itemFailedError(e: ServerErrorBody, itemId: string | null, sessionId: string): AppError {
  return new AppError('ERR_ASR_ITEM_FAILED', 'recogniser failed to transcribe an item', {
    category: 'server',
    retryable: true,
    details: { ...errorDetails(e, sessionId), itemId },
  });
}


/**
 * The server closed the socket before `session.updated`: 1007 "Model not found" (spec B1) →
 * unsupported model (permanent); any other 1007 → bad request (permanent); anything else →
 * connect (retryable).
 */
export function closedBeforeStartError(code: number, reason: string): AppError {
  const details = { closeCode: code, closeReason: reason.slice(0, 123) };
  if (code === 1007) {
    return /model/i.test(reason)
      ? new AppError('ERR_ASR_UNSUPPORTED_MODEL', 'recogniser does not know the model', { category: 'invalid_request', retryable: false, details })
      : new AppError('ERR_ASR_BAD_REQUEST', 'recogniser rejected the session', { category: 'invalid_request', retryable: false, details });
  }
  return new AppError('ERR_ASR_CONNECT', 'recogniser closed the connection before the session started', {
    category: 'connectivity',
    retryable: true,
    details,
  });
}

/** Re-exported: the upgrade-refusal mapping is the same gateway's for both protocols. */
export { handshakeError };
export type { ErrorClass };
