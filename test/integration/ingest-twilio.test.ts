/**
 * GET /twilio over real sockets: bad input gets a clear close code or is counted and dropped,
 * the signature check guards the upgrade, tracks are demultiplexed and the call ends with or
 * without `stop`. The service runs in `ingest` mode (no API key: recognition is refused, which
 * these tests do not need) with a unique queue prefix; jobs are read back from Redis.
 */
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { computeTwilioSignature } from '../../src/ingest/twilio/signature.js';
import { UTTERANCES_QUEUE, type CallEndJob, type CallStartJob, type StreamStatusJob } from '../../src/queue/jobs.js';
import type { Service } from '../../src/service.js';
import { startTestService } from '../support/harness.js';
import { deleteKeys, uniquePrefix } from '../support/redis.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const SID = 'MZ11111111111111111111111111111111';
const START = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    event: 'start',
    sequenceNumber: '1',
    streamSid: SID,
    start: {
      streamSid: SID,
      accountSid: 'AC11111111111111111111111111111111',
      callSid: 'CA11111111111111111111111111111111',
      tracks: ['inbound', 'outbound'],
      customParameters: { tenant: 't1' },
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      ...extra,
    },
  });
let seq = 2;
const MEDIA = (track: string, timestamp: number, payload = Buffer.alloc(160, 0xff).toString('base64'), sid = SID) =>
  JSON.stringify({ event: 'media', sequenceNumber: String(seq++), streamSid: sid, media: { track, chunk: '1', timestamp: String(timestamp), payload } });
const STOP = () => JSON.stringify({ event: 'stop', sequenceNumber: String(seq++), streamSid: SID, stop: { accountSid: 'AC1', callSid: 'CA1' } });

