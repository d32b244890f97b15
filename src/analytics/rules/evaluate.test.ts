import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { paraformerValence } from '../../asr/emotion.js';
import { isRole, type Role } from '../../core/types.js';
import { countSpokenChars } from '../../utterance/char-count.js';
import type { AnalyticsUtterance, Span } from '../types.js';
import { evaluateLiveKeyword, evaluateRules, resolveWindow, selectRules, type RuleInput, type RuleOvertalk } from './evaluate.js';
import { loadRulesFile, parseRulesFile } from './loader.js';
import type { Rule } from './schema.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZH_CALL = path.resolve(HERE, '../../../../shared/fixtures/calls/zh-billing-complaint');
const STARTER = path.resolve(HERE, '../../../rules/zh-starter.yaml');

function utt(role: Role, seq: number, startMs: number, endMs: number, text: string): AnalyticsUtterance {
  return {
    role,
    seq,
    startMs,
    endMs,
    text,
    charCount: countSpokenChars(text),
    words: [],
    emotionRaw: null,
    emotionConfidence: null,
    valence: null,
    arousal: null,
    model: 'paraformer-realtime-8k-v2',
  };
}

/** Rules from YAML list items (the real schema), e.g. rules('- id: a\n  version: 1 …'). */
function rules(items: string): Rule[] {
  return [...parseRulesFile(`rules:\n${items.replace(/^/gm, '  ')}\n`, 'test.yaml').rules];
}

function keyword(config: string, extra = ''): Rule[] {
  return rules(`- id: kw\n  version: 1\n  name: kw\n  kind: keyword\n  severity: warning\n${extra}  config: ${config}`);
}

const input = (utterances: AnalyticsUtterance[], over: Partial<RuleInput> = {}): RuleInput => ({
  utterances,
  durationMs: 60_000,
  silences: [],
  overtalks: [],
  ...over,
});

