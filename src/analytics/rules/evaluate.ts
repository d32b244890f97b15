/**
 * Evaluates QA rules (./schema.ts) over a call: post-call over everything (`evaluateRules`),
 * or live on one final sentence (`evaluateLiveKeyword`, realtime/both keyword rules). Pure and
 * deterministic: the same input gives the same hits in the same order.
 *
 * Conventions (qa-analytics.md §2.3):
 * - Time windows are on the call timeline; "first N s / N %" is measured from the call start
 *   and percentages on `durationMs`. A sentence is in a window when it STARTS inside it.
 * - keyword, match any: one hit per sentence that matches (the same hit live and post-call).
 *   match all: one hit when every phrase occurs somewhere in the window (live: on the sentence
 *   that completes the set). Phrase matching: ./match.ts (folded text, char offsets).
 * - keyword with negate, and absence (sugar for it): one hit when the condition is not met by
 *   the window's end; no hit when the window starts after the call ended.
 * - silence: one hit per silence ≥ minMs. interruption: the rule's role is `by` (who starts
 *   talking over the other); overtalks shorter than minOverlapMs are ignored.
 * - emotion_window rules belong to the alert engine and are skipped here.
 */
import type { Role } from '../../core/types.js';
import { byTimeline, type AnalyticsUtterance, type EvidenceRef, type Severity, type Span } from '../types.js';
import { findOccurrences, findProximity, foldPhrase, foldText, outermost, type FoldedText, type Occurrence, type ProximityMatch } from './match.js';
import type { InterruptionRule, PhraseMatch, ProximityConfig, Rule, RuleKind, RuleRole, RuleWindow, SilenceRule } from './schema.js';

/** An overtalk event from the metrics (`OvertalkEvent` in ../metrics.ts fits). */
export interface RuleOvertalk {
  /** Who started talking while the other was speaking. */
  readonly by: Role;
  readonly over: Role;
  readonly startMs: number;
  readonly endMs: number;
  readonly overlapMs: number;
}

export interface RuleInput {
  readonly utterances: readonly AnalyticsUtterance[];
  readonly durationMs: number;
  /** Stretches where neither side speaks (the metrics' silences). */
  readonly silences: readonly Span[];
  readonly overtalks: readonly RuleOvertalk[];
}

export interface RuleHit {
  readonly ruleId: string;
  readonly ruleVersion: number;
  readonly kind: RuleKind;
  /** The one role the evidence belongs to; null: both, or call-level (silence). */
  readonly role: Role | null;
  readonly severity: Severity;
  readonly startMs: number;
  readonly endMs: number;
  /** Sentence range of `role` (absent when role is null or there is no sentence evidence). */
  readonly seqFrom?: number;
  readonly seqTo?: number;
  /** Phrases (as written in the rule) that matched. */
  readonly matched: readonly string[];
  readonly evidence: readonly EvidenceRef[];
  readonly details?: Readonly<Record<string, unknown>>;
}

/** What a live evaluation knows besides the new sentence. */
export interface LiveContext {
  /** The call's earlier final sentences (only `match: all` rules read them). */
  readonly earlier?: readonly AnalyticsUtterance[];
}

/**
 * The rules that apply to a call of `tenant` in `phase`: enabled, for every tenant or this one,
 * scoped to the phase (`both` fits either), one version per id: a tenant's own rule overrides
 * a global rule with the same id; otherwise the highest version wins. In input order.
 */
export function selectRules(
  rules: readonly Rule[],
  options: { readonly tenant: string | null; readonly phase: 'realtime' | 'postcall' },
): Rule[] {
  const best = new Map<string, Rule>();
  for (const r of rules) {
    if (!r.enabled || (r.tenant !== null && r.tenant !== options.tenant)) continue;
    if (r.scope !== 'both' && r.scope !== options.phase) continue;
    const cur = best.get(r.id);
    const better =
      cur === undefined ||
      (r.tenant !== null && cur.tenant === null) ||
      ((r.tenant !== null) === (cur.tenant !== null) && r.version > cur.version);
    if (better) best.set(r.id, r);
  }
  const chosen = new Set(best.values());
  return rules.filter((r) => chosen.has(r));
}

