/**
 * The DashScope emulator: a local, protocol-faithful imitation of DashScope's real-time ASR
 * WebSocket APIs, for tests, the offline demo and benchmarks: Part A of
 * specs/dashscope-protocol.md (the Paraformer duplex "inference" protocol at
 * /api-ws/v1/inference) and Part B (qwen3-asr-flash-realtime, the OpenAI-Realtime-style protocol
 * at /api-ws/v1/realtime?model=…).
 *
 * It is NOT a speech recogniser: it segments the audio with an energy VAD and answers from a
 * fixture call's script (script.ts) or with placeholder text. This file is the thin I/O adapter:
 * HTTP upgrade, auth, model / rate-limit / outage checks for qwen, routing, the ordered
 * (optionally delayed) outbound queue and one timer per connection; the protocols live in
 * paraformer-task.ts and qwen-session.ts.
 */
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { systemClock, type Clock } from '../core/clock.js';
import { createLogger, type Logger } from '../observability/logger.js';
import {
  DEFAULT_KNOBS,
  FaultState,
  applyKnobs,
  createEmulatorStats,
  snapshotStats,
  type EmulatorKnobs,
  type EmulatorStats,
} from './knobs.js';
import { ParaformerConnection, RunTaskRateLimiter, type ParaformerDeps } from './paraformer-task.js';
import { QWEN_THROTTLED_MESSAGE, QWEN_UNAVAILABLE_MESSAGE, QwenSession, isQwenModel, type QwenDeps, type QwenRefusal } from './qwen-session.js';
import { loadCallScript, type CallScript } from './script.js';

export type { EmulatorKnobs, EmulatorStats } from './knobs.js';

/** A fixture call folder: script.json + the WAVs it names. */
export type ScriptSource = { dir: string };

export interface EmulatorOptions {
  host?: string;
  port?: number;
  /** With a key: the Bearer key must equal it. Without: any non-empty key is accepted. */
  apiKey?: string;
  script?: ScriptSource;
  knobs?: Partial<EmulatorKnobs>;
  logger?: Logger;
}

export interface EmulatorHandle {
  readonly port: number;
  /** ws://host:port (append /api-ws/v1/inference, or /api-ws/v1/realtime?model=…). */
  readonly url: string;
  /** A snapshot of the counters, taken on every read (diff two reads to measure a step). */
  readonly stats: EmulatorStats;
  setKnobs(k: Partial<EmulatorKnobs>): void;
  close(): Promise<void>;
}

export const INFERENCE_PATH = '/api-ws/v1/inference';
const INFERENCE_PATHS = new Set([INFERENCE_PATH, `${INFERENCE_PATH}/`]);
export const REALTIME_PATH = '/api-ws/v1/realtime';
const REALTIME_PATHS = new Set([REALTIME_PATH, `${REALTIME_PATH}/`]);

