/**
 * The HTTP listener: health, readiness, Prometheus metrics, WebSocket upgrades routed by path
 * (GET /twilio, GET /supervisor), exact-path routes and prefix routes (e.g. /v1/alerts/…).
 * Plain node:http — the service has a handful of routes.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { sendJson } from './json.js';
import type { Lifecycle } from './lifecycle.js';

export type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

/** A route handler; a returned promise that rejects becomes a 500 (and is logged). */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

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
  /** Extra plain HTTP routes: exact path → handler (any method). */
  readonly routes?: Readonly<Record<string, RouteHandler>>;
  /**
   * Prefix routes: '/v1/alerts' → handler for '/v1/alerts' and everything under '/v1/alerts/'
   * (any method; the handler answers 404/405 itself). The longest matching prefix wins;
   * exact routes and the built-in paths come first.
   */
  readonly prefixRoutes?: Readonly<Record<string, RouteHandler>>;
  readonly checkTimeoutMs?: number;
}

/**
 * Writes a plain HTTP error on a socket that has not been upgraded, then destroys it.
 * `headers` adds response headers (e.g. WWW-Authenticate on a 401); values must not contain CR/LF.
 */
export function rejectUpgrade(
  socket: Duplex,
  status: number,
  message: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  const body = `${message}\n`;
  const extra = Object.entries(headers)
    .filter(([k, v]) => !/[\r\n:]/.test(k) && !/[\r\n]/.test(v))
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\n` +
      'Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n' +
      extra +
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

/** The handler of the longest prefix that `path` equals or lies under ('/a' matches '/a', '/a/b'). */
export function matchPrefixRoute<H>(routes: Readonly<Record<string, H>> | undefined, path: string): H | undefined {
  if (!routes) return undefined;
  let best: { len: number; handler: H } | undefined;
  for (const [prefix, handler] of Object.entries(routes)) {
    const base = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
    if ((path === base || path.startsWith(`${base}/`)) && (!best || base.length > best.len)) {
      best = { len: base.length, handler };
    }
  }
  return best?.handler;
}

export function createHttpServer(options: HttpServerOptions): http.Server {
  const { lifecycle, metrics, checks, logger } = options;
  const checkTimeoutMs = options.checkTimeoutMs ?? 1500;

  const runRoute = (handler: RouteHandler, req: http.IncomingMessage, res: http.ServerResponse, path: string): void => {
    const fail = (err: unknown) => {
      // the path only: query strings may carry tokens
      logger.error({ code: 'ERR_HTTP_ROUTE', path, err: errorMessage(err) }, 'route handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'ERR_HTTP_INTERNAL', message: 'internal error' } });
      else res.destroy();
    };
    try {
      const result = handler(req, res);
      if (result) result.catch(fail);
    } catch (err) {
      fail(err);
    }
  };

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const exact = options.routes?.[path];
    const prefixed = exact ? undefined : matchPrefixRoute(options.prefixRoutes, path);
    if (req.method !== 'GET' && req.method !== 'HEAD' && !exact && !prefixed) {
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
    if (exact) {
      runRoute(exact, req, res, path);
      return;
    }
    if (prefixed) {
      runRoute(prefixed, req, res, path);
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
