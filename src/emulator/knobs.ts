/**
 * The DashScope emulator's configurable behaviour ("knobs"), its counters and its shared fault
 * state. Defaults follow specs/dashscope-protocol.md Part A (A7, A8, A10) and Part B (B6, B7); the
 * items the spec marks [UNCONFIRMED] are knobs so that tests can exercise every plausible variant.
 */
import { AppError } from '../core/errors.js';

/** The next `count` run-tasks fail with this code/message instead of starting. */
export interface FailTasksFault {
  readonly code: string;
  readonly message: string;
  readonly count: number;
}

/** How a qwen outage refuses a new realtime session. */
export type QwenOutageMode = 'http-503' | 'close-1011' | 'error-event';

/** While set, new qwen realtime sessions are refused. */
export interface QwenOutageFault {
  /**
   * http-503: the upgrade is refused with HTTP 503; close-1011: the upgrade is accepted and the
   * socket closed at once with 1011; error-event: accepted, an `error` event (server_error), then
   * close 1011. No session.created in any mode.
   */
  readonly mode: QwenOutageMode;
  /** Refuse the next `count` sessions; null: every session until the fault is cleared. */
  readonly count: number | null;
  /** Also destroy every open qwen session (TCP, no close frame) when the fault is set. */
  readonly dropLive?: boolean;
}

/**
 * Injected faults. Every field is optional in `setKnobs()`: a `faults` object is merged field
 * by field into the current faults.
 */
export interface EmulatorFaults {
  /**
   * After N audio frames on a connection (binary frames on paraformer, input_audio_buffer.append
   * events on qwen), destroy its TCP socket without a close frame.
   */
  dropAfterFrames?: number | null;
  /**
   * How many connections get a drop fault (dropAfterFrames or dropInSentence), counted over the
   * emulator's life. Setting any drop field through setKnobs() restarts this count.
   */
  dropConnections?: number;
  /** Drop the connection once its Nth speech segment (1-based) has been in speech for 300 ms. */
  dropInSentence?: number | null;
  /** The next `count` run-tasks get task-failed(code, message) instead of task-started, then close. */
  failTasks?: FailTasksFault | null;
  /** Qwen realtime sessions are refused (see QwenOutageFault); null: no outage. */
  qwenOutage?: QwenOutageFault | null;
}

