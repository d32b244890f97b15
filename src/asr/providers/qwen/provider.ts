/**
 * DashScope Qwen3-ASR-Flash-Realtime client (OpenAI-Realtime-style protocol, spec Part B)
 * behind the provider-neutral AsrProvider contract. One connection = one session:
 *
 *   upgrade `<url>?model=<model>` (Authorization: Bearer, OpenAI-Beta: realtime=v1)
 *   ← session.created (its `session.id`, sess_…, is our taskId)
 *   → session.update (pcm, sample_rate = the audio's own rate — 8000 for telephony, never
 *     upsampled by us —, language / corpus.text when set, server VAD threshold + silence)
 *   ← session.updated → connect() resolves
 *   → input_audio_buffer.append (base64 PCM16LE) …
 *   ← speech_started / text* / speech_stopped / committed / item.created / text* / completed …
 *   → session.finish  ← (pending completed) ← session.finished  → close 1000
 *
 * finish() always sends `session.finish` and waits for `session.finished` before closing: a
 * session closed without it silently drops the utterance in progress (spec B3.4).
 *
 * Times: Qwen gives no word timestamps. A final's start/end are the `audio_start_ms` /
 * `audio_end_ms` of its item's speech_started / speech_stopped, in session time (ms of audio
 * sent on this connection); see QwenItemTracker for the fallbacks. Finals carry `words: []`
 * and the raw emotion label with a null confidence; empty transcripts are still delivered
 * (the runner advances its timeline on them).
 *
 * Turn detection (option `turnDetection`):
 * - 'server_vad' (default): the server's VAD ends the turns (threshold + silence_duration_ms).
 * - 'manual': session.update sends `turn_detection: null` (spec B3.1) and the client ends the
 *   turns itself with a local energy VAD over the audio it sends (local-vad.ts: 10 ms windows,
 *   RMS > `manualVadRms`; a turn ends after `maxSentenceSilenceMs` of silence, or after
 *   `manualMaxTurnMs` ≤ 60 s of speech, spec B6). At a turn end the client sends
 *   `input_audio_buffer.commit` exactly at the window boundary where the turn ended (the chunk
 *   is split there), never for silence alone (no empty commits). The server answers
 *   committed → [item.created] → text* → completed (B5); there are no speech_started/stopped,
 *   so each item gets the local-VAD times of the turn whose commit it answers (FIFO of sent
 *   commits in `committed` order, bounded by MAX_PENDING_COMMITS). finish() first commits the
 *   turn still open, then sends session.finish. A commit refused because the server's buffer
 *   is empty (error code/message mentioning "empty", for one of our commits) loses no audio:
 *   it is counted (asrErrors code=ERR_ASR_COMMIT_REJECTED), logged and the session goes on;
 *   any other error answering a commit takes the normal error path below.
 *
 * Failures (no retries here: the AsrStreamRunner is the only retry layer):
 * - before session.updated: HTTP 401/403 → ERR_ASR_AUTH, 429 → ERR_ASR_THROTTLED, 5xx /
 *   network → ERR_ASR_CONNECT, close 1007 "Model not found" → ERR_ASR_UNSUPPORTED_MODEL, an
 *   `error` event → classifyServerError, no session.updated in time → ERR_ASR_CONNECT_TIMEOUT;
 * - after: `error` → onError (permanent for invalid_request_error, else retryable);
 *   `…transcription.failed` → onError(ERR_ASR_ITEM_FAILED, retryable), so the runner
 *   reconnects and resends the audio since the last final and the failed item is recognised
 *   again rather than lost; an unexpected close → ERR_ASR_DISCONNECTED; an unasked
 *   session.finished → ERR_ASR_TASK_FAILED.
 * - Unknown event types (OpenAI-style servers add events freely) are counted
 *   (asrErrors code=ERR_ASR_UNKNOWN_EVENT), logged by type only and ignored — never fatal.
 *   Malformed events (bad JSON, a known type with a bad shape, binary frames) fail the connect
 *   before session.updated; after it a single one is dropped and counted
 *   (code=ERR_ASR_PROTOCOL) and more than `maxProtocolErrors` fail the connection.
 *
 * Liveness: after session.updated the client pings every `pingIntervalMs`; a whole interval
 * without any pong or message declares the connection dead (ERR_ASR_DISCONNECTED).
 */
