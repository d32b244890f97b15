/**
 * DashScope Paraformer real-time client (duplex "inference" protocol, spec Part A) behind the
 * provider-neutral AsrProvider contract. One connection = one task: open the socket with the
 * API key on the upgrade, send run-task, wait for task-started, stream binary PCM, finish
 * with finish-task → task-finished. No retries here: the AsrStreamRunner is the only retry
 * layer; this module only classifies failures (AppError.retryable).
 *
 * Malformed server messages (spec A3 says both SDKs treat them as fatal): before task-started
 * any invalid or unexpected message fails the connect (ERR_ASR_PROTOCOL, retryable). After
 * task-started a single invalid message (bad JSON, bad shape, unknown event, binary frame,
 * foreign task_id) is dropped, logged without content and counted (asrErrors
 * code=ERR_ASR_PROTOCOL); more than `maxProtocolErrors` on one connection escalate to
 * onError(ERR_ASR_PROTOCOL, retryable) — one garbled result should not cost a reconnect and
 * a replay, a garbage stream should.
 *
 * Liveness: after task-started the client pings every `pingIntervalMs`; when nothing at all
 * (pong or message) arrived during a whole interval the connection is declared dead
 * (ERR_ASR_DISCONNECTED), so a half-open TCP connection cannot silently swallow audio.
 */
import { WebSocket, type RawData } from 'ws';
import { AppError } from '../../../core/errors.js';
import type { Emotion } from '../../../core/types.js';
import type { Logger } from '../../../observability/logger.js';
import type { Metrics } from '../../../observability/metrics.js';
import { normaliseParaformerEmotion, PARAFORMER_EMOTION_LABELS } from '../../emotion.js';
import type {
  AsrCapabilities,
  AsrConnection,
  AsrConnectionHandlers,
  AsrConnectOptions,
  AsrProvider,
} from '../../provider.js';
import {
  buildFinishTask,
  buildRunTask,
  handshakeError,
  newTaskId,
  parseServerMessage,
  sentenceToAsrEvent,
  taskFailedError,
  type ParseFailureReason,
} from './messages.js';

export const PARAFORMER_PROVIDER_NAME = 'dashscope-paraformer';
export const PARAFORMER_MODELS = ['paraformer-realtime-8k-v2', 'paraformer-realtime-v2'] as const;

const CAPABILITIES: Readonly<Record<string, AsrCapabilities>> = {
  'paraformer-realtime-8k-v2': {
    emotionLabels: PARAFORMER_EMOTION_LABELS,
    emotionConfidence: true,
    wordTimestamps: true,
    sampleRatesHz: [8000],
  },
  'paraformer-realtime-v2': {
    emotionLabels: [],
    emotionConfidence: false,
    wordTimestamps: true,
    sampleRatesHz: [8000, 16000],
  },
};