export interface EmulatorKnobs {
  /** HTTP status for a missing or wrong API key on the upgrade. */
  authFailureStatus: 401 | 403;
  /** Nothing received during a task for this long → task-failed CLIENT_ERROR. */
  noDataTimeoutMs: number;
  /** Audio time of continuous non-speech with heartbeat=false → task-failed RequestTimeOut. */
  silenceTimeoutMs: number;
  /** No run-task for this long on a connection without a task (after a task or after opening) → close. */
  idleTimeoutMs: number;
  /** Wall-clock cadence of heartbeat results while heartbeat=true and nobody speaks. */
  heartbeatIntervalMs: number;
  /** run-tasks per second per API key and model (0: no limit). */
  rps: number;
  /** Delay before task-started (early audio is buffered meanwhile). */
  taskStartDelayMs: number;
  /** Delay applied to every result-generated (order is kept). */
  resultDelayMs: number;
  /** Malformed envelope: answer task-failed, or close the socket with 1007. */
  envelopeErrorMode: 'task-failed' | 'close-1007';
  /** A 10 ms window is speech when its RMS (PCM16) exceeds this. */
  vadThresholdRms: number;
  /** Audio ms between interim results of a sentence. */
  interimEveryMs: number;
  /** A sentence longer than this (audio ms) is ended with a forced final. */
  maxSentenceMs: number;
  /** Injected faults (see EmulatorFaults). */
  faults: EmulatorFaults;
  // --- Part B: qwen3-asr-flash-realtime (the [UNCONFIRMED] items of B6 / open item 7) ---
  /** No input_audio_buffer.append for this long (wall-clock) → `error` idle_timeout, then close. */
  qwenIdleTimeoutMs: number;
  /** Longest session (wall-clock from the upgrade) → `error` session_expired, then close; 0: no limit. */
  qwenMaxSessionMs: number;
  /** How a session over the rate limit (`rps`, per key and model) is refused. */
  qwenThrottleMode: 'http-429' | 'error-event';
  /** Client events the protocol does not define for ASR (input_audio_buffer.clear, response.create, …). */
  qwenUnknownEventMode: 'error-event' | 'ignore';
  /** After session.finished, close the socket ourselves if the client has not after this long. */
  qwenFinishGraceMs: number;
  /** Audio ms between interim `…transcription.text` events of an item. */
  qwenTextEveryMs: number;
  /**
   * during-speech: text events stream between speech_started and speech_stopped (as a capture
   * shows), plus one full-text event after item.created; after-commit: text events only after
   * item.created (the docs' order).
   */
  qwenTextTiming: 'during-speech' | 'after-commit';
  /** Send input_audio_buffer.committed and conversation.item.created in VAD mode (a capture shows neither). */
  qwenCommitEvents: boolean;
  /** Close the socket (1000) after an `error` caused by a client event. */
  qwenCloseAfterError: boolean;
  /** Send an unsolicited session.updated right after session.created. */
  qwenUnsolicitedUpdated: boolean;
  /** Add `usage: {type: 'duration', seconds}` to …transcription.completed. */
  qwenCompletedUsage: boolean;
  // --- emulator-specific (not DashScope behaviour) ---
  /** Send an empty-text result with sentence_begin=true when a sentence starts. */
  sentenceBeginEvent: boolean;
  /** Slack (ms) when mapping heard audio onto script lines. */
  scriptToleranceMs: number;
  /**
   * A sentence that stops in the middle of its script line (a pause inside a spoken line) is
   * held instead of finalised, until speech continues (then merged) or the silence reaches this.
   */
  mergeHoldMs: number;
  /** finish-task on a task that received no audio → task-failed NO_VALID_AUDIO_ERROR. */
  failFinishWithoutAudio: boolean;
  /** Bound of the audio buffered before task-started, per task; the excess is dropped and counted. */
  maxEarlyAudioBytes: number;
  /** Largest WebSocket message accepted (ws closes with 1009 above it). Read at start only. */
  maxPayloadBytes: number;
  /** A client that does not read: above this many unsent bytes its socket is destroyed. */
  maxBufferedBytes: number;
}

export const DEFAULT_FAULTS: Readonly<Required<EmulatorFaults>> = Object.freeze({
  dropAfterFrames: null,
  dropConnections: 1,
  dropInSentence: null,
  failTasks: null,
  qwenOutage: null,
});

export const DEFAULT_KNOBS: Readonly<EmulatorKnobs> = Object.freeze({
  authFailureStatus: 401,
  noDataTimeoutMs: 23_000,
  silenceTimeoutMs: 60_000,
  idleTimeoutMs: 60_000,
  heartbeatIntervalMs: 10_000,
  rps: 20,
  taskStartDelayMs: 0,
  resultDelayMs: 0,
  envelopeErrorMode: 'task-failed',
  vadThresholdRms: 300,
  interimEveryMs: 200,
  maxSentenceMs: 20_000,
  faults: DEFAULT_FAULTS,
  qwenIdleTimeoutMs: 60_000,
  qwenMaxSessionMs: 0,
  qwenThrottleMode: 'error-event',
  qwenUnknownEventMode: 'error-event',
  qwenFinishGraceMs: 10_000,
  qwenTextEveryMs: 200,
  qwenTextTiming: 'during-speech',
  qwenCommitEvents: true,
  qwenCloseAfterError: false,
  qwenUnsolicitedUpdated: false,
  qwenCompletedUsage: false,
  sentenceBeginEvent: true,
  scriptToleranceMs: 300,
  mergeHoldMs: 1500,
  failFinishWithoutAudio: false,
  maxEarlyAudioBytes: 2 * 1024 * 1024,
  maxPayloadBytes: 4 * 1024 * 1024,
  maxBufferedBytes: 16 * 1024 * 1024,
});

