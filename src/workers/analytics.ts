/**
 * QA analytics in the worker: what happens around the persist jobs (docs/analytics.md).
 *
 * - Before an utterance is stored: PII redaction per PII_MODE, search tokens (jieba + bigrams).
 * - After it is stored (live): under the call's advisory lock, the emotion-window rules are
 *   REPLAYED over all the call's stored sentences (src/alerts/engine.ts) and every decision not
 *   yet stored is inserted with its outbox rows in one transaction; live keyword rules record
 *   their hits (and, with `alert: true`, one alert per call and rule). After the commit the new
 *   open alerts are dispatched (Redis pub/sub, supervisor feed, webhooks). The sentence is
 *   published to supervisors watching the call.
 * - When the call ends (and again whenever a late sentence lands after that): call metrics,
 *   post-call rule hits and the agent's daily rollup are recomputed from the stored rows —
 *   replace/upsert, so a re-run gives the same rows.
 * Replaying a job changes nothing: alerts are keyed by (call, rule, version, trigger sentence),
 * live hits by (call, rule, version, role, seq), post-call hits are replaced as a set.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { computeCallMetrics, type CallMetrics, type MetricsOptions } from '../analytics/metrics.js';
import { loadRulesFile, RulesConfigError } from '../analytics/rules/loader.js';
import { ruleSchema, type Rule } from '../analytics/rules/schema.js';
import { evaluateLiveKeyword, evaluateRules, selectRules, type RuleHit } from '../analytics/rules/evaluate.js';
import { SEGMENTER_VERSION, segmentForIndex } from '../analytics/search/segment.js';
import { SEVERITY_RANK, type Severity } from '../analytics/types.js';
import type { AlertDispatcher } from '../alerts/delivery/dispatcher.js';
import { callEndedEvent, callStartedEvent, utteranceEvent } from '../alerts/delivery/events.js';
import type { EventPublisher } from '../alerts/delivery/publisher.js';
import { parseEmotionWindowConfig } from '../alerts/emotion-config.js';
import { evaluateEmotionRule } from '../alerts/engine.js';
import type { AlertRecord, DeliveryChannel } from '../alerts/store.js';
import { systemClock, type Clock } from '../core/clock.js';
import { errorMessage } from '../core/errors.js';
import type { Utterance } from '../core/types.js';
import type { Database, DbExecutor } from '../db/client.js';
import { agentDayOf, listAnalyticsUtterances, recomputeAgentDaily, upsertCallMetrics, utteranceWatermark, withCallLock } from '../db/repositories/analytics.js';
import { insertAlerts, type NewAlert } from '../db/repositories/alerts.js';
import { alerts } from '../db/schema.js';
import { and, eq, ne } from 'drizzle-orm';
import { getCall } from '../db/repositories/calls.js';
import { insertLiveRuleHits, listEnabledRules, listRuleHits, replacePostcallRuleHits, syncRulesFromFile, toRuleFileEntry, type RuleDefinition } from '../db/repositories/rules.js';
import type { UtteranceExtras } from '../db/repositories/utterances.js';
import { countSpokenChars } from '../utterance/char-count.js';
import { redactPii, type PiiMode } from '../utterance/pii.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { CallEndJob, CallStartJob, UtteranceJob } from '../queue/jobs.js';
import { buildCallMetricsRow } from './metrics-row.js';

export interface AnalyticsOptions {
  readonly piiMode: PiiMode;
  readonly metricsOptions: Partial<MetricsOptions>;
  readonly timeZone: string;
  /** Outbox rows written with every open alert. */
  readonly deliveryTargets: ReadonlyArray<{ readonly channel: DeliveryChannel; readonly target: string }>;
  /** How long the rule list of a tenant is cached (rules are editable by SQL). Default 15 s. */
  readonly rulesCacheMs?: number;
}

export interface AnalyticsDeps {
  readonly database: Database;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly dispatcher: AlertDispatcher | null;
  readonly publisher: EventPublisher | null;
  readonly options: AnalyticsOptions;
}

