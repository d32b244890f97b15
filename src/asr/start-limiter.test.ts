import { afterEach, describe, expect, it, vi } from 'vitest';
import { isAppError } from '../core/errors.js';
import { createMemoryStartLimiter } from './start-limiter.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('createMemoryStartLimiter', () => {
  it('lets perSecond starts through at once, queues the next, rejects when the queue is full', async () => {
    vi.useFakeTimers();
    const clock = { now: () => Date.now(), monotonicMs: () => Date.now() };
    const limiter = createMemoryStartLimiter(2, { maxQueueSize: 1, clock });
    expect(await limiter.acquire('m')).toBe(0);
    expect(await limiter.acquire('m')).toBe(0);
    let waited: number | null = null;
    const third = limiter.acquire('m').then((ms) => {
      waited = ms;
    });
    const fourth = limiter.acquire('m').catch((err: unknown) => err);
    const err = await fourth;
    expect(isAppError(err) && err.code).toBe('ERR_ASR_START_QUEUE_FULL');
    expect(isAppError(err) && err.retryable).toBe(true);
    await vi.advanceTimersByTimeAsync(500);
    expect(waited).toBeNull(); // still queued within the first second
    await vi.advanceTimersByTimeAsync(600);
    await third;
    expect(waited).toBeGreaterThan(500);
    expect(waited).toBeLessThanOrEqual(1100);
  });

  it('limits each model separately', async () => {
    vi.useFakeTimers();
    const limiter = createMemoryStartLimiter(1, { maxQueueSize: 0 });
    await limiter.acquire('a');
    await limiter.acquire('b');
    await expect(limiter.acquire('a')).rejects.toMatchObject({ code: 'ERR_ASR_START_QUEUE_FULL' });
  });

  it('refuses a non-positive rate', () => {
    expect(() => createMemoryStartLimiter(0)).toThrow(RangeError);
  });
});
