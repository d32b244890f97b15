/**
 * Paraformer real-time ("duplex inference") wire messages: types, runtime validation of every
 * server event, builders for the client commands, and the error mapping. Pure functions, no
 * I/O (spec: /work/shared/specs/dashscope-protocol.md, Part A).
 *
 * Leniency rules (the client must cope with every plausible server variant, spec "Open items"):
 * - unknown keys are ignored everywhere (`pre_end_*`, `vad_pre_end`, …);
 * - `heartbeat`, `usage`, `words`, `punctuation`, `attributes` and `payload` (on events other
 *   than result-generated) may be missing or null;
 * - a non-heartbeat sentence must carry a numeric `begin_time` and a string `text`;
 * - an event name other than the four documented ones is a protocol error (both SDKs agree).
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { AppError } from '../../../core/errors.js';
import type { AsrEvent, AsrWord } from '../../provider.js';
import { AUTH, BAD_REQUEST, QUOTA, TASK_FAILED, THROTTLED, handshakeError, issuePaths, type ErrorClass } from '../dashscope-errors.js';

// ---------------------------------------------------------------------------------------------
// Server → client

export const SERVER_EVENT_NAMES = [
  'task-started',
  'result-generated',
  'task-finished',
  'task-failed',
] as const;
export type ServerEventName = (typeof SERVER_EVENT_NAMES)[number];

function isServerEventName(name: string): name is ServerEventName {
  return (SERVER_EVENT_NAMES as readonly string[]).includes(name);
}

export const serverHeaderSchema = z.object({
  task_id: z.string().min(1),
  event: z.string().min(1),
  attributes: z.record(z.string(), z.unknown()).nullish(),
  error_code: z.string().nullish(),
  error_message: z.string().nullish(),
});
export type ServerHeaderMessage = z.infer<typeof serverHeaderSchema>;

export const wordMessageSchema = z.object({
  begin_time: z.number(),
  end_time: z.number(),
  text: z.string(),
  punctuation: z.string().nullish(),
  /** Fun-ASR only (the word is stable). */
  fixed: z.boolean().nullish(),
});
export type WordMessage = z.infer<typeof wordMessageSchema>;

export const sentenceMessageSchema = z
  .object({
    begin_time: z.number().nullish(),
    /** null on interim results. */
    end_time: z.number().nullish(),
    text: z.string().nullish(),
    words: z.array(wordMessageSchema).nullish(),
    heartbeat: z.boolean().nullish(),
    sentence_end: z.boolean().nullish(),
    /** 8k-v2, final results only: positive | negative | neutral. */
    emo_tag: z.string().nullish(),
    emo_confidence: z.number().nullish(),
    sentence_id: z.number().int().nullish(),
    sentence_begin: z.boolean().nullish(),
    channel_id: z.number().nullish(),
    speaker_id: z.union([z.number(), z.string()]).nullish(),
    stash: z.record(z.string(), z.unknown()).nullish(),
  })
  .superRefine((s, ctx) => {
    if (s.heartbeat === true) return;
    if (typeof s.begin_time !== 'number') {
      ctx.addIssue({ code: 'custom', message: 'begin_time required', path: ['begin_time'] });
    }
    if (typeof s.text !== 'string') {
      ctx.addIssue({ code: 'custom', message: 'text required', path: ['text'] });
    }
  });
export type SentenceMessage = z.infer<typeof sentenceMessageSchema>;

export const usageMessageSchema = z.object({ duration: z.number().nullish() });
export type UsageMessage = z.infer<typeof usageMessageSchema>;

const resultGeneratedPayloadSchema = z.object({
  output: z.object({ sentence: sentenceMessageSchema }),
  usage: usageMessageSchema.nullish(),
});

const anyPayloadSchema = z.record(z.string(), z.unknown()).nullish();

export const serverEnvelopeSchema = z.object({
  header: serverHeaderSchema,
  payload: anyPayloadSchema,
});

/** A validated server event, flattened (wire names are snake_case inside `sentence`). */
export type ParaformerServerEvent =
  | { readonly event: 'task-started'; readonly taskId: string }
  | {
      readonly event: 'result-generated';
      readonly taskId: string;
      readonly sentence: SentenceMessage;
      readonly usage: UsageMessage | null;
    }
  | { readonly event: 'task-finished'; readonly taskId: string }
  | {
      readonly event: 'task-failed';
      readonly taskId: string;
      readonly errorCode: string;
      readonly errorMessage: string;
    };

