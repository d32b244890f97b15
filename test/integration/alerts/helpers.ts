/**
 * Shared pieces of the alert-delivery integration tests: the service's HTTP server on an
 * ephemeral port, a recording WebSocket client, a scripted webhook receiver, a Redis
 * subscriber that records a channel, and a log capture (to check what never gets logged).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import WebSocket from 'ws';
import { Lifecycle } from '../../../src/http/lifecycle.js';
import { createHttpServer, type HttpServerOptions } from '../../../src/http/server.js';
import type { Logger } from '../../../src/observability/logger.js';
import { createMetrics, type Metrics } from '../../../src/observability/metrics.js';
import { closeRedis, createProducerConnection, createWorkerConnection } from '../../../src/queue/redis.js';
import { TEST_REDIS_URL } from '../../support/redis.js';

export async function waitUntil(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface TestHttp {
  readonly port: number;
  readonly base: string;
  readonly metrics: Metrics;
  close(): Promise<void>;
}

/** createHttpServer on 127.0.0.1:0, lifecycle running. */
export async function startHttp(
  options: Pick<HttpServerOptions, 'upgrades' | 'routes' | 'prefixRoutes'> & { logger: Logger; metrics?: Metrics },
): Promise<TestHttp> {
  const lifecycle = new Lifecycle();
  const metrics = options.metrics ?? createMetrics();
  const server = createHttpServer({ ...options, lifecycle, metrics, checks: [] });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  lifecycle.transition('running');
  const { port } = server.address() as AddressInfo;
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    metrics,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export type Json = Record<string, unknown>;

/** A WebSocket client that records every text message as parsed JSON. */
export class RecordingClient {
  readonly messages: Json[] = [];
  closeCode: number | null = null;
  private readonly closed: Promise<number>;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (!isBinary) this.messages.push(JSON.parse(String(data)) as Json);
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code) => {
        this.closeCode = code;
        resolve(code);
      }),
    );
  }

  static async connect(url: string, options: WebSocket.ClientOptions & { protocols?: string[] } = {}): Promise<RecordingClient> {
    const ws = new WebSocket(url, options.protocols ?? [], options);
    const client = new RecordingClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    return client;
  }

  /** Waits for the first message (from index `from`) matching `pred`; returns it. */
  async next(pred: (m: Json) => boolean, timeoutMs = 5000, from = 0): Promise<Json> {
    let found: Json | undefined;
    await waitUntil('a matching message', () => {
      found = this.messages.slice(from).find(pred);
      return found !== undefined;
    }, timeoutMs);
    return found!;
  }

  ofType(type: string): Json[] {
    return this.messages.filter((m) => m['type'] === type);
  }

  send(value: unknown): void {
    this.ws.send(typeof value === 'string' ? value : JSON.stringify(value));
  }

  waitClosed(timeoutMs = 5000): Promise<number> {
    return Promise.race([
      this.closed,
      sleep(timeoutMs).then(() => {
        throw new Error('socket did not close');
      }),
    ]);
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    await this.waitClosed().catch(() => this.ws.terminate());
  }
}

/** Attempts a WebSocket upgrade and returns the HTTP status it was refused with (or 101). */
export function upgradeStatus(url: string, options: WebSocket.ClientOptions & { protocols?: string[] } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocols ?? [], options);
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, headers: res.headers });
      res.resume();
      ws.terminate();
    });
    ws.once('open', () => {
      resolve({ status: 101, headers: {} });
      ws.close();
    });
    ws.once('error', (err) => reject(err));
  });
}

export interface ReceivedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly at: number;
}

/** An HTTP receiver on 127.0.0.1:0 answering with scripted statuses (the last one repeats). */
export interface WebhookReceiver {
  readonly url: string;
  readonly requests: ReceivedRequest[];
  /** Next replies: a status, or 'hang' to never answer (a timeout). */
  script(replies: Array<number | 'hang'>): void;
  close(): Promise<void>;
}

export async function startReceiver(path = '/hook'): Promise<WebhookReceiver> {
  let replies: Array<number | 'hang'> = [200];
  const requests: ReceivedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
      const reply = replies.length > 1 ? replies.shift()! : replies[0]!;
      if (reply === 'hang') return;
      res.writeHead(reply, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${path}`,
    requests,
    script: (r) => {
      replies = [...r];
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A Redis SUBSCRIBE on one channel that records the messages. */
export interface ChannelRecorder {
  readonly messages: Json[];
  close(): Promise<void>;
}

export async function recordChannel(channel: string): Promise<ChannelRecorder> {
  const sub = createWorkerConnection(TEST_REDIS_URL);
  const messages: Json[] = [];
  sub.on('message', (_ch: string, text: string) => messages.push(JSON.parse(text) as Json));
  await sub.subscribe(channel);
  return { messages, close: () => closeRedis(sub) };
}

/** A producer-style connection that is ready (publish fails fast when Redis is gone). */
export async function readyProducer(url = TEST_REDIS_URL): Promise<Redis> {
  const redis = createProducerConnection(url);
  await waitUntil('redis ready', () => redis.status === 'ready');
  return redis;
}

/** A pino logger whose output is kept as text (to assert what is never logged). */
export function captureLogger(): { logger: Logger; text: () => string } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), text: () => lines.join('') };
}

/** Sum of a metric's samples matching `labels` (`series` picks e.g. a histogram's `_count`). */
export async function metricValue(metrics: Metrics, name: string, labels: Record<string, string> = {}, series = name): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  return values
    .filter((v) => ((v as { metricName?: string }).metricName ?? name) === series)
    .filter((v) => Object.entries(labels).every(([k, val]) => String((v.labels as Record<string, unknown>)[k]) === val))
    .reduce((sum, v) => sum + v.value, 0);
}
