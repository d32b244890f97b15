/**
 * Counters and rate-limited rejection logging shared by the SIP core and its socket adapter.
 * Every rejection (a 4xx-6xx we send for a policy or protocol reason) and every silent drop is
 * counted by its stable code; log lines are limited per code (burst per window) and report how
 * many were suppressed. Log lines carry no PII (no URIs, numbers or bodies).
 */
import type { Logger } from '../../observability/logger.js';

export interface SipCounterSnapshot {
  readonly rejections: Readonly<Record<string, number>>;
  readonly drops: Readonly<Record<string, number>>;
  readonly logSuppressed: number;
}

export class SipCounters {
  private readonly rejections = new Map<string, number>();
  private readonly drops = new Map<string, number>();
  private readonly windows = new Map<string, { start: number; count: number; suppressed: number }>();
  private suppressed = 0;

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number,
    private readonly burst = 10,
    private readonly windowMs = 10_000,
  ) {}

  /** A response ≥ 400 sent for `code`. */
  reject(code: string, status: number, fields: Record<string, unknown> = {}): void {
    this.rejections.set(code, (this.rejections.get(code) ?? 0) + 1);
    this.log(code, { status, ...fields }, 'sip request rejected');
  }

  /** A message dropped without a response. */
  drop(code: string, fields: Record<string, unknown> = {}): void {
    this.drops.set(code, (this.drops.get(code) ?? 0) + 1);
    this.log(code, fields, 'sip message dropped');
  }

  snapshot(): SipCounterSnapshot {
    return {
      rejections: Object.fromEntries(this.rejections),
      drops: Object.fromEntries(this.drops),
      logSuppressed: this.suppressed,
    };
  }

  private log(code: string, fields: Record<string, unknown>, msg: string): void {
    const t = this.now();
    let w = this.windows.get(code);
    if (!w || t - w.start >= this.windowMs) {
      const suppressed = w?.suppressed ?? 0;
      w = { start: t, count: 0, suppressed: 0 };
      this.windows.set(code, w);
      if (suppressed > 0) fields = { ...fields, suppressedSinceLast: suppressed };
    }
    if (w.count >= this.burst) {
      w.suppressed++;
      this.suppressed++;
      return;
    }
    w.count++;
    this.logger.warn({ code, ...fields }, msg);
  }
}
