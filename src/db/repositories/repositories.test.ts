/** Repository semantics against the local Postgres (a database of its own, dropped afterwards). */
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../../../test/support/postgres.js';
import type { Utterance } from '../../core/types.js';
import type { StreamStatusJob } from '../../queue/jobs.js';
import { isDbDataError, sqlState } from '../errors.js';
import { ensureCallRow, getCall, getCallStream, markCallEnded, upsertCallStart, upsertStreamStatus } from './calls.js';
import { insertUtterance, listUtterances } from './utterances.js';

const suite = useTestDatabase({ max: 2 });

const T0 = Date.UTC(2025, 4, 6, 7, 8, 9, 10);

function utt(callId: string, role: Utterance['role'], seq: number, startMs: number, extra: Partial<Utterance> = {}): Utterance {
  return {
    callId,
    role,
    track: role === 'customer' ? 'inbound' : 'outbound',
    seq,
    startMs,
    endMs: startMs + 500,
    text: '您好，请问有什么可以帮您？',
    words: [],
    emotion: null,
    model: 'm',
    asrTaskId: 't',
    timing: { audioEndAt: null, finalReceivedAt: T0 + startMs + 800 },
    ...extra,
  };
}

function status(callId: string, s: StreamStatusJob['status'], at: number, extra: Partial<StreamStatusJob> = {}): StreamStatusJob {
  return {
    callId,
    callStartedAt: T0,
    role: 'customer',
    track: 'inbound',
    model: 'm',
    status: s,
    errorCode: null,
    errorMessage: null,
    reconnects: 0,
    utterances: 0,
    at,
    ...extra,
  };
}

describe('calls', () => {
  it('a start fills in a placeholder and keeps an end that came first', async () => {
    const callId = randomUUID();
    expect(await ensureCallRow(suite.database.db, callId, T0)).toBe(true);
    expect(await ensureCallRow(suite.database.db, callId, T0)).toBe(false);
    await markCallEnded(suite.database.db, {
      callId,
      callStartedAt: T0,
      endedAt: T0 + 9000,
      status: 'ended',
      endReason: 'stop',
      durationMs: 8999.6,
      stats: { frames: 450 },
    });
    await upsertCallStart(suite.database.db, {
      callId,
      source: 'sip',
      startedAt: T0,
      tenantId: 't1',
      externalIds: { sipCallId: 'abc@pbx' },
      customParameters: {},
      roles: { left: 'customer' },
      models: { customer: 'm' },
      routing: { customer: { model: 'm', fallback: null, rule: 'env-default', language: null } },
    });
    expect(await getCall(suite.database.db, callId)).toMatchObject({
      source: 'sip',
      tenantId: 't1',
      callSid: null,
      streamSid: null,
      externalIds: { sipCallId: 'abc@pbx' },
      routing: { customer: { model: 'm', fallback: null, rule: 'env-default', language: null } },
      status: 'ended',
      durationMs: 9000,
      ingestStats: { frames: 450 },
    });
  });

  it('refuses a second call with the same (source, stream_sid)', async () => {
    const start = (callId: string) => ({
      callId,
      source: 'twilio' as const,
      startedAt: T0,
      tenantId: 'default',
      externalIds: { streamSid: 'MZsame' },
      customParameters: {},
      roles: {},
      models: {},
      routing: {},
    });
    await upsertCallStart(suite.database.db, start(randomUUID()));
    const err: unknown = await upsertCallStart(suite.database.db, start(randomUUID())).catch((e: unknown) => e);
    expect(isDbDataError(err)).toBe(true);
    expect(sqlState(err)).toBe('23505');
  });
});

describe('call_streams', () => {
  it('ignores a status older than the stored one, whatever the processing order', async () => {
    const callId = randomUUID();
    expect(await upsertStreamStatus(suite.database.db, status(callId, 'finished', T0 + 5000, { utterances: 4 }))).toBe(true);
    expect(await upsertStreamStatus(suite.database.db, status(callId, 'active', T0 + 100))).toBe(false);
    expect(await upsertStreamStatus(suite.database.db, status(callId, 'pending', T0 + 1))).toBe(false);
    expect(await getCallStream(suite.database.db, callId, 'customer')).toMatchObject({ status: 'finished', utterances: 4 });
    // the placeholder call row exists
    expect(await getCall(suite.database.db, callId)).toMatchObject({ source: 'unknown', status: 'active' });
  });

  it('on equal times, the later lifecycle stage wins', async () => {
    const callId = randomUUID();
    await upsertStreamStatus(suite.database.db, status(callId, 'active', T0 + 10));
    expect(await upsertStreamStatus(suite.database.db, status(callId, 'pending', T0 + 10))).toBe(false);
    expect(await upsertStreamStatus(suite.database.db, status(callId, 'failed', T0 + 10, { errorCode: 'ERR_ASR_X' }))).toBe(true);
    expect(await getCallStream(suite.database.db, callId, 'customer')).toMatchObject({ status: 'failed', errorCode: 'ERR_ASR_X' });
  });
});

describe('utterances', () => {
  it('lists a transcript by start time, then role', async () => {
    const callId = randomUUID();
    await insertUtterance(suite.database.db, { callId, callStartedAt: T0, utterance: utt(callId, 'customer', 2, 3000) });
    await insertUtterance(suite.database.db, { callId, callStartedAt: T0, utterance: utt(callId, 'customer', 1, 0) });
    await insertUtterance(suite.database.db, { callId, callStartedAt: T0, utterance: utt(callId, 'agent', 1, 3000) });
    const rows = await listUtterances(suite.database.db, callId);
    expect(rows.map((r) => `${r.role}${r.seq}@${r.startMs}`)).toEqual(['customer1@0', 'agent1@3000', 'customer2@3000']);
    expect(rows[0]?.charCount).toBe(11);
  });

  it('deleting a call deletes its streams and utterances', async () => {
    const callId = randomUUID();
    await insertUtterance(suite.database.db, { callId, callStartedAt: T0, utterance: utt(callId, 'agent', 1, 0) });
    await upsertStreamStatus(suite.database.db, status(callId, 'active', T0));
    await suite.database.db.execute(sql`delete from calls where id = ${callId}`);
    expect(await listUtterances(suite.database.db, callId)).toEqual([]);
    expect(await getCallStream(suite.database.db, callId, 'customer')).toBeUndefined();
  });

  it('the database refuses a valence outside -1..1', async () => {
    const callId = randomUUID();
    const bad = utt(callId, 'agent', 1, 0, {
      emotion: { raw: 'x', provider: 'p', confidence: null, valence: 2 as unknown as -1 },
    });
    const err: unknown = await insertUtterance(suite.database.db, { callId, callStartedAt: T0, utterance: bad }).catch((e: unknown) => e);
    expect(sqlState(err)).toBe('23514');
  });
});