function invalid(name: string): AppError {
  return new AppError('ERR_EMULATOR_KNOB_INVALID', `emulator knob ${name} is invalid`, {
    category: 'invalid_request',
    details: { knob: name },
  });
}

function checkInt(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(name);
}

function checkNullableInt(name: string, v: unknown, min: number): void {
  if (v !== null) checkInt(name, v, min);
}

function mergeFaults(base: EmulatorFaults, patch: EmulatorFaults | undefined): Required<EmulatorFaults> {
  const out: Required<EmulatorFaults> = {
    dropAfterFrames: base.dropAfterFrames ?? null,
    dropConnections: base.dropConnections ?? DEFAULT_FAULTS.dropConnections,
    dropInSentence: base.dropInSentence ?? null,
    failTasks: base.failTasks ?? null,
    qwenOutage: base.qwenOutage ?? null,
  };
  if (patch === undefined) return out;
  if (patch.dropAfterFrames !== undefined) out.dropAfterFrames = patch.dropAfterFrames;
  if (patch.dropConnections !== undefined) out.dropConnections = patch.dropConnections;
  if (patch.dropInSentence !== undefined) out.dropInSentence = patch.dropInSentence;
  if (patch.failTasks !== undefined) out.failTasks = patch.failTasks;
  if (patch.qwenOutage !== undefined) out.qwenOutage = patch.qwenOutage;
  return out;
}

/**
 * Returns `base` with `patch` applied (faults merged field by field), validated. Throws
 * AppError ERR_EMULATOR_KNOB_INVALID naming the first bad knob.
 */
export function applyKnobs(base: Readonly<EmulatorKnobs>, patch: Partial<EmulatorKnobs> = {}): EmulatorKnobs {
  const merged: EmulatorKnobs = { ...base };
  for (const key of Object.keys(patch) as Array<keyof EmulatorKnobs>) {
    if (!(key in DEFAULT_KNOBS)) throw invalid(String(key));
    const value = patch[key];
    if (value === undefined || key === 'faults') continue;
    (merged as unknown as Record<string, unknown>)[key] = value;
  }
  merged.faults = mergeFaults(base.faults, patch.faults);

  if (merged.authFailureStatus !== 401 && merged.authFailureStatus !== 403) throw invalid('authFailureStatus');
  checkInt('noDataTimeoutMs', merged.noDataTimeoutMs, 1);
  checkInt('silenceTimeoutMs', merged.silenceTimeoutMs, 1);
  checkInt('idleTimeoutMs', merged.idleTimeoutMs, 1);
  checkInt('heartbeatIntervalMs', merged.heartbeatIntervalMs, 1);
  checkInt('rps', merged.rps, 0);
  checkInt('taskStartDelayMs', merged.taskStartDelayMs, 0);
  checkInt('resultDelayMs', merged.resultDelayMs, 0);
  if (merged.envelopeErrorMode !== 'task-failed' && merged.envelopeErrorMode !== 'close-1007') {
    throw invalid('envelopeErrorMode');
  }
  if (typeof merged.vadThresholdRms !== 'number' || !(merged.vadThresholdRms >= 0)) throw invalid('vadThresholdRms');
  checkInt('interimEveryMs', merged.interimEveryMs, 10);
  checkInt('maxSentenceMs', merged.maxSentenceMs, 100);
  checkNullableInt('faults.dropAfterFrames', merged.faults.dropAfterFrames, 1);
  checkInt('faults.dropConnections', merged.faults.dropConnections, 0);
  checkNullableInt('faults.dropInSentence', merged.faults.dropInSentence, 1);
  const ft = merged.faults.failTasks;
  if (ft !== null && ft !== undefined) {
    if (typeof ft.code !== 'string' || ft.code === '' || typeof ft.message !== 'string') throw invalid('faults.failTasks');
    checkInt('faults.failTasks.count', ft.count, 0);
  }
  const qo = merged.faults.qwenOutage;
  if (qo !== null && qo !== undefined) {
    if (qo.mode !== 'http-503' && qo.mode !== 'close-1011' && qo.mode !== 'error-event') throw invalid('faults.qwenOutage.mode');
    checkNullableInt('faults.qwenOutage.count', qo.count, 0);
    if (qo.dropLive !== undefined && typeof qo.dropLive !== 'boolean') throw invalid('faults.qwenOutage.dropLive');
  }
  checkInt('qwenIdleTimeoutMs', merged.qwenIdleTimeoutMs, 1);
  checkInt('qwenMaxSessionMs', merged.qwenMaxSessionMs, 0);
  if (merged.qwenThrottleMode !== 'http-429' && merged.qwenThrottleMode !== 'error-event') throw invalid('qwenThrottleMode');
  if (merged.qwenUnknownEventMode !== 'error-event' && merged.qwenUnknownEventMode !== 'ignore') {
    throw invalid('qwenUnknownEventMode');
  }
  checkInt('qwenFinishGraceMs', merged.qwenFinishGraceMs, 1);
  checkInt('qwenTextEveryMs', merged.qwenTextEveryMs, 10);
  if (merged.qwenTextTiming !== 'during-speech' && merged.qwenTextTiming !== 'after-commit') throw invalid('qwenTextTiming');
  for (const k of ['qwenCommitEvents', 'qwenCloseAfterError', 'qwenUnsolicitedUpdated', 'qwenCompletedUsage'] as const) {
    if (typeof merged[k] !== 'boolean') throw invalid(k);
  }
  if (typeof merged.sentenceBeginEvent !== 'boolean') throw invalid('sentenceBeginEvent');
  checkInt('scriptToleranceMs', merged.scriptToleranceMs, 0, 5000);
  checkInt('mergeHoldMs', merged.mergeHoldMs, 0);
  if (typeof merged.failFinishWithoutAudio !== 'boolean') throw invalid('failFinishWithoutAudio');
  checkInt('maxEarlyAudioBytes', merged.maxEarlyAudioBytes, 0);
  checkInt('maxPayloadBytes', merged.maxPayloadBytes, 1024);
  checkInt('maxBufferedBytes', merged.maxBufferedBytes, 1024);
  return merged;
}