/** What the persist worker stores for a sentence: the (redacted) text plus the extras. */
export function prepareUtterance(u: Utterance, mode: PiiMode): { text: string; extras: UtteranceExtras } {
  const redaction = redactPii(u.text);
  const piiTypes = [...new Set(redaction.findings.map((f) => f.type))].sort();
  const redacted = mode !== 'keep' && redaction.findings.length > 0;
  const text = redacted ? redaction.text : u.text;
  return {
    text,
    extras: {
      seg: segmentForIndex(text),
      segVersion: SEGMENTER_VERSION,
      piiRedacted: redacted,
      piiTypes,
      // CPM counts what was said, not the [PHONE] token that replaced it
      charCount: countSpokenChars(u.text),
      originalText: mode === 'both' && redacted ? u.text : null,
    },
  };
}

/**
 * Reads RULES_FILE (validated: rule schema plus each emotion_window config) into rule
 * definitions with the config as written in the file, ready for the rules table.
 */
export function loadRuleDefinitions(path: string): RuleDefinition[] {
  const set = loadRulesFile(path);
  const raw = (parseYaml(readFileSync(path, 'utf8')) as { rules?: Array<{ config?: unknown }> }).rules ?? [];
  return set.rules.map((r, i) => {
    if (r.kind === 'emotion_window') {
      try {
        parseEmotionWindowConfig(r.config);
      } catch (err) {
        throw new RulesConfigError([`${path}: rules.${i}.config: ${errorMessage(err)}`]);
      }
    }
    return {
      id: r.id,
      version: r.version,
      tenant: r.tenant,
      name: r.name,
      kind: r.kind,
      scope: r.scope,
      role: r.role,
      severity: r.severity,
      alert: r.alert,
      enabled: r.enabled,
      description: r.description,
      config: raw[i]?.config ?? {},
    };
  });
}

export async function syncRules(db: DbExecutor, path: string, logger: Logger, defs = loadRuleDefinitions(path)): Promise<void> {
  const result = await syncRulesFromFile(db, defs);
  logger.info({ file: path, inserted: result.inserted.length, unchanged: result.unchanged.length }, 'rules loaded');
  for (const c of result.conflicts) {
    logger.warn({ code: 'ERR_RULES_CONFLICT', rule: c }, 'a stored rule version differs from the file: bump its version in the file');
  }
}

/**
 * Start-up rule sync that never blocks start-up on Postgres: the file is validated at once (a
 * bad file stops start-up, ERR_CONFIG_RULES), the database write is retried every `retryMs`
 * until it succeeds (Postgres may be restarting; /readyz says so meanwhile). Returns a stop function.
 */
export function startRuleSync(db: DbExecutor, path: string, logger: Logger, retryMs = 5000): () => void {
  const defs = loadRuleDefinitions(path);
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const attempt = (): void => {
    syncRules(db, path, logger, defs).catch((err: unknown) => {
      if (stopped) return;
      logger.warn({ code: 'ERR_RULES_SYNC', err: errorMessage(err) }, 'rules not loaded into Postgres yet; retrying');
      timer = setTimeout(attempt, retryMs);
      timer.unref();
    });
  };
  attempt();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}

export interface CallAnalytics {
  onCallStart(job: CallStartJob): Promise<void>;
  /** After the utterance row is written (or found already written). */
  onUtterance(job: UtteranceJob, storedText: string, inserted: boolean): Promise<void>;
  onCallEnd(job: CallEndJob): Promise<void>;
  /** Recomputes the call's post-call analytics (idempotent). */
  postcall(callId: string): Promise<CallMetrics | null>;
}

