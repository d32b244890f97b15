/**
 * GET /supervisor through the service's HTTP server: real sockets, the real Redis (a channel
 * prefix per test) and a publisher in the same test, the MemoryAlertStore behind both.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { alertEvent, callStartedEvent, utteranceEvent } from '../../../src/alerts/delivery/events.js';
import { createEventPublisher, type EventPublisher } from '../../../src/alerts/delivery/publisher.js';
import { createSupervisorHub, type SupervisorHub, type SupervisorHubOptions } from '../../../src/alerts/delivery/supervisor-hub.js';
import { MemoryAlertStore, makeAlert } from '../../../src/alerts/testing/memory-store.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createMetrics, type Metrics } from '../../../src/observability/metrics.js';
import { closeRedis } from '../../../src/queue/redis.js';
import { createTestRedis, type TestRedis } from '../../support/redis.js';
import {
  RecordingClient,
  metricValue,
  readyProducer,
  recordChannel,
  sleep,
  startHttp,
  upgradeStatus,
  waitUntil,
  type Json,
  type TestHttp,
} from './helpers.js';

const TOKEN = 'sup-token-0123456789abcdef';

describe('supervisor hub', () => {
  let redis: TestRedis;
  let producer: Redis;
  let store: MemoryAlertStore;
  let metrics: Metrics;
  let publisher: EventPublisher;
  let hub: SupervisorHub;
  let http: TestHttp;
  let url: string;
  const clients: RecordingClient[] = [];

  const start = async (overrides: Partial<SupervisorHubOptions> = {}) => {
    hub = createSupervisorHub({ token: TOKEN, store, prefix: redis.prefix, redisUrl: redis.url, logger: silentLogger, metrics, ...overrides });
    await hub.ready();
    http = await startHttp({ upgrades: { '/supervisor': hub.handleUpgrade }, logger: silentLogger, metrics });
    url = `ws://127.0.0.1:${http.port}/supervisor`;
  };

  const connect = async (headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }) => {
    const c = await RecordingClient.connect(url, { headers });
    clients.push(c);
    await c.next((m) => m['type'] === 'snapshot.done');
    return c;
  };

  beforeEach(async () => {
    redis = createTestRedis('supervisor');
    producer = await readyProducer(redis.url);
    store = new MemoryAlertStore();
    metrics = createMetrics();
    publisher = createEventPublisher({ redis: producer, prefix: redis.prefix, store, metrics, logger: silentLogger });
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await hub.close();
    await http.close();
    await closeRedis(producer);
    await redis.cleanup();
  });

  it('refuses upgrades without a valid token with 401; accepts header, subprotocol and query tokens', async () => {
    await start();
    const none = await upgradeStatus(url);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer');
    expect((await upgradeStatus(url, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await upgradeStatus(`${url}?token=wrong`)).status).toBe(401);
    expect((await upgradeStatus(url, { protocols: ['callscribe.v1', 'bearer.wrong'] })).status).toBe(401);
    expect(hub.stats().rejectedUnauthorized).toBe(4);
    expect(await metricValue(metrics, 'callscribe_ingest_upgrades_rejected_total', { reason: 'supervisor-unauthorized' })).toBe(4);

    const byProtocol = await RecordingClient.connect(url, { protocols: ['callscribe.v1', `bearer.${TOKEN}`] });
    clients.push(byProtocol);
    expect(byProtocol.ws.protocol).toBe('callscribe.v1');
    await byProtocol.next((m) => m['type'] === 'hello');
    const byQuery = await RecordingClient.connect(`${url}?token=${TOKEN}`);
    clients.push(byQuery);
    await byQuery.next((m) => m['type'] === 'hello');
    expect(hub.stats().sockets).toBe(2);

    // the query form can be turned off
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await hub.close();
    await http.close();
    await start({ allowQueryToken: false });
    expect((await upgradeStatus(`${url}?token=${TOKEN}`)).status).toBe(401);
  });

  it('sends hello, then the open alerts newest first, then snapshot.done; records each delivery once per process', async () => {
    const older = store.put(makeAlert({ committedAt: new Date(Date.now() - 60_000) }));
    const acked = store.put(makeAlert({ committedAt: new Date(Date.now() - 30_000), status: 'acknowledged', ackedBy: 'sup-1', ackedAt: new Date() }));
    store.put(makeAlert({ status: 'resolved', resolvedBy: 'sup-1', resolvedAt: new Date() }));
    await start();

    const c = await connect();
    expect(c.messages.map((m) => m['type'])).toEqual(['hello', 'alert', 'alert', 'snapshot.done']);
    expect(c.messages[0]).toMatchObject({ v: 1, type: 'hello', protocol: 'callscribe.v1', limits: { maxMessageBytes: 4096, maxWatchedCalls: 20 } });
    expect(c.messages.slice(1, 3).map((m) => (m['alert'] as Json)['alertId'])).toEqual([acked.alertId, older.alertId]);
    expect(c.messages[3]).toEqual({ v: 1, type: 'snapshot.done', alerts: 2 });

    await store.waitFor(() => store.attemptsFor(older.alertId, 'supervisor').length === 1 && store.attemptsFor(acked.alertId, 'supervisor').length === 1);
    expect(store.delivery(older.alertId, 'supervisor', 'supervisor')?.status).toBe('delivered');

    const c2 = await connect();
    expect(c2.ofType('alert')).toHaveLength(2);
    await sleep(100);
    expect(store.attemptsFor(older.alertId, 'supervisor')).toHaveLength(1);
    expect(hub.stats()).toMatchObject({ sockets: 2, deliveriesRecorded: 2 });
    expect(await metricValue(metrics, 'callscribe_supervisor_sockets')).toBe(2);
  });

  it('reports a snapshot failure and still goes live', async () => {
    await start();
    store.failNext('listOpenAlerts');
    const c = await connect();
    expect(c.messages.map((m) => m['type'])).toEqual(['hello', 'error', 'snapshot.done']);
    expect(c.messages[1]).toMatchObject({ code: 'ERR_SUPERVISOR_SNAPSHOT' });
    const alert = store.put(makeAlert());
    await publisher.publishAlert(alert);
    await c.next((m) => m['type'] === 'alert');
  });

  it('pushes live alerts published on Redis and records supervisor and redis deliveries', async () => {
    await start();
    const a = await connect();
    const b = await connect();
    const alertsChannel = await recordChannel(publisher.channels.alerts);
    try {
      const alert = store.put(makeAlert());
      const result = await publisher.publishAlert(alert);
      expect(result).toEqual({ ok: true, receivers: 1 });
      for (const c of [a, b]) {
        const m = await c.next((x) => x['type'] === 'alert');
        expect(m).toEqual(JSON.parse(JSON.stringify(alertEvent(alert))));
      }
      await store.waitFor(() => store.delivery(alert.alertId, 'supervisor', 'supervisor')?.status === 'delivered');
      expect(store.attemptsFor(alert.alertId, 'supervisor')).toHaveLength(1);
      expect(store.delivery(alert.alertId, 'redis', publisher.channels.alerts)).toMatchObject({ status: 'delivered', attempts: 1 });
      expect(await metricValue(metrics, 'callscribe_alert_latency_ms', { hop: 'deliver', channel: 'supervisor' }, 'callscribe_alert_latency_ms_count')).toBe(1);

      // the alerts channel carries alert events only
      const callId = randomUUID();
      await publisher.publish(callStartedEvent({ callId, tenantId: 't', source: 'twilio', startedAt: Date.now(), roles: {}, models: {} }));
      await a.next((m) => m['type'] === 'call.started');
      await waitUntil('alert on the alerts channel', () => alertsChannel.messages.length === 1);
      await sleep(50);
      expect(alertsChannel.messages.map((m) => m['type'])).toEqual(['alert']);
    } finally {
      await alertsChannel.close();
    }
  });

  it('does not repeat an alert that was published while the snapshot was loading', async () => {
    const existing = store.put(makeAlert());
    await start();
    const release = store.hold('listOpenAlerts');
    const c = await RecordingClient.connect(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    clients.push(c);
    await c.next((m) => m['type'] === 'hello');
    const fresh = makeAlert();
    await publisher.publishAlert(existing); // also in the snapshot
    await publisher.publishAlert(fresh); // not in the snapshot (not in the store)
    await sleep(100);
    expect(c.messages.map((m) => m['type'])).toEqual(['hello']);
    release();
    await c.next((m) => m['type'] === 'alert' && (m['alert'] as Json)['alertId'] === fresh.alertId);
    expect(c.messages.map((m) => [m['type'], (m['alert'] as Json | undefined)?.['alertId']])).toEqual([
      ['hello', undefined],
      ['alert', existing.alertId],
      ['snapshot.done', undefined],
      ['alert', fresh.alertId],
    ]);
  });

  it('sends utterances only for watched calls; call events to everyone', async () => {
    await start();
    const watcher = await connect();
    const other = await connect();
    const callA = randomUUID();
    const callB = randomUUID();
    const utt = (callId: string, seq: number) =>
      utteranceEvent({ callId, role: 'customer', seq, startMs: seq * 1000, endMs: seq * 1000 + 800, text: `sentence ${seq}`, emotion: { raw: 'negative', valence: -1, confidence: 0.9 } });
    const marker = (n: number) => callStartedEvent({ callId: randomUUID(), tenantId: `marker-${n}`, source: 'rtp', startedAt: Date.now(), roles: {}, models: {} });
    const isMarker = (n: number) => (m: Json) => m['type'] === 'call.started' && m['tenantId'] === `marker-${n}`;

    await publisher.publish(utt(callA, 1));
    await publisher.publish(marker(1));
    await watcher.next(isMarker(1));

    watcher.send({ type: 'watch', callId: callA });
    expect(await watcher.next((m) => m['type'] === 'watching')).toEqual({ v: 1, type: 'watching', callIds: [callA] });
    await publisher.publish(utt(callA, 2));
    await publisher.publish(utt(callB, 1));
    await publisher.publish(marker(2));
    await watcher.next(isMarker(2));
    await other.next(isMarker(2));

    watcher.send({ type: 'unwatch', callId: callA });
    await watcher.next((m) => m['type'] === 'watching' && (m['callIds'] as unknown[]).length === 0);
    await publisher.publish(utt(callA, 3));
    await publisher.publish(marker(3));
    await watcher.next(isMarker(3));
    await other.next(isMarker(3));

    expect(watcher.ofType('utterance').map((m) => [m['callId'], m['seq']])).toEqual([[callA, 2]]);
    expect(watcher.ofType('utterance')[0]).toMatchObject({ role: 'customer', text: 'sentence 2', emotion: { raw: 'negative', valence: -1, confidence: 0.9 } });
    expect(other.ofType('utterance')).toEqual([]);
    expect(other.ofType('call.started')).toHaveLength(3);
  });

  it('answers ping, refuses bad messages with codes, and closes 4400 on the third', async () => {
    await start({ maxWatchedCalls: 1 });
    const c = await connect();
    c.send({ type: 'ping', id: 'p1' });
    expect(await c.next((m) => m['type'] === 'pong')).toEqual({ v: 1, type: 'pong', id: 'p1' });
    c.send({ type: 'watch', callId: randomUUID() });
    await c.next((m) => m['type'] === 'watching');
    c.send({ type: 'watch', callId: randomUUID() });
    expect(await c.next((m) => m['type'] === 'error')).toMatchObject({ code: 'ERR_SUPERVISOR_WATCH_LIMIT' });

    c.send('{not json');
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    c.send({ type: 'watch', callId: 'not-a-uuid' });
    expect(await c.waitClosed()).toBe(4400);
    expect(c.ofType('error').map((m) => m['code'])).toEqual([
      'ERR_SUPERVISOR_WATCH_LIMIT',
      'ERR_SUPERVISOR_BAD_JSON',
      'ERR_SUPERVISOR_BINARY',
      'ERR_SUPERVISOR_BAD_MESSAGE',
    ]);
    expect(hub.stats()).toMatchObject({ badMessages: 3, closedBadMessages: 1 });

    // a frame over maxPayload: ws closes with 1009
    const big = await connect();
    big.send({ type: 'ping', id: 'x'.repeat(5000) });
    expect(await big.waitClosed()).toBe(1009);
  });

  it('drops non-alert events for a slow socket (and says so), and closes 1013 when alerts cannot be queued', async () => {
    await start({ maxBufferedBytes: 64 * 1024, maxAlertBufferedBytes: 512 * 1024 });
    const slow = await connect();
    const callId = randomUUID();
    slow.send({ type: 'watch', callId });
    await slow.next((m) => m['type'] === 'watching');
    slow.ws.pause(); // stop reading: the kernel buffers fill, then ws buffers

    const text = 'x'.repeat(60_000);
    for (let seq = 1; hub.stats().eventsDropped === 0; seq++) {
      if (seq > 2000) throw new Error('no backpressure after 2000 events');
      await publisher.publish(utteranceEvent({ callId, role: 'agent', seq, startMs: 0, endMs: 1, text, emotion: null }));
      if (seq % 20 === 0) await sleep(5);
    }
    const dropped = hub.stats().eventsDropped;
    expect(await metricValue(metrics, 'callscribe_live_events_dropped_total', { reason: 'backpressure' })).toBe(dropped);

    // alerts still go out (they are queued above the soft bound)
    const alert = store.put(makeAlert());
    await publisher.publishAlert(alert);
    slow.ws.resume();
    await slow.next((m) => m['type'] === 'alert', 15_000);
    await publisher.publish(callStartedEvent({ callId: randomUUID(), tenantId: 'after', source: 'rtp', startedAt: Date.now(), roles: {}, models: {} }));
    await slow.next((m) => m['type'] === 'call.started', 15_000);
    const notice = slow.ofType('dropped');
    expect(notice.length).toBeGreaterThanOrEqual(1);
    expect(notice.reduce((sum, m) => sum + Number(m['count']), 0)).toBe(hub.stats().eventsDropped);

    // now stall it again and send only alerts: past the hard bound the socket is closed with 1013
    slow.ws.pause();
    const heavy = makeAlert({ evidence: Array.from({ length: 20 }, (_, i) => ({ role: 'customer' as const, seq: i, startMs: 0, endMs: 1, text })) });
    for (let i = 0; hub.stats().closedBackpressure === 0; i++) {
      if (i > 2000) throw new Error('no 1013 after 2000 alerts');
      await publisher.publish(alertEvent({ ...heavy, alertId: randomUUID() }));
      if (i % 10 === 0) await sleep(5);
    }
    slow.ws.resume();
    expect(await slow.waitClosed(15_000)).toBe(1013);
  });

  it('close() sends 1001 to every socket and refuses new upgrades', async () => {
    await start();
    const a = await connect();
    const b = await connect();
    await hub.close();
    expect(await a.waitClosed()).toBe(1001);
    expect(await b.waitClosed()).toBe(1001);
    expect((await upgradeStatus(url, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(503);
  });
});