import { WebSocket, type RawData } from 'ws';
import { AppError } from '../../../core/errors.js';
import type { Emotion } from '../../../core/types.js';
import { normaliseQwenEmotion, QWEN_EMOTION_LABELS } from '../../emotion.js';
import type {
  AsrCapabilities,
  AsrConnection,
  AsrConnectionHandlers,
  AsrConnectOptions,
  AsrProvider,
} from '../../provider.js';
import { DEFAULT_MANUAL_VAD_RMS, DEFAULT_MAX_TURN_MS, LocalTurnDetector, type TurnSink } from './local-vad.js';
import {
  buildAppend,
  buildCommit,
  buildSessionFinish,
  buildSessionUpdate,
  closedBeforeStartError,
  createEventIds,
  handshakeError,
  isQwenModel,
  itemFailedError,
  MAX_CORPUS_CHARS,
  parseServerMessage,
  QWEN_MODELS,
  QWEN_SAMPLE_RATES_HZ,
  QWEN_TURN_DETECTIONS,
  QwenItemTracker,
  serverError,
  SILENCE_DURATION_MAX_MS,
  SILENCE_DURATION_MIN_MS,
  type ParseFailureReason,
  type QwenServerEvent,
  type QwenTurnDetection,
} from './messages.js';
import {
  dashScopeDeps,
  DashScopeWsConnection,
  openDashScopeSocket,
  rawDataToString,
  type DashScopeDeps,
  type DashScopeProviderOptions,
  type WsConnectionTexts,
} from '../ws-connection.js';

export const QWEN_PROVIDER_NAME = 'dashscope-qwen-asr';
export { QWEN_MODELS };

const CAPABILITIES: AsrCapabilities = {
  emotionLabels: QWEN_EMOTION_LABELS,
  emotionConfidence: false,
  wordTimestamps: false,
  sampleRatesHz: QWEN_SAMPLE_RATES_HZ,
};

/**
 * connectTimeoutMs covers upgrade → session.created → session.update → session.updated; pings
 * start after session.updated; metrics also count unknown events (ERR_ASR_UNKNOWN_EVENT).
 */
export interface QwenProviderOptions extends DashScopeProviderOptions {
  /** DASHSCOPE_REALTIME_URL, without `?model=` (added per connection). */
  readonly url: string;
  /**
   * Server VAD threshold, [-1, 1]; lower is more sensitive. Default 0.0, the value the docs
   * recommend (spec B3.1; the server's own default is 0.2): on a phone line a missed quiet
   * word costs a lost sentence, while noise taken for speech costs at most an empty item.
   */
  readonly vadThreshold?: number | undefined;
  /**
   * Who ends the turns: 'server_vad' (default; the server's VAD) or 'manual' (session.update
   * sends `turn_detection: null`; a local energy VAD decides the turns and the client commits
   * each one — see the file header).
   */
  readonly turnDetection?: QwenTurnDetection | undefined;
  /** Manual mode: RMS on the PCM16 scale above which a 10 ms window is speech. Default 300. */
  readonly manualVadRms?: number | undefined;
  /** Manual mode: longest turn before a forced commit, ms, within [1000, 60000]. Default 60 000 (spec B6). */
  readonly manualMaxTurnMs?: number | undefined;
}

export const DEFAULT_VAD_THRESHOLD = 0.0;
/** Distinct unknown event types logged at info level per connection (the rest at debug). */
const MAX_UNKNOWN_TYPES_LOGGED = 16;
/** Manual mode: commits sent and not yet answered by `committed`, kept for their times. */
export const MAX_PENDING_COMMITS = 64;
const MANUAL_MAX_TURN_MIN_MS = 1000;

