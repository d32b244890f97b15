/**
 * Paraformer duplex "inference" protocol, server side, for one WebSocket connection
 * (specs/dashscope-protocol.md Part A). Sans-I/O: the socket adapter (server.ts) feeds it text
 * messages, binary audio and timer ticks together with the current monotonic time, and carries
 * out the actions it returns (send an event, close, drop the TCP connection). Timers are
 * expressed as one deadline (`nextDeadline()`); the adapter calls `tick()` when it passes.
 *
 * Per connection: IDLE ──run-task──► STARTING ──task-started──► RUNNING ──finish-task──► IDLE …
 * and CLOSED after any task-failed, an envelope error in close-1007 mode, the idle timeout or an
 * injected drop.
 *
 * Sentences (VAD mode, semantic_punctuation_enabled=false): a sentence starts at the first voiced
 * 10 ms window and ends when the silence reaches max_sentence_silence; begin/end/word times are
 * task time (ms from the task's first audio byte). Text comes from the scripted recogniser
 * (script.ts). A sentence whose audio stops inside its script line (a pause within one spoken
 * line, e.g. with max_sentence_silence 200) is *held* rather than finalised: when speech resumes
 * with the contiguous audio of the same role, the segments are merged into one sentence; when
 * the next speech is other audio, or the silence reaches knobs.mergeHoldMs, the held sentence is
 * finalised with its own end time. With the fixture and max_sentence_silence 800 nothing is ever
 * held (every line is one VAD segment). Semantic mode (semantic_punctuation_enabled=true): VAD
 * segments end after 400 ms of silence; a segment that completes its script line is final, any
 * other is held up to 2 s of silence ("semantically complete, or about 2 s of silence").
 */
import type { Logger } from '../observability/logger.js';
import type { EmulatorKnobs, EmulatorStats, FaultState } from './knobs.js';
import {
  PROBE_BYTES,
  ScriptedRecognizer,
  findWavChunks,
  type AudioLocation,
  type CallScript,
  type SentenceTranscript,
  type TextUnit,
} from './script.js';
import { appendToTail, EnergyVad, SEGMENT_END, SEGMENT_START, SpeechSegmenter, type VadWindowSink } from './vad.js';

// ---------------------------------------------------------------------------------------------
// Models and wire types

export interface ParaformerModelSpec {
  /** Accepted sample rates; null = any. */
  readonly sampleRatesHz: readonly number[] | null;
  /** Emits emo_tag / emo_confidence on finals (with semantic punctuation off). */
  readonly emotion: boolean;
}

export const PARAFORMER_MODELS: Readonly<Record<string, ParaformerModelSpec>> = Object.freeze({
  'paraformer-realtime-8k-v2': { sampleRatesHz: [8000], emotion: true },
  'paraformer-realtime-v2': { sampleRatesHz: null, emotion: false },
  'paraformer-realtime-v1': { sampleRatesHz: [16000], emotion: false },
  'paraformer-realtime-8k-v1': { sampleRatesHz: [8000], emotion: false },
});

/** `format` values the service documents; the emulator decodes pcm and wav (PCM) only. */
const DOCUMENTED_FORMATS = new Set(['pcm', 'wav', 'mp3', 'opus', 'speex', 'aac', 'amr']);
const DECODED_FORMATS = new Set(['pcm', 'wav']);

export type ServerEventName = 'task-started' | 'result-generated' | 'task-finished' | 'task-failed';

export interface ServerEvent {
  readonly header: {
    readonly task_id: string;
    readonly event: ServerEventName;
    readonly error_code?: string;
    readonly error_message?: string;
    readonly attributes: Record<string, never>;
  };
  readonly payload: Record<string, unknown>;
}

export interface WireWord {
  readonly begin_time: number;
  readonly end_time: number;
  readonly text: string;
  readonly punctuation: string;
}

export interface WireSentence {
  readonly sentence_id: number;
  readonly begin_time: number;
  readonly end_time: number | null;
  readonly text: string;
  readonly heartbeat: boolean;
  readonly sentence_end: boolean;
  readonly sentence_begin?: boolean;
  readonly words: readonly WireWord[];
  readonly emo_tag?: string;
  readonly emo_confidence?: number;
}

export type ConnectionAction =
  | { readonly type: 'send'; readonly event: ServerEvent; readonly delayMs: number }
  | { readonly type: 'close'; readonly code: number; readonly reason: string }
  | { readonly type: 'drop' };

export const ERROR_MESSAGES = Object.freeze({
  noData: 'request timeout after 23 seconds.',
  silence: 'Response timeout!',
  throttled: 'Requests rate limit exceeded, please try again later.',
});