export function createCallAnalytics(deps: AnalyticsDeps): CallAnalytics {
  const { database, metrics, logger, options } = deps;
  const clock = deps.clock ?? systemClock;
  const db = database.db;
  const cacheMs = options.rulesCacheMs ?? 15_000;
  const cache = new Map<string, { at: number; rules: Rule[] }>();

  const rulesFor = async (tenantId: string): Promise<Rule[]> => {
    const hit = cache.get(tenantId);
    if (hit && clock.now() - hit.at < cacheMs) return hit.rules;
    const rows = await listEnabledRules(db, tenantId);
    const rules: Rule[] = [];
    for (const row of rows) {
      const parsed = ruleSchema.safeParse(toRuleFileEntry(row));
      if (!parsed.success) {
        logger.warn({ code: 'ERR_RULES_INVALID_ROW', rule: row.ruleId, version: row.version }, 'stored rule is invalid; ignored');
        continue;
      }
      rules.push(parsed.data);
    }
    // an empty list is not cached: right after start the file may still be on its way in
    if (rules.length > 0) cache.set(tenantId, { at: clock.now(), rules });
    return rules;
  };

  const publish = (event: Parameters<EventPublisher['publish']>[0]): void => {
    if (!deps.publisher) return;
    deps.publisher.publish(event).catch((err: unknown) => {
      logger.debug({ code: 'ERR_EVENTS_PUBLISH', err: errorMessage(err) }, 'live event not published');
    });
  };

  /** Live rules for the new sentence; also says whether the call had already ended (read under the lock). */
  const live = async (job: UtteranceJob): Promise<{ alerts: AlertRecord[]; callEnded: boolean }> => {
    const { callId } = job;
    return withCallLock(db, callId, async (tx) => {
      const call = await getCall(tx, callId);
      if (!call) return { alerts: [], callEnded: false };
      const callEnded = call.status !== 'active';
      const rules = selectRules(await rulesFor(call.tenantId), { tenant: call.tenantId, phase: 'realtime' });
      if (rules.length === 0) return { alerts: [], callEnded };
      const utts = await listAnalyticsUtterances(tx, callId);
      const byKey = new Map(utts.map((u) => [`${u.role}:${u.seq}`, u]));
      const newAlerts: NewAlert[] = [];
      const finalAt = (role: string, seq: number): Date | null => {
        if (role === job.utterance.role && seq === job.utterance.seq) return new Date(job.utterance.timing.finalReceivedAt);
        return byKey.get(`${role}:${seq}`)?.finalReceivedAt ?? null;
      };
      for (const rule of rules) {
        if (rule.kind !== 'emotion_window' || !rule.alert) continue;
        const config = parseEmotionWindowConfig({ ...(rule.role !== 'any' ? { role: rule.role } : {}), ...rule.config });
        for (const d of evaluateEmotionRule({ id: rule.id, version: rule.version, config }, callId, utts)) {
          newAlerts.push({
            ...d,
            evidence: d.evidence.map((e) => ({ ...e, text: byKey.get(`${e.role}:${e.seq}`)?.text ?? '' })),
            finalReceivedAt: finalAt(d.trigger.role, d.trigger.seq),
          });
        }
      }
      // live keyword rules on the new sentence
      const current = byKey.get(`${job.utterance.role}:${job.utterance.seq}`);
      if (current) {
        const earlier = utts.filter((u) => u.endMs <= current.endMs && u !== current);
        const hits = evaluateLiveKeyword(rules, current, { earlier });
        const keyed = hits.filter((h) => h.role !== null && h.seqFrom !== undefined);
        if (keyed.length > 0) await insertLiveRuleHits(tx, callId, call.startedAt, keyed);
        for (const h of keyed) {
          const rule = rules.find((r) => r.id === h.ruleId && r.version === h.ruleVersion);
          if (!rule?.alert || h.role === null) continue;
          const severity = h.severity;
          newAlerts.push({
            ruleId: h.ruleId,
            ruleVersion: h.ruleVersion,
            role: h.role,
            severity,
            status: 'open',
            suppressedReason: null,
            reason: 'keyword',
            dedupeKey: `${callId}:${h.ruleId}:${severity}`,
            trigger: { role: current.role, seq: current.seq, endMs: current.endMs },
            evidence: h.evidence.map((e) => ({ ...e, text: byKey.get(`${e.role}:${e.seq}`)?.text ?? '' })),
            finalReceivedAt: finalAt(current.role, current.seq),
          });
        }
      }
      if (newAlerts.length === 0) return { alerts: [], callEnded };
      const inserted = await insertAlerts(
        tx,
        { callId, callStartedAt: call.startedAt, tenantId: call.tenantId, agentId: call.agentId, queueId: call.queueId },
        newAlerts,
        options.deliveryTargets,
      );
      for (const a of inserted) metrics.alertsRaised.inc({ severity: a.severity, status: a.status });
      return { alerts: inserted, callEnded };
    });
  };

  const postcall = async (callId: string): Promise<CallMetrics | null> => {
    return withCallLock(db, callId, async (tx) => {
      const call = await getCall(tx, callId);
      if (!call || call.status === 'active') return null;
      const utts = await listAnalyticsUtterances(tx, callId);
      const durationMs = call.durationMs ?? Math.max(0, ...utts.map((u) => u.endMs));
      const m = computeCallMetrics(utts, options.metricsOptions, { durationMs });
      // keyword rules scoped `both` already recorded their hits live, sentence by sentence
      const rules = selectRules(await rulesFor(call.tenantId), { tenant: call.tenantId, phase: 'postcall' }).filter(
        (r) => !(r.kind === 'keyword' && r.scope === 'both'),
      );
      const hits: RuleHit[] = evaluateRules(rules, {
        utterances: utts,
        durationMs,
        silences: m.silences,
        overtalks: m.overtalks,
      });
      await replacePostcallRuleHits(tx, callId, call.startedAt, hits);
      const allHits = await listRuleHits(tx, callId);
      const raised = await tx
        .select({ severity: alerts.severity })
        .from(alerts)
        .where(and(eq(alerts.callId, callId), ne(alerts.status, 'suppressed')));
      const worst = raised.reduce<Severity | null>((w, x) => (w === null || SEVERITY_RANK[x.severity] > SEVERITY_RANK[w] ? x.severity : w), null);
      await upsertCallMetrics(
        tx,
        buildCallMetricsRow(call, m, utteranceWatermark(utts), {
          customerValences: utts.filter((u) => u.role === 'customer').map((u) => u.valence),
          ruleHitCount: allHits.length,
          categoryIds: [...new Set(allHits.map((h) => h.ruleId))].sort(),
          alertCount: raised.length,
          maxAlertSeverity: worst,
        }),
      );
      if (call.agentId) {
        const day = agentDayOf(call.startedAt, options.timeZone);
        await recomputeAgentDaily(tx, { tenantId: call.tenantId, day, agentId: call.agentId }, options.timeZone);
      }
      return m;
    });
  };

  return {
    async onCallStart(job) {
      publish(
        callStartedEvent({
          callId: job.callId,
          tenantId: job.tenantId,
          source: job.source,
          startedAt: job.startedAt,
          roles: job.roles,
          models: job.models,
          ...(job.agentId ? { agentId: job.agentId } : {}),
        }),
      );
    },

    async onUtterance(job, storedText, inserted) {
      const u = job.utterance;
      if (inserted) {
        publish(
          utteranceEvent({
            callId: job.callId,
            role: u.role,
            seq: u.seq,
            startMs: Math.round(u.startMs),
            endMs: Math.round(u.endMs),
            text: storedText,
            emotion: u.emotion ? { raw: u.emotion.raw, valence: u.emotion.valence, confidence: u.emotion.confidence } : null,
          }),
        );
      }
      let alerts: AlertRecord[];
      let callEnded: boolean;
      try {
        ({ alerts, callEnded } = await live(job));
        metrics.analyticsRuns.inc({ kind: 'live', outcome: 'ok' });
      } catch (err) {
        metrics.analyticsRuns.inc({ kind: 'live', outcome: 'error' });
        throw err;
      }
      const open = alerts.filter((a) => a.status === 'open');
      if (open.length > 0) {
        logger.info(
          { code: 'ALERT_RAISED', callId: job.callId, alerts: open.map((a) => ({ id: a.alertId, rule: a.ruleId, severity: a.severity })) },
          'alert raised',
        );
        if (deps.dispatcher) await deps.dispatcher.dispatch(open);
      }
      // a sentence that lands after the call ended refreshes the post-call analytics
      if (callEnded) await postcall(job.callId);
    },

    async onCallEnd(job) {
      publish(callEndedEvent({ callId: job.callId, endedAt: job.endedAt, endReason: job.endReason, durationMs: job.durationMs }));
      try {
        await postcall(job.callId);
        metrics.analyticsRuns.inc({ kind: 'postcall', outcome: 'ok' });
      } catch (err) {
        metrics.analyticsRuns.inc({ kind: 'postcall', outcome: 'error' });
        throw err;
      }
    },

    postcall,
  };
}

