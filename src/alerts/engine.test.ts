import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { AnalyticsUtterance, EvidenceRef } from '../analytics/types.js';
import { normaliseParaformerEmotion, normaliseQwenEmotion } from '../asr/emotion.js';
import type { Role } from '../core/types.js';
import { fixtureScriptSchema, type FixtureLine } from '../simulator/fixture-call.js';
import { countSpokenChars } from '../utterance/char-count.js';
import { MAX_WINDOW_SENTENCES, parseEmotionWindowConfig, type EmotionWindowConfigInput } from './emotion-config.js';
import {
  EmotionAlertEngine,
  byArrival,
  evaluateEmotionRule,
  findEscalationKeyword,
  type AlertDecision,
  type EmotionRule,
} from './engine.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZH_SCRIPT = fixtureScriptSchema.parse(
  JSON.parse(readFileSync(path.resolve(HERE, '../../../shared/fixtures/calls/zh-billing-complaint/script.json'), 'utf8')),
);
const PARAFORMER = 'paraformer-realtime-8k-v2';
const QWEN = 'qwen3-asr-flash-realtime';
type Provider = 'paraformer' | 'qwen';
const CALL = 'call-1';

function rule(config: EmotionWindowConfigInput = {}): EmotionRule {
  return { id: 'emo', version: 2, config: parseEmotionWindowConfig(config) };
}

/** Script lines → stored sentences, emotions through src/asr/emotion.ts for one provider. */
function fromScript(lines: readonly FixtureLine[], provider: Provider): AnalyticsUtterance[] {
  const seq: Record<Role, number> = { customer: 0, agent: 0 };
  return lines.map((line) => {
    const e = line.emotion;
    const emotion =
      provider === 'paraformer'
        ? e?.paraformer
          ? normaliseParaformerEmotion(PARAFORMER, e.paraformer.tag, e.paraformer.confidence)
          : null
        : e?.qwen !== undefined
          ? normaliseQwenEmotion(QWEN, e.qwen)
          : null;
    return {
      role: line.role,
      seq: ++seq[line.role],
      startMs: line.startMs,
      endMs: line.endMs,
      text: line.text,
      charCount: countSpokenChars(line.text),
      words: [],
      emotionRaw: emotion?.raw ?? null,
      emotionConfidence: emotion?.confidence ?? null,
      valence: emotion?.valence ?? null,
      arousal: emotion?.arousal ?? null,
      model: provider === 'paraformer' ? PARAFORMER : QWEN,
    };
  });
}

function ev(u: AnalyticsUtterance): EvidenceRef {
  return {
    role: u.role,
    seq: u.seq,
    startMs: u.startMs,
    endMs: u.endMs,
    emotionRaw: u.emotionRaw,
    emotionConfidence: u.emotionConfidence,
    valence: u.valence,
  };
}

/** Synthetic calls: paraformer labels, seq assigned per role in call order. */
class Call {
  readonly utterances: AnalyticsUtterance[] = [];
  readonly #seq: Record<Role, number> = { customer: 0, agent: 0 };

  say(
    role: Role,
    endMs: number,
    label: 'negative' | 'neutral' | 'positive' | null,
    o: { durMs?: number; text?: string; conf?: number | null } = {},
  ): AnalyticsUtterance {
    const text = o.text ?? (label === 'negative' ? '你们这个服务太差劲了' : '我想问一下这个月的账单');
    const emotion = label === null ? null : normaliseParaformerEmotion(PARAFORMER, label, o.conf === undefined ? 0.9 : o.conf);
    const u: AnalyticsUtterance = {
      role,
      seq: ++this.#seq[role],
      startMs: endMs - (o.durMs ?? 1500),
      endMs,
      text,
      charCount: countSpokenChars(text),
      words: [],
      emotionRaw: emotion?.raw ?? null,
      emotionConfidence: emotion?.confidence ?? null,
      valence: emotion?.valence ?? null,
      arousal: null,
      model: PARAFORMER,
    };
    this.utterances.push(u);
    return u;
  }
  customer(endMs: number, label: 'negative' | 'neutral' | 'positive' | null, o?: { durMs?: number; text?: string; conf?: number | null }) {
    return this.say('customer', endMs, label, o);
  }
  agent(endMs: number, label: 'negative' | 'neutral' | 'positive' | null, o?: { durMs?: number; text?: string; conf?: number | null }) {
    return this.say('agent', endMs, label, o);
  }
}

