/**
 * Publishes live events on Redis pub/sub (events.ts has the protocol and channel names).
 * Every event goes to `${prefix}:events`; alert events also to `${prefix}:alerts`.
 *
 * Redis PUBLISH is fire-and-forget: its reply is the number of subscribers that received the
 * message (0 is not an error: nobody listens right now; the supervisor hub sends open alerts
 * on connect). `publishAlert` records the 'redis' delivery (target = the alerts channel name)
 * with the outcome; a failed PUBLISH leaves the delivery pending for the outbox sweeper.
 * Give it a producer-style connection (enableOfflineQueue false), so a publish while Redis
 * is down fails fast instead of queueing in ioredis.
 */
import type { Redis } from 'ioredis';
import { systemClock, type Clock } from '../../core/clock.js';
import { AppError, errorMessage } from '../../core/errors.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type { AlertRecord, AlertStore } from '../store.js';
import { alertEvent, eventChannels, isAlertEvent, liveEventSchema, type EventChannels, type LiveEvent } from './events.js';

export interface PublishOptions {
  /** Also publish alert events on the alerts channel (default true; false: events channel only). */
  readonly alertsChannel?: boolean;
}

export interface PublishResult {
  /** Subscribers that received it on the events channel. */
  readonly eventsReceivers: number;
  /** Subscribers on the alerts channel (null when not published there). */
  readonly alertsReceivers: number | null;
}

export interface PublishAlertResult {
  readonly ok: boolean;
  /** Subscribers on the alerts channel (0 when the publish failed). */
  readonly receivers: number;
}

export interface PublisherStats {
  published: number;
  publishErrors: number;
  /** Alerts published when nobody subscribed to the alerts channel. */
  alertsWithoutSubscribers: number;
  recordErrors: number;
}

export interface EventPublisher {
  readonly channels: EventChannels;
  /** Validates and publishes one event. Rejects (ERR_EVENTS_INVALID / ERR_EVENTS_PUBLISH) on failure. */
  publish(event: LiveEvent, options?: PublishOptions): Promise<PublishResult>;
  /** Publishes an `alert` event on both channels and records the 'redis' delivery. Never rejects. */
  publishAlert(alert: AlertRecord): Promise<PublishAlertResult>;
  stats(): PublisherStats;
}

export interface EventPublisherOptions {
  readonly redis: Redis;
  /** Channel prefix (usually QUEUE_PREFIX). */
  readonly prefix: string;
  readonly store: AlertStore;
  readonly metrics?: Metrics;
  readonly logger: Logger;
  readonly clock?: Clock;
}

export function createEventPublisher(options: EventPublisherOptions): EventPublisher {
  const { redis, store, metrics } = options;
  const clock = options.clock ?? systemClock;
  const log = options.logger.child({ component: 'event-publisher' });
  const channels = eventChannels(options.prefix);
  const stats: PublisherStats = { published: 0, publishErrors: 0, alertsWithoutSubscribers: 0, recordErrors: 0 };

  const publish = async (event: LiveEvent, opts: PublishOptions = {}): Promise<PublishResult> => {
    const checked = liveEventSchema.safeParse(event);
    if (!checked.success) {
      stats.publishErrors++;
      throw new AppError('ERR_EVENTS_INVALID', `ERR_EVENTS_INVALID: ${event.type} event does not match the protocol`, {
        category: 'application',
      });
    }
    const text = JSON.stringify(checked.data);
    const toAlerts = isAlertEvent(checked.data) && opts.alertsChannel !== false;
    try {
      // MULTI: both channels get the message or neither (one round trip)
      const tx = redis.multi().publish(channels.events, text);
      if (toAlerts) tx.publish(channels.alerts, text);
      const replies = await tx.exec();
      if (!replies) throw new Error('transaction aborted');
      const counts = replies.map(([err, n]) => {
        if (err) throw err;
        return typeof n === 'number' ? n : 0;
      });
      stats.published++;
      return { eventsReceivers: counts[0] ?? 0, alertsReceivers: toAlerts ? (counts[1] ?? 0) : null };
    } catch (err) {
      stats.publishErrors++;
      throw new AppError('ERR_EVENTS_PUBLISH', `ERR_EVENTS_PUBLISH: ${errorMessage(err)}`, {
        category: 'connectivity',
        cause: err,
      });
    }
  };

  const record = async (alert: AlertRecord, ok: boolean, error: string): Promise<void> => {
    const at = new Date(clock.now());
    try {
      await store.recordDelivery(
        alert.alertId,
        'redis',
        channels.alerts,
        ok ? { ok: true, at } : { ok: false, at, error, final: false },
      );
    } catch (err) {
      stats.recordErrors++;
      log.error({ code: 'ERR_ALERTS_RECORD_DELIVERY', alertId: alert.alertId, channel: 'redis', err: errorMessage(err) }, 'could not record an alert delivery');
    }
  };

  const publishAlert = async (alert: AlertRecord): Promise<PublishAlertResult> => {
    let result: PublishResult;
    try {
      result = await publish(alertEvent(alert));
    } catch (err) {
      const message = errorMessage(err);
      metrics?.alertDeliveryFailures.inc({ channel: 'redis', final: 'false' });
      log.warn({ code: 'ERR_EVENTS_PUBLISH', alertId: alert.alertId, err: message }, 'alert publish failed; left for the outbox sweeper');
      await record(alert, false, message);
      return { ok: false, receivers: 0 };
    }
    const receivers = result.alertsReceivers ?? 0;
    if (receivers === 0) stats.alertsWithoutSubscribers++;
    metrics?.alertsDelivered.inc({ channel: 'redis' });
    metrics?.alertLatencyMs.observe({ hop: 'deliver', channel: 'redis' }, Math.max(0, clock.now() - alert.committedAt.getTime()));
    log.debug({ alertId: alert.alertId, receivers, eventsReceivers: result.eventsReceivers }, 'alert published');
    await record(alert, true, '');
    return { ok: true, receivers };
  };

  return { channels, publish, publishAlert, stats: () => ({ ...stats }) };
}
