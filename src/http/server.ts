/**
 * The HTTP listener: health, readiness, Prometheus metrics, and WebSocket upgrades routed by
 * path (GET /twilio). Plain node:http — the service has four routes.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Lifecycle } from './lifecycle.js';

export type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface ReadinessCheck {
  readonly name: string;
  check(): Promise<void>;
}

export interface HttpServerOptions {
  readonly lifecycle: Lifecycle;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly checks: readonly ReadinessCheck[];
  readonly upgrades?: Readonly<Record<string, UpgradeHandler>>;
  /** Extra plain HTTP routes: path → handler. */
  readonly routes?: Readonly<Record<string, http.RequestListener>>;
  readonly checkTimeoutMs?: number;
}

/** Writes a plain HTTP error on a socket that has not been upgraded, then destroys it. */
export function rejectUpgrade(socket: Duplex, status: number, message: string): void {
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\n` +
      'Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  socket.once('finish', () => socket.destroy());
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function createHttpServer(options: HttpServerOptions): http.Server {
  const { lifecycle, metrics, checks, logger } = options;
  const checkTimeoutMs = options.checkTimeoutMs ?? 1500;

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method !== 'GET' && req.method !== 'HEAD' && !options.routes?.[path]) {
      sendJson(res, 405, { error: 'method not allowed' });
      return;
    }
    if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok', state: lifecycle.state });
      return;
    }
    if (path === '/readyz') {
      void (async () => {
        const results: Record<string, string> = {};
        let ok = lifecycle.accepting;
        await Promise.all(
          checks.map(async (c) => {
            try {
              await withTimeout(c.check(), checkTimeoutMs, c.name);
              results[c.name] = 'ok';
            } catch (err) {
              ok = false;
              results[c.name] = err instanceof Error ? err.message : 'failed';
            }
          }),
        );
        sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'not ready', state: lifecycle.state, checks: results });
      })();
      return;
    }
    if (path === '/metrics') {
      void metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
        () => sendJson(res, 500, { error: 'metrics unavailable' }),
      );
      return;
    }
    const route = options.routes?.[path];
    if (route) {
      route(req, res);
      return;
    }
    sendJson(res, 404, { error: 'not found' });
  });

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const handler = options.upgrades?.[path];
    if (!handler) {
      metrics.upgradesRejected.inc({ reason: 'not-found' });
      rejectUpgrade(socket, 404, 'no WebSocket endpoint at this path');
      return;
    }
    if (!lifecycle.accepting) {
      metrics.upgradesRejected.inc({ reason: 'draining' });
      rejectUpgrade(socket, 503, 'service is not accepting streams');
      return;
    }
    try {
      handler(req, socket, head);
    } catch (err) {
      logger.error({ code: 'ERR_HTTP_UPGRADE', err: err instanceof Error ? err.message : String(err) }, 'upgrade handler failed');
      rejectUpgrade(socket, 500, 'internal error');
    }
  });

  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  return server;
}