describe('evaluateRules: keyword', () => {
  const call = [
    utt('agent', 1, 0, 3000, '您好，请问有什么可以帮您？'),
    utt('customer', 1, 3500, 6000, '我要投诉！你们乱扣费，我要投诉。'),
    utt('agent', 2, 6500, 9000, '您别着急，不要投诉。'),
    utt('customer', 2, 9500, 12_000, '我找你们领导。'),
  ];

  it('match any: one hit per matching sentence of the role, with char offsets', () => {
    const hits = evaluateRules(keyword('{ phrases: [投诉, 找你们领导] }', '  role: customer\n'), input(call));
    expect(hits).toHaveLength(2);
    const [first, second] = hits;
    expect(first).toMatchObject({ ruleId: 'kw', ruleVersion: 1, kind: 'keyword', role: 'customer', severity: 'warning', startMs: 3500, endMs: 6000, seqFrom: 1, seqTo: 1, matched: ['投诉'] });
    const text = call[1]!.text;
    expect(first!.evidence.map((e) => text.slice(e.charBegin, e.charEnd))).toEqual(['投诉', '投诉']);
    expect(first!.evidence.map((e) => e.charBegin)).toEqual([2, 13]);
    expect(second).toMatchObject({ seqFrom: 2, matched: ['找你们领导'], evidence: [{ role: 'customer', seq: 2, charBegin: 1, charEnd: 6 }] });
  });

  it('role any searches both roles', () => {
    const hits = evaluateRules(keyword('{ phrases: [投诉] }'), input(call));
    expect(hits.map((h) => [h.role, h.seqFrom])).toEqual([
      ['customer', 1],
      ['agent', 2],
    ]);
  });

  it('a sentence is in a window when it starts inside it', () => {
    const starts = (window: string, durationMs = 60_000) =>
      evaluateRules(keyword(`{ phrases: [投诉, 领导], window: ${window} }`), input(call, { durationMs })).map((h) => h.startMs);
    // [0, 6500): the customer's sentence ending at 6000 and not the agent's starting at 6500
    expect(starts('{ first: { ms: 6500 } }')).toEqual([3500]);
    expect(starts('{ first: { ms: 6501 } }')).toEqual([3500, 6500]);
    // 10 % of 40 s = 4 s
    expect(starts('{ first: { percent: 10 } }', 40_000)).toEqual([3500]);
    // last 30 s of a 40 s call: from 10 s; the last sentence starts at 9.5 s
    expect(starts('{ last: { ms: 30000 } }', 40_000)).toEqual([]);
    expect(starts('{ last: { percent: 80 } }', 40_000)).toEqual([9500]);
    expect(starts('{ fromMs: 4000, toMs: 9500 }')).toEqual([6500]);
    expect(starts('{ fromPercent: 10, toPercent: 100 }', 60_000)).toEqual([6500, 9500]);
  });

  it('match all: one hit when every phrase occurs in the window, across sentences', () => {
    const hits = evaluateRules(keyword('{ phrases: [投诉, 领导], match: all }', '  role: customer\n'), input(call));
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatchObject({ role: 'customer', startMs: 3500, endMs: 12_000, seqFrom: 1, seqTo: 2, matched: ['投诉', '领导'] });
    expect(hits[0]!.evidence.map((e) => e.seq)).toEqual([1, 1, 2]);
    expect(evaluateRules(keyword('{ phrases: [投诉, 经理], match: all }'), input(call))).toEqual([]);
  });

  it('proximity: an a term within N characters of a b term', () => {
    const r = (n: number) => keyword(`{ proximity: { a: 乱扣费, b: [投诉], withinChars: ${n} } }`);
    // "乱扣费，我要投诉": 2 characters between
    expect(evaluateRules(r(1), input(call))).toEqual([]);
    const hits = evaluateRules(r(2), input(call));
    expect(hits).toHaveLength(1);
    expect(call[1]!.text.slice(hits[0]!.evidence[0]!.charBegin, hits[0]!.evidence[0]!.charEnd)).toBe('投诉！你们乱扣费'); // the nearer 投诉 (2 characters) comes first
    expect(hits[0]!.matched).toEqual(['乱扣费', '投诉']);
  });

  it('negate: hits once when the phrases are NOT said in the window', () => {
    const r = (phrases: string, window = '{ first: { ms: 15000 } }') =>
      keyword(`{ phrases: ${phrases}, window: ${window}, negate: true }`, '  role: agent\n');
    expect(evaluateRules(r('[您好]'), input(call))).toEqual([]);
    const hits = evaluateRules(r('[录音, 工号]'), input(call));
    expect(hits).toEqual([
      {
        ruleId: 'kw',
        ruleVersion: 1,
        kind: 'keyword',
        role: 'agent',
        severity: 'warning',
        startMs: 0,
        endMs: 15_000,
        matched: [],
        evidence: [],
        details: { missing: ['录音', '工号'], windowStartMs: 0, windowEndMs: 15_000 },
      },
    ]);
    // the window is clamped to the call; a window that starts after the call never opened
    expect(evaluateRules(r('[录音]', '{ fromMs: 30000 }'), input(call, { durationMs: 40_000 }))[0]).toMatchObject({ startMs: 30_000, endMs: 40_000 });
    expect(evaluateRules(r('[录音]', '{ fromMs: 30000 }'), input(call, { durationMs: 20_000 }))).toEqual([]);
  });

  it('absence is sugar for a negated keyword rule (any: none said; all: not all said)', () => {
    const absence = (phrases: string, match: string) =>
      rules(`- id: ab\n  version: 3\n  name: ab\n  kind: absence\n  role: agent\n  severity: info\n  config: { phrases: ${phrases}, match: ${match}, window: { first: { ms: 10000 } } }`);
    expect(evaluateRules(absence('[您好, 录音]', 'any'), input(call))).toEqual([]);
    const hits = evaluateRules(absence('[您好, 录音]', 'all'), input(call));
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatchObject({ ruleId: 'ab', ruleVersion: 3, kind: 'absence', role: 'agent', matched: ['您好'], details: { missing: ['录音'] } });
    // the customer's 领导 does not count for an agent rule
    expect(evaluateRules(absence('[领导]', 'any'), input(call))).toHaveLength(1);
  });

  it('is deterministic whatever the input order', () => {
    const pack = [...keyword('{ phrases: [投诉, 领导] }'), ...keyword('{ phrases: [您] }').map((r) => ({ ...r, id: 'other' }))];
    const a = evaluateRules(pack, input(call));
    const b = evaluateRules(pack, input([...call].reverse()));
    expect(b).toEqual(a);
    expect(a.map((h) => `${h.startMs}:${h.ruleId}`)).toEqual(['0:other', '3500:kw', '6500:kw', '6500:other', '9500:kw']);
  });
});

