/**
 * Alerts and their delivery outbox in Postgres: `insertAlerts` (the alert worker's write, inside
 * its per-call transaction) and `createAlertStore(db)`, the AlertStore of src/alerts/store.ts.
 *
 * - Idempotent: one alert per (call_id, rule_id, rule_version, trigger_role, trigger_seq);
 *   re-processing a sentence inserts nothing and queues no delivery.
 * - Dedupe (qa-analytics.md §3.2, §3.4): an 'open' alert whose dedupe_key already has an open or
 *   acknowledged alert is stored 'suppressed' (suppressed_reason 'dedupe'); the partial unique
 *   index alerts_dedupe_open_uidx backs this up against concurrent writers.
 * - Outbox (§3.3): each new non-suppressed alert gets one 'pending' alert_deliveries row per
 *   channel/target in the same transaction, so a crash between commit and dispatch loses
 *   nothing (listPendingDeliveries sweeps them up).
 * - Lifecycle (§3.4): open → acknowledged → resolved; feedback on any non-suppressed alert.
 */
import { and, asc, desc, eq, inArray, isNull, lt, sql, type SQL } from 'drizzle-orm';
import type { Severity } from '../../analytics/types.js';
import type {
  AlertDelivery,
  AlertEvidence,
  AlertFeedback,
  AlertRecord,
  AlertStore,
  DeliveryChannel,
  DeliveryResult,
  TransitionOutcome,
} from '../../alerts/store.js';
import type { Role } from '../../core/types.js';
import type { DbExecutor } from '../client.js';
import { dbConstraint, sqlState } from '../errors.js';
import { alertDeliveries, alerts, type AlertDeliveryRow, type AlertRow } from '../schema.js';

/** The call an alert belongs to (copied onto the alert row). */
export interface AlertCallContext {
  readonly callId: string;
  readonly callStartedAt: Date;
  readonly tenantId: string;
  readonly agentId: string | null;
  readonly queueId?: string | null;
}

/**
 * One alert decision to store (src/alerts/engine.ts `AlertDecision` plus the evidence texts and
 * the trigger sentence's final-received time).
 */
export interface NewAlert {
  readonly ruleId: string;
  readonly ruleVersion: number;
  /** Role whose speech raised it. */
  readonly role: Role;
  readonly severity: Severity;
  /** 'open' may still be stored 'suppressed' (dedupe). */
  readonly status: 'open' | 'suppressed';
  /** Required when status is 'suppressed'; null when 'open' (the database refuses anything else). */
  readonly suppressedReason: 'cooldown' | 'cap' | 'dedupe' | null;
  readonly reason: string;
  /** `${callId}:${ruleId}:${severity}`. */
  readonly dedupeKey: string;
  readonly trigger: { readonly role: Role; readonly seq: number; readonly endMs: number };
  readonly evidence: readonly AlertEvidence[];
  /** When the trigger sentence's final result reached callscribe (latency mark). */
  readonly finalReceivedAt: Date | null;
}

export interface DeliveryTarget {
  readonly channel: DeliveryChannel;
  /** 'supervisor' | the Redis channel name | the webhook URL. */
  readonly target: string;
}

export const DEDUPE_INDEX = 'alerts_dedupe_open_uidx';
const MAX_LIST = 1000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function toAlertRecord(r: AlertRow): AlertRecord {
  return {
    alertId: r.alertId,
    tenantId: r.tenantId,
    callId: r.callId,
    callStartedAt: r.callStartedAt,
    ruleId: r.ruleId,
    ruleVersion: r.ruleVersion,
    role: r.role,
    severity: r.severity,
    status: r.status,
    reason: r.reason,
    suppressedReason: r.suppressedReason,
    dedupeKey: r.dedupeKey,
    evidence: r.evidence,
    triggerRole: r.triggerRole,
    triggerSeq: r.triggerSeq,
    triggerEndMs: r.triggerEndMs,
    finalReceivedAt: r.finalReceivedAt,
    committedAt: r.committedAt,
    firstDeliveredAt: r.firstDeliveredAt,
    ackedBy: r.ackedBy,
    ackedAt: r.ackedAt,
    resolvedBy: r.resolvedBy,
    resolvedAt: r.resolvedAt,
    feedback: r.feedback,
    feedbackBy: r.feedbackBy,
    feedbackAt: r.feedbackAt,
  };
}

function toDelivery(r: AlertDeliveryRow): AlertDelivery {
  return {
    deliveryId: r.deliveryId,
    alertId: r.alertId,
    channel: r.channel,
    target: r.target,
    status: r.status,
    attempts: r.attempts,
    lastError: r.lastError,
    createdAt: r.createdAt,
    deliveredAt: r.deliveredAt,
  };
}

