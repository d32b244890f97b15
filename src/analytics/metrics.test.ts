import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { paraformerValence, qwenValence } from '../asr/emotion.js';
import { isAppError } from '../core/errors.js';
import type { Role } from '../core/types.js';
import { fixtureScriptSchema, type FixtureLine } from '../simulator/fixture-call.js';
import { countSpokenChars } from '../utterance/char-count.js';
import {
  computeCallMetrics,
  type CallMetrics,
} from './metrics.js';
import type { AnalyticsUtterance } from './types.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZH_SCRIPT = path.resolve(HERE, '../../../shared/fixtures/calls/zh-billing-complaint/script.json');
const script = fixtureScriptSchema.parse(JSON.parse(readFileSync(ZH_SCRIPT, 'utf8')));
const DURATION = 65688; // script.durationMs

interface UttInit {
  role: Role;
  seq?: number;
  startMs: number;
  endMs: number;
  text?: string;
  words?: AnalyticsUtterance['words'];
  emotionRaw?: string | null;
  emotionConfidence?: number | null;
  valence?: -1 | 0 | 1 | null;
}

function utt(init: UttInit): AnalyticsUtterance {
  const text = init.text ?? '';
  return {
    role: init.role,
    seq: init.seq ?? 1,
    startMs: init.startMs,
    endMs: init.endMs,
    text,
    charCount: countSpokenChars(text),
    words: init.words ?? [],
    emotionRaw: init.emotionRaw ?? null,
    emotionConfidence: init.emotionConfidence ?? null,
    valence: init.valence ?? null,
    arousal: null,
    model: 'test',
  };
}

/** The fixture lines as stored sentences, with the paraformer or the qwen emotion. */
function fromScript(model: 'paraformer' | 'qwen', lines: readonly FixtureLine[] = script.lines): AnalyticsUtterance[] {
  const seq: Record<Role, number> = { agent: 0, customer: 0 };
  return lines.map((line) => {
    const p = line.emotion?.paraformer;
    const q = line.emotion?.qwen;
    if (p === undefined || q === undefined) throw new Error('fixture line without emotion');
    return utt({
      role: line.role,
      seq: ++seq[line.role],
      startMs: line.startMs,
      endMs: line.endMs,
      text: line.text,
      emotionRaw: model === 'paraformer' ? p.tag : q,
      emotionConfidence: model === 'paraformer' ? p.confidence : null,
      valence: model === 'paraformer' ? paraformerValence(p.tag) : qwenValence(q),
    });
  });
}

/** A fixed permutation (no randomness): odd indices reversed, then even indices. */
function shuffle<T>(xs: readonly T[]): T[] {
  const odd = xs.filter((_, i) => i % 2 === 1).reverse();
  return [...odd, ...xs.filter((_, i) => i % 2 === 0)];
}

const scores = (m: CallMetrics, r: Role) => m.roles[r].quarters.map((q) => q.score);

