/**
 * In-memory AlertStore for tests of the delivery layer (the Postgres implementation lives in
 * src/db/repositories/alerts.ts). Follows the contract in ../store.ts: lifecycle
 * open → acknowledged → resolved, feedback on any non-suppressed alert, recordDelivery upserts
 * on (alertId, channel, target) and sets firstDeliveredAt once. Extra helpers let tests seed
 * alerts and pending deliveries and inject failures.
 */
import { randomUUID } from 'node:crypto';
import type {
  AlertDelivery,
  AlertFeedback,
  AlertRecord,
  AlertStatus,
  AlertStore,
  DeliveryChannel,
  DeliveryResult,
  TransitionOutcome,
} from '../store.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export interface RecordedAttempt {
  readonly alertId: string;
  readonly channel: DeliveryChannel;
  readonly target: string;
  readonly result: DeliveryResult;
}

export type MemoryStoreMethod = keyof AlertStore;

export class MemoryAlertStore implements AlertStore {
  private readonly alerts = new Map<string, AlertRecord>();
  private readonly deliveries = new Map<string, Mutable<AlertDelivery>>();
  private nextDeliveryId = 1;
  private readonly failures = new Map<MemoryStoreMethod, number>();
  private readonly gates = new Map<MemoryStoreMethod, Promise<void>>();
  /** Every recordDelivery call, in order. */
  readonly attempts: RecordedAttempt[] = [];
  private readonly waiters: Array<{ pred: () => boolean; resolve: () => void }> = [];

  constructor(private readonly now: () => number = Date.now) {}

  /** Adds (or replaces) an alert. */
  put(alert: AlertRecord): AlertRecord {
    this.alerts.set(alert.alertId, alert);
    return alert;
  }

  /** Inserts a pending delivery row as the alert worker's transaction would (the outbox). */
  addPendingDelivery(alertId: string, channel: DeliveryChannel, target: string, createdAt: Date): void {
    const key = deliveryKey(alertId, channel, target);
    if (this.deliveries.has(key)) return;
    this.deliveries.set(key, {
      deliveryId: this.nextDeliveryId++,
      alertId,
      channel,
      target,
      status: 'pending',
      attempts: 0,
      lastError: null,
      createdAt,
      deliveredAt: null,
    });
  }

  /** The next `times` calls of `method` reject with an Error (a database outage). */
  failNext(method: MemoryStoreMethod, times = 1): void {
    this.failures.set(method, (this.failures.get(method) ?? 0) + times);
  }

  /** Calls of `method` wait until the returned release function runs (a slow query). */
  hold(method: MemoryStoreMethod): () => void {
    let release!: () => void;
    this.gates.set(method, new Promise<void>((r) => (release = r)));
    return () => {
      this.gates.delete(method);
      release();
    };
  }

  delivery(alertId: string, channel: DeliveryChannel, target: string): AlertDelivery | undefined {
    const d = this.deliveries.get(deliveryKey(alertId, channel, target));
    return d ? { ...d } : undefined;
  }

  attemptsFor(alertId: string, channel?: DeliveryChannel): RecordedAttempt[] {
    return this.attempts.filter((a) => a.alertId === alertId && (channel === undefined || a.channel === channel));
  }

