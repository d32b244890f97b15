/**
 * In-process fake AsrProvider for unit tests of the AsrStreamRunner (agents-js fake_stt):
 * scripted results in task time, injected connect failures by attempt, a drop after N audio
 * bytes, finish behaviours, and counters. Every callback into the runner is asynchronous
 * (a microtask later), as with a real socket.
 *
 * The DashScope emulator (src/emulator/) is for anything that should exercise the real wire
 * protocol; this fake is for the runner's logic only.
 */
import { AppError } from '../../core/errors.js';
import { PCM_BYTES_PER_MS, type Emotion } from '../../core/types.js';
import { normaliseParaformerEmotion } from '../emotion.js';
import type {
  AsrCapabilities,
  AsrConnection,
  AsrConnectionHandlers,
  AsrConnectOptions,
  AsrEvent,
  AsrProvider,
  AsrWord,
} from '../provider.js';

/** An event to deliver once the connection has received `atMs` of audio, or on finish. */
export interface FakeScriptedEvent {
  readonly atMs: number | 'finish';
  readonly event: AsrEvent;
}

export type FakeFinishBehaviour = 'ok' | 'hang' | AppError;

export interface FakeConnectionScript {
  readonly events?: readonly FakeScriptedEvent[];
  /** Fail the connection (onError) once this many audio bytes have arrived. */
  readonly dropAfterBytes?: number;
  /** Error for the drop; default ERR_ASR_DISCONNECTED (retryable). */
  readonly dropError?: AppError;
  /** 'ok' (default): deliver 'finish' events, then resolve; 'hang': never answer (the
   * runner's finish timeout applies); an AppError: reject with it. */
  readonly finish?: FakeFinishBehaviour;
}

export interface FakeAsrOptions {
  readonly name?: string;
  readonly models?: readonly string[];
  /** Error to reject the n-th connect() with (1-based, counting every attempt); also gets the
   * connect options, for model-specific failures. */
  readonly connectError?: (attempt: number, options: AsrConnectOptions) => AppError | undefined;
  /** Script for the n-th successful connection (1-based). */
  readonly script?: (connection: number) => FakeConnectionScript;
  /** Delay before connect() settles, ms (real timers). */
  readonly connectDelayMs?: number;
  /** Emotion normalisation; default the paraformer mapping (provider = model). */
  readonly normaliseEmotion?: (model: string, raw: string, confidence: number | null) => Emotion;
}

export function disconnectedError(): AppError {
  return new AppError('ERR_ASR_DISCONNECTED', 'fake: connection dropped', { category: 'connectivity', retryable: true });
}

export function authError(): AppError {
  return new AppError('ERR_ASR_AUTH', 'fake: key refused', { category: 'authentication', retryable: false });
}

export function throttledError(): AppError {
  return new AppError('ERR_ASR_THROTTLED', 'fake: throttled', { category: 'rate_limit', retryable: true });
}

export function noApiKeyError(): AppError {
  return new AppError('ERR_ASR_NO_API_KEY', 'fake: no key', { category: 'authentication', retryable: false });
}

export function quotaError(): AppError {
  return new AppError('ERR_ASR_QUOTA', 'fake: account in arrears', { category: 'quota', retryable: false });
}

export function unsupportedModelError(model = 'fake-8k'): AppError {
  return new AppError('ERR_ASR_UNSUPPORTED_MODEL', 'fake: model not supported', {
    category: 'invalid_request',
    retryable: false,
    details: { model },
  });
}

export function badRequestError(): AppError {
  return new AppError('ERR_ASR_BAD_REQUEST', 'fake: request rejected', { category: 'invalid_request', retryable: false });
}

export function taskFailedError(): AppError {
  return new AppError('ERR_ASR_TASK_FAILED', 'fake: task failed', { category: 'server', retryable: true });
}

/** A final result in task time. */
export function fakeFinal(
  startMs: number,
  endMs: number,
  text: string,
  extra: { words?: readonly AsrWord[]; emotion?: { raw: string; confidence: number | null } | null } = {},
): AsrEvent {
  return { type: 'final', startMs, endMs, text, words: extra.words ?? [], emotion: extra.emotion ?? null };
}

export function fakeInterim(startMs: number, text: string): AsrEvent {
  return { type: 'interim', startMs, text };
}

export class FakeAsrConnection implements AsrConnection {
  readonly taskId: string;
  /** Every audio frame received, in order. */
  readonly frames: Buffer[] = [];
  /** Frames sendAudio() got after the drop or after close/finish (not part of `audio`). */
  ignoredFrames = 0;
  finishCalls = 0;
  closed = false;
  failed: AppError | null = null;
  finished = false;
  private receivedBytes = 0;
  private pending: FakeScriptedEvent[];
  private readonly script: FakeConnectionScript;

