/**
 * Dispatch after commit and the outbox sweeper, with everything real except the database:
 * Redis pub/sub and BullMQ (a prefix per test), a webhook receiver, a supervisor socket.
 */
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAlertDispatcher, type AlertDispatcher } from '../../../src/alerts/delivery/dispatcher.js';
import { createEventPublisher, type EventPublisher } from '../../../src/alerts/delivery/publisher.js';
import { createSupervisorHub } from '../../../src/alerts/delivery/supervisor-hub.js';
import { createWebhookQueue, createWebhookWorker, verifyWebhookSignature, type WebhookQueue, type WebhookWorker } from '../../../src/alerts/delivery/webhooks.js';
import { MemoryAlertStore, makeAlert } from '../../../src/alerts/testing/memory-store.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createMetrics, type Metrics } from '../../../src/observability/metrics.js';
import { closeRedis, createProducerConnection } from '../../../src/queue/redis.js';
import { createTestRedis, freePort, type TestRedis } from '../../support/redis.js';
import {
  RecordingClient,
  metricValue,
  readyProducer,
  recordChannel,
  sleep,
  startHttp,
  startReceiver,
  type Json,
  type TestHttp,
  type WebhookReceiver,
} from './helpers.js';

const SECRET = 'dispatch-secret-abcdef';
const TOKEN = 'sup-token-dispatch';