async function insertOne(
  db: DbExecutor,
  call: AlertCallContext,
  a: NewAlert,
  forceDedupe: boolean,
): Promise<AlertRow | undefined> {
  const duplicateOpen = sql`EXISTS (SELECT 1 FROM alerts d WHERE d.dedupe_key = ${a.dedupeKey} AND d.status IN ('open', 'acknowledged'))`;
  let status: SQL | 'suppressed';
  let suppressedReason: SQL | NewAlert['suppressedReason'];
  if (a.status !== 'open') {
    status = 'suppressed';
    suppressedReason = a.suppressedReason;
  } else if (forceDedupe) {
    status = 'suppressed';
    suppressedReason = 'dedupe';
  } else {
    status = sql`CASE WHEN ${duplicateOpen} THEN 'suppressed' ELSE 'open' END`;
    suppressedReason = sql`CASE WHEN ${duplicateOpen} THEN 'dedupe' END`;
  }
  const rows = await db
    .insert(alerts)
    .values({
      tenantId: call.tenantId,
      callId: call.callId,
      callStartedAt: call.callStartedAt,
      agentId: call.agentId,
      queueId: call.queueId ?? null,
      ruleId: a.ruleId,
      ruleVersion: a.ruleVersion,
      role: a.role,
      severity: a.severity,
      status,
      reason: a.reason,
      suppressedReason,
      dedupeKey: a.dedupeKey,
      evidence: a.evidence.map((e) => ({ ...e })),
      triggerRole: a.trigger.role,
      triggerSeq: a.trigger.seq,
      triggerEndMs: Math.round(a.trigger.endMs),
      finalReceivedAt: a.finalReceivedAt,
    })
    .onConflictDoNothing({
      target: [alerts.callId, alerts.ruleId, alerts.ruleVersion, alerts.triggerRole, alerts.triggerSeq],
    })
    .returning();
  return rows[0];
}

/**
 * Stores alert decisions in order (a later 'open' one with the dedupe key of an earlier one in
 * the batch is suppressed) and, for each newly stored alert that is not suppressed, one pending
 * alert_deliveries row per `deliveries` entry — all in one transaction (a savepoint when `tx`
 * is already a transaction, e.g. withCallLock's). Returns the newly inserted alerts, suppressed
 * ones included (filter on status 'open' to dispatch); an alert already stored is not returned.
 */
export async function insertAlerts(
  tx: DbExecutor,
  call: AlertCallContext,
  newAlerts: readonly NewAlert[],
  deliveries: readonly DeliveryTarget[],
): Promise<AlertRecord[]> {
  if (newAlerts.length === 0) return [];
  return tx.transaction(async (t) => {
    const out: AlertRecord[] = [];
    for (const a of newAlerts) {
      let row: AlertRow | undefined;
      try {
        row = await t.transaction((sp) => insertOne(sp, call, a, false));
      } catch (err) {
        // another writer opened the same dedupe key between our check and our insert
        if (sqlState(err) !== '23505' || dbConstraint(err) !== DEDUPE_INDEX) throw err;
        row = await insertOne(t, call, a, true);
      }
      if (row === undefined) continue;
      out.push(toAlertRecord(row));
      if (row.status === 'open' && deliveries.length > 0) {
        await t
          .insert(alertDeliveries)
          .values(deliveries.map((d) => ({ alertId: row.alertId, channel: d.channel, target: d.target })))
          .onConflictDoNothing({ target: [alertDeliveries.alertId, alertDeliveries.channel, alertDeliveries.target] });
      }
    }
    return out;
  });
}

