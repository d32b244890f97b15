/**
 * Per-call QA metrics (qa-analytics.md §1.1, stored as one `call_metrics` row, §5.2): talk time,
 * overlap, non-talk, overtalk/interruptions, speech rate, monologues, agent response gaps and the
 * per-role emotion/sentiment summary. Pure and deterministic: the input is sorted with
 * `byTimeline` first, so any order of the same sentences gives a deep-equal result.
 *
 * Definitions (all ms on the call timeline; spans half-open [startMs, endMs)):
 * - Speech span of a sentence: its [startMs, endMs], tightened to [first word start, last word
 *   end] when word timings are given (recogniser sentence edges carry lead/trail silence). Pauses
 *   inside a sentence count as talk: the recogniser ends a sentence at ~0.8 s of silence anyway.
 * - Talk time: length of the union of a role's speech spans. Talk ratios: `talkShare` = role talk
 *   / (agent talk + customer talk), so the two shares add to 1; `talkRatioOfDuration` = role talk
 *   / call duration (null when the duration is unknown or 0). Overlap: length of the
 *   intersection of the two roles' unions (call level; it is the same for both roles).
 * - Non-talk: gaps of the union of all speech that are ≥ silenceThresholdMs — between speech,
 *   the leading gap from 0 (stream start), and the trailing gap to `call.durationMs` when given.
 * - Overtalk: each stretch where both roles speak. `by` is the role whose speech (role union
 *   segment) started later, i.e. started while the other was mid-speech; equal starts: the role
 *   with the shorter segment, then the agent (QA errs against the agent). An overtalk is an
 *   interruption when overlapMs ≥ interruptionMinOverlapMs (shorter ones are back-channel).
 * - Speech rate: cpm = Σ charCount / talk minutes; words for wpm = each CJK character (Han, kana,
 *   Hangul) plus each run of other letters/digits (apostrophes/hyphens inside a word join it).
 *   `rateUnit` is 'cpm' when CJK characters are ≥ cpmMinCjkShare of the role's spoken
 *   characters (and for a role without text), else 'wpm'; `rate` is the value in that unit.
 * - Emotion gates (§3.2): a sentence *qualifies* for negative/positive shares when it has an
 *   emotion, its confidence (when the provider gives one) is ≥ emotionMinConfidence, and it
 *   lasts ≥ emotionMinDurationMs (sentence span) or has ≥ emotionMinCjkChars CJK characters.
 *   Score (§1.1, LCA weighted sentiment): with a confidence (paraformer) valence × 5 × confidence
 *   when confidence ≥ sentimentMinConfidence, else null; without one (qwen) valence × 5 when the
 *   sentence passes the duration/characters gate, else null. Role sentiment = mean of non-null
 *   scores (neutral sentences count as 0).
 * - Quarters: four equal periods of [0, call.durationMs], or — duration unknown — of the span of
 *   all sentences (either role) carrying an emotion; boundaries rounded to whole ms. A sentence
 *   belongs to the quarter holding its midpoint (midpoints at/after the end go to Q4). Per
 *   quarter: score = mean of non-null scores (n of them), negShare among qualifying sentences.
 *   Trend: Q4 − mean(non-null earlier quarter scores) ≥ +trendThreshold → UP, ≤ −trendThreshold
 *   → DOWN, else FLAT; null when Q4 or every earlier quarter has no score. Shift: Q4 − Q1.
 *   `recovered`: customer Q1 score < 0 and Q4 score ≥ 0 (null when either has no score).
 * - Monologue: a run of one role's sentences whose gaps are < monologuePauseMs and with no
 *   sentence of the other role starting inside the run; its length is first start → last end.
 * - Customer turn: consecutive customer sentences (timeline order) not separated by an agent
 *   sentence. Agent response gap: turn end → start of the next agent sentence, counted only when
 *   the agent starts at or after the turn end (overtalk is not a response gap). First agent
 *   response: first customer sentence end → next agent sentence starting at or after it.
 * Sentences with non-finite times, endMs < startMs, startMs < 0 or an unknown role are dropped
 * and counted in `invalidUtterances`.
 */
