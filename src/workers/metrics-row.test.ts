/** CallMetrics → call_metrics row, on the zh-billing-complaint script (values hand-computed in metrics.test.ts). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { computeCallMetrics, METRICS_VERSION } from '../analytics/metrics.js';
import type { AnalyticsUtterance } from '../analytics/types.js';
import { paraformerValence } from '../asr/emotion.js';
import type { Role } from '../core/types.js';
import type { CallRow } from '../db/schema.js';
import { fixtureScriptSchema } from '../simulator/fixture-call.js';
import { countSpokenChars } from '../utterance/char-count.js';
import { buildCallMetricsRow } from './metrics-row.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const script = fixtureScriptSchema.parse(
  JSON.parse(readFileSync(path.resolve(HERE, '../../../shared/fixtures/calls/zh-billing-complaint/script.json'), 'utf8')),
);

const seq: Record<Role, number> = { agent: 0, customer: 0 };
const utts: AnalyticsUtterance[] = script.lines.map((l) => {
  const p = l.emotion?.paraformer;
  if (!p) throw new Error('line without emotion');
  return {
    role: l.role,
    seq: ++seq[l.role],
    startMs: l.startMs,
    endMs: l.endMs,
    text: l.text,
    charCount: countSpokenChars(l.text),
    words: [],
    emotionRaw: p.tag,
    emotionConfidence: p.confidence,
    valence: paraformerValence(p.tag),
    arousal: null,
    model: 'paraformer-realtime-8k-v2',
  };
});

const call = {
  id: '00000000-0000-4000-8000-000000000001',
  tenantId: 'acme',
  agentId: '1025',
  queueId: 'billing',
  startedAt: new Date('2026-11-21T08:00:00Z'),
} as CallRow;

describe('buildCallMetricsRow', () => {
  it('maps the zh-billing-complaint metrics onto the call_metrics columns', () => {
    const m = computeCallMetrics(utts, {}, { durationMs: 65688 });
    const row = buildCallMetricsRow(call, m, { utteranceCount: 12, lastUtteranceAt: null }, {
      customerValences: utts.filter((u) => u.role === 'customer').map((u) => u.valence),
      ruleHitCount: 3,
      categoryIds: ['b', 'a'],
      alertCount: 1,
      maxAlertSeverity: 'critical',
    });
    expect(row).toMatchObject({
      callId: call.id,
      tenantId: 'acme',
      agentId: '1025',
      durationMs: 65688,
      talkMsAgent: 34214,
      talkMsCustomer: 17974,
      overlapMs: 700,
      nonTalkMs: 6000,
      overtalksByAgent: 1,
      interruptionsByAgent: 0,
      longestMonologueMsAgent: 9578,
      avgAgentResponseMs: 2025,
      uttCustomer: 6,
      negRatioCustomer: 0.5,
      recovered: false,
      sentimentTrendCustomer: 'FLAT',
      worstValenceCustomer: -1,
      emotionCounts: { customer: { negative: 3, neutral: 3 }, agent: { neutral: 4, positive: 2 } },
      ruleHitCount: 3,
      categoryIds: ['b', 'a'],
      alertCount: 1,
      maxAlertSeverity: 'critical',
      metricsVersion: METRICS_VERSION,
    });
    expect(row.talkRatioAgent! + row.talkRatioCustomer!).toBeCloseTo(1, 9);
    expect(row.sentimentQCustomer).toHaveLength(4);
    expect(row.details?.silences).toContainEqual({ startMs: 26941, endMs: 32941, durationMs: 6000 });
    expect(row.details?.overtalks).toEqual([{ by: 'agent', over: 'customer', startMs: 46025, endMs: 46725, overlapMs: 700, interruption: false }]);
    expect(row.details?.quarters?.customer?.map((q) => q.negShare)).toEqual([0, 0, 1, 0.5]);
  });
});
