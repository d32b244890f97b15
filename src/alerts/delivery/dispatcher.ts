/**
 * Alert dispatch (qa-analytics.md §3.3, latency budget §4). The alert worker commits the alert
 * and its pending delivery rows (the outbox, `alert_deliveries`) in one transaction, then calls
 * `dispatch()`: publish on Redis (supervisor hub + other consumers) and enqueue one signed
 * webhook job per URL. Dispatch never throws — the commit already happened; what fails stays
 * pending and the outbox sweeper picks it up:
 *
 *   'redis' pending       → publish again on both channels (and record it);
 *   'supervisor' pending  → publish again on the events channel (the hub records the
 *                           delivery when a socket gets it); an alert that is no longer
 *                           open/acknowledged is marked failed instead (nobody saw it live);
 *   'webhook' pending     → enqueue again (a no-op while the job is retained: deterministic
 *                           id); a URL no longer configured is marked failed.
 *
 * Delivery targets (the outbox rows the transaction must insert): ('supervisor', 'supervisor'),
 * ('redis', `${prefix}:alerts`), ('webhook', <url>) per configured URL.
 */
import { systemClock, type Clock } from '../../core/clock.js';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type { AlertDelivery, AlertRecord, AlertStore } from '../store.js';
import { alertEvent } from './events.js';
import type { EventPublisher } from './publisher.js';
import type { WebhookQueue } from './webhooks.js';

export interface AlertDispatcherOptions {
  readonly store: AlertStore;
  readonly publisher: EventPublisher;
  /** null when no webhook URLs are configured. */
  readonly webhookQueue: WebhookQueue | null;
  readonly webhookUrls: readonly string[];
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock?: Clock;
}

export interface DispatchResult {
  readonly alerts: number;
  readonly published: number;
  readonly webhooksQueued: number;
  /** Publishes and enqueues that failed (left pending for the sweeper). */
  readonly failures: number;
}

export interface SweepResult {
  readonly pending: number;
  readonly republished: number;
  readonly requeued: number;
  /** Deliveries marked failed for good (alert closed, URL removed, alert gone). */
  readonly abandoned: number;
  readonly errors: number;
}

export interface SweeperOptions {
  /** Deliveries pending for longer than this are re-dispatched (default 30 000 ms). */
  readonly olderThanMs?: number;
  /** Rows per sweep (default 200). */
  readonly limit?: number;
}

export interface OutboxSweeper {
  /** One sweep now (also what the timer runs; concurrent calls share one sweep). */
  sweep(): Promise<SweepResult>;
  /** Stops the timer and waits for a running sweep. Idempotent. */
  stop(): Promise<void>;
}

export interface DispatcherStats {
  dispatched: number;
  publishFailures: number;
  enqueueFailures: number;
  sweeps: number;
  sweepErrors: number;
  republished: number;
  requeued: number;
  abandoned: number;
}

export interface AlertDispatcher {
  dispatch(alerts: readonly AlertRecord[]): Promise<DispatchResult>;
  startOutboxSweeper(intervalMs: number, options?: SweeperOptions): OutboxSweeper;
  stats(): DispatcherStats;
}

