/**
 * Bounded, ordered outbox in front of an unreliable `send` (the producer's queue add).
 * Sans-I/O apart from timers: `send` is injected, so the retry logic is unit-tested with a fake.
 *
 * - While sends succeed, items go straight out (up to `maxInFlight` at once).
 * - When a send fails, the item goes back into the outbox in its original order and the outbox
 *   switches to backoff: after a delay (min → max, doubling) it probes with the oldest item
 *   alone; once a probe succeeds, everything waiting is sent again.
 * - The outbox holds at most `maxSize` waiting items; past that the oldest is dropped (counted
 *   by the owner through `onDropped`). Items in flight are not dropped.
 * - A failure the owner classifies as permanent drops that item only (no head-of-line block).
 * - `push` never rejects: it settles 'queued' once sent, or 'dropped'.
 */
import { AppError } from '../core/errors.js';

export type OutboxOutcome = 'queued' | 'dropped';
export type OutboxDropReason = 'overflow' | 'rejected' | 'closed';

export interface OutboxOptions<T> {
  send(item: T): Promise<void>;
  /** Waiting items kept while sends fail (default 50 000). */
  readonly maxSize?: number;
  /** Concurrent sends while healthy (default 100). */
  readonly maxInFlight?: number;
  /** First retry delay after a failure (default 200 ms). */
  readonly retryMinMs?: number;
  /** Retry delay cap (default 5000 ms). */
  readonly retryMaxMs?: number;
  /**
   * 'reject' drops the item (the failure will not go away by retrying); default 'retry'.
   * `attempts` counts the item's sends so far, this one included.
   */
  classify?(err: unknown, attempts: number): 'retry' | 'reject';
  onSent?(item: T, attempts: number): void;
  /** Every failed send; `first` is true on the item's first failure. */
  onSendFailed?(item: T, err: unknown, first: boolean): void;
  onDropped?(item: T, reason: OutboxDropReason, err?: unknown): void;
  /** Entered backoff (sends failing) / left it (a probe succeeded). */
  onStateChange?(state: 'backoff' | 'healthy', waiting: number): void;
}

interface Entry<T> {
  readonly seq: number;
  readonly item: T;
  attempts: number;
  failed: boolean;
  settle(outcome: OutboxOutcome): void;
}

type Mode = 'healthy' | 'backoff' | 'probing';

