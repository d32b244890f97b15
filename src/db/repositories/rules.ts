/**
 * Rules as data (qa-analytics.md §2.3) and their hits.
 *
 * - `rules` rows are versioned and immutable by convention: the rule file only ever adds
 *   (rule_id, version) pairs it has not seen (source 'file'); an existing pair is never
 *   overwritten, so edits made in SQL survive restarts. A pair whose stored content differs
 *   from the file's is reported as a conflict (publish the change as a new version instead).
 * - Rule hits: live hits (keyword rules on one final sentence) are unique per
 *   (call_id, rule_id, rule_version, role, seq_from), so a re-processed sentence adds nothing;
 *   post-call hits are replaced as a set per call in one transaction.
 */
import { and, asc, desc, eq, isNull, or, sql } from 'drizzle-orm';
import type { EvidenceRef, Severity } from '../../analytics/types.js';
import { AppError } from '../../core/errors.js';
import type { Role } from '../../core/types.js';
import type { DbExecutor } from '../client.js';
import { ruleHits, rules, type RuleHitRow, type RuleHitSource, type RuleRow } from '../schema.js';

/**
 * One rule as the file defines it. Field names follow the rule file (src/analytics/rules/schema.ts
 * `Rule`); `config` is stored as given: pass it in the rule-file format, so that a stored row
 * can be validated again with `ruleSchema` (see toRuleFileEntry).
 */
export interface RuleDefinition {
  readonly id: string;
  readonly version: number;
  /** null: every tenant. */
  readonly tenant: string | null;
  readonly name: string;
  readonly kind: string;
  readonly scope: 'realtime' | 'postcall' | 'both';
  readonly role: Role | 'any';
  readonly severity: Severity;
  readonly alert: boolean;
  readonly enabled: boolean;
  readonly description: string | null;
  /** JSON-serialisable kind-specific settings. */
  readonly config: unknown;
}

export interface RuleKey {
  readonly ruleId: string;
  readonly version: number;
}

export interface SyncRulesResult {
  /** New (rule_id, version) pairs written with source 'file'. */
  readonly inserted: RuleKey[];
  /** Pairs already stored with the same content (`enabled` is not compared: it is the database's to change). */
  readonly unchanged: RuleKey[];
  /** Pairs already stored with different content: left as stored; bump the version in the file. */
  readonly conflicts: RuleKey[];
  /** source 'file' pairs stored but no longer in the file: left as they are (disable them in SQL). */
  readonly notInFile: RuleKey[];
}

interface FileRuleRecord {
  rule_id: string;
  version: number;
  tenant_id: string | null;
  name: string;
  kind: string;
  scope: string;
  role: string;
  severity: string;
  is_alert: boolean;
  enabled: boolean;
  config: unknown;
  description: string | null;
}

const RECORD_COLUMNS = sql.raw(`rule_id text, version int, tenant_id text, name text, kind text, scope text,
  role text, severity text, is_alert boolean, enabled boolean, config jsonb, description text`);

const key = (r: { rule_id: string; version: number }): RuleKey => ({ ruleId: r.rule_id, version: Number(r.version) });

/**
 * Loads the rule file's rules into `rules` (one transaction): inserts the (id, version) pairs not
 * stored yet with source 'file', and reports the rest. Never updates or deletes a row.
 */
export async function syncRulesFromFile(db: DbExecutor, defs: readonly RuleDefinition[]): Promise<SyncRulesResult> {
  const records: FileRuleRecord[] = defs.map((d) => ({
    rule_id: d.id,
    version: d.version,
    tenant_id: d.tenant,
    name: d.name,
    kind: d.kind,
    scope: d.scope,
    role: d.role,
    severity: d.severity,
    is_alert: d.alert,
    enabled: d.enabled,
    config: d.config ?? null,
    description: d.description,
  }));
  const payload = JSON.stringify(records);
  return db.transaction(async (tx) => {
    const inserted = await tx.execute<{ rule_id: string; version: number }>(sql`
      INSERT INTO rules (rule_id, version, tenant_id, name, kind, scope, role, severity, is_alert, enabled, config, description, source)
      SELECT f.rule_id, f.version, f.tenant_id, f.name, f.kind, f.scope, f.role, f.severity, f.is_alert, f.enabled,
        f.config, f.description, 'file'
      FROM jsonb_to_recordset(${payload}::jsonb) AS f(${RECORD_COLUMNS})
      ON CONFLICT (rule_id, version) DO NOTHING
      RETURNING rule_id, version`);
    const insertedKeys = new Set(inserted.rows.map((r) => `${r.rule_id}\u0000${r.version}`));
    const compared = await tx.execute<{ rule_id: string; version: number; same: boolean }>(sql`
      SELECT r.rule_id, r.version,
        (r.tenant_id IS NOT DISTINCT FROM f.tenant_id AND r.name = f.name AND r.kind = f.kind AND r.scope = f.scope
          AND r.role = f.role AND r.severity = f.severity AND r.is_alert = f.is_alert AND r.config = f.config
          AND r.description IS NOT DISTINCT FROM f.description) AS same
      FROM rules r
      JOIN jsonb_to_recordset(${payload}::jsonb) AS f(${RECORD_COLUMNS}) ON f.rule_id = r.rule_id AND f.version = r.version
      ORDER BY r.rule_id, r.version`);
    const gone = await tx.execute<{ rule_id: string; version: number }>(sql`
      SELECT r.rule_id, r.version FROM rules r
      WHERE r.source = 'file' AND NOT EXISTS (
        SELECT 1 FROM jsonb_to_recordset(${payload}::jsonb) AS f(${RECORD_COLUMNS})
        WHERE f.rule_id = r.rule_id AND f.version = r.version)
      ORDER BY r.rule_id, r.version`);
    const result: SyncRulesResult = {
      inserted: inserted.rows.map(key),
      unchanged: [],
      conflicts: [],
      notInFile: gone.rows.map(key),
    };
    for (const r of compared.rows) {
      if (insertedKeys.has(`${r.rule_id}\u0000${r.version}`)) continue;
      (r.same ? result.unchanged : result.conflicts).push(key(r));
    }
    return result;
  });
}