describe('evaluateRules: silence, interruption, skipped rules', () => {
  it('silence: one hit per silence of at least minMs', () => {
    const silences: Span[] = [
      { startMs: 1000, endMs: 20_999 },
      { startMs: 30_000, endMs: 50_000 },
      { startMs: 51_000, endMs: 80_000 },
    ];
    const r = rules('- id: s\n  version: 1\n  name: s\n  kind: silence\n  severity: warning\n  config: { minMs: 20000 }');
    const hits = evaluateRules(r, input([], { silences }));
    expect(hits.map((h) => [h.startMs, h.endMs, h.role, h.details])).toEqual([
      [30_000, 50_000, null, { durationMs: 20_000 }],
      [51_000, 80_000, null, { durationMs: 29_000 }],
    ]);
  });

  describe('interruption', () => {
    const call = [
      utt('customer', 1, 0, 10_000, '我这个月的话费怎么多扣了？'),
      utt('agent', 1, 8000, 12_000, '您听我说'),
      utt('customer', 2, 20_000, 30_000, '我不想听'),
      utt('agent', 2, 25_000, 32_000, '先生您听我说'),
      utt('customer', 3, 100_000, 110_000, '好吧'),
      utt('agent', 3, 109_500, 112_000, '嗯'),
    ];
    const overtalks: RuleOvertalk[] = [
      { by: 'agent', over: 'customer', startMs: 8000, endMs: 10_000, overlapMs: 2000 },
      { by: 'agent', over: 'customer', startMs: 25_000, endMs: 30_000, overlapMs: 5000 },
      { by: 'agent', over: 'customer', startMs: 109_500, endMs: 110_000, overlapMs: 500 },
      { by: 'customer', over: 'agent', startMs: 111_000, endMs: 112_000, overlapMs: 1000 },
    ];
    const r = (config: string, role = 'agent') =>
      rules(`- id: i\n  version: 1\n  name: i\n  kind: interruption\n  role: ${role}\n  severity: warning\n  config: ${config}`);

    it('counts the role’s overtalks of at least minOverlapMs, with the interrupting sentences as evidence', () => {
      const hits = evaluateRules(r('{ minOverlapMs: 1000, minCount: 2 }'), input(call, { overtalks }));
      expect(hits).toHaveLength(1);
      expect(hits[0]).toMatchObject({ kind: 'interruption', role: 'agent', startMs: 8000, endMs: 30_000, seqFrom: 1, seqTo: 2, details: { count: 2, overlapMs: 7000 } });
      expect(hits[0]!.evidence.map((e) => [e.role, e.seq])).toEqual([
        ['agent', 1],
        ['agent', 2],
      ]);
      expect(evaluateRules(r('{ minOverlapMs: 1000, minCount: 3 }'), input(call, { overtalks }))).toEqual([]);
      expect(evaluateRules(r('{ minOverlapMs: 500, minCount: 3 }'), input(call, { overtalks }))).toHaveLength(1);
      // role any counts the customer's too
      expect(evaluateRules(r('{ minOverlapMs: 1000, minCount: 3 }', 'any'), input(call, { overtalks }))[0]).toMatchObject({ role: null, details: { count: 3 } });
    });

    it('windowMs: minCount overtalks whose starts lie within windowMs', () => {
      expect(evaluateRules(r('{ minOverlapMs: 500, minCount: 2, windowMs: 16000 }'), input(call, { overtalks }))).toEqual([]);
      const hits = evaluateRules(r('{ minOverlapMs: 500, minCount: 2, windowMs: 17000 }'), input(call, { overtalks }));
      expect(hits.map((h) => [h.startMs, h.details])).toEqual([[8000, { count: 2, overlapMs: 7000 }]]);
      const all = evaluateRules(r('{ minOverlapMs: 0, minCount: 1, windowMs: 2000 }', 'any'), input(call, { overtalks }));
      expect(all.map((h) => h.startMs)).toEqual([8000, 25_000, 109_500]);
      expect(all[2]!.details).toEqual({ count: 2, overlapMs: 1500 });
    });
  });

  it('skips disabled, realtime-only and emotion_window rules', () => {
    const call = [utt('customer', 1, 0, 1000, '投诉')];
    const pack = rules(
      [
        '- { id: off, version: 1, name: off, kind: keyword, enabled: false, severity: info, config: { phrases: [投诉] } }',
        '- { id: live, version: 1, name: live, kind: keyword, scope: realtime, severity: info, config: { phrases: [投诉] } }',
        '- { id: emo, version: 1, name: emo, kind: emotion_window, scope: both, severity: info, config: {} }',
        '- { id: on, version: 1, name: on, kind: keyword, scope: both, severity: info, config: { phrases: [投诉] } }',
      ].join('\n'),
    );
    expect(evaluateRules(pack, input(call)).map((h) => h.ruleId)).toEqual(['on']);
    expect(evaluateLiveKeyword(pack, call[0]!).map((h) => h.ruleId)).toEqual(['live', 'on']);
  });
});