describe('alert dispatcher', () => {
  let redis: TestRedis;
  let producer: Redis;
  let store: MemoryAlertStore;
  let metrics: Metrics;
  let publisher: EventPublisher;
  let queue: WebhookQueue;
  let worker: WebhookWorker;
  let receivers: WebhookReceiver[];
  let dispatcher: AlertDispatcher;
  const cleanups: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    redis = createTestRedis('dispatch');
    producer = await readyProducer(redis.url);
    store = new MemoryAlertStore();
    metrics = createMetrics();
    publisher = createEventPublisher({ redis: producer, prefix: redis.prefix, store, metrics, logger: silentLogger });
    queue = createWebhookQueue({ connection: producer, prefix: redis.prefix, attempts: 3, backoffMs: 30 });
    worker = createWebhookWorker({ redisUrl: redis.url, prefix: redis.prefix, store, secret: SECRET, metrics, logger: silentLogger });
    receivers = [await startReceiver('/a'), await startReceiver('/b')];
    dispatcher = createAlertDispatcher({
      store,
      publisher,
      webhookQueue: queue,
      webhookUrls: receivers.map((r) => r.url),
      logger: silentLogger,
      metrics,
    });
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await worker.close();
    await queue.close();
    await closeRedis(producer);
    await Promise.all(receivers.map((r) => r.close()));
    await redis.cleanup();
  });

  it('publishes each committed alert and sends one signed webhook per URL; suppressed alerts are skipped', async () => {
    const channel = await recordChannel(publisher.channels.alerts);
    cleanups.push(() => channel.close());
    const alert = store.put(makeAlert());
    const suppressed = store.put(makeAlert({ status: 'suppressed', suppressedReason: 'dedupe' }));

    const result = await dispatcher.dispatch([alert, suppressed]);
    expect(result).toEqual({ alerts: 1, published: 1, webhooksQueued: 2, failures: 0 });

    await store.waitFor(() => receivers.every((r) => store.delivery(alert.alertId, 'webhook', r.url)?.status === 'delivered'));
    for (const r of receivers) {
      expect(r.requests).toHaveLength(1);
      const req = r.requests[0]!;
      expect(verifyWebhookSignature(SECRET, req.headers, req.body, 60_000).ok).toBe(true);
      expect((JSON.parse(req.body) as Json)['alert']).toMatchObject({ alertId: alert.alertId });
    }
    expect(channel.messages.map((m) => (m['alert'] as Json)['alertId'])).toEqual([alert.alertId]);
    expect(store.delivery(alert.alertId, 'redis', publisher.channels.alerts)?.status).toBe('delivered');
    expect(store.attemptsFor(suppressed.alertId)).toEqual([]);
    expect(await metricValue(metrics, 'callscribe_alert_latency_ms', { hop: 'commit' }, 'callscribe_alert_latency_ms_count')).toBe(1);
    expect(await metricValue(metrics, 'callscribe_alert_latency_ms', { hop: 'commit' }, 'callscribe_alert_latency_ms_sum')).toBe(40);
  });

  it('never throws when Redis is down: failures stay pending, and the sweeper delivers them later', async () => {
    const deadUrl = `redis://127.0.0.1:${await freePort()}`;
    const dead = createProducerConnection(deadUrl, { overrides: { connectTimeout: 200 } });
    cleanups.push(() => closeRedis(dead));
    const deadQueue = createWebhookQueue({ connection: dead, prefix: redis.prefix, enqueueTimeoutMs: 300 });
    cleanups.push(() => deadQueue.close());
    const deadPublisher = createEventPublisher({ redis: dead, prefix: redis.prefix, store, metrics, logger: silentLogger });
    const broken = createAlertDispatcher({ store, publisher: deadPublisher, webhookQueue: deadQueue, webhookUrls: [receivers[0]!.url], logger: silentLogger, metrics });

    const alert = store.put(makeAlert());
    const result = await broken.dispatch([alert]);
    expect(result).toEqual({ alerts: 1, published: 0, webhooksQueued: 0, failures: 2 });
    expect(store.delivery(alert.alertId, 'redis', publisher.channels.alerts)).toMatchObject({ status: 'pending', attempts: 1 });
    expect(store.delivery(alert.alertId, 'webhook', receivers[0]!.url)).toMatchObject({ status: 'pending' });
    expect(store.delivery(alert.alertId, 'webhook', receivers[0]!.url)?.lastError).toMatch(/^ERR_WEBHOOK_ENQUEUE/);
    expect(await metricValue(metrics, 'callscribe_alert_delivery_failures_total', { final: 'false' })).toBe(2);

    // a healthy process's sweeper picks both up (olderThanMs 0: everything pending is overdue)
    const sweeper = dispatcher.startOutboxSweeper(60_000, { olderThanMs: 0 });
    cleanups.push(() => sweeper.stop());
    await sleep(5); // pending rows must be strictly older than now - olderThanMs
    const swept = await sweeper.sweep();
    expect(swept).toMatchObject({ pending: 2, republished: 1, requeued: 1, abandoned: 0, errors: 0 });
    await store.waitFor(() => store.delivery(alert.alertId, 'webhook', receivers[0]!.url)?.status === 'delivered');
    expect(store.delivery(alert.alertId, 'redis', publisher.channels.alerts)?.status).toBe('delivered');
    expect(receivers[1]!.requests).toHaveLength(0);
  });

  it('runs on a timer and redelivers old pending deliveries (the process died between commit and dispatch)', async () => {
    const hub = createSupervisorHub({ token: TOKEN, store, prefix: redis.prefix, redisUrl: redis.url, logger: silentLogger, metrics });
    cleanups.push(() => hub.close());
    await hub.ready();
    const http: TestHttp = await startHttp({ upgrades: { '/supervisor': hub.handleUpgrade }, logger: silentLogger });
    cleanups.push(() => http.close());

    // committed a minute ago; its outbox rows were never dispatched
    const createdAt = new Date(Date.now() - 60_000);
    const alert = store.put(makeAlert({ committedAt: createdAt }));
    const url = receivers[1]!.url;
    store.addPendingDelivery(alert.alertId, 'supervisor', 'supervisor', createdAt);
    store.addPendingDelivery(alert.alertId, 'redis', publisher.channels.alerts, createdAt);
    store.addPendingDelivery(alert.alertId, 'webhook', url, createdAt);
    // rows that are pending but recent are left alone
    const recent = store.put(makeAlert());
    store.addPendingDelivery(recent.alertId, 'webhook', url, new Date());

    // a supervisor connects before the sweep: the snapshot delivers it (and records it)…
    const sup = await RecordingClient.connect(`ws://127.0.0.1:${http.port}/supervisor`, { headers: { authorization: `Bearer ${TOKEN}` } });
    cleanups.push(() => sup.close());
    await sup.next((m) => m['type'] === 'snapshot.done');
    await store.waitFor(() => store.delivery(alert.alertId, 'supervisor', 'supervisor')?.status === 'delivered');

    const sweeper = dispatcher.startOutboxSweeper(50, { olderThanMs: 30_000 });
    cleanups.push(() => sweeper.stop());
    await store.waitFor(
      () =>
        store.delivery(alert.alertId, 'webhook', url)?.status === 'delivered' &&
        store.delivery(alert.alertId, 'redis', publisher.channels.alerts)?.status === 'delivered',
    );
    // …and the republished alert reaches the socket again (clients de-duplicate by alertId)
    await sup.next((m) => m['type'] === 'alert', 5000, 3);
    expect(receivers[1]!.requests.map((r) => (JSON.parse(r.body) as Json)['alert'] as Json).map((a) => a['alertId'])).toEqual([alert.alertId]);
    await sleep(200); // several more sweeps: nothing is pending any more, nothing is re-sent
    expect(receivers[1]!.requests).toHaveLength(1);
    expect(store.delivery(recent.alertId, 'webhook', url)?.status).toBe('pending');
    expect(dispatcher.stats().sweeps).toBeGreaterThan(2);
  });

  it('abandons deliveries that can no longer happen: supervisor for a resolved alert, a removed URL, a missing alert', async () => {
    const old = new Date(Date.now() - 60_000);
    const resolved = store.put(makeAlert({ status: 'resolved', resolvedBy: 'x', resolvedAt: new Date() }));
    store.addPendingDelivery(resolved.alertId, 'supervisor', 'supervisor', old);
    const open = store.put(makeAlert());
    store.addPendingDelivery(open.alertId, 'webhook', 'https://removed.example.com/hook?token=t', old);
    store.addPendingDelivery('gone-alert', 'redis', publisher.channels.alerts, old);

    const sweeper = dispatcher.startOutboxSweeper(60_000);
    cleanups.push(() => sweeper.stop());
    expect(await sweeper.sweep()).toEqual({ pending: 3, republished: 0, requeued: 0, abandoned: 3, errors: 0 });
    expect(store.delivery(resolved.alertId, 'supervisor', 'supervisor')).toMatchObject({ status: 'failed' });
    expect(store.delivery(resolved.alertId, 'supervisor', 'supervisor')?.lastError).toMatch(/^ERR_SUPERVISOR_UNDELIVERED/);
    expect(store.delivery(open.alertId, 'webhook', 'https://removed.example.com/hook?token=t')?.lastError).toMatch(/^ERR_WEBHOOK_URL_REMOVED/);
    expect(store.delivery('gone-alert', 'redis', publisher.channels.alerts)?.status).toBe('failed');
    expect(await sweeper.sweep()).toMatchObject({ pending: 0 });
  });

  it('a sweep that cannot reach the store is counted and retried on the next tick', async () => {
    const alert = store.put(makeAlert());
    store.addPendingDelivery(alert.alertId, 'webhook', receivers[0]!.url, new Date(Date.now() - 60_000));
    store.failNext('listPendingDeliveries');
    const sweeper = dispatcher.startOutboxSweeper(30, { olderThanMs: 1000 });
    cleanups.push(() => sweeper.stop());
    await store.waitFor(() => store.delivery(alert.alertId, 'webhook', receivers[0]!.url)?.status === 'delivered');
    expect(dispatcher.stats().sweepErrors).toBe(1);
  });
});
