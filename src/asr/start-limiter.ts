/**
 * Task-start rate limiting. DashScope counts task submissions per account and per model
 * (20 RPS for the Paraformer real-time models, spec A7), so every connect first takes a token
 * here. Starts over the rate QUEUE (FIFO) instead of failing; only a full queue rejects, with
 * a retryable ERR_ASR_START_QUEUE_FULL that the runner backs off from.
 *
 * The in-memory limiter counts per process. A Redis-backed limiter (shared by every ingest
 * process on one account) will implement the same interface.
 */
import { RateLimiterMemory, RateLimiterQueue } from 'rate-limiter-flexible';
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
  if (!Number.isInteger(perSecond) || perSecond < 1) {
    throw new RangeError('perSecond must be a positive integer');
  }
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
        duration: 1.05 / perSecond,
        keyPrefix: `asr-start-${model}`,
      });
      q = new RateLimiterQueue(limiter, { maxQueueSize });
      queues.set(model, q);
    }
    return q;
  };

  return {
    async acquire(model: string): Promise<number> {
      const started = clock.monotonicMs();
      try {
        await queueFor(model).removeTokens(1);
      } catch (err) {
        throw new AppError('ERR_ASR_START_QUEUE_FULL', 'too many recogniser task starts waiting', {
          category: 'rate_limit',
          retryable: true,
          cause: err,
          details: { model, maxQueueSize },
        });
      }
      return Math.max(0, clock.monotonicMs() - started);
    },
  };
}

/** A limiter that never waits (tests, single-stream tools). */
export const unlimitedStartLimiter: TaskStartLimiter = {
  acquire: () => Promise.resolve(0),
};
