/** Rules as data and rule hits against the local Postgres (own database). */
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../../../test/support/postgres.js';
import type { RuleHit } from '../../analytics/rules/evaluate.js';
import { ruleSchema, type Rule } from '../../analytics/rules/schema.js';
import { sqlState } from '../errors.js';
import { ensureCallRow } from './calls.js';
import {
  insertLiveRuleHits,
  listEnabledRules,
  listRuleHits,
  replacePostcallRuleHits,
  syncRulesFromFile,
  toRuleFileEntry,
  type NewRuleHit,
  type RuleDefinition,
} from './rules.js';

/** Compile-time contract checks: the evaluator's hits and the loader's rules fit as they are. */
const _hitFits = (h: RuleHit): NewRuleHit => h;
const _ruleFits = (r: Rule): RuleDefinition => r;

const suite = useTestDatabase({ max: 2 });

const T0 = new Date(Date.UTC(2025, 4, 6, 7, 8, 9, 10));

function def(id: string, version: number, overrides: Partial<RuleDefinition> = {}): RuleDefinition {
  return {
    id,
    version,
    tenant: null,
    name: `rule ${id}`,
    kind: 'keyword',
    scope: 'both',
    role: 'customer',
    severity: 'warning',
    alert: false,
    enabled: true,
    description: null,
    config: { phrases: ['投诉', '12315'], match: 'any', window: { first: { ms: 60000 } } },
    ...overrides,
  };
}

describe('syncRulesFromFile', () => {
  it('inserts new (id, version) pairs once, never overwrites, and reports conflicts and rules gone from the file', async () => {
    const p = `s${randomUUID().slice(0, 8)}`;
    const file = [def(`${p}.a`, 1), def(`${p}.a`, 2, { severity: 'critical' }), def(`${p}.b`, 1, { tenant: 'acme' })];
    const first = await syncRulesFromFile(suite.database.db, file);
    expect(first.inserted).toEqual([
      { ruleId: `${p}.a`, version: 1 },
      { ruleId: `${p}.a`, version: 2 },
      { ruleId: `${p}.b`, version: 1 },
    ]);
    expect(first.unchanged).toEqual([]);
    expect(first.conflicts).toEqual([]);

    const again = await syncRulesFromFile(suite.database.db, file);
    expect(again.inserted).toEqual([]);
    expect(again.unchanged).toHaveLength(3);
    expect(again.conflicts).toEqual([]);

    // an operator disables a.2 in SQL: not a conflict, and the file does not switch it back on
    await suite.database.db.execute(sql`update rules set enabled = false where rule_id = ${`${p}.a`} and version = 2`);
    // the file edits a.1 in place (key order differs too) and drops b
    const edited = [
      def(`${p}.a`, 1, { config: { window: { first: { ms: 60000 } }, match: 'any', phrases: ['投诉'] } }),
      def(`${p}.a`, 2, { severity: 'critical' }),
    ];
    const third = await syncRulesFromFile(suite.database.db, edited);
    expect(third.inserted).toEqual([]);
    expect(third.unchanged).toEqual([{ ruleId: `${p}.a`, version: 2 }]);
    expect(third.conflicts).toEqual([{ ruleId: `${p}.a`, version: 1 }]);
    expect(third.notInFile).toContainEqual({ ruleId: `${p}.b`, version: 1 });
    const stored = await suite.database.db.execute<{ version: number; enabled: boolean; config: unknown; source: string }>(
      sql`select version, enabled, config, source from rules where rule_id = ${`${p}.a`} order by version`,
    );
    expect(stored.rows).toEqual([
      { version: 1, enabled: true, config: { phrases: ['投诉', '12315'], match: 'any', window: { first: { ms: 60000 } } }, source: 'file' },
      { version: 2, enabled: false, config: expect.anything(), source: 'file' },
    ]);

    // key order alone is no conflict (jsonb equality)
    const reordered = await syncRulesFromFile(suite.database.db, [
      def(`${p}.a`, 1, { config: { window: { first: { ms: 60000 } }, match: 'any', phrases: ['投诉', '12315'] } }),
    ]);
    expect(reordered.unchanged).toEqual([{ ruleId: `${p}.a`, version: 1 }]);
  });
});