export interface ParaformerProviderOptions {
  readonly url: string;
  readonly apiKey: string | undefined;
  readonly workspace?: string | undefined;
  readonly logger: Logger;
  /** Upgrade + run-task → task-started, ms. Default 10 000. */
  readonly connectTimeoutMs?: number | undefined;
  readonly userAgent?: string | undefined;
  /** Optional: counts dropped malformed server messages (asrErrors code=ERR_ASR_PROTOCOL). */
  readonly metrics?: Metrics | undefined;
  /** Client ping cadence after task-started, ms; 0 disables the liveness check. Default 20 000. */
  readonly pingIntervalMs?: number | undefined;
  /** Dropped malformed messages tolerated per connection before it is failed. Default 10. */
  readonly maxProtocolErrors?: number | undefined;
  /** Largest server frame accepted, bytes. Default 1 MiB. */
  readonly maxPayloadBytes?: number | undefined;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_PING_INTERVAL_MS = 20_000;
const DEFAULT_MAX_PROTOCOL_ERRORS = 10;
const DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20;
/** A polite close that gets no answer is cut off after this long (pipecat's WS_CLOSE_TIMEOUT). */
const CLOSE_TIMEOUT_MS = 2_000;

function defaultUserAgent(): string {
  return `callscribe/0.1.0; node/${process.versions.node}; platform/${process.platform}; processor/${process.arch}`;
}

export function createParaformerProvider(opts: ParaformerProviderOptions): AsrProvider {
  const deps: ConnectionDeps = {
    url: opts.url,
    apiKey: opts.apiKey,
    workspace: opts.workspace,
    logger: opts.logger,
    connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    userAgent: opts.userAgent ?? defaultUserAgent(),
    metrics: opts.metrics,
    pingIntervalMs: opts.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
    maxProtocolErrors: opts.maxProtocolErrors ?? DEFAULT_MAX_PROTOCOL_ERRORS,
    maxPayloadBytes: opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
  };
  return {
    name: PARAFORMER_PROVIDER_NAME,
    models: PARAFORMER_MODELS,
    capabilities(model: string): AsrCapabilities {
      const caps = CAPABILITIES[model];
      if (!caps) throw unsupportedModel(model);
      return caps;
    },
    connect(options: AsrConnectOptions, handlers: AsrConnectionHandlers): Promise<AsrConnection> {
      return openConnection(deps, options, handlers);
    },
    normaliseEmotion(model: string, raw: string, confidence: number | null): Emotion {
      return normaliseParaformerEmotion(model, raw, confidence);
    },
  };
}

function unsupportedModel(model: string): AppError {
  return new AppError('ERR_ASR_UNSUPPORTED_MODEL', 'model not supported by the paraformer provider', {
    category: 'invalid_request',
    retryable: false,
    details: { model },
  });
}

interface ConnectionDeps {
  readonly url: string;
  readonly apiKey: string | undefined;
  readonly workspace: string | undefined;
  readonly logger: Logger;
  readonly connectTimeoutMs: number;
  readonly userAgent: string;
  readonly metrics: Metrics | undefined;
  readonly pingIntervalMs: number;
  readonly maxProtocolErrors: number;
  readonly maxPayloadBytes: number;
}

function openConnection(
  deps: ConnectionDeps,
  options: AsrConnectOptions,
  handlers: AsrConnectionHandlers,
): Promise<AsrConnection> {
  if (!(PARAFORMER_MODELS as readonly string[]).includes(options.model)) {
    return Promise.reject(unsupportedModel(options.model));
  }
  if (options.model === 'paraformer-realtime-8k-v2' && options.sampleRateHz !== 8000) {
    return Promise.reject(
      new AppError('ERR_ASR_BAD_REQUEST', 'paraformer-realtime-8k-v2 accepts 8000 Hz only', {
        category: 'invalid_request',
        retryable: false,
        details: { model: options.model, sampleRateHz: options.sampleRateHz },
      }),
    );
  }
  if (!deps.apiKey) {
    return Promise.reject(
      new AppError('ERR_ASR_NO_API_KEY', 'no DashScope API key configured', {
        category: 'authentication',
        retryable: false,
      }),
    );
  }
  const headers: Record<string, string> = {
    Authorization: `Bearer ${deps.apiKey}`,
    'user-agent': deps.userAgent,
  };
  if (deps.workspace) headers['X-DashScope-WorkSpace'] = deps.workspace;
  let ws: WebSocket;
  try {
    ws = new WebSocket(deps.url, { headers, maxPayload: deps.maxPayloadBytes, perMessageDeflate: false });
  } catch (err) {
    // only a malformed URL throws synchronously
    return Promise.reject(
      new AppError('ERR_ASR_BAD_REQUEST', 'invalid recogniser URL', {
        category: 'invalid_request',
        retryable: false,
        cause: err,
      }),
    );
  }
  return new Promise<AsrConnection>((resolve, reject) => {
    // the constructor wires every listener; it settles the promise exactly once
    new ParaformerConnection(deps, ws, options, handlers, resolve, reject);
  });
}

type State = 'connecting' | 'starting' | 'running' | 'finishing' | 'finished' | 'failed' | 'closed';

function rawDataToString(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

function errCode(err: Error): string | undefined {
  return 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

class ParaformerConnection implements AsrConnection {
  readonly taskId: string;
  private state: State = 'connecting';
  private readonly log: Logger;
  private readonly model: string;
  private connectTimer: NodeJS.Timeout | null = null;
  private finishTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private closeTimer: NodeJS.Timeout | null = null;
  private heardSinceLastPing = true;
  private protocolErrors = 0;
  private terminalError: AppError | null = null;
  private finishPromise: Promise<void> | null = null;
  private finishSettle: { resolve: () => void; reject: (e: AppError) => void } | null = null;

  constructor(
    private readonly deps: ConnectionDeps,
    private readonly ws: WebSocket,
    private readonly options: AsrConnectOptions,
    private readonly handlers: AsrConnectionHandlers,
    private readonly resolveStart: (c: AsrConnection) => void,
    private readonly rejectStart: (e: AppError) => void,
  ) {
    this.taskId = newTaskId();
    this.model = options.model;
    this.log = deps.logger.child({ taskId: this.taskId, model: this.model, ...(options.logContext ?? {}) });
    this.connectTimer = setTimeout(() => this.onConnectTimeout(), deps.connectTimeoutMs);
    this.ws.on('open', () => this.onOpen());
    this.ws.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      this.failStart(handshakeError(status));
    });
    this.ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    this.ws.on('pong', () => {
      this.heardSinceLastPing = true;
    });
    this.ws.on('error', (err) => this.onSocketError(err));
    this.ws.on('close', (code, reason) => this.onClose(code, reason.toString('utf8')));
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  sendAudio(pcm: Buffer): void {
    if (this.state !== 'running' || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(pcm, { binary: true });
  }

  finish(timeoutMs: number): Promise<void> {
    if (this.finishPromise) return this.finishPromise;
    if (this.state !== 'running') {
      this.finishPromise = Promise.reject(this.terminalError ?? closedError());
      return this.finishPromise;
    }
    this.state = 'finishing';
    this.finishPromise = new Promise<void>((resolve, reject) => {
      this.finishSettle = { resolve, reject };
    });
    this.ws.send(JSON.stringify(buildFinishTask(this.taskId)));
    this.finishTimer = setTimeout(() => {
      this.log.warn({ code: 'ERR_ASR_FINISH_TIMEOUT', timeoutMs }, 'recogniser did not finish the task in time');
      this.fail(
        new AppError('ERR_ASR_FINISH_TIMEOUT', 'recogniser did not confirm task-finished in time', {
          category: 'server',
          retryable: true,
          details: { timeoutMs, taskId: this.taskId },
        }),
      );
    }, timeoutMs);
    return this.finishPromise;
  }

  close(): void {
    if (this.state === 'closed') return;
    const wasFinishing = this.state === 'finishing';
    this.state = 'closed';
    this.clearTimers();
    if (wasFinishing && this.finishSettle) {
      this.finishSettle.reject(closedError());
      this.finishSettle = null;
    }
    this.closeSocket();
  }

  // -------------------------------------------------------------------------------------------

  private onOpen(): void {
    if (this.state !== 'connecting') return;
    this.state = 'starting';
    const language = this.options.language;
    const runTask = buildRunTask({
      taskId: this.taskId,
      model: this.model,
      sampleRateHz: this.options.sampleRateHz,
      vocabularyId: this.options.vocabularyId,
      languageHints: this.model === 'paraformer-realtime-v2' && language ? [language] : undefined,
      disfluencyRemoval: this.options.disfluencyRemoval,
      maxSentenceSilenceMs: this.options.maxSentenceSilenceMs,
    });
    this.ws.send(JSON.stringify(runTask));
  }

  private onConnectTimeout(): void {
    this.failStart(
      new AppError('ERR_ASR_CONNECT_TIMEOUT', 'recogniser did not start the task in time', {
        category: 'connectivity',
        retryable: true,
        details: { timeoutMs: this.deps.connectTimeoutMs, phase: this.state },
      }),
    );
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.heardSinceLastPing = true;
    if (this.state === 'finished' || this.state === 'failed' || this.state === 'closed') return;
    if (isBinary) {
      this.protocolError('binary-frame', null, []);
      return;
    }
    const parsed = parseServerMessage(rawDataToString(data));
    if (!parsed.ok) {
      this.protocolError(parsed.reason, parsed.eventName, parsed.paths);
      return;
    }
    const ev = parsed.event;
    if (ev.taskId !== this.taskId) {
      this.protocolError('task-id-mismatch', ev.event, []);
      return;
    }
    if (this.state === 'starting' || this.state === 'connecting') {
      if (ev.event === 'task-started') {
        this.state = 'running';
        this.clearConnectTimer();
        this.startPing();
        this.log.debug('recogniser task started');
        this.resolveStart(this);
      } else if (ev.event === 'task-failed') {
        this.failStart(taskFailedError(ev.errorCode, ev.errorMessage, this.taskId));
      } else {
        this.protocolError('unexpected-event', ev.event, []);
      }
      return;
    }
    // running or finishing
    switch (ev.event) {
      case 'task-started':
        this.protocolError('unexpected-event', ev.event, []);
        return;
      case 'result-generated': {
        const event = sentenceToAsrEvent(ev.sentence);
        if (!event) return; // heartbeat
        try {
          this.handlers.onEvent(event);
        } catch (err) {
          this.log.error({ code: 'ERR_ASR_HANDLER', err }, 'ASR event handler threw');
        }
        return;
      }
      case 'task-finished':
        if (this.state === 'finishing') {
          this.state = 'finished';
          this.clearTimers();
          const settle = this.finishSettle;
          this.finishSettle = null;
          settle?.resolve();
          this.closeSocket();
        } else {
          this.fail(
            new AppError('ERR_ASR_TASK_FAILED', 'recogniser ended the task unasked', {
              category: 'server',
              retryable: true,
              details: { taskId: this.taskId, providerEvent: 'task-finished' },
            }),
          );
        }
        return;
      case 'task-failed':
        this.fail(taskFailedError(ev.errorCode, ev.errorMessage, this.taskId));
        return;
    }
  }

  private protocolError(
    reason: ParseFailureReason | 'task-id-mismatch' | 'unexpected-event',
    eventName: string | null,
    paths: readonly string[],
  ): void {
    this.protocolErrors++;
    this.deps.metrics?.asrErrors.inc({ model: this.model, code: 'ERR_ASR_PROTOCOL' });
    this.log.warn({ code: 'ERR_ASR_PROTOCOL', reason, eventName, paths, count: this.protocolErrors }, 'invalid message from recogniser dropped');
    const err = new AppError('ERR_ASR_PROTOCOL', 'invalid message from recogniser', {
      category: 'protocol',
      retryable: true,
      details: { reason, eventName, taskId: this.taskId },
    });
    if (this.state === 'connecting' || this.state === 'starting') {
      this.failStart(err);
    } else if (this.protocolErrors > this.deps.maxProtocolErrors) {
      this.fail(err);
    }
  }

  private onSocketError(err: Error): void {
    const details = { wsError: errCode(err) ?? 'unknown', taskId: this.taskId };
    if (this.state === 'connecting' || this.state === 'starting') {
      this.failStart(
        new AppError('ERR_ASR_CONNECT', 'could not connect to the recogniser', {
          category: 'connectivity',
          retryable: true,
          cause: err,
          details,
        }),
      );
    } else {
      this.fail(
        new AppError('ERR_ASR_DISCONNECTED', 'recogniser connection failed', {
          category: 'connectivity',
          retryable: true,
          cause: err,
          details,
        }),
      );
    }
  }

  private onClose(code: number, reason: string): void {
    this.clearCloseTimer();
    const details = { closeCode: code, closeReason: reason.slice(0, 123), taskId: this.taskId };
    if (this.state === 'connecting' || this.state === 'starting') {
      // 1007 before start: the gateway rejected the payload (e.g. "Model not found", spec A8)
      this.failStart(
        code === 1007
          ? new AppError('ERR_ASR_BAD_REQUEST', 'recogniser rejected the task', {
              category: 'invalid_request',
              retryable: false,
              details,
            })
          : new AppError('ERR_ASR_CONNECT', 'recogniser closed the connection before the task started', {
              category: 'connectivity',
              retryable: true,
              details,
            }),
      );
      return;
    }
    this.fail(
      new AppError('ERR_ASR_DISCONNECTED', 'recogniser connection closed', {
        category: 'connectivity',
        retryable: true,
        details,
      }),
    );
  }

  /** Fails the connect (before task-started). Settles the connect promise once. */
  private failStart(err: AppError): void {
    if (this.state !== 'connecting' && this.state !== 'starting') return;
    this.state = 'failed';
    this.terminalError = err;
    this.clearTimers();
    this.log.info({ code: err.code, ...err.details }, 'recogniser connect failed');
    this.rejectStart(err);
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }

  /** Fails a started task: rejects a pending finish(), else calls onError — once. */
  private fail(err: AppError): void {
    if (this.state !== 'running' && this.state !== 'finishing') return;
    const wasFinishing = this.state === 'finishing';
    this.state = 'failed';
    this.terminalError = err;
    this.clearTimers();
    this.log.info({ code: err.code, ...err.details }, 'recogniser task ended with an error');
    if (wasFinishing) {
      const settle = this.finishSettle;
      this.finishSettle = null;
      settle?.reject(err);
    } else {
      try {
        this.handlers.onError(err);
      } catch (handlerErr) {
        this.log.error({ code: 'ERR_ASR_HANDLER', err: handlerErr }, 'ASR error handler threw');
      }
    }
    this.closeSocket();
  }

  private startPing(): void {
    if (this.deps.pingIntervalMs <= 0) return;
    this.heardSinceLastPing = true;
    this.pingTimer = setInterval(() => {
      if (!this.heardSinceLastPing) {
        this.fail(
          new AppError('ERR_ASR_DISCONNECTED', 'recogniser stopped answering pings', {
            category: 'connectivity',
            retryable: true,
            details: { reason: 'ping-timeout', taskId: this.taskId },
          }),
        );
        return;
      }
      this.heardSinceLastPing = false;
      if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
    }, this.deps.pingIntervalMs);
    this.pingTimer.unref();
  }

  private closeSocket(): void {
    const rs = this.ws.readyState;
    if (rs === WebSocket.CLOSED) return;
    if (rs === WebSocket.OPEN) {
      this.ws.close(1000);
      if (!this.closeTimer) {
        this.closeTimer = setTimeout(() => {
          if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
        }, CLOSE_TIMEOUT_MS);
        this.closeTimer.unref();
      }
    } else if (rs === WebSocket.CONNECTING) {
      this.ws.terminate();
    }
    // CLOSING: the close handshake is already under way (with its own timer)
  }

  private clearConnectTimer(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }

  private clearCloseTimer(): void {
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.closeTimer = null;
  }

  private clearTimers(): void {
    this.clearConnectTimer();
    if (this.finishTimer) clearTimeout(this.finishTimer);
    this.finishTimer = null;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }
}

function closedError(): AppError {
  return new AppError('ERR_ASR_CLOSED', 'recogniser connection already closed', {
    category: 'application',
    retryable: false,
  });
}