export type ParseFailureReason =
  | 'binary-frame'
  | 'not-json'
  | 'bad-envelope'
  | 'unknown-event'
  | 'bad-payload';

export type ParseResult =
  | { readonly ok: true; readonly event: ParaformerServerEvent }
  | {
      readonly ok: false;
      readonly reason: ParseFailureReason;
      /** Event name and task id when the envelope was readable (never payload content). */
      readonly eventName: string | null;
      readonly taskId: string | null;
      /** Failing field paths, for logs (no values). */
      readonly paths: readonly string[];
    };

function failure(
  reason: ParseFailureReason,
  eventName: string | null = null,
  taskId: string | null = null,
  paths: readonly string[] = [],
): ParseResult {
  return { ok: false, reason, eventName, taskId, paths };
}

/** Validates one text frame from the server. Never throws. */
// result-generated arrives several times a second per speaker: a hand-written guard checks the
// same rules as the zod schemas for it, and anything it does not accept goes through zod (which
// then reports the exact failure). A differential test keeps the two in step.
type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNullish = (v: unknown): v is null | undefined => v === null || v === undefined;
const optNumber = (v: unknown): boolean => isNullish(v) || typeof v === 'number';
const optString = (v: unknown): boolean => isNullish(v) || typeof v === 'string';
const optBoolean = (v: unknown): boolean => isNullish(v) || typeof v === 'boolean';

function isWordMessage(w: unknown): boolean {
  return (
    isRec(w) &&
    typeof w['begin_time'] === 'number' &&
    typeof w['end_time'] === 'number' &&
    typeof w['text'] === 'string' &&
    optString(w['punctuation']) &&
    optBoolean(w['fixed'])
  );
}

function isSentenceMessage(s: unknown): s is SentenceMessage {
  if (!isRec(s)) return false;
  const words = s['words'];
  if (!isNullish(words)) {
    if (!Array.isArray(words)) return false;
    for (const w of words) if (!isWordMessage(w)) return false;
  }
  const sentenceId = s['sentence_id'];
  const speaker = s['speaker_id'];
  const ok =
    optNumber(s['begin_time']) &&
    optNumber(s['end_time']) &&
    optString(s['text']) &&
    optBoolean(s['heartbeat']) &&
    optBoolean(s['sentence_end']) &&
    optString(s['emo_tag']) &&
    optNumber(s['emo_confidence']) &&
    (isNullish(sentenceId) || Number.isInteger(sentenceId)) &&
    optBoolean(s['sentence_begin']) &&
    optNumber(s['channel_id']) &&
    (isNullish(speaker) || typeof speaker === 'number' || typeof speaker === 'string') &&
    (isNullish(s['stash']) || isRec(s['stash']));
  if (!ok) return false;
  if (s['heartbeat'] === true) return true;
  return typeof s['begin_time'] === 'number' && typeof s['text'] === 'string';
}

function fastResultGenerated(json: unknown): ParseResult | null {
  if (!isRec(json)) return null;
  const header = json['header'];
  const payload = json['payload'];
  if (!isRec(header) || !isRec(payload) || header['event'] !== 'result-generated') return null;
  const taskId = header['task_id'];
  if (typeof taskId !== 'string' || taskId.length === 0) return null;
  if (!(isNullish(header['attributes']) || isRec(header['attributes']))) return null;
  if (!optString(header['error_code']) || !optString(header['error_message'])) return null;
  const output = payload['output'];
  if (!isRec(output) || !isSentenceMessage(output['sentence'])) return null;
  const usage = payload['usage'];
  if (!(isNullish(usage) || (isRec(usage) && optNumber(usage['duration'])))) return null;
  return {
    ok: true,
    event: {
      event: 'result-generated',
      taskId,
      sentence: output['sentence'],
      usage: isNullish(usage) ? null : { duration: usage['duration'] as number | null | undefined },
    },
  };
}

export function parseServerMessage(text: string): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return failure('not-json');
  }
  const fast = fastResultGenerated(json);
  if (fast) return fast;
  return parseWithSchemas(json);
}

