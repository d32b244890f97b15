/** Alerts, dedupe, outbox and the AlertStore contract against the local Postgres (own database). */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { eq, sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../../../test/support/postgres.js';
import type { AlertDecision } from '../../alerts/engine.js';
import type { AlertStore } from '../../alerts/store.js';
import { alertDeliveries } from '../schema.js';
import { withCallLock } from './analytics.js';
import { createAlertStore, insertAlerts, type AlertCallContext, type DeliveryTarget, type NewAlert } from './alerts.js';
import { ensureCallRow } from './calls.js';

const suite = useTestDatabase({ max: 4 });
let store: AlertStore;

beforeAll(() => {
  store = createAlertStore(suite.database.db);
});

const T0 = new Date(Date.UTC(2025, 4, 6, 7, 8, 9, 10));
const TARGETS: DeliveryTarget[] = [
  { channel: 'supervisor', target: 'supervisor' },
  { channel: 'webhook', target: 'https://hooks.example/a' },
];

async function newCall(tenantId = 'default'): Promise<AlertCallContext> {
  const callId = randomUUID();
  await ensureCallRow(suite.database.db, callId, T0.getTime());
  return { callId, callStartedAt: T0, tenantId, agentId: 'agent-7', queueId: 'billing' };
}

function decision(call: AlertCallContext, seq: number, overrides: Partial<NewAlert> = {}): NewAlert {
  const severity = overrides.severity ?? 'warning';
  return {
    ruleId: 'customer-negative',
    ruleVersion: 1,
    role: 'customer',
    severity,
    status: 'open',
    suppressedReason: null,
    reason: 'share',
    dedupeKey: `${call.callId}:customer-negative:${severity}`,
    trigger: { role: 'customer', seq, endMs: seq * 5000 },
    evidence: [{ role: 'customer', seq, startMs: seq * 5000 - 3000, endMs: seq * 5000, valence: -1, emotionRaw: 'negative', text: '太慢了' }],
    finalReceivedAt: new Date(T0.getTime() + seq * 5000 + 300),
    ...overrides,
  };
}

/** Compile-time contract check: an engine decision plus texts and the final time is a NewAlert. */
const _fromDecision = (d: AlertDecision, text: string, finalReceivedAt: Date | null): NewAlert => ({
  ...d,
  evidence: d.evidence.map((e) => ({ ...e, text })),
  finalReceivedAt,
});

async function deliveryCount(alertId: string): Promise<number> {
  const rows = await suite.database.db.select().from(alertDeliveries).where(eq(alertDeliveries.alertId, alertId));
  return rows.length;
}

describe('insertAlerts', () => {
  it('stores an alert with one pending delivery per target; a replay adds neither alerts nor deliveries', async () => {
    const call = await newCall();
    const first = await insertAlerts(suite.database.db, call, [decision(call, 3)], TARGETS);
    expect(first).toHaveLength(1);
    const alert = first[0]!;
    expect(alert).toMatchObject({
      callId: call.callId,
      tenantId: 'default',
      status: 'open',
      suppressedReason: null,
      triggerRole: 'customer',
      triggerSeq: 3,
      triggerEndMs: 15000,
      firstDeliveredAt: null,
      evidence: [{ seq: 3, text: '太慢了' }],
    });
    expect(alert.callStartedAt.getTime()).toBe(T0.getTime());
    expect(alert.committedAt.getTime()).toBeGreaterThan(alert.finalReceivedAt!.getTime());
    const deliveries = await store.listDeliveries(alert.alertId);
    expect(deliveries.map((d) => [d.channel, d.target, d.status, d.attempts])).toEqual([
      ['supervisor', 'supervisor', 'pending', 0],
      ['webhook', 'https://hooks.example/a', 'pending', 0],
    ]);

    expect(await insertAlerts(suite.database.db, call, [decision(call, 3)], TARGETS)).toEqual([]);
    expect(await deliveryCount(alert.alertId)).toBe(2);
    const all = await suite.database.db.execute<{ n: number }>(sql`select count(*)::int as n from alerts where call_id = ${call.callId}`);
    expect(all.rows[0]?.n).toBe(1);
  });

  it('suppresses an open alert whose dedupe key is open or acknowledged, with no delivery; resolving frees the key', async () => {
    const call = await newCall();
    const [a1] = await insertAlerts(suite.database.db, call, [decision(call, 3)], TARGETS);
    const [a2] = await insertAlerts(suite.database.db, call, [decision(call, 5)], TARGETS);
    expect(a2).toMatchObject({ status: 'suppressed', suppressedReason: 'dedupe' });
    expect(await deliveryCount(a2!.alertId)).toBe(0);

    await store.transition(a1!.alertId, 'acknowledge', 'sup-1', new Date());
    const [a3] = await insertAlerts(suite.database.db, call, [decision(call, 6)], TARGETS);
    expect(a3).toMatchObject({ status: 'suppressed', suppressedReason: 'dedupe' });

    // another severity is another key
    const [crit] = await insertAlerts(suite.database.db, call, [decision(call, 7, { severity: 'critical', reason: 'escalation-keyword' })], TARGETS);
    expect(crit).toMatchObject({ status: 'open', severity: 'critical' });

    await store.transition(a1!.alertId, 'resolve', 'sup-1', new Date());
    const [a4] = await insertAlerts(suite.database.db, call, [decision(call, 8)], TARGETS);
    expect(a4).toMatchObject({ status: 'open', suppressedReason: null });
    expect(await deliveryCount(a4!.alertId)).toBe(2);
  });

  it('dedupes within one batch and keeps suppressed decisions (cooldown) without deliveries', async () => {
    const call = await newCall();
    const out = await insertAlerts(
      suite.database.db,
      call,
      [decision(call, 2), decision(call, 3), decision(call, 4, { status: 'suppressed', suppressedReason: 'cooldown' })],
      TARGETS,
    );
    expect(out.map((a) => [a.triggerSeq, a.status, a.suppressedReason])).toEqual([
      [2, 'open', null],
      [3, 'suppressed', 'dedupe'],
      [4, 'suppressed', 'cooldown'],
    ]);
    expect(await deliveryCount(out[1]!.alertId)).toBe(0);
    expect(await deliveryCount(out[2]!.alertId)).toBe(0);
  });

  it('rolls back the whole batch, deliveries included, when one decision is invalid', async () => {
    const call = await newCall();
    const bad = decision(call, 4, { status: 'suppressed', suppressedReason: null });
    await expect(insertAlerts(suite.database.db, call, [decision(call, 2), bad], TARGETS)).rejects.toThrow();
    const n = await suite.database.db.execute<{ n: number }>(sql`select count(*)::int as n from alerts where call_id = ${call.callId}`);
    expect(n.rows[0]?.n).toBe(0);
  });

  it('stores a concurrent duplicate as suppressed (dedupe) when another writer opened the key first', async () => {
    const call = await newCall();
    const other = new pg.Client({ connectionString: suite.testDb.url });
    await other.connect();
    try {
      // another process inserts an open alert with the same key and holds its transaction open
      await other.query('BEGIN');
      await other.query(
        `INSERT INTO alerts (tenant_id, call_id, call_started_at, rule_id, rule_version, role, severity, reason,
           dedupe_key, evidence, trigger_role, trigger_seq, trigger_end_ms)
         VALUES ('default', $1, $2, 'customer-negative', 1, 'customer', 'warning', 'share', $3, '[]', 'customer', 1, 1000)`,
        [call.callId, T0, `${call.callId}:customer-negative:warning`],
      );
      const pending = insertAlerts(suite.database.db, call, [decision(call, 9)], TARGETS);
      // our insert cannot see the uncommitted row, so it waits on the unique index
      const deadline = Date.now() + 10_000;
      for (;;) {
        const waiting = await other.query(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        );
        if ((waiting.rows[0] as { n: number }).n > 0) break;
        if (Date.now() > deadline) throw new Error('insert never blocked');
        await new Promise((r) => setTimeout(r, 10));
      }
      await other.query('COMMIT');
      const [row] = await pending;
      expect(row).toMatchObject({ status: 'suppressed', suppressedReason: 'dedupe', triggerSeq: 9 });
      expect(await deliveryCount(row!.alertId)).toBe(0);
    } finally {
      await other.end();
    }
  });

  it('runs inside withCallLock and commits with it', async () => {
    const call = await newCall();
    const out = await withCallLock(suite.database.db, call.callId, (tx) => insertAlerts(tx, call, [decision(call, 2)], TARGETS));
    expect(await store.getAlert(out[0]!.alertId)).toMatchObject({ status: 'open' });
    await expect(
      withCallLock(suite.database.db, call.callId, async (tx) => {
        await insertAlerts(tx, call, [decision(call, 3, { severity: 'critical' })], TARGETS);
        throw new Error('later step failed');
      }),
    ).rejects.toThrow('later step failed');
    expect((await store.listOpenAlerts({ limit: 1000 })).filter((a) => a.callId === call.callId)).toHaveLength(1);
  });
});

describe('AlertStore', () => {
  it('open → acknowledged → resolved; other moves are invalid and name the status', async () => {
    const call = await newCall();
    const [a] = await insertAlerts(suite.database.db, call, [decision(call, 2)], []);
    const id = a!.alertId;
    const at = new Date(Date.UTC(2025, 4, 6, 8));
    const ack = await store.transition(id, 'acknowledge', 'sup-1', at);
    expect(ack).toMatchObject({ ok: true, alert: { status: 'acknowledged', ackedBy: 'sup-1', ackedAt: at } });
    expect(await store.transition(id, 'acknowledge', 'sup-2', at)).toEqual({ ok: false, error: 'invalid-transition', status: 'acknowledged' });
    const res = await store.transition(id, 'resolve', 'sup-2', at);
    expect(res).toMatchObject({ ok: true, alert: { status: 'resolved', resolvedBy: 'sup-2', ackedBy: 'sup-1' } });
    expect(await store.transition(id, 'resolve', 'sup-2', at)).toEqual({ ok: false, error: 'invalid-transition', status: 'resolved' });
    expect(await store.transition(id, 'acknowledge', 'sup-2', at)).toEqual({ ok: false, error: 'invalid-transition', status: 'resolved' });

    const [b] = await insertAlerts(suite.database.db, call, [decision(call, 3)], []);
    expect(await store.transition(b!.alertId, 'resolve', 'sup-1', at)).toMatchObject({ ok: true, alert: { status: 'resolved', ackedAt: null } });

    const [s] = await insertAlerts(suite.database.db, call, [decision(call, 4, { status: 'suppressed', suppressedReason: 'cap' })], []);
    expect(await store.transition(s!.alertId, 'acknowledge', 'x', at)).toEqual({ ok: false, error: 'invalid-transition', status: 'suppressed' });
    expect(await store.transition(s!.alertId, 'resolve', 'x', at)).toEqual({ ok: false, error: 'invalid-transition', status: 'suppressed' });

    expect(await store.transition(randomUUID(), 'acknowledge', 'x', at)).toEqual({ ok: false, error: 'not-found' });
    expect(await store.transition('not-a-uuid', 'resolve', 'x', at)).toEqual({ ok: false, error: 'not-found' });
    expect(await store.getAlert('not-a-uuid')).toBeUndefined();
  });

  it('feedback on any non-suppressed alert, last one wins; refused on suppressed', async () => {
    const call = await newCall();
    const [a, s] = await insertAlerts(
      suite.database.db,
      call,
      [decision(call, 2), decision(call, 3, { status: 'suppressed', suppressedReason: 'cooldown' })],
      [],
    );
    const t1 = new Date(Date.UTC(2025, 4, 6, 9));
    expect(await store.setFeedback(a!.alertId, 'false_positive', 'sup-1', t1)).toMatchObject({
      ok: true,
      alert: { feedback: 'false_positive', feedbackBy: 'sup-1', feedbackAt: t1, status: 'open' },
    });
    await store.transition(a!.alertId, 'resolve', 'sup-1', t1);
    expect(await store.setFeedback(a!.alertId, 'true_positive', 'sup-2', t1)).toMatchObject({
      ok: true,
      alert: { feedback: 'true_positive', feedbackBy: 'sup-2', status: 'resolved' },
    });
    expect(await store.setFeedback(s!.alertId, 'true_positive', 'sup-2', t1)).toEqual({
      ok: false,
      error: 'invalid-transition',
      status: 'suppressed',
    });
    expect(await store.setFeedback(randomUUID(), 'not_actionable', 'x', t1)).toEqual({ ok: false, error: 'not-found' });
  });

  it('recordDelivery counts attempts, sets first_delivered_at once, and a final failure fails only what was not delivered', async () => {
    const call = await newCall();
    const [a] = await insertAlerts(suite.database.db, call, [decision(call, 2)], TARGETS);
    const id = a!.alertId;
    const t1 = new Date(Date.UTC(2025, 4, 6, 9, 0, 0, 100));
    const t2 = new Date(t1.getTime() + 500);
    const t3 = new Date(t1.getTime() + 900);

    await store.recordDelivery(id, 'webhook', 'https://hooks.example/a', { ok: false, at: t1, error: 'HTTP 503', final: false });
    let d = (await store.listDeliveries(id)).find((x) => x.channel === 'webhook')!;
    expect(d).toMatchObject({ status: 'pending', attempts: 1, lastError: 'HTTP 503', deliveredAt: null });
    expect((await store.getAlert(id))!.firstDeliveredAt).toBeNull();

    await store.recordDelivery(id, 'webhook', 'https://hooks.example/a', { ok: true, at: t2 });
    d = (await store.listDeliveries(id)).find((x) => x.channel === 'webhook')!;
    expect(d).toMatchObject({ status: 'delivered', attempts: 2, lastError: null, deliveredAt: t2 });
    expect((await store.getAlert(id))!.firstDeliveredAt).toEqual(t2);

    await store.recordDelivery(id, 'supervisor', 'supervisor', { ok: true, at: t3 });
    await store.recordDelivery(id, 'webhook', 'https://hooks.example/a', { ok: false, at: t3, error: 'late', final: true });
    const all = await store.listDeliveries(id);
    expect(all.map((x) => [x.channel, x.status, x.attempts, x.deliveredAt?.getTime()])).toEqual([
      ['supervisor', 'delivered', 1, t3.getTime()],
      ['webhook', 'delivered', 3, t2.getTime()],
    ]);
    expect((await store.getAlert(id))!.firstDeliveredAt).toEqual(t2);

    // a target without an outbox row gets one; a final failure marks it failed
    await store.recordDelivery(id, 'redis', 'callscribe:alerts', { ok: false, at: t3, error: 'ECONNREFUSED', final: true });
    expect((await store.listDeliveries(id)).find((x) => x.channel === 'redis')).toMatchObject({
      status: 'failed',
      attempts: 1,
      lastError: 'ECONNREFUSED',
    });
    const next = await suite.database.db.execute<{ channel: string; next_attempt_at: Date | null }>(
      sql`select channel, next_attempt_at from alert_deliveries where alert_id = ${id} order by channel`,
    );
    expect(next.rows.every((r) => r.next_attempt_at === null)).toBe(true);
  });

  it('listPendingDeliveries: pending rows created before the cut-off, oldest first, bounded', async () => {
    const call = await newCall();
    const [a] = await insertAlerts(suite.database.db, call, [decision(call, 2)], TARGETS);
    const [b] = await insertAlerts(suite.database.db, call, [decision(call, 3, { severity: 'critical' })], TARGETS);
    await suite.database.db.execute(sql`update alert_deliveries set created_at = ${new Date(Date.UTC(2020, 0, 1, 0, 0, 1))} where alert_id = ${a!.alertId}`);
    await suite.database.db.execute(sql`update alert_deliveries set created_at = ${new Date(Date.UTC(2020, 0, 1, 0, 0, 0))} where alert_id = ${b!.alertId} and channel = 'webhook'`);
    await store.recordDelivery(a!.alertId, 'supervisor', 'supervisor', { ok: true, at: new Date() });
    const cutoff = new Date(Date.UTC(2020, 0, 2));
    const pending = await store.listPendingDeliveries(cutoff, 10);
    expect(pending.map((p) => [p.alertId, p.channel])).toEqual([
      [b!.alertId, 'webhook'],
      [a!.alertId, 'webhook'],
    ]);
    expect(await store.listPendingDeliveries(cutoff, 1)).toHaveLength(1);
    expect(await store.listPendingDeliveries(new Date(Date.UTC(2020, 0, 1, 0, 0, 0)), 10)).toEqual([]);
  });

  it('listOpenAlerts: open and acknowledged, newest first, per tenant, bounded', async () => {
    const tenant = `t-${randomUUID()}`;
    const c1 = await newCall(tenant);
    const c2 = await newCall(tenant);
    const [x] = await insertAlerts(suite.database.db, c1, [decision(c1, 2)], []);
    const [y] = await insertAlerts(suite.database.db, c2, [decision(c2, 2)], []);
    const [z] = await insertAlerts(suite.database.db, c2, [decision(c2, 3, { severity: 'critical' })], []);
    await insertAlerts(suite.database.db, c2, [decision(c2, 4, { status: 'suppressed', suppressedReason: 'cap' })], []);
    await store.transition(y!.alertId, 'acknowledge', 's', new Date());
    await store.transition(x!.alertId, 'resolve', 's', new Date());
    const open = await store.listOpenAlerts({ tenantId: tenant });
    expect(open.map((a) => a.alertId)).toEqual([z!.alertId, y!.alertId]);
    expect(await store.listOpenAlerts({ tenantId: tenant, limit: 1 })).toHaveLength(1);
    expect(await store.listOpenAlerts({ tenantId: 'nobody' })).toEqual([]);
    expect((await store.listAlertsByStatus('resolved', { tenantId: tenant })).map((a) => a.alertId)).toEqual([x!.alertId]);
    expect((await store.listAlertsByStatus('acknowledged', { tenantId: tenant })).map((a) => a.alertId)).toEqual([y!.alertId]);
    const cut = await store.listAlertsByStatus('suppressed', { tenantId: tenant });
    expect(cut.map((a) => a.suppressedReason)).toEqual(['cap']);
  });
});