describe('evaluateLiveKeyword', () => {
  const live = (config: string, extra = '  scope: both\n') => keyword(config, extra);

  it('gives the same hit for a sentence as the post-call evaluation', () => {
    const u = utt('customer', 4, 44_723, 46_725, '太过分了，我要投诉你们！');
    const r = live('{ phrases: [投诉], window: { first: { ms: 60000 } } }');
    expect(evaluateLiveKeyword(r, u)).toEqual(evaluateRules(r, input([u])));
    expect(evaluateLiveKeyword(r, u)).toHaveLength(1);
    expect(evaluateLiveKeyword(r, { ...u, startMs: 60_000 })).toEqual([]);
    expect(evaluateLiveKeyword(live('{ phrases: [投诉] }', '  scope: both\n  role: agent\n'), u)).toEqual([]);
  });

  it('match all fires once, on the sentence that completes the set', () => {
    const r = live('{ phrases: [投诉, 领导], match: all }');
    const a = utt('customer', 1, 0, 1000, '我要投诉');
    const b = utt('customer', 2, 2000, 3000, '投诉你们');
    const c = utt('customer', 3, 4000, 5000, '找你们领导');
    const d = utt('customer', 4, 6000, 7000, '领导呢');
    expect(evaluateLiveKeyword(r, a, { earlier: [] })).toEqual([]);
    expect(evaluateLiveKeyword(r, b, { earlier: [a] })).toEqual([]);
    const hits = evaluateLiveKeyword(r, c, { earlier: [b, a, c] });
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatchObject({ startMs: 0, endMs: 5000, seqFrom: 1, seqTo: 3, matched: ['投诉', '领导'] });
    expect(evaluateLiveKeyword(r, d, { earlier: [a, b, c] })).toEqual([]);
  });
});

describe('selectRules', () => {
  const pack = rules(
    [
      '- { id: a, version: 3, name: a, kind: keyword, scope: both, severity: info, config: { phrases: [x] } }',
      '- { id: a, version: 2, name: a, kind: keyword, scope: both, severity: info, config: { phrases: [x] } }',
      '- { id: a, version: 1, name: a, kind: keyword, scope: both, tenant: acme, severity: info, config: { phrases: [y] } }',
      '- { id: b, version: 1, name: b, kind: silence, severity: info, config: { minMs: 1 } }',
      '- { id: c, version: 1, name: c, kind: keyword, scope: realtime, severity: info, enabled: false, config: { phrases: [x] } }',
      '- { id: d, version: 1, name: d, kind: keyword, scope: realtime, tenant: other, severity: info, config: { phrases: [x] } }',
    ].join('\n'),
  );
  const pick = (tenant: string | null, phase: 'realtime' | 'postcall') => selectRules(pack, { tenant, phase }).map((r) => `${r.id}@${r.version}${r.tenant ? `/${r.tenant}` : ''}`);

  it('keeps enabled rules of the tenant and phase, one version per id', () => {
    expect(pick(null, 'postcall')).toEqual(['a@3', 'b@1']);
    expect(pick(null, 'realtime')).toEqual(['a@3']);
    // a tenant's own rule overrides the global ones with the same id, whatever their version
    expect(pick('acme', 'postcall')).toEqual(['a@1/acme', 'b@1']);
    expect(pick('other', 'realtime')).toEqual(['a@3', 'd@1/other']);
  });
});

describe('resolveWindow', () => {
  it('needs the duration for percent and last windows', () => {
    expect(resolveWindow({ type: 'first', length: { unit: 'percent', value: 10 } }, null)).toBeNull();
    expect(resolveWindow({ type: 'last', length: { unit: 'ms', value: 10 } }, null)).toBeNull();
    expect(resolveWindow({ type: 'range', unit: 'ms', from: 5, to: null }, null)).toEqual({ fromMs: 5, toMs: Infinity });
    expect(resolveWindow({ type: 'range', unit: 'percent', from: 25, to: 50 }, 1000)).toEqual({ fromMs: 250, toMs: 500 });
  });
});

// ---------------------------------------------------------------------------------------------
// The starter pack on the zh-billing-complaint fixture

interface ScriptLine {
  role: string;
  text: string;
  startMs: number;
  endMs: number;
  emotion: { paraformer: { tag: string; confidence: number } };
}

