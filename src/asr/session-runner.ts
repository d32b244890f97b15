/**
 * AsrStreamRunner: one per speaker stream (call × role), provider-neutral, and the ONLY retry
 * layer for ASR (providers never retry).
 *
 * Reliability contract
 * - Replay buffer: the runner keeps the audio since the last final sentence (bounded by
 *   `replayBufferMs`; over the bound the oldest audio is dropped and counted in
 *   asrReplayDroppedMs). After a retryable failure it reconnects and resends that whole buffer
 *   (≤ 100 ms frames) before live audio, so no speech since the last final is lost.
 * - Timeline: each connection has a task offset, the call time of the first audio byte sent
 *   on it; provider times + offset = call time (a TaskTimeline also survives gaps).
 * - No duplicates: a final whose call-time end is ≤ the last final's end is dropped (counted);
 *   after each final the replay buffer is trimmed to start exactly at its end.
 * - seq is 1, 2, 3… per runner, gap-free (empty-text finals advance the timeline but get no
 *   seq and no utterance).
 * - Retries: p-retry, exponential backoff with jitter between retryMinMs and retryMaxMs, only
 *   for retryable AppErrors, at most `maxRetries` retries after consecutive failures (so
 *   maxRetries + 1 attempts). A connection that delivered a final or lived ≥ 30 s
 *   (QuickFailureTracker) resets the budget and reconnects at once. A permanent error (bad
 *   key, bad request) ends the model after exactly one attempt: the stream fails, or fails
 *   over when the error is model-level and another candidate is left.
 * - Status: pending (start) → active (first task started) → finished | failed, reported once
 *   per transition through onStatus. abort() ends as failed / ERR_ASR_ABORTED.
 * - finish() stops accepting audio, waits for a pending (re)connect, lets the provider finish
 *   (finish-task → task-finished, remaining finals delivered) and never throws. A connection
 *   on which no audio was ever sent is closed without finish-task.
 * - Failover (docs/failover.md): the runner has an ordered list of candidates (routed model
 *   first, then the fallbacks) and runs on one at a time. It moves to the next one, mid-call,
 *   when the current model's retry budget for retryable errors is exhausted, or at once on a
 *   permanent error specific to the model or request (MODEL_LEVEL_ERROR_CODES). Account-level
 *   errors (ACCOUNT_LEVEL_ERROR_CODES: key refused, no key, account in arrears) never fail
 *   over. A switch is a reconnect on another model: the failed connection is already closed
 *   (abort, no finish), the new model gets a fresh retry budget, its start goes through the
 *   limiter for its own model, and the replay buffer is resent, so the dedupe guard and the
 *   call timeline work across the switch exactly as across a reconnect. A switch during
 *   finish() finishes on the new model. The last candidate exhausted → failed.
 */