export function createQwenProvider(opts: QwenProviderOptions): AsrProvider {
  const vadThreshold = opts.vadThreshold ?? DEFAULT_VAD_THRESHOLD;
  if (!Number.isFinite(vadThreshold) || vadThreshold < -1 || vadThreshold > 1) {
    throw new AppError('ERR_ASR_BAD_REQUEST', 'qwen VAD threshold must be within [-1, 1]', {
      category: 'invalid_request',
      retryable: false,
      details: { vadThreshold },
    });
  }
  const turnDetection = opts.turnDetection ?? 'server_vad';
  if (!QWEN_TURN_DETECTIONS.includes(turnDetection)) {
    throw badRequest("qwen turn detection must be 'server_vad' or 'manual'", { turnDetection });
  }
  const manualVadRms = opts.manualVadRms ?? DEFAULT_MANUAL_VAD_RMS;
  if (!Number.isFinite(manualVadRms) || manualVadRms < 0 || manualVadRms > 32767) {
    throw badRequest('qwen manual VAD RMS must be within [0, 32767]', { manualVadRms });
  }
  const manualMaxTurnMs = opts.manualMaxTurnMs ?? DEFAULT_MAX_TURN_MS;
  if (!Number.isInteger(manualMaxTurnMs) || manualMaxTurnMs < MANUAL_MAX_TURN_MIN_MS || manualMaxTurnMs > DEFAULT_MAX_TURN_MS) {
    throw badRequest('qwen manual max turn must be an integer within [1000, 60000] ms', { manualMaxTurnMs });
  }
  const deps: ConnectionDeps = {
    ...dashScopeDeps(opts),
    vadThreshold,
    turnDetection,
    manualVadRms,
    manualMaxTurnMs,
  };
  return {
    name: QWEN_PROVIDER_NAME,
    models: QWEN_MODELS,
    capabilities(model: string): AsrCapabilities {
      if (!isQwenModel(model)) throw unsupportedModel(model);
      return CAPABILITIES;
    },
    connect(options: AsrConnectOptions, handlers: AsrConnectionHandlers): Promise<AsrConnection> {
      return openConnection(deps, options, handlers);
    },
    normaliseEmotion(model: string, raw: string): Emotion {
      return normaliseQwenEmotion(model, raw);
    },
  };
}

function unsupportedModel(model: string): AppError {
  return new AppError('ERR_ASR_UNSUPPORTED_MODEL', 'model not supported by the qwen provider', {
    category: 'invalid_request',
    retryable: false,
    details: { model },
  });
}

function badRequest(message: string, details: Record<string, unknown>): AppError {
  return new AppError('ERR_ASR_BAD_REQUEST', message, { category: 'invalid_request', retryable: false, details });
}

interface ConnectionDeps extends DashScopeDeps {
  readonly vadThreshold: number;
  readonly turnDetection: QwenTurnDetection;
  readonly manualVadRms: number;
  readonly manualMaxTurnMs: number;
}

/** Manual mode: a commit sent, waiting for its `committed`. */
interface PendingCommit {
  readonly eventId: string;
  readonly startMs: number;
  readonly endMs: number;
}