/** Counters of one emulator instance (a live object: read it at any time). */
export interface EmulatorStats {
  /** WebSocket connections accepted. */
  connections: number;
  openConnections: number;
  /** Upgrades refused for a missing or wrong key. */
  authFailures: number;
  /** Upgrades or requests on an unknown path. */
  notFound: number;
  tasksStarted: number;
  tasksFinished: number;
  /** task-failed events sent, by error_code. */
  tasksFailed: Record<string, number>;
  /** run-tasks refused by the rate limiter (also counted in tasksFailed). */
  throttled: number;
  /** Injected failTasks failures (also counted in tasksFailed). */
  failuresInjected: number;
  /** Connections destroyed by an injected drop fault. */
  dropsInjected: number;
  /** Connections destroyed because the client did not read. */
  slowClientDrops: number;
  audioFramesReceived: number;
  audioBytesReceived: number;
  /** Binary frames received while no task was running (ignored). */
  audioFramesIgnored: number;
  /** Audio bytes over maxEarlyAudioBytes before task-started (dropped). */
  earlyAudioBytesDropped: number;
  finalsSent: number;
  interimsSent: number;
  heartbeatsSent: number;
  /** Sentences whose audio was found in the fixture call / not found. */
  scriptMatches: number;
  scriptMisses: number;
  // --- Part B: qwen realtime sessions ---
  /** Sessions that got session.created. */
  qwenSessions: number;
  /** Sessions that got session.finished. */
  qwenSessionsFinished: number;
  /** Upgrades closed with 1007 "Model not found". */
  qwenModelNotFound: number;
  /** Sessions refused by the rate limiter (HTTP 429 or an error event). */
  qwenThrottled: number;
  /** Sessions refused by the qwenOutage fault. */
  qwenOutageRefusals: number;
  /** Open sessions destroyed when qwenOutage was set with dropLive. */
  qwenOutageDrops: number;
  /** input_audio_buffer.append events received (and their decoded bytes). */
  qwenAppends: number;
  qwenAudioBytes: number;
  /** Items completed (…transcription.completed sent). */
  qwenItemsCompleted: number;
  /** Interim …transcription.text events sent. */
  qwenTextEvents: number;
  /** `error` events sent, by error.code. */
  qwenErrors: Record<string, number>;
  /** Client events ignored (unknown events in ignore mode, events after session.finish). */
  qwenEventsIgnored: number;
  /** Items in progress lost because the connection ended without session.finish (client close, drops). */
  itemsDroppedOnClose: number;
}