const STATUS_TEXT: Record<number, string> = {
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

/** Writes a complete HTTP response on a raw upgrade socket and closes it. */
function refuseUpgrade(socket: Duplex, status: number, body: Record<string, string>): void {
  const json = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(json)}\r\n` +
      'Connection: close\r\n' +
      '\r\n' +
      json,
  );
}

/** The key of an `Authorization: Bearer <key>` header (scheme case-insensitive), or null. */
export function bearerKey(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
  return m ? (m[1] ?? null) : null;
}

function keysEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** What a connection's protocol machine asks the adapter to do. */
type AdapterAction =
  | { readonly type: 'send'; readonly event: object; readonly delayMs: number }
  | { readonly type: 'close'; readonly code: number; readonly reason: string }
  | { readonly type: 'drop' };

/** A sans-I/O protocol machine behind one socket (ParaformerConnection, QwenSession). */
interface SocketMachine {
  handleText(text: string, nowMs: number): readonly AdapterAction[];
  handleAudio(chunk: Buffer, nowMs: number): readonly AdapterAction[];
  tick(nowMs: number): readonly AdapterAction[];
  nextDeadline(): number | null;
  handleClose(): void;
}

interface AdapterEnv {
  readonly knobs: EmulatorKnobs;
  readonly stats: EmulatorStats;
  readonly logger: Logger;
}

interface Outgoing {
  readonly dueAt: number;
  readonly text: string | null;
  readonly close: { code: number; reason: string } | null;
}

/** One WebSocket connection: socket I/O around a protocol machine. */
class ConnectionAdapter {
  private readonly queue: Outgoing[] = [];
  private queueTimer: NodeJS.Timeout | null = null;
  private deadlineTimer: NodeJS.Timeout | null = null;
  private deadlineAt = Infinity;
  private closed = false;
  private machineClosed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly machine: SocketMachine,
    private readonly deps: AdapterEnv,
    private readonly clock: Clock,
    private readonly onGone: () => void,
  ) {
    ws.on('message', (data, isBinary) => {
      if (this.closed) return;
      const now = this.clock.monotonicMs();
      const actions = isBinary
        ? this.machine.handleAudio(toBuffer(data), now)
        : this.machine.handleText(toBuffer(data).toString('utf8'), now);
      this.apply(actions);
    });
    ws.on('close', () => this.dispose());
    ws.on('error', () => this.dispose());
    this.schedule();
  }

  /** Carries out actions that did not come from a socket event (open, faults). */
  inject(actions: readonly AdapterAction[]): void {
    if (!this.closed) this.apply(actions);
  }

  private apply(actions: readonly AdapterAction[]): void {
    const now = this.clock.monotonicMs();
    for (const a of actions) {
      if (this.closed) return;
      if (a.type === 'drop') {
        this.ws.terminate();
        this.dispose();
        return;
      }
      if (a.type === 'send') this.enqueue({ dueAt: now + a.delayMs, text: JSON.stringify(a.event), close: null });
      else this.enqueue({ dueAt: now, text: null, close: { code: a.code, reason: a.reason } });
    }
    this.schedule();
  }

  /** Sends in order; an item waits for its due time and for everything queued before it. */
  private enqueue(item: Outgoing): void {
    if (this.queue.length === 0 && item.dueAt <= this.clock.monotonicMs()) {
      this.write(item);
      return;
    }
    const last = this.queue.at(-1);
    this.queue.push(last && last.dueAt > item.dueAt ? { ...item, dueAt: last.dueAt } : item);
    this.armQueue();
  }

  private armQueue(): void {
    if (this.queueTimer !== null || this.queue.length === 0) return;
    const head = this.queue[0] as Outgoing;
    this.queueTimer = setTimeout(
      () => {
        this.queueTimer = null;
        const now = this.clock.monotonicMs();
        while (!this.closed && this.queue.length > 0 && (this.queue[0] as Outgoing).dueAt <= now + 1) {
          this.write(this.queue.shift() as Outgoing);
        }
        this.armQueue();
      },
      Math.max(0, head.dueAt - this.clock.monotonicMs()),
    );
  }

  private write(item: Outgoing): void {
    if (this.closed) return;
    if (item.close) {
      this.ws.close(item.close.code, item.close.reason);
      this.closed = true;
      this.clearTimers();
      return;
    }
    if (item.text === null) return;
    if (this.ws.bufferedAmount > this.deps.knobs.maxBufferedBytes) {
      this.deps.stats.slowClientDrops++;
      this.deps.logger.warn('emulator drops a client that does not read its results');
      this.ws.terminate();
      this.dispose();
      return;
    }
    this.ws.send(item.text);
  }

  /** Keeps one timer armed for the machine's earliest deadline. */
  private schedule(): void {
    if (this.closed) return;
    const d = this.machine.nextDeadline();
    if (d === null) return;
    if (this.deadlineTimer !== null && this.deadlineAt <= d) return;
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.deadlineAt = d;
    this.deadlineTimer = setTimeout(
      () => {
        this.deadlineTimer = null;
        this.deadlineAt = Infinity;
        if (this.closed) return;
        this.apply(this.machine.tick(this.clock.monotonicMs()));
      },
      Math.max(0, Math.ceil(d - this.clock.monotonicMs())),
    );
  }

  private clearTimers(): void {
    if (this.queueTimer !== null) clearTimeout(this.queueTimer);
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.queueTimer = null;
    this.deadlineTimer = null;
    this.queue.length = 0;
  }

  dispose(): void {
    this.closed = true;
    this.clearTimers();
    if (this.machineClosed) return;
    this.machineClosed = true;
    this.machine.handleClose();
    this.onGone();
  }
}

/** Starts the emulator; resolves once it listens. */
export async function startEmulator(opts: EmulatorOptions): Promise<EmulatorHandle> {
  const logger = opts.logger ?? createLogger('info', 'dashscope-emulator');
  const clock: Clock = systemClock;
  const knobs: EmulatorKnobs = applyKnobs(DEFAULT_KNOBS, opts.knobs);
  const stats = createEmulatorStats();
  const faults = new FaultState(knobs);
  const limiter = new RunTaskRateLimiter(() => knobs.rps);
  const script: CallScript | null = opts.script ? await loadCallScript(opts.script.dir) : null;
  const deps: ParaformerDeps = { knobs, stats, faults, limiter, script, logger };
  const qwenDeps: QwenDeps = { knobs, stats, faults, script, logger };
  const apiKey = opts.apiKey;
  const sockets = new Set<WebSocket>();
  /** Open qwen sessions (for qwenOutage.dropLive). */
  const qwenAdapters = new Set<ConnectionAdapter>();
  let nextConnectionId = 1;

  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://emulator').pathname;
    const status = INFERENCE_PATHS.has(pathname) || REALTIME_PATHS.has(pathname) ? 426 : 404;
    if (status === 404) stats.notFound++;
    const body = JSON.stringify({ code: status === 404 ? 'NotFound' : 'UpgradeRequired', message: STATUS_TEXT[status] });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: knobs.maxPayloadBytes, perMessageDeflate: false });

  /** Accepts the upgrade; `onOpen` gets the socket and its connection id. */
  function accept(req: http.IncomingMessage, socket: Duplex, head: Buffer, onOpen: (ws: WebSocket, connectionId: number) => void): void {
    wss.handleUpgrade(req, socket, head, (ws) => {
      const connectionId = nextConnectionId++;
      stats.connections++;
      stats.openConnections++;
      sockets.add(ws);
      onOpen(ws, connectionId);
    });
  }

  /** Part B: model, outage and rate-limit checks, then a QwenSession (B7.1). */
  function upgradeRealtime(req: http.IncomingMessage, socket: Duplex, head: Buffer, key: string, url: URL): void {
    const model = url.searchParams.get('model');
    if (!isQwenModel(model)) {
      stats.qwenModelNotFound++;
      accept(req, socket, head, (ws) => {
        ws.close(1007, 'Model not found');
        ws.once('close', () => {
          sockets.delete(ws);
          stats.openConnections--;
        });
      });
      return;
    }
    let refusal: QwenRefusal | null = null;
    const outage = faults.tryConsumeQwenOutage();
    if (outage !== null) {
      stats.qwenOutageRefusals++;
      if (outage === 'http-503') {
        refuseUpgrade(socket, 503, { code: 'ServiceUnavailable', message: QWEN_UNAVAILABLE_MESSAGE });
        return;
      }
      refusal = { kind: 'outage', mode: outage };
    } else if (!limiter.admit(`${key}\n${model}`, clock.monotonicMs())) {
      stats.qwenThrottled++;
      if (knobs.qwenThrottleMode === 'http-429') {
        refuseUpgrade(socket, 429, { code: 'Throttling.RateQuota', message: QWEN_THROTTLED_MESSAGE });
        return;
      }
      refusal = { kind: 'throttled' };
    }
    accept(req, socket, head, (ws, connectionId) => {
      const session = new QwenSession(qwenDeps, { apiKey: key, connectionId, model });
      const adapter: ConnectionAdapter = new ConnectionAdapter(ws, session, qwenDeps, clock, () => {
        sockets.delete(ws);
        qwenAdapters.delete(adapter);
        stats.openConnections--;
      });
      qwenAdapters.add(adapter);
      adapter.inject(session.open(clock.monotonicMs(), refusal));
    });
  }

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://emulator');
    const realtime = REALTIME_PATHS.has(url.pathname);
    if (!realtime && !INFERENCE_PATHS.has(url.pathname)) {
      stats.notFound++;
      refuseUpgrade(socket, 404, { code: 'NotFound', message: 'Not Found' });
      return;
    }
    const key = bearerKey(req.headers.authorization);
    if (key === null || (apiKey !== undefined && !keysEqual(key, apiKey))) {
      stats.authFailures++;
      logger.debug('emulator refuses an upgrade without a valid API key');
      refuseUpgrade(socket, knobs.authFailureStatus, { code: 'InvalidApiKey', message: 'Invalid API-key provided.' });
      return;
    }
    if (realtime) {
      upgradeRealtime(req, socket, head, key, url);
      return;
    }
    accept(req, socket, head, (ws, connectionId) => {
      const machine = new ParaformerConnection(deps, { apiKey: key, connectionId }, clock.monotonicMs());
      new ConnectionAdapter(ws, machine, deps, clock, () => {
        sockets.delete(ws);
        stats.openConnections--;
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = opts.host ?? '127.0.0.1';
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  const url = `ws://${urlHost}:${address.port}`;
  logger.warn(
    { url: `${url}${INFERENCE_PATH}`, realtimeUrl: `${url}${REALTIME_PATH}`, script: script?.name ?? null },
    'DashScope EMULATOR started: it does not recognise speech; results come from a fixture script or are placeholders',
  );

  let closing: Promise<void> | null = null;
  return {
    port: address.port,
    url,
    get stats(): EmulatorStats {
      return snapshotStats(stats);
    },
    setKnobs(patch: Partial<EmulatorKnobs>): void {
      const next = applyKnobs(knobs, patch);
      Object.assign(knobs, next);
      faults.onKnobsChanged(patch);
      if (patch.faults?.qwenOutage?.dropLive === true) {
        for (const adapter of [...qwenAdapters]) {
          stats.qwenOutageDrops++;
          adapter.inject([{ type: 'drop' }]);
        }
      }
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        for (const ws of sockets) ws.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
