/**
 * The emotion alert engine (qa-analytics.md §3, rule kind `emotion_window`), pure: no clock, no
 * I/O. Input: a call's final sentences (AnalyticsUtterance, valence already mapped by
 * src/asr/emotion.ts); output: alert decisions (open or suppressed, with evidence). Knobs and
 * defaults: ./emotion-config.ts (§3.2).
 *
 * Arrival order: a final arrives when its sentence ends, so sentences are evaluated by endMs,
 * then role, then seq (`byArrival`); "now" is the trigger's endMs on the call timeline. One
 * evaluation per final sentence of ANY role.
 *
 * Gate (`emotionGate`): a sentence counts ("qualifies") when it has an emotion, its confidence
 * is ≥ minConfidence where the provider gives one (qwen gives none: duration gate only), and it
 * lasts ≥ minDurationMs OR has ≥ minChars spoken characters (utterances.char_count, the
 * src/utterance/char-count.ts count). Gated sentences are invisible to windows and streaks but
 * still advance time. Negative = valence −1.
 *
 * Window of the watched role (config.role): its qualifying sentences that ended in the last
 * windowMs, or its last windowCount, whichever is more. share = negatives / window size.
 * run = consecutive negative qualifying sentences of the watched role (the other role's
 * sentences do not break it). The window span runs from min(now − windowMs, first window
 * sentence's start) to now; the other role's negative qualifying sentences ending in it count
 * for `agentNegative` (default 1: the agent is trained to stay neutral, and this only escalates
 * a customer who is already in warning; 0 disables).
 *
 * State machine of the watched role (the other role only feeds the agent-negative count):
 *
 *   calm ──(A) share|streak──────────────────▶ warning ──(C) persistence | agent-negative | keyword──▶ critical
 *   calm ──(B) keyword | share|streak + agent-negative ───────────────────────────────────────────▶ critical
 *   warning | critical ──(D) share < clearShare (and no share/streak condition) for clearAfterMs──▶ calm
 *
 *   share     = share ≥ shareThreshold with ≥ minNegative negatives        (reason 'share')
 *   streak    = run ≥ streakLength                                         (reason 'streak', preferred over 'share')
 *   keyword   = the trigger is negative, carries an escalationKeyword, and run ≥ keywordMinNegative
 *               (from calm; in warning/critical any negative keyword sentence) ('escalation-keyword')
 *   persistence    = in warning for ≥ escalateAfterMs, and share|streak holds on a new negative sentence
 *   agent-negative = the other role has ≥ agentNegative negatives in the window span while the
 *               watched role is in warning (or reaches it on this sentence)
 *
 * Triggers: a negative qualifying sentence of the watched role (any of the above; in warning or
 * critical, share|streak|keyword again re-fires at the state's severity), or a negative
 * qualifying sentence of the other role while in warning (agent-negative). Anything else only
 * advances time (hysteresis, window expiry). At most one decision per sentence.
 *
 * Suppression, per call and rule, checked in this order on every decision:
 *   cap      — maxPerCall open decisions already made;
 *   cooldown — the last open one is < cooldownMs old and this severity is not higher;
 *   dedupe   — an open decision with the same dedupe key (`callId:ruleId:severity`) was made in
 *              this episode (since the state last left calm). Across episodes the DB's partial
 *              unique index on open/acknowledged alerts still applies (the adapter records a
 *              conflict as suppressed 'dedupe'); the engine cannot see acknowledgements.
 * State changes happen whether or not the decision is suppressed.
 *
 * Idempotency: the output is a function of the set of sentences (sorted here), and every
 * decision belongs to exactly one trigger sentence, so (ruleId, ruleVersion, trigger.role,
 * trigger.seq) — plus the call — is the key the DB upserts on when the worker replays a call.
 * The decisions of an arrival-ordered prefix are a prefix of the decisions. A sentence that
 * lands after a later-ending one was already evaluated can change later decisions on replay;
 * the DB keeps the first committed row per key.
 */
import type { Role } from '../core/types.js';
import { SEVERITY_RANK, type AnalyticsUtterance, type EvidenceRef, type Severity } from '../analytics/types.js';
import { MAX_WINDOW_SENTENCES, type EmotionWindowConfig } from './emotion-config.js';

export type EmotionState = 'calm' | 'warning' | 'critical';
export type AlertSeverity = Extract<Severity, 'warning' | 'critical'>;
export type EmotionAlertReason = 'share' | 'streak' | 'escalation-keyword' | 'persistence' | 'agent-negative';
export type SuppressedReason = 'cooldown' | 'cap' | 'dedupe';
export type GateResult = 'qualifies' | 'no-emotion' | 'low-confidence' | 'short';