describe('listEnabledRules', () => {
  it('per rule id: the tenant’s own highest enabled version, else the global one', async () => {
    const p = `l${randomUUID().slice(0, 8)}`;
    await syncRulesFromFile(suite.database.db, [
      def(`${p}.x`, 1),
      def(`${p}.x`, 2),
      def(`${p}.x`, 3, { enabled: false }),
      def(`${p}.y`, 1),
      def(`${p}.y`, 5, { tenant: 'acme', severity: 'critical' }),
      def(`${p}.z`, 1, { tenant: 'other' }),
      def(`${p}.off`, 1, { enabled: false }),
    ]);
    // a hand-written version (source defaults to 'sql')
    await suite.database.db.execute(sql`insert into rules (rule_id, version, name, kind, scope, severity, config)
      values (${`${p}.w`}, 1, 'hand', 'silence', 'postcall', 'info', '{"minMs": 20000}')`);
    const pick = async (tenant: string) =>
      (await listEnabledRules(suite.database.db, tenant)).filter((r) => r.ruleId.startsWith(p)).map((r) => `${r.ruleId}@${r.version}:${r.source}`);
    expect(await pick('acme')).toEqual([`${p}.w@1:sql`, `${p}.x@2:file`, `${p}.y@5:file`]);
    expect(await pick('default')).toEqual([`${p}.w@1:sql`, `${p}.x@2:file`, `${p}.y@1:file`]);
    expect(await pick('other')).toEqual([`${p}.w@1:sql`, `${p}.x@2:file`, `${p}.y@1:file`, `${p}.z@1:file`]);
  });

  it('gives rows back in the rule-file shape that ruleSchema validates', async () => {
    const p = `f${randomUUID().slice(0, 8)}`;
    await syncRulesFromFile(suite.database.db, [def(`${p}.k`, 1, { tenant: 'acme', description: '投诉关键词', alert: true })]);
    const row = (await listEnabledRules(suite.database.db, 'acme')).find((r) => r.ruleId === `${p}.k`)!;
    const entry = toRuleFileEntry(row);
    expect(entry).toMatchObject({ id: `${p}.k`, version: 1, tenant: 'acme', alert: true, description: '投诉关键词' });
    const parsed = ruleSchema.safeParse(entry);
    expect(parsed.success).toBe(true);
    expect(parsed.data).toMatchObject({ id: `${p}.k`, kind: 'keyword', tenant: 'acme', alert: true });
  });

  it('the database refuses an unknown scope or severity', async () => {
    const err: unknown = await suite.database.db
      .execute(sql`insert into rules (rule_id, version, name, kind, scope, severity, config) values ('bad', 1, 'b', 'keyword', 'sometimes', 'info', '{}')`)
      .catch((e: unknown) => e);
    expect(sqlState(err)).toBe('23514');
  });
});

describe('rule hits', () => {
  const hit = (ruleId: string, seq: number, extra: Partial<NewRuleHit> = {}): NewRuleHit => ({
    ruleId,
    ruleVersion: 1,
    kind: 'keyword',
    role: 'customer',
    severity: 'warning',
    startMs: seq * 1000,
    endMs: seq * 1000 + 800,
    seqFrom: seq,
    seqTo: seq,
    matched: ['投诉'],
    evidence: [{ role: 'customer', seq, startMs: seq * 1000, endMs: seq * 1000 + 800, charBegin: 2, charEnd: 4 }],
    ...extra,
  });

  async function newCall(): Promise<string> {
    const callId = randomUUID();
    await ensureCallRow(suite.database.db, callId, T0.getTime());
    return callId;
  }

  const shape = (rows: Awaited<ReturnType<typeof listRuleHits>>) =>
    rows.map((r) => [r.source, r.ruleId, r.role, r.seqFrom, r.startMs, r.matched.join('|'), JSON.stringify(r.evidence), JSON.stringify(r.details)]);

  it('a post-call re-run replaces the post-call set and keeps live hits', async () => {
    const callId = await newCall();
    expect(await insertLiveRuleHits(suite.database.db, callId, T0, [hit('kw', 2)])).toEqual({ inserted: 1 });
    const set = [
      hit('kw', 2),
      hit('silence', 0, { kind: 'silence', role: null, seqFrom: null, seqTo: null, matched: [], evidence: [], details: { durationMs: 21000 } }),
    ];
    expect(await replacePostcallRuleHits(suite.database.db, callId, T0, set)).toEqual({ deleted: 0, inserted: 2 });
    const once = shape(await listRuleHits(suite.database.db, callId));
    expect(await replacePostcallRuleHits(suite.database.db, callId, T0, set)).toEqual({ deleted: 2, inserted: 2 });
    const twice = shape(await listRuleHits(suite.database.db, callId));
    expect(twice).toEqual(once);
    expect(twice.filter((r) => r[0] === 'live')).toHaveLength(1);
    expect(twice.find((r) => r[1] === 'silence')?.[7]).toBe('{"durationMs":21000}');

    expect(await replacePostcallRuleHits(suite.database.db, callId, T0, [])).toEqual({ deleted: 2, inserted: 0 });
    expect((await listRuleHits(suite.database.db, callId)).map((r) => r.source)).toEqual(['live']);
  });

  it('live hits are stored once per (call, rule, version, role, seq_from)', async () => {
    const callId = await newCall();
    expect(await insertLiveRuleHits(suite.database.db, callId, T0, [hit('kw', 2), hit('kw', 3)])).toEqual({ inserted: 2 });
    expect(await insertLiveRuleHits(suite.database.db, callId, T0, [hit('kw', 3), hit('kw', 4), hit('kw', 2, { ruleVersion: 2 })])).toEqual({
      inserted: 2,
    });
    expect((await listRuleHits(suite.database.db, callId)).map((r) => `${r.ruleId}@${r.ruleVersion}#${r.seqFrom}`)).toEqual([
      'kw@1#2',
      'kw@2#2',
      'kw@1#3',
      'kw@1#4',
    ]);
    expect((await listRuleHits(suite.database.db, callId))[0]?.callStartedAt).toEqual(T0);
  });

  it('refuses a live hit without role or seqFrom, writing nothing', async () => {
    const callId = await newCall();
    await expect(insertLiveRuleHits(suite.database.db, callId, T0, [hit('kw', 1), hit('kw', 2, { role: null })])).rejects.toMatchObject({
      code: 'ERR_DB_RULE_HIT_KEY',
    });
    expect(await listRuleHits(suite.database.db, callId)).toEqual([]);
  });
});