// ---------------------------------------------------------------------------------------------
// Client message validation

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface ClientCommand {
  readonly action: string;
  readonly taskId: string;
  readonly payload: Record<string, unknown>;
}

export type ParsedClientMessage =
  | { readonly ok: true; readonly command: ClientCommand }
  | { readonly ok: false; readonly problem: string; readonly taskId: string | null };

/** Validates the `{header, payload}` envelope of a client text frame (A3, A10.2). */
export function parseClientMessage(text: string): ParsedClientMessage {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'message is not JSON', taskId: null };
  }
  if (!isRecord(msg)) return { ok: false, problem: 'message is not a JSON object', taskId: null };
  const header = msg['header'];
  if (!isRecord(header)) return { ok: false, problem: 'header is missing', taskId: null };
  const rawTaskId = header['task_id'];
  const taskId = typeof rawTaskId === 'string' && rawTaskId !== '' && rawTaskId.length <= 128 ? rawTaskId : null;
  if (taskId === null) return { ok: false, problem: 'header.task_id is missing', taskId: null };
  const action = header['action'];
  if (typeof action !== 'string' || action === '') return { ok: false, problem: 'header.action is missing', taskId };
  if (header['streaming'] !== 'duplex') return { ok: false, problem: 'header.streaming must be "duplex"', taskId };
  const payload = msg['payload'];
  if (!isRecord(payload)) return { ok: false, problem: 'payload is missing', taskId };
  if (!isRecord(payload['input'])) return { ok: false, problem: 'payload.input must be an object', taskId };
  return { ok: true, command: { action, taskId, payload } };
}

export interface TaskParams {
  readonly model: string;
  readonly sampleRateHz: number;
  readonly format: string;
  readonly maxSentenceSilenceMs: number;
  readonly heartbeat: boolean;
  readonly semanticPunctuation: boolean;
  /** Finals carry emo_tag / emo_confidence. */
  readonly emotion: boolean;
}

export type RunTaskValidation =
  | { readonly ok: true; readonly params: TaskParams }
  | { readonly ok: false; readonly code: string; readonly message: string };

const DEFAULT_MAX_SENTENCE_SILENCE_MS = 800;