/** The AlertStore contract (src/alerts/store.ts) on Postgres. */
export function createAlertStore(db: DbExecutor): AlertStore {
  const load = async (alertId: string): Promise<AlertRow | undefined> => {
    if (!UUID.test(alertId)) return undefined;
    const rows = await db.select().from(alerts).where(eq(alerts.alertId, alertId)).limit(1);
    return rows[0];
  };

  /** After a guarded UPDATE matched nothing: tell not-found from a wrong current status. */
  const failure = async (alertId: string): Promise<TransitionOutcome> => {
    const current = await load(alertId);
    return current === undefined
      ? { ok: false, error: 'not-found' }
      : { ok: false, error: 'invalid-transition', status: current.status };
  };

  return {
    async listOpenAlerts(options = {}) {
      const limit = Math.min(Math.max(Math.trunc(options.limit ?? 100), 1), MAX_LIST);
      const open = inArray(alerts.status, ['open', 'acknowledged']);
      const rows = await db
        .select()
        .from(alerts)
        .where(options.tenantId === undefined ? open : and(open, eq(alerts.tenantId, options.tenantId)))
        .orderBy(desc(alerts.committedAt), desc(alerts.alertId))
        .limit(limit);
      return rows.map(toAlertRecord);
    },

    async listAlertsByStatus(status, options = {}) {
      const limit = Math.min(Math.max(Math.trunc(options.limit ?? 100), 1), MAX_LIST);
      const where = eq(alerts.status, status);
      const rows = await db
        .select()
        .from(alerts)
        .where(options.tenantId === undefined ? where : and(where, eq(alerts.tenantId, options.tenantId)))
        .orderBy(desc(alerts.committedAt), desc(alerts.alertId))
        .limit(limit);
      return rows.map(toAlertRecord);
    },

    async getAlert(alertId) {
      const row = await load(alertId);
      return row === undefined ? undefined : toAlertRecord(row);
    },

    async listDeliveries(alertId) {
      if (!UUID.test(alertId)) return [];
      const rows = await db
        .select()
        .from(alertDeliveries)
        .where(eq(alertDeliveries.alertId, alertId))
        .orderBy(asc(alertDeliveries.deliveryId));
      return rows.map(toDelivery);
    },

    async listPendingDeliveries(createdBefore, limit) {
      const rows = await db
        .select()
        .from(alertDeliveries)
        .where(and(eq(alertDeliveries.status, 'pending'), lt(alertDeliveries.createdAt, createdBefore)))
        .orderBy(asc(alertDeliveries.createdAt), asc(alertDeliveries.deliveryId))
        .limit(Math.min(Math.max(Math.trunc(limit), 1), MAX_LIST));
      return rows.map(toDelivery);
    },

    async recordDelivery(alertId: string, channel: DeliveryChannel, target: string, result: DeliveryResult) {
      const ok = result.ok;
      const final = !result.ok && result.final;
      const error = result.ok ? null : result.error;
      // the status this attempt leaves: delivered stays delivered; a final failure fails the rest
      const newStatus = sql`CASE WHEN ${ok} THEN 'delivered'
        WHEN ${final} AND ${alertDeliveries.status} <> 'delivered' THEN 'failed'
        ELSE ${alertDeliveries.status} END`;
      await db.transaction(async (tx) => {
        await tx
          .insert(alertDeliveries)
          .values({
            alertId,
            channel,
            target,
            status: ok ? 'delivered' : final ? 'failed' : 'pending',
            attempts: 1,
            lastError: error,
            lastAttemptAt: result.at,
            deliveredAt: ok ? result.at : null,
            nextAttemptAt: ok || final ? null : sql`now()`,
          })
          .onConflictDoUpdate({
            target: [alertDeliveries.alertId, alertDeliveries.channel, alertDeliveries.target],
            set: {
              attempts: sql`${alertDeliveries.attempts} + 1`,
              status: newStatus,
              lastError: error,
              lastAttemptAt: result.at,
              deliveredAt: sql`coalesce(${alertDeliveries.deliveredAt}, excluded.delivered_at)`,
              nextAttemptAt: sql`CASE WHEN (${newStatus}) = 'pending' THEN ${alertDeliveries.nextAttemptAt} END`,
            },
          });
        if (ok) {
          await tx
            .update(alerts)
            .set({ firstDeliveredAt: result.at })
            .where(and(eq(alerts.alertId, alertId), isNull(alerts.firstDeliveredAt)));
        }
      });
    },

    async transition(alertId, action, by, at) {
      if (!UUID.test(alertId)) return { ok: false, error: 'not-found' };
      const rows =
        action === 'acknowledge'
          ? await db
              .update(alerts)
              .set({ status: 'acknowledged', ackedBy: by, ackedAt: at })
              .where(and(eq(alerts.alertId, alertId), eq(alerts.status, 'open')))
              .returning()
          : await db
              .update(alerts)
              .set({ status: 'resolved', resolvedBy: by, resolvedAt: at })
              .where(and(eq(alerts.alertId, alertId), inArray(alerts.status, ['open', 'acknowledged'])))
              .returning();
      const row = rows[0];
      return row === undefined ? failure(alertId) : { ok: true, alert: toAlertRecord(row) };
    },

    async setFeedback(alertId: string, feedback: AlertFeedback, by: string, at: Date) {
      if (!UUID.test(alertId)) return { ok: false, error: 'not-found' };
      const rows = await db
        .update(alerts)
        .set({ feedback, feedbackBy: by, feedbackAt: at })
        .where(and(eq(alerts.alertId, alertId), sql`${alerts.status} <> 'suppressed'`))
        .returning();
      const row = rows[0];
      return row === undefined ? failure(alertId) : { ok: true, alert: toAlertRecord(row) };
    },
  };
}
