import { afterEach, describe, expect, it, vi } from 'vitest';
import { isAppError } from '../core/errors.js';
import { createMemoryStartLimiter } from './start-limiter.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('createMemoryStartLimiter', () => {
  it('spaces starts evenly, queues the rest, rejects when the queue is full', async () => {
    vi.useFakeTimers();
    const clock = { now: () => Date.now(), monotonicMs: () => Date.now() };
    const limiter = createMemoryStartLimiter(2, { maxQueueSize: 1, clock });
    expect(await limiter.acquire('m')).toBe(0);
    let waited: number | null = null;
    const second = limiter.acquire('m').then((ms) => {
      waited = ms;
    });
    const third = limiter.acquire('m').catch((err: unknown) => err);
    const err = await third;
    expect(isAppError(err) && err.code).toBe('ERR_ASR_START_QUEUE_FULL');
    expect(isAppError(err) && err.retryable).toBe(true);
    await vi.advanceTimersByTimeAsync(400);
    expect(waited).toBeNull(); // 2 per second = one per 500 ms: still queued
    await vi.advanceTimersByTimeAsync(200);
    await second;
    expect(waited).toBeGreaterThanOrEqual(490);
    expect(waited).toBeLessThanOrEqual(600);
  });

  it('never lets more than perSecond starts into any sliding second', async () => {
    vi.useFakeTimers();
    const limiter = createMemoryStartLimiter(20, { maxQueueSize: 1000 });
    const times: number[] = [];
    const t0 = Date.now();
    const all = Promise.all(
      Array.from({ length: 60 }, () => limiter.acquire('m').then(() => void times.push(Date.now() - t0))),
    );
    await vi.advanceTimersByTimeAsync(5000);
    await all;
    times.sort((a, b) => a - b);
    let max = 0;
    for (let i = 0; i < times.length; i++) {
      let j = i;
      while (j < times.length && times[j]! - times[i]! < 1000) j++;
      max = Math.max(max, j - i);
    }
    expect(max).toBe(20);
    expect(times.at(-1)!).toBeGreaterThanOrEqual(2900); // 60 starts at 20/s take ~3 s
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