/** Validates a run-task payload (A4.1); unknown parameters are ignored. */
export function validateRunTask(payload: Record<string, unknown>): RunTaskValidation {
  const bad = (message: string): RunTaskValidation => ({ ok: false, code: 'InvalidParameter', message });
  if (payload['task_group'] !== 'audio') return bad('Invalid payload data: payload.task_group must be "audio".');
  if (payload['task'] !== 'asr') return bad('Invalid payload data: payload.task must be "asr".');
  if (payload['function'] !== 'recognition') return bad('Invalid payload data: payload.function must be "recognition".');
  const model = payload['model'];
  if (typeof model !== 'string' || model === '') {
    return bad("Missing required parameter 'payload.model'! Please follow the protocol!");
  }
  const spec = Object.hasOwn(PARAFORMER_MODELS, model) ? PARAFORMER_MODELS[model] : undefined;
  if (spec === undefined) return { ok: false, code: 'ModelNotFound', message: 'Model not found!' };
  const p = payload['parameters'];
  if (!isRecord(p)) return bad("Missing required parameter 'payload.parameters'! Please follow the protocol!");
  const format = p['format'];
  if (typeof format !== 'string' || !DOCUMENTED_FORMATS.has(format)) {
    return bad('Invalid parameter: parameters.format must be one of pcm, wav, mp3, opus, speex, aac, amr.');
  }
  if (!DECODED_FORMATS.has(format)) {
    return { ok: false, code: 'UNSUPPORTED_FORMAT', message: 'The DashScope emulator decodes only pcm and wav audio.' };
  }
  const rate = p['sample_rate'];
  if (typeof rate !== 'number' || !Number.isInteger(rate) || rate < 1000 || rate > 192_000) {
    return bad('Invalid parameter: parameters.sample_rate must be an integer sample rate in Hz.');
  }
  if (spec.sampleRatesHz !== null && !spec.sampleRatesHz.includes(rate)) {
    return bad(`Invalid parameter: sample_rate ${rate} is not supported by model ${model}.`);
  }
  let maxSilence = DEFAULT_MAX_SENTENCE_SILENCE_MS;
  const ms = p['max_sentence_silence'];
  if (ms !== undefined) {
    if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 200 || ms > 6000) {
      return bad('Invalid parameter: parameters.max_sentence_silence must be an integer in [200, 6000].');
    }
    maxSilence = ms;
  }
  const heartbeat = p['heartbeat'];
  if (heartbeat !== undefined && typeof heartbeat !== 'boolean') {
    return bad('Invalid parameter: parameters.heartbeat must be a boolean.');
  }
  const semantic = p['semantic_punctuation_enabled'];
  if (semantic !== undefined && typeof semantic !== 'boolean') {
    return bad('Invalid parameter: parameters.semantic_punctuation_enabled must be a boolean.');
  }
  return {
    ok: true,
    params: {
      model,
      sampleRateHz: rate,
      format,
      maxSentenceSilenceMs: maxSilence,
      heartbeat: heartbeat === true,
      semanticPunctuation: semantic === true,
      emotion: spec.emotion && semantic !== true,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Rate limiter

/** Sliding one-second window of run-tasks per key (API key + model). */
export class RunTaskRateLimiter {
  private readonly windows = new Map<string, number[]>();

  /** `limit()` is read on every call (live knob); 0 means no limit. */
  constructor(
    private readonly limit: () => number,
    private readonly windowMs = 1000,
  ) {}

  admit(key: string, nowMs: number): boolean {
    const limit = this.limit();
    if (limit <= 0) return true;
    let list = this.windows.get(key);
    if (list === undefined) {
      list = [];
      this.windows.set(key, list);
    }
    while (list.length > 0 && (list[0] as number) <= nowMs - this.windowMs) list.shift();
    if (list.length >= limit) return false;
    list.push(nowMs);
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Connection state machine

export interface ParaformerDeps {
  /** The emulator's live knobs (read at use time). */
  readonly knobs: EmulatorKnobs;
  readonly stats: EmulatorStats;
  readonly faults: FaultState;
  readonly limiter: RunTaskRateLimiter;
  readonly script: CallScript | null;
  readonly logger: Logger;
}

export interface ConnectionInfo {
  /** The Bearer key of the upgrade (rate-limit bucket; never logged). */
  readonly apiKey: string;
  /** For logs. */
  readonly connectionId: number;
}

export type ConnectionState = 'idle' | 'starting' | 'running' | 'closed';

/** Speech in speech for this long (audio ms) triggers the dropInSentence fault. */
export const DROP_IN_SENTENCE_AFTER_MS = 300;
const SEMANTIC_SEGMENT_SILENCE_MS = 400;
const SEMANTIC_HOLD_MS = 2000;
/** How far (ms) a resumed segment may sit from where the held one would continue, to merge. */
const MERGE_CONTIGUITY_MS = 40;

interface Sentence {
  readonly id: number;
  readonly beginMs: number;
  lastVoicedEndMs: number;
  location: AudioLocation | null;
  /** Waiting for the probe to locate the sentence. */
  locating: boolean;
  /** Ended by the VAD inside its script line: waiting to merge or to be finalised. */
  held: boolean;
  /** Speech resumed while held (task ms); merge decision pending on the probe. */
  resumeAtMs: number | null;
  lastInterimAtMs: number;
}

class Task {
  readonly vad: EnergyVad;
  readonly seg: SpeechSegmenter;
  readonly recognizer: ScriptedRecognizer;
  readonly bytesPerMs: number;
  readonly holdLimitMs: number;
  /** Audio bytes fed to the VAD (task byte position of the next chunk). */
  audioBytes = 0;
  /** End of the latest completed VAD window, ms. */
  heardMs = 0;
  early: Buffer[] = [];
  earlyBytes = 0;
  finishRequested = false;
  startAtMs = 0;
  nextHeartbeatAtMs = 0;
  wavChecked = false;
  sentence: Sentence | null = null;
  sentenceSeq = 0;
  /** dropInSentence was evaluated for the current segment. */
  dropChecked = false;
  // probe: the first PROBE_BYTES of a sentence, searched for in the fixture
  readonly probe: Buffer | null;
  probeActive = false;
  probeResume = false;
  probeFill = 0;
  probeStartByte = 0;
  probeStartMs = 0;
  // bytes preceding the current chunk (a window can straddle chunks)
  readonly tail: Buffer | null;
  tailLen = 0;
  chunk: Buffer | null = null;
  chunkStartByte = 0;

  constructor(
    readonly id: string,
    readonly params: TaskParams,
    knobs: EmulatorKnobs,
    script: CallScript | null,
  ) {
    this.vad = new EnergyVad({ sampleRateHz: params.sampleRateHz, thresholdRms: knobs.vadThresholdRms });
    const maxSilence = params.semanticPunctuation ? SEMANTIC_SEGMENT_SILENCE_MS : params.maxSentenceSilenceMs;
    this.seg = new SpeechSegmenter(this.vad.windowMs, maxSilence);
    this.holdLimitMs = params.semanticPunctuation ? SEMANTIC_HOLD_MS : knobs.mergeHoldMs;
    this.recognizer = new ScriptedRecognizer(script, params.sampleRateHz, knobs.scriptToleranceMs);
    this.bytesPerMs = (params.sampleRateHz * 2) / 1000;
    this.probe = this.recognizer.probeBytes > 0 ? Buffer.alloc(PROBE_BYTES) : null;
    this.tail = this.probe ? Buffer.alloc(this.vad.windowSamples * 2 + 2) : null;
  }
}

function spreadWords(units: readonly TextUnit[], beginMs: number, endMs: number): WireWord[] {
  const k = units.length;
  const dur = Math.max(0, endMs - beginMs);
  const words: WireWord[] = new Array<WireWord>(k);
  for (let m = 0; m < k; m++) {
    const u = units[m] as TextUnit;
    words[m] = {
      begin_time: beginMs + Math.floor((m * dur) / k),
      end_time: beginMs + Math.floor(((m + 1) * dur) / k),
      text: u.text,
      punctuation: u.punctuation,
    };
  }
  return words;
}

const NO_ATTRIBUTES: Record<string, never> = {};

function event(taskId: string, name: ServerEventName, payload: Record<string, unknown>): ServerEvent {
  return { header: { task_id: taskId, event: name, attributes: NO_ATTRIBUTES }, payload };
}

export class ParaformerConnection implements VadWindowSink {
  private stateValue: ConnectionState = 'idle';
  private task: Task | null = null;
  private out: ConnectionAction[] = [];
  private readonly usedTaskIds = new Set<string>();
  private lastClientAtMs: number;
  private idleSinceMs: number;
  private binaryFrames = 0;
  /** Speech segments heard on this connection (all tasks), for dropInSentence. */
  private segments = 0;

  constructor(
    private readonly deps: ParaformerDeps,
    private readonly info: ConnectionInfo,
    nowMs: number,
  ) {
    this.lastClientAtMs = nowMs;
    this.idleSinceMs = nowMs;
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get taskId(): string | null {
    return this.task?.id ?? null;
  }

  // ---- inputs ---------------------------------------------------------------------------

  handleText(text: string, nowMs: number): ConnectionAction[] {
    this.out = [];
    if (this.stateValue === 'closed') return this.out;
    this.lastClientAtMs = nowMs;
    const parsed = parseClientMessage(text);
    if (!parsed.ok) {
      this.envelopeError(parsed.taskId ?? this.task?.id ?? '', parsed.problem);
      return this.out;
    }
    const { action, taskId, payload } = parsed.command;
    switch (action) {
      case 'run-task':
        this.onRunTask(taskId, payload, nowMs);
        break;
      case 'finish-task':
        this.onFinishTask(taskId, nowMs);
        break;
      case 'continue-task':
        this.fail(taskId, 'InvalidParameter', 'continue-task is not supported by paraformer models.');
        break;
      default:
        this.fail(taskId, 'InvalidParameter', 'Invalid payload data: unknown header.action.');
    }
    return this.out;
  }

  handleAudio(chunk: Buffer, nowMs: number): ConnectionAction[] {
    this.out = [];
    if (this.stateValue === 'closed') return this.out;
    this.lastClientAtMs = nowMs;
    const { stats, faults } = this.deps;
    stats.audioFramesReceived++;
    stats.audioBytesReceived += chunk.length;
    this.binaryFrames++;
    const dropAfter = faults.dropAfterFrames;
    if (dropAfter !== null && this.binaryFrames >= dropAfter && faults.tryConsumeDrop()) {
      this.drop();
      return this.out;
    }
    const task = this.task;
    if (this.stateValue === 'starting' && task) {
      const room = this.deps.knobs.maxEarlyAudioBytes - task.earlyBytes;
      if (chunk.length <= room) {
        task.early.push(chunk);
        task.earlyBytes += chunk.length;
      } else {
        if (room > 0) {
          task.early.push(chunk.subarray(0, room));
          task.earlyBytes += room;
        }
        stats.earlyAudioBytesDropped += chunk.length - Math.max(0, room);
      }
      return this.out;
    }
    if (this.stateValue !== 'running' || task === null) {
      stats.audioFramesIgnored++;
      return this.out;
    }
    this.feedAudio(task, chunk);
    if (this.task === task && task.sentence !== null) {
      task.nextHeartbeatAtMs = nowMs + this.deps.knobs.heartbeatIntervalMs;
    }
    return this.out;
  }

  /** Runs the timers whose deadline passed. */
  tick(nowMs: number): ConnectionAction[] {
    this.out = [];
    const { knobs, stats } = this.deps;
    const task = this.task;
    if (this.stateValue === 'starting' && task && nowMs >= task.startAtMs) this.startTask(task, nowMs);
    if ((this.stateValue === 'starting' || this.stateValue === 'running') && this.task) {
      if (nowMs >= this.lastClientAtMs + knobs.noDataTimeoutMs) {
        this.fail(this.task.id, 'CLIENT_ERROR', ERROR_MESSAGES.noData);
        return this.out;
      }
    }
    const t = this.task;
    if (this.stateValue === 'running' && t && t.params.heartbeat && nowMs >= t.nextHeartbeatAtMs) {
      if (t.sentence === null) {
        this.send(
          t.id,
          'result-generated',
          {
            output: {
              sentence: {
                sentence_id: 0,
                begin_time: 0,
                end_time: null,
                text: '',
                heartbeat: true,
                sentence_end: false,
                words: [],
              } satisfies WireSentence,
            },
            usage: null,
          },
          knobs.resultDelayMs,
        );
        stats.heartbeatsSent++;
      }
      t.nextHeartbeatAtMs = nowMs + knobs.heartbeatIntervalMs;
    }
    if (this.stateValue === 'idle' && nowMs >= this.idleSinceMs + knobs.idleTimeoutMs) {
      this.deps.logger.debug({ connectionId: this.info.connectionId }, 'emulator closes an idle connection');
      this.stateValue = 'closed';
      this.out.push({ type: 'close', code: 1000, reason: 'idle timeout' });
    }
    return this.out;
  }

  /** Earliest monotonic time at which tick() has something to do, or null. */
  nextDeadline(): number | null {
    const { knobs } = this.deps;
    const task = this.task;
    switch (this.stateValue) {
      case 'idle':
        return this.idleSinceMs + knobs.idleTimeoutMs;
      case 'starting':
        return Math.min(task?.startAtMs ?? Infinity, this.lastClientAtMs + knobs.noDataTimeoutMs);
      case 'running': {
        let d = this.lastClientAtMs + knobs.noDataTimeoutMs;
        if (task?.params.heartbeat) d = Math.min(d, task.nextHeartbeatAtMs);
        return d;
      }
      default:
        return null;
    }
  }

  /** The peer closed or the socket failed. */
  handleClose(): void {
    if (this.stateValue === 'closed') return;
    if (this.task) {
      this.deps.logger.debug(
        { connectionId: this.info.connectionId, taskId: this.task.id },
        'emulator: client disconnected before task finished',
      );
    }
    this.stateValue = 'closed';
    this.task = null;
  }

  // ---- commands ---------------------------------------------------------------------------

  private onRunTask(taskId: string, payload: Record<string, unknown>, nowMs: number): void {
    const { knobs, stats, faults, limiter, logger } = this.deps;
    if (this.stateValue !== 'idle') {
      this.fail(taskId, 'InvalidParameter', 'A task is already running on this connection.');
      return;
    }
    if (this.usedTaskIds.has(taskId)) {
      this.fail(taskId, 'InvalidParameter', 'Invalid task_id: every task on a connection needs a new task_id.');
      return;
    }
    this.usedTaskIds.add(taskId);
    const v = validateRunTask(payload);
    if (!v.ok) {
      this.fail(taskId, v.code, v.message);
      return;
    }
    if (!limiter.admit(`${this.info.apiKey}\n${v.params.model}`, nowMs)) {
      stats.throttled++;
      this.fail(taskId, 'Throttling.RateQuota', ERROR_MESSAGES.throttled);
      return;
    }
    const injected = faults.tryConsumeFailTask();
    if (injected) {
      stats.failuresInjected++;
      this.fail(taskId, injected.code, injected.message);
      return;
    }
    const task = new Task(taskId, v.params, knobs, this.deps.script);
    this.task = task;
    this.stateValue = 'starting';
    logger.debug(
      { connectionId: this.info.connectionId, taskId, model: v.params.model, sampleRateHz: v.params.sampleRateHz },
      'emulator task accepted',
    );
    if (knobs.taskStartDelayMs <= 0) this.startTask(task, nowMs);
    else task.startAtMs = nowMs + knobs.taskStartDelayMs;
  }

  private startTask(task: Task, nowMs: number): void {
    const { knobs, stats } = this.deps;
    this.stateValue = 'running';
    stats.tasksStarted++;
    this.send(task.id, 'task-started', {}, 0);
    task.nextHeartbeatAtMs = nowMs + knobs.heartbeatIntervalMs;
    const early = task.early;
    task.early = [];
    task.earlyBytes = 0;
    for (const chunk of early) {
      if (this.task !== task || this.stateValue !== 'running') return;
      this.feedAudio(task, chunk);
    }
    if (task.finishRequested && this.task === task && this.stateValue === 'running') this.finishTask(task, nowMs);
  }

  private onFinishTask(taskId: string, nowMs: number): void {
    const task = this.task;
    if (task === null || this.stateValue === 'idle') {
      this.fail(taskId, 'InvalidParameter', 'finish-task: no task is running on this connection.');
      return;
    }
    if (task.id !== taskId) {
      this.fail(taskId, 'InvalidParameter', 'finish-task: task_id does not match the running task.');
      return;
    }
    if (this.stateValue === 'starting') {
      task.finishRequested = true;
      return;
    }
    this.finishTask(task, nowMs);
  }

  private finishTask(task: Task, nowMs: number): void {
    const { knobs, stats, logger } = this.deps;
    if (knobs.failFinishWithoutAudio && task.audioBytes === 0) {
      this.fail(task.id, 'NO_VALID_AUDIO_ERROR', 'No valid audio was received before finish-task.');
      return;
    }
    // flush: the sentence in progress becomes a final (VAD holds nothing back after finish-task)
    const s = task.sentence;
    if (s !== null) {
      if (task.probeActive) {
        task.probeActive = false;
        if (s.resumeAtMs === null) s.locating = false;
      }
      if (s.resumeAtMs !== null) {
        const resumeAt = s.resumeAtMs;
        this.finalizeSentence(task);
        this.openSentence(task, resumeAt, null);
        if (task.sentence) task.sentence.lastVoicedEndMs = Math.max(resumeAt, task.seg.lastVoicedEndMs);
      }
      this.finalizeSentence(task);
    }
    this.send(task.id, 'task-finished', { output: {}, usage: null }, knobs.resultDelayMs);
    stats.tasksFinished++;
    logger.debug({ connectionId: this.info.connectionId, taskId: task.id }, 'emulator task finished');
    this.task = null;
    this.stateValue = 'idle';
    this.idleSinceMs = nowMs;
  }

  // ---- audio --------------------------------------------------------------------------------

  private feedAudio(task: Task, input: Buffer): void {
    let chunk = input;
    if (!task.wavChecked) {
      task.wavChecked = true;
      if (task.params.format === 'wav') {
        try {
          const info = findWavChunks(chunk);
          if (info !== null) chunk = chunk.subarray(info.dataOffset);
        } catch {
          // not a complete header in the first frame: treat the bytes as PCM
        }
      }
    }
    if (chunk.length === 0) return;
    task.chunk = chunk;
    task.chunkStartByte = task.audioBytes;
    if (task.probeActive) this.fillProbe(task);
    task.vad.push(chunk, this);
    task.audioBytes += chunk.length;
    task.chunk = null;
    if (task.tail) task.tailLen = appendToTail(task.tail, task.tailLen, chunk);
  }

  /** VadWindowSink: one 10 ms window of the running task. */
  onVadWindow(voiced: boolean, windowIndex: number): boolean {
    const task = this.task;
    if (task === null || this.stateValue !== 'running') return false;
    const { knobs, faults } = this.deps;
    const seg = task.seg;
    const ev = seg.onWindow(voiced, windowIndex);
    const endMs = (windowIndex + 1) * seg.windowMs;
    task.heardMs = endMs;
    if (ev === SEGMENT_START) {
      this.segments++;
      task.dropChecked = false;
      this.onSegmentStart(task, windowIndex);
    } else if (ev === SEGMENT_END) {
      this.onSegmentEnd(task);
    }
    const s = task.sentence;
    if (s !== null) {
      if (voiced && !s.held) s.lastVoicedEndMs = endMs;
      if (s.held) {
        if (s.resumeAtMs === null && seg.silenceRunMs >= task.holdLimitMs) this.finalizeSentence(task);
      } else if (endMs - s.beginMs >= knobs.maxSentenceMs) {
        this.finalizeSentence(task);
        seg.forceEnd();
      } else if (
        !s.locating &&
        seg.inSpeech &&
        endMs - s.lastInterimAtMs >= knobs.interimEveryMs &&
        seg.silenceRunMs < knobs.interimEveryMs
      ) {
        this.sendInterim(task, s, endMs);
      }
    }
    const dropIn = faults.dropInSentence;
    if (
      dropIn !== null &&
      !task.dropChecked &&
      seg.inSpeech &&
      this.segments === dropIn &&
      endMs - seg.segmentStartMs >= DROP_IN_SENTENCE_AFTER_MS
    ) {
      task.dropChecked = true;
      if (faults.tryConsumeDrop()) {
        this.drop();
        return false;
      }
    }
    if (!task.params.heartbeat && seg.silenceRunMs >= knobs.silenceTimeoutMs) {
      this.fail(task.id, 'RequestTimeOut', ERROR_MESSAGES.silence);
      return false;
    }
    return true;
  }

  private onSegmentStart(task: Task, windowIndex: number): void {
    const startMs = windowIndex * task.seg.windowMs;
    const s = task.sentence;
    if (s !== null && s.held) {
      s.resumeAtMs = startMs;
      this.startProbe(task, windowIndex, true);
      return;
    }
    if (s === null) this.openSentence(task, startMs, undefined, windowIndex);
  }

  /**
   * Opens a sentence at `startMs`. `location` undefined: locate it with a probe starting at
   * `windowIndex`; a value (or null): already located.
   */
  private openSentence(task: Task, startMs: number, location: AudioLocation | null | undefined, windowIndex = 0): void {
    const { knobs } = this.deps;
    const locate = location === undefined && task.probe !== null;
    const s: Sentence = {
      id: ++task.sentenceSeq,
      beginMs: startMs,
      lastVoicedEndMs: startMs + task.seg.windowMs,
      location: location ?? null,
      locating: locate,
      held: false,
      resumeAtMs: null,
      lastInterimAtMs: startMs,
    };
    task.sentence = s;
    if (knobs.sentenceBeginEvent) {
      this.send(
        task.id,
        'result-generated',
        {
          output: {
            sentence: {
              sentence_id: s.id,
              begin_time: startMs,
              end_time: null,
              text: '',
              heartbeat: false,
              sentence_end: false,
              sentence_begin: true,
              words: [],
            } satisfies WireSentence,
          },
          usage: null,
        },
        knobs.resultDelayMs,
      );
    }
    if (locate) this.startProbe(task, windowIndex, false);
    else if (location === undefined) this.deps.stats.scriptMisses++;
  }

  private startProbe(task: Task, windowIndex: number, resume: boolean): void {
    if (task.probe === null) return;
    task.probeActive = true;
    task.probeResume = resume;
    task.probeFill = 0;
    task.probeStartByte = windowIndex * task.vad.windowSamples * 2;
    task.probeStartMs = windowIndex * task.vad.windowMs;
    this.fillProbe(task);
  }

  /** Copies the probe's bytes from the tail of earlier chunks and from the current chunk. */
  private fillProbe(task: Task): void {
    const probe = task.probe;
    const chunk = task.chunk;
    if (probe === null || chunk === null || !task.probeActive) return;
    const C = task.chunkStartByte;
    let pos = task.probeStartByte + task.probeFill;
    if (pos < C) {
      const tailStart = C - task.tailLen;
      if (task.tail === null || pos < tailStart) {
        this.abandonProbe(task);
        return;
      }
      const n = Math.min(C - pos, PROBE_BYTES - task.probeFill);
      task.tail.copy(probe, task.probeFill, pos - tailStart, pos - tailStart + n);
      task.probeFill += n;
      pos += n;
    }
    if (task.probeFill < PROBE_BYTES && pos >= C) {
      const off = pos - C;
      const n = Math.min(chunk.length - off, PROBE_BYTES - task.probeFill);
      if (n > 0) {
        chunk.copy(probe, task.probeFill, off, off + n);
        task.probeFill += n;
      }
    }
    if (task.probeFill >= PROBE_BYTES) {
      task.probeActive = false;
      this.onProbeComplete(task, task.recognizer.locate(probe, task.probeStartMs));
    }
  }

  private abandonProbe(task: Task): void {
    task.probeActive = false;
    this.onProbeComplete(task, null);
  }

  private onProbeComplete(task: Task, loc: AudioLocation | null): void {
    const { stats } = this.deps;
    if (loc) stats.scriptMatches++;
    else stats.scriptMisses++;
    const s = task.sentence;
    if (s === null) return;
    if (!task.probeResume) {
      s.location = loc;
      s.locating = false;
      return;
    }
    const resumeAt = s.resumeAtMs;
    if (resumeAt === null) return;
    const held = s.location;
    const contiguous =
      (loc === null && held === null) ||
      (loc !== null &&
        held !== null &&
        loc.role === held.role &&
        Math.abs(loc.callMs - (held.callMs + (resumeAt - s.beginMs))) <= MERGE_CONTIGUITY_MS);
    if (contiguous) {
      s.held = false;
      s.resumeAtMs = null;
      s.lastVoicedEndMs = Math.max(s.lastVoicedEndMs, task.seg.lastVoicedEndMs);
      return;
    }
    this.finalizeSentence(task);
    this.openSentence(task, resumeAt, loc);
    const next = task.sentence as Sentence | null;
    if (next) next.lastVoicedEndMs = Math.max(next.lastVoicedEndMs, task.seg.lastVoicedEndMs);
  }

  private onSegmentEnd(task: Task): void {
    const s = task.sentence;
    if (s === null || s.held) return;
    const t = task.recognizer.transcribe(s.location, s.beginMs, s.lastVoicedEndMs);
    const semantic = task.params.semanticPunctuation;
    const hold = semantic ? !t.matched || t.unfinished : t.unfinished;
    if (hold && task.holdLimitMs > task.seg.maxSilenceMs) {
      s.held = true;
      return;
    }
    this.finalizeSentence(task, t);
  }

  private sendInterim(task: Task, s: Sentence, nowMs: number): void {
    const t = task.recognizer.transcribe(s.location, s.beginMs, s.lastVoicedEndMs);
    s.lastInterimAtMs = nowMs;
    this.send(
      task.id,
      'result-generated',
      {
        output: {
          sentence: {
            sentence_id: s.id,
            begin_time: s.beginMs,
            end_time: null,
            text: t.text,
            heartbeat: false,
            sentence_end: false,
            words: spreadWords(t.units, s.beginMs, s.lastVoicedEndMs),
          } satisfies WireSentence,
        },
        usage: null,
      },
      this.deps.knobs.resultDelayMs,
    );
    this.deps.stats.interimsSent++;
  }

  private finalizeSentence(task: Task, transcript?: SentenceTranscript): void {
    const s = task.sentence;
    if (s === null) return;
    const t = transcript ?? task.recognizer.transcribe(s.location, s.beginMs, s.lastVoicedEndMs);
    const endMs = Math.max(s.beginMs, s.lastVoicedEndMs);
    const audioMs = Math.max(task.heardMs, task.audioBytes / task.bytesPerMs, endMs);
    const sentence: WireSentence = {
      sentence_id: s.id,
      begin_time: s.beginMs,
      end_time: endMs,
      text: t.text,
      heartbeat: false,
      sentence_end: true,
      words: spreadWords(t.units, s.beginMs, endMs),
      ...(task.params.emotion ? { emo_tag: t.emotion.tag, emo_confidence: t.emotion.confidence } : {}),
    };
    this.send(
      task.id,
      'result-generated',
      { output: { sentence }, usage: { duration: Math.ceil(audioMs / 1000) } },
      this.deps.knobs.resultDelayMs,
    );
    task.recognizer.commit(t);
    this.deps.stats.finalsSent++;
    task.sentence = null;
  }

  // ---- outputs ------------------------------------------------------------------------------

  private send(taskId: string, name: ServerEventName, payload: Record<string, unknown>, delayMs: number): void {
    this.out.push({ type: 'send', event: event(taskId, name, payload), delayMs });
  }

  private envelopeError(taskId: string, problem: string): void {
    if (this.deps.knobs.envelopeErrorMode === 'close-1007') {
      this.deps.logger.debug({ connectionId: this.info.connectionId }, 'emulator closes on an invalid envelope');
      this.stateValue = 'closed';
      this.task = null;
      this.out.push({ type: 'close', code: 1007, reason: 'Invalid payload data' });
      return;
    }
    this.fail(taskId, 'InvalidParameter', `Invalid payload data: ${problem}.`);
  }

  /** task-failed, then close (A5.6: the connection cannot be reused). */
  private fail(taskId: string, code: string, message: string): void {
    const { stats, logger } = this.deps;
    this.out.push({
      type: 'send',
      event: {
        header: { task_id: taskId, event: 'task-failed', error_code: code, error_message: message, attributes: NO_ATTRIBUTES },
        payload: {},
      },
      delayMs: 0,
    });
    stats.tasksFailed[code] = (stats.tasksFailed[code] ?? 0) + 1;
    logger.debug({ connectionId: this.info.connectionId, taskId, code }, 'emulator task failed');
    this.stateValue = 'closed';
    this.task = null;
    this.out.push({ type: 'close', code: 1000, reason: 'task failed' });
  }

  private drop(): void {
    this.deps.stats.dropsInjected++;
    this.deps.logger.debug({ connectionId: this.info.connectionId }, 'emulator drops a connection (injected fault)');
    this.stateValue = 'closed';
    this.task = null;
    this.out.push({ type: 'drop' });
  }
}
