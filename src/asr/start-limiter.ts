/**
 * Task-start rate limiting. DashScope counts task submissions per account and per model
 * (20 RPS for the Paraformer real-time models, spec A7), so every connect first takes a token
 * here. Starts over the rate QUEUE (FIFO) instead of failing; only a full queue rejects, with
 * a retryable ERR_ASR_START_QUEUE_FULL that the runner backs off from.
 *
 * The in-memory limiter counts per process. The Redis limiter keeps one budget per model in
 * Redis, shared by every process using the same Redis and key prefix (DashScope counts per
 * account, not per process), and falls back to the per-process budget while Redis is
 * unreachable, so an outage never blocks calls.
 */
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterQueue, RateLimiterRedis } from 'rate-limiter-flexible';
import { AppError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';

export interface TaskStartLimiter {
  /** Waits for a task-start token for `model`; resolves with the ms waited. */
  acquire(model: string): Promise<number>;
}

export interface MemoryStartLimiterOptions {
  /** Starts waiting per model before further ones are rejected. Default perSecond × 60. */
  readonly maxQueueSize?: number;
  readonly clock?: Clock;
}

/**
 * Per model: evenly spaced tokens, one every 1/perSecond s (RateLimiterMemory), behind a
 * bounded FIFO (RateLimiterQueue), so no sliding second ever sees more than perSecond starts.
 */
export function createMemoryStartLimiter(
  perSecond: number,
  options: MemoryStartLimiterOptions = {},
): TaskStartLimiter {
  const duration = startIntervalSeconds(perSecond);
  const maxQueueSize = options.maxQueueSize ?? perSecond * 60;
  const clock = options.clock ?? systemClock;
  const queues = new Map<string, RateLimiterQueue>();

  const queueFor = (model: string): RateLimiterQueue => {
    let q = queues.get(model);
    if (!q) {
      // One start per 1.05/perSecond s, not perSecond per fixed 1 s window: a fixed window lets
      // up to 2 × perSecond through around its boundary, which the provider throttles. Evenly
      // spaced starts never exceed perSecond in any sliding second; the 5 % margin absorbs
      // network jitter between our clock and the provider's.
      const limiter = new RateLimiterMemory({
        points: 1,
        duration,
        keyPrefix: `asr-start-${model}`,
      });
      q = new RateLimiterQueue(limiter, { maxQueueSize });
      queues.set(model, q);
    }
    return q;
  };

  return {
    acquire: (model: string) => takeToken(queueFor(model), undefined, model, maxQueueSize, clock),
  };
}

/** One start per 1.05/perSecond s (see createMemoryStartLimiter for the why). */
function startIntervalSeconds(perSecond: number): number {
  if (!Number.isInteger(perSecond) || perSecond < 1) {
    throw new RangeError('perSecond must be a positive integer');
  }
  return 1.05 / perSecond;
}

async function takeToken(
  queue: RateLimiterQueue,
  key: string | undefined,
  model: string,
  maxQueueSize: number,
  clock: Clock,
): Promise<number> {
  const started = clock.monotonicMs();
  try {
    await queue.removeTokens(1, key);
  } catch (err) {
    // RateLimiterQueue rejects only when its queue is full (its store errors go to insurance)
    throw new AppError('ERR_ASR_START_QUEUE_FULL', 'too many recogniser task starts waiting', {
      category: 'rate_limit',
      retryable: true,
      cause: err,
      details: { model, maxQueueSize },
    });
  }
  return Math.max(0, clock.monotonicMs() - started);
}

export interface RedisStartLimiterOptions {
  /** Redis key prefix of the budgets: key `<keyPrefix>:<model>`. Same prefix = same budget. */
  readonly keyPrefix: string;
  /** Starts waiting per model in this process before further ones are rejected. Default perSecond × 60. */
  readonly maxQueueSize?: number;
  readonly clock?: Clock;
  /** A Redis call slower than this counts as an outage (the per-process budget answers). Default 500. */
  readonly redisTimeoutMs?: number;
  /** Called for every Redis failure that fell back to the per-process budget (log / count it). */
  readonly onRedisError?: (err: Error) => void;
}

/**
 * KEYS[1] budget key; ARGV[1] points, ARGV[2] window ms, ARGV[3] "1" to set instead of add.
 * Returns {points in the window, ms until the window ends}, the shape RateLimiterRedis reads.
 * The window is timed by Redis itself: one clock for every process.
 */
const START_BUDGET_SCRIPT = `
if ARGV[3] == '1' then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {tonumber(ARGV[1]), tonumber(ARGV[2])}
end
redis.call('set', KEYS[1], 0, 'PX', ARGV[2], 'NX')
local consumed = redis.call('incrby', KEYS[1], ARGV[1])
local ttl = redis.call('pttl', KEYS[1])
if ttl < 0 then
  redis.call('pexpire', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {consumed, ttl}
`;

/**
 * RateLimiterRedis with millisecond windows. rate-limiter-flexible 7 stores whole seconds
 * (`EX floor(ms / 1000)`), and a window under one second gets NO expiry at all: the first start
 * would block every later one for good. Evenly spaced starts need ~52 ms windows, so this
 * replaces its store hook `_upsert` (same arguments, same result shape) with a PX script.
 */
class MillisecondRateLimiterRedis extends RateLimiterRedis {
  readonly #redis: Redis;
  readonly #timeoutMs: number;
  readonly #onError: ((err: Error) => void) | undefined;

  constructor(
    redis: Redis,
    opts: ConstructorParameters<typeof RateLimiterRedis>[0],
    timeoutMs: number,
    onError: ((err: Error) => void) | undefined,
  ) {
    super(opts);
    this.#redis = redis;
    this.#timeoutMs = timeoutMs;
    this.#onError = onError;
  }

  /** Overrides RateLimiterRedis's store hook (absent from its typings). */
  _upsert(rlKey: string, points: number, msDuration: number, forceExpire = false): Promise<[number, number]> {
    return this.#upsert(rlKey, points, msDuration, forceExpire).catch((err: unknown) => {
      const error = err instanceof Error ? err : new Error(String(err));
      this.#onError?.(error);
      throw error; // RateLimiterStoreAbstract hands the call to the insurance limiter
    });
  }

  async #upsert(rlKey: string, points: number, msDuration: number, forceExpire: boolean): Promise<[number, number]> {
    if (!Number.isInteger(points)) throw new Error('points must be an integer');
    // not connected (down, reconnecting): answer from insurance at once rather than queueing
    // the command in ioredis's offline queue
    if (this.#redis.status !== 'ready') throw new Error(`Redis not ready (${this.#redis.status})`);
    const windowMs = Math.max(1, Math.ceil(msDuration));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
      timer.unref();
    });
    try {
      const result = await Promise.race([
        this.#redis.eval(START_BUDGET_SCRIPT, 1, rlKey, String(points), String(windowMs), forceExpire ? '1' : '0'),
        timeout,
      ]);
      if (!Array.isArray(result) || typeof result[0] !== 'number' || typeof result[1] !== 'number') {
        throw new Error('unexpected reply from the start budget script');
      }
      return [result[0], result[1]];
    } finally {
      clearTimeout(timer);
    }
  }
}