/** A stored emotion_window rule (qa_rules row): config already parsed (parseEmotionWindowConfig). */
export interface EmotionRule {
  readonly id: string;
  readonly version: number;
  readonly config: EmotionWindowConfig;
}

/** The sentence whose arrival produced a decision. */
export interface AlertTrigger {
  readonly role: Role;
  readonly seq: number;
  readonly endMs: number;
}

export interface AlertDecision {
  readonly ruleId: string;
  readonly ruleVersion: number;
  /** The watched role (config.role). */
  readonly role: Role;
  readonly severity: AlertSeverity;
  readonly status: 'open' | 'suppressed';
  readonly suppressedReason: SuppressedReason | null;
  readonly reason: EmotionAlertReason;
  /** `${callId}:${ruleId}:${severity}` (qa-analytics.md §3.2). */
  readonly dedupeKey: string;
  readonly trigger: AlertTrigger;
  /** The window's negative sentences in arrival order (plus the other role's for agent-negative). */
  readonly evidence: readonly EvidenceRef[];
  /** Set when reason is 'escalation-keyword'; the trigger's evidence carries charBegin/charEnd. */
  readonly matchedKeyword?: string;
}

export interface EmotionEngineStats {
  /** Sentences evaluated (not dropped). */
  evaluated: number;
  gatedNoEmotion: number;
  gatedLowConfidence: number;
  gatedShort: number;
  /** push() got a sentence ending before the last one evaluated. */
  droppedOutOfOrder: number;
  /** push() got a (role, seq) at or below the last one of that role. */
  droppedDuplicate: number;
  /** Oldest window sentences dropped at MAX_WINDOW_SENTENCES. */
  windowOverflow: number;
  open: number;
  suppressed: number;
}

export interface EmotionStateSnapshot {
  readonly state: EmotionState;
  /** When the current episode left calm; null in calm. */
  readonly sinceMs: number | null;
  /** Since when the share has been below clearShare (hysteresis); null when not. */
  readonly lowShareSinceMs: number | null;
  readonly windowSize: number;
  readonly windowNegative: number;
  readonly negativeRun: number;
  readonly openCount: number;
}

/** Arrival order: by endMs, then role, then seq. */
export function byArrival(
  a: Pick<AnalyticsUtterance, 'endMs' | 'role' | 'seq'>,
  b: Pick<AnalyticsUtterance, 'endMs' | 'role' | 'seq'>,
): number {
  return a.endMs - b.endMs || (a.role < b.role ? -1 : a.role > b.role ? 1 : 0) || a.seq - b.seq;
}

/** The §3.2 scope gate (also what "qualifying" means for the negative-share metrics). */
export function emotionGate(
  u: AnalyticsUtterance,
  config: Pick<EmotionWindowConfig, 'minConfidence' | 'minDurationMs' | 'minChars'>,
): GateResult {
  if (u.valence === null) return 'no-emotion';
  if (u.emotionConfidence !== null && u.emotionConfidence < config.minConfidence) return 'low-confidence';
  if (u.endMs - u.startMs < config.minDurationMs && u.charCount < config.minChars) return 'short';
  return 'qualifies';
}

export interface KeywordMatch {
  readonly keyword: string;
  /** UTF-16 offsets [begin, end) in the text. */
  readonly begin: number;
  readonly end: number;
}

/** The earliest keyword occurrence in text (the longer keyword on a tie); null when none. */
export function findEscalationKeyword(text: string, keywords: readonly string[]): KeywordMatch | null {
  let best: KeywordMatch | null = null;
  for (const keyword of keywords) {
    const begin = text.indexOf(keyword);
    if (begin < 0) continue;
    if (best === null || begin < best.begin || (begin === best.begin && keyword.length > best.keyword.length)) {
      best = { keyword, begin, end: begin + keyword.length };
    }
  }
  return best;
}

interface Entry {
  readonly u: AnalyticsUtterance;
  readonly negative: boolean;
}

function evidenceOf(u: AnalyticsUtterance, keyword?: KeywordMatch): EvidenceRef {
  const ref: EvidenceRef = {
    role: u.role,
    seq: u.seq,
    startMs: u.startMs,
    endMs: u.endMs,
    emotionRaw: u.emotionRaw,
    emotionConfidence: u.emotionConfidence,
    valence: u.valence,
  };
  return keyword ? { ...ref, charBegin: keyword.begin, charEnd: keyword.end } : ref;
}

