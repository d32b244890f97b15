/**
 * The live calls of this process: capacity, the periodic tick (keep-alive silence, idle
 * sockets), and evacuation on drain.
 */
export interface LiveCall {
  readonly callId: string | null;
  /** Periodic housekeeping; `now` is wall-clock ms. */
  tick(now: number): void;
  /** Ends the call because the process drains; resolves once its last utterance is queued. */
  drain(): Promise<void>;
  /** Resolves when the call has fully ended (all finals queued). */
  readonly done: Promise<void>;
}

export class CallRegistry {
  private readonly calls = new Set<LiveCall>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly maxCalls: number,
    private readonly now: () => number = Date.now,
    private readonly tickMs = 250,
  ) {}

  get size(): number {
    return this.calls.size;
  }

  hasCapacity(): boolean {
    return this.calls.size < this.maxCalls;
  }

  add(call: LiveCall): void {
    this.calls.add(call);
    void call.done.finally(() => this.calls.delete(call));
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
  }

  private tick(): void {
    const now = this.now();
    for (const call of this.calls) call.tick(now);
    if (this.calls.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Asks every call to end and waits for them, up to `timeoutMs`; returns the calls still open. */
  async drainAll(timeoutMs: number): Promise<number> {
    const pending = [...this.calls].map((c) => c.drain().catch(() => undefined));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.all(pending), timeout]);
    if (timer) clearTimeout(timer);
    return this.calls.size;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
