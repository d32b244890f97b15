/**
 * The alerts REST API mounted as a prefix route of the service's HTTP server (real HTTP), with
 * `alert.updated` published on the real Redis and the MemoryAlertStore behind it. Also checks
 * that the server's built-in routes behave as before.
 */
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createEventPublisher } from '../../../src/alerts/delivery/publisher.js';
import { ALERTS_BASE_PATH, createAlertsRestHandler, type AlertsRestHandler } from '../../../src/alerts/delivery/rest.js';
import { MemoryAlertStore, makeAlert } from '../../../src/alerts/testing/memory-store.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { closeRedis } from '../../../src/queue/redis.js';
import { createTestRedis, type TestRedis } from '../../support/redis.js';
import { readyProducer, recordChannel, startHttp, waitUntil, type ChannelRecorder, type Json, type TestHttp } from './helpers.js';

const TOKEN = 'api-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const JSON_HEADERS = { ...AUTH, 'content-type': 'application/json' };

describe('alerts REST API', () => {
  let redis: TestRedis;
  let producer: Redis;
  let store: MemoryAlertStore;
  let http: TestHttp;
  let api: AlertsRestHandler;
  let updates: ChannelRecorder;
  const now = new Date('2024-05-01T10:00:00.000Z');

  beforeEach(async () => {
    redis = createTestRedis('alerts-rest');
    producer = await readyProducer(redis.url);
    store = new MemoryAlertStore(() => now.getTime());
    const publisher = createEventPublisher({ redis: producer, prefix: redis.prefix, store, logger: silentLogger });
    api = createAlertsRestHandler({ token: TOKEN, store, publisher, logger: silentLogger, clock: { now: () => now.getTime(), monotonicMs: () => 0 }, maxBodyBytes: 1024 });
    http = await startHttp({ prefixRoutes: { [ALERTS_BASE_PATH]: api }, logger: silentLogger });
    updates = await recordChannel(publisher.channels.alerts);
  });

  afterEach(async () => {
    await updates.close();
    await http.close();
    await closeRedis(producer);
    await redis.cleanup();
  });

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = JSON_HEADERS) => {
    const res = await fetch(`${http.base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, json: (text ? JSON.parse(text) : null) as Json };
  };
  const errorCode = (r: { json: Json }) => (r.json['error'] as Json | undefined)?.['code'];

  it('requires the bearer token on every route', async () => {
    const alert = store.put(makeAlert());
    for (const [method, path] of [
      ['GET', '/v1/alerts'],
      ['GET', `/v1/alerts/${alert.alertId}`],
      ['POST', `/v1/alerts/${alert.alertId}/acknowledge`],
      ['GET', '/v1/alerts/nope/nothing'],
    ] as const) {
      const none = await call(method, path, method === 'POST' ? { by: 'x' } : undefined, { 'content-type': 'application/json' });
      expect([none.status, errorCode(none), none.headers.get('www-authenticate')]).toEqual([401, 'ERR_HTTP_UNAUTHORIZED', 'Bearer']);
      const wrong = await call(method, path, undefined, { authorization: 'Bearer nope' });
      expect([wrong.status, wrong.headers.get('www-authenticate')]).toEqual([401, 'Bearer error="invalid_token"']);
    }
    expect((await store.getAlert(alert.alertId))?.status).toBe('open');
    expect(api.stats().unauthorized).toBe(8);
  });

  it('lists open and acknowledged alerts, filters by any status, refuses bad filters', async () => {
    const open = store.put(makeAlert({ committedAt: new Date(now.getTime() - 1000) }));
    const acked = store.put(makeAlert({ committedAt: new Date(now.getTime() - 2000), status: 'acknowledged', ackedBy: 'a', ackedAt: now }));
    const gone = store.put(makeAlert({ status: 'resolved' }));
    const cut = store.put(makeAlert({ status: 'suppressed', suppressedReason: 'cooldown' }));

    const all = await call('GET', '/v1/alerts', undefined, AUTH);
    expect(all.status).toBe(200);
    expect((all.json['alerts'] as Json[]).map((a) => a['alertId'])).toEqual([open.alertId, acked.alertId]);
    expect((all.json['alerts'] as Json[])[0]).toMatchObject({ committedAt: '2024-05-01T09:59:59.000Z', status: 'open' });
    const onlyOpen = await call('GET', '/v1/alerts?status=open', undefined, AUTH);
    expect((onlyOpen.json['alerts'] as Json[]).map((a) => a['alertId'])).toEqual([open.alertId]);
    const onlyAcked = await call('GET', '/v1/alerts/?status=acknowledged', undefined, AUTH);
    expect((onlyAcked.json['alerts'] as Json[]).map((a) => a['alertId'])).toEqual([acked.alertId]);
    const limited = await call('GET', '/v1/alerts?limit=1', undefined, AUTH);
    expect(limited.json['alerts']).toHaveLength(1);

    const resolved = await call('GET', '/v1/alerts?status=resolved', undefined, AUTH);
    expect(resolved.status).toBe(200);
    expect((resolved.json['alerts'] as Json[]).map((a) => a['alertId'])).toEqual([gone.alertId]);
    const suppressed = await call('GET', '/v1/alerts?status=suppressed', undefined, AUTH);
    expect((suppressed.json['alerts'] as Json[]).map((a) => a['alertId'])).toEqual([cut.alertId]);
    const bad = await call('GET', '/v1/alerts?status=closed&limit=0', undefined, AUTH);
    expect([bad.status, errorCode(bad)]).toEqual([400, 'ERR_HTTP_VALIDATION']);
    expect(((bad.json['error'] as Json)['issues'] as Json[]).map((i) => i['path']).sort()).toEqual(['limit', 'status']);
  });

  it('returns one alert with its deliveries (webhook URLs without query strings)', async () => {
    const alert = store.put(makeAlert());
    await store.recordDelivery(alert.alertId, 'webhook', 'https://hooks.example.com/in?token=secret', { ok: false, at: now, error: 'HTTP 500', final: false });
    const res = await call('GET', `/v1/alerts/${alert.alertId}`, undefined, AUTH);
    expect(res.status).toBe(200);
    expect(res.json['alert']).toMatchObject({ alertId: alert.alertId, evidence: [{ seq: 3, text: '[redacted] 太慢了' }] });
    expect(res.json['deliveries']).toEqual([
      { channel: 'webhook', target: 'https://hooks.example.com/in', status: 'pending', attempts: 1, lastError: 'HTTP 500', createdAt: now.toISOString(), deliveredAt: null },
    ]);
    expect(JSON.stringify(res.json)).not.toContain('secret');

    const missing = await call('GET', '/v1/alerts/0b0e7a52-5d4c-4b4a-9a55-0f3f5a8e9d11', undefined, AUTH);
    expect([missing.status, errorCode(missing)]).toEqual([404, 'ERR_ALERTS_NOT_FOUND']);
    const odd = await call('GET', '/v1/alerts/%2E%2E%2Fetc', undefined, AUTH);
    expect([odd.status, errorCode(odd)]).toEqual([404, 'ERR_ALERTS_NOT_FOUND']);
    const notUuid = await call('GET', '/v1/alerts/abc', undefined, AUTH);
    expect([notUuid.status, errorCode(notUuid)]).toEqual([404, 'ERR_ALERTS_NOT_FOUND']);
    const deeper = await call('GET', `/v1/alerts/${alert.alertId}/deliveries/x`, undefined, AUTH);
    expect([deeper.status, errorCode(deeper)]).toEqual([404, 'ERR_HTTP_NOT_FOUND']);
  });

  it('acknowledges, resolves and takes feedback; each change publishes alert.updated', async () => {
    const alert = store.put(makeAlert());
    const base = `/v1/alerts/${alert.alertId}`;

    const ack = await call('POST', `${base}/acknowledge`, { by: 'sup-1' });
    expect(ack.status).toBe(200);
    expect(ack.json['alert']).toMatchObject({ status: 'acknowledged', ackedBy: 'sup-1', ackedAt: now.toISOString() });
    const again = await call('POST', `${base}/acknowledge`, { by: 'sup-2' });
    expect([again.status, errorCode(again), (again.json['error'] as Json)['status']]).toEqual([409, 'ERR_ALERTS_INVALID_TRANSITION', 'acknowledged']);

    const resolved = await call('POST', `${base}/resolve`, { by: 'sup-1' });
    expect(resolved.json['alert']).toMatchObject({ status: 'resolved', resolvedBy: 'sup-1' });
    const reresolve = await call('POST', `${base}/resolve`, { by: 'sup-1' });
    expect([reresolve.status, (reresolve.json['error'] as Json)['status']]).toEqual([409, 'resolved']);

    const fb = await call('POST', `${base}/feedback`, { feedback: 'false_positive', by: 'qa-1' });
    expect(fb.json['alert']).toMatchObject({ feedback: 'false_positive', feedbackBy: 'qa-1', status: 'resolved' });

    await waitUntil('three alert.updated events', () => updates.messages.length === 3);
    expect(updates.messages.map((m) => [m['type'], m['change'], (m['alert'] as Json)['status']])).toEqual([
      ['alert.updated', 'acknowledged', 'acknowledged'],
      ['alert.updated', 'resolved', 'resolved'],
      ['alert.updated', 'feedback', 'resolved'],
    ]);
    expect(api.stats()).toMatchObject({ changes: 3, publishErrors: 0 });
  });

  it('answers bad requests with stable codes and changes nothing', async () => {
    const alert = store.put(makeAlert());
    const suppressed = store.put(makeAlert({ status: 'suppressed', suppressedReason: 'cap' }));
    const base = `/v1/alerts/${alert.alertId}`;
    const cases: Array<[string, string, unknown, Record<string, string>, number, string]> = [
      ['POST', `${base}/acknowledge`, {}, JSON_HEADERS, 400, 'ERR_HTTP_VALIDATION'],
      ['POST', `${base}/acknowledge`, { by: '   ' }, JSON_HEADERS, 400, 'ERR_HTTP_VALIDATION'],
      ['POST', `${base}/feedback`, { feedback: 'maybe', by: 'x' }, JSON_HEADERS, 400, 'ERR_HTTP_VALIDATION'],
      ['POST', `${base}/resolve`, '{"by":', JSON_HEADERS, 400, 'ERR_HTTP_BAD_JSON'],
      ['POST', `${base}/resolve`, 'by=x', { ...AUTH, 'content-type': 'text/plain' }, 415, 'ERR_HTTP_UNSUPPORTED_MEDIA_TYPE'],
      ['POST', `${base}/resolve`, { by: 'x'.repeat(2000) }, JSON_HEADERS, 413, 'ERR_HTTP_BODY_TOO_LARGE'],
      ['GET', `${base}/resolve`, undefined, AUTH, 405, 'ERR_HTTP_METHOD_NOT_ALLOWED'],
      ['DELETE', base, undefined, AUTH, 405, 'ERR_HTTP_METHOD_NOT_ALLOWED'],
      ['POST', '/v1/alerts', { by: 'x' }, JSON_HEADERS, 405, 'ERR_HTTP_METHOD_NOT_ALLOWED'],
      ['POST', `${base}/escalate`, { by: 'x' }, JSON_HEADERS, 404, 'ERR_HTTP_NOT_FOUND'],
      ['POST', '/v1/alerts/0b0e7a52-5d4c-4b4a-9a55-0f3f5a8e9d11/acknowledge', { by: 'x' }, JSON_HEADERS, 404, 'ERR_ALERTS_NOT_FOUND'],
      ['POST', `/v1/alerts/${suppressed.alertId}/feedback`, { feedback: 'true_positive', by: 'x' }, JSON_HEADERS, 409, 'ERR_ALERTS_INVALID_TRANSITION'],
    ];
    for (const [method, path, body, headers, status, code] of cases) {
      const res = await call(method, path, body, headers);
      expect([method, path, res.status, errorCode(res)]).toEqual([method, path, status, code]);
    }
    const validation = await call('POST', `${base}/feedback`, { by: 'x' });
    expect((validation.json['error'] as Json)['issues']).toEqual([{ path: 'feedback', message: expect.any(String) }]);
    const allow = await call('GET', `${base}/acknowledge`, undefined, AUTH);
    expect(allow.headers.get('allow')).toBe('POST');

    expect(await store.getAlert(alert.alertId)).toEqual(alert);
    expect(updates.messages).toEqual([]);
  });

  it('maps a store failure to 500 ERR_HTTP_INTERNAL', async () => {
    const alert = store.put(makeAlert());
    store.failNext('transition');
    const res = await call('POST', `/v1/alerts/${alert.alertId}/acknowledge`, { by: 'x' });
    expect([res.status, errorCode(res)]).toEqual([500, 'ERR_HTTP_INTERNAL']);
    expect(api.stats().serverErrors).toBe(1);
  });

  it('keeps the built-in routes: health, 405 for other methods, 404 elsewhere', async () => {
    expect((await fetch(`${http.base}/healthz`)).status).toBe(200);
    expect((await fetch(`${http.base}/healthz`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${http.base}/nothing`)).status).toBe(404);
    expect((await fetch(`${http.base}/v1/alertsfoo`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${http.base}/metrics`)).status).toBe(200);
  });

  it('turns a route that throws (or rejects) into 500 ERR_HTTP_INTERNAL', async () => {
    const other = await startHttp({
      routes: {
        '/sync': () => {
          throw new Error('boom');
        },
      },
      prefixRoutes: { '/async': () => Promise.reject(new Error('boom')) },
      logger: silentLogger,
    });
    try {
      for (const path of ['/sync', '/async/x']) {
        const res = await fetch(`${other.base}${path}`, { method: 'PUT' });
        expect([path, res.status, ((await res.json()) as { error: Json }).error['code']]).toEqual([path, 500, 'ERR_HTTP_INTERNAL']);
      }
    } finally {
      await other.close();
    }
  });
});
