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
import {
  dashScopeDeps,
  DashScopeWsConnection,
  openDashScopeSocket,
  rawDataToString,
  type DashScopeDeps,
  type DashScopeProviderOptions,
  type WsConnectionTexts,
} from '../ws-connection.js';

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

/** connectTimeoutMs covers upgrade + run-task → task-started; pings start after task-started. */
export type ParaformerProviderOptions = DashScopeProviderOptions;

export function createParaformerProvider(opts: ParaformerProviderOptions): AsrProvider {
  const deps = dashScopeDeps(opts);
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

type ConnectionDeps = DashScopeDeps;

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
  return openDashScopeSocket(deps, (ws, resolve, reject) => {
    // the constructor wires every listener; it settles the promise exactly once
    new ParaformerConnection(deps, ws, options, handlers, resolve, reject);
  });
}

type StartingState = 'starting';

const TEXTS: WsConnectionTexts = {
  connectTimeout: 'recogniser did not start the task in time',
  started: 'recogniser task started',
  failed: 'recogniser task ended with an error',
  finishTimeoutLog: 'recogniser did not finish the task in time',
  finishTimeout: 'recogniser did not confirm task-finished in time',
};

class ParaformerConnection extends DashScopeWsConnection<ConnectionDeps, StartingState> {
  readonly taskId: string;

  constructor(
    deps: ConnectionDeps,
    ws: WebSocket,
    options: AsrConnectOptions,
    handlers: AsrConnectionHandlers,
    resolveStart: (c: AsrConnection) => void,
    rejectStart: (e: AppError) => void,
    taskId = newTaskId(),
  ) {
    const log = deps.logger.child({ taskId, model: options.model, ...(options.logContext ?? {}) });
    super(deps, ws, options, handlers, resolveStart, rejectStart, log, TEXTS);
    this.taskId = taskId;
  }

  sendAudio(pcm: Buffer): void {
    if (this.state !== 'running' || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(pcm, { binary: true });
  }

  // -------------------------------------------------------------------------------------------

  protected sendFinish(): void {
    this.ws.send(JSON.stringify(buildFinishTask(this.taskId)));
  }

  protected handshakeError(status: number): AppError {
    return handshakeError(status);
  }

  protected onOpen(): void {
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

  protected onFrame(data: RawData, isBinary: boolean): void {
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
        this.started();
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
        this.deliver(event);
        return;
      }
      case 'task-finished':
        this.serverFinished(
          () =>
            new AppError('ERR_ASR_TASK_FAILED', 'recogniser ended the task unasked', {
              category: 'server',
              retryable: true,
              details: { taskId: this.taskId, providerEvent: 'task-finished' },
            }),
        );
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
    this.dropInvalidMessage(reason, { eventName }, paths);
  }

  protected closedBeforeStart(code: number, reason: string): AppError {
    const details = { closeCode: code, closeReason: reason.slice(0, 123), taskId: this.taskId };
    // 1007 before start: the gateway rejected the payload (e.g. "Model not found", spec A8)
    return code === 1007
      ? new AppError('ERR_ASR_BAD_REQUEST', 'recogniser rejected the task', {
          category: 'invalid_request',
          retryable: false,
          details,
        })
      : new AppError('ERR_ASR_CONNECT', 'recogniser closed the connection before the task started', {
          category: 'connectivity',
          retryable: true,
          details,
        });
  }
}