function open(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

async function metricValue(svc: Service, name: string, labels: Record<string, string>): Promise<number> {
  const m = await svc.metrics.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

async function jobsOf<T>(prefix: string, name: string): Promise<T[]> {
  const q = new Queue(UTTERANCES_QUEUE, { connection: { url: REDIS_URL }, prefix });
  try {
    const jobs = await q.getJobs(['waiting', 'delayed', 'active', 'completed', 'prioritized']);
    return jobs.filter((j) => j.name === name).map((j) => j.data as T);
  } finally {
    await q.close();
  }
}

async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('GET /twilio', () => {
  let svc: Service;
  let prefix: string;
  let url: string;

  beforeAll(async () => {
    prefix = uniquePrefix('ingest');
    svc = await startTestService({ REDIS_URL, QUEUE_PREFIX: prefix, TWILIO_MAX_FRAME_BYTES: '4096' }, 'ingest');
    url = `ws://127.0.0.1:${svc.port}/twilio`;
  });
  afterAll(async () => {
    await svc?.stop();
    await deleteKeys(REDIS_URL, prefix);
  });

  it('closes with 4001 on media before start', async () => {
    const ws = await open(url);
    const c = closed(ws);
    ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    ws.send(MEDIA('inbound', 0));
    expect(await c).toEqual({ code: 4001, reason: 'media before start' });
  });

  it('closes with 4002 on a second start', async () => {
    const ws = await open(url);
    const c = closed(ws);
    ws.send(START());
    ws.send(START());
    expect((await c).code).toBe(4002);
  });

  it('closes with 4003 on an unsupported media format', async () => {
    const ws = await open(url);
    const c = closed(ws);
    ws.send(START({ mediaFormat: { encoding: 'audio/x-l16', sampleRate: 16000, channels: 1 } }));
    expect((await c).code).toBe(4003);
  });

  it('closes with 1009 on a frame over the size cap', async () => {
    const ws = await open(url);
    const c = closed(ws);
    ws.send(START());
    ws.send(MEDIA('inbound', 0, Buffer.alloc(8000, 0xff).toString('base64')));
    expect((await c).code).toBe(1009);
  });

  it('counts and drops bad single frames and keeps the stream', async () => {
    const before = {
      json: await metricValue(svc, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_INGEST_BAD_JSON' }),
      b64: await metricValue(svc, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_INGEST_BAD_BASE64' }),
      sid: await metricValue(svc, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_INGEST_STREAM_SID_MISMATCH' }),
      bin: await metricValue(svc, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_INGEST_BINARY_FRAME' }),
      unknown: await metricValue(svc, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_INGEST_UNKNOWN_EVENT' }),
      frames: await metricValue(svc, 'callscribe_ingest_frames_total', { source: 'twilio' }),
    };
    const ws = await open(url);
    const c = closed(ws);
    ws.send(START());
    ws.send('{not json');
    ws.send(MEDIA('inbound', 0, '@@@not base64@@@'));
    ws.send(MEDIA('inbound', 0, undefined, 'MZ-someone-else'));
    ws.send(Buffer.from([1, 2, 3]), { binary: true });
    ws.send(JSON.stringify({ event: 'futureThing', streamSid: SID }));
    ws.send(MEDIA('inbound', 0));
    ws.send(MEDIA('outbound', 0));
    ws.send(STOP());
    expect((await c).code).toBe(1000);
    expect(await metricValue(svc, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_INGEST_BAD_JSON' })).toBe(before.json + 1);
    expect(await metricValue(svc, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_INGEST_BAD_BASE64' })).toBe(before.b64 + 1);
    expect(await metricValue(svc, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_INGEST_STREAM_SID_MISMATCH' })).toBe(before.sid + 1);
    expect(await metricValue(svc, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_INGEST_BINARY_FRAME' })).toBe(before.bin + 1);
    expect(await metricValue(svc, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_INGEST_UNKNOWN_EVENT' })).toBe(before.unknown + 1);
    expect(await metricValue(svc, 'callscribe_ingest_frames_total', { source: 'twilio' })).toBe(before.frames + 2);
  });

  it('demultiplexes tracks, fills gaps, drops duplicates, and ends the call on socket close without stop', async () => {
    const gapBefore = await metricValue(svc, 'callscribe_ingest_gap_fill_ms_total', { source: 'twilio' });
    const sid = 'MZ22222222222222222222222222222222';
    const ws = await open(url);
    ws.send(START({ streamSid: sid, tracks: ['inbound'], customParameters: { inboundRole: 'agent', tenant: 'acme' } }).replaceAll(SID, sid));
    for (let t = 0; t < 200; t += 20) ws.send(MEDIA('inbound', t, undefined, sid));
    ws.send(MEDIA('inbound', 180, undefined, sid)); // duplicate
    ws.send(MEDIA('inbound', 1200, undefined, sid)); // 1000 ms gap
    await new Promise((r) => setTimeout(r, 100));
    ws.terminate(); // no stop, no close frame
    const start = await waitFor(async () =>
      (await jobsOf<CallStartJob>(prefix, 'call-start')).find((j) => j.externalIds['streamSid'] === sid),
    );
    expect(start.roles).toEqual({ inbound: 'agent' });
    expect(start.tenantId).toBe('acme');
    expect(start.customParameters).toEqual({ inboundRole: 'agent', tenant: 'acme' });
    const end = await waitFor(async () =>
      (await jobsOf<CallEndJob>(prefix, 'call-end')).find((j) => j.callId === start.callId),
    );
    expect(end.endReason).toBe('socket-closed');
    expect(end.durationMs).toBe(1220);
    expect(end.stats['inbound.frames']).toBe(12);
    expect(await metricValue(svc, 'callscribe_ingest_gap_fill_ms_total', { source: 'twilio' })).toBe(gapBefore + 1000);
  });

  it('records the call but fails its streams visibly when no API key is set', async () => {
    const sid = 'MZ33333333333333333333333333333333';
    const ws = await open(url);
    const c = closed(ws);
    ws.send(START({ streamSid: sid }).replaceAll(SID, sid));
    ws.send(MEDIA('inbound', 0, undefined, sid));
    ws.send(JSON.stringify({ event: 'stop', sequenceNumber: '99', streamSid: sid, stop: {} }));
    expect((await c).code).toBe(1000);
    const start = await waitFor(async () =>
      (await jobsOf<CallStartJob>(prefix, 'call-start')).find((j) => j.externalIds['streamSid'] === sid),
    );
    const statuses = await waitFor(async () => {
      const all = (await jobsOf<StreamStatusJob>(prefix, 'stream-status')).filter(
        (j) => j.callId === start.callId && j.status === 'failed',
      );
      return all.length === 2 ? all : undefined;
    });
    expect(statuses.map((s) => s.errorCode)).toEqual(['ERR_ASR_NO_API_KEY', 'ERR_ASR_NO_API_KEY']);
    const end = await waitFor(async () =>
      (await jobsOf<CallEndJob>(prefix, 'call-end')).find((j) => j.callId === start.callId),
    );
    expect(end.status).toBe('failed');
  });

  it('refuses unknown paths with 404', async () => {
    await expect(open(`ws://127.0.0.1:${svc.port}/nope`)).rejects.toThrow('HTTP 404');
  });
});

describe('GET /twilio with TWILIO_AUTH_TOKEN', () => {
  let svc: Service;
  let prefix: string;
  const token = 'twilio-test-token';
  const publicUrl = 'wss://callscribe.example.com';

  beforeAll(async () => {
    prefix = uniquePrefix('sig');
    svc = await startTestService({ REDIS_URL, QUEUE_PREFIX: prefix, TWILIO_AUTH_TOKEN: token, PUBLIC_URL: publicUrl }, 'ingest');
  });
  afterAll(async () => {
    await svc?.stop();
    await deleteKeys(REDIS_URL, prefix);
  });

  it('accepts a valid signature over the public wss:// URL, refuses others with 403', async () => {
    const local = `ws://127.0.0.1:${svc.port}/twilio`;
    const good = computeTwilioSignature(token, `${publicUrl}/twilio`);
    const ws = await open(local, { 'X-Twilio-Signature': good });
    ws.close();
    await expect(open(local)).rejects.toThrow('HTTP 403');
    await expect(open(local, { 'X-Twilio-Signature': computeTwilioSignature('other-token', `${publicUrl}/twilio`) })).rejects.toThrow('HTTP 403');
    // signed over the URL the request reached (not the public one): refused
    await expect(open(local, { 'X-Twilio-Signature': computeTwilioSignature(token, local) })).rejects.toThrow('HTTP 403');
    expect(await metricValue(svc, 'callscribe_ingest_upgrades_rejected_total', { reason: 'missing-signature' })).toBe(1);
    expect(await metricValue(svc, 'callscribe_ingest_upgrades_rejected_total', { reason: 'bad-signature' })).toBe(2);
  });
});
