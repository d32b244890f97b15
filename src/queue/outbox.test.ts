import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Outbox, type OutboxDropReason } from './outbox.js';

/** A fake `send` whose availability the test switches; records every attempt. */
function fakeSend() {
  const state = {
    up: true,
    attempts: [] as Array<{ item: number; at: number }>,
    delivered: [] as number[],
    poison: new Set<number>(),
  };
  const send = async (item: number): Promise<void> => {
    state.attempts.push({ item, at: Date.now() });
    await Promise.resolve();
    if (state.poison.has(item)) throw new Error('rejected by server');
    if (!state.up) throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
    state.delivered.push(item);
  };
  return { state, send };
}

describe('Outbox', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends straight through while healthy', async () => {
    const { state, send } = fakeSend();
    const box = new Outbox<number>({ send });
    const outcomes = await Promise.all([1, 2, 3].map((i) => box.push(i)));
    expect(outcomes).toEqual(['queued', 'queued', 'queued']);
    expect(state.delivered).toEqual([1, 2, 3]);
    expect(box.pending).toBe(0);
  });

  it('keeps failed items, retries with doubling backoff, and delivers them in order', async () => {
    const { state, send } = fakeSend();
    const firstFailures: number[] = [];
    const states: string[] = [];
    const box = new Outbox<number>({
      send,
      retryMinMs: 100,
      retryMaxMs: 400,
      onSendFailed: (item, _err, first) => {
        if (first) firstFailures.push(item);
      },
      onStateChange: (s) => states.push(s),
    });
    state.up = false;
    const outcomes = [1, 2, 3].map((i) => box.push(i));
    await vi.advanceTimersByTimeAsync(0);
    expect(box.pending).toBe(3);
    expect(box.backingOff).toBe(true);
    // more items while down wait behind the failed ones
    outcomes.push(box.push(4));
    await vi.advanceTimersByTimeAsync(100 + 200 + 400 + 400);
    expect(state.delivered).toEqual([]);
    // probes go one at a time, with the oldest item, at 100, 200, 400, 400 ms
    const probes = state.attempts.slice(3).map((a) => a.item);
    expect(probes).toEqual([1, 1, 1, 1]);
    const gaps = state.attempts.slice(3).map((a, i, all) => a.at - (i === 0 ? state.attempts[2]!.at : all[i - 1]!.at));
    expect(gaps).toEqual([100, 200, 400, 400]);

    state.up = true;
    await vi.advanceTimersByTimeAsync(400);
    expect(await Promise.all(outcomes)).toEqual(['queued', 'queued', 'queued', 'queued']);
    expect(state.delivered).toEqual([1, 2, 3, 4]);
    expect(firstFailures).toEqual([1, 2, 3]);
    expect(states).toEqual(['backoff', 'healthy']);
    expect(box.pending).toBe(0);
  });

  it('drops the oldest waiting items past the bound, and only those', async () => {
    const { state, send } = fakeSend();
    const dropped: Array<[number, OutboxDropReason]> = [];
    const box = new Outbox<number>({
      send,
      maxSize: 3,
      retryMinMs: 50,
      onDropped: (item, reason) => dropped.push([item, reason]),
    });
    state.up = false;
    const first = box.push(1);
    await vi.advanceTimersByTimeAsync(0); // 1 failed once, waits for its retry
    const rest = [2, 3, 4, 5].map((i) => box.push(i));
    expect(box.size).toBe(3);
    expect(dropped).toEqual([
      [1, 'overflow'],
      [2, 'overflow'],
    ]);
    expect(await first).toBe('dropped');
    state.up = true;
    await vi.advanceTimersByTimeAsync(50);
    expect(await Promise.all(rest)).toEqual(['dropped', 'queued', 'queued', 'queued']);
    expect(state.delivered).toEqual([3, 4, 5]);
  });

  it('drops an item the owner classifies as permanent without blocking the others', async () => {
    const { state, send } = fakeSend();
    state.poison.add(2);
    const dropped: Array<[number, OutboxDropReason]> = [];
    const box = new Outbox<number>({
      send,
      retryMinMs: 10,
      classify: (err, attempts) =>
        (err as { code?: string }).code === undefined && attempts >= 2 ? 'reject' : 'retry',
      onDropped: (item, reason) => dropped.push([item, reason]),
    });
    const outcomes = Promise.all([1, 2, 3].map((i) => box.push(i)));
    await vi.advanceTimersByTimeAsync(100);
    expect(await outcomes).toEqual(['queued', 'dropped', 'queued']);
    expect(dropped).toEqual([[2, 'rejected']]);
    expect(state.attempts.filter((a) => a.item === 2)).toHaveLength(2);
    expect(state.delivered).toEqual([1, 3]);
  });

  it('bounds concurrent sends', async () => {
    let inFlight = 0;
    let peak = 0;
    const box = new Outbox<number>({
      maxInFlight: 2,
      send: async () => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 10));
        inFlight--;
      },
    });
    const all = Promise.all([1, 2, 3, 4, 5].map((i) => box.push(i)));
    expect(box.pending).toBe(5);
    await vi.advanceTimersByTimeAsync(100);
    await all;
    expect(peak).toBe(2);
  });

  it('flush resolves once everything is sent, and retries at once instead of waiting out the backoff', async () => {
    const { state, send } = fakeSend();
    const box = new Outbox<number>({ send, retryMinMs: 10_000 });
    state.up = false;
    void box.push(1);
    await vi.advanceTimersByTimeAsync(0);
    state.up = true;
    let flushed = false;
    const f = box.flush(1000).then(() => (flushed = true));
    await vi.advanceTimersByTimeAsync(0);
    await f;
    expect(flushed).toBe(true);
    expect(state.delivered).toEqual([1]);
  });

  it('flush rejects with ERR_QUEUE_FLUSH_TIMEOUT while sends keep failing', async () => {
    const { state, send } = fakeSend();
    const box = new Outbox<number>({ send, retryMinMs: 10 });
    state.up = false;
    void box.push(1);
    const f = box.flush(500);
    const check = expect(f).rejects.toMatchObject({ code: 'ERR_QUEUE_FLUSH_TIMEOUT', details: { pending: 1 } });
    await vi.advanceTimersByTimeAsync(500);
    await check;
    box.close();
  });

  it('close drops what is waiting and stops retrying', async () => {
    const { state, send } = fakeSend();
    const dropped: Array<[number, OutboxDropReason]> = [];
    const box = new Outbox<number>({ send, retryMinMs: 10, onDropped: (i, r) => dropped.push([i, r]) });
    state.up = false;
    const p = box.push(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(box.close()).toBe(1);
    expect(await p).toBe('dropped');
    const attempts = state.attempts.length;
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.attempts.length).toBe(attempts);
    expect(await box.push(2)).toBe('dropped');
    expect(dropped).toEqual([
      [1, 'closed'],
      [2, 'closed'],
    ]);
    expect(box.pending).toBe(0);
  });
});