import pRetry, { AbortError } from 'p-retry';
import { AppError, errorMessage, isAppError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import {
  PCM_BYTES_PER_MS,
  type PcmChunk,
  type Role,
  type Utterance,
  type Word,
} from '../core/types.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { StreamStatus } from '../queue/jobs.js';
import type { AsrConnection, AsrConnectOptions, AsrEvent, AsrProvider } from './provider.js';
import { QuickFailureTracker } from './quick-failure.js';
import { chunkEndMs, ReceivedMarks, ReplayBuffer, toSendFrames, type DroppedSpan } from './replay-buffer.js';
import { TaskTimeline } from './task-timeline.js';
import type { TaskStartLimiter } from './start-limiter.js';

/** 100 ms of 8 kHz PCM16: the frame size DashScope recommends (spec A4.2). */
export const SEND_FRAME_BYTES = 100 * PCM_BYTES_PER_MS;
/** A connection that lived this long is healthy even without a final. */
export const HEALTHY_CONNECTION_MS = 30_000;

/**
 * Error codes that say the DashScope key or account is refused, not the model: no failover.
 * Every candidate uses the same key and account, so the fallback would be refused too; a
 * failover would only double the rejected attempts (and the load on a key that may be
 * locked out) and turn "your key is refused" into a confusing second error from another
 * model. The stream fails at once with the real error.
 */
export const ACCOUNT_LEVEL_ERROR_CODES: ReadonlySet<string> = new Set([
  'ERR_ASR_AUTH',
  'ERR_ASR_NO_API_KEY',
  'ERR_ASR_QUOTA',
]);

/**
 * Permanent errors that are specific to the model or to the request built for it (unknown or
 * unsupported model, parameters it rejects): the next candidate may well accept its own
 * request, so these fail over at once instead of failing the stream.
 */
export const MODEL_LEVEL_ERROR_CODES: ReadonlySet<string> = new Set([
  'ERR_ASR_UNSUPPORTED_MODEL',
  'ERR_ASR_BAD_REQUEST',
]);

/** Why a stream left a model. */
export type AsrFailoverTrigger = 'retries-exhausted' | 'model-error';

/**
 * Whether the error that ended a candidate's retry loop moves the stream to the next
 * candidate: account-level codes never; any other retryable error (the loop only ends on one
 * when the budget is gone) → 'retries-exhausted'; model-level permanent codes →
 * 'model-error'; every other permanent error (internal, aborted, unknown) never.
 */
export function failoverTrigger(error: AppError): AsrFailoverTrigger | null {
  if (ACCOUNT_LEVEL_ERROR_CODES.has(error.code)) return null;
  if (error.retryable) return 'retries-exhausted';
  if (MODEL_LEVEL_ERROR_CODES.has(error.code)) return 'model-error';
  return null;
}

export interface AsrStreamStatusUpdate {
  readonly status: StreamStatus;
  readonly errorCode: string | null;
  readonly errorMessage: string | null;
  readonly reconnects: number;
  readonly utterances: number;
  /** The model the stream runs on now (after a failover: the model it switched to). */
  readonly model: string;
  /** Failovers so far. */
  readonly failovers: number;
  /** Only on the update a failover emits: the model the stream left. */
  readonly failoverFrom?: string | undefined;
  /** Only on the update a failover emits: the error code that made it leave. */
  readonly failoverReason?: string | undefined;
}

/** One model the stream may run on: a provider and the connect options for that model. */
export interface AsrCandidate {
  readonly provider: AsrProvider;
  readonly connectOptions: AsrConnectOptions;
}

/** Reported through onFailover on every switch. */
export interface AsrFailover {
  readonly from: string;
  readonly to: string;
  /** Error code that made the stream leave `from`. */
  readonly reason: string;
  readonly trigger: AsrFailoverTrigger;
  /** 1 for the first failover of the stream, 2 for the second… */
  readonly failovers: number;
}

/** An interim result on the call timeline (not persisted). */
export interface AsrInterim {
  readonly startMs: number;
  readonly text: string;
  readonly asrTaskId: string;
}

export interface AsrStreamRunnerOptions {
  /**
   * Ordered models to run on: the routed model first, then the fallbacks. Give either
   * `candidates` or `provider` + `connectOptions` (a one-element list), not both.
   */
  readonly candidates?: readonly AsrCandidate[] | undefined;
  /** Single-model form: the same as `candidates: [{ provider, connectOptions }]`. */
  readonly provider?: AsrProvider | undefined;
  readonly connectOptions?: AsrConnectOptions | undefined;
  readonly limiter: TaskStartLimiter;
  readonly callId: string;
  readonly role: Role;
  readonly track: string;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly clock?: Clock | undefined;
  /** Retries after consecutive failures before the model is given up (failover or failed). */
  readonly maxRetries: number;
  readonly retryMinMs: number;
  readonly retryMaxMs: number;
  readonly replayBufferMs: number;
  readonly finishTimeoutMs: number;
  /** Default HEALTHY_CONNECTION_MS (30 s). */
  readonly healthyConnectionMs?: number | undefined;
  onUtterance(u: Utterance): void;
  onStatus(s: AsrStreamStatusUpdate): void;
  onInterim?(i: AsrInterim): void;
  /** Called on every switch to the next candidate (after the status update). */
  onFailover?(f: AsrFailover): void;
}

export interface AsrStreamStats {
  /** Connect attempts after the first one. */
  readonly reconnects: number;
  readonly utterances: number;
  /** Audio sent to the recogniser, resends included, ms. */
  readonly audioSentMs: number;
  /** Audio dropped from the replay buffer over its bound, ms. */
  readonly replayDroppedMs: number;
  /** The part of replayDroppedMs that had never been sent: lost speech, ms. */
  readonly replayLostMs: number;
  /** Tasks started (successful connects). */
  readonly tasks: number;
  readonly connectAttempts: number;
  readonly duplicateFinals: number;
  readonly emptyFinals: number;
  /** Audio pushed after the stream failed, ms. */
  readonly droppedAfterFailureMs: number;
  /** Audio pushed after finish()/abort(), ms. */
  readonly droppedAfterCloseMs: number;
  /** Switches to the next candidate. */
  readonly failovers: number;
  /** The model the stream runs on now. */
  readonly model: string;
}

type Phase = 'idle' | 'connecting' | 'connected' | 'backoff' | 'done';

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // observed where it matters; never an unhandled rejection
  return { promise, resolve, reject };
}

