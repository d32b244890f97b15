/**
 * qwen3-asr-flash-realtime, server side: the OpenAI-Realtime-style protocol of
 * specs/dashscope-protocol.md Part B, for one WebSocket connection (one connection is one
 * session). Sans-I/O like paraformer-task.ts: the socket adapter (server.ts) feeds it text
 * messages, binary frames and timer ticks with the current monotonic time and carries out the
 * actions it returns (send an event, close, drop the TCP connection); its timers are one
 * deadline (`nextDeadline()`), run by `tick()`.
 *
 *   NEW ──open()──► OPEN (session.created; session.update / append / commit …)
 *        ──session.finish──► FINISHED (session.finished; waits for the client's close, or closes
 *        itself after knobs.qwenFinishGraceMs) ──► CLOSED
 *
 * Audio: `input_audio_buffer.append` carries base64 PCM16LE at the session's `sample_rate` (pcm
 * only; opus is accepted in session.update but not decoded). It goes through the same energy
 * VAD and speech segmenter as Part A (vad.ts) and the same scripted recogniser (script.ts),
 * which locates the heard audio in the fixture call's tracks and answers with the script line's
 * text and its `emotion.qwen` label (placeholder text and "neutral" when nothing matches). The
 * VAD threshold follows `turn_detection.threshold` t ∈ [-1, 1]: a 10 ms window is speech when
 * its RMS exceeds knobs.vadThresholdRms × (1 + t) (lower is more sensitive; -1: any non-zero
 * audio). Times (audio_start_ms, audio_end_ms) are session time: ms of audio received on this
 * session.
 *
 * VAD mode (turn_detection set), per utterance, all with one item_id:
 *   speech_started ─► text* (confirmed `text` + tentative `stash`, full state, every
 *   knobs.qwenTextEveryMs of audio) ─► speech_stopped ─► committed ─► conversation.item.created
 *   ─► text (full, empty stash) ─► …transcription.completed
 * Manual mode (turn_detection null): commit ─► committed ─► item.created ─► text* ─► completed.
 */
import { randomFillSync } from 'node:crypto';
import type { Logger } from '../observability/logger.js';
import type { EmulatorKnobs, EmulatorStats, FaultState, QwenOutageMode } from './knobs.js';
import { DROP_IN_SENTENCE_AFTER_MS } from './paraformer-task.js';
import {
  PROBE_BYTES,
  ScriptedRecognizer,
  joinUnits,
  type AudioLocation,
  type CallScript,
  type SentenceTranscript,
} from './script.js';
import { appendToTail, EnergyVad, SEGMENT_START, SEGMENT_END, SpeechSegmenter, type VadWindowSink } from './vad.js';

// ---------------------------------------------------------------------------------------------
// Models, languages, emotions

/** Model names accepted in `?model=` (B1). */
export const QWEN_MODELS: readonly string[] = Object.freeze([
  'qwen3-asr-flash-realtime',
  'qwen3-asr-flash-realtime-2026-02-10',
  'qwen3-asr-flash-realtime-2025-10-27',
]);

export function isQwenModel(model: string | null | undefined): model is string {
  return typeof model === 'string' && QWEN_MODELS.includes(model);
}

/** The 27 `input_audio_transcription.language` codes (B3.1). */
export const QWEN_LANGUAGES: readonly string[] = Object.freeze([
  'zh', 'yue', 'en', 'ja', 'de', 'ko', 'ru', 'fr', 'pt', 'ar', 'it', 'es', 'hi', 'id', 'th', 'tr', 'uk', 'vi',
  'cs', 'da', 'fil', 'fi', 'is', 'ms', 'no', 'pl', 'sv',
]);

/** The 7 emotion labels of text/completed events (B4.7). */
export const QWEN_EMOTIONS: readonly string[] = Object.freeze(['surprised', 'neutral', 'happy', 'sad', 'disgusted', 'angry', 'fearful']);

export const QWEN_THROTTLED_MESSAGE = 'Requests rate limit exceeded, please try again later.';
export const QWEN_UNAVAILABLE_MESSAGE = 'The service is temporarily unavailable, please try again later.';

// ---------------------------------------------------------------------------------------------
// Ids (B2): event_ / item_ / sess_ + 21 characters of [A-Za-z0-9_-]

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
export const QWEN_ID_LENGTH = 21;
export const QWEN_ID_PATTERN = /^(event|item|sess)_[A-Za-z0-9_-]{21}$/;

export type QwenIdKind = 'event' | 'item' | 'sess';
export type QwenIdSource = (kind: QwenIdKind) => string;

/** Random ids from a pooled CSPRNG buffer (one randomFillSync per ~97 ids). */
export function createQwenIdSource(): QwenIdSource {
  const pool = Buffer.alloc(2048);
  let pos = pool.length;
  return (kind) => {
    if (pos + QWEN_ID_LENGTH > pool.length) {
      randomFillSync(pool);
      pos = 0;
    }
    let id = `${kind}_`;
    for (let i = 0; i < QWEN_ID_LENGTH; i++) id += ID_ALPHABET[(pool[pos++] as number) & 63];
    return id;
  };
}

const defaultIds = createQwenIdSource();

// ---------------------------------------------------------------------------------------------
// Wire types

export interface QwenServerEvent {
  readonly event_id: string;
  readonly type: string;
  readonly [field: string]: unknown;
}