/**
 * One call × one emotion_window rule, fed final sentences in arrival order (see header).
 * `push` returns the decision the sentence produced ([] or one).
 */
export class EmotionAlertEngine {
  readonly #rule: EmotionRule;
  readonly #cfg: EmotionWindowConfig;
  readonly #callId: string;

  #state: EmotionState = 'calm';
  #sinceMs: number | null = null;
  #lowShareSinceMs: number | null = null;
  /** Qualifying sentences of the watched role, arrival order, pruned to the window. */
  readonly #window: Entry[] = [];
  #run = 0;
  /** Negative qualifying sentences of the other role, pruned to the window span. */
  readonly #others: AnalyticsUtterance[] = [];

  #last: AlertTrigger | null = null;
  readonly #lastSeq: Record<Role, number> = { customer: -Infinity, agent: -Infinity };
  #openCount = 0;
  #lastOpen: { readonly atMs: number; readonly severity: AlertSeverity } | null = null;
  readonly #episodeOpened = new Set<AlertSeverity>();

  readonly #stats: EmotionEngineStats = {
    evaluated: 0,
    gatedNoEmotion: 0,
    gatedLowConfidence: 0,
    gatedShort: 0,
    droppedOutOfOrder: 0,
    droppedDuplicate: 0,
    windowOverflow: 0,
    open: 0,
    suppressed: 0,
  };

  constructor(rule: EmotionRule, callId: string) {
    this.#rule = rule;
    this.#cfg = rule.config;
    this.#callId = callId;
  }

  push(u: AnalyticsUtterance): AlertDecision[] {
    if (u.seq <= this.#lastSeq[u.role]) {
      this.#stats.droppedDuplicate++;
      return [];
    }
    if (this.#last !== null && byArrival(u, this.#last) < 0) {
      this.#stats.droppedOutOfOrder++;
      return [];
    }
    this.#lastSeq[u.role] = u.seq;
    this.#last = { role: u.role, seq: u.seq, endMs: u.endMs };
    this.#stats.evaluated++;

    const cfg = this.#cfg;
    const now = u.endMs;
    const gate = emotionGate(u, cfg);
    if (gate === 'no-emotion') this.#stats.gatedNoEmotion++;
    else if (gate === 'low-confidence') this.#stats.gatedLowConfidence++;
    else if (gate === 'short') this.#stats.gatedShort++;
    const negative = gate === 'qualifies' && u.valence === -1;
    const watched = u.role === cfg.role;

    if (gate === 'qualifies' && watched) {
      this.#window.push({ u, negative });
      this.#run = negative ? this.#run + 1 : 0;
      if (this.#window.length > MAX_WINDOW_SENTENCES) {
        this.#window.shift();
        this.#stats.windowOverflow++;
      }
    } else if (negative && !watched) {
      this.#others.push(u);
      if (this.#others.length > MAX_WINDOW_SENTENCES) {
        this.#others.shift();
        this.#stats.windowOverflow++;
      }
    }
    this.#prune(now);

    const size = this.#window.length;
    const negatives = this.#window.reduce((n, e) => n + (e.negative ? 1 : 0), 0);
    const share = size === 0 ? 0 : negatives / size;
    const shareCond = negatives >= cfg.minNegative && share >= cfg.shareThreshold;
    const streakCond = this.#run >= cfg.streakLength;
    const warnCond = shareCond || streakCond;

    // (D) hysteresis
    if (this.#state !== 'calm') {
      if (share < cfg.clearShare && !warnCond) {
        this.#lowShareSinceMs ??= now;
        if (now - this.#lowShareSinceMs >= cfg.clearAfterMs) this.#toCalm();
      } else {
        this.#lowShareSinceMs = null;
      }
    }

    const agentCond = cfg.agentNegative > 0 && this.#others.length >= cfg.agentNegative;
    let next: { severity: AlertSeverity; reason: EmotionAlertReason } | null = null;
    let keyword: KeywordMatch | null = null;
    if (negative && watched) {
      keyword = findEscalationKeyword(u.text, cfg.escalationKeywords);
      if (keyword !== null && this.#state === 'calm' && this.#run < cfg.keywordMinNegative) keyword = null;
      const base: EmotionAlertReason = streakCond ? 'streak' : 'share';
      if (keyword !== null) next = { severity: 'critical', reason: 'escalation-keyword' };
      else if (!warnCond) next = null;
      else if (this.#state === 'critical') next = { severity: 'critical', reason: base };
      else if (agentCond) next = { severity: 'critical', reason: 'agent-negative' };
      else if (this.#state === 'warning' && now - (this.#sinceMs ?? now) >= cfg.escalateAfterMs) {
        next = { severity: 'critical', reason: 'persistence' };
      } else next = { severity: 'warning', reason: base };
    } else if (negative && this.#state === 'warning' && agentCond) {
      next = { severity: 'critical', reason: 'agent-negative' };
    }
    if (next === null) return [];

    if (this.#state === 'calm') {
      this.#sinceMs = now;
      this.#lowShareSinceMs = null;
    }
    this.#state = next.severity;
    return [this.#decide(u, next.severity, next.reason, keyword)];
  }

  #decide(u: AnalyticsUtterance, severity: AlertSeverity, reason: EmotionAlertReason, keyword: KeywordMatch | null): AlertDecision {
    const cfg = this.#cfg;
    const now = u.endMs;
    let suppressedReason: SuppressedReason | null = null;
    if (this.#openCount >= cfg.maxPerCall) suppressedReason = 'cap';
    else if (
      this.#lastOpen !== null &&
      now - this.#lastOpen.atMs < cfg.cooldownMs &&
      SEVERITY_RANK[severity] <= SEVERITY_RANK[this.#lastOpen.severity]
    ) {
      suppressedReason = 'cooldown';
    } else if (this.#episodeOpened.has(severity)) suppressedReason = 'dedupe';

    if (suppressedReason === null) {
      this.#openCount++;
      this.#lastOpen = { atMs: now, severity };
      this.#episodeOpened.add(severity);
      this.#stats.open++;
    } else {
      this.#stats.suppressed++;
    }

    const evidence: EvidenceRef[] = [];
    const sources: AnalyticsUtterance[] = this.#window.filter((e) => e.negative).map((e) => e.u);
    if (reason === 'agent-negative') sources.push(...this.#others);
    sources.sort(byArrival);
    for (const s of sources) {
      const isTrigger = s.role === u.role && s.seq === u.seq;
      evidence.push(evidenceOf(s, reason === 'escalation-keyword' && isTrigger && keyword ? keyword : undefined));
    }

    const decision: AlertDecision = {
      ruleId: this.#rule.id,
      ruleVersion: this.#rule.version,
      role: cfg.role,
      severity,
      status: suppressedReason === null ? 'open' : 'suppressed',
      suppressedReason,
      reason,
      dedupeKey: `${this.#callId}:${this.#rule.id}:${severity}`,
      trigger: { role: u.role, seq: u.seq, endMs: u.endMs },
      evidence,
    };
    return reason === 'escalation-keyword' && keyword ? { ...decision, matchedKeyword: keyword.keyword } : decision;
  }

  /** Drops window sentences that are neither in the last windowMs nor the last windowCount. */
  #prune(now: number): void {
    const cutoff = now - this.#cfg.windowMs;
    const w = this.#window;
    let old = 0;
    while (old < w.length && w[old]!.u.endMs <= cutoff) old++;
    const drop = Math.min(old, Math.max(0, w.length - this.#cfg.windowCount));
    if (drop > 0) w.splice(0, drop);
    const spanStart = Math.min(cutoff, w[0]?.u.startMs ?? cutoff);
    let gone = 0;
    while (gone < this.#others.length && this.#others[gone]!.endMs <= spanStart) gone++;
    if (gone > 0) this.#others.splice(0, gone);
  }

  #toCalm(): void {
    this.#state = 'calm';
    this.#sinceMs = null;
    this.#lowShareSinceMs = null;
    this.#episodeOpened.clear();
  }

  snapshot(): EmotionStateSnapshot {
    return {
      state: this.#state,
      sinceMs: this.#sinceMs,
      lowShareSinceMs: this.#lowShareSinceMs,
      windowSize: this.#window.length,
      windowNegative: this.#window.filter((e) => e.negative).length,
      negativeRun: this.#run,
      openCount: this.#openCount,
    };
  }

  stats(): EmotionEngineStats {
    return { ...this.#stats };
  }
}

/**
 * Replays the engine over a call's sentences in arrival order and returns every decision in
 * order. Deterministic: the input order does not matter; (role, seq) must be unique per call.
 */
export function evaluateEmotionRule(
  rule: EmotionRule,
  callId: string,
  utterances: readonly AnalyticsUtterance[],
): AlertDecision[] {
  const engine = new EmotionAlertEngine(rule, callId);
  const out: AlertDecision[] = [];
  for (const u of [...utterances].sort(byArrival)) out.push(...engine.push(u));
  return out;
}