describe('computeCallMetrics on zh-billing-complaint (paraformer emotions, duration 65688)', () => {
  const m = computeCallMetrics(fromScript('paraformer'), undefined, { durationMs: DURATION });

  it('finds the 6000 ms dead air between line 4 and line 5, and nothing else at 3000 ms', () => {
    // gaps of the union of all speech: leading 0→400 = 400; 700 ×8 (9978→10678, 15552→16252,
    // 23487→24187, 38626→39326, 50957→51657, 54386→55086, 58769→59469, 60687→61387);
    // 26941→32941 = 6000; 43723→44723 = 1000; trailing 64488→65688 = 1200. Only 6000 ≥ 3000.
    expect(m.silences).toEqual([{ startMs: 26941, endMs: 32941, durationMs: 6000 }]);
    expect(m.nonTalkMs).toBe(6000);
    expect(m.nonTalkCount).toBe(1);
    expect(m.longestSilenceMs).toBe(6000);
    expect(m.nonTalkRatio).toBeCloseTo(6000 / 65688, 12);
  });

  it('counts 1000 ms and the trailing 1200 ms as silences at a 1000 ms threshold', () => {
    const m1 = computeCallMetrics(fromScript('paraformer'), { silenceThresholdMs: 1000 }, { durationMs: DURATION });
    expect(m1.silences).toEqual([
      { startMs: 26941, endMs: 32941, durationMs: 6000 },
      { startMs: 43723, endMs: 44723, durationMs: 1000 },
      { startMs: 64488, endMs: 65688, durationMs: 1200 },
    ]);
    expect(m1.nonTalkMs).toBe(8200);
  });

  it('attributes the 700 ms overtalk on line 8 to the agent, not an interruption at 1000 ms', () => {
    // line 7 (customer) 44723–46725, line 8 (agent) starts 46025: overlap 46725 − 46025 = 700
    expect(m.overtalks).toEqual([
      { by: 'agent', over: 'customer', startMs: 46025, endMs: 46725, overlapMs: 700, interruption: false },
    ]);
    expect(m.overlapMs).toBe(700);
    expect(m.roles.agent).toMatchObject({ overtalkCount: 1, overtalkMs: 700, interruptionCount: 0, interruptionMs: 0 });
    expect(m.roles.customer).toMatchObject({ overtalkCount: 0, interruptionCount: 0 });
  });

  it('makes it an interruption with interruptionMinOverlapMs 500', () => {
    const m5 = computeCallMetrics(fromScript('paraformer'), { interruptionMinOverlapMs: 500 }, { durationMs: DURATION });
    expect(m5.overtalks).toEqual([
      { by: 'agent', over: 'customer', startMs: 46025, endMs: 46725, overlapMs: 700, interruption: true },
    ]);
    expect(m5.roles.agent).toMatchObject({ interruptionCount: 1, interruptionMs: 700 });
  });

  it('computes talk time, ratios and CPM per role', () => {
    // agent:    9578 (400–9978) + 7235 + 5685 + 4932 + 3683 + 3101 = 34214 ms
    // customer: 4874 (10678–15552) + 2754 + 4397 + 2002 + 2729 + 1218 = 17974 ms
    // union = 34214 + 17974 − 700 overlap = 51488 = 65688 − 14200 of gaps (see above)
    expect(m.roles.agent.talkMs).toBe(34214);
    expect(m.roles.customer.talkMs).toBe(17974);
    expect(m.talkMs).toBe(51488);
    expect(m.roles.agent.talkShare).toBeCloseTo(34214 / (34214 + 17974), 12);
    expect(m.roles.customer.talkRatioOfDuration).toBeCloseTo(17974 / 65688, 12);
    // agent characters: 您好 2 + 这里是星河通信客服中心 11 + 我是工号1025的客服 11 + 请问有什么可以帮您 9 = 33;
    // 非常抱歉给您带来不便 10 + 请您提供一下手机号码 10 + 我帮您查询 5 = 25; 查到了 3 + 这笔…业务 20 = 23;
    // 先生您别着急 6 + 我马上为您提交退费申请 11 = 17; 3个工作日内会退回到您的账户 14; 不客气 3 + 感谢您的来电 6 + 再见 2 = 11
    // → 33 + 25 + 23 + 17 + 14 + 11 = 123; cpm = 123 / (34214 / 60000) = 7380000 / 34214 = 215.70…
    expect(m.roles.agent.charCount).toBe(123);
    expect(m.roles.agent.cpm).toBeCloseTo((123 * 60000) / 34214, 9);
    expect(m.roles.agent.cpm).toBeCloseTo(215.70, 2);
    // customer: 你好 2 + 我这个月的话费怎么多扣了两百块钱 16 = 18; 13812345678 11; 我从来没有开通过什么会员 12 +
    // 你们这是乱扣费 7 = 19; 太过分了 4 + 我要投诉你们 6 = 10; 那你们要多久才能退回来 11; 好吧谢谢 4
    // → 18 + 11 + 19 + 10 + 11 + 4 = 73; cpm = 73 / (17974 / 60000) = 4380000 / 17974 = 243.685…
    expect(m.roles.customer.charCount).toBe(73);
    expect(m.roles.customer.cpm).toBeCloseTo(243.685, 2);
    expect(m.roles.customer).toMatchObject({ rateUnit: 'cpm' });
    expect(m.roles.customer.rate).toBe(m.roles.customer.cpm);
    // 11 digits of line 4 are the only non-CJK characters: (73 − 11) / 73
    expect(m.roles.customer.cjkShare).toBeCloseTo(62 / 73, 12);
  });

  it('finds monologues, counts and response gaps', () => {
    expect(m.roles.agent.utteranceCount).toBe(6);
    expect(m.roles.customer.utteranceCount).toBe(6);
    // agent: line 1 alone (line 3 follows customer line 2): 9978 − 400 = 9578
    expect(m.roles.agent.longestMonologue).toEqual({ startMs: 400, endMs: 9978, durationMs: 9578 });
    // customer: lines 6 + 7 (pause 43723→44723 = 1000 < 3000, agent line 8 starts after 44723):
    // 46725 − 39326 = 7399
    expect(m.roles.customer.longestMonologue).toEqual({ startMs: 39326, endMs: 46725, durationMs: 7399 });
    // with a 1000 ms pause limit the 1000 ms pause splits them: line 2 (4874) is then the longest
    const mp = computeCallMetrics(fromScript('paraformer'), { monologuePauseMs: 1000 });
    expect(mp.roles.customer.longestMonologueMs).toBe(4874);
    expect(m.firstAgentSpeechMs).toBe(400);
    // first customer sentence ends 15552, next agent start 16252
    expect(m.firstAgentResponseMs).toBe(700);
    // customer turn end → agent start: 15552→16252 700; 26941→32941 6000; turn 6+7 ends 46725 but the
    // agent starts 46025 (overtalk, not counted); 54386→55086 700; 60687→61387 700
    // avg = (700 + 6000 + 700 + 700) / 4 = 2025
    expect(m.agentResponseCount).toBe(4);
    expect(m.avgAgentResponseMs).toBe(2025);
    expect(m.maxAgentResponseMs).toBe(6000);
  });

  it('computes emotion shares, scores and quarters per role', () => {
    expect(m.roles.customer.emotionCounts).toEqual({ negative: 3, neutral: 3 });
    expect(m.roles.agent.emotionCounts).toEqual({ neutral: 4, positive: 2 });
    // all 12 lines qualify (confidence ≥ 0.6 and ≥ 1000 ms); customer negatives: lines 6, 7, 9 → 3/6
    expect(m.roles.customer).toMatchObject({ qualifyingCount: 6, negShare: 0.5, posShare: 0 });
    // customer scores: 0, 0, −5×0.92 = −4.6, −5×0.95 = −4.75, −5×0.71 = −3.55, 0 → mean −12.9/6 = −2.15
    expect(m.roles.customer.sentiment).toBeCloseTo(-2.15, 9);
    // quarters of 65688/4 = 16422: [0,16422) [16422,32844) [32844,49266) [49266,65688]
    // customer midpoints: 13115 Q1; 25564 Q2; 41524.5 Q3; 45724 Q3; 53021.5 Q4; 60078 Q4
    const cq = m.roles.customer.quarters;
    expect(cq.map((q) => [q.startMs, q.endMs])).toEqual([
      [0, 16422],
      [16422, 32844],
      [32844, 49266],
      [49266, 65688],
    ]);
    // negative share per quarter: Q1 0/1, Q2 0/1, Q3 2/2 (lines 6, 7), Q4 1/2 (line 9 of 9, 11)
    expect(cq.map((q) => q.negShare)).toEqual([0, 0, 1, 0.5]);
    expect(cq.map((q) => q.n)).toEqual([1, 1, 2, 2]);
    // scores: Q3 (−4.6 − 4.75)/2 = −4.675; Q4 (−3.55 + 0)/2 = −1.775
    const s = scores(m, 'customer');
    expect(s[0]).toBe(0);
    expect(s[1]).toBe(0);
    expect(s[2]).toBeCloseTo(-4.675, 9);
    expect(s[3]).toBeCloseTo(-1.775, 9);
    // trend: Q4 − mean(0, 0, −4.675) = −1.775 + 1.558… = −0.216… → FLAT; Q1 = 0 is not < 0 → not recovered
    expect(m.roles.customer.trend).toBe('FLAT');
    expect(m.roles.customer.sentimentShift).toBeCloseTo(-1.775, 9);
    expect(m.recovered).toBe(false);
    // agent: line 1 +5×0.81 = 4.05 (Q1), line 12 +5×0.86 = 4.3 (mid 62937.5, Q4), others 0:
    // Q4 = 4.3/2 = 2.15; Q4 − mean(4.05, 0, 0) = 2.15 − 1.35 = 0.8 ≥ 0.5 → UP
    const a = scores(m, 'agent');
    expect(a[0]).toBeCloseTo(4.05, 9);
    expect(a[3]).toBeCloseTo(2.15, 9);
    expect(m.roles.agent.trend).toBe('UP');
    expect(m.roles.agent.sentiment).toBeCloseTo(8.35 / 6, 9);
    expect(m.roles.agent).toMatchObject({ negShare: 0, posShare: 2 / 6 });
  });

  it('uses the span of emotional sentences for quarters when the duration is unknown', () => {
    const mu = computeCallMetrics(fromScript('paraformer'));
    expect(mu.periodBasis).toBe('emotion_span');
    expect(mu.durationMs).toBeNull();
    expect(mu.nonTalkRatio).toBeNull();
    // span 400–64488 = 64088; /4 = 16022 → 400, 16422, 32444, 48466, 64488
    expect(mu.roles.customer.quarters.map((q) => q.startMs)).toEqual([400, 16422, 32444, 48466]);
    expect(mu.roles.customer.quarters[3]!.endMs).toBe(64488);
    expect(mu.roles.customer.quarters.map((q) => q.negShare)).toEqual([0, 0, 1, 0.5]);
  });
});

