/**
 * Signed webhooks end to end: BullMQ on the real Redis (a prefix per test), a real HTTP
 * receiver on 127.0.0.1, the MemoryAlertStore recording every attempt.
 */
import type { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { alertEvent } from '../../../src/alerts/delivery/events.js';
import {
  WEBHOOKS_QUEUE,
  createWebhookQueue,
  createWebhookWorker,
  verifyWebhookSignature,
  webhookJobId,
  type WebhookQueue,
  type WebhookWorker,
} from '../../../src/alerts/delivery/webhooks.js';
import { MemoryAlertStore, makeAlert } from '../../../src/alerts/testing/memory-store.js';
import { createMetrics, type Metrics } from '../../../src/observability/metrics.js';
import { closeRedis } from '../../../src/queue/redis.js';
import { createTestRedis, type TestRedis } from '../../support/redis.js';
import { captureLogger, metricValue, readyProducer, sleep, startReceiver, waitUntil, type WebhookReceiver } from './helpers.js';

const SECRET = 'whsec_integration_0123456789';

describe('webhooks', () => {
  let redis: TestRedis;
  let producer: Redis;
  let queue: WebhookQueue;
  let worker: WebhookWorker | null;
  let receiver: WebhookReceiver;
  let store: MemoryAlertStore;
  let metrics: Metrics;
  let logs: ReturnType<typeof captureLogger>;

  beforeEach(async () => {
    redis = createTestRedis('webhooks');
    producer = await readyProducer(redis.url);
    queue = createWebhookQueue({ connection: producer, prefix: redis.prefix, attempts: 3, backoffMs: 30 });
    receiver = await startReceiver('/hook');
    store = new MemoryAlertStore();
    metrics = createMetrics();
    logs = captureLogger();
    worker = null;
  });

  afterEach(async () => {
    await worker?.close();
    await queue.close();
    await closeRedis(producer);
    await receiver.close();
    await redis.cleanup();
  });

  const startWorker = (timeoutMs = 2000) => {
    worker = createWebhookWorker({ redisUrl: redis.url, prefix: redis.prefix, store, secret: SECRET, timeoutMs, metrics, logger: logs.logger });
    return worker;
  };

  const enqueue = async (url: string) => {
    const alert = store.put(makeAlert());
    const body = JSON.stringify(alertEvent(alert));
    const { jobId } = await queue.enqueue({ alertId: alert.alertId, url, event: 'alert', body });
    return { alert, body, jobId };
  };

  it('POSTs the alert with a signature the receiver can verify, and records the delivery', async () => {
    receiver.script([200]);
    const url = `${receiver.url}?token=receiver-query-token`;
    startWorker();
    const { alert, body, jobId } = await enqueue(url);
    expect(jobId).toBe(webhookJobId(alert.alertId, url));

    await store.waitFor(() => store.delivery(alert.alertId, 'webhook', url)?.status === 'delivered');
    expect(receiver.requests).toHaveLength(1);
    const req = receiver.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.url).toBe('/hook?token=receiver-query-token');
    expect(req.body).toBe(body);
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers['x-callscribe-event']).toBe('alert');
    expect(req.headers['x-callscribe-delivery']).toBe(jobId);
    const ts = Number(req.headers['x-callscribe-timestamp']);
    expect(Math.abs(ts - req.at)).toBeLessThan(5000);
    expect(verifyWebhookSignature(SECRET, req.headers, req.body, 60_000)).toEqual({ ok: true, timestamp: ts });
    expect(verifyWebhookSignature('wrong-secret', req.headers, req.body, 60_000)).toEqual({ ok: false, reason: 'mismatch' });
    expect(JSON.parse(req.body)).toMatchObject({ v: 1, type: 'alert', alert: { alertId: alert.alertId, callId: alert.callId } });

    expect(store.attemptsFor(alert.alertId, 'webhook').map((a) => a.result.ok)).toEqual([true]);
    expect((await store.getAlert(alert.alertId))?.firstDeliveredAt).toBeInstanceOf(Date);
    expect(await metricValue(metrics, 'callscribe_alerts_delivered_total', { channel: 'webhook' })).toBe(1);
    expect(await metricValue(metrics, 'callscribe_alert_latency_ms', { hop: 'deliver', channel: 'webhook' }, 'callscribe_alert_latency_ms_count')).toBe(1);

    // a second enqueue of the same (alert, url) is de-duplicated by the job id
    await queue.enqueue({ alertId: alert.alertId, url, event: 'alert', body });
    await sleep(200);
    expect(receiver.requests).toHaveLength(1);
  });

  it('retries 500 and a timeout, then delivers; every attempt is recorded with the same delivery id', async () => {
    receiver.script([500, 'hang', 200]);
    startWorker(300);
    const url = `${receiver.url}?key=query-secret`;
    const { alert, jobId } = await enqueue(url);

    await store.waitFor(() => store.delivery(alert.alertId, 'webhook', url)?.status === 'delivered', 10_000);
    const attempts = store.attemptsFor(alert.alertId, 'webhook').map((a) => a.result);
    expect(attempts).toMatchObject([
      { ok: false, error: 'HTTP 500', final: false },
      { ok: false, error: 'timeout after 300 ms', final: false },
      { ok: true },
    ]);
    expect(store.delivery(alert.alertId, 'webhook', url)).toMatchObject({ attempts: 3, status: 'delivered', lastError: null });
    expect(new Set(receiver.requests.map((r) => r.headers['x-callscribe-delivery']))).toEqual(new Set([jobId]));
    for (const r of receiver.requests) expect(verifyWebhookSignature(SECRET, r.headers, r.body, 60_000).ok).toBe(true);
    expect(await metricValue(metrics, 'callscribe_alert_delivery_failures_total', { channel: 'webhook', final: 'false' })).toBe(2);
    expect(worker?.stats()).toMatchObject({ attempts: 3, delivered: 1, retried: 2, failed: 0 });

    // URLs are logged without their query string; secrets never
    const text = logs.text();
    expect(text).toContain('ERR_WEBHOOK_RETRY');
    expect(text).toContain('http://127.0.0.1');
    expect(text).not.toContain('query-secret');
    expect(text).not.toContain(SECRET);
  });

  it('fails for good on 400: one attempt, recorded final, job failed', async () => {
    receiver.script([400]);
    startWorker();
    const { alert, jobId } = await enqueue(receiver.url);

    await store.waitFor(() => store.delivery(alert.alertId, 'webhook', receiver.url)?.status === 'failed');
    expect(store.attemptsFor(alert.alertId, 'webhook').map((a) => a.result)).toMatchObject([{ ok: false, error: 'HTTP 400', final: true }]);
    const q = new Queue(WEBHOOKS_QUEUE, { connection: { url: redis.url }, prefix: redis.prefix });
    try {
      await waitUntil('job failed', async () => (await q.getJobState(jobId)) === 'failed');
    } finally {
      await q.close();
    }
    await sleep(200); // backoff is 30 ms: a retry would have happened by now
    expect(receiver.requests).toHaveLength(1);
    expect(await metricValue(metrics, 'callscribe_alert_delivery_failures_total', { channel: 'webhook', final: 'true' })).toBe(1);
  });

  it('marks the last attempt final when every attempt fails (503, connection refused)', async () => {
    receiver.script([503]);
    startWorker();
    const { alert } = await enqueue(receiver.url);
    await store.waitFor(() => store.delivery(alert.alertId, 'webhook', receiver.url)?.status === 'failed', 10_000);
    expect(store.attemptsFor(alert.alertId, 'webhook').map((a) => (a.result.ok ? 'ok' : a.result.final))).toEqual([false, false, true]);

    // a receiver that is gone: network errors are retried, then final
    const gone = `${receiver.url.replace('/hook', '')}/gone`;
    await receiver.close();
    const second = await enqueue(gone);
    await store.waitFor(() => store.delivery(second.alert.alertId, 'webhook', gone)?.status === 'failed', 10_000);
    const results = store.attemptsFor(second.alert.alertId, 'webhook').map((a) => a.result);
    expect(results).toHaveLength(3);
    expect(results[0]).toMatchObject({ ok: false, error: 'network error ECONNREFUSED', final: false });
    expect(results[2]).toMatchObject({ ok: false, final: true });
  });
});