// RateLimiterRedis must still route its store calls through `_upsert`, or the override above
// is dead code and sub-second windows never expire (see the class comment)
if (typeof (RateLimiterRedis.prototype as unknown as Record<string, unknown>)['_upsert'] !== 'function') {
  throw new Error('rate-limiter-flexible: RateLimiterRedis._upsert is gone; review MillisecondRateLimiterRedis');
}

/**
 * Per model: evenly spaced tokens, one every 1.05/perSecond s, counted in Redis under
 * `<keyPrefix>:<model>` and shared by every process with the same Redis and prefix; waiting
 * starts queue FIFO per process (RateLimiterQueue). While Redis is unreachable or slow, each
 * process falls back to its own budget of perSecond (insurance RateLimiterMemory): during an
 * outage N processes may start up to N × perSecond, and calls keep starting.
 */
export function createRedisStartLimiter(
  redis: Redis,
  perSecond: number,
  options: RedisStartLimiterOptions,
): TaskStartLimiter {
  const duration = startIntervalSeconds(perSecond);
  if (!/^[A-Za-z0-9_.:-]+$/.test(options.keyPrefix)) {
    throw new RangeError('keyPrefix: letters, digits, "_", ".", ":" and "-" only');
  }
  const maxQueueSize = options.maxQueueSize ?? perSecond * 60;
  const clock = options.clock ?? systemClock;
  const insurance = new RateLimiterMemory({ points: 1, duration, keyPrefix: `${options.keyPrefix}-insurance` });
  const limiter = new MillisecondRateLimiterRedis(
    redis,
    { storeClient: redis, points: 1, duration, keyPrefix: options.keyPrefix, insuranceLimiter: insurance },
    options.redisTimeoutMs ?? 500,
    options.onRedisError,
  );
  // one FIFO per model (the queue's key is the limiter key: <keyPrefix>:<model>)
  const queue = new RateLimiterQueue(limiter, { maxQueueSize });
  return {
    acquire: (model: string) => takeToken(queue, model, model, maxQueueSize, clock),
  };
}

/** A limiter that never waits (tests, single-stream tools). */
export const unlimitedStartLimiter: TaskStartLimiter = {
  acquire: () => Promise.resolve(0),
};