export class Outbox<T> {
  private readonly opts: OutboxOptions<T>;
  private readonly maxSize: number;
  private readonly maxInFlight: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  /** Waiting entries, ascending seq. */
  private readonly waiting: Entry<T>[] = [];
  private inFlight = 0;
  private nextSeq = 0;
  private mode: Mode = 'healthy';
  private delayMs: number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(options: OutboxOptions<T>) {
    this.opts = options;
    this.maxSize = Math.max(1, options.maxSize ?? 50_000);
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 100);
    this.retryMinMs = Math.max(1, options.retryMinMs ?? 200);
    this.retryMaxMs = Math.max(this.retryMinMs, options.retryMaxMs ?? 5000);
    this.delayMs = this.retryMinMs;
  }

  /** Items not yet confirmed sent: waiting + in flight. */
  get pending(): number {
    return this.waiting.length + this.inFlight;
  }

  /** Items waiting in the outbox (not in flight). */
  get size(): number {
    return this.waiting.length;
  }

  /** True while sends are failing and the outbox is retrying. */
  get backingOff(): boolean {
    return this.mode !== 'healthy';
  }

  push(item: T): Promise<OutboxOutcome> {
    return new Promise<OutboxOutcome>((resolve) => {
      const entry: Entry<T> = { seq: this.nextSeq++, item, attempts: 0, failed: false, settle: resolve };
      if (this.closed) {
        this.drop(entry, 'closed');
        return;
      }
      this.waiting.push(entry);
      this.enforceBound();
      this.pump();
    });
  }

  /** Resolves when nothing is pending; rejects with ERR_QUEUE_FLUSH_TIMEOUT after timeoutMs. */
  flush(timeoutMs: number): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    // a flush is a good moment to retry at once rather than after the current backoff
    if (this.mode === 'backoff' && !this.closed) this.probeNow();
    return new Promise<void>((resolve, reject) => {
      const waiter = () => {
        clearTimeout(timeout);
        resolve();
      };
      const timeout = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== waiter);
        reject(
          new AppError('ERR_QUEUE_FLUSH_TIMEOUT', `queue flush timed out with ${this.pending} jobs pending`, {
            category: 'connectivity',
            details: { pending: this.pending, timeoutMs },
          }),
        );
      }, timeoutMs);
      this.idleWaiters.push(waiter);
    });
  }

  /** Stops retrying and drops every waiting item ('closed'); returns how many were dropped. */
  close(): number {
    if (this.closed) return 0;
    this.closed = true;
    this.clearTimer();
    const dropped = this.waiting.splice(0, this.waiting.length);
    for (const e of dropped) this.drop(e, 'closed');
    this.notifyIdle();
    return dropped.length;
  }

  private pump(): void {
    if (this.closed) return;
    if (this.mode === 'backoff') return;
    if (this.mode === 'probing') return; // one probe at a time; its result decides
    while (this.waiting.length > 0 && this.inFlight < this.maxInFlight) {
      const entry = this.waiting.shift();
      if (entry) void this.send(entry);
    }
  }

  private probeNow(): void {
    this.clearTimer();
    const entry = this.waiting.shift();
    if (!entry) {
      this.setMode('healthy');
      return;
    }
    this.mode = 'probing';
    void this.send(entry);
  }

  private async send(entry: Entry<T>): Promise<void> {
    this.inFlight++;
    entry.attempts++;
    const probe = this.mode === 'probing';
    let error: unknown = null;
    let ok = false;
    try {
      await this.opts.send(entry.item);
      ok = true;
    } catch (err) {
      error = err ?? new Error('send failed');
    } finally {
      this.inFlight--;
    }
    if (ok) {
      entry.settle('queued');
      this.opts.onSent?.(entry.item, entry.attempts);
      if (probe || this.mode === 'backoff') {
        // the way is clear again: send everything waiting
        this.clearTimer();
        this.delayMs = this.retryMinMs;
        this.setMode('healthy');
      }
      this.pump();
      this.notifyIdle();
      return;
    }
    const first = !entry.failed;
    entry.failed = true;
    this.opts.onSendFailed?.(entry.item, error, first);
    if (this.closed) {
      this.drop(entry, 'closed', error);
      this.notifyIdle();
      return;
    }
    if ((this.opts.classify?.(error, entry.attempts) ?? 'retry') === 'reject') {
      this.drop(entry, 'rejected', error);
      if (probe) this.probeNow(); // the failure was the item's, not the connection's
      this.notifyIdle();
      return;
    }
    this.reinsert(entry);
    this.enforceBound();
    this.enterBackoff(probe);
    this.notifyIdle();
  }

  private enterBackoff(fromProbe: boolean): void {
    if (this.timer) return;
    if (this.mode === 'probing' && !fromProbe) return; // the probe in flight decides
    if (this.mode === 'healthy') this.setMode('backoff');
    else this.mode = 'backoff';
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.retryMaxMs);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.closed) this.probeNow();
    }, delay);
  }

  private reinsert(entry: Entry<T>): void {
    // failed items are older than most waiting ones: scan from the front
    let i = 0;
    while (i < this.waiting.length && (this.waiting[i]?.seq ?? Infinity) < entry.seq) i++;
    this.waiting.splice(i, 0, entry);
  }

  private enforceBound(): void {
    while (this.waiting.length > this.maxSize) {
      const oldest = this.waiting.shift();
      if (oldest) this.drop(oldest, 'overflow');
    }
  }

  private drop(entry: Entry<T>, reason: OutboxDropReason, err?: unknown): void {
    entry.settle('dropped');
    this.opts.onDropped?.(entry.item, reason, err);
  }

  private setMode(mode: 'healthy' | 'backoff'): void {
    const changed = (this.mode === 'healthy') !== (mode === 'healthy');
    this.mode = mode;
    if (changed) this.opts.onStateChange?.(mode, this.waiting.length);
  }

  private clearTimer(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private notifyIdle(): void {
    if (this.pending !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