/** The schema path alone (exported for the differential test of the fast guard). */
export function parseWithSchemas(json: unknown): ParseResult {
  const envelope = serverEnvelopeSchema.safeParse(json);
  if (!envelope.success) return failure('bad-envelope', null, null, issuePaths(envelope.error));
  const { header, payload } = envelope.data;
  const taskId = header.task_id;
  if (!isServerEventName(header.event)) return failure('unknown-event', header.event, taskId);
  switch (header.event) {
    case 'task-started':
      return { ok: true, event: { event: 'task-started', taskId } };
    case 'task-finished':
      return { ok: true, event: { event: 'task-finished', taskId } };
    case 'task-failed':
      return {
        ok: true,
        event: {
          event: 'task-failed',
          taskId,
          errorCode: header.error_code ?? 'UNKNOWN',
          errorMessage: header.error_message ?? '',
        },
      };
    case 'result-generated': {
      const parsed = resultGeneratedPayloadSchema.safeParse(payload);
      if (!parsed.success) {
        return failure('bad-payload', header.event, taskId, issuePaths(parsed.error));
      }
      return {
        ok: true,
        event: {
          event: 'result-generated',
          taskId,
          sentence: parsed.data.output.sentence,
          usage: parsed.data.usage ?? null,
        },
      };
    }
  }
}

export function isHeartbeat(sentence: SentenceMessage): boolean {
  return sentence.heartbeat === true;
}

/**
 * Final = `sentence_end === true || end_time != null` (the Java SDK's rule; the docs show
 * an example with `end_time: null` and `sentence_end: true`, the Python SDK only looks at
 * end_time — spec A5.2).
 */
export function isFinalSentence(sentence: SentenceMessage): boolean {
  return sentence.sentence_end === true || sentence.end_time != null;
}

export type SentenceKind = 'heartbeat' | 'interim' | 'final';

export function classifySentence(sentence: SentenceMessage): SentenceKind {
  if (isHeartbeat(sentence)) return 'heartbeat';
  return isFinalSentence(sentence) ? 'final' : 'interim';
}

function toWord(w: WordMessage): AsrWord {
  return { startMs: w.begin_time, endMs: w.end_time, text: w.text, punctuation: w.punctuation ?? '' };
}

/**
 * A validated sentence → the provider-neutral event (task time), or null for a heartbeat.
 * A final without `end_time` (the documentation-bug variant) ends at its last word's end,
 * or at `begin_time` when it has no words.
 */
export function sentenceToAsrEvent(sentence: SentenceMessage): AsrEvent | null {
  if (isHeartbeat(sentence)) return null;
  const startMs = sentence.begin_time ?? 0;
  const text = sentence.text ?? '';
  if (!isFinalSentence(sentence)) return { type: 'interim', startMs, text };
  const words = (sentence.words ?? []).map(toWord);
  const lastWord = words[words.length - 1];
  const endMs = Math.max(startMs, sentence.end_time ?? lastWord?.endMs ?? startMs);
  const emotion =
    typeof sentence.emo_tag === 'string' && sentence.emo_tag !== ''
      ? { raw: sentence.emo_tag, confidence: sentence.emo_confidence ?? null }
      : null;
  return { type: 'final', startMs, endMs, text, words, emotion };
}

// ---------------------------------------------------------------------------------------------
// Client → server

export interface ClientHeaderMessage {
  readonly action: 'run-task' | 'finish-task';
  readonly task_id: string;
  readonly streaming: 'duplex';
}

export interface RunTaskParametersMessage {
  readonly format: 'pcm';
  readonly sample_rate: number;
  readonly vocabulary_id?: string;
  readonly language_hints?: readonly string[];
  readonly disfluency_removal_enabled: boolean;
  readonly max_sentence_silence: number;
  /** Must stay false for 8k-v2 to emit emotion (spec A5.3). */
  readonly semantic_punctuation_enabled: false;
  readonly punctuation_prediction_enabled: true;
  readonly inverse_text_normalization_enabled: true;
  /** Keeps the task alive through silent audio (spec A7). */
  readonly heartbeat: true;
}

