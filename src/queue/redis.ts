/**
 * Redis connections for BullMQ, per the BullMQ production guide:
 * - producers fail fast: `enableOfflineQueue: false`, so an add while Redis is unreachable
 *   rejects at once (the producer's outbox keeps the job) instead of piling up in ioredis;
 * - workers wait: `maxRetriesPerRequest: null`, so blocking commands survive reconnects.
 * Both reconnect forever with capped backoff. Errors are logged with a static message, once
 * per outage (ioredis emits one per reconnect attempt), instead of crashing the process.
 *
 * No `lazyConnect` on connections handed to BullMQ: BullMQ calls connect() on a client in the
 * 'wait' state and keeps the first result, so a lazy client whose first attempt failed would
 * leave the queue unusable. (lazyConnect suits one-off probes that call connect() themselves.)
 * Redis itself must run with `maxmemory-policy noeviction`.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../observability/logger.js';
import { errorMessage } from '../core/errors.js';

export type RedisRole = 'producer' | 'worker' | 'monitor';

export interface RedisConnectionOptions {
  readonly logger?: Logger;
  /** Upper bound of the reconnect delay (default 5000 ms). */
  readonly maxReconnectDelayMs?: number;
  /** Extra ioredis options (tests: shorter timeouts). */
  readonly overrides?: RedisOptions;
}

/** Reconnect delay: 100, 200, 400 … ms, capped. Never gives up (null would end the client). */
export function reconnectDelayMs(times: number, maxMs = 5000): number {
  return Math.min(100 * 2 ** Math.min(Math.max(times - 1, 0), 16), maxMs);
}

function describeRedisTarget(redisUrl: string): string {
  try {
    const u = new URL(redisUrl);
    return `${u.hostname}:${u.port || '6379'}`;
  } catch {
    return '(unparseable REDIS_URL)';
  }
}

/** Logs the first error of an outage and the recovery; never lets 'error' go unhandled. */
export function attachRedisLogging(client: Redis, role: RedisRole, target: string, logger?: Logger): void {
  let down = false;
  client.on('error', (err: Error & { code?: string }) => {
    if (down) return;
    down = true;
    logger?.warn({ code: 'ERR_REDIS_CONNECTION', role, target, redisCode: err.code }, 'redis connection error');
  });
  client.on('ready', () => {
    if (!down) return;
    down = false;
    logger?.info({ role, target }, 'redis connection restored');
  });
}

function create(redisUrl: string, role: RedisRole, base: RedisOptions, options: RedisConnectionOptions): Redis {
  const maxDelay = options.maxReconnectDelayMs ?? 5000;
  const client = new Redis(redisUrl, {
    connectionName: `callscribe-${role}`,
    retryStrategy: (times) => reconnectDelayMs(times, maxDelay),
    ...base,
    ...options.overrides,
  });
  attachRedisLogging(client, role, describeRedisTarget(redisUrl), options.logger);
  return client;
}

/** Connection for a BullMQ Queue that adds jobs: commands fail fast while disconnected. */
export function createProducerConnection(redisUrl: string, options: RedisConnectionOptions = {}): Redis {
  return create(
    redisUrl,
    'producer',
    { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 5000 },
    options,
  );
}

/** Connection for a BullMQ Worker (and its blocking duplicate): commands wait for Redis. */
export function createWorkerConnection(redisUrl: string, options: RedisConnectionOptions = {}): Redis {
  return create(redisUrl, 'worker', { maxRetriesPerRequest: null, enableOfflineQueue: true }, options);
}

/** Connection for read-only monitoring (queue metrics): fails fast, like a producer. */
export function createMonitorConnection(redisUrl: string, options: RedisConnectionOptions = {}): Redis {
  return create(
    redisUrl,
    'monitor',
    { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 5000 },
    options,
  );
}

/** quit() when connected, disconnect() otherwise (quit would wait for a reconnect). */
/**
 * Waits (bounded) until a connection that is still connecting has finished its handshake.
 * Disconnecting while ioredis (or BullMQ, which sends INFO as soon as a connection is ready)
 * is mid-handshake makes that command reject unhandled when the offline queue is off.
 */
export async function settleHandshake(client: Redis, timeoutMs = 1000): Promise<void> {
  if (client.status !== 'connect' && client.status !== 'connecting') return;
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off('ready', done);
      client.off('end', done);
      client.off('error', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    client.once('ready', done);
    client.once('end', done);
    client.once('error', done);
  });
}

export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  await settleHandshake(client);
  if ((client.status as string) === 'end') return; // the status changed while we waited
  if (client.status === 'ready') {
    try {
      await client.quit();
      return;
    } catch {
      // fall through
    }
  }
  client.disconnect();
}

/**
 * Logs a BullMQ Worker's 'error' events at most once per `intervalMs` (BullMQ re-emits every
 * reconnect failure of its blocking connection), with the count of the ones left out.
 */
export function logWorkerErrors(
  worker: { on(event: 'error', listener: (err: Error) => void): unknown },
  logger: Logger,
  code: string,
  message: string,
  intervalMs = 10_000,
): void {
  let lastErrorLog = -Infinity;
  let suppressed = 0;
  worker.on('error', (err: Error & { code?: string }) => {
    const now = Date.now();
    if (now - lastErrorLog < intervalMs) {
      suppressed++;
      return;
    }
    logger.warn({ code, redisCode: err.code, err: errorMessage(err), suppressed }, message);
    lastErrorLog = now;
    suppressed = 0;
  });
}