/** One connection attempt and, once connected, its task. */
class LiveTask {
  conn: AsrConnection | null = null;
  readonly timeline = new TaskTimeline();
  connectedAtMono = 0;
  deliveredFinal = false;
  error: AppError | null = null;
  /** Rejects when the connection fails (onError) or the runner aborts. */
  readonly ended: Deferred<never> = deferred<never>();
  constructor(
    readonly id: number,
    /** The candidate this task runs on (its model labels the task's utterances and metrics). */
    readonly candidate: AsrCandidate,
  ) {}

  get model(): string {
    return this.candidate.connectOptions.model;
  }
}

function resolveCandidates(options: AsrStreamRunnerOptions): readonly AsrCandidate[] {
  const single = options.provider !== undefined || options.connectOptions !== undefined;
  if (options.candidates !== undefined) {
    if (single) throw new TypeError('give either candidates or provider + connectOptions, not both');
    if (options.candidates.length === 0) throw new RangeError('candidates must not be empty');
    return options.candidates.slice();
  }
  if (!options.provider || !options.connectOptions) {
    throw new TypeError('provider and connectOptions (or candidates) are required');
  }
  return [{ provider: options.provider, connectOptions: options.connectOptions }];
}

/** Thrown out of p-retry when a healthy connection dropped: restart with a fresh budget. */
class HealthyDrop extends Error {
  constructor(readonly error: AppError) {
    super(error.message);
    this.name = 'HealthyDrop';
  }
}

const FINISH_SKIP = new Error('finish requested with nothing left to recognise');
const ABORTED = new Error('stream aborted');

function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err;
  return new AppError('ERR_ASR_INTERNAL', 'unexpected error in the ASR stream', {
    category: 'application',
    retryable: false,
    cause: err,
    details: { error: errorMessage(err) },
  });
}

function abortedError(): AppError {
  return new AppError('ERR_ASR_ABORTED', 'ASR stream aborted', { category: 'application', retryable: false });
}

export class AsrStreamRunner {
  private readonly opts: AsrStreamRunnerOptions;
  private readonly clock: Clock;
  private readonly baseLog: Logger;
  /** baseLog with the current model. */
  private log: Logger;
  private readonly candidates: readonly AsrCandidate[];
  private candidateIndex = 0;
  private readonly replay: ReplayBuffer;
  private readonly marks: ReceivedMarks;
  /** Per candidate: a switch starts a fresh one. */
  private tracker: QuickFailureTracker;

  private statusValue: StreamStatus = 'pending';
  private errorCode: string | null = null;
  private errorText: string | null = null;
  private phase: Phase = 'idle';
  private started = false;
  private accepting = true;
  private aborted = false;
  private finishRequested = false;
  private readonly finishWake: Deferred<void> = deferred<void>();
  private loop: Promise<void> = Promise.resolve();
  private finishPromise: Promise<void> | null = null;
  private retryAbort: AbortController | null = null;
  private current: LiveTask | null = null;
  private nextTaskId = 1;
  private lastError: AppError | null = null;
  private lastFinalEndMs = Number.NEGATIVE_INFINITY;
  private seq = 0;
  /** Call-time end of the audio sent at least once (latency is observed on first sends only). */
  private firstSentUntilMs = Number.NEGATIVE_INFINITY;

  private reconnects = 0;
  private utterances = 0;
  private audioSentMs = 0;
  private replayDroppedMs = 0;
  private replayLostMs = 0;
  private tasks = 0;
  private connectAttempts = 0;
  private duplicateFinals = 0;
  private emptyFinals = 0;
  private droppedAfterFailureMs = 0;
  private droppedAfterCloseMs = 0;
  private failovers = 0;