import { AppError } from '../core/errors.js';
import { isRole, type Role } from '../core/types.js';
import { countSpokenChars } from '../utterance/char-count.js';
import { gapsBetween, intersectSpans, mergeSpans, totalMs } from './intervals.js';
import { byTimeline, type AnalyticsUtterance, type Span } from './types.js';

/** Bump when a definition above changes; stored as `call_metrics.metrics_version`. */
export const METRICS_VERSION = 1;

export interface MetricsOptions {
  /** Non-talk stretches shorter than this are not silences (Contact Lens: 3 s). */
  readonly silenceThresholdMs: number;
  /** Overtalk of at least this long is an interruption (spec §1.1: ignore < 1 s). */
  readonly interruptionMinOverlapMs: number;
  /** A pause of at least this long ends a monologue (VoiceBase streaks: 3 s). */
  readonly monologuePauseMs: number;
  /** Scores: confidence below this gives a null score (LCA: 0.4). */
  readonly sentimentMinConfidence: number;
  /** Shares: minimum confidence where the provider gives one (§3.2: 0.6). */
  readonly emotionMinConfidence: number;
  /** Shares (and qwen scores): minimum sentence duration … (§3.2: 1 s) */
  readonly emotionMinDurationMs: number;
  /** … or minimum CJK characters (§3.2: 4). */
  readonly emotionMinCjkChars: number;
  /** Sentiment trend threshold in score points. */
  readonly trendThreshold: number;
  /** Share of CJK among spoken characters from which a role's rate unit is cpm. */
  readonly cpmMinCjkShare: number;
}

export const DEFAULT_METRICS_OPTIONS: MetricsOptions = Object.freeze({
  silenceThresholdMs: 3000,
  interruptionMinOverlapMs: 1000,
  monologuePauseMs: 3000,
  sentimentMinConfidence: 0.4,
  emotionMinConfidence: 0.6,
  emotionMinDurationMs: 1000,
  emotionMinCjkChars: 4,
  trendThreshold: 0.5,
  cpmMinCjkShare: 0.5,
});

export interface TimedSpan extends Span {
  readonly durationMs: number;
}

export interface OvertalkEvent {
  /** Who started talking while the other was speaking. */
  readonly by: Role;
  readonly over: Role;
  readonly startMs: number;
  readonly endMs: number;
  readonly overlapMs: number;
  readonly interruption: boolean;
}

export type RateUnit = 'cpm' | 'wpm';
export type SentimentTrend = 'UP' | 'DOWN' | 'FLAT';
/** What the quarters divide: the call duration, the span of emotional sentences, or nothing. */
export type PeriodBasis = 'duration' | 'emotion_span' | 'none';

export interface QuarterMetrics {
  readonly idx: number;
  readonly startMs: number;
  readonly endMs: number;
  /** Mean of the non-null sentence scores in the quarter; null when there are none. */
  readonly score: number | null;
  /** Negative share among the quarter's qualifying sentences; null when there are none. */
  readonly negShare: number | null;
  /** Sentences with a score (the score's denominator). */
  readonly n: number;
  /** Qualifying sentences (the negShare denominator). */
  readonly nQualifying: number;
}

export interface RoleMetrics {
  readonly utteranceCount: number;
  readonly talkMs: number;
  /** talkMs / (agent talkMs + customer talkMs); null when nobody talked. */
  readonly talkShare: number | null;
  /** talkMs / call duration; null when the duration is unknown or 0. */
  readonly talkRatioOfDuration: number | null;
  /** Overtalk events this role started, and their total overlap. */
  readonly overtalkCount: number;
  readonly overtalkMs: number;
  readonly interruptionCount: number;
  readonly interruptionMs: number;
  readonly charCount: number;
  readonly wordCount: number;
  /** CJK characters / spoken characters of the role's text; null without text. */
  readonly cjkShare: number | null;
  /** Characters per talk minute; null when talkMs is 0. */
  readonly cpm: number | null;
  readonly wpm: number | null;
  readonly rateUnit: RateUnit;
  /** cpm or wpm, per rateUnit. */
  readonly rate: number | null;
  readonly longestMonologueMs: number;
  readonly longestMonologue: TimedSpan | null;
  /** Raw label (as received) → count, over all the role's sentences with an emotion. */
  readonly emotionCounts: Readonly<Record<string, number>>;
  readonly qualifyingCount: number;
  readonly negShare: number | null;
  readonly posShare: number | null;
  readonly scoredCount: number;
  /** −5..+5: mean of the non-null sentence scores; null when there are none. */
  readonly sentiment: number | null;
  /** Always four entries. */
  readonly quarters: readonly QuarterMetrics[];
  readonly trend: SentimentTrend | null;
  /** Q4 score − Q1 score; null when either is null. */
  readonly sentimentShift: number | null;
}