/** Post-call evaluation of every enabled postcall/both rule (emotion_window excluded). */
export function evaluateRules(rules: readonly Rule[], input: RuleInput): RuleHit[] {
  const utterances = [...input.utterances].sort(byTimeline);
  const callEnd = utterances.reduce((end, u) => Math.max(end, u.endMs), input.durationMs);
  const hits: RuleHit[] = [];
  for (const rule of rules) {
    if (!rule.enabled || rule.scope === 'realtime') continue;
    switch (rule.kind) {
      case 'keyword':
      case 'absence': {
        const k = rule.kind === 'keyword' ? rule.config : { ...rule.config, negate: true, proximity: null };
        const window = resolveWindow(k.window, input.durationMs);
        if (window === null) break;
        const inWindow = utterances.filter((u) => roleFits(rule.role, u.role) && inside(window, u.startMs));
        const cond = compile(rule.config, k.phrases, k.proximity);
        if (k.negate) {
          if (window.fromMs >= callEnd) break; // the window never opened
          const results = inWindow.map((u) => matchSentence(cond, u));
          if (!windowMet(cond, k.match, results)) {
            hits.push(absenceHit(rule, cond, results, { fromMs: window.fromMs, toMs: Math.min(window.toMs, callEnd) }));
          }
        } else if (k.match === 'any') {
          for (const u of inWindow) {
            const r = matchSentence(cond, u);
            if (sentenceMet(cond, r)) hits.push(keywordHit(rule, cond, [r]));
          }
        } else {
          const results = inWindow.map((u) => matchSentence(cond, u));
          if (windowMet(cond, 'all', results)) hits.push(keywordHit(rule, cond, results.filter(contributes)));
        }
        break;
      }
      case 'silence':
        hits.push(...silenceHits(rule, input.silences));
        break;
      case 'interruption':
        hits.push(...interruptionHits(rule, input.overtalks, utterances));
        break;
      case 'emotion_window':
        break;
    }
  }
  return hits.sort(
    (a, b) =>
      a.startMs - b.startMs ||
      a.endMs - b.endMs ||
      (a.ruleId < b.ruleId ? -1 : a.ruleId > b.ruleId ? 1 : 0) ||
      a.ruleVersion - b.ruleVersion ||
      (a.seqFrom ?? 0) - (b.seqFrom ?? 0),
  );
}

/**
 * Live evaluation of one final sentence against the realtime/both, non-negated keyword rules
 * (the schema allows live rules only windows in ms from the start). A `match: any` rule hits
 * on every matching sentence; a `match: all` rule on the sentence that completes its set
 * (with `context.earlier`). Hits in rule order.
 */
export function evaluateLiveKeyword(rules: readonly Rule[], utterance: AnalyticsUtterance, context: LiveContext = {}): RuleHit[] {
  const hits: RuleHit[] = [];
  for (const rule of rules) {
    if (rule.kind !== 'keyword' || !rule.enabled || rule.scope === 'postcall' || rule.config.negate) continue;
    const k = rule.config;
    const window = resolveWindow(k.window, null);
    if (window === null || !roleFits(rule.role, utterance.role) || !inside(window, utterance.startMs)) continue;
    const cond = compile(k, k.phrases, k.proximity);
    const current = matchSentence(cond, utterance);
    if (k.match === 'any') {
      if (sentenceMet(cond, current)) hits.push(keywordHit(rule, cond, [current]));
      continue;
    }
    if (!contributes(current)) continue;
    const earlier = (context.earlier ?? [])
      .filter((u) => !(u.role === utterance.role && u.seq === utterance.seq))
      .filter((u) => roleFits(rule.role, u.role) && inside(window, u.startMs))
      .sort(byTimeline)
      .map((u) => matchSentence(cond, u));
    if (windowMet(cond, 'all', [...earlier, current]) && !windowMet(cond, 'all', earlier)) {
      hits.push(keywordHit(rule, cond, [...earlier, current].filter(contributes)));
    }
  }
  return hits;
}