  constructor(options: AsrStreamRunnerOptions) {
    this.opts = options;
    this.clock = options.clock ?? systemClock;
    this.candidates = resolveCandidates(options);
    this.baseLog = options.logger.child({ callId: options.callId, role: options.role, track: options.track });
    this.log = this.baseLog.child({ model: this.model });
    this.replay = new ReplayBuffer(options.replayBufferMs);
    // one mark per pushed chunk; 20 ms chunks over the whole replay window, plus slack
    this.marks = new ReceivedMarks(Math.ceil(options.replayBufferMs / 20) + 256);
    this.tracker = new QuickFailureTracker(options.healthyConnectionMs ?? HEALTHY_CONNECTION_MS);
  }

  get status(): StreamStatus {
    return this.statusValue;
  }

  /** The model the stream runs on now. */
  get model(): string {
    return this.candidate.connectOptions.model;
  }

  private get candidate(): AsrCandidate {
    const c = this.candidates[this.candidateIndex];
    if (!c) throw new Error('no current ASR candidate'); // unreachable: the index never passes the end
    return c;
  }

  get stats(): AsrStreamStats {
    return {
      reconnects: this.reconnects,
      utterances: this.utterances,
      audioSentMs: this.audioSentMs,
      replayDroppedMs: this.replayDroppedMs,
      replayLostMs: this.replayLostMs,
      tasks: this.tasks,
      connectAttempts: this.connectAttempts,
      duplicateFinals: this.duplicateFinals,
      emptyFinals: this.emptyFinals,
      droppedAfterFailureMs: this.droppedAfterFailureMs,
      droppedAfterCloseMs: this.droppedAfterCloseMs,
      failovers: this.failovers,
      model: this.model,
    };
  }

  /** Starts connecting in the background (idempotent). Audio pushed meanwhile is buffered. */
  start(): void {
    if (this.started || this.aborted) return;
    this.started = true;
    this.emitStatus();
    this.loop = this.run();
  }

  /** Appends audio to the replay buffer and sends it at once when connected. */
  push(chunk: PcmChunk): void {
    const durationMs = chunk.pcm.length / PCM_BYTES_PER_MS;
    if (!this.accepting) {
      this.droppedAfterCloseMs += durationMs;
      return;
    }
    if (this.statusValue === 'failed') {
      this.droppedAfterFailureMs += durationMs;
      this.opts.metrics.framesDropped.inc({ source: 'asr', reason: 'ERR_ASR_STREAM_FAILED' });
      return;
    }
    const pcm = chunk.pcm.length % 2 === 0 ? chunk.pcm : chunk.pcm.subarray(0, chunk.pcm.length - 1);
    if (pcm.length === 0) return;
    const c: PcmChunk = pcm === chunk.pcm ? chunk : { pcm, startMs: chunk.startMs, receivedAt: chunk.receivedAt };
    this.marks.add(c);
    const dropped = this.replay.push(c);
    if (dropped.length > 0) this.accountDropped(dropped);
    const live = this.current;
    if (live?.conn && !live.error) this.sendChunks(live, [c]);
  }

  /**
   * Stops accepting audio, waits for a pending connect, finishes the task (remaining finals
   * are delivered) and resolves. Never rejects: a failure ends as status failed.
   */
  finish(): Promise<void> {
    this.finishPromise ??= this.doFinish();
    return this.finishPromise;
  }