export interface CallMetrics {
  readonly metricsVersion: number;
  /** call.durationMs as given; null when unknown. */
  readonly durationMs: number | null;
  readonly utteranceCount: number;
  readonly invalidUtterances: number;
  /** Union of both roles' speech. */
  readonly talkMs: number;
  readonly overlapMs: number;
  readonly nonTalkMs: number;
  readonly nonTalkCount: number;
  readonly longestSilenceMs: number;
  /** nonTalkMs / duration; null when the duration is unknown or 0. */
  readonly nonTalkRatio: number | null;
  readonly silences: readonly TimedSpan[];
  readonly overtalks: readonly OvertalkEvent[];
  readonly firstAgentSpeechMs: number | null;
  readonly firstAgentResponseMs: number | null;
  readonly agentResponseCount: number;
  /** Rounded to whole ms. */
  readonly avgAgentResponseMs: number | null;
  readonly maxAgentResponseMs: number | null;
  readonly periodBasis: PeriodBasis;
  readonly recovered: boolean | null;
  readonly roles: Readonly<Record<Role, RoleMetrics>>;
  /** The options in effect, for reproducing the row. */
  readonly options: MetricsOptions;
}

// ---------------------------------------------------------------------------------------------

const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/gu;
const NON_CJK_WORD = /[\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*/gu;

function countCjk(text: string): number {
  let n = 0;
  for (const _ of text.matchAll(CJK)) n++;
  return n;
}

function countWords(text: string): number {
  let n = countCjk(text);
  for (const _ of text.replace(CJK, ' ').matchAll(NON_CJK_WORD)) n++;
  return n;
}

interface Sentence {
  readonly u: AnalyticsUtterance;
  readonly speech: Span;
  readonly cjk: number;
  readonly qualifying: boolean;
  readonly score: number | null;
}

function optionsError(name: string): AppError {
  return new AppError('ERR_ANALYTICS_OPTIONS_INVALID', `metrics option ${name} must be a finite number ≥ 0`, {
    category: 'invalid_request',
    details: { option: name },
  });
}

function resolveOptions(partial: Partial<MetricsOptions> | undefined): MetricsOptions {
  const pick = (name: keyof MetricsOptions): number => {
    const value = partial?.[name] ?? DEFAULT_METRICS_OPTIONS[name];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw optionsError(name);
    return value;
  };
  return Object.freeze({
    silenceThresholdMs: pick('silenceThresholdMs'),
    interruptionMinOverlapMs: pick('interruptionMinOverlapMs'),
    monologuePauseMs: pick('monologuePauseMs'),
    sentimentMinConfidence: pick('sentimentMinConfidence'),
    emotionMinConfidence: pick('emotionMinConfidence'),
    emotionMinDurationMs: pick('emotionMinDurationMs'),
    emotionMinCjkChars: pick('emotionMinCjkChars'),
    trendThreshold: pick('trendThreshold'),
    cpmMinCjkShare: pick('cpmMinCjkShare'),
  });
}

function isValid(u: AnalyticsUtterance): boolean {
  return (
    isRole(u.role) && Number.isFinite(u.startMs) && Number.isFinite(u.endMs) && u.startMs >= 0 && u.endMs >= u.startMs
  );
}

/** Sentence span tightened to its word timings (when any are valid and inside it). */
function speechSpan(u: AnalyticsUtterance): Span {
  let lo = Infinity;
  let hi = -Infinity;
  for (const w of u.words) {
    if (!Number.isFinite(w.startMs) || !Number.isFinite(w.endMs) || w.endMs < w.startMs) continue;
    lo = Math.min(lo, w.startMs);
    hi = Math.max(hi, w.endMs);
  }
  const startMs = Math.max(u.startMs, lo);
  const endMs = Math.min(u.endMs, hi);
  return lo <= hi && startMs <= endMs ? { startMs, endMs } : { startMs: u.startMs, endMs: u.endMs };
}

function prepare(u: AnalyticsUtterance, o: MetricsOptions): Sentence {
  const cjk = countCjk(u.text);
  const hasEmotion = u.emotionRaw !== null && u.valence !== null;
  const longEnough = u.endMs - u.startMs >= o.emotionMinDurationMs || cjk >= o.emotionMinCjkChars;
  const conf = u.emotionConfidence;
  const qualifying = hasEmotion && longEnough && (conf === null || conf >= o.emotionMinConfidence);
  let score: number | null = null;
  if (hasEmotion && u.valence !== null) {
    if (conf !== null) score = conf >= o.sentimentMinConfidence ? u.valence * 5 * conf + 0 : null;
    else score = longEnough ? u.valence * 5 + 0 : null;
  }
  return { u, speech: speechSpan(u), cjk, qualifying, score };
}

function mean(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length + 0;
}

function ratio(num: number, den: number | null): number | null {
  return den === null || den <= 0 ? null : num / den;
}

function timed(s: Span): TimedSpan {
  return { startMs: s.startMs, endMs: s.endMs, durationMs: s.endMs - s.startMs };
}

const other = (r: Role): Role => (r === 'agent' ? 'customer' : 'agent');

/** One event per stretch where a segment of each role's union overlaps (merged lists). */
function overtalkEvents(agent: readonly Span[], customer: readonly Span[], o: MetricsOptions): OvertalkEvent[] {
  const out: OvertalkEvent[] = [];
  let i = 0;
  let j = 0;
  while (i < agent.length && j < customer.length) {
    const a = agent[i]!;
    const c = customer[j]!;
    const startMs = Math.max(a.startMs, c.startMs);
    const endMs = Math.min(a.endMs, c.endMs);
    if (endMs > startMs) {
      let by: Role;
      if (a.startMs !== c.startMs) by = a.startMs > c.startMs ? 'agent' : 'customer';
      else by = c.endMs - c.startMs < a.endMs - a.startMs ? 'customer' : 'agent';
      const overlapMs = endMs - startMs;
      out.push({ by, over: other(by), startMs, endMs, overlapMs, interruption: overlapMs >= o.interruptionMinOverlapMs });
    }
    if (a.endMs < c.endMs) i++;
    else j++;
  }
  return out;
}

function longestMonologue(sentences: readonly Sentence[], role: Role, pauseMs: number): TimedSpan | null {
  const runs: Span[] = [];
  let run: { startMs: number; endMs: number } | null = null;
  for (const s of sentences) {
    if (s.u.role !== role) run = null;
    else if (run !== null && s.speech.startMs - run.endMs < pauseMs) run.endMs = Math.max(run.endMs, s.speech.endMs);
    else {
      run = { startMs: s.speech.startMs, endMs: s.speech.endMs };
      runs.push(run);
    }
  }
  let best: Span | null = null;
  for (const r of runs) if (best === null || r.endMs - r.startMs > best.endMs - best.startMs) best = r;
  return best === null ? null : timed(best);
}

function agentResponseGaps(sentences: readonly Sentence[]): number[] {
  const gaps: number[] = [];
  let turnEnd: number | null = null;
  for (const s of sentences) {
    if (s.u.role === 'customer') turnEnd = Math.max(turnEnd ?? -Infinity, s.speech.endMs);
    else if (turnEnd !== null) {
      if (s.speech.startMs >= turnEnd) gaps.push(s.speech.startMs - turnEnd);
      turnEnd = null;
    }
  }
  return gaps;
}

function quarterBounds(from: number, to: number): number[] {
  const len = to - from;
  return [0, 1, 2, 3, 4].map((k) => (k === 4 ? to : from + Math.round((len * k) / 4)));
}

function quarterOf(bounds: readonly number[], s: Sentence): number {
  const mid = (s.u.startMs + s.u.endMs) / 2;
  for (let k = 0; k < 3; k++) if (mid < bounds[k + 1]!) return k;
  return 3;
}

function roleMetrics(
  role: Role,
  sentences: readonly Sentence[],
  timeline: readonly Sentence[],
  merged: readonly Span[],
  bothTalkMs: number,
  durationMs: number | null,
  overtalks: readonly OvertalkEvent[],
  bounds: readonly number[],
  o: MetricsOptions,
): RoleMetrics {
  const mine = sentences.filter((s) => s.u.role === role);
  const talkMs = totalMs(merged);
  let charCount = 0;
  let wordCount = 0;
  let cjk = 0;
  let spoken = 0;
  const labels = new Map<string, number>();
  for (const s of mine) {
    charCount += s.u.charCount;
    wordCount += countWords(s.u.text);
    cjk += s.cjk;
    spoken += countSpokenChars(s.u.text);
    if (s.u.emotionRaw !== null) labels.set(s.u.emotionRaw, (labels.get(s.u.emotionRaw) ?? 0) + 1);
  }
  const cjkShare = spoken > 0 ? cjk / spoken : null;
  const rateUnit: RateUnit = cjkShare === null || cjkShare >= o.cpmMinCjkShare ? 'cpm' : 'wpm';
  const minutes = talkMs > 0 ? talkMs / 60_000 : null;
  const cpm = minutes === null ? null : charCount / minutes;
  const wpm = minutes === null ? null : wordCount / minutes;

  const mineOvertalk = overtalks.filter((e) => e.by === role);
  const interruptions = mineOvertalk.filter((e) => e.interruption);
  const monologue = longestMonologue(timeline, role, o.monologuePauseMs);

  const emotionCounts: Record<string, number> = {};
  for (const label of [...labels.keys()].sort()) emotionCounts[label] = labels.get(label)!;

  const qualifying = mine.filter((s) => s.qualifying);
  const share = (list: readonly Sentence[], v: -1 | 1): number | null =>
    list.length === 0 ? null : list.filter((s) => s.u.valence === v).length / list.length;
  const scores = (list: readonly Sentence[]): number[] => list.flatMap((s) => (s.score === null ? [] : [s.score]));

  const quarters: QuarterMetrics[] = [0, 1, 2, 3].map((idx) => {
    const inQ = mine.filter((s) => quarterOf(bounds, s) === idx);
    const qScores = scores(inQ);
    const qQual = inQ.filter((s) => s.qualifying);
    return {
      idx,
      startMs: bounds[idx]!,
      endMs: bounds[idx + 1]!,
      score: mean(qScores),
      negShare: share(qQual, -1),
      n: qScores.length,
      nQualifying: qQual.length,
    };
  });
  const q4 = quarters[3]!.score;
  const earlier = mean(quarters.slice(0, 3).flatMap((q) => (q.score === null ? [] : [q.score])));
  let trend: SentimentTrend | null = null;
  if (q4 !== null && earlier !== null) {
    const diff = q4 - earlier;
    trend = diff >= o.trendThreshold ? 'UP' : diff <= -o.trendThreshold ? 'DOWN' : 'FLAT';
  }
  const q1 = quarters[0]!.score;
  const allScores = scores(mine);

  return {
    utteranceCount: mine.length,
    talkMs,
    talkShare: ratio(talkMs, bothTalkMs),
    talkRatioOfDuration: ratio(talkMs, durationMs),
    overtalkCount: mineOvertalk.length,
    overtalkMs: mineOvertalk.reduce((sum, e) => sum + e.overlapMs, 0),
    interruptionCount: interruptions.length,
    interruptionMs: interruptions.reduce((sum, e) => sum + e.overlapMs, 0),
    charCount,
    wordCount,
    cjkShare,
    cpm,
    wpm,
    rateUnit,
    rate: rateUnit === 'cpm' ? cpm : wpm,
    longestMonologueMs: monologue?.durationMs ?? 0,
    longestMonologue: monologue,
    emotionCounts,
    qualifyingCount: qualifying.length,
    negShare: share(qualifying, -1),
    posShare: share(qualifying, 1),
    scoredCount: allScores.length,
    sentiment: mean(allScores),
    quarters,
    trend,
    sentimentShift: q1 !== null && q4 !== null ? q4 - q1 + 0 : null,
  };
}

/**
 * Computes the metrics of one call from its final sentences (any order). `call.durationMs`
 * enables the trailing silence, duration ratios and duration-based quarters.
 * Throws AppError ERR_ANALYTICS_OPTIONS_INVALID for a negative or non-finite option or duration.
 */
export function computeCallMetrics(
  utterances: readonly AnalyticsUtterance[],
  options?: Partial<MetricsOptions>,
  call?: { durationMs?: number },
): CallMetrics {
  const o = resolveOptions(options);
  const durationMs = call?.durationMs ?? null;
  if (durationMs !== null && (!Number.isFinite(durationMs) || durationMs < 0)) throw optionsError('durationMs');

  const valid = utterances.filter(isValid);
  const sorted = [...valid].sort((a, b) => byTimeline(a, b) || (a.text < b.text ? -1 : a.text > b.text ? 1 : 0));
  const sentences = sorted.map((u) => prepare(u, o));
  // timeline order by speech span, for turn logic (word timings may move a start)
  const timeline = sentences
    .filter((s) => s.speech.endMs > s.speech.startMs)
    .sort((a, b) => a.speech.startMs - b.speech.startMs || a.speech.endMs - b.speech.endMs);

  const merged = {
    agent: mergeSpans(sentences.filter((s) => s.u.role === 'agent').map((s) => s.speech)),
    customer: mergeSpans(sentences.filter((s) => s.u.role === 'customer').map((s) => s.speech)),
  };
  const all = mergeSpans([...merged.agent, ...merged.customer]);
  const overlapMs = totalMs(intersectSpans(merged.agent, merged.customer));
  const silences = gapsBetween(all, 0, durationMs)
    .filter((g) => g.endMs - g.startMs >= o.silenceThresholdMs)
    .map(timed);
  const overtalks = overtalkEvents(merged.agent, merged.customer, o);

  const firstCustomer = timeline.find((s) => s.u.role === 'customer');
  const firstAgent = timeline.find((s) => s.u.role === 'agent');
  const firstResponse =
    firstCustomer === undefined
      ? undefined
      : timeline.find((s) => s.u.role === 'agent' && s.speech.startMs >= firstCustomer.speech.endMs);
  const gaps = agentResponseGaps(timeline);

  let periodBasis: PeriodBasis = 'none';
  let bounds = quarterBounds(0, 0);
  const emotional = sentences.filter((s) => s.u.emotionRaw !== null);
  if (durationMs !== null) {
    periodBasis = 'duration';
    bounds = quarterBounds(0, durationMs);
  } else if (emotional.length > 0) {
    periodBasis = 'emotion_span';
    bounds = quarterBounds(Math.min(...emotional.map((s) => s.u.startMs)), Math.max(...emotional.map((s) => s.u.endMs)));
  }

  const bothTalkMs = totalMs(merged.agent) + totalMs(merged.customer);
  const forRole = (r: Role): RoleMetrics =>
    roleMetrics(r, sentences, timeline, merged[r], bothTalkMs, durationMs, overtalks, bounds, o);
  const roles: Record<Role, RoleMetrics> = { agent: forRole('agent'), customer: forRole('customer') };
  const cq = roles.customer.quarters;
  const cq1 = cq[0]!.score;
  const cq4 = cq[3]!.score;
  const nonTalkMs = totalMs(silences);

  return {
    metricsVersion: METRICS_VERSION,
    durationMs,
    utteranceCount: sentences.length,
    invalidUtterances: utterances.length - valid.length,
    talkMs: totalMs(all),
    overlapMs,
    nonTalkMs,
    nonTalkCount: silences.length,
    longestSilenceMs: silences.reduce((max, s) => Math.max(max, s.durationMs), 0),
    nonTalkRatio: ratio(nonTalkMs, durationMs),
    silences,
    overtalks,
    firstAgentSpeechMs: firstAgent?.speech.startMs ?? null,
    firstAgentResponseMs:
      firstCustomer !== undefined && firstResponse !== undefined
        ? firstResponse.speech.startMs - firstCustomer.speech.endMs
        : null,
    agentResponseCount: gaps.length,
    avgAgentResponseMs: gaps.length === 0 ? null : Math.round(gaps.reduce((a, b) => a + b, 0) / gaps.length),
    maxAgentResponseMs: gaps.length === 0 ? null : Math.max(...gaps),
    periodBasis,
    recovered: cq1 === null || cq4 === null ? null : cq1 < 0 && cq4 >= 0,
    roles,
    options: o,
  };
}