/** [fromMs, toMs) of a window; `durationMs` null (live): only windows in ms from the start. */
export function resolveWindow(window: RuleWindow | null, durationMs: number | null): { fromMs: number; toMs: number } | null {
  if (window === null) return { fromMs: 0, toMs: Infinity };
  const ms = (unit: 'ms' | 'percent', value: number): number | null =>
    unit === 'ms' ? value : durationMs === null ? null : (value * durationMs) / 100;
  switch (window.type) {
    case 'first': {
      const len = ms(window.length.unit, window.length.value);
      return len === null ? null : { fromMs: 0, toMs: len };
    }
    case 'last': {
      const len = ms(window.length.unit, window.length.value);
      return len === null || durationMs === null ? null : { fromMs: Math.max(0, durationMs - len), toMs: Infinity };
    }
    case 'range': {
      const from = ms(window.unit, window.from);
      const to = window.to === null ? Infinity : ms(window.unit, window.to);
      return from === null || to === null ? null : { fromMs: from, toMs: to };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Keyword matching

interface Compiled {
  /** Phrases as written / folded, same order. */
  readonly phrases: readonly string[];
  readonly folded: readonly string[];
  readonly proximity: (ProximityConfig & { readonly aFolded: readonly string[]; readonly bFolded: readonly string[] }) | null;
}

interface SentenceResult {
  readonly u: AnalyticsUtterance;
  /** Indexes of the phrases found (overlaps included). */
  readonly found: ReadonlySet<number>;
  /** Occurrences for evidence (those inside a longer one dropped). */
  readonly kept: readonly Occurrence[];
  readonly prox: readonly ProximityMatch[];
}

const compiledCache = new WeakMap<object, Compiled>();
const foldedCache = new WeakMap<AnalyticsUtterance, FoldedText>();

function compile(key: object, phrases: readonly string[], proximity: ProximityConfig | null): Compiled {
  let c = compiledCache.get(key);
  if (!c) {
    c = {
      phrases,
      folded: phrases.map(foldPhrase),
      proximity: proximity && { ...proximity, aFolded: proximity.a.map(foldPhrase), bFolded: proximity.b.map(foldPhrase) },
    };
    compiledCache.set(key, c);
  }
  return c;
}

function matchSentence(c: Compiled, u: AnalyticsUtterance): SentenceResult {
  let folded = foldedCache.get(u);
  if (!folded) {
    folded = foldText(u.text);
    foldedCache.set(u, folded);
  }
  const all = findOccurrences(folded, c.folded);
  const p = c.proximity;
  return {
    u,
    found: new Set(all.map((o) => o.phrase)),
    kept: outermost(all),
    prox: p ? findProximity(folded, p.aFolded, p.bFolded, p.withinChars) : [],
  };
}

function sentenceMet(c: Compiled, r: SentenceResult): boolean {
  return (c.phrases.length === 0 || r.found.size > 0) && (c.proximity === null || r.prox.length > 0);
}

function windowMet(c: Compiled, match: PhraseMatch, results: readonly SentenceResult[]): boolean {
  if (match === 'any') return results.some((r) => sentenceMet(c, r));
  const found = new Set(results.flatMap((r) => [...r.found]));
  return found.size === c.phrases.length && (c.proximity === null || results.some((r) => r.prox.length > 0));
}

function contributes(r: SentenceResult): boolean {
  return r.found.size > 0 || r.prox.length > 0;
}

function evidenceOf(r: SentenceResult): EvidenceRef[] {
  const spans = new Map<string, { charBegin: number; charEnd: number }>();
  for (const s of [...r.kept, ...r.prox]) spans.set(`${s.charBegin}:${s.charEnd}`, { charBegin: s.charBegin, charEnd: s.charEnd });
  return [...spans.values()]
    .sort((a, b) => a.charBegin - b.charBegin || a.charEnd - b.charEnd)
    .map((s) => ({
      role: r.u.role,
      seq: r.u.seq,
      startMs: r.u.startMs,
      endMs: r.u.endMs,
      emotionRaw: r.u.emotionRaw,
      emotionConfidence: r.u.emotionConfidence,
      valence: r.u.valence,
      ...s,
    }));
}

function matchedOf(c: Compiled, results: readonly SentenceResult[]): string[] {
  const out = new Set<string>();
  for (const r of results) {
    for (const o of r.kept) out.add(c.phrases[o.phrase]!);
    for (const m of r.prox) {
      out.add(c.proximity!.a[m.a.phrase]!);
      out.add(c.proximity!.b[m.b.phrase]!);
    }
  }
  return [...out];
}

function keywordHit(rule: Rule, c: Compiled, results: readonly SentenceResult[]): RuleHit {
  const roles = new Set(results.map((r) => r.u.role));
  const role = roles.size === 1 ? results[0]!.u.role : null;
  const seqs = results.map((r) => r.u.seq);
  return {
    ...ruleRef(rule),
    role,
    startMs: Math.min(...results.map((r) => r.u.startMs)),
    endMs: Math.max(...results.map((r) => r.u.endMs)),
    ...(role === null ? {} : { seqFrom: Math.min(...seqs), seqTo: Math.max(...seqs) }),
    matched: matchedOf(c, results),
    evidence: results.flatMap(evidenceOf),
  };
}

function absenceHit(rule: Rule, c: Compiled, results: readonly SentenceResult[], window: { fromMs: number; toMs: number }): RuleHit {
  const found = new Set(results.flatMap((r) => [...r.found]));
  return {
    ...ruleRef(rule),
    role: rule.role === 'any' ? null : rule.role,
    startMs: window.fromMs,
    endMs: window.toMs,
    matched: c.phrases.filter((_, i) => found.has(i)),
    evidence: [],
    details: { missing: c.phrases.filter((_, i) => !found.has(i)), windowStartMs: window.fromMs, windowEndMs: window.toMs },
  };
}

// ---------------------------------------------------------------------------------------------
// Silence and interruption

function silenceHits(rule: SilenceRule, silences: readonly Span[]): RuleHit[] {
  return silences
    .filter((s) => s.endMs - s.startMs >= rule.config.minMs)
    .map((s) => ({
      ...ruleRef(rule),
      role: null,
      startMs: s.startMs,
      endMs: s.endMs,
      matched: [],
      evidence: [],
      details: { durationMs: s.endMs - s.startMs },
    }));
}

function interruptionHits(rule: InterruptionRule, overtalks: readonly RuleOvertalk[], utterances: readonly AnalyticsUtterance[]): RuleHit[] {
  const { minOverlapMs, minCount, windowMs } = rule.config;
  const events = overtalks
    .filter((o) => roleFits(rule.role, o.by) && o.overlapMs >= minOverlapMs)
    .sort((a, b) => a.startMs - b.startMs || a.endMs - b.endMs || (a.by < b.by ? -1 : a.by > b.by ? 1 : 0));
  const groups: RuleOvertalk[][] = [];
  if (windowMs === null) {
    if (events.length >= minCount && events.length > 0) groups.push(events);
  } else {
    let i = 0;
    while (i + minCount - 1 < events.length) {
      const first = events[i]!;
      if (events[i + minCount - 1]!.startMs - first.startMs <= windowMs) {
        let k = i + minCount - 1;
        while (k + 1 < events.length && events[k + 1]!.startMs - first.startMs <= windowMs) k++;
        groups.push(events.slice(i, k + 1));
        i = k + 1;
      } else {
        i++;
      }
    }
  }
  return groups.map((g) => {
    const evidence = g.flatMap((o) => {
      const u = interrupterSentence(o, utterances);
      return u ? [{ role: u.role, seq: u.seq, startMs: u.startMs, endMs: u.endMs, emotionRaw: u.emotionRaw, valence: u.valence }] : [];
    });
    const roles = new Set(g.map((o) => o.by));
    const role = roles.size === 1 ? g[0]!.by : null;
    const seqs = evidence.map((e) => e.seq);
    return {
      ...ruleRef(rule),
      role,
      startMs: g[0]!.startMs,
      endMs: Math.max(...g.map((o) => o.endMs)),
      ...(role !== null && seqs.length > 0 ? { seqFrom: Math.min(...seqs), seqTo: Math.max(...seqs) } : {}),
      matched: [],
      evidence,
      details: { count: g.length, overlapMs: g.reduce((n, o) => n + o.overlapMs, 0) },
    };
  });
}

/** The interrupter's sentence that was running when the overtalk started (latest start ≤ it). */
function interrupterSentence(o: RuleOvertalk, utterances: readonly AnalyticsUtterance[]): AnalyticsUtterance | null {
  let best: AnalyticsUtterance | null = null;
  for (const u of utterances) {
    if (u.role === o.by && u.startMs <= o.startMs && o.startMs < u.endMs && (best === null || u.startMs > best.startMs)) best = u;
  }
  return best;
}

// ---------------------------------------------------------------------------------------------

function ruleRef(rule: Rule): Pick<RuleHit, 'ruleId' | 'ruleVersion' | 'kind' | 'severity'> {
  return { ruleId: rule.id, ruleVersion: rule.version, kind: rule.kind, severity: rule.severity };
}

function roleFits(want: RuleRole, role: Role): boolean {
  return want === 'any' || want === role;
}

function inside(window: { fromMs: number; toMs: number }, ms: number): boolean {
  return ms >= window.fromMs && ms < window.toMs;
}