  /** Closes at once without waiting for finals; the stream ends as failed (ERR_ASR_ABORTED). */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.accepting = false;
    this.retryAbort?.abort(ABORTED);
    const live = this.current;
    this.current = null;
    if (live) {
      live.conn?.close();
      live.ended.reject(abortedError());
    }
    this.finishWake.resolve();
    this.failStream(abortedError(), false);
  }

  // -------------------------------------------------------------------------------------------

  private async doFinish(): Promise<void> {
    this.accepting = false;
    try {
      if (this.statusValue === 'finished' || this.statusValue === 'failed') {
        await this.loop;
        return;
      }
      if (!this.started) {
        if (this.replay.isEmpty) {
          this.phase = 'done';
          this.setStatus('finished');
          return;
        }
        this.start();
      }
      this.finishRequested = true;
      this.finishWake.resolve();
      // waiting out a backoff with nothing left to recognise: stop now
      if (this.phase === 'backoff' && this.replay.isEmpty) this.retryAbort?.abort(FINISH_SKIP);
      await this.loop;
    } catch (err) {
      this.failStream(toAppError(err), true);
    }
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        if (this.aborted) return;
        const controller = new AbortController();
        this.retryAbort = controller;
        try {
          await pRetry(() => this.attempt(), {
            retries: Math.max(0, this.opts.maxRetries),
            factor: 2,
            minTimeout: Math.max(1, this.opts.retryMinMs),
            maxTimeout: Math.max(1, this.opts.retryMinMs, this.opts.retryMaxMs),
            randomize: true,
            signal: controller.signal,
            shouldRetry: (err) =>
              !this.aborted && !(err instanceof HealthyDrop) && isAppError(err) && err.retryable,
          });
          this.complete();
          return;
        } catch (err) {
          if (this.aborted || err === ABORTED) return;
          if (err === FINISH_SKIP) {
            this.complete();
            return;
          }
          if (err instanceof HealthyDrop) continue; // fresh retry budget, reconnect at once
          const final = this.lastError ?? toAppError(err);
          const trigger = failoverTrigger(final);
          if (trigger !== null && this.nothingLeft()) {
            // finishing and every sentence is in: nothing for another model to recognise
            this.complete();
            return;
          }
          if (trigger !== null && this.failOver(final, trigger)) continue; // next model, fresh budget
          this.log.warn(
            { code: final.code, retryable: final.retryable, attempts: this.connectAttempts, failovers: this.failovers },
            'ASR stream gave up',
          );
          this.failStream(final, true);
          return;
        }
      }
    } catch (err) {
      this.failStream(toAppError(err), true);
    } finally {
      this.phase = 'done';
    }
  }

  /**
   * Moves the stream to the next candidate; false when there is none. The failed connection
   * is already closed (attempt() closes it without finish); the next p-retry loop gives the
   * new model a fresh budget and its first attempt resends the replay buffer.
   */
  private failOver(error: AppError, trigger: AsrFailoverTrigger): boolean {
    const next = this.candidates[this.candidateIndex + 1];
    if (!next) return false;
    const from = this.model;
    this.candidateIndex++;
    this.failovers++;
    this.tracker = new QuickFailureTracker(this.opts.healthyConnectionMs ?? HEALTHY_CONNECTION_MS);
    const to = this.model;
    this.log = this.baseLog.child({ model: to });
    this.opts.metrics.asrFailovers.inc({ from, to, reason: error.code });
    this.log.warn(
      { code: error.code, trigger, from, to, attempts: this.connectAttempts, replayMs: this.replay.durationMs },
      'ASR stream failing over to the next model',
    );
    this.emitStatus({ failoverFrom: from, failoverReason: error.code });
    if (this.opts.onFailover) {
      try {
        this.opts.onFailover({ from, to, reason: error.code, trigger, failovers: this.failovers });
      } catch (err) {
        this.log.error({ code: 'ERR_ASR_HANDLER', err: errorMessage(err) }, 'onFailover threw');
      }
    }
    return true;
  }

  /** One p-retry attempt: (limiter → connect → replay → live → finish). */
  private async attempt(): Promise<void> {
    if (this.aborted) throw new AbortError(ABORTED);
    if (this.nothingLeft()) return;
    const candidate = this.candidate;
    const model = candidate.connectOptions.model;
    if (this.connectAttempts > 0) {
      this.reconnects++;
      this.opts.metrics.asrReconnects.inc({ model, reason: this.lastError?.code ?? 'unknown' });
    }
    this.connectAttempts++;
    this.phase = 'connecting';
    const live = new LiveTask(this.nextTaskId++, candidate);
    let conn: AsrConnection;
    try {
      const waitedMs = await this.opts.limiter.acquire(model);
      this.opts.metrics.asrStartQueueWaitMs.observe({ model }, waitedMs);
      if (this.aborted) throw new AbortError(ABORTED);
      conn = await candidate.provider.connect(candidate.connectOptions, {
        onEvent: (e) => this.onEvent(live, e),
        onError: (e) => this.onConnectionError(live, e),
      });
    } catch (err) {
      if (err instanceof AbortError || this.aborted) throw err;
      const e = toAppError(err);
      this.noteError(e, 'connect', model);
      this.tracker.record(null);
      if (e.retryable && this.nothingLeft()) return; // finishing, every sentence is in
      this.phase = 'backoff';
      throw e;
    }
    if (this.aborted) {
      conn.close();
      throw new AbortError(ABORTED);
    }
    live.conn = conn;
    live.connectedAtMono = this.clock.monotonicMs();
    this.tasks++;
    this.current = live;
    this.phase = 'connected';
    this.opts.metrics.asrActiveSessions.inc({ model });
    if (this.statusValue === 'pending') this.setStatus('active');
    this.log.debug({ taskId: conn.taskId, offsetMs: this.replay.startMs, replayMs: this.replay.durationMs }, 'ASR task started');
    let outcome = 'failed';
    try {
      this.sendChunks(live, this.replay.snapshot());
      await this.runTask(live, conn);
      outcome = 'finished';
    } catch (err) {
      if (this.current === live) this.current = null;
      conn.close();
      if (this.aborted) {
        outcome = 'aborted';
        throw new AbortError(ABORTED);
      }
      const e = toAppError(err);
      this.noteError(e, 'task', model);
      const healthy = this.tracker.record({
        livedMs: this.clock.monotonicMs() - live.connectedAtMono,
        deliveredFinal: live.deliveredFinal,
      });
      if (e.retryable && this.nothingLeft()) return; // finishing, every sentence is in
      this.phase = 'backoff';
      if (e.retryable && healthy) throw new HealthyDrop(e);
      throw e;
    } finally {
      if (this.current === live) this.current = null;
      this.opts.metrics.asrActiveSessions.dec({ model });
      this.opts.metrics.asrSessions.inc({ model, outcome });
    }
  }

  /** Lives until the task fails (throws) or finish was requested and the provider finished. */
  private async runTask(live: LiveTask, conn: AsrConnection): Promise<void> {
    if (!this.finishRequested) await Promise.race([live.ended.promise, this.finishWake.promise]);
    if (this.aborted) throw abortedError();
    if (live.error) throw live.error;
    if (live.timeline.sentMs === 0) {
      // nothing was ever sent on this task: finish-task would only provoke NO_VALID_AUDIO
      conn.close();
      return;
    }
    const finished = conn.finish(this.opts.finishTimeoutMs);
    finished.catch(() => undefined); // may settle after ended won the race
    await Promise.race([finished, live.ended.promise]);
    conn.close();
  }

  /** finish() was called and the replay buffer is empty: no audio awaits recognition. */
  private nothingLeft(): boolean {
    return this.finishRequested && this.replay.isEmpty;
  }

  private onConnectionError(live: LiveTask, err: AppError): void {
    if (live.error) return;
    live.error = err;
    if (this.current === live) this.current = null; // live audio now only goes to the replay buffer
    live.ended.reject(err);
  }

  private onEvent(live: LiveTask, event: AsrEvent): void {
    if (this.aborted || live.error || this.current !== live || !live.conn) return;
    if (event.type === 'interim') {
      const startMs = live.timeline.toCallMs(event.startMs, 'start');
      if (startMs === null || !this.opts.onInterim) return;
      try {
        this.opts.onInterim({ startMs: Math.round(startMs), text: event.text, asrTaskId: live.conn.taskId });
      } catch (err) {
        this.log.error({ code: 'ERR_ASR_HANDLER', err: errorMessage(err) }, 'onInterim threw');
      }
      return;
    }
    const mappedStart = live.timeline.toCallMs(event.startMs, 'start');
    const mappedEnd = live.timeline.toCallMs(event.endMs, 'end');
    if (mappedStart === null || mappedEnd === null) {
      // a final before any audio was sent cannot be placed on the call timeline
      this.log.warn({ code: 'ERR_ASR_UNPLACEABLE_FINAL' }, 'final result before any audio was sent dropped');
      return;
    }
    const endMs = Math.round(mappedEnd);
    const startMs = Math.min(Math.round(mappedStart), endMs);
    if (endMs <= this.lastFinalEndMs) {
      this.duplicateFinals++;
      this.log.debug({ endMs, lastFinalEndMs: this.lastFinalEndMs }, 'duplicate final dropped');
      return;
    }
    this.lastFinalEndMs = endMs;
    live.deliveredFinal = true;
    const audioEndAt = this.marks.lookup(endMs);
    if (event.text.trim() === '') {
      this.emptyFinals++;
    } else {
      const words: Word[] = event.words.map((w) => ({
        startMs: Math.round(live.timeline.toCallMs(w.startMs, 'start') ?? startMs),
        endMs: Math.round(live.timeline.toCallMs(w.endMs, 'end') ?? endMs),
        text: w.text,
        punctuation: w.punctuation,
      }));
      const utterance: Utterance = {
        callId: this.opts.callId,
        role: this.opts.role,
        track: this.opts.track,
        seq: ++this.seq,
        startMs,
        endMs,
        text: event.text,
        words,
        // the model and provider of the task that produced the sentence
        emotion: event.emotion
          ? live.candidate.provider.normaliseEmotion(live.model, event.emotion.raw, event.emotion.confidence)
          : null,
        model: live.model,
        asrTaskId: live.conn.taskId,
        timing: { audioEndAt, finalReceivedAt: this.clock.now() },
      };
      this.utterances++;
      try {
        this.opts.onUtterance(utterance);
      } catch (err) {
        this.log.error({ code: 'ERR_ASR_HANDLER', seq: utterance.seq, err: errorMessage(err) }, 'onUtterance threw');
      }
    }
    this.replay.trimBefore(endMs);
    this.marks.pruneBefore(endMs);
  }

  private sendChunks(live: LiveTask, chunks: readonly PcmChunk[]): void {
    const conn = live.conn;
    if (!conn || chunks.length === 0) return;
    // live path: one 100 ms chunk goes out as it is (no framing work, no allocation)
    const frames =
      chunks.length === 1 && chunks[0]!.pcm.length <= SEND_FRAME_BYTES ? chunks : toSendFrames(chunks, SEND_FRAME_BYTES);
    for (const frame of frames) {
      if (live.error || this.aborted) return;
      const ms = frame.pcm.length / PCM_BYTES_PER_MS;
      live.timeline.noteSent(frame.startMs, ms);
      conn.sendAudio(frame.pcm);
      this.audioSentMs += ms;
      this.opts.metrics.asrAudioSentMs.inc({ model: live.model }, ms);
    }
    const now = this.clock.now();
    for (const chunk of chunks) {
      const end = chunkEndMs(chunk);
      if (end > this.firstSentUntilMs) {
        this.opts.metrics.frameToAsrSendMs.observe(Math.max(0, now - chunk.receivedAt));
        this.firstSentUntilMs = end;
      }
    }
  }

  private accountDropped(spans: readonly DroppedSpan[]): void {
    let droppedMs = 0;
    for (const span of spans) {
      droppedMs += span.durationMs;
      const end = span.startMs + span.durationMs;
      this.replayLostMs += Math.max(0, end - Math.max(span.startMs, this.firstSentUntilMs));
    }
    this.replayDroppedMs += droppedMs;
    this.opts.metrics.asrReplayDroppedMs.inc({ model: this.model }, droppedMs);
  }

  private noteError(e: AppError, phase: 'connect' | 'task', model: string): void {
    this.lastError = e;
    this.opts.metrics.asrErrors.inc({ model, code: e.code });
    this.log.warn({ code: e.code, retryable: e.retryable, phase, details: e.details }, 'ASR connection failed');
  }

  private complete(): void {
    this.phase = 'done';
    this.replay.clear();
    this.setStatus('finished');
  }

  private failStream(e: AppError, log: boolean): void {
    if (this.statusValue === 'finished' || this.statusValue === 'failed') return;
    this.phase = 'done';
    this.replay.clear();
    if (log) this.log.error({ code: e.code, details: e.details }, 'ASR stream failed');
    this.setStatus('failed', e);
  }

  private setStatus(status: StreamStatus, err?: AppError): void {
    if (this.statusValue === status) return;
    this.statusValue = status;
    if (err) {
      this.errorCode = err.code;
      const providerMessage = err.details['providerMessage'];
      this.errorText = typeof providerMessage === 'string' && providerMessage !== '' ? providerMessage : err.message;
    }
    this.emitStatus();
  }

  private emitStatus(failover?: { readonly failoverFrom: string; readonly failoverReason: string }): void {
    try {
      this.opts.onStatus({
        status: this.statusValue,
        errorCode: this.errorCode,
        errorMessage: this.errorText,
        reconnects: this.reconnects,
        utterances: this.utterances,
        model: this.model,
        failovers: this.failovers,
        ...failover,
      });
    } catch (err) {
      this.log.error({ code: 'ERR_ASR_HANDLER', err: errorMessage(err) }, 'onStatus threw');
    }
  }
}
