/**
 * CallMetrics (src/analytics/metrics.ts) → one `call_metrics` row (docs/schema.md). Pure.
 * Talk ratio columns hold each role's share of the total talk time (the two add up to 1);
 * the share of the call duration is in details.talkRatioOfDuration.
 */
import type { CallMetrics } from '../analytics/metrics.js';
import type { Severity } from '../analytics/types.js';
import type { Role } from '../core/types.js';
import type { CallMetricsInput } from '../db/repositories/analytics.js';
import type { CallRow } from '../db/schema.js';

const worstValence = (valences: ReadonlyArray<-1 | 0 | 1 | null>): number | null => {
  const v = valences.filter((x): x is -1 | 0 | 1 => x !== null);
  return v.length === 0 ? null : Math.min(...v);
};

export function buildCallMetricsRow(
  call: CallRow,
  m: CallMetrics,
  watermark: { utteranceCount: number; lastUtteranceAt: Date | null },
  extra: {
    readonly customerValences: ReadonlyArray<-1 | 0 | 1 | null>;
    readonly ruleHitCount: number;
    readonly categoryIds: readonly string[];
    readonly alertCount: number;
    readonly maxAlertSeverity: Severity | null;
  },
): CallMetricsInput {
  const { agent, customer } = m.roles;
  const round = (n: number | null) => (n === null ? null : Math.round(n));
  const quarters = (role: Role) => m.roles[role].quarters.map((q) => ({ ...q }));
  return {
    callId: call.id,
    tenantId: call.tenantId,
    agentId: call.agentId,
    queueId: call.queueId,
    callStartedAt: call.startedAt,
    durationMs: round(m.durationMs),
    utteranceCount: watermark.utteranceCount,
    lastUtteranceAt: watermark.lastUtteranceAt,
    talkMsAgent: Math.round(agent.talkMs),
    talkMsCustomer: Math.round(customer.talkMs),
    talkRatioAgent: agent.talkShare,
    talkRatioCustomer: customer.talkShare,
    overlapMs: Math.round(m.overlapMs),
    nonTalkMs: Math.round(m.nonTalkMs),
    nonTalkCount: m.nonTalkCount,
    longestSilenceMs: Math.round(m.longestSilenceMs),
    overtalksByAgent: agent.overtalkCount,
    overtalksByCustomer: customer.overtalkCount,
    interruptionsByAgent: agent.interruptionCount,
    interruptionsByCustomer: customer.interruptionCount,
    interruptionMsAgent: Math.round(agent.interruptionMs),
    interruptionMsCustomer: Math.round(customer.interruptionMs),
    cpmAgent: agent.cpm,
    cpmCustomer: customer.cpm,
    uttAgent: agent.utteranceCount,
    uttCustomer: customer.utteranceCount,
    longestMonologueMsAgent: Math.round(agent.longestMonologueMs),
    longestMonologueMsCustomer: Math.round(customer.longestMonologueMs),
    firstAgentResponseMs: round(m.firstAgentResponseMs),
    avgAgentResponseMs: round(m.avgAgentResponseMs),
    maxAgentResponseMs: round(m.maxAgentResponseMs),
    negRatioCustomer: customer.negShare,
    negRatioAgent: agent.negShare,
    posRatioCustomer: customer.posShare,
    posRatioAgent: agent.posShare,
    sentimentCustomer: customer.sentiment,
    sentimentAgent: agent.sentiment,
    sentimentQCustomer: customer.quarters.map((q) => q.score),
    sentimentQAgent: agent.quarters.map((q) => q.score),
    sentimentTrendCustomer: customer.trend,
    recovered: m.recovered,
    worstValenceCustomer: worstValence(extra.customerValences),
    emotionCounts: { customer: { ...customer.emotionCounts }, agent: { ...agent.emotionCounts } },
    details: {
      silences: m.silences.map((s) => ({ startMs: s.startMs, endMs: s.endMs, durationMs: s.durationMs })),
      overtalks: m.overtalks.map((o) => ({ by: o.by, over: o.over, startMs: o.startMs, endMs: o.endMs, overlapMs: o.overlapMs, interruption: o.interruption })),
      quarters: { customer: quarters('customer'), agent: quarters('agent') },
      periodBasis: m.periodBasis,
      options: { ...m.options },
      talkRatioOfDuration: { customer: customer.talkRatioOfDuration, agent: agent.talkRatioOfDuration },
      speechRate: {
        customer: { unit: customer.rateUnit, value: customer.rate },
        agent: { unit: agent.rateUnit, value: agent.rate },
      },
      firstAgentSpeechMs: m.firstAgentSpeechMs,
      longestMonologue: { customer: customer.longestMonologue, agent: agent.longestMonologue },
      sentimentTrendAgent: agent.trend,
    },
    ruleHitCount: extra.ruleHitCount,
    categoryIds: [...extra.categoryIds],
    alertCount: extra.alertCount,
    maxAlertSeverity: extra.maxAlertSeverity,
    metricsVersion: m.metricsVersion,
  };
}