function fixtureCall(): { utterances: AnalyticsUtterance[]; durationMs: number; lines: ScriptLine[] } {
  const script = JSON.parse(readFileSync(path.join(ZH_CALL, 'script.json'), 'utf8')) as { durationMs: number; lines: ScriptLine[] };
  const seq = { agent: 0, customer: 0 };
  const utterances = script.lines.map((l): AnalyticsUtterance => {
    if (!isRole(l.role)) throw new Error(`bad role ${l.role}`);
    const p = l.emotion.paraformer;
    return {
      ...utt(l.role, ++seq[l.role], l.startMs, l.endMs, l.text),
      emotionRaw: p.tag,
      emotionConfidence: p.confidence,
      valence: paraformerValence(p.tag),
    };
  });
  return { utterances, durationMs: script.durationMs, lines: script.lines };
}

/** Gaps in the union of the sentences, and who started talking over whom (test-only metrics). */
function timeline(us: readonly AnalyticsUtterance[], durationMs: number): { silences: Span[]; overtalks: RuleOvertalk[] } {
  const sorted = [...us].sort((a, b) => a.startMs - b.startMs);
  const silences: Span[] = [];
  const overtalks: RuleOvertalk[] = [];
  let end = 0;
  for (const u of sorted) {
    if (u.startMs > end) silences.push({ startMs: end, endMs: u.startMs });
    for (const o of sorted) {
      if (o.role !== u.role && o.startMs < u.startMs && u.startMs < o.endMs) {
        const e = Math.min(o.endMs, u.endMs);
        overtalks.push({ by: u.role, over: o.role, startMs: u.startMs, endMs: e, overlapMs: e - u.startMs });
      }
    }
    end = Math.max(end, u.endMs);
  }
  if (durationMs > end) silences.push({ startMs: end, endMs: durationMs });
  return { silences, overtalks };
}

describe('rules/zh-starter.yaml on zh-billing-complaint', () => {
  const pack = loadRulesFile(STARTER).rules;
  const { utterances, durationMs, lines } = fixtureCall();
  const { silences, overtalks } = timeline(utterances, durationMs);
  const hits = evaluateRules(pack, { utterances, durationMs, silences, overtalks });
  const ids = (id: string) => hits.filter((h) => h.ruleId === id);

  it('uses the fixture as described (6 s of dead air, one short overtalk by the agent)', () => {
    expect(Math.max(...silences.map((s) => s.endMs - s.startMs))).toBe(6000);
    expect(overtalks).toEqual([{ by: 'agent', over: 'customer', startMs: 46_025, endMs: 46_725, overlapMs: 700 }]);
  });

  it('greeting said: no greeting hit', () => {
    expect(ids('zh.greeting-missing')).toEqual([]);
  });

  it('recording disclosure not said: exactly one absence hit', () => {
    const absences = hits.filter((h) => h.kind === 'absence');
    expect(absences).toHaveLength(1);
    expect(absences[0]).toMatchObject({ ruleId: 'zh.recording-disclosure-missing', role: 'agent', startMs: 0, endMs: 15_000, evidence: [] });
  });

  it('complaint: 投诉 on line 7 (customer sentence 4) with char offsets', () => {
    const complaint = ids('zh.complaint-escalation');
    expect(complaint).toHaveLength(1);
    const line7 = lines[6]!;
    expect(complaint[0]).toMatchObject({ role: 'customer', seqFrom: 4, seqTo: 4, startMs: line7.startMs, endMs: line7.endMs, matched: ['投诉'], severity: 'warning' });
    const [ev] = complaint[0]!.evidence;
    expect(ev).toMatchObject({ role: 'customer', seq: 4, charBegin: 7, charEnd: 9, emotionRaw: 'negative', valence: -1 });
    expect(line7.text.slice(ev!.charBegin, ev!.charEnd)).toBe('投诉');
    // live evaluation of that sentence gives the same hit
    expect(evaluateLiveKeyword(selectRules(pack, { tenant: null, phase: 'realtime' }), utterances[6]!)).toEqual(complaint);
  });

  it('no forbidden agent phrase, no regulatory threat (12345 inside the phone number does not count)', () => {
    expect(ids('zh.agent-forbidden-phrases')).toEqual([]);
    expect(lines[3]!.text).toContain('12345');
    expect(ids('zh.regulatory-threat')).toEqual([]);
  });

  it('identity check found on the agent asking for the phone number; no silence or interruption hit', () => {
    const identity = ids('zh.identity-check');
    expect(identity).toHaveLength(1);
    const ev = identity[0]!.evidence[0]!;
    expect(lines[2]!.text.slice(ev.charBegin, ev.charEnd)).toBe('提供一下手机号');
    expect(ids('zh.long-silence')).toEqual([]);
    expect(ids('zh.agent-interruption')).toEqual([]);
    expect(hits.map((h) => h.ruleId).sort()).toEqual(['zh.complaint-escalation', 'zh.identity-check', 'zh.recording-disclosure-missing']);
  });
});