export function createEmulatorStats(): EmulatorStats {
  return {
    connections: 0,
    openConnections: 0,
    authFailures: 0,
    notFound: 0,
    tasksStarted: 0,
    tasksFinished: 0,
    tasksFailed: {},
    throttled: 0,
    failuresInjected: 0,
    dropsInjected: 0,
    slowClientDrops: 0,
    audioFramesReceived: 0,
    audioBytesReceived: 0,
    audioFramesIgnored: 0,
    earlyAudioBytesDropped: 0,
    finalsSent: 0,
    interimsSent: 0,
    heartbeatsSent: 0,
    scriptMatches: 0,
    scriptMisses: 0,
    qwenSessions: 0,
    qwenSessionsFinished: 0,
    qwenModelNotFound: 0,
    qwenThrottled: 0,
    qwenOutageRefusals: 0,
    qwenOutageDrops: 0,
    qwenAppends: 0,
    qwenAudioBytes: 0,
    qwenItemsCompleted: 0,
    qwenTextEvents: 0,
    qwenErrors: {},
    qwenEventsIgnored: 0,
    itemsDroppedOnClose: 0,
  };
}

/** A copy of `stats` that later counting does not change. */
export function snapshotStats(stats: EmulatorStats): EmulatorStats {
  return { ...stats, tasksFailed: { ...stats.tasksFailed }, qwenErrors: { ...stats.qwenErrors } };
}

/**
 * Fault budgets shared by every connection of one emulator: how many drops are left and how
 * many run-tasks still have to fail. Reads the live knobs object.
 */
export class FaultState {
  private dropsUsed = 0;
  private failTasksLeft: number;
  private qwenOutageLeft: number;

  constructor(private readonly knobs: EmulatorKnobs) {
    this.failTasksLeft = knobs.faults.failTasks?.count ?? 0;
    this.qwenOutageLeft = knobs.faults.qwenOutage?.count ?? 0;
  }

  get dropAfterFrames(): number | null {
    return this.knobs.faults.dropAfterFrames ?? null;
  }

  get dropInSentence(): number | null {
    return this.knobs.faults.dropInSentence ?? null;
  }

  /** True (and one drop used up) if another connection may be dropped. */
  tryConsumeDrop(): boolean {
    const budget = this.knobs.faults.dropConnections ?? DEFAULT_FAULTS.dropConnections;
    if (this.dropsUsed >= budget) return false;
    this.dropsUsed++;
    return true;
  }

  /** The injected failure for the next run-task, or null. */
  tryConsumeFailTask(): FailTasksFault | null {
    const ft = this.knobs.faults.failTasks;
    if (!ft || this.failTasksLeft <= 0) return null;
    this.failTasksLeft--;
    return ft;
  }

  /** The outage mode refusing the next qwen session (one of `count` used up), or null. */
  tryConsumeQwenOutage(): QwenOutageMode | null {
    const o = this.knobs.faults.qwenOutage;
    if (!o) return null;
    if (o.count === null) return o.mode;
    if (this.qwenOutageLeft <= 0) return null;
    this.qwenOutageLeft--;
    return o.mode;
  }

  /** Call after the knobs were patched with `patch`: restarts the budgets it touches. */
  onKnobsChanged(patch: Partial<EmulatorKnobs>): void {
    const f = patch.faults;
    if (!f) return;
    if (f.failTasks !== undefined) this.failTasksLeft = f.failTasks?.count ?? 0;
    if (f.qwenOutage !== undefined) this.qwenOutageLeft = f.qwenOutage?.count ?? 0;
    if (f.dropAfterFrames !== undefined || f.dropInSentence !== undefined || f.dropConnections !== undefined) {
      this.dropsUsed = 0;
    }
  }
}
