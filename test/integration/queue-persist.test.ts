/**
 * Producer → BullMQ (real Redis) → persist worker → Postgres (real, a database of its own).
 * Covers ordering, idempotence, malformed jobs, a Redis outage on the producer side and a
 * Postgres outage on the worker side.
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { Queue, UnrecoverableError, type Job } from 'bullmq';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Database } from '../../src/db/client.js';
import { getCall, getCallStream, listCallStreams } from '../../src/db/repositories/calls.js';
import { listUtterances, utteranceRow } from '../../src/db/repositories/utterances.js';
import { sqlState } from '../../src/db/errors.js';
import { utterances as utterancesTable } from '../../src/db/schema.js';
import type { Role, Utterance } from '../../src/core/types.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import {
  JOB_UTTERANCE,
  UTTERANCES_QUEUE,
  jobIds,
  type CallEndJob,
  type CallStartJob,
  type StreamStatusJob,
  type UtteranceJob,
} from '../../src/queue/jobs.js';
import { createProducer, type Producer } from '../../src/queue/producer.js';
import {
  createPersistProcessor,
  createPersistWorker,
  postgresRepositories,
  startQueueMetrics,
  type PersistWorker,
} from '../../src/workers/persist-utterance.worker.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { createTestRedis, freePort, privateRedis, type TestRedis } from '../support/redis.js';

const MODEL = 'paraformer-realtime-8k-v2';
const QWEN = 'qwen3-asr-flash-realtime';
const ROUTING: CallStartJob['routing'] = {
  customer: { model: MODEL, fallback: null, rule: 'default', language: null },
  agent: { model: MODEL, fallback: null, rule: 'default', language: null },
};
const FAST_RETRY = { backoff: { type: 'exponential', delay: 100 } } as const;

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Sum of a metric's samples matching `labels`; `series` picks e.g. a histogram's `_count`. */
async function metricValue(metrics: Metrics, name: string, labels: Record<string, string> = {}, series = name): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  return values
    .filter((v) => ((v as { metricName?: string }).metricName ?? name) === series)
    .filter((v) => Object.entries(labels).every(([k, l]) => String((v.labels as Record<string, unknown>)[k]) === l))
    .reduce((sum, v) => sum + v.value, 0);
}

function callStart(callId: string, startedAt: number, overrides: Partial<CallStartJob> = {}): CallStartJob {
  return {
    callId,
    source: 'twilio',
    startedAt,
    tenantId: 'acme',
    externalIds: { callSid: `CA${callId.slice(0, 8)}`, streamSid: `MZ${callId.slice(0, 8)}`, accountSid: 'AC0001' },
    customParameters: { agentId: 'agent-1025', queue: 'billing' },
    roles: { inbound: 'customer', outbound: 'agent' },
    models: { customer: MODEL, agent: MODEL },
    routing: ROUTING,
    ...overrides,
  };
}

function utterance(callId: string, role: Role, seq: number, startedAt: number, overrides: Partial<Utterance> = {}): Utterance {
  const startMs = seq * 4000 + (role === 'agent' ? 1500 : 0);
  return {
    callId,
    role,
    track: role === 'customer' ? 'inbound' : 'outbound',
    seq,
    startMs,
    endMs: startMs + 1200,
    text: '我要投诉，退款到现在还没到账！',
    words: [
      { startMs, endMs: startMs + 300, text: '我要', punctuation: '' },
      { startMs: startMs + 300, endMs: startMs + 600, text: '投诉', punctuation: '，' },
    ],
    emotion: { raw: 'negative', provider: MODEL, confidence: 0.875, valence: -1 },
    model: MODEL,
    asrTaskId: `task-${role}-1`,
    timing: { audioEndAt: startedAt + startMs + 1250, finalReceivedAt: startedAt + startMs + 1600 },
    ...overrides,
  };
}

function streamStatus(callId: string, callStartedAt: number, role: Role, status: StreamStatusJob['status'], at: number, extra: Partial<StreamStatusJob> = {}): StreamStatusJob {
  return {
    callId,
    callStartedAt,
    role,
    track: role === 'customer' ? 'inbound' : 'outbound',
    model: MODEL,
    status,
    errorCode: null,
    errorMessage: null,
    reconnects: 0,
    utterances: 0,
    at,
    ...extra,
  };
}