  /** Resolves once `pred` holds after some recordDelivery (or at once); rejects after timeoutMs. */
  waitFor(pred: () => boolean, timeoutMs = 5000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(entry);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`memory store: condition not met within ${timeoutMs} ms`));
      }, timeoutMs);
      const entry = {
        pred,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(entry);
    });
  }

  private maybeFail(method: MemoryStoreMethod): void {
    const left = this.failures.get(method) ?? 0;
    if (left <= 0) return;
    this.failures.set(method, left - 1);
    throw new Error(`memory store: injected ${method} failure`);
  }

  private wake(): void {
    for (const w of [...this.waiters]) {
      if (w.pred()) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }

  listOpenAlerts(options: { readonly tenantId?: string; readonly limit?: number } = {}): Promise<AlertRecord[]> {
    return this.run('listOpenAlerts', () =>
      [...this.alerts.values()]
        .filter((a) => a.status === 'open' || a.status === 'acknowledged')
        .filter((a) => options.tenantId === undefined || a.tenantId === options.tenantId)
        .sort((a, b) => b.committedAt.getTime() - a.committedAt.getTime())
        .slice(0, options.limit ?? 100),
    );
  }

  listAlertsByStatus(status: AlertStatus, options: { readonly tenantId?: string; readonly limit?: number } = {}): Promise<AlertRecord[]> {
    return this.run('listAlertsByStatus', () =>
      [...this.alerts.values()]
        .filter((a) => a.status === status)
        .filter((a) => options.tenantId === undefined || a.tenantId === options.tenantId)
        .sort((a, b) => b.committedAt.getTime() - a.committedAt.getTime())
        .slice(0, options.limit ?? 100),
    );
  }

  getAlert(alertId: string): Promise<AlertRecord | undefined> {
    return this.run('getAlert', () => this.alerts.get(alertId));
  }

  listDeliveries(alertId: string): Promise<AlertDelivery[]> {
    return this.run('listDeliveries', () =>
      [...this.deliveries.values()].filter((d) => d.alertId === alertId).map((d) => ({ ...d })),
    );
  }

  listPendingDeliveries(createdBefore: Date, limit: number): Promise<AlertDelivery[]> {
    return this.run('listPendingDeliveries', () =>
      [...this.deliveries.values()]
        .filter((d) => d.status === 'pending' && d.createdAt.getTime() < createdBefore.getTime())
        .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())
        .slice(0, limit)
        .map((d) => ({ ...d })),
    );
  }

  recordDelivery(alertId: string, channel: DeliveryChannel, target: string, result: DeliveryResult): Promise<void> {
    return this.run('recordDelivery', () => {
      const key = deliveryKey(alertId, channel, target);
      let row = this.deliveries.get(key);
      if (!row) {
        this.addPendingDelivery(alertId, channel, target, new Date(this.now()));
        row = this.deliveries.get(key)!;
      }
      row.attempts += 1;
      if (result.ok) {
        row.status = 'delivered';
        row.deliveredAt ??= result.at;
        row.lastError = null;
        const alert = this.alerts.get(alertId);
        if (alert && alert.firstDeliveredAt === null) this.alerts.set(alertId, { ...alert, firstDeliveredAt: result.at });
      } else {
        row.lastError = result.error;
        if (result.final && row.status !== 'delivered') row.status = 'failed';
      }
      this.attempts.push({ alertId, channel, target, result });
      this.wake();
    });
  }

  transition(alertId: string, action: 'acknowledge' | 'resolve', by: string, at: Date): Promise<TransitionOutcome> {
    return this.run('transition', (): TransitionOutcome => {
      const alert = this.alerts.get(alertId);
      if (!alert) return { ok: false, error: 'not-found' };
      if (action === 'acknowledge') {
        if (alert.status !== 'open') return { ok: false, error: 'invalid-transition', status: alert.status };
        return { ok: true, alert: this.put({ ...alert, status: 'acknowledged', ackedBy: by, ackedAt: at }) };
      }
      if (alert.status !== 'open' && alert.status !== 'acknowledged') {
        return { ok: false, error: 'invalid-transition', status: alert.status };
      }
      return { ok: true, alert: this.put({ ...alert, status: 'resolved', resolvedBy: by, resolvedAt: at }) };
    });
  }

  setFeedback(alertId: string, feedback: AlertFeedback, by: string, at: Date): Promise<TransitionOutcome> {
    return this.run('setFeedback', (): TransitionOutcome => {
      const alert = this.alerts.get(alertId);
      if (!alert) return { ok: false, error: 'not-found' };
      if (alert.status === 'suppressed') return { ok: false, error: 'invalid-transition', status: alert.status };
      return { ok: true, alert: this.put({ ...alert, feedback, feedbackBy: by, feedbackAt: at }) };
    });
  }

  private async run<T>(method: MemoryStoreMethod, fn: () => T): Promise<T> {
    await (this.gates.get(method) ?? Promise.resolve()); // asynchronous like a database round trip
    this.maybeFail(method);
    return fn();
  }
}

function deliveryKey(alertId: string, channel: DeliveryChannel, target: string): string {
  return `${alertId}\u0000${channel}\u0000${target}`;
}

/** A valid open alert for tests; override any field. */
export function makeAlert(overrides: Partial<AlertRecord> = {}): AlertRecord {
  const committedAt = overrides.committedAt ?? new Date();
  const callId = overrides.callId ?? randomUUID();
  return {
    alertId: randomUUID(),
    tenantId: 'default',
    callId,
    callStartedAt: new Date(committedAt.getTime() - 60_000),
    ruleId: 'customer-negative',
    ruleVersion: 1,
    role: 'customer',
    severity: 'warning',
    status: 'open',
    reason: 'share',
    suppressedReason: null,
    dedupeKey: `${callId}:customer-negative:warning`,
    evidence: [
      { role: 'customer', seq: 3, startMs: 21_000, endMs: 24_500, text: '[redacted] 太慢了', emotionRaw: 'negative', emotionConfidence: 0.9, valence: -1 },
    ],
    triggerRole: 'customer',
    triggerSeq: 3,
    triggerEndMs: 24_500,
    finalReceivedAt: new Date(committedAt.getTime() - 40),
    committedAt,
    firstDeliveredAt: null,
    ackedBy: null,
    ackedAt: null,
    resolvedBy: null,
    resolvedAt: null,
    feedback: null,
    feedbackBy: null,
    feedbackAt: null,
    ...overrides,
  };
}