export type QwenAction =
  | { readonly type: 'send'; readonly event: QwenServerEvent; readonly delayMs: number }
  | { readonly type: 'close'; readonly code: number; readonly reason: string }
  | { readonly type: 'drop' };

export interface QwenTurnDetection {
  readonly type: 'server_vad';
  readonly threshold: number;
  readonly silence_duration_ms: number;
}

export interface QwenTranscriptionConfig {
  readonly language?: string;
  readonly corpus?: { readonly text: string };
}

/** The session configuration in effect (what session.created / session.updated echo). */
export interface QwenSessionConfig {
  readonly modalities: readonly string[];
  readonly input_audio_format: 'pcm' | 'opus';
  readonly sample_rate: 8000 | 16000;
  readonly input_audio_transcription: QwenTranscriptionConfig | null;
  readonly turn_detection: QwenTurnDetection | null;
}

export const DEFAULT_TURN_DETECTION: QwenTurnDetection = Object.freeze({
  type: 'server_vad',
  threshold: 0.2,
  silence_duration_ms: 800,
});

/** B4.1 defaults: pcm, 16000 Hz, server VAD 0.2 / 800, no transcription settings. */
export const DEFAULT_QWEN_SESSION: QwenSessionConfig = Object.freeze({
  modalities: Object.freeze(['text']),
  input_audio_format: 'pcm',
  sample_rate: 16000,
  input_audio_transcription: null,
  turn_detection: DEFAULT_TURN_DETECTION,
});

// ---------------------------------------------------------------------------------------------
// session.update: deep merge + validation (B3.1, B7.3)

export type SessionUpdateResult =
  | { readonly ok: true; readonly config: QwenSessionConfig }
  | { readonly ok: false; readonly code: string; readonly param: string; readonly message: string };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  const s = typeof v === 'string' ? `'${v}'` : v === undefined ? 'undefined' : JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** `patch` merged into `base`: objects key by key (recursively), anything else replaces. */
function deepMerge(base: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) return patch;
  const out: Record<string, unknown> = isRecord(base) ? { ...base } : {};
  for (const key of Object.keys(patch)) {
    if (key === '__proto__') continue;
    out[key] = deepMerge(out[key], patch[key]);
  }
  return out;
}

function configToPlain(c: QwenSessionConfig): Record<string, unknown> {
  return {
    modalities: [...c.modalities],
    input_audio_format: c.input_audio_format,
    sample_rate: c.sample_rate,
    input_audio_transcription: c.input_audio_transcription === null ? null : { ...c.input_audio_transcription },
    turn_detection: c.turn_detection === null ? null : { ...c.turn_detection },
  };
}

const FORMATS = ['pcm', 'opus'] as const;
const RATES = [8000, 16000] as const;

/**
 * Deep-merges a `session.update`'s `session` into `current` and validates the result. Unknown
 * fields (voice, output_audio_format, prefix_padding_ms, input_audio_transcription.model, …) are
 * tolerated and dropped; the Java SDK's `audio.input.format.{type,sample_rate}` form is mapped
 * onto the flat fields. On failure nothing changes and the result names the offending field.
 */