describe('computeCallMetrics with qwen emotions (no confidence)', () => {
  it('scores valence × 5 for sentences passing the duration gate', () => {
    const m = computeCallMetrics(fromScript('qwen'), undefined, { durationMs: DURATION });
    expect(m.roles.customer.emotionCounts).toEqual({ angry: 2, neutral: 3, sad: 1 });
    // customer: 0, 0, angry −5, angry −5, sad −5, 0 → −15/6 = −2.5
    expect(m.roles.customer.sentiment).toBe(-2.5);
    // Q3 (−5 −5)/2 = −5; Q4 (−5 + 0)/2 = −2.5; Q4 − mean(0, 0, −5) = −2.5 + 1.667 = −0.833 → DOWN
    expect(scores(m, 'customer')).toEqual([0, 0, -5, -2.5]);
    expect(m.roles.customer.trend).toBe('DOWN');
  });

  it('ignores a short back-channel in scores and shares', () => {
    // 嗯 (1 CJK char, 600 ms) fails both the 1000 ms and the 4-character gate
    const lines = [
      utt({ role: 'customer', seq: 1, startMs: 0, endMs: 600, text: '嗯。', emotionRaw: 'angry', valence: -1 }),
      utt({ role: 'customer', seq: 2, startMs: 1000, endMs: 1800, text: '好的谢谢你', emotionRaw: 'happy', valence: 1 }),
    ];
    const m = computeCallMetrics(lines);
    expect(m.roles.customer).toMatchObject({
      qualifyingCount: 1,
      negShare: 0,
      posShare: 1,
      scoredCount: 1,
      sentiment: 5,
      emotionCounts: { angry: 1, happy: 1 },
    });
  });
});