  constructor(
    readonly index: number,
    readonly options: AsrConnectOptions,
    private readonly handlers: AsrConnectionHandlers,
    script: FakeConnectionScript,
  ) {
    this.taskId = `fake-task-${index}`;
    this.script = script;
    this.pending = [...(script.events ?? [])];
  }

  /** All audio received, concatenated. */
  get audio(): Buffer {
    return Buffer.concat(this.frames);
  }

  get receivedMs(): number {
    return this.receivedBytes / PCM_BYTES_PER_MS;
  }

  get bufferedAmount(): number {
    return 0;
  }

  sendAudio(pcm: Buffer): void {
    if (this.closed || this.failed || this.finishCalls > 0) {
      this.ignoredFrames++;
      return;
    }
    this.frames.push(Buffer.from(pcm));
    this.receivedBytes += pcm.length;
    this.deliverDue();
    const dropAt = this.script.dropAfterBytes;
    if (dropAt !== undefined && this.receivedBytes >= dropAt) {
      this.fail(this.script.dropError ?? disconnectedError());
    }
  }

  finish(timeoutMs: number): Promise<void> {
    this.finishCalls++;
    if (this.failed) return Promise.reject(this.failed);
    if (this.closed) return Promise.reject(new AppError('ERR_ASR_CLOSED', 'fake: closed', { category: 'application', retryable: false }));
    const behaviour = this.script.finish ?? 'ok';
    if (behaviour === 'hang') {
      return new Promise<void>((_resolve, reject) => {
        const t = setTimeout(() => {
          reject(new AppError('ERR_ASR_FINISH_TIMEOUT', 'fake: finish timed out', { category: 'server', retryable: true }));
        }, timeoutMs);
        t.unref();
      });
    }
    if (behaviour instanceof AppError) {
      this.failed = behaviour;
      return Promise.reject(behaviour);
    }
    return new Promise<void>((resolve) => {
      queueMicrotask(() => {
        for (const item of this.takeEvents((s) => s.atMs === 'finish' || s.atMs <= this.receivedMs)) {
          if (this.closed) break;
          this.handlers.onEvent(item.event);
        }
        this.finished = true;
        resolve();
      });
    });
  }

  close(): void {
    this.closed = true;
  }

  /** Delivers an event now (asynchronously), bypassing the script. */
  emit(event: AsrEvent): void {
    if (this.failed) return; // nothing is delivered after a failure
    queueMicrotask(() => {
      // events queued before a failure still arrive first, as on a real socket
      if (!this.closed) this.handlers.onEvent(event);
    });
  }

  /** Fails the connection now (asynchronously): onError once. */
  fail(error: AppError = disconnectedError()): void {
    if (this.failed || this.closed || this.finished) return;
    this.failed = error;
    queueMicrotask(() => this.handlers.onError(error));
  }

  private takeEvents(due: (s: FakeScriptedEvent) => boolean): FakeScriptedEvent[] {
    const now = this.pending.filter(due);
    this.pending = this.pending.filter((s) => !due(s));
    return now;
  }

  private deliverDue(): void {
    const due = this.takeEvents((s) => s.atMs !== 'finish' && s.atMs <= this.receivedMs);
    for (const item of due) this.emit(item.event);
  }
}

export class FakeAsrProvider implements AsrProvider {
  readonly name: string;
  readonly models: readonly string[];
  /** Every connect() call. */
  connectAttempts = 0;
  /** Successful connections, in order. */
  readonly connections: FakeAsrConnection[] = [];
  private readonly opts: FakeAsrOptions;

  constructor(opts: FakeAsrOptions = {}) {
    this.opts = opts;
    this.name = opts.name ?? 'fake';
    this.models = opts.models ?? ['fake-8k'];
  }

  capabilities(): AsrCapabilities {
    return { emotionLabels: ['positive', 'negative', 'neutral'], emotionConfidence: true, wordTimestamps: true, sampleRatesHz: [8000] };
  }

  async connect(options: AsrConnectOptions, handlers: AsrConnectionHandlers): Promise<AsrConnection> {
    this.connectAttempts++;
    const attempt = this.connectAttempts;
    if (this.opts.connectDelayMs) await new Promise((r) => setTimeout(r, this.opts.connectDelayMs));
    else await Promise.resolve();
    const err = this.opts.connectError?.(attempt, options);
    if (err) throw err;
    const index = this.connections.length + 1;
    const conn = new FakeAsrConnection(index, options, handlers, this.opts.script?.(index) ?? {});
    this.connections.push(conn);
    return conn;
  }

  normaliseEmotion(model: string, raw: string, confidence: number | null): Emotion {
    return (this.opts.normaliseEmotion ?? normaliseParaformerEmotion)(model, raw, confidence);
  }

  /** The n-th successful connection (1-based). */
  connection(n: number): FakeAsrConnection {
    const c = this.connections[n - 1];
    if (!c) throw new Error(`fake: no connection #${n}`);
    return c;
  }
}