export function applySessionUpdate(current: QwenSessionConfig, patch: unknown): SessionUpdateResult {
  const bad = (param: string, message: string, code = 'invalid_value'): SessionUpdateResult => ({ ok: false, code, param, message });
  const badEnum = (param: string, v: unknown, allowed: readonly (string | number)[]): SessionUpdateResult =>
    bad(param, `Invalid value: ${show(v)}. Supported values are: ${allowed.map((a) => show(a)).join(', ')}.`);
  if (patch === undefined) return bad('session', "Missing required parameter: 'session'.", 'missing_required_parameter');
  if (!isRecord(patch)) return bad('session', `Invalid value: ${show(patch)}. Expected an object.`);
  const merged = deepMerge(configToPlain(current), patch) as Record<string, unknown>;

  const audio = patch['audio'];
  if (audio !== undefined && audio !== null) {
    if (!isRecord(audio)) return bad('session.audio', `Invalid value: ${show(audio)}. Expected an object.`);
    const input = audio['input'];
    if (input !== undefined && input !== null) {
      if (!isRecord(input)) return bad('session.audio.input', `Invalid value: ${show(input)}. Expected an object.`);
      const format = input['format'];
      if (format !== undefined && format !== null) {
        if (!isRecord(format)) return bad('session.audio.input.format', `Invalid value: ${show(format)}. Expected an object.`);
        const type = format['type'];
        if (type !== undefined) {
          if (!FORMATS.includes(type as never)) return badEnum('session.audio.input.format.type', type, FORMATS);
          merged['input_audio_format'] = type;
        }
        const rate = format['sample_rate'];
        if (rate !== undefined) {
          if (!RATES.includes(rate as never)) return badEnum('session.audio.input.format.sample_rate', rate, RATES);
          merged['sample_rate'] = rate;
        }
      }
    }
  }

  const modalities = merged['modalities'];
  if (!Array.isArray(modalities) || !modalities.every((m): m is string => typeof m === 'string')) {
    return bad('session.modalities', `Invalid value: ${show(modalities)}. Expected an array of strings.`);
  }
  const format = merged['input_audio_format'];
  if (format !== 'pcm' && format !== 'opus') return badEnum('session.input_audio_format', format, FORMATS);
  const rate = merged['sample_rate'];
  if (rate !== 8000 && rate !== 16000) return badEnum('session.sample_rate', rate, RATES);

  let transcription: QwenTranscriptionConfig | null = null;
  const iat = merged['input_audio_transcription'];
  if (iat !== null) {
    if (!isRecord(iat)) return bad('session.input_audio_transcription', `Invalid value: ${show(iat)}. Expected an object or null.`);
    const out: { language?: string; corpus?: { text: string } } = {};
    const language = iat['language'];
    if (language !== undefined && language !== null) {
      if (typeof language !== 'string' || !QWEN_LANGUAGES.includes(language)) {
        return badEnum('session.input_audio_transcription.language', language, QWEN_LANGUAGES);
      }
      out.language = language;
    }
    const corpus = iat['corpus'];
    if (corpus !== undefined && corpus !== null) {
      if (!isRecord(corpus)) return bad('session.input_audio_transcription.corpus', `Invalid value: ${show(corpus)}. Expected an object.`);
      const text = corpus['text'];
      if (text !== undefined && text !== null) {
        if (typeof text !== 'string') return bad('session.input_audio_transcription.corpus.text', `Invalid value: ${show(text)}. Expected a string.`);
        out.corpus = { text };
      }
    }
    transcription = out;
  }

  let turn: QwenTurnDetection | null = null;
  const td = merged['turn_detection'];
  if (td !== null) {
    if (!isRecord(td)) return bad('session.turn_detection', `Invalid value: ${show(td)}. Expected an object or null.`);
    const type = td['type'] ?? DEFAULT_TURN_DETECTION.type;
    if (type !== 'server_vad') return badEnum('session.turn_detection.type', type, ['server_vad']);
    const threshold = td['threshold'] ?? DEFAULT_TURN_DETECTION.threshold;
    if (typeof threshold !== 'number' || !Number.isFinite(threshold) || threshold < -1 || threshold > 1) {
      return bad('session.turn_detection.threshold', `Invalid value: ${show(threshold)}. Expected a number in [-1, 1].`);
    }
    const silence = td['silence_duration_ms'] ?? DEFAULT_TURN_DETECTION.silence_duration_ms;
    if (typeof silence !== 'number' || !Number.isInteger(silence) || silence < 200 || silence > 6000) {
      return bad('session.turn_detection.silence_duration_ms', `Invalid value: ${show(silence)}. Expected an integer in [200, 6000].`);
    }
    turn = { type: 'server_vad', threshold, silence_duration_ms: silence };
  }
  return {
    ok: true,
    config: { modalities: [...modalities], input_audio_format: format, sample_rate: rate, input_audio_transcription: transcription, turn_detection: turn },
  };
}

// ---------------------------------------------------------------------------------------------
// Session

export interface QwenDeps {
  /** The emulator's live knobs (read at use time). */
  readonly knobs: EmulatorKnobs;
  readonly stats: EmulatorStats;
  readonly faults: FaultState;
  readonly script: CallScript | null;
  readonly logger: Logger;
  /** Id generator (default: random). */
  readonly newId?: QwenIdSource;
}

export interface QwenSessionInfo {
  /** The Bearer key of the upgrade (never logged). */
  readonly apiKey: string;
  readonly connectionId: number;
  /** The `?model=` of the upgrade (one of QWEN_MODELS). */
  readonly model: string;
}

/** Why a new session is refused right after the upgrade. */
export type QwenRefusal = { readonly kind: 'throttled' } | { readonly kind: 'outage'; readonly mode: Exclude<QwenOutageMode, 'http-503'> };

export type QwenPhase = 'new' | 'open' | 'finished' | 'closed';

/** Units of an interim result kept in `stash` (tentative); the rest is confirmed `text`. */
export const STASH_UNITS = 4;
/** Most text events sent for one item after its commit (manual mode, after-commit timing). */
const MAX_PROGRESS_EVENTS = 20;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const CLIENT_EVENTS = ['session.update', 'input_audio_buffer.append', 'input_audio_buffer.commit', 'session.finish'];

/** The per-pipeline audio path: VAD, segmenter, recogniser and the probe that locates speech. */
class AudioPipeline {
  readonly vad: EnergyVad;
  readonly seg: SpeechSegmenter;
  readonly recognizer: ScriptedRecognizer;
  readonly bytesPerMs: number;
  /** PCM bytes fed so far. */
  bytes = 0;
  readonly probe: Buffer | null;
  probeActive = false;
  probeFill = 0;
  probeStartByte = 0;
  probeStartMs = 0;
  /** The last bytes of earlier chunks (a window, hence a probe, can start in the previous chunk). */
  readonly tail: Buffer | null;
  tailLen = 0;
  chunk: Buffer | null = null;
  chunkStartByte = 0;

  constructor(
    readonly sampleRateHz: number,
    thresholdRms: number,
    maxSilenceMs: number,
    script: CallScript | null,
    toleranceMs: number,
    /** Session ms at this pipeline's first byte. */
    readonly offsetMs: number,
  ) {
    this.vad = new EnergyVad({ sampleRateHz, thresholdRms });
    this.seg = new SpeechSegmenter(this.vad.windowMs, maxSilenceMs);
    this.recognizer = new ScriptedRecognizer(script, sampleRateHz, toleranceMs);
    this.bytesPerMs = (sampleRateHz * 2) / 1000;
    this.probe = this.recognizer.probeBytes > 0 ? Buffer.alloc(PROBE_BYTES) : null;
    this.tail = this.probe ? Buffer.alloc(this.vad.windowSamples * 2 + 2) : null;
  }