/**
 * The rules in force for a tenant: per rule_id, the highest enabled version of the tenant's own
 * rule if it has one, else of the global rule (tenant_id null). Ordered by rule_id.
 */
export async function listEnabledRules(db: DbExecutor, tenantId: string): Promise<RuleRow[]> {
  return db
    .selectDistinctOn([rules.ruleId])
    .from(rules)
    .where(and(eq(rules.enabled, true), or(isNull(rules.tenantId), eq(rules.tenantId, tenantId))))
    .orderBy(asc(rules.ruleId), sql`(${rules.tenantId} IS NULL)`, desc(rules.version));
}

/**
 * A stored rule in the rule-file shape (`{ id, version, name, kind, scope, role, severity,
 * alert, enabled, tenant?, description?, config }`), for validation with
 * `ruleSchema.safeParse(...)` (src/analytics/rules/schema.ts).
 */
export function toRuleFileEntry(row: RuleRow): Record<string, unknown> {
  return {
    id: row.ruleId,
    version: row.version,
    name: row.name,
    kind: row.kind,
    scope: row.scope,
    role: row.role,
    severity: row.severity,
    alert: row.isAlert,
    enabled: row.enabled,
    ...(row.tenantId !== null ? { tenant: row.tenantId } : {}),
    ...(row.description !== null ? { description: row.description } : {}),
    config: row.config,
  };
}

// ---------------------------------------------------------------------------------------------
// Rule hits

/** One hit to store (src/analytics/rules/evaluate.ts `RuleHit` fits as is). */
export interface NewRuleHit {
  readonly ruleId: string;
  readonly ruleVersion: number;
  readonly kind: string;
  /** The role the evidence belongs to; null: both, or call-level. Required for live hits. */
  readonly role: Role | null;
  readonly severity: Severity;
  readonly startMs: number;
  readonly endMs: number;
  /** Required for live hits. */
  readonly seqFrom?: number | null;
  readonly seqTo?: number | null;
  readonly matched: readonly string[];
  readonly evidence: readonly EvidenceRef[];
  readonly details?: Readonly<Record<string, unknown>> | null;
}

function hitRow(callId: string, callStartedAt: Date, hit: NewRuleHit, source: RuleHitSource) {
  return {
    callId,
    callStartedAt,
    ruleId: hit.ruleId,
    ruleVersion: hit.ruleVersion,
    kind: hit.kind,
    role: hit.role,
    severity: hit.severity,
    startMs: Math.round(hit.startMs),
    endMs: Math.round(hit.endMs),
    seqFrom: hit.seqFrom ?? null,
    seqTo: hit.seqTo ?? null,
    matched: [...hit.matched],
    evidence: hit.evidence.map((e) => ({ ...e })),
    details: hit.details ? { ...hit.details } : null,
    source,
  };
}

/**
 * Replaces the call's post-call hits (source 'postcall'; live hits are kept) with `hits`, in
 * one transaction: running the post-call evaluation twice leaves one set.
 */
export async function replacePostcallRuleHits(
  db: DbExecutor,
  callId: string,
  callStartedAt: Date,
  hits: readonly NewRuleHit[],
): Promise<{ deleted: number; inserted: number }> {
  return db.transaction(async (tx) => {
    const deleted = await tx
      .delete(ruleHits)
      .where(and(eq(ruleHits.callId, callId), eq(ruleHits.source, 'postcall')))
      .returning({ id: ruleHits.id });
    if (hits.length === 0) return { deleted: deleted.length, inserted: 0 };
    const inserted = await tx
      .insert(ruleHits)
      .values(hits.map((h) => hitRow(callId, callStartedAt, h, 'postcall')))
      .returning({ id: ruleHits.id });
    return { deleted: deleted.length, inserted: inserted.length };
  });
}

/**
 * Stores live hits; a hit already stored for (call, rule, version, role, seq_from) is skipped.
 * Every live hit needs a role and seqFrom (ERR_DB_RULE_HIT_KEY otherwise, nothing written).
 */
export async function insertLiveRuleHits(
  db: DbExecutor,
  callId: string,
  callStartedAt: Date,
  hits: readonly NewRuleHit[],
): Promise<{ inserted: number }> {
  if (hits.length === 0) return { inserted: 0 };
  const bad = hits.find((h) => h.role === null || h.seqFrom === undefined || h.seqFrom === null);
  if (bad) {
    throw new AppError('ERR_DB_RULE_HIT_KEY', `live rule hit of ${bad.ruleId} v${bad.ruleVersion} lacks role or seqFrom`, {
      category: 'invalid_request',
    });
  }
  const rows = await db
    .insert(ruleHits)
    .values(hits.map((h) => hitRow(callId, callStartedAt, h, 'live')))
    .onConflictDoNothing({
      target: [ruleHits.callId, ruleHits.ruleId, ruleHits.ruleVersion, ruleHits.role, ruleHits.seqFrom],
      where: sql`source = 'live'`,
    })
    .returning({ id: ruleHits.id });
  return { inserted: rows.length };
}

/** A call's hits by start, then rule. */
export async function listRuleHits(db: DbExecutor, callId: string): Promise<RuleHitRow[]> {
  return db
    .select()
    .from(ruleHits)
    .where(eq(ruleHits.callId, callId))
    .orderBy(asc(ruleHits.startMs), asc(ruleHits.ruleId), asc(ruleHits.id));
}
