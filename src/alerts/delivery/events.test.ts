import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { makeAlert } from '../testing/memory-store.js';
import {
  alertEvent,
  alertToJson,
  alertUpdatedEvent,
  callEndedEvent,
  callStartedEvent,
  deliveryToJson,
  eventChannels,
  isAlertEvent,
  liveEventSchema,
  parseLiveEvent,
  redactUrl,
  utteranceEvent,
} from './events.js';

describe('live events', () => {
  it('names the channels from the prefix', () => {
    expect(eventChannels('callscribe')).toEqual({ events: 'callscribe:events', alerts: 'callscribe:alerts' });
  });

  it('serialises an AlertRecord with ISO times and round-trips through the parser', () => {
    const committedAt = new Date('2024-05-01T10:00:00.250Z');
    const alert = makeAlert({ committedAt, ackedAt: null });
    const json = alertToJson(alert);
    expect(json.committedAt).toBe('2024-05-01T10:00:00.250Z');
    expect(json.finalReceivedAt).toBe('2024-05-01T10:00:00.210Z');
    expect(json.ackedAt).toBeNull();
    const parsed = parseLiveEvent(JSON.stringify(alertEvent(alert)));
    expect(parsed).toEqual({ ok: true, event: { v: 1, type: 'alert', alert: json } });
  });

  it('builds valid events of every type', () => {
    const callId = randomUUID();
    const events = [
      alertEvent(makeAlert()),
      alertUpdatedEvent(makeAlert({ status: 'acknowledged', ackedBy: 'sup-1', ackedAt: new Date() }), 'acknowledged'),
      callStartedEvent({ callId, tenantId: 't1', source: 'twilio', startedAt: 1_714_557_600_000, roles: { inbound: 'customer', outbound: 'agent' }, models: { customer: 'paraformer-realtime-v2' }, agentId: 'agent-7' }),
      callEndedEvent({ callId, endedAt: new Date(1_714_557_660_000), endReason: 'stop', durationMs: 60_000.4 }),
      utteranceEvent({ callId, role: 'customer', seq: 2, startMs: 1200, endMs: 3400, text: '你好', emotion: { raw: 'negative', valence: -1, confidence: 0.8 } }),
      utteranceEvent({ callId, role: 'agent', seq: 1, startMs: 0, endMs: 900, text: 'hi', emotion: null }),
    ];
    for (const e of events) expect(liveEventSchema.safeParse(JSON.parse(JSON.stringify(e))).success).toBe(true);
    expect(events.map((e) => isAlertEvent(e))).toEqual([true, true, false, false, false, false]);
    expect(events[2]).toMatchObject({ startedAt: '2024-05-01T10:00:00.000Z', agentId: 'agent-7' });
    expect(events[3]).toMatchObject({ durationMs: 60_000 });
  });

  it('rejects bad JSON, another version, unknown types and malformed fields', () => {
    expect(parseLiveEvent('{nope')).toEqual({ ok: false, code: 'ERR_EVENT_BAD_JSON' });
    expect(parseLiveEvent(JSON.stringify({ ...alertEvent(makeAlert()), v: 2 }))).toEqual({ ok: false, code: 'ERR_EVENT_VERSION' });
    expect(parseLiveEvent(JSON.stringify({ v: 1, type: 'mystery' }))).toEqual({ ok: false, code: 'ERR_EVENT_INVALID' });
    const utt = utteranceEvent({ callId: 'not-a-uuid', role: 'agent', seq: 1, startMs: 0, endMs: 1, text: 'x', emotion: null });
    expect(parseLiveEvent(JSON.stringify(utt))).toEqual({ ok: false, code: 'ERR_EVENT_INVALID' });
    const alert = alertToJson(makeAlert());
    expect(parseLiveEvent(JSON.stringify({ v: 1, type: 'alert', alert: { ...alert, committedAt: 'yesterday' } }))).toEqual({ ok: false, code: 'ERR_EVENT_INVALID' });
  });

  it('strips credentials and query strings from URLs', () => {
    expect(redactUrl('https://user:pw@hooks.example.com:8443/a/b?token=secret#frag')).toBe('https://hooks.example.com:8443/a/b');
    expect(redactUrl('not a url')).toBe('(invalid url)');
    const d = deliveryToJson({
      deliveryId: 1, alertId: 'a', channel: 'webhook', target: 'https://h.example/x?key=k', status: 'pending',
      attempts: 2, lastError: 'HTTP 500', createdAt: new Date(0), deliveredAt: null,
    });
    expect(d).toEqual({ channel: 'webhook', target: 'https://h.example/x', status: 'pending', attempts: 2, lastError: 'HTTP 500', createdAt: '1970-01-01T00:00:00.000Z', deliveredAt: null });
  });
});