/** [trigger role, trigger seq, severity, reason, 'open' | suppressedReason] */
type Brief = [Role, number, string, string, string];
function brief(decisions: readonly AlertDecision[]): Brief[] {
  return decisions.map((d) => [d.trigger.role, d.trigger.seq, d.severity, d.reason, d.status === 'open' ? 'open' : String(d.suppressedReason)]);
}

/** Deterministic Fisher–Yates with a small LCG. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1_103_515_245 + 12_345) % 2_147_483_648;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** 40 negative customer lines, 5 s apart, 3 s long (ends 3 s, 8 s, …, 198 s). */
function fortyNegativeLines(): Call {
  const c = new Call();
  for (let i = 0; i < 40; i++) c.customer(i * 5000 + 3000, 'negative', { durMs: 3000 });
  return c;
}

// ---------------------------------------------------------------------------------------------

describe('zh-billing-complaint', () => {
  it.each<Provider>(['paraformer', 'qwen'])('%s labels: one open critical alert at line 7, line 9 suppressed by cooldown', (provider) => {
    const utts = fromScript(ZH_SCRIPT.lines, provider);
    const line = (n: number) => utts[n - 1]!;
    // the script as the issue describes it
    expect(line(7).text.slice(7, 9)).toBe('投诉');
    expect([line(6).role, line(7).role, line(8).role, line(9).role]).toEqual(['customer', 'customer', 'agent', 'customer']);
    expect([line(6).valence, line(7).valence, line(9).valence]).toEqual([-1, -1, -1]);

    const decisions = evaluateEmotionRule(rule(), CALL, utts);
    expect(decisions).toStrictEqual([
      {
        ruleId: 'emo',
        ruleVersion: 2,
        role: 'customer',
        severity: 'critical',
        status: 'open',
        suppressedReason: null,
        reason: 'escalation-keyword',
        dedupeKey: 'call-1:emo:critical',
        trigger: { role: 'customer', seq: 4, endMs: 46_725 },
        evidence: [ev(line(6)), { ...ev(line(7)), charBegin: 7, charEnd: 9 }],
        matchedKeyword: '投诉',
      },
      {
        ruleId: 'emo',
        ruleVersion: 2,
        role: 'customer',
        severity: 'critical',
        status: 'suppressed',
        suppressedReason: 'cooldown',
        reason: 'streak',
        dedupeKey: 'call-1:emo:critical',
        trigger: { role: 'customer', seq: 5, endMs: 54_386 },
        evidence: [ev(line(6)), ev(line(7)), ev(line(9))],
      },
    ]);
    expect(decisions[0]!.evidence.map((e) => e.emotionRaw)).toEqual(
      provider === 'paraformer' ? ['negative', 'negative'] : ['angry', 'angry'],
    );
    expect(decisions[1]!.evidence.map((e) => e.emotionConfidence)).toEqual(
      provider === 'paraformer' ? [0.92, 0.95, 0.71] : [null, null, null],
    );
  });

  it('fires at line 7 only through the keyword path: without it, the streak at line 9 is the first alert, a warning', () => {
    const utts = fromScript(ZH_SCRIPT.lines, 'paraformer');
    const noKeywords = evaluateEmotionRule(rule({ escalationKeywords: [] }), CALL, utts);
    expect(brief(noKeywords)).toEqual([['customer', 5, 'warning', 'streak', 'open']]);
    expect(noKeywords[0]!.evidence.map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(noKeywords[0]!.matchedKeyword).toBeUndefined();
    // the keyword path needs keywordMinNegative consecutive negatives: line 7 has only 2
    expect(brief(evaluateEmotionRule(rule({ keywordMinNegative: 3 }), CALL, utts))).toEqual([
      ['customer', 5, 'warning', 'streak', 'open'],
    ]);
    // and 1 lets a lone keyword sentence fire from calm
    const lone = utts.map((u, i) => (i === 5 ? { ...u, valence: 0 as const, emotionRaw: 'neutral' } : u));
    expect(brief(evaluateEmotionRule(rule({ keywordMinNegative: 1 }), CALL, lone))).toEqual([
      ['customer', 4, 'critical', 'escalation-keyword', 'open'],
    ]);
  });

  it('a keyword sentence right after a non-negative one does not fire from calm', () => {
    const utts = fromScript(ZH_SCRIPT.lines, 'qwen').map((u, i) =>
      i === 5 ? { ...u, valence: 0 as const, emotionRaw: 'neutral' } : u,
    );
    expect(evaluateEmotionRule(rule(), CALL, utts)).toEqual([]);
  });

  it('is independent of input order (shuffled arrays give the same decisions)', () => {
    for (const provider of ['paraformer', 'qwen'] as const) {
      const utts = fromScript(ZH_SCRIPT.lines, provider);
      const expected = evaluateEmotionRule(rule(), CALL, utts);
      expect(expected).toHaveLength(2);
      for (const seed of [1, 7, 42, 1234]) {
        const input = shuffled(utts, seed);
        expect(input).not.toEqual(utts);
        expect(evaluateEmotionRule(rule(), CALL, input)).toStrictEqual(expected);
      }
    }
  });

  it('is idempotent and append-only: a replay of any arrival-ordered prefix gives a prefix of the decisions', () => {
    const utts = fromScript(ZH_SCRIPT.lines, 'paraformer').sort(byArrival);
    const all = evaluateEmotionRule(rule(), CALL, utts);
    expect(evaluateEmotionRule(rule(), CALL, utts)).toStrictEqual(all);
    for (let k = 0; k <= utts.length; k++) {
      const seen = utts.slice(0, k);
      const expected = all.filter((d) => seen.some((u) => u.role === d.trigger.role && u.seq === d.trigger.seq));
      expect(evaluateEmotionRule(rule(), CALL, seen)).toStrictEqual(expected);
    }
  });
});

describe('gates', () => {
  it('a neutral call raises nothing', () => {
    const neutral = fromScript(
      ZH_SCRIPT.lines.map((l) => ({ ...l, emotion: { paraformer: { tag: 'neutral', confidence: 0.9 }, qwen: 'neutral' } })),
      'paraformer',
    );
    expect(evaluateEmotionRule(rule(), CALL, neutral)).toEqual([]);
    const c = new Call();
    for (let i = 1; i <= 60; i++) c.say(i % 2 ? 'customer' : 'agent', i * 4000, i % 7 ? 'neutral' : 'positive');
    expect(evaluateEmotionRule(rule(), CALL, c.utterances)).toEqual([]);
  });

  it('a single negative sentence raises nothing', () => {
    const c = new Call();
    c.customer(3000, 'neutral');
    c.customer(6000, 'negative', { text: '太过分了，我要投诉你们！' });
    c.customer(9000, 'neutral');
    expect(evaluateEmotionRule(rule(), CALL, c.utterances)).toEqual([]);
  });

  it('gates out back-channels (嗯, 0.3 s) but keeps long or ≥ 4-character sentences', () => {
    const backChannels = new Call();
    for (let i = 1; i <= 6; i++) backChannels.customer(i * 2000, 'negative', { durMs: 300, text: '嗯' });
    const engine = new EmotionAlertEngine(rule(), CALL);
    expect(backChannels.utterances.flatMap((u) => engine.push(u))).toEqual([]);
    expect(engine.stats()).toMatchObject({ evaluated: 6, gatedShort: 6 });

    const long = new Call();
    for (let i = 1; i <= 3; i++) long.customer(i * 2000, 'negative', { durMs: 1000, text: '嗯' });
    expect(brief(evaluateEmotionRule(rule(), CALL, long.utterances))).toEqual([['customer', 3, 'warning', 'streak', 'open']]);

    const fourChars = new Call();
    for (let i = 1; i <= 3; i++) fourChars.customer(i * 2000, 'negative', { durMs: 500, text: '太过分了' });
    expect(brief(evaluateEmotionRule(rule(), CALL, fourChars.utterances))).toEqual([['customer', 3, 'warning', 'streak', 'open']]);
    // three characters plus punctuation is still short
    const threeChars = new Call();
    for (let i = 1; i <= 3; i++) threeChars.customer(i * 2000, 'negative', { durMs: 500, text: '不行了！' });
    expect(evaluateEmotionRule(rule(), CALL, threeChars.utterances)).toEqual([]);
    // the knobs move the gate
    expect(evaluateEmotionRule(rule({ minChars: 5 }), CALL, fourChars.utterances)).toEqual([]);
    expect(brief(evaluateEmotionRule(rule({ minDurationMs: 300 }), CALL, backChannels.utterances))).toHaveLength(4);
  });

  it('gated sentences neither count nor break a streak', () => {
    const c = new Call();
    c.customer(2000, 'negative');
    c.customer(3000, 'neutral', { durMs: 300, text: '嗯' });
    c.customer(5000, 'negative');
    c.customer(6000, 'neutral', { conf: 0.3 });
    c.customer(7000, null);
    c.customer(9000, 'negative');
    expect(brief(evaluateEmotionRule(rule(), CALL, c.utterances))).toEqual([['customer', 6, 'warning', 'streak', 'open']]);
  });

  it('gates out low-confidence negatives; qwen (no confidence) passes on duration alone', () => {
    const lines = (conf: number | null) => {
      const c = new Call();
      for (let i = 1; i <= 6; i++) c.customer(i * 3000, 'negative', { conf });
      return c.utterances;
    };
    const engine = new EmotionAlertEngine(rule(), CALL);
    expect(lines(0.59).flatMap((u) => engine.push(u))).toEqual([]);
    expect(engine.stats()).toMatchObject({ gatedLowConfidence: 6 });
    expect(brief(evaluateEmotionRule(rule(), CALL, lines(0.6)))[0]).toEqual(['customer', 3, 'warning', 'streak', 'open']);
    expect(brief(evaluateEmotionRule(rule(), CALL, lines(null)))[0]).toEqual(['customer', 3, 'warning', 'streak', 'open']);
    expect(evaluateEmotionRule(rule({ minConfidence: 0.95 }), CALL, lines(0.9))).toEqual([]);
  });
});

describe('fire conditions', () => {
  it('share: ≥ 50 % negative with ≥ 3 negatives, without a streak', () => {
    const c = new Call();
    ['negative', 'neutral', 'negative', 'neutral', 'negative'].forEach((l, i) =>
      c.customer((i + 1) * 3000, l === 'negative' ? 'negative' : 'neutral'),
    );
    expect(brief(evaluateEmotionRule(rule(), CALL, c.utterances))).toEqual([['customer', 5, 'warning', 'share', 'open']]);
    expect(evaluateEmotionRule(rule({ minNegative: 4 }), CALL, c.utterances)).toEqual([]);
    expect(evaluateEmotionRule(rule({ shareThreshold: 0.7 }), CALL, c.utterances)).toEqual([]);
    expect(brief(evaluateEmotionRule(rule({ minNegative: 2, shareThreshold: 0.6 }), CALL, c.utterances))).toEqual([
      ['customer', 3, 'warning', 'share', 'open'],
      ['customer', 5, 'warning', 'share', 'cooldown'],
    ]);
  });

  it('window: last windowMs or last windowCount sentences, whichever covers more', () => {
    const c = new Call();
    const labels = ['neutral', 'neutral', 'neutral', 'neutral', 'neutral', 'neutral', 'negative', 'neutral', 'negative', 'neutral', 'negative'] as const;
    labels.forEach((l, i) => c.customer((i + 1) * 1000, l, { durMs: 900 }));
    // last 60 s: 3/11 = 27 % (no fire) although the last 6 hold 3/6 = 50 %
    expect(evaluateEmotionRule(rule(), CALL, c.utterances)).toEqual([]);
    // a 3 s window covers less than the last 6 sentences: those decide
    expect(brief(evaluateEmotionRule(rule({ windowMs: 3000 }), CALL, c.utterances))).toEqual([['customer', 11, 'warning', 'share', 'open']]);
    expect(evaluateEmotionRule(rule({ windowMs: 3000, windowCount: 7 }), CALL, c.utterances)).toEqual([]);
  });

  it('streakLength is the streak', () => {
    const c = new Call();
    for (let i = 1; i <= 4; i++) c.customer(i * 3000, 'negative');
    expect(brief(evaluateEmotionRule(rule({ streakLength: 4, minNegative: 5 }), CALL, c.utterances))).toEqual([
      ['customer', 4, 'warning', 'streak', 'open'],
    ]);
  });

  it('watches the configured role', () => {
    const c = new Call();
    for (let i = 1; i <= 3; i++) c.agent(i * 3000, 'negative');
    expect(evaluateEmotionRule(rule(), CALL, c.utterances)).toEqual([]);
    const decisions = evaluateEmotionRule(rule({ role: 'agent' }), CALL, c.utterances);
    expect(brief(decisions)).toEqual([['agent', 3, 'warning', 'streak', 'open']]);
    expect(decisions[0]!.role).toBe('agent');
  });
});

describe('cooldown and cap', () => {
  it('40 negative lines 5 s apart: two open (the persistence rise bypasses the cooldown), the rest suppressed', () => {
    const decisions = evaluateEmotionRule(rule(), CALL, fortyNegativeLines().utterances);
    const expected: Brief[] = [];
    // i: line index; end = i*5 s + 3 s. Warning at i=2 (13 s); persistence at 13 s + 60 s = i=14;
    // cooldown 120 s from the last open (73 s) lasts to i=37; then the critical key is open in this episode
    for (let i = 2; i < 40; i++) {
      const severity = i < 14 ? 'warning' : 'critical';
      const reason = i === 14 ? 'persistence' : 'streak';
      const status = i === 2 || i === 14 ? 'open' : i < 38 ? 'cooldown' : 'dedupe';
      expected.push(['customer', i + 1, severity, reason, status]);
    }
    expect(brief(decisions)).toEqual(expected);
    expect(decisions.filter((d) => d.status === 'open').length).toBeLessThanOrEqual(3);
    expect(decisions.map((d) => d.dedupeKey)).toContain('call-1:emo:warning');
    // evidence: the window's negatives (60 s = 12 lines)
    expect(decisions.at(-1)!.evidence.map((e) => e.seq)).toEqual([29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]);
  });

  it('cap: once maxPerCall alerts are open, everything else is suppressed as cap, even a severity rise', () => {
    const decisions = evaluateEmotionRule(rule({ maxPerCall: 1 }), CALL, fortyNegativeLines().utterances);
    expect(decisions).toHaveLength(38);
    expect(brief(decisions.slice(0, 1))).toEqual([['customer', 3, 'warning', 'streak', 'open']]);
    expect(new Set(decisions.slice(1).map((d) => d.suppressedReason))).toEqual(new Set(['cap']));
    expect(decisions[12]!).toMatchObject({ severity: 'critical', reason: 'persistence', suppressedReason: 'cap' });
  });

  it('a shorter cooldown opens again at the same severity only in a new episode (dedupe within one)', () => {
    const decisions = evaluateEmotionRule(rule({ cooldownMs: 10_000 }), CALL, fortyNegativeLines().utterances);
    expect(decisions.filter((d) => d.status === 'open').map((d) => d.trigger.seq)).toEqual([3, 15]);
    expect(decisions.filter((d) => d.suppressedReason === 'dedupe').length).toBeGreaterThan(20);
  });

  it('cap across episodes: bursts separated by calm open up to maxPerCall, then cap', () => {
    const c = new Call();
    for (let k = 0; k < 5; k++) {
      const base = k * 170_000;
      for (const t of [2000, 4000, 6000]) c.customer(base + t, 'negative');
      for (let t = 26_000; t <= 166_000; t += 20_000) c.customer(base + t, 'neutral');
    }
    expect(brief(evaluateEmotionRule(rule(), CALL, c.utterances))).toEqual([
      ['customer', 3, 'warning', 'streak', 'open'],
      ['customer', 14, 'warning', 'streak', 'open'],
      ['customer', 25, 'warning', 'streak', 'open'],
      ['customer', 36, 'warning', 'streak', 'cap'],
      ['customer', 47, 'warning', 'streak', 'cap'],
    ]);
    expect(brief(evaluateEmotionRule(rule({ maxPerCall: 5 }), CALL, c.utterances)).map((b) => b[4])).toEqual([
      'open',
      'open',
      'open',
      'open',
      'open',
    ]);
  });
});

describe('hysteresis', () => {
  /** NNN at 2/4/6 s, then neutral lines every 20 s from 26 s. */
  function burstThenCalm(): Call {
    const c = new Call();
    for (const t of [2000, 4000, 6000]) c.customer(t, 'negative');
    for (let t = 26_000; t <= 166_000; t += 20_000) c.customer(t, 'neutral');
    return c;
  }

  it('clears after the share stays below 30 % for 60 s, and a later burst fires again', () => {
    const c = burstThenCalm();
    for (const t of [170_000, 172_000, 174_000]) c.customer(t, 'negative');
    const engine = new EmotionAlertEngine(rule(), CALL);
    const states = new Map<number, { state: string; low: number | null }>();
    const decisions: AlertDecision[] = [];
    for (const u of c.utterances) {
      decisions.push(...engine.push(u));
      const s = engine.snapshot();
      states.set(u.endMs, { state: s.state, low: s.lowShareSinceMs });
    }
    // the last 6 sentences hold 2 negatives at 86 s (33 %), 1 at 106 s (17 %): low since 106 s
    expect(states.get(86_000)).toEqual({ state: 'warning', low: null });
    expect(states.get(106_000)).toEqual({ state: 'warning', low: 106_000 });
    expect(states.get(146_000)).toEqual({ state: 'warning', low: 106_000 });
    expect(states.get(166_000)).toEqual({ state: 'calm', low: null });
    expect(states.get(174_000)).toEqual({ state: 'warning', low: null });
    expect(brief(decisions)).toEqual([
      ['customer', 3, 'warning', 'streak', 'open'],
      ['customer', 14, 'warning', 'streak', 'open'],
    ]);
    // without the clear the same burst continues the old episode, and escalates it
    expect(brief(evaluateEmotionRule(rule({ clearAfterMs: 120_000 }), CALL, c.utterances))).toEqual([
      ['customer', 3, 'warning', 'streak', 'open'],
      ['customer', 14, 'critical', 'persistence', 'open'],
    ]);
    // clearShare is a knob: at 10 % the share never gets low enough
    expect(brief(evaluateEmotionRule(rule({ clearShare: 0.1 }), CALL, c.utterances))[1]).toEqual([
      'customer',
      14,
      'critical',
      'persistence',
      'open',
    ]);
  });

  it('a burst right after the clear is still subject to the cooldown', () => {
    const c = new Call();
    for (const t of [2000, 4000, 6000]) c.customer(t, 'negative');
    for (let t = 11_000; t <= 106_000; t += 5000) c.customer(t, 'neutral');
    for (let t = 108_000; t <= 126_000; t += 2000) c.customer(t, 'negative');
    const engine = new EmotionAlertEngine(rule(), CALL);
    const decisions: AlertDecision[] = [];
    for (const u of c.utterances) {
      decisions.push(...engine.push(u));
      // share 27 % from 46 s, so calm exactly at 106 s
      if (u.endMs === 101_000) expect(engine.snapshot()).toMatchObject({ state: 'warning', lowShareSinceMs: 46_000 });
      if (u.endMs === 106_000) expect(engine.snapshot()).toMatchObject({ state: 'calm', sinceMs: null });
    }
    const expected: Brief[] = [['customer', 3, 'warning', 'streak', 'open']];
    // the new episode's negatives: seq 24.. (108 s, 110 s, …); fires from the third (112 s)
    for (let seq = 26; seq <= 32; seq++) expected.push(['customer', seq, 'warning', 'streak', 'cooldown']);
    expected.push(['customer', 33, 'warning', 'streak', 'open']); // 126 s: 120 s after 6 s
    expect(brief(decisions)).toEqual(expected);
    expect(decisions.at(-1)!.trigger.endMs).toBe(126_000);
  });
  it('a live streak keeps the state even while the share is low (large window)', () => {
    const c = new Call();
    for (let t = 1000; t <= 20_000; t += 1000) c.customer(t, 'neutral', { durMs: 900 });
    for (const t of [21_000, 22_000, 23_000]) c.customer(t, 'negative', { durMs: 900 });
    for (let t = 33_000; t <= 93_000; t += 10_000) c.agent(t, 'neutral');
    c.customer(100_000, 'negative');
    // the last 20 sentences hold 3 negatives (15 %) all along, but the customer's latest three are negative
    const decisions = evaluateEmotionRule(rule({ windowCount: 20 }), CALL, c.utterances);
    expect(brief(decisions)).toEqual([
      ['customer', 23, 'warning', 'streak', 'open'],
      ['customer', 24, 'critical', 'persistence', 'open'],
    ]);
  });
});

describe('escalation', () => {
  it('persistence: warning → critical once the state lasts escalateAfterMs and the role is still negative', () => {
    const c = new Call();
    for (const t of [2000, 4000, 6000]) c.customer(t, 'negative');
    for (const t of [20_000, 30_000, 40_000, 50_000, 60_000]) c.customer(t, 'neutral');
    c.customer(70_000, 'negative'); // 64 s into warning, but 1/6 negative and no streak: no escalation
    c.customer(72_000, 'negative');
    c.customer(74_000, 'negative'); // streak again → persistence
    expect(brief(evaluateEmotionRule(rule(), CALL, c.utterances))).toEqual([
      ['customer', 3, 'warning', 'streak', 'open'],
      ['customer', 11, 'critical', 'persistence', 'open'],
    ]);
    // a longer second window: the streak is just a re-fire of the warning
    expect(brief(evaluateEmotionRule(rule({ escalateAfterMs: 90_000 }), CALL, c.utterances))).toEqual([
      ['customer', 3, 'warning', 'streak', 'open'],
      ['customer', 11, 'warning', 'streak', 'cooldown'],
    ]);
  });

  it('escalateAfterMs is measured from the start of the warning', () => {
    const decisions = evaluateEmotionRule(rule({ escalateAfterMs: 20_000 }), CALL, fortyNegativeLines().utterances);
    // warning at 13 s; 33 s is the first line at ≥ 20 s later
    expect(decisions.find((d) => d.reason === 'persistence')!.trigger.endMs).toBe(33_000);
  });

  it('agent-negative: the agent turning negative escalates a customer warning', () => {
    const c = new Call();
    for (const t of [2000, 4000, 6000]) c.customer(t, 'negative');
    c.agent(8000, 'neutral');
    const agentNeg = c.agent(10_000, 'negative', { text: '你这人怎么听不懂呢' });
    const decisions = evaluateEmotionRule(rule(), CALL, c.utterances);
    expect(brief(decisions)).toEqual([
      ['customer', 3, 'warning', 'streak', 'open'],
      ['agent', 2, 'critical', 'agent-negative', 'open'],
    ]);
    expect(decisions[1]!.role).toBe('customer');
    expect(decisions[1]!.evidence).toEqual([...c.utterances.slice(0, 3).map(ev), ev(agentNeg)]);
    // 0 disables; 2 needs a second agent negative
    expect(brief(evaluateEmotionRule(rule({ agentNegative: 0 }), CALL, c.utterances))).toHaveLength(1);
    expect(brief(evaluateEmotionRule(rule({ agentNegative: 2 }), CALL, c.utterances))).toHaveLength(1);
    c.agent(12_000, 'negative');
    expect(brief(evaluateEmotionRule(rule({ agentNegative: 2 }), CALL, c.utterances))[1]).toEqual([
      'agent',
      3,
      'critical',
      'agent-negative',
      'open',
    ]);
    // a low-confidence agent sentence is gated like any other
    const gated = new Call();
    for (const t of [2000, 4000, 6000]) gated.customer(t, 'negative');
    gated.agent(10_000, 'negative', { conf: 0.4 });
    expect(brief(evaluateEmotionRule(rule(), CALL, gated.utterances))).toHaveLength(1);
  });

  it('agent-negative: an agent negative in the window span makes the customer warning critical at once', () => {
    const c = new Call();
    c.agent(1000, 'negative', { durMs: 1000 });
    for (const t of [2000, 4000, 6000]) c.customer(t, 'negative');
    expect(brief(evaluateEmotionRule(rule(), CALL, c.utterances))).toEqual([['customer', 3, 'critical', 'agent-negative', 'open']]);
    // an agent negative long before the window does not count
    const late = new Call();
    late.agent(1000, 'negative', { durMs: 1000 });
    for (const t of [100_000, 102_000, 104_000]) late.customer(t, 'negative');
    expect(brief(evaluateEmotionRule(rule(), CALL, late.utterances))).toEqual([['customer', 3, 'warning', 'streak', 'open']]);
  });

  it('keyword: in warning any negative keyword sentence escalates, without the two-in-a-row rule', () => {
    const c = new Call();
    for (const t of [2000, 4000, 6000]) c.customer(t, 'negative');
    c.customer(8000, 'neutral');
    c.customer(10_000, 'negative', { text: '我要打12315举报你们' });
    const decisions = evaluateEmotionRule(rule(), CALL, c.utterances);
    expect(brief(decisions)).toEqual([
      ['customer', 3, 'warning', 'streak', 'open'],
      ['customer', 5, 'critical', 'escalation-keyword', 'open'],
    ]);
    expect(decisions[1]!.matchedKeyword).toBe('12315');
    expect(decisions[1]!.evidence.at(-1)).toMatchObject({ seq: 5, charBegin: 3, charEnd: 8 });
    // a keyword in a non-negative sentence is not an escalation
    const neutralKeyword = new Call();
    for (const t of [2000, 4000, 6000]) neutralKeyword.customer(t, 'negative');
    neutralKeyword.customer(8000, 'neutral', { text: '我要找你们领导' });
    expect(brief(evaluateEmotionRule(rule(), CALL, neutralKeyword.utterances))).toHaveLength(1);
    // custom lexicon replaces the default one
    expect(brief(evaluateEmotionRule(rule({ escalationKeywords: ['消协'] }), CALL, c.utterances))).toEqual([
      ['customer', 3, 'warning', 'streak', 'open'],
      ['customer', 5, 'warning', 'share', 'cooldown'],
    ]);
  });

  it('findEscalationKeyword takes the earliest match, the longer keyword on a tie', () => {
    expect(findEscalationKeyword('我找经理，不然投诉', ['投诉', '经理'])).toEqual({ keyword: '经理', begin: 2, end: 4 });
    expect(findEscalationKeyword('找你们领导', ['找你', '找你们领导'])).toEqual({ keyword: '找你们领导', begin: 0, end: 5 });
    expect(findEscalationKeyword('好的', ['投诉'])).toBeNull();
  });
});

describe('engine input handling', () => {
  it('is order independent on long calls too', () => {
    const c = fortyNegativeLines();
    for (let i = 0; i < 20; i++) c.agent(i * 9000 + 4000, i % 5 ? 'neutral' : 'negative');
    const expected = evaluateEmotionRule(rule(), CALL, c.utterances);
    expect(expected.length).toBeGreaterThan(30);
    expect(evaluateEmotionRule(rule(), CALL, shuffled(c.utterances, 99))).toStrictEqual(expected);
  });

  it('push drops and counts repeats and out-of-order sentences', () => {
    const c = new Call();
    const a = c.customer(2000, 'negative');
    const b = c.customer(4000, 'negative');
    const late = c.agent(3000, 'neutral');
    const engine = new EmotionAlertEngine(rule(), CALL);
    engine.push(a);
    engine.push(b);
    expect(engine.push(b)).toEqual([]);
    expect(engine.push(late)).toEqual([]);
    expect(engine.stats()).toMatchObject({ evaluated: 2, droppedDuplicate: 1, droppedOutOfOrder: 1 });
    expect(engine.snapshot()).toMatchObject({ state: 'calm', negativeRun: 2, windowSize: 2, windowNegative: 2 });
    expect(engine.push(c.customer(6000, 'negative'))).toHaveLength(1);
    expect(engine.stats()).toMatchObject({ open: 1, suppressed: 0 });
  });

  it('bounds the window at MAX_WINDOW_SENTENCES (drop oldest, counted)', () => {
    const c = new Call();
    for (let i = 1; i <= MAX_WINDOW_SENTENCES + 88; i++) c.customer(i * 50, 'neutral', { durMs: 40, text: '好的好的' });
    const engine = new EmotionAlertEngine(rule(), CALL);
    for (const u of c.utterances) engine.push(u);
    expect(engine.stats().windowOverflow).toBe(88);
    expect(engine.snapshot().windowSize).toBe(MAX_WINDOW_SENTENCES);
  });
});