function callEnd(callId: string, callStartedAt: number, overrides: Partial<CallEndJob> = {}): CallEndJob {
  return {
    callId,
    callStartedAt,
    endedAt: callStartedAt + 30_000,
    status: 'ended',
    endReason: 'stop',
    durationMs: 29_980,
    stats: { frames: 3000, 'dropped.ERR_INGEST_BAD_JSON': 1 },
    ...overrides,
  };
}

/** TCP proxy in front of Postgres whose "down" switch refuses and cuts every connection. */
async function startPgProxy(target = { host: '127.0.0.1', port: 5432 }) {
  const sockets = new Set<net.Socket>();
  let down = false;
  const server = net.createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    const forget = () => {
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => {
      upstream.destroy();
      forget();
    });
    upstream.on('close', () => {
      client.destroy();
      forget();
    });
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    setDown(value: boolean) {
      down = value;
      if (down) for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('queue → persist worker → Postgres', () => {
  let testDb: TestDatabase;
  let database: Database;
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    testDb = await createTestDatabase();
    database = createDb(testDb.url, { max: 4 });
  });

  afterEach(async () => {
    // LIFO: workers and producers close before their Redis keys go
    while (cleanups.length > 0) await cleanups.pop()?.();
  });

  afterAll(async () => {
    await database?.close();
    await testDb?.drop();
  });

  function redisForTest(tag: string): TestRedis {
    const r = createTestRedis(tag);
    cleanups.push(() => r.cleanup());
    return r;
  }

  function startProducer(r: { url: string; prefix: string }, metrics: Metrics, extra: Partial<Parameters<typeof createProducer>[0]> = {}): Producer {
    const producer = createProducer({ redisUrl: r.url, prefix: r.prefix, metrics, jobOptions: FAST_RETRY, retryMinMs: 50, retryMaxMs: 200, ...extra });
    cleanups.push(() => producer.close());
    return producer;
  }

  function startWorker(r: { url: string; prefix: string }, metrics: Metrics, extra: Partial<Parameters<typeof createPersistWorker>[0]> = {}): PersistWorker {
    const worker = createPersistWorker({ redisUrl: r.url, prefix: r.prefix, db: database, metrics, concurrency: 4, ...extra });
    cleanups.push(() => worker.close());
    return worker;
  }

  function openQueue(r: { url: string; prefix: string }): Queue {
    const queue = new Queue(UTTERANCES_QUEUE, { connection: { url: r.url }, prefix: r.prefix });
    cleanups.push(() => queue.close());
    return queue;
  }

  async function utteranceCount(callId: string): Promise<number> {
    const res = await database.db.execute<{ n: number }>(sql`select count(*)::int as n from utterances where call_id = ${callId}`);
    return res.rows[0]?.n ?? 0;
  }

  it('persists call-start, utterances, stream status and call-end with every column', async () => {
    const r = redisForTest('persist');
    const metrics = createMetrics();
    const enqueuedAt = Date.UTC(2025, 0, 2, 3, 4, 5, 678);
    const producer = startProducer(r, metrics, { clock: { now: () => enqueuedAt, monotonicMs: () => performance.now() } });
    startWorker(r, metrics);

    const callId = randomUUID();
    const startedAt = Date.UTC(2025, 0, 2, 3, 0, 0, 123);
    const u1 = utterance(callId, 'customer', 1, startedAt);
    const u2 = utterance(callId, 'agent', 1, startedAt, {
      text: '好的，请稍等。',
      emotion: null,
      words: [],
      timing: { audioEndAt: null, finalReceivedAt: startedAt + 6000 },
    });
    const u3 = utterance(callId, 'customer', 2, startedAt, { emotion: { raw: 'neutral', provider: MODEL, confidence: null, valence: 0 } });

    const outcomes = await Promise.all([
      producer.enqueueCallStart(callStart(callId, startedAt)),
      producer.enqueueStreamStatus(streamStatus(callId, startedAt, 'customer', 'pending', startedAt + 1)),
      producer.enqueueStreamStatus(streamStatus(callId, startedAt, 'customer', 'active', startedAt + 50)),
      producer.enqueueStreamStatus(streamStatus(callId, startedAt, 'agent', 'active', startedAt + 60)),
      ...[u1, u2, u3].map((u) => producer.enqueueUtterance({ callId, callStartedAt: startedAt, utterance: u })),
      producer.enqueueStreamStatus(streamStatus(callId, startedAt, 'customer', 'finished', startedAt + 30_000, { utterances: 2, reconnects: 1 })),
      producer.enqueueStreamStatus(
        streamStatus(callId, startedAt, 'agent', 'failed', startedAt + 30_001, { errorCode: 'ERR_ASR_TASK_FAILED', errorMessage: 'task failed', utterances: 1 }),
      ),
      producer.enqueueCallEnd(callEnd(callId, startedAt)),
    ]);
    expect(outcomes.every((o) => o === 'queued')).toBe(true);
    await producer.flush(5000);
    expect(producer.pending).toBe(0);

    const call = await waitFor('the call to end', async () => {
      const c = await getCall(database.db, callId);
      return c?.status === 'ended' && (await utteranceCount(callId)) === 3 ? c : undefined;
    });
    await waitFor('stream statuses', async () => (await getCallStream(database.db, callId, 'agent'))?.status === 'failed');

    expect(call).toMatchObject({
      id: callId,
      source: 'twilio',
      tenantId: 'acme',
      callSid: `CA${callId.slice(0, 8)}`,
      streamSid: `MZ${callId.slice(0, 8)}`,
      accountSid: 'AC0001',
      externalIds: { callSid: `CA${callId.slice(0, 8)}`, streamSid: `MZ${callId.slice(0, 8)}`, accountSid: 'AC0001' },
      status: 'ended',
      endReason: 'stop',
      durationMs: 29_980,
      customParameters: { agentId: 'agent-1025', queue: 'billing' },
      roles: { inbound: 'customer', outbound: 'agent' },
      models: { customer: MODEL, agent: MODEL },
      routing: ROUTING,
      ingestStats: { frames: 3000, 'dropped.ERR_INGEST_BAD_JSON': 1 },
    });
    expect(call.startedAt.getTime()).toBe(startedAt);
    expect(call.endedAt?.getTime()).toBe(startedAt + 30_000);

    const rows = await listUtterances(database.db, callId);
    expect(rows.map((u) => [u.role, u.seq])).toEqual([
      ['customer', 1],
      ['agent', 1],
      ['customer', 2],
    ]);
    const [r1, r2, r3] = rows;
    expect(r1).toMatchObject({
      callId,
      role: 'customer',
      track: 'inbound',
      seq: 1,
      startMs: u1.startMs,
      endMs: u1.endMs,
      text: u1.text,
      charCount: 13,
      words: u1.words,
      emotionRaw: 'negative',
      emotionProvider: MODEL,
      emotionConfidence: 0.875,
      valence: -1,
      model: MODEL,
      asrTaskId: 'task-customer-1',
    });
    expect(r1?.callStartedAt.getTime()).toBe(startedAt);
    expect(r1?.audioEndAt?.getTime()).toBe(u1.timing.audioEndAt);
    expect(r1?.finalReceivedAt.getTime()).toBe(u1.timing.finalReceivedAt);
    expect(r1?.enqueuedAt?.getTime()).toBe(enqueuedAt);
    expect(r1?.persistedAt).toBeInstanceOf(Date);
    expect(r2).toMatchObject({ role: 'agent', charCount: 5, words: [], emotionRaw: null, emotionProvider: null, emotionConfidence: null, valence: null, audioEndAt: null });
    expect(r3).toMatchObject({ emotionRaw: 'neutral', emotionConfidence: null, valence: 0 });

    const streams = await listCallStreams(database.db, callId);
    expect(streams).toMatchObject([
      { role: 'agent', track: 'outbound', model: MODEL, status: 'failed', errorCode: 'ERR_ASR_TASK_FAILED', errorMessage: 'task failed', utterances: 1 },
      { role: 'customer', track: 'inbound', status: 'finished', errorCode: null, reconnects: 1, utterances: 2 },
    ]);
    expect(streams[1]?.statusAt.getTime()).toBe(startedAt + 30_000);

    expect(await metricValue(metrics, 'callscribe_utterances_persisted_total')).toBe(3);
    expect(await metricValue(metrics, 'callscribe_utterances_enqueued_total', { model: MODEL })).toBe(3);
    expect(await metricValue(metrics, 'callscribe_utterances_duplicate_total')).toBe(0);
    expect(await metricValue(metrics, 'callscribe_jobs_failed_total')).toBe(0);
    expect(await metricValue(metrics, 'callscribe_enqueued_to_persisted_ms', {}, 'callscribe_enqueued_to_persisted_ms_count')).toBe(3);
    expect(await metricValue(metrics, 'callscribe_final_to_enqueued_ms', {}, 'callscribe_final_to_enqueued_ms_count')).toBe(3);
  });

  it('stores the routing decision per role, and the model and arousal of every sentence across a failover', async () => {
    const r = redisForTest('routing');
    const metrics = createMetrics();
    const producer = startProducer(r, metrics);
    startWorker(r, metrics);
    const callId = randomUUID();
    const startedAt = Date.now() - 60_000;
    const routing: CallStartJob['routing'] = {
      customer: { model: QWEN, fallback: MODEL, rule: 'customer-emotion-on-qwen', language: 'zh' },
      agent: { model: MODEL, fallback: null, rule: 'default', language: null },
    };
    const qwenEmotion = (raw: string, valence: -1 | 0 | 1, arousal: 0 | 1) => ({ raw, provider: QWEN, confidence: null, valence, arousal });
    const sentences = [
      utterance(callId, 'customer', 1, startedAt, { model: QWEN, words: [], emotion: qwenEmotion('angry', -1, 1) }),
      utterance(callId, 'customer', 2, startedAt, { model: QWEN, words: [], emotion: qwenEmotion('sad', -1, 0) }),
      // qwen failed over to paraformer: its labels carry no arousal (absent, or explicitly null)
      utterance(callId, 'customer', 3, startedAt, { model: MODEL }),
      utterance(callId, 'customer', 4, startedAt, { model: MODEL, emotion: { raw: 'neutral', provider: MODEL, confidence: 0.6, valence: 0, arousal: null } }),
      utterance(callId, 'agent', 1, startedAt, { emotion: null }),
    ];
    await producer.enqueueCallStart(callStart(callId, startedAt, { models: { customer: QWEN, agent: MODEL }, routing }));
    await Promise.all(sentences.map((u) => producer.enqueueUtterance({ callId, callStartedAt: startedAt, utterance: u })));
    await waitFor('5 utterances', async () => (await utteranceCount(callId)) === 5);
    const call = await waitFor('the start', async () => {
      const c = await getCall(database.db, callId);
      return c?.source === 'twilio' ? c : undefined;
    });
    expect(call.routing).toEqual(routing);
    expect(call.models).toEqual({ customer: QWEN, agent: MODEL });

    const rows = await listUtterances(database.db, callId);
    const byKey = new Map(rows.map((u) => [`${u.role}-${u.seq}`, u]));
    expect(byKey.get('customer-1')).toMatchObject({ model: QWEN, emotionRaw: 'angry', emotionProvider: QWEN, emotionConfidence: null, valence: -1, arousal: 1 });
    expect(byKey.get('customer-2')).toMatchObject({ model: QWEN, emotionRaw: 'sad', valence: -1, arousal: 0 });
    expect(byKey.get('customer-3')).toMatchObject({ model: MODEL, emotionRaw: 'negative', valence: -1, arousal: null });
    expect(byKey.get('customer-4')).toMatchObject({ model: MODEL, emotionRaw: 'neutral', valence: 0, arousal: null });
    expect(byKey.get('agent-1')).toMatchObject({ model: MODEL, emotionRaw: null, valence: null, arousal: null });
    const perModel = await database.db.execute<{ model: string; n: number }>(
      sql`select model, count(*)::int as n from utterances where call_id = ${callId} and role = 'customer' group by model order by model`,
    );
    expect(perModel.rows).toEqual([
      { model: MODEL, n: 2 },
      { model: QWEN, n: 2 },
    ]);
  });

  it('stores {} for a call-start job without routing (enqueued before routing existed), refuses a bad arousal', async () => {
    const metrics = createMetrics();
    const process = createPersistProcessor({ repositories: postgresRepositories(database), metrics });
    const callId = randomUUID();
    const startedAt = Date.now();
    const { routing: _omitted, ...legacy } = callStart(callId, startedAt);
    await process({ name: 'call-start', data: legacy });
    expect((await getCall(database.db, callId))?.routing).toEqual({});

    const badRouting = { ...callStart(randomUUID(), startedAt), routing: { customer: { model: MODEL, rule: 'default' } } };
    await expect(process({ name: 'call-start', data: badRouting })).rejects.toThrow(/ERR_QUEUE_JOB_INVALID: .*routing\.customer\.fallback/);

    const bad = utterance(callId, 'customer', 1, startedAt, { emotion: { raw: 'angry', provider: QWEN, confidence: null, valence: -1, arousal: 2 as 1 } });
    const err: unknown = await process({ name: JOB_UTTERANCE, data: { callId, callStartedAt: startedAt, utterance: bad } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toMatch(/utterance\.emotion\.arousal/);
    // and Postgres itself refuses it (utterances_arousal_check)
    const direct: unknown = await database.db
      .insert(utterancesTable)
      .values({ ...utteranceRow(callId, startedAt, bad), arousal: 2 })
      .catch((e: unknown) => e);
    expect(sqlState(direct)).toBe('23514');
    expect(await utteranceCount(callId)).toBe(0);
  });

  it('persists an utterance processed before its call-start, and a late start neither reopens nor loses anything', async () => {
    const r = redisForTest('order');
    const metrics = createMetrics();
    const producer = startProducer(r, metrics);
    startWorker(r, metrics);
    const callId = randomUUID();
    const startedAt = Date.now() - 60_000;

    await producer.enqueueUtterance({ callId, callStartedAt: startedAt, utterance: utterance(callId, 'customer', 1, startedAt) });
    await waitFor('the utterance', async () => (await utteranceCount(callId)) === 1);
    expect(await getCall(database.db, callId)).toMatchObject({ source: 'unknown', status: 'active', tenantId: 'default', callSid: null });
    expect((await getCall(database.db, callId))?.startedAt.getTime()).toBe(startedAt);

    // the end overtakes the start too
    await producer.enqueueCallEnd(callEnd(callId, startedAt, { status: 'failed', endReason: 'socket-closed' }));
    await waitFor('the end', async () => (await getCall(database.db, callId))?.status === 'failed');

    await producer.enqueueCallStart(callStart(callId, startedAt));
    const call = await waitFor('the start', async () => {
      const c = await getCall(database.db, callId);
      return c?.source === 'twilio' ? c : undefined;
    });
    expect(call).toMatchObject({ status: 'failed', endReason: 'socket-closed', tenantId: 'acme', roles: { inbound: 'customer', outbound: 'agent' } });
    expect(await utteranceCount(callId)).toBe(1);
  });

  it('de-duplicates jobs enqueued twice: in BullMQ while retained, in Postgres after removal', async () => {
    const r = redisForTest('dupes');
    const metrics = createMetrics();
    const producer = startProducer(r, metrics);
    startWorker(r, metrics);
    const queue = openQueue(r);
    const callId = randomUUID();
    const startedAt = Date.now() - 10_000;
    const enqueueAll = () =>
      Promise.all([
        producer.enqueueCallStart(callStart(callId, startedAt)),
        producer.enqueueUtterance({ callId, callStartedAt: startedAt, utterance: utterance(callId, 'customer', 1, startedAt) }),
        producer.enqueueUtterance({ callId, callStartedAt: startedAt, utterance: utterance(callId, 'agent', 1, startedAt) }),
        producer.enqueueStreamStatus(streamStatus(callId, startedAt, 'agent', 'active', startedAt + 5)),
        producer.enqueueCallEnd(callEnd(callId, startedAt)),
      ]);

    await enqueueAll();
    await waitFor('5 completed jobs', async () => (await queue.getJobCounts('completed'))['completed'] === 5);
    await enqueueAll(); // same jobIds: BullMQ keeps the completed jobs and adds nothing
    expect(await queue.getJobCounts('completed', 'waiting', 'active', 'delayed')).toMatchObject({ completed: 5, waiting: 0, active: 0, delayed: 0 });

    // after removeOnComplete has dropped them, a re-enqueue runs again and Postgres de-duplicates
    await queue.clean(0, 100, 'completed');
    await enqueueAll();
    await waitFor('5 completed jobs again', async () => (await queue.getJobCounts('completed'))['completed'] === 5);
    expect(await utteranceCount(callId)).toBe(2);
    expect(await metricValue(metrics, 'callscribe_utterances_persisted_total')).toBe(2);
    expect(await metricValue(metrics, 'callscribe_utterances_duplicate_total')).toBe(2);
    const calls = await database.db.execute<{ n: number }>(sql`select count(*)::int as n from calls where id = ${callId}`);
    expect(calls.rows[0]?.n).toBe(1);
    expect(await listCallStreams(database.db, callId)).toHaveLength(1);
  });

  it('leaves one row when the same utterance job is processed twice', async () => {
    const metrics = createMetrics();
    const process = createPersistProcessor({ repositories: postgresRepositories(database), metrics });
    const callId = randomUUID();
    const startedAt = Date.now();
    const data: UtteranceJob = { callId, callStartedAt: startedAt, utterance: utterance(callId, 'agent', 7, startedAt) };
    const job = { name: JOB_UTTERANCE, data, id: jobIds.utterance(callId, 'agent', 7) };
    expect(await process(job)).toEqual({ kind: 'utterance', inserted: true });
    expect(await process(job)).toEqual({ kind: 'utterance', inserted: false });
    expect(await utteranceCount(callId)).toBe(1);
    expect(await metricValue(metrics, 'callscribe_utterances_persisted_total')).toBe(1);
    expect(await metricValue(metrics, 'callscribe_utterances_duplicate_total')).toBe(1);
  });

  it('fails a job Postgres rejects for its data without retrying, and without quoting the data', async () => {
    const metrics = createMetrics();
    const process = createPersistProcessor({ repositories: postgresRepositories(database), metrics });
    const startedAt = Date.now();
    const streamSid = `MZ${randomUUID()}`;
    const first = callStart(randomUUID(), startedAt, { externalIds: { streamSid } });
    const clash = callStart(randomUUID(), startedAt, { externalIds: { streamSid } });
    await process({ name: 'call-start', data: first });
    const err: unknown = await process({ name: 'call-start', data: clash }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toBe('ERR_DB_REJECTED: Postgres rejected the call-start job: SQLSTATE 23505 (constraint calls_source_stream_sid_uidx)');
  });

  it('fails a malformed or unknown job at once, without retries, and counts it', async () => {
    const r = redisForTest('invalid');
    const metrics = createMetrics();
    const { worker } = startWorker(r, metrics);
    const queue = openQueue(r);
    const failed = new Map<string, Job>();
    worker.on('failed', (job) => {
      if (job?.id) failed.set(job.id, job);
    });
    const callId = randomUUID();
    const bad = { callId, callStartedAt: Date.now(), utterance: { role: 'caller', text: 42 } };
    await queue.add(JOB_UTTERANCE, bad, { jobId: 'bad-utterance', attempts: 12, backoff: { type: 'fixed', delay: 10 } });
    await queue.add('transcode', { callId }, { jobId: 'unknown-name', attempts: 12, backoff: { type: 'fixed', delay: 10 } });
    await waitFor('both failures', async () => failed.size === 2);
    // give a (wrong) retry the chance to happen before checking it did not
    await new Promise((res) => setTimeout(res, 200));

    const badJob = await queue.getJob('bad-utterance');
    expect(await badJob?.getState()).toBe('failed');
    expect(badJob?.attemptsMade).toBe(1);
    expect(badJob?.failedReason).toMatch(/^ERR_QUEUE_JOB_INVALID: .*utterance\.role \(invalid_value\)/);
    expect(badJob?.failedReason).not.toContain('42');
    const unknown = await queue.getJob('unknown-name');
    expect(await unknown?.getState()).toBe('failed');
    expect(unknown?.failedReason).toMatch(/^ERR_QUEUE_JOB_UNKNOWN/);
    expect(await metricValue(metrics, 'callscribe_jobs_failed_total', { job: JOB_UTTERANCE })).toBe(1);
    expect(await metricValue(metrics, 'callscribe_jobs_failed_total', { job: 'transcode' })).toBe(1);
    expect(await getCall(database.db, callId)).toBeUndefined();
  });

  it('keeps jobs while Redis is unreachable and delivers them when it is back', async () => {
    const port = await freePort();
    const redis = privateRedis(port);
    cleanups.push(() => redis.stop());
    const r = { url: redis.url, prefix: 'outage' };
    const metrics = createMetrics();
    const producer = startProducer(r, metrics, { retryMinMs: 50, retryMaxMs: 100 });
    const callId = randomUUID();
    const startedAt = Date.now();

    // 1. Redis down from the start: the adds wait for the first connection
    const early = [1, 2, 3].map((seq) =>
      producer.enqueueUtterance({ callId, callStartedAt: startedAt, utterance: utterance(callId, 'customer', seq, startedAt) }),
    );
    await new Promise((res) => setTimeout(res, 300));
    expect(producer.pending).toBe(3);
    await redis.start();
    await producer.flush(10_000);
    expect(await Promise.all(early)).toEqual(['queued', 'queued', 'queued']);
    const queue = openQueue(r);
    expect(await queue.getJobCountByTypes('waiting')).toBe(3);

    // 2. Redis goes away while connected: adds fail fast, wait in the outbox, are retried
    await redis.stop();
    const late = [4, 5].map((seq) =>
      producer.enqueueUtterance({ callId, callStartedAt: startedAt, utterance: utterance(callId, 'customer', seq, startedAt) }),
    );
    await waitFor('the failed adds to be counted', async () => (await metricValue(metrics, 'callscribe_enqueue_errors_total', { job: JOB_UTTERANCE })) >= 2);
    expect(producer.pending).toBe(2);
    await redis.start(); // a fresh, empty Redis
    await producer.flush(15_000);
    expect(await Promise.all(late)).toEqual(['queued', 'queued']);
    const ids = (await waitFor('the re-sent jobs', async () => {
      const jobs = await queue.getWaiting();
      return jobs.length === 2 ? jobs : undefined;
    })).map((j) => j.id);
    expect(ids.sort()).toEqual([jobIds.utterance(callId, 'customer', 4), jobIds.utterance(callId, 'customer', 5)].sort());
    expect(await metricValue(metrics, 'callscribe_enqueue_errors_total', { job: JOB_UTTERANCE })).toBe(2);
    expect(await metricValue(metrics, 'callscribe_queue_outbox_dropped_total')).toBe(0);
  });

  it('drops the oldest job past the outbox bound and counts it', async () => {
    const port = await freePort();
    const redis = privateRedis(port);
    cleanups.push(() => redis.stop());
    await redis.start();
    const r = { url: redis.url, prefix: 'bound' };
    const metrics = createMetrics();
    const producer = startProducer(r, metrics, { maxOutbox: 2, retryMinMs: 50, retryMaxMs: 100 });
    const callId = randomUUID();
    const startedAt = Date.now();
    await producer.enqueueCallStart(callStart(callId, startedAt));
    await redis.stop();
    const outcomes = [1, 2, 3, 4].map((seq) =>
      producer.enqueueUtterance({ callId, callStartedAt: startedAt, utterance: utterance(callId, 'agent', seq, startedAt) }),
    );
    await waitFor('drops', async () => (await metricValue(metrics, 'callscribe_queue_outbox_dropped_total', { reason: 'overflow' })) === 2);
    await redis.start();
    await producer.flush(15_000);
    expect(await Promise.all(outcomes)).toEqual(['dropped', 'dropped', 'queued', 'queued']);
    const queue = openQueue(r);
    const ids = (await queue.getWaiting()).map((j) => j.id).sort();
    expect(ids).toEqual([jobIds.utterance(callId, 'agent', 3), jobIds.utterance(callId, 'agent', 4)].sort());
  });

  it('retries while Postgres is unreachable and persists once it is back', async () => {
    const proxy = await startPgProxy();
    cleanups.push(() => proxy.close());
    const flaky = createDb(testDb.url.replace(/:5432\//, `:${proxy.port}/`), { max: 2, connectionTimeoutMs: 1000 });
    cleanups.push(() => flaky.close());
    const r = redisForTest('pgdown');
    const metrics = createMetrics();
    const producer = startProducer(r, metrics);
    startWorker(r, metrics, { db: flaky });
    const queue = openQueue(r);
    const callId = randomUUID();
    const startedAt = Date.now();

    proxy.setDown(true);
    await producer.enqueueCallStart(callStart(callId, startedAt));
    await producer.enqueueUtterance({ callId, callStartedAt: startedAt, utterance: utterance(callId, 'customer', 1, startedAt) });
    await waitFor('two failed attempts per job', async () => (await metricValue(metrics, 'callscribe_jobs_failed_total')) >= 4);
    const uttJob = await queue.getJob(jobIds.utterance(callId, 'customer', 1));
    expect(uttJob?.failedReason).toMatch(/^ERR_DB_UNAVAILABLE: Postgres unavailable: /);
    // drizzle's error message carries the query parameters: they must not reach Redis
    expect(uttJob?.failedReason).not.toContain('退款');
    expect(uttJob?.failedReason).not.toMatch(/params|insert into/i);
    expect(await uttJob?.getState()).toMatch(/delayed|waiting|active/);

    proxy.setDown(false);
    await waitFor('the utterance after the outage', async () => (await utteranceCount(callId)) === 1);
    await waitFor('the call-start after the outage', async () => (await getCall(database.db, callId))?.source === 'twilio');
    const done = await queue.getJob(jobIds.utterance(callId, 'customer', 1));
    expect(await done?.getState()).toBe('completed');
    expect(done?.attemptsMade).toBeGreaterThanOrEqual(3);
  });

  it('reports waiting jobs and the age of the oldest, and stops on close', async () => {
    const r = redisForTest('qmetrics');
    const metrics = createMetrics();
    const queue = openQueue(r);
    const handle = startQueueMetrics({ queue, metrics, intervalMs: 60_000 });
    await handle.refresh();
    expect(await metricValue(metrics, 'callscribe_queue_waiting_jobs', { queue: UTTERANCES_QUEUE })).toBe(0);
    expect(await metricValue(metrics, 'callscribe_queue_lag_ms', { queue: UTTERANCES_QUEUE })).toBe(0);

    await queue.add('call-start', { x: 1 }, { jobId: 'first' });
    await new Promise((res) => setTimeout(res, 120));
    await queue.add('call-start', { x: 2 }, { jobId: 'second' });
    await handle.refresh();
    expect(await metricValue(metrics, 'callscribe_queue_waiting_jobs', { queue: UTTERANCES_QUEUE })).toBe(2);
    // the oldest job is at least 120 ms old
    expect(await metricValue(metrics, 'callscribe_queue_lag_ms', { queue: UTTERANCES_QUEUE })).toBeGreaterThanOrEqual(120);

    await handle.close();
    await queue.add('call-start', { x: 3 }, { jobId: 'third' });
    await handle.refresh();
    expect(await metricValue(metrics, 'callscribe_queue_waiting_jobs', { queue: UTTERANCES_QUEUE })).toBe(2);
  });
});
