/**
 * WebSocket connection lifecycle shared by the DashScope providers (paraformer, qwen): socket
 * setup, connect timeout, ping liveness, fail-before-start (failStart: rejects the connect
 * promise) vs fail-after-start (fail: rejects a pending finish(), else onError — once), the
 * finish handshake timer, and the polite close with its cut-off. Each provider subclasses
 * DashScopeWsConnection and keeps only its protocol: what it sends on open / at finish, how
 * it parses server frames, and its own wording (log messages and error texts stay literals
 * in the provider, passed in as `WsConnectionTexts`).
 */
import { WebSocket, type RawData } from 'ws';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type { AsrConnection, AsrConnectionHandlers, AsrConnectOptions, AsrEvent } from '../provider.js';

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_PING_INTERVAL_MS = 20_000;
const DEFAULT_MAX_PROTOCOL_ERRORS = 10;
const DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20;
/** A polite close that gets no answer is cut off after this long (pipecat's WS_CLOSE_TIMEOUT). */
const CLOSE_TIMEOUT_MS = 2_000;

function defaultUserAgent(): string {
  return `callscribe/0.1.0; node/${process.versions.node}; platform/${process.platform}; processor/${process.arch}`;
}

/** Options every DashScope provider takes (each provider adds its own). */
export interface DashScopeProviderOptions {
  readonly url: string;
  readonly apiKey: string | undefined;
  readonly workspace?: string | undefined;
  readonly logger: Logger;
  /** Optional: counts dropped malformed server messages (asrErrors code=ERR_ASR_PROTOCOL). */
  readonly metrics?: Metrics | undefined;
  /** Upgrade until the provider's task/session has started, ms. Default 10 000. */
  readonly connectTimeoutMs?: number | undefined;
  readonly userAgent?: string | undefined;
  /** Client ping cadence once started, ms; 0 disables the liveness check. Default 20 000. */
  readonly pingIntervalMs?: number | undefined;
  /** Dropped malformed messages tolerated per connection before it is failed. Default 10. */
  readonly maxProtocolErrors?: number | undefined;
  /** Largest server frame accepted, bytes. Default 1 MiB. */
  readonly maxPayloadBytes?: number | undefined;
}

/** DashScopeProviderOptions with the defaults filled in. */
export interface DashScopeDeps extends WsConnectionDeps {
  readonly url: string;
  readonly apiKey: string | undefined;
  readonly workspace: string | undefined;
  readonly logger: Logger;
  readonly userAgent: string;
  readonly maxPayloadBytes: number;
}

export function dashScopeDeps(opts: DashScopeProviderOptions): DashScopeDeps {
  return {
    url: opts.url,
    apiKey: opts.apiKey,
    workspace: opts.workspace,
    logger: opts.logger,
    metrics: opts.metrics,
    connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    userAgent: opts.userAgent ?? defaultUserAgent(),
    pingIntervalMs: opts.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
    maxProtocolErrors: opts.maxProtocolErrors ?? DEFAULT_MAX_PROTOCOL_ERRORS,
    maxPayloadBytes: opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
  };
}