  get audioMs(): number {
    return this.bytes / this.bytesPerMs;
  }
}

interface Item {
  /** Null in manual mode until the commit. */
  id: string | null;
  /** Session ms of the first voiced window. */
  readonly beginMs: number;
  lastVoicedEndMs: number;
  location: AudioLocation | null;
  locating: boolean;
  lastTextAtMs: number;
  /** Confirmed text sent so far (never shrinks). */
  confirmed: string;
  /** text + NUL + stash of the last text event (no identical repeats). */
  lastSnapshot: string | null;
}

/** Text of the first `m` units of a transcript, joined exactly as the transcript's text is. */
export function transcriptPrefix(t: SentenceTranscript, m: number): string {
  let text = '';
  let left = m;
  for (const p of t.pieces) {
    if (left <= 0) break;
    const k = Math.min(left, p.to - p.from);
    if (k <= 0) continue;
    const part = joinUnits(p.line.units.slice(p.from, p.from + k), p.line.joiner);
    if (text !== '' && part !== '' && p.line.joiner === ' ') text += ' ';
    text += part;
    left -= k;
  }
  return text;
}

/** The qwen emotion of a transcript: the `emotion.qwen` of the line it overlaps most, else neutral. */
export function qwenEmotionOf(t: SentenceTranscript): string {
  let best: SentenceTranscript['pieces'][number] | null = null;
  for (const p of t.pieces) if (best === null || p.overlapMs > best.overlapMs) best = p;
  return best?.line.qwenEmotion ?? 'neutral';
}

function languageOfScript(script: CallScript | null): string {
  const lang = script?.language?.toLowerCase().split(/[-_]/)[0];
  return lang !== undefined && QWEN_LANGUAGES.includes(lang) ? lang : 'zh';
}

function thresholdRms(knobs: EmulatorKnobs, c: QwenSessionConfig): number {
  const t = (c.turn_detection ?? DEFAULT_TURN_DETECTION).threshold;
  return knobs.vadThresholdRms * (1 + t);
}

export class QwenSession implements VadWindowSink {
  private phaseValue: QwenPhase = 'new';
  private configValue: QwenSessionConfig = DEFAULT_QWEN_SESSION;
  readonly sessionId: string;
  private readonly newId: QwenIdSource;
  private out: QwenAction[] = [];
  private openedAtMs = 0;
  private lastAppendAtMs = 0;
  private finishedAtMs = 0;
  private appends = 0;
  /** Speech segments heard (all pipelines), for dropInSentence. */
  private segments = 0;
  private dropChecked = false;
  private pipe: AudioPipeline | null = null;
  /** Session ms of audio in earlier pipelines. */
  private earlierAudioMs = 0;
  private item: Item | null = null;
  private prevItemId: string | null = null;
  /** Manual mode: PCM bytes appended since the last commit. */
  private manualBytes = 0;
  private opusReported = false;
  private scratch = Buffer.allocUnsafe(8192);

  constructor(
    private readonly deps: QwenDeps,
    private readonly info: QwenSessionInfo,
  ) {
    this.newId = deps.newId ?? defaultIds;
    this.sessionId = this.newId('sess');
  }

  get phase(): QwenPhase {
    return this.phaseValue;
  }

  get config(): QwenSessionConfig {
    return this.configValue;
  }

  /** Session time: ms of (decoded) audio received. */
  get sessionMs(): number {
    return this.earlierAudioMs + (this.pipe?.audioMs ?? 0);
  }

  // ---- inputs ---------------------------------------------------------------------------

  /** The upgrade was accepted: session.created, or the refusal. */
  open(nowMs: number, refusal: QwenRefusal | null = null): QwenAction[] {
    this.out = [];
    if (this.phaseValue !== 'new') return this.out;
    if (refusal !== null) {
      this.phaseValue = 'closed';
      if (refusal.kind === 'throttled') {
        this.sendError(null, 'invalid_request_error', 'Throttling.RateQuota', QWEN_THROTTLED_MESSAGE, null);
        this.out.push({ type: 'close', code: 1000, reason: 'throttled' });
      } else {
        if (refusal.mode === 'error-event') {
          this.sendError(null, 'server_error', 'ServiceUnavailable', QWEN_UNAVAILABLE_MESSAGE, null);
        }
        this.out.push({ type: 'close', code: 1011, reason: 'Internal server error' });
      }
      return this.out;
    }
    this.phaseValue = 'open';
    this.openedAtMs = nowMs;
    this.lastAppendAtMs = nowMs;
    this.deps.stats.qwenSessions++;
    this.send('session.created', { session: this.sessionObject() });
    if (this.deps.knobs.qwenUnsolicitedUpdated) this.send('session.updated', { session: this.sessionObject() });
    return this.out;
  }