export function createAlertDispatcher(options: AlertDispatcherOptions): AlertDispatcher {
  const { store, publisher, webhookQueue, metrics } = options;
  const clock = options.clock ?? systemClock;
  const log = options.logger.child({ component: 'alert-dispatcher' });
  const urls = new Set(options.webhookUrls);
  const stats: DispatcherStats = {
    dispatched: 0,
    publishFailures: 0,
    enqueueFailures: 0,
    sweeps: 0,
    sweepErrors: 0,
    republished: 0,
    requeued: 0,
    abandoned: 0,
  };

  const recordFailure = async (d: Pick<AlertDelivery, 'alertId' | 'channel' | 'target'>, error: string, final: boolean) => {
    try {
      await store.recordDelivery(d.alertId, d.channel, d.target, { ok: false, at: new Date(clock.now()), error, final });
    } catch (err) {
      log.error({ code: 'ERR_ALERTS_RECORD_DELIVERY', alertId: d.alertId, channel: d.channel, err: errorMessage(err) }, 'could not record an alert delivery');
    }
  };

  /** Enqueues the webhook job for (alert, url); false (and recorded as a pending failure) when Redis refused. */
  const enqueueWebhook = async (alert: AlertRecord, url: string, body: string): Promise<boolean> => {
    if (!webhookQueue) return false;
    try {
      await webhookQueue.enqueue({ alertId: alert.alertId, url, event: 'alert', body });
      return true;
    } catch (err) {
      stats.enqueueFailures++;
      metrics.alertDeliveryFailures.inc({ channel: 'webhook', final: 'false' });
      log.warn({ code: 'ERR_WEBHOOK_ENQUEUE', alertId: alert.alertId, err: errorMessage(err) }, 'webhook job not queued; left for the outbox sweeper');
      // upserts the pending row, so the sweeper finds it even if the transaction did not insert it
      await recordFailure({ alertId: alert.alertId, channel: 'webhook', target: url }, `ERR_WEBHOOK_ENQUEUE: ${errorMessage(err)}`, false);
      return false;
    }
  };

  const dispatch = async (alerts: readonly AlertRecord[]): Promise<DispatchResult> => {
    let published = 0;
    let webhooksQueued = 0;
    let failures = 0;
    const live = alerts.filter((a) => a.status !== 'suppressed');
    await Promise.all(
      live.map(async (alert) => {
        stats.dispatched++;
        if (alert.finalReceivedAt) {
          metrics.alertLatencyMs.observe({ hop: 'commit' }, Math.max(0, alert.committedAt.getTime() - alert.finalReceivedAt.getTime()));
        }
        const body = JSON.stringify(alertEvent(alert));
        const [pub, ...queued] = await Promise.all([
          publisher.publishAlert(alert),
          ...[...urls].map((url) => enqueueWebhook(alert, url, body)),
        ]);
        if (pub?.ok) published++;
        else {
          failures++;
          stats.publishFailures++;
        }
        for (const ok of queued) {
          if (ok) webhooksQueued++;
          else failures++;
        }
      }),
    );
    return { alerts: live.length, published, webhooksQueued, failures };
  };

  const sweepOnce = async (olderThanMs: number, limit: number): Promise<SweepResult> => {
    stats.sweeps++;
    const pending = await store.listPendingDeliveries(new Date(clock.now() - olderThanMs), limit);
    const byAlert = new Map<string, AlertDelivery[]>();
    for (const d of pending) byAlert.set(d.alertId, [...(byAlert.get(d.alertId) ?? []), d]);
    let republished = 0;
    let requeued = 0;
    let abandoned = 0;
    let errors = 0;

    for (const [alertId, deliveries] of byAlert) {
      let alert: AlertRecord | undefined;
      try {
        alert = await store.getAlert(alertId);
      } catch (err) {
        errors++;
        log.warn({ code: 'ERR_ALERTS_SWEEP', alertId, err: errorMessage(err) }, 'outbox sweep could not load an alert');
        continue;
      }
      if (!alert) {
        for (const d of deliveries) await recordFailure(d, 'ERR_ALERTS_NOT_FOUND: alert no longer exists', true);
        abandoned += deliveries.length;
        continue;
      }
      const a = alert;
      const channels = new Set(deliveries.map((d) => d.channel));
      const stillOpen = a.status === 'open' || a.status === 'acknowledged';

      if (channels.has('redis')) {
        // both channels: also reaches supervisors
        const result = await publisher.publishAlert(a);
        if (result.ok) republished++;
        else errors++;
      } else if (channels.has('supervisor') && stillOpen) {
        try {
          await publisher.publish(alertEvent(a), { alertsChannel: false });
          republished++;
        } catch (err) {
          errors++;
          log.warn({ code: 'ERR_EVENTS_PUBLISH', alertId, err: errorMessage(err) }, 'outbox sweep could not publish an alert');
        }
      }
      for (const d of deliveries) {
        if (d.channel === 'supervisor' && !stillOpen) {
          await recordFailure(d, `ERR_SUPERVISOR_UNDELIVERED: alert was ${a.status} before a supervisor received it`, true);
          metrics.alertDeliveryFailures.inc({ channel: 'supervisor', final: 'true' });
          abandoned++;
        } else if (d.channel === 'webhook') {
          if (!urls.has(d.target)) {
            await recordFailure(d, 'ERR_WEBHOOK_URL_REMOVED: the URL is no longer configured', true);
            metrics.alertDeliveryFailures.inc({ channel: 'webhook', final: 'true' });
            abandoned++;
          } else if (await enqueueWebhook(a, d.target, JSON.stringify(alertEvent(a)))) {
            requeued++;
          } else {
            errors++;
          }
        }
      }
    }
    stats.republished += republished;
    stats.requeued += requeued;
    stats.abandoned += abandoned;
    if (pending.length > 0) {
      log.info({ pending: pending.length, republished, requeued, abandoned, errors }, 'outbox sweep re-dispatched pending deliveries');
    }
    return { pending: pending.length, republished, requeued, abandoned, errors };
  };

  const startOutboxSweeper = (intervalMs: number, sweeperOptions: SweeperOptions = {}): OutboxSweeper => {
    const olderThanMs = sweeperOptions.olderThanMs ?? 30_000;
    const limit = sweeperOptions.limit ?? 200;
    let running: Promise<SweepResult> | null = null;
    let stopped = false;
    const sweep = (): Promise<SweepResult> => {
      running ??= sweepOnce(olderThanMs, limit).finally(() => {
        running = null;
      });
      return running;
    };
    const timer = setInterval(() => {
      if (stopped) return;
      sweep().catch((err: unknown) => {
        stats.sweepErrors++;
        log.warn({ code: 'ERR_ALERTS_SWEEP', err: errorMessage(err) }, 'outbox sweep failed');
      });
    }, intervalMs);
    timer.unref();
    let stopping: Promise<void> | null = null;
    return {
      sweep,
      stop() {
        stopping ??= (async () => {
          stopped = true;
          clearInterval(timer);
          await running?.catch(() => undefined);
        })();
        return stopping;
      },
    };
  };

  return { dispatch, startOutboxSweeper, stats: () => ({ ...stats }) };
}