/** `<url>?model=<model>` (or `&model=` when the URL already has a query). */
export function sessionUrl(url: string, model: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}model=${encodeURIComponent(model)}`;
}

function openConnection(
  deps: ConnectionDeps,
  options: AsrConnectOptions,
  handlers: AsrConnectionHandlers,
): Promise<AsrConnection> {
  if (!isQwenModel(options.model)) return Promise.reject(unsupportedModel(options.model));
  if (!(QWEN_SAMPLE_RATES_HZ as readonly number[]).includes(options.sampleRateHz)) {
    return Promise.reject(
      badRequest('qwen3-asr-flash-realtime accepts 8000 or 16000 Hz only', {
        model: options.model,
        sampleRateHz: options.sampleRateHz,
      }),
    );
  }
  const silence = options.maxSentenceSilenceMs;
  if (!Number.isInteger(silence) || silence < SILENCE_DURATION_MIN_MS || silence > SILENCE_DURATION_MAX_MS) {
    return Promise.reject(
      badRequest('qwen silence_duration_ms must be an integer within [200, 6000]', { maxSentenceSilenceMs: silence }),
    );
  }
  return openDashScopeSocket(
    { ...deps, url: sessionUrl(deps.url, options.model), extraHeaders: { 'OpenAI-Beta': 'realtime=v1' } },
    (ws, resolve, reject) => {
      // the constructor wires every listener; it settles the promise exactly once
      new QwenConnection(deps, ws, options, handlers, resolve, reject);
    },
  );
}

/**
 * Qwen's own starting states, besides the shared ones: 'connecting' (socket not open yet),
 * 'running', 'finishing' (session.finish sent, waiting for session.finished), 'finished',
 * 'failed', 'closed'.
 */
type StartingState =
  | 'awaiting-created' // open, waiting for session.created
  | 'updating'; // session.update sent, waiting for session.updated

const TEXTS: WsConnectionTexts = {
  connectTimeout: 'recogniser did not start the session in time',
  started: 'recogniser session started',
  failed: 'recogniser session ended with an error',
  finishTimeoutLog: 'recogniser did not finish the session in time',
  finishTimeout: 'recogniser did not confirm session.finished in time',
};

class QwenConnection extends DashScopeWsConnection<ConnectionDeps, StartingState> {
  private sessionId = '';
  private readonly nextEventId = createEventIds();
  private readonly tracker = new QwenItemTracker();
  private readonly bytesPerMs: number;
  private sentBytes = 0;
  private readonly unknownTypesLogged = new Set<string>();
  /** Manual mode only (null in server VAD mode). */
  private readonly turns: LocalTurnDetector | null;
  private readonly turnSink: TurnSink;
  private readonly pendingCommits: PendingCommit[] = [];
  /** The chunk being pushed through the local VAD, and how many of its bytes were sent. */
  private chunk: Buffer | null = null;
  private chunkSent = 0;
  /** Whether this server answers commits with `committed` (else items bind on first sight). */
  private sawCommitted = false;

  constructor(
    deps: ConnectionDeps,
    ws: WebSocket,
    options: AsrConnectOptions,
    handlers: AsrConnectionHandlers,
    resolveStart: (c: AsrConnection) => void,
    rejectStart: (e: AppError) => void,
  ) {
    const log = deps.logger.child({ model: options.model, ...(options.logContext ?? {}) });
    super(deps, ws, options, handlers, resolveStart, rejectStart, log, TEXTS);
    this.bytesPerMs = (options.sampleRateHz / 1000) * 2;
    this.turns =
      deps.turnDetection === 'manual'
        ? new LocalTurnDetector({
            sampleRateHz: options.sampleRateHz,
            thresholdRms: deps.manualVadRms,
            maxSilenceMs: options.maxSentenceSilenceMs,
            maxTurnMs: deps.manualMaxTurnMs,
          })
        : null;
    this.turnSink = { onTurnEnd: (startMs, endMs, byteOffset) => this.onLocalTurnEnd(startMs, endMs, byteOffset) };
  }

  /** The server's session id (sess_…), known from session.created on. */
  get taskId(): string {
    return this.sessionId;
  }

  /** Audio sent on this connection so far, ms (session time). */
  private get sentMs(): number {
    return this.sentBytes / this.bytesPerMs;
  }

  sendAudio(pcm: Buffer): void {
    if (this.state !== 'running' || this.ws.readyState !== WebSocket.OPEN || pcm.length === 0) return;
    const turns = this.turns;
    if (turns === null) {
      this.append(pcm);
      return;
    }
    // manual mode: the VAD may end turns inside this chunk; onLocalTurnEnd sends the bytes
    // before each turn end, then its commit; the rest goes out here
    this.chunk = pcm;
    this.chunkSent = 0;
    turns.push(pcm, this.turnSink);
    if (this.chunkSent < pcm.length) this.append(this.chunkSent === 0 ? pcm : pcm.subarray(this.chunkSent));
    this.chunk = null;
  }

  private append(pcm: Buffer): void {
    this.sentBytes += pcm.length;
    this.ws.send(buildAppend(this.nextEventId(), pcm));
  }

  private onLocalTurnEnd(startMs: number, endMs: number, byteOffset: number): void {
    const chunk = this.chunk;
    if (chunk !== null && byteOffset > this.chunkSent) {
      this.append(chunk.subarray(this.chunkSent, byteOffset));
      this.chunkSent = byteOffset;
    }
    this.commit(startMs, endMs);
  }

  /** Manual mode: commits the speech appended since the last commit (one turn). */
  private commit(startMs: number, endMs: number): void {
    if (this.pendingCommits.length >= MAX_PENDING_COMMITS) {
      // a server that never answers commits: its items fall back to QwenItemTracker's times
      this.pendingCommits.shift();
      this.deps.metrics?.asrErrors.inc({ model: this.model, code: 'ERR_ASR_COMMIT_UNANSWERED' });
      this.log.warn({ code: 'ERR_ASR_COMMIT_UNANSWERED', pending: MAX_PENDING_COMMITS }, 'recogniser left too many commits unanswered');
    }
    const eventId = this.nextEventId();
    this.pendingCommits.push({ eventId, startMs, endMs });
    this.ws.send(buildCommit(eventId));
  }

  /** Manual mode: gives an item the local-VAD times of the oldest unanswered commit. */
  private bindCommit(itemId: string | null): void {
    const turn = this.pendingCommits.shift();
    if (turn === undefined) return; // the server committed on its own (e.g. at session.finish)
    this.tracker.speechStarted(itemId, turn.startMs);
    this.tracker.speechStopped(itemId, turn.endMs);
  }

  /** Manual mode without `committed` events: an item seen for the first time takes the next turn. */
  private bindOnSight(itemId: string | null): void {
    if (this.turns === null || this.sawCommitted || itemId === null || this.tracker.has(itemId)) return;
    this.bindCommit(itemId);
  }

  /**
   * Manual mode: an `error` that refuses one of our commits because the server's buffer is
   * empty (the only documented commit error, spec B3.3) loses no audio — counted, logged, and
   * the session goes on. Returns false for every other error.
   */
  private emptyCommitRefused(ev: Extract<QwenServerEvent, { type: 'error' }>): boolean {
    if (this.turns === null) return false;
    const code = ev.error.code ?? '';
    if (!/empty/i.test(code) && !/empty/i.test(ev.error.message)) return false;
    const id = ev.clientEventId;
    let index = id === null ? -1 : this.pendingCommits.findIndex((c) => c.eventId === id);
    if (index < 0) {
      if (!/commit/i.test(code) && !/commit/i.test(ev.error.message)) return false;
      if (this.pendingCommits.length > 0) index = 0; // answers come in commit order
    }
    if (index >= 0) this.pendingCommits.splice(index, 1);
    this.deps.metrics?.asrErrors.inc({ model: this.model, code: 'ERR_ASR_COMMIT_REJECTED' });
    this.log.warn({ code: 'ERR_ASR_COMMIT_REJECTED', providerCode: code, taskId: this.sessionId }, 'recogniser refused an empty commit');
    return true;
  }

  protected sendFinish(): void {
    // manual mode: the turn still open is committed first (its speech would be lost otherwise)
    const last = this.turns?.flush() ?? null;
    if (last !== null) this.commit(last.startMs, last.endMs);
    this.ws.send(JSON.stringify(buildSessionFinish(this.nextEventId())));
  }

  protected handshakeError(status: number): AppError {
    return handshakeError(status);
  }

  protected closedBeforeStart(code: number, reason: string): AppError {
    return closedBeforeStartError(code, reason);
  }

  protected onOpen(): void {
    if (this.state !== 'connecting') return;
    this.state = 'awaiting-created';
  }

  private sendSessionUpdate(): void {
    const corpus = this.options.corpusText;
    if (corpus !== undefined && corpus.length > MAX_CORPUS_CHARS) {
      this.log.warn({ code: 'ERR_ASR_CORPUS_TRUNCATED', chars: corpus.length, maxChars: MAX_CORPUS_CHARS }, 'qwen corpus text truncated');
    }
    const update = buildSessionUpdate(this.nextEventId(), {
      sampleRateHz: this.options.sampleRateHz,
      language: this.options.language,
      corpusText: corpus,
      vadThreshold: this.deps.vadThreshold,
      silenceDurationMs: this.options.maxSentenceSilenceMs,
      turnDetection: this.deps.turnDetection,
    });
    this.ws.send(JSON.stringify(update));
  }

  protected onFrame(data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.protocolError('binary-frame', null, []);
      return;
    }
    const parsed = parseServerMessage(rawDataToString(data));
    if (!parsed.ok) {
      if (parsed.reason === 'unknown-event') this.unknownEvent(parsed.eventType ?? '');
      else this.protocolError(parsed.reason, parsed.eventType, parsed.paths);
      return;
    }
    if (this.isStarting()) this.onStartingEvent(parsed.event);
    else this.onSessionEvent(parsed.event);
  }

  private onStartingEvent(ev: QwenServerEvent): void {
    switch (ev.type) {
      case 'session.created':
        if (this.state !== 'awaiting-created') return; // a repeat: ignore
        this.sessionId = ev.sessionId;
        this.log = this.log.child({ taskId: ev.sessionId });
        this.state = 'updating';
        this.sendSessionUpdate();
        return;
      case 'session.updated':
        // one that arrives before our session.update was sent is not our answer
        if (this.state !== 'updating') return;
        this.started();
        return;
      case 'error':
        this.failStart(serverError(ev.error, this.sessionId));
        return;
      case 'session.finished':
        this.failStart(
          new AppError('ERR_ASR_TASK_FAILED', 'recogniser ended the session before it started', {
            category: 'server',
            retryable: true,
            details: { taskId: this.sessionId, providerEvent: ev.type },
          }),
        );
        return;
      default:
        // VAD/transcription events cannot concern us before any audio: ignore
        this.log.debug({ eventType: ev.type }, 'recogniser event before session.updated ignored');
        return;
    }
  }

  private onSessionEvent(ev: QwenServerEvent): void {
    switch (ev.type) {
      case 'session.created':
        this.protocolError('unexpected-event', ev.type, []);
        return;
      case 'session.updated':
      case 'conversation.item.created':
        return;
      case 'input_audio_buffer.committed':
        if (this.turns !== null) {
          this.sawCommitted = true;
          this.bindCommit(ev.itemId);
        }
        return;
      case 'input_audio_buffer.speech_started':
        this.tracker.speechStarted(ev.itemId, ev.audioStartMs);
        return;
      case 'input_audio_buffer.speech_stopped':
        this.tracker.speechStopped(ev.itemId, ev.audioEndMs);
        return;
      case 'conversation.item.input_audio_transcription.text':
        this.bindOnSight(ev.itemId);
        this.deliver(this.tracker.interim(ev.itemId, ev.text, ev.stash));
        return;
      case 'conversation.item.input_audio_transcription.completed':
        this.bindOnSight(ev.itemId);
        this.deliver(this.tracker.completed(ev.itemId, ev.transcript, ev.emotion, this.sentMs));
        return;
      case 'conversation.item.input_audio_transcription.failed':
        this.tracker.failed(ev.itemId);
        this.fail(itemFailedError(ev.error, ev.itemId, this.sessionId));
        return;
      case 'error':
        if (this.emptyCommitRefused(ev)) return;
        this.fail(serverError(ev.error, this.sessionId));
        return;
      case 'session.finished':
        this.serverFinished(
          () =>
            new AppError('ERR_ASR_TASK_FAILED', 'recogniser ended the session unasked', {
              category: 'server',
              retryable: true,
              details: { taskId: this.sessionId, providerEvent: ev.type },
            }),
        );
        return;
    }
  }

  private unknownEvent(eventType: string): void {
    this.deps.metrics?.asrErrors.inc({ model: this.model, code: 'ERR_ASR_UNKNOWN_EVENT' });
    if (!this.unknownTypesLogged.has(eventType) && this.unknownTypesLogged.size < MAX_UNKNOWN_TYPES_LOGGED) {
      this.unknownTypesLogged.add(eventType);
      this.log.info({ code: 'ERR_ASR_UNKNOWN_EVENT', eventType }, 'unknown recogniser event ignored');
    } else {
      this.log.debug({ code: 'ERR_ASR_UNKNOWN_EVENT', eventType }, 'unknown recogniser event ignored');
    }
  }

  private protocolError(
    reason: ParseFailureReason | 'unexpected-event',
    eventType: string | null,
    paths: readonly string[],
  ): void {
    this.dropInvalidMessage(reason, { eventType }, paths);
  }
}
