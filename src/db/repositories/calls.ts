/**
 * Writes to `calls` and `call_streams`. Every write is an idempotent upsert on the natural
 * key, and each tolerates arriving before the call-start job (queue jobs run concurrently):
 * a placeholder `calls` row (source 'unknown') is created first and filled in by the start.
 */
import { and, asc, eq, sql } from 'drizzle-orm';
import type { CallEndJob, CallStartJob, StreamStatusJob } from '../../queue/jobs.js';
import type { Db } from '../client.js';
import { callStreams, calls, type CallRow, type CallStreamRow } from '../schema.js';

/** Well-known keys of CallStartJob.externalIds that get their own column. */
const EXTERNAL_ID_COLUMNS = { callSid: 'callSid', streamSid: 'streamSid', accountSid: 'accountSid' } as const;

function externalId(ids: Readonly<Record<string, string>>, key: string): string | null {
  const v = ids[key];
  return typeof v === 'string' && v.length > 0 ? v : null;
}

const nonEmpty = (v: string | undefined): string | null => (v !== undefined && v.length > 0 ? v : null);

/**
 * Inserts the call or, when a placeholder (or an earlier copy) exists, sets exactly the
 * fields a start knows. Never touches status, ended_at, end_reason, duration_ms, ingest_stats:
 * a start processed after the end leaves the call ended.
 */
export async function upsertCallStart(db: Db, job: CallStartJob): Promise<void> {
  const start = {
    source: job.source,
    tenantId: job.tenantId,
    callSid: externalId(job.externalIds, EXTERNAL_ID_COLUMNS.callSid),
    streamSid: externalId(job.externalIds, EXTERNAL_ID_COLUMNS.streamSid),
    accountSid: externalId(job.externalIds, EXTERNAL_ID_COLUMNS.accountSid),
    externalIds: { ...job.externalIds },
    startedAt: new Date(job.startedAt),
    customParameters: { ...job.customParameters },
    roles: { ...job.roles },
    models: { ...job.models },
    routing: { ...job.routing },
    agentId: nonEmpty(job.agentId),
    queueId: nonEmpty(job.queueId),
    metadata: { ...job.metadata },
  };
  await db
    .insert(calls)
    .values({ id: job.callId, ...start })
    .onConflictDoUpdate({ target: calls.id, set: { ...start, updatedAt: sql`now()` } });
}

/**
 * Makes sure a `calls` row exists for a job that may run before its call-start job.
 * Returns true when this call created the placeholder.
 */
export async function ensureCallRow(db: Db, callId: string, callStartedAt: number): Promise<boolean> {
  const rows = await db
    .insert(calls)
    .values({ id: callId, source: 'unknown', startedAt: new Date(callStartedAt) })
    .onConflictDoNothing({ target: calls.id })
    .returning({ id: calls.id });
  return rows.length > 0;
}

/**
 * Records the end of a call (one statement: inserts a placeholder when the start has not
 * landed yet). Status only ever moves from 'active' to 'ended' / 'failed'.
 */
export async function markCallEnded(db: Db, job: CallEndJob): Promise<void> {
  const end = {
    status: job.status,
    endedAt: new Date(job.endedAt),
    endReason: job.endReason,
    durationMs: Math.round(job.durationMs),
    ingestStats: { ...job.stats },
  };
  await db
    .insert(calls)
    .values({ id: job.callId, source: 'unknown', startedAt: new Date(job.callStartedAt), ...end })
    .onConflictDoUpdate({ target: calls.id, set: { ...end, updatedAt: sql`now()` } });
}

const STATUS_RANK_SQL = (column: string) =>
  `CASE ${column} WHEN 'pending' THEN 0 WHEN 'active' THEN 1 ELSE 2 END`;

/**
 * Upserts the stream's status. Jobs can be processed out of order, so an update applies only
 * when it is newer (status_at) than the stored one; on a tie the later lifecycle stage wins
 * (pending < active < finished/failed). Returns whether the row was written.
 */
export async function upsertStreamStatus(db: Db, job: StreamStatusJob): Promise<boolean> {
  await ensureCallRow(db, job.callId, job.callStartedAt);
  const values = {
    track: job.track,
    model: job.model,
    status: job.status,
    errorCode: job.errorCode,
    errorMessage: job.errorMessage,
    reconnects: job.reconnects,
    utterances: job.utterances,
    statusAt: new Date(job.at),
  };
  const rows = await db
    .insert(callStreams)
    .values({ callId: job.callId, role: job.role, ...values })
    .onConflictDoUpdate({
      target: [callStreams.callId, callStreams.role],
      set: {
        track: sql`excluded.track`,
        model: sql`excluded.model`,
        status: sql`excluded.status`,
        errorCode: sql`excluded.error_code`,
        errorMessage: sql`excluded.error_message`,
        reconnects: sql`excluded.reconnects`,
        utterances: sql`excluded.utterances`,
        statusAt: sql`excluded.status_at`,
        updatedAt: sql`now()`,
      },
      setWhere: sql.raw(
        `call_streams.status_at < excluded.status_at OR (call_streams.status_at = excluded.status_at AND ` +
          `${STATUS_RANK_SQL('call_streams.status')} <= ${STATUS_RANK_SQL('excluded.status')})`,
      ),
    })
    .returning({ callId: callStreams.callId });
  return rows.length > 0;
}

export async function getCall(db: Db, callId: string): Promise<CallRow | undefined> {
  const rows = await db.select().from(calls).where(eq(calls.id, callId)).limit(1);
  return rows[0];
}

export async function listCallStreams(db: Db, callId: string): Promise<CallStreamRow[]> {
  return db.select().from(callStreams).where(eq(callStreams.callId, callId)).orderBy(asc(callStreams.role));
}

export async function getCallStream(
  db: Db,
  callId: string,
  role: CallStreamRow['role'],
): Promise<CallStreamRow | undefined> {
  const rows = await db
    .select()
    .from(callStreams)
    .where(and(eq(callStreams.callId, callId), eq(callStreams.role, role)))
    .limit(1);
  return rows[0];
}