  handleText(text: string, nowMs: number): QwenAction[] {
    this.out = [];
    if (this.phaseValue === 'closed' || this.phaseValue === 'new') return this.out;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.clientError(null, 'invalid_json', 'The message is not valid JSON.', null);
      return this.out;
    }
    if (!isRecord(msg)) {
      this.clientError(null, 'invalid_json', 'The message must be a JSON object.', null);
      return this.out;
    }
    const rawId = msg['event_id'];
    const eventId = typeof rawId === 'string' ? rawId : null;
    const type = msg['type'];
    if (typeof type !== 'string') {
      this.clientError(eventId, 'missing_required_parameter', "Missing required parameter: 'type'.", 'type');
      return this.out;
    }
    if (this.phaseValue === 'finished') {
      this.deps.stats.qwenEventsIgnored++;
      return this.out;
    }
    switch (type) {
      case 'input_audio_buffer.append':
        this.onAppend(msg['audio'], eventId, nowMs);
        break;
      case 'session.update':
        this.onSessionUpdate(msg['session'], eventId);
        break;
      case 'input_audio_buffer.commit':
        this.onCommit(eventId);
        break;
      case 'session.finish':
        this.onFinish(nowMs);
        break;
      default:
        if (this.deps.knobs.qwenUnknownEventMode === 'ignore') {
          this.deps.stats.qwenEventsIgnored++;
        } else {
          this.clientError(
            eventId,
            'invalid_value',
            `Invalid value: ${show(type)}. Supported values are: ${CLIENT_EVENTS.map((e) => show(e)).join(', ')}.`,
            'type',
          );
        }
    }
    return this.out;
  }

  /** A binary frame: the protocol has none (B1). */
  handleAudio(_chunk: Buffer, _nowMs: number): QwenAction[] {
    this.out = [];
    if (this.phaseValue !== 'open') return this.out;
    this.clientError(
      null,
      'invalid_value',
      'Binary frames are not supported: send audio as base64 in input_audio_buffer.append events.',
      null,
    );
    return this.out;
  }

  /** Runs the timers whose deadline passed. */
  tick(nowMs: number): QwenAction[] {
    this.out = [];
    const { knobs } = this.deps;
    if (this.phaseValue === 'open') {
      if (knobs.qwenMaxSessionMs > 0 && nowMs >= this.openedAtMs + knobs.qwenMaxSessionMs) {
        this.fatal('session_expired', `Your session hit the maximum duration of ${knobs.qwenMaxSessionMs / 1000} seconds.`);
      } else if (nowMs >= this.lastAppendAtMs + knobs.qwenIdleTimeoutMs) {
        this.fatal('idle_timeout', `No audio received for ${knobs.qwenIdleTimeoutMs / 1000} seconds.`);
      }
    } else if (this.phaseValue === 'finished' && nowMs >= this.finishedAtMs + knobs.qwenFinishGraceMs) {
      this.phaseValue = 'closed';
      this.out.push({ type: 'close', code: 1000, reason: 'session finished' });
    }
    return this.out;
  }

  /** Earliest monotonic time at which tick() has something to do, or null. */
  nextDeadline(): number | null {
    const { knobs } = this.deps;
    if (this.phaseValue === 'open') {
      const idle = this.lastAppendAtMs + knobs.qwenIdleTimeoutMs;
      return knobs.qwenMaxSessionMs > 0 ? Math.min(idle, this.openedAtMs + knobs.qwenMaxSessionMs) : idle;
    }
    if (this.phaseValue === 'finished') return this.finishedAtMs + knobs.qwenFinishGraceMs;
    return null;
  }

  /** The connection ended (client close, socket error, drop): the item in progress is lost. */
  handleClose(): void {
    if (this.phaseValue === 'open' && this.item !== null) {
      this.deps.stats.itemsDroppedOnClose++;
      this.deps.logger.debug(
        { connectionId: this.info.connectionId, sessionId: this.sessionId },
        'emulator: qwen session closed without session.finish, item in progress dropped',
      );
    }
    this.item = null;
    this.phaseValue = 'closed';
  }

  // ---- client events ----------------------------------------------------------------------

  private onSessionUpdate(patch: unknown, eventId: string | null): void {
    const r = applySessionUpdate(this.configValue, patch);
    if (!r.ok) {
      this.clientError(eventId, r.code, r.message, r.param);
      return;
    }
    const before = this.configValue;
    this.configValue = r.config;
    this.reconfigure(before, r.config);
    if (this.phaseValue !== 'open') return;
    this.send('session.updated', { session: this.sessionObject() });
  }

  /**
   * Audio settings changed. sample_rate, input_audio_format, threshold or the mode take effect
   * with the next append on a new pipeline (an open VAD item is completed first; an uncommitted
   * manual buffer is discarded); silence_duration_ms applies at once.
   */
  private reconfigure(before: QwenSessionConfig, after: QwenSessionConfig): void {
    const p = this.pipe;
    if (p === null) return;
    const modeChanged = (before.turn_detection === null) !== (after.turn_detection === null);
    const rebuild =
      modeChanged ||
      before.sample_rate !== after.sample_rate ||
      before.input_audio_format !== after.input_audio_format ||
      thresholdRms(this.deps.knobs, before) !== thresholdRms(this.deps.knobs, after);
    if (!rebuild) {
      if (after.turn_detection) p.seg.maxSilenceMs = after.turn_detection.silence_duration_ms;
      return;
    }
    if (this.item !== null) {
      if (before.turn_detection !== null) this.completeVadItem();
      else this.item = null;
    }
    this.manualBytes = 0;
    this.earlierAudioMs += p.audioMs;
    this.pipe = null;
  }

  private onAppend(audio: unknown, eventId: string | null, nowMs: number): void {
    const { stats, faults } = this.deps;
    stats.qwenAppends++;
    this.appends++;
    this.lastAppendAtMs = nowMs;
    const dropAfter = faults.dropAfterFrames;
    if (dropAfter !== null && this.appends >= dropAfter && faults.tryConsumeDrop()) {
      this.drop();
      return;
    }
    if (typeof audio !== 'string') {
      this.clientError(eventId, 'missing_required_parameter', "Missing required parameter: 'audio'.", 'audio');
      return;
    }
    if ((audio.length & 3) !== 0 || !BASE64.test(audio)) {
      this.clientError(eventId, 'invalid_value', "Invalid 'audio': expected base64-encoded audio.", 'audio');
      return;
    }
    const need = (audio.length >>> 2) * 3;
    if (this.scratch.length < need) this.scratch = Buffer.allocUnsafe(Math.max(need, this.scratch.length * 2));
    const n = need === 0 ? 0 : this.scratch.write(audio, 0, need, 'base64');
    stats.qwenAudioBytes += n;
    if (this.configValue.input_audio_format !== 'pcm') {
      if (!this.opusReported) {
        this.opusReported = true;
        this.sendError(
          eventId,
          'invalid_request_error',
          'unsupported_audio_format',
          'The DashScope emulator decodes only pcm audio; opus audio is ignored.',
          'session.input_audio_format',
        );
      }
      return;
    }
    if (n === 0) return;
    if (this.configValue.turn_detection === null) this.manualBytes += n;
    this.feed(this.scratch.subarray(0, n));
  }

  private onCommit(eventId: string | null): void {
    if (this.configValue.turn_detection !== null) {
      this.clientError(
        eventId,
        'invalid_value',
        'input_audio_buffer.commit is only available in manual mode (turn_detection: null).',
        'type',
      );
      return;
    }
    if (this.manualBytes === 0 && this.item === null) {
      this.clientError(eventId, 'input_audio_buffer_commit_empty', 'Error committing input audio buffer: the buffer is empty.', null);
      return;
    }
    this.commitManual();
  }

  private onFinish(nowMs: number): void {
    const { stats, logger } = this.deps;
    if (this.item !== null) {
      if (this.configValue.turn_detection !== null) this.completeVadItem();
      else this.commitManual();
    }
    this.manualBytes = 0;
    this.send('session.finished', {}, this.deps.knobs.resultDelayMs);
    stats.qwenSessionsFinished++;
    this.phaseValue = 'finished';
    this.finishedAtMs = nowMs;
    logger.debug({ connectionId: this.info.connectionId, sessionId: this.sessionId }, 'emulator qwen session finished');
  }

  // ---- audio ------------------------------------------------------------------------------

  private pipeline(): AudioPipeline {
    if (this.pipe !== null) return this.pipe;
    const { knobs, script } = this.deps;
    const c = this.configValue;
    this.pipe = new AudioPipeline(
      c.sample_rate,
      thresholdRms(knobs, c),
      (c.turn_detection ?? DEFAULT_TURN_DETECTION).silence_duration_ms,
      script,
      knobs.scriptToleranceMs,
      this.earlierAudioMs,
    );
    return this.pipe;
  }

  private feed(chunk: Buffer): void {
    const p = this.pipeline();
    p.chunk = chunk;
    p.chunkStartByte = p.bytes;
    if (p.probeActive) this.fillProbe(p);
    p.vad.push(chunk, this);
    p.chunk = null;
    if (this.phaseValue !== 'open' || this.pipe !== p) return;
    p.bytes += chunk.length;
    if (p.tail !== null) p.tailLen = appendToTail(p.tail, p.tailLen, chunk);
  }

  /** VadWindowSink: one 10 ms window. */
  onVadWindow(voiced: boolean, windowIndex: number): boolean {
    const p = this.pipe;
    if (p === null || this.phaseValue !== 'open') return false;
    const { knobs, faults } = this.deps;
    const seg = p.seg;
    const ev = seg.onWindow(voiced, windowIndex);
    const windowMs = p.vad.windowMs;
    const relEndMs = (windowIndex + 1) * windowMs;
    const endMs = p.offsetMs + relEndMs;
    const vadMode = this.configValue.turn_detection !== null;
    if (ev === SEGMENT_START) {
      this.segments++;
      this.dropChecked = false;
      if (vadMode && this.item === null) this.openItem(p, endMs - windowMs, windowIndex, true);
    } else if (ev === SEGMENT_END && vadMode && this.item !== null) {
      this.completeVadItem();
    }
    if (!vadMode && voiced && this.item === null) this.openItem(p, endMs - windowMs, windowIndex, false);
    const item = this.item;
    if (item !== null) {
      if (voiced) item.lastVoicedEndMs = endMs;
      if (vadMode) {
        const every = knobs.qwenTextEveryMs;
        if (endMs - item.beginMs >= knobs.maxSentenceMs) {
          this.completeVadItem();
          seg.forceEnd();
        } else if (
          knobs.qwenTextTiming === 'during-speech' &&
          !item.locating &&
          seg.inSpeech &&
          endMs - item.lastTextAtMs >= every &&
          seg.silenceRunMs < every
        ) {
          item.lastTextAtMs = endMs;
          this.sendText(item, p.recognizer.transcribe(item.location, item.beginMs, item.lastVoicedEndMs), false);
        }
      }
    }
    const dropIn = faults.dropInSentence;
    if (
      dropIn !== null &&
      !this.dropChecked &&
      seg.inSpeech &&
      this.segments === dropIn &&
      relEndMs - seg.segmentStartMs >= DROP_IN_SENTENCE_AFTER_MS
    ) {
      this.dropChecked = true;
      if (faults.tryConsumeDrop()) {
        this.drop();
        return false;
      }
    }
    return true;
  }

  private openItem(p: AudioPipeline, startMs: number, windowIndex: number, vadMode: boolean): void {
    const locate = p.probe !== null;
    const item: Item = {
      id: vadMode ? this.newId('item') : null,
      beginMs: startMs,
      lastVoicedEndMs: startMs + p.vad.windowMs,
      location: null,
      locating: locate,
      lastTextAtMs: startMs,
      confirmed: '',
      lastSnapshot: null,
    };
    this.item = item;
    if (vadMode) {
      this.send(
        'input_audio_buffer.speech_started',
        { audio_start_ms: Math.round(startMs), item_id: item.id },
        this.deps.knobs.resultDelayMs,
      );
    }
    if (locate) {
      p.probeActive = true;
      p.probeFill = 0;
      p.probeStartByte = windowIndex * p.vad.windowSamples * 2;
      p.probeStartMs = startMs;
      this.fillProbe(p);
    } else {
      this.deps.stats.scriptMisses++;
    }
  }

  /** Copies the probe's bytes from the tail of earlier chunks and from the current chunk. */
  private fillProbe(p: AudioPipeline): void {
    const probe = p.probe;
    const chunk = p.chunk;
    if (probe === null || chunk === null || !p.probeActive) return;
    const C = p.chunkStartByte;
    let pos = p.probeStartByte + p.probeFill;
    if (pos < C) {
      const tailStart = C - p.tailLen;
      if (p.tail === null || pos < tailStart) {
        this.onProbeDone(p, null);
        return;
      }
      const n = Math.min(C - pos, PROBE_BYTES - p.probeFill);
      p.tail.copy(probe, p.probeFill, pos - tailStart, pos - tailStart + n);
      p.probeFill += n;
      pos += n;
    }
    if (p.probeFill < PROBE_BYTES && pos >= C) {
      const off = pos - C;
      const n = Math.min(chunk.length - off, PROBE_BYTES - p.probeFill);
      if (n > 0) {
        chunk.copy(probe, p.probeFill, off, off + n);
        p.probeFill += n;
      }
    }
    if (p.probeFill >= PROBE_BYTES) this.onProbeDone(p, p.recognizer.locate(probe, p.probeStartMs));
  }

  private onProbeDone(p: AudioPipeline, loc: AudioLocation | null): void {
    p.probeActive = false;
    if (loc) this.deps.stats.scriptMatches++;
    else this.deps.stats.scriptMisses++;
    const item = this.item;
    if (item === null) return;
    item.location = loc;
    item.locating = false;
  }

  /** Stops a probe that cannot complete (the item ends first): the item stays unlocated. */
  private abandonProbe(): void {
    const p = this.pipe;
    if (p !== null && p.probeActive) this.onProbeDone(p, null);
  }

  // ---- items ------------------------------------------------------------------------------

  /** VAD mode: the utterance ended (silence, maxSentenceMs, session.finish or a reconfiguration). */
  private completeVadItem(): void {
    const item = this.item;
    const p = this.pipe;
    if (item === null || p === null || item.id === null) return;
    this.abandonProbe();
    this.item = null;
    const t = p.recognizer.transcribe(item.location, item.beginMs, item.lastVoicedEndMs);
    const endMs = Math.max(item.beginMs, item.lastVoicedEndMs);
    this.send(
      'input_audio_buffer.speech_stopped',
      { audio_end_ms: Math.round(endMs), item_id: item.id },
      this.deps.knobs.resultDelayMs,
    );
    const k = this.deps.knobs;
    this.finishItem(p, item, item.id, t, k.qwenCommitEvents, k.qwenCommitEvents, k.qwenTextTiming === 'after-commit');
  }

  /** Manual mode: everything appended since the last commit becomes one item. */
  private commitManual(): void {
    const p = this.pipeline();
    const item = this.item;
    this.abandonProbe();
    this.item = null;
    this.manualBytes = 0;
    const id = this.newId('item');
    const commitEvents = this.deps.knobs.qwenCommitEvents;
    if (item === null) {
      // audio without speech: an item with an empty transcript
      const silent: Item = {
        id,
        beginMs: this.sessionMs,
        lastVoicedEndMs: this.sessionMs,
        location: null,
        locating: false,
        lastTextAtMs: 0,
        confirmed: '',
        lastSnapshot: null,
      };
      const empty: SentenceTranscript = { text: '', units: [], emotion: { tag: 'neutral', confidence: 0.5 }, matched: false, unfinished: false, pieces: [] };
      this.finishItem(p, silent, id, empty, true, commitEvents, false);
      return;
    }
    item.id = id;
    const t = p.recognizer.transcribe(item.location, item.beginMs, item.lastVoicedEndMs);
    this.finishItem(p, item, id, t, true, commitEvents, true);
  }

  /** committed → item.created → text* → completed, then the recogniser remembers the text. */
  private finishItem(
    p: AudioPipeline,
    item: Item,
    id: string,
    t: SentenceTranscript,
    committed: boolean,
    created: boolean,
    progress: boolean,
  ): void {
    const { knobs, stats } = this.deps;
    const delay = knobs.resultDelayMs;
    const prev = this.prevItemId;
    if (committed) this.send('input_audio_buffer.committed', { previous_item_id: prev, item_id: id }, delay);
    if (created) {
      this.send(
        'conversation.item.created',
        {
          previous_item_id: prev,
          item: {
            id,
            object: 'realtime.item',
            type: 'message',
            status: 'completed',
            role: 'user',
            content: [{ type: 'input_audio', transcript: null }],
          },
        },
        delay,
      );
    }
    if (t.text !== '') {
      if (progress) {
        const begin = item.beginMs;
        const end = Math.max(begin, item.lastVoicedEndMs);
        const step = Math.max(knobs.qwenTextEveryMs, (end - begin) / MAX_PROGRESS_EVENTS);
        for (let ms = begin + step; ms < end; ms += step) {
          this.sendText(item, p.recognizer.transcribe(item.location, begin, ms), false);
        }
      }
      this.sendText(item, t, true);
    }
    const usage = knobs.qwenCompletedUsage
      ? { usage: { type: 'duration', seconds: Math.ceil(Math.max(0, item.lastVoicedEndMs - item.beginMs) / 1000) } }
      : {};
    this.send(
      'conversation.item.input_audio_transcription.completed',
      { item_id: id, content_index: 0, language: this.language(), emotion: qwenEmotionOf(t), transcript: t.text, ...usage },
      delay,
    );
    p.recognizer.commit(t);
    stats.qwenItemsCompleted++;
    this.prevItemId = id;
  }

  /** One full-state text event: confirmed `text` + tentative `stash` (final: all confirmed). */
  private sendText(item: Item, t: SentenceTranscript, final: boolean): void {
    let text: string;
    let stash: string;
    if (final) {
      text = t.text;
      stash = '';
    } else if (!t.matched) {
      text = item.confirmed;
      stash = t.text;
    } else {
      const candidate = transcriptPrefix(t, Math.max(0, t.units.length - STASH_UNITS));
      if (candidate.length > item.confirmed.length && candidate.startsWith(item.confirmed)) item.confirmed = candidate;
      text = item.confirmed;
      stash = t.text.startsWith(text) ? t.text.slice(text.length) : '';
    }
    const snapshot = `${text}\u0000${stash}`;
    if (snapshot === item.lastSnapshot) return;
    item.lastSnapshot = snapshot;
    this.send(
      'conversation.item.input_audio_transcription.text',
      { item_id: item.id, content_index: 0, language: this.language(), emotion: qwenEmotionOf(t), text, stash },
      this.deps.knobs.resultDelayMs,
    );
    this.deps.stats.qwenTextEvents++;
  }

  // ---- outputs ----------------------------------------------------------------------------

  private language(): string {
    return this.configValue.input_audio_transcription?.language ?? languageOfScript(this.deps.script);
  }

  private sessionObject(): Record<string, unknown> {
    const c = this.configValue;
    const iat = c.input_audio_transcription;
    return {
      id: this.sessionId,
      object: 'realtime.session',
      model: this.info.model,
      modalities: [...c.modalities],
      input_audio_format: c.input_audio_format,
      sample_rate: c.sample_rate,
      input_audio_transcription:
        iat === null
          ? null
          : { ...(iat.language !== undefined ? { language: iat.language } : {}), ...(iat.corpus ? { corpus: { text: iat.corpus.text } } : {}) },
      turn_detection: c.turn_detection === null ? null : { ...c.turn_detection },
    };
  }

  private send(type: string, fields: Record<string, unknown>, delayMs = 0): void {
    this.out.push({ type: 'send', event: { event_id: this.newId('event'), type, ...fields }, delayMs });
  }

  private sendError(eventId: string | null, type: string, code: string, message: string, param: string | null): void {
    const { stats } = this.deps;
    this.send('error', { error: { type, code, message, param, event_id: eventId } });
    stats.qwenErrors[code] = (stats.qwenErrors[code] ?? 0) + 1;
  }

  /** An `error` caused by a client event; the session goes on unless knobs.qwenCloseAfterError. */
  private clientError(eventId: string | null, code: string, message: string, param: string | null): void {
    this.sendError(eventId, 'invalid_request_error', code, message, param);
    this.deps.logger.debug({ connectionId: this.info.connectionId, code, param }, 'emulator qwen session sent an error');
    if (this.deps.knobs.qwenCloseAfterError && this.phaseValue === 'open') {
      this.item = null;
      this.phaseValue = 'closed';
      this.out.push({ type: 'close', code: 1000, reason: 'error' });
    }
  }

  /** A server-side end of the session (timers): error, then close. */
  private fatal(code: string, message: string): void {
    this.sendError(null, 'invalid_request_error', code, message, null);
    this.deps.logger.debug({ connectionId: this.info.connectionId, code }, 'emulator ends a qwen session');
    this.item = null;
    this.phaseValue = 'closed';
    this.out.push({ type: 'close', code: 1000, reason: code });
  }

  private drop(): void {
    const { stats, logger } = this.deps;
    stats.dropsInjected++;
    if (this.item !== null) stats.itemsDroppedOnClose++;
    logger.debug({ connectionId: this.info.connectionId }, 'emulator drops a qwen connection (injected fault)');
    this.item = null;
    this.phaseValue = 'closed';
    this.out.push({ type: 'drop' });
  }
}