export interface RunTaskMessage {
  readonly header: ClientHeaderMessage & { readonly action: 'run-task' };
  readonly payload: {
    readonly task_group: 'audio';
    readonly task: 'asr';
    readonly function: 'recognition';
    readonly model: string;
    readonly input: Record<string, never>;
    readonly parameters: RunTaskParametersMessage;
  };
}

export interface FinishTaskMessage {
  readonly header: ClientHeaderMessage & { readonly action: 'finish-task' };
  readonly payload: { readonly input: Record<string, never> };
}

/** A fresh task id: UUID v4 as 32 lower-case hex digits (the Python SDK's uuid4().hex). */
export function newTaskId(): string {
  return randomUUID().replace(/-/g, '');
}

export interface RunTaskOptions {
  readonly taskId: string;
  readonly model: string;
  readonly sampleRateHz: number;
  readonly vocabularyId?: string | undefined;
  /** Sent only for models that read it (paraformer-realtime-v2). */
  readonly languageHints?: readonly string[] | undefined;
  readonly disfluencyRemoval: boolean;
  readonly maxSentenceSilenceMs: number;
}

export function buildRunTask(o: RunTaskOptions): RunTaskMessage {
  const parameters: RunTaskParametersMessage = {
    format: 'pcm',
    sample_rate: o.sampleRateHz,
    ...(o.vocabularyId ? { vocabulary_id: o.vocabularyId } : {}),
    ...(o.languageHints && o.languageHints.length > 0 ? { language_hints: o.languageHints } : {}),
    disfluency_removal_enabled: o.disfluencyRemoval,
    max_sentence_silence: o.maxSentenceSilenceMs,
    semantic_punctuation_enabled: false,
    punctuation_prediction_enabled: true,
    inverse_text_normalization_enabled: true,
    heartbeat: true,
  };
  return {
    header: { action: 'run-task', task_id: o.taskId, streaming: 'duplex' },
    payload: {
      task_group: 'audio',
      task: 'asr',
      function: 'recognition',
      model: o.model,
      input: {},
      parameters,
    },
  };
}

export function buildFinishTask(taskId: string): FinishTaskMessage {
  return {
    header: { action: 'finish-task', task_id: taskId, streaming: 'duplex' },
    payload: { input: {} },
  };
}

// ---------------------------------------------------------------------------------------------
// Error mapping (stable codes; provider code and message kept in details)

/**
 * Maps a `task-failed` (error_code, error_message) onto a stable class (spec A7/A8):
 * Throttling.* or the "rate limit exceeded" text → throttled (retryable); InvalidParameter*,
 * model errors, UNSUPPORTED_FORMAT, "Invalid payload data" → bad request (permanent);
 * InvalidApiKey / AccessDenied* → auth (permanent); Arrearage → quota (permanent);
 * anything else (CLIENT_ERROR, RequestTimeOut, NO_VALID_AUDIO_ERROR, unknown) → task failed
 * (retryable).
 */
export function classifyTaskFailure(errorCode: string, errorMessage: string): ErrorClass {
  const code = errorCode.trim();
  const msg = errorMessage.toLowerCase();
  if (/^throttling/i.test(code) || msg.includes('rate limit exceeded') || msg.includes('rate increased too quickly')) {
    return THROTTLED;
  }
  if (/^(invalidapikey|accessdenied)/i.test(code)) return AUTH;
  if (/^arrearage/i.test(code)) return QUOTA;
  if (
    /^invalidparameter/i.test(code) ||
    /^(modelnotfound|model\.|invalidmodel)/i.test(code) ||
    code === 'UNSUPPORTED_FORMAT' ||
    msg.includes('model not found') ||
    msg.includes('invalid payload data') ||
    msg.includes("missing required parameter 'payload.model'")
  ) {
    return BAD_REQUEST;
  }
  return TASK_FAILED;
}

/** A `task-failed` as an AppError (details: provider code/message and task id). */
export function taskFailedError(errorCode: string, errorMessage: string, taskId: string): AppError {
  const c = classifyTaskFailure(errorCode, errorMessage);
  return new AppError(c.code, 'recogniser task failed', {
    category: c.category,
    retryable: c.retryable,
    details: { providerCode: errorCode, providerMessage: errorMessage, taskId },
  });
}


/** Re-exported: the upgrade-refusal mapping is the same gateway's for both protocols. */
export { handshakeError };