describe('computeCallMetrics edge cases', () => {
  it('gives the same result for shuffled input', () => {
    const lines = fromScript('paraformer');
    const a = computeCallMetrics(lines, undefined, { durationMs: DURATION });
    const b = computeCallMetrics(shuffle(lines), undefined, { durationMs: DURATION });
    expect(shuffle(lines)[0]).not.toBe(lines[0]);
    expect(b).toEqual(a);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
  });

  it('handles an empty call', () => {
    const m = computeCallMetrics([]);
    expect(m).toMatchObject({
      utteranceCount: 0,
      talkMs: 0,
      overlapMs: 0,
      silences: [],
      overtalks: [],
      firstAgentSpeechMs: null,
      firstAgentResponseMs: null,
      avgAgentResponseMs: null,
      periodBasis: 'none',
      recovered: null,
    });
    expect(m.roles.agent).toMatchObject({ talkShare: null, cpm: null, rate: null, rateUnit: 'cpm', sentiment: null });
    expect(m.roles.customer.quarters.every((q) => q.score === null && q.n === 0)).toBe(true);
    expect(m.roles.customer.longestMonologue).toBeNull();
    // with a duration the whole call is one silence
    const md = computeCallMetrics([], undefined, { durationMs: 10000 });
    expect(md.silences).toEqual([{ startMs: 0, endMs: 10000, durationMs: 10000 }]);
    expect(md.nonTalkRatio).toBe(1);
    expect(md.periodBasis).toBe('duration');
  });

  it('handles a one-role call, with leading and trailing silences', () => {
    const m = computeCallMetrics(
      fromScript('paraformer', script.lines.filter((l) => l.role === 'customer')),
      undefined,
      { durationMs: DURATION },
    );
    expect(m.roles.agent).toMatchObject({ utteranceCount: 0, talkMs: 0, talkShare: 0, cpm: null, overtalkCount: 0 });
    expect(m.roles.customer).toMatchObject({ talkMs: 17974, talkShare: 1 });
    expect(m.overtalks).toEqual([]);
    expect(m.agentResponseCount).toBe(0);
    expect(m.firstAgentSpeechMs).toBeNull();
    // customer lines only: 0→10678 (leading), 15552→24187 = 8635, 26941→39326 = 12385,
    // 43723→44723 = 1000 (< 3000), 46725→51657 = 4932, 54386→59469 = 5083, 60687→65688 = 5001 (trailing)
    expect(m.silences.map((s) => [s.startMs, s.endMs, s.durationMs])).toEqual([
      [0, 10678, 10678],
      [15552, 24187, 8635],
      [26941, 39326, 12385],
      [46725, 51657, 4932],
      [54386, 59469, 5083],
      [60687, 65688, 5001],
    ]);
  });

  it('reports wpm for English text', () => {
    const m = computeCallMetrics([
      // Thanks for calling how can I help = 7 words; 27 letters
      utt({ role: 'agent', seq: 1, startMs: 0, endMs: 3000, text: 'Thanks for calling, how can I help?' }),
      // I'll check that right away = 5 words (I'll is one); 21 letters
      utt({ role: 'agent', seq: 2, startMs: 3000, endMs: 6000, text: "I'll check that right away." }),
    ]);
    // 12 words / 0.1 min = 120 wpm; 48 characters / 0.1 min = 480 cpm
    expect(m.roles.agent).toMatchObject({ rateUnit: 'wpm', wordCount: 12, charCount: 48, cjkShare: 0 });
    expect(m.roles.agent.wpm).toBeCloseTo(120, 9);
    expect(m.roles.agent.rate).toBeCloseTo(120, 9);
    expect(m.roles.agent.cpm).toBeCloseTo(480, 9);
  });

  it('tightens sentence spans to word timings', () => {
    const words = [
      { startMs: 1000, endMs: 2000, text: '你好' },
      { startMs: 2500, endMs: 4000, text: '再见' },
    ];
    const m = computeCallMetrics([utt({ role: 'agent', startMs: 0, endMs: 5000, text: '你好再见', words })], undefined, {
      durationMs: 9000,
    });
    // speech 1000–4000; silences: leading 0→1000 (< 3000), trailing 4000→9000 = 5000
    expect(m.roles.agent.talkMs).toBe(3000);
    expect(m.firstAgentSpeechMs).toBe(1000);
    expect(m.silences).toEqual([{ startMs: 4000, endMs: 9000, durationMs: 5000 }]);
  });

  it('attributes a customer cutting into an agent sentence to the customer', () => {
    const m = computeCallMetrics([
      utt({ role: 'agent', startMs: 0, endMs: 10000, text: '我给您解释一下这个费用' }),
      utt({ role: 'customer', startMs: 2000, endMs: 4500, text: '你别说了' }),
    ]);
    expect(m.overtalks).toEqual([
      { by: 'customer', over: 'agent', startMs: 2000, endMs: 4500, overlapMs: 2500, interruption: true },
    ]);
    expect(m.roles.customer).toMatchObject({ interruptionCount: 1, interruptionMs: 2500 });
    expect(m.roles.agent.interruptionCount).toBe(0);
  });

  it('breaks a simultaneous start towards the shorter segment', () => {
    const m = computeCallMetrics([
      utt({ role: 'agent', startMs: 0, endMs: 5000, text: '您好请问有什么可以帮您' }),
      utt({ role: 'customer', startMs: 0, endMs: 800, text: '喂' }),
    ]);
    expect(m.overtalks).toEqual([
      { by: 'customer', over: 'agent', startMs: 0, endMs: 800, overlapMs: 800, interruption: false },
    ]);
  });

  it('gates shares on confidence 0.6 and scores on confidence 0.4', () => {
    const neg = { role: 'customer', emotionRaw: 'negative', valence: -1 } as const;
    const m = computeCallMetrics([
      // conf 0.5: scored −5 × 0.5 = −2.5, but below 0.6 so not in the shares
      utt({ ...neg, seq: 1, startMs: 0, endMs: 2000, text: '我很生气啊', emotionConfidence: 0.5 }),
      // conf 0.3: no score, no share
      utt({ ...neg, seq: 2, startMs: 3000, endMs: 5000, text: '真的很生气', emotionConfidence: 0.3 }),
      // neutral 0.9: score 0, qualifies; shares 0/1; sentiment (−2.5 + 0) / 2 = −1.25
      utt({ role: 'customer', seq: 3, startMs: 6000, endMs: 8000, text: '好的谢谢你', emotionRaw: 'neutral', emotionConfidence: 0.9, valence: 0 }),
    ]);
    expect(m.roles.customer).toMatchObject({ qualifyingCount: 1, negShare: 0, scoredCount: 2, sentiment: -1.25 });
  });

  it('drops invalid sentences and counts them', () => {
    const m = computeCallMetrics([
      utt({ role: 'agent', startMs: 0, endMs: 1000, text: '您好' }),
      utt({ role: 'agent', seq: 2, startMs: 5000, endMs: 4000, text: '坏' }),
      utt({ role: 'agent', seq: 3, startMs: Number.NaN, endMs: 4000, text: '坏' }),
    ]);
    expect(m.invalidUtterances).toBe(2);
    expect(m.utteranceCount).toBe(1);
    expect(m.roles.agent.talkMs).toBe(1000);
  });

  it('rejects negative or non-finite options and durations', () => {
    const codeOf = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (err) {
        return isAppError(err) ? err.code : 'not an AppError';
      }
      return undefined;
    };
    expect(codeOf(() => computeCallMetrics([], { silenceThresholdMs: -1 }))).toBe('ERR_ANALYTICS_OPTIONS_INVALID');
    expect(codeOf(() => computeCallMetrics([], { trendThreshold: Number.NaN }))).toBe('ERR_ANALYTICS_OPTIONS_INVALID');
    expect(codeOf(() => computeCallMetrics([], undefined, { durationMs: -5 }))).toBe('ERR_ANALYTICS_OPTIONS_INVALID');
    expect(codeOf(() => computeCallMetrics([], { silenceThresholdMs: 0 }))).toBeUndefined();
  });
});