export function rawDataToString(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

function errCode(err: Error): string | undefined {
  return 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

export function closedError(): AppError {
  return new AppError('ERR_ASR_CLOSED', 'recogniser connection already closed', {
    category: 'application',
    retryable: false,
  });
}

export interface DashScopeSocketOptions {
  readonly url: string;
  readonly apiKey: string | undefined;
  readonly workspace: string | undefined;
  readonly userAgent: string;
  readonly maxPayloadBytes: number;
  /** Sent between Authorization and user-agent. */
  readonly extraHeaders?: Readonly<Record<string, string>>;
}

/**
 * Checks the API key, opens the socket and hands it to `start`, which must wire a connection
 * that settles the promise exactly once (a DashScopeWsConnection does).
 */
export function openDashScopeSocket(
  opts: DashScopeSocketOptions,
  start: (ws: WebSocket, resolve: (c: AsrConnection) => void, reject: (e: AppError) => void) => void,
): Promise<AsrConnection> {
  if (!opts.apiKey) {
    return Promise.reject(
      new AppError('ERR_ASR_NO_API_KEY', 'no DashScope API key configured', {
        category: 'authentication',
        retryable: false,
      }),
    );
  }
  const headers: Record<string, string> = {
    Authorization: `Bearer ${opts.apiKey}`,
    ...opts.extraHeaders,
    'user-agent': opts.userAgent,
  };
  if (opts.workspace) headers['X-DashScope-WorkSpace'] = opts.workspace;
  let ws: WebSocket;
  try {
    ws = new WebSocket(opts.url, { headers, maxPayload: opts.maxPayloadBytes, perMessageDeflate: false });
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
    start(ws, resolve, reject);
  });
}

export interface WsConnectionDeps {
  readonly metrics: Metrics | undefined;
  readonly connectTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly maxProtocolErrors: number;
}

/** The provider's own wording (static strings). */
export interface WsConnectionTexts {
  /** ERR_ASR_CONNECT_TIMEOUT message. */
  readonly connectTimeout: string;
  /** debug log when the task/session is started. */
  readonly started: string;
  /** info log when a started task/session fails. */
  readonly failed: string;
  /** warn log when finish() times out. */
  readonly finishTimeoutLog: string;
  /** ERR_ASR_FINISH_TIMEOUT message. */
  readonly finishTimeout: string;
}

type CommonState = 'connecting' | 'running' | 'finishing' | 'finished' | 'failed' | 'closed';

/**
 * `S`: the provider's own starting states (between socket open and "started"); every state
 * other than running/finishing/finished/failed/closed counts as starting.
 */
export abstract class DashScopeWsConnection<D extends WsConnectionDeps, S extends string> implements AsrConnection {
  abstract readonly taskId: string;
  protected state: CommonState | S = 'connecting';
  protected readonly model: string;
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
    protected readonly deps: D,
    protected readonly ws: WebSocket,
    protected readonly options: AsrConnectOptions,
    protected readonly handlers: AsrConnectionHandlers,
    private readonly resolveStart: (c: AsrConnection) => void,
    private readonly rejectStart: (e: AppError) => void,
    protected log: Logger,
    private readonly texts: WsConnectionTexts,
  ) {
    this.model = options.model;
    // every listener fires asynchronously, after the subclass constructor has run
    this.connectTimer = setTimeout(() => this.onConnectTimeout(), deps.connectTimeoutMs);
    this.ws.on('open', () => this.onOpen());
    this.ws.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      this.failStart(this.handshakeError(status));
    });
    this.ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    this.ws.on('pong', () => {
      this.heardSinceLastPing = true;
    });
    this.ws.on('error', (err) => this.onSocketError(err));
    this.ws.on('close', (code, reason) => this.onClose(code, reason.toString('utf8')));
  }

  /** Socket open: start the provider's handshake. */
  protected abstract onOpen(): void;
  /** A server frame while the connection is live (starting, running or finishing). */
  protected abstract onFrame(data: RawData, isBinary: boolean): void;
  /** finish() after the state went to 'finishing': send what ends the task/session. */
  protected abstract sendFinish(): void;
  protected abstract handshakeError(status: number): AppError;
  /** The socket closed before the task/session started. */
  protected abstract closedBeforeStart(code: number, reason: string): AppError;

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  abstract sendAudio(pcm: Buffer): void;

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
    this.sendFinish();
    this.finishTimer = setTimeout(() => {
      this.log.warn({ code: 'ERR_ASR_FINISH_TIMEOUT', timeoutMs }, this.texts.finishTimeoutLog);
      this.fail(
        new AppError('ERR_ASR_FINISH_TIMEOUT', this.texts.finishTimeout, {
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

  protected isStarting(): boolean {
    const s = this.state;
    return s !== 'running' && s !== 'finishing' && s !== 'finished' && s !== 'failed' && s !== 'closed';
  }

  /** The server confirmed the start: resolves connect() and starts the liveness check. */
  protected started(): void {
    this.state = 'running';
    this.clearConnectTimer();
    this.startPing();
    this.log.debug(this.texts.started);
    this.resolveStart(this);
  }

  /** The server ended the task/session: completes a pending finish(), else fails with `unasked()`. */
  protected serverFinished(unasked: () => AppError): void {
    if (this.state === 'finishing') {
      this.state = 'finished';
      this.clearTimers();
      const settle = this.finishSettle;
      this.finishSettle = null;
      settle?.resolve();
      this.closeSocket();
    } else {
      this.fail(unasked());
    }
  }

  protected deliver(event: AsrEvent): void {
    try {
      this.handlers.onEvent(event);
    } catch (err) {
      this.log.error({ code: 'ERR_ASR_HANDLER', err }, 'ASR event handler threw');
    }
  }

  /**
   * An invalid server message: counted and logged without content; fails the connect before
   * the start, after it only once more than `maxProtocolErrors` were dropped.
   * `eventField` is the provider's name for the event ({ eventName } or { eventType }).
   */
  protected dropInvalidMessage(
    reason: string,
    eventField: Readonly<Record<string, string | null>>,
    paths: readonly string[],
  ): void {
    this.protocolErrors++;
    this.deps.metrics?.asrErrors.inc({ model: this.model, code: 'ERR_ASR_PROTOCOL' });
    this.log.warn({ code: 'ERR_ASR_PROTOCOL', reason, ...eventField, paths, count: this.protocolErrors }, 'invalid message from recogniser dropped');
    const err = new AppError('ERR_ASR_PROTOCOL', 'invalid message from recogniser', {
      category: 'protocol',
      retryable: true,
      details: { reason, ...eventField, taskId: this.taskId },
    });
    if (this.isStarting()) {
      this.failStart(err);
    } else if (this.protocolErrors > this.deps.maxProtocolErrors) {
      this.fail(err);
    }
  }

  /** Fails the connect (before the start). Settles the connect promise once. */
  protected failStart(err: AppError): void {
    if (!this.isStarting()) return;
    this.state = 'failed';
    this.terminalError = err;
    this.clearTimers();
    this.log.info({ code: err.code, ...err.details }, 'recogniser connect failed');
    this.rejectStart(err);
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }

  /** Fails a started task/session: rejects a pending finish(), else calls onError — once. */
  protected fail(err: AppError): void {
    if (this.state !== 'running' && this.state !== 'finishing') return;
    const wasFinishing = this.state === 'finishing';
    this.state = 'failed';
    this.terminalError = err;
    this.clearTimers();
    this.log.info({ code: err.code, ...err.details }, this.texts.failed);
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

  protected closeSocket(): void {
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

  private onConnectTimeout(): void {
    this.failStart(
      new AppError('ERR_ASR_CONNECT_TIMEOUT', this.texts.connectTimeout, {
        category: 'connectivity',
        retryable: true,
        details: { timeoutMs: this.deps.connectTimeoutMs, phase: this.state },
      }),
    );
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.heardSinceLastPing = true;
    if (this.state === 'finished' || this.state === 'failed' || this.state === 'closed') return;
    this.onFrame(data, isBinary);
  }

  private onSocketError(err: Error): void {
    const details = { wsError: errCode(err) ?? 'unknown', taskId: this.taskId };
    if (this.isStarting()) {
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
    if (this.isStarting()) {
      this.failStart(this.closedBeforeStart(code, reason));
      return;
    }
    this.fail(
      new AppError('ERR_ASR_DISCONNECTED', 'recogniser connection closed', {
        category: 'connectivity',
        retryable: true,
        details: { closeCode: code, closeReason: reason.slice(0, 123), taskId: this.taskId },
      }),
    );
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
