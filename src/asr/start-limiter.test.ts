import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { deleteKeys, freePort, privateRedis, TEST_REDIS_URL, uniquePrefix } from '../../test/support/redis.js';
import { isAppError } from '../core/errors.js';
import { createMemoryStartLimiter, createRedisStartLimiter } from './start-limiter.js';

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

/** Most grants inside any sliding `windowMs` (times sorted ascending). */
function maxInWindow(times: readonly number[], windowMs: number): number {
  let max = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (j < times.length && times[j]! - times[i]! < windowMs) j++;
    max = Math.max(max, j - i);
  }
  return max;
}

describe('createRedisStartLimiter (real Redis)', () => {
  const cleanups: Array<() => Promise<unknown> | void> = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()?.();
  });

  /** A connected client of its own ("one process"). */
  async function client(url = TEST_REDIS_URL): Promise<Redis> {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    r.on('error', () => undefined);
    cleanups.push(() => r.disconnect());
    await r.connect();
    return r;
  }

  function prefix(tag: string): string {
    const p = uniquePrefix(`limiter-${tag}`);
    cleanups.push(() => deleteKeys(TEST_REDIS_URL, p));
    return p;
  }

  it('two processes sharing one budget never exceed perSecond starts in any sliding second', async () => {
    const keyPrefix = prefix('shared');
    const perSecond = 20;
    const a = createRedisStartLimiter(await client(), perSecond, { keyPrefix });
    const b = createRedisStartLimiter(await client(), perSecond, { keyPrefix });
    const grants: number[] = [];
    const t0 = Date.now();
    const take = (l: typeof a) => l.acquire('paraformer-realtime-8k-v2').then(() => void grants.push(Date.now() - t0));
    await Promise.all(Array.from({ length: 20 }, () => [take(a), take(b)]).flat());
    grants.sort((x, y) => x - y);
    expect(grants).toHaveLength(40);
    // each limiter alone would allow 20 in the first second: 40 together
    expect(maxInWindow(grants, 1000)).toBeLessThanOrEqual(perSecond);
    expect(grants.at(-1)!).toBeGreaterThanOrEqual(39 * 52); // 40 evenly spaced starts, one per 52.5 ms
    const keys = await (await client()).keys(`${keyPrefix}:*`);
    expect(keys.every((k) => k === `${keyPrefix}:paraformer-realtime-8k-v2`)).toBe(true);
  });

  it('keeps one budget per model, shared across processes', async () => {
    const keyPrefix = prefix('models');
    // one start per 1.05 s and no queue: a second start within the window is refused at once
    const a = createRedisStartLimiter(await client(), 1, { keyPrefix, maxQueueSize: 0 });
    const b = createRedisStartLimiter(await client(), 1, { keyPrefix, maxQueueSize: 0 });
    await a.acquire('qwen3-asr-flash-realtime');
    await a.acquire('paraformer-realtime-8k-v2');
    await expect(b.acquire('qwen3-asr-flash-realtime')).rejects.toMatchObject({ code: 'ERR_ASR_START_QUEUE_FULL', retryable: true });
    await expect(a.acquire('paraformer-realtime-8k-v2')).rejects.toMatchObject({ code: 'ERR_ASR_START_QUEUE_FULL' });
    await b.acquire('paraformer-realtime-v2');
    // a different prefix is a different budget
    const other = createRedisStartLimiter(await client(), 1, { keyPrefix: prefix('models-other'), maxQueueSize: 0 });
    await other.acquire('qwen3-asr-flash-realtime');
  });

  it('waits in FIFO order for the shared window to pass', async () => {
    const keyPrefix = prefix('fifo');
    const a = createRedisStartLimiter(await client(), 10, { keyPrefix });
    const b = createRedisStartLimiter(await client(), 10, { keyPrefix });
    expect(await b.acquire('m')).toBeLessThan(100);
    const order: number[] = [];
    await Promise.all([1, 2, 3].map((n) => a.acquire('m').then(() => void order.push(n))));
    expect(order).toEqual([1, 2, 3]);
  });

  it('grants starts from the per-process budget while Redis is unreachable', async () => {
    const down = new Redis(`redis://127.0.0.1:${await freePort()}`, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    down.on('error', () => undefined);
    cleanups.push(() => down.disconnect());
    const errors: string[] = [];
    const limiter = createRedisStartLimiter(down, 1, {
      keyPrefix: prefix('down'),
      maxQueueSize: 0,
      onRedisError: (err) => errors.push(err.message),
    });
    expect(await limiter.acquire('m')).toBeLessThan(1000);
    expect(await limiter.acquire('n')).toBeLessThan(1000);
    // still limited, per process: a second start of `m` within its window is refused
    await expect(limiter.acquire('m')).rejects.toMatchObject({ code: 'ERR_ASR_START_QUEUE_FULL' });
    expect(errors.length).toBeGreaterThanOrEqual(3);
    expect(errors[0]).toMatch(/^Redis not ready/);
  });

  it('treats a Redis that does not answer in time as an outage', async () => {
    const redis = privateRedis(await freePort());
    await redis.start();
    cleanups.push(() => redis.stop());
    const paused = await client(redis.url);
    const errors: string[] = [];
    const limiter = createRedisStartLimiter(paused, 5, {
      keyPrefix: 'cstest-limiter-slow',
      redisTimeoutMs: 100,
      onRedisError: (err) => errors.push(err.message),
    });
    await limiter.acquire('m'); // Redis answers: its budget
    expect(errors).toEqual([]);
    const admin = await client(redis.url);
    await admin.call('CLIENT', 'PAUSE', '600', 'ALL');
    await limiter.acquire('n'); // no answer within 100 ms: the process budget grants it
    expect(errors).toEqual(['Redis did not answer within 100 ms']);
  });

  it('refuses a bad rate or key prefix', async () => {
    const r = await client();
    expect(() => createRedisStartLimiter(r, 0, { keyPrefix: 'x' })).toThrow(RangeError);
    expect(() => createRedisStartLimiter(r, 1, { keyPrefix: 'a b*' })).toThrow(RangeError);
  });
});
