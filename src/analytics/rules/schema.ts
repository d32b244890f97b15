/**
 * QA rules as data (qa-analytics.md §2.3): the zod schema of a rule file (YAML or JSON,
 * `{ version?: 1, rules: [...] }`) and of one rule (a `qa_rules` row: id, version, kind,
 * scope, role, severity, config jsonb), and the validated, normalised types the evaluator reads.
 *
 * Kinds: keyword (phrases, any/all, time window, negation, proximity), absence (sugar for a
 * negated keyword), silence, interruption, and emotion_window, whose config belongs to the
 * alert engine (src/alerts/emotion-config.ts `emotionWindowConfigSchema`) and is kept as an
 * opaque record here (no dependency on the alert engine; validate it there).
 *
 * The schema rejects what the evaluator cannot evaluate rather than skipping it silently:
 * live (realtime/both) evaluation exists for non-negated keyword rules only, and only with a
 * window measured in ms from the call start (the duration is unknown during the call).
 */
import { z } from 'zod';
import type { Role } from '../../core/types.js';
import type { Severity } from '../types.js';
import { describe } from '../../asr/routing/config.js';
import { foldPhrase } from './match.js';

export const RULE_KINDS = ['keyword', 'absence', 'silence', 'interruption', 'emotion_window'] as const;
export type RuleKind = (typeof RULE_KINDS)[number];
export const RULE_SCOPES = ['realtime', 'postcall', 'both'] as const;
export type RuleScope = (typeof RULE_SCOPES)[number];
export const RULE_ROLES = ['customer', 'agent', 'any'] as const;
export type RuleRole = Role | 'any';
export const SEVERITIES = ['info', 'warning', 'critical'] as const satisfies readonly Severity[];

/** A slug: lower-case letters and digits, single ".", "_" or "-" between them; ≤ 64 characters. */
export const RULE_ID_PATTERN = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
export const MAX_RULE_ID_CHARS = 64;
export const MAX_RULES = 1000;
export const MAX_PHRASES = 200;
export const MAX_PHRASE_CHARS = 100;
export const MAX_WITHIN_CHARS = 200;
const MAX_MS = 24 * 3600 * 1000;

/** Length of a first/last window: milliseconds or percent of the call. */
export interface WindowLength {
  readonly unit: 'ms' | 'percent';
  readonly value: number;
}

/**
 * A time window on the call timeline. A sentence is inside when it STARTS inside.
 * - first: [0, N) — N ms, or N % of the call duration;
 * - last: [duration − N, end] — needs the duration (post-call only);
 * - range: [from, to) in ms or in percent of the duration; `to: null` is the end of the call.
 */
export type RuleWindow =
  | { readonly type: 'first'; readonly length: WindowLength }
  | { readonly type: 'last'; readonly length: WindowLength }
  | { readonly type: 'range'; readonly unit: 'ms' | 'percent'; readonly from: number; readonly to: number | null };

export type PhraseMatch = 'any' | 'all';

export interface ProximityConfig {
  /** Either list: any of its terms. */
  readonly a: readonly string[];
  readonly b: readonly string[];
  /** Most folded characters (letters, digits, CJK) between an `a` and a `b` term. */
  readonly withinChars: number;
}

export interface KeywordConfig {
  /** May be empty when `proximity` is given. */
  readonly phrases: readonly string[];
  readonly match: PhraseMatch;
  /** null: the whole call. */
  readonly window: RuleWindow | null;
  /** true: the rule hits when the condition is NOT met in the window. */
  readonly negate: boolean;
  /** Also required: an `a` term within `withinChars` of a `b` term in one sentence. */
  readonly proximity: ProximityConfig | null;
}

export interface AbsenceConfig {
  readonly phrases: readonly string[];
  /** any: hits when none of the phrases occurs; all: hits when not all of them occur. */
  readonly match: PhraseMatch;
  readonly window: RuleWindow;
}

export interface SilenceConfig {
  /** A silence (neither side speaks) at least this long hits. */
  readonly minMs: number;
}

export interface InterruptionConfig {
  /** Overtalks shorter than this are back-channel and ignored. */
  readonly minOverlapMs: number;
  /** Hits when the rule's role interrupts at least this many times… */
  readonly minCount: number;
  /** …within this many ms (between the first and the last start); null: in the whole call. */
  readonly windowMs: number | null;
}

interface RuleBase {
  readonly id: string;
  readonly version: number;
  readonly name: string;
  readonly scope: RuleScope;
  /** keyword/absence: whose sentences are searched; interruption: who interrupts. */
  readonly role: RuleRole;
  readonly severity: Severity;
  /** Raise an alert on a hit (qa_rules.is_alert). */
  readonly alert: boolean;
  readonly enabled: boolean;
  /** null: every tenant. */
  readonly tenant: string | null;
  readonly description: string | null;
}

export type KeywordRule = RuleBase & { readonly kind: 'keyword'; readonly config: KeywordConfig };
export type AbsenceRule = RuleBase & { readonly kind: 'absence'; readonly config: AbsenceConfig };
export type SilenceRule = RuleBase & { readonly kind: 'silence'; readonly config: SilenceConfig };
export type InterruptionRule = RuleBase & { readonly kind: 'interruption'; readonly config: InterruptionConfig };
/** Config validated by the alert engine (emotionWindowConfigSchema), opaque here. */
export type EmotionWindowRule = RuleBase & {
  readonly kind: 'emotion_window';
  readonly config: Readonly<Record<string, unknown>>;
};
export type Rule = KeywordRule | AbsenceRule | SilenceRule | InterruptionRule | EmotionWindowRule;

// ---------------------------------------------------------------------------------------------
// Schema

const int = (min: number, max: number) => z.number().int().min(min).max(max);
const percent = z.number().min(0).max(100);

const lengthSchema = z
  .strictObject({ ms: int(1, MAX_MS).optional(), percent: z.number().gt(0).max(100).optional() })
  .transform((l, ctx): WindowLength => {
    if (l.ms !== undefined && l.percent === undefined) return { unit: 'ms', value: l.ms };
    if (l.percent !== undefined && l.ms === undefined) return { unit: 'percent', value: l.percent };
    ctx.addIssue({ code: 'custom', message: 'give either ms or percent (e.g. { ms: 15000 })' });
    return z.NEVER;
  });

const windowSchema = z
  .strictObject({
    first: lengthSchema.optional(),
    last: lengthSchema.optional(),
    fromMs: int(0, MAX_MS).optional(),
    toMs: int(1, MAX_MS).optional(),
    fromPercent: percent.optional(),
    toPercent: percent.optional(),
  })
  .transform((w, ctx): RuleWindow => {
    const forms: string[] = [];
    if (w.first) forms.push('first');
    if (w.last) forms.push('last');
    if (w.fromMs !== undefined || w.toMs !== undefined) forms.push('fromMs/toMs');
    if (w.fromPercent !== undefined || w.toPercent !== undefined) forms.push('fromPercent/toPercent');
    if (forms.length !== 1) {
      const message =
        forms.length === 0
          ? 'empty window (use first, last, fromMs/toMs or fromPercent/toPercent)'
          : `a window has one form, not ${forms.join(' and ')}`;
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }
    if (w.first) return { type: 'first', length: w.first };
    if (w.last) return { type: 'last', length: w.last };
    const unit = w.fromMs !== undefined || w.toMs !== undefined ? 'ms' : 'percent';
    const from = (unit === 'ms' ? w.fromMs : w.fromPercent) ?? 0;
    const to = (unit === 'ms' ? w.toMs : w.toPercent) ?? null;
    if (to !== null && to <= from) {
      ctx.addIssue({ code: 'custom', path: [unit === 'ms' ? 'toMs' : 'toPercent'], message: `must be after the window start (${from})` });
      return z.NEVER;
    }
    return { type: 'range', unit, from, to: unit === 'percent' && to === 100 ? null : to };
  });

/** YAML reads 12315 as a number (and 0571 as 571): ask for quotes rather than guess. */
const phraseTypeError = (iss: { input?: unknown }): string =>
  typeof iss.input === 'number'
    ? `expected a string, got number ${String(iss.input)} (quote it: "${String(iss.input)}")`
    : `expected a string, got ${describe(iss.input)}`;

const phrase = z
  .string({ error: phraseTypeError })
  .max(MAX_PHRASE_CHARS)
  .refine((p) => foldPhrase(p).length > 0, { error: () => 'a phrase needs a letter, digit or CJK character' });

/** Phrases must differ after folding (full-width, case, punctuation, spaces). */
function distinctPhrases(list: readonly string[], path: readonly PropertyKey[], ctx: z.RefinementCtx): void {
  const seen = new Map<string, number>();
  list.forEach((p, i) => {
    const key = foldPhrase(p);
    const first = seen.get(key);
    if (first === undefined) seen.set(key, i);
    else ctx.addIssue({ code: 'custom', path: [...path, i], message: `same phrase as ${String(path.at(-1))}[${first}] once normalised` });
  });
}

const phrases = z.array(phrase).min(1).max(MAX_PHRASES);
const matchMode = z.enum(['any', 'all']).default('any');
const terms = z.union([phrase.transform((p) => [p]), z.array(phrase).min(1).max(MAX_PHRASES)]);

const keywordConfig = z
  .strictObject({
    phrases: phrases.optional(),
    match: matchMode,
    window: windowSchema.optional(),
    negate: z.boolean().default(false),
    proximity: z.strictObject({ a: terms, b: terms, withinChars: int(0, MAX_WITHIN_CHARS) }).optional(),
  })
  .superRefine((c, ctx) => {
    if (c.phrases === undefined && c.proximity === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a keyword rule needs phrases, proximity or both' });
    }
    if (c.phrases) distinctPhrases(c.phrases, ['phrases'], ctx);
  })
  .transform(
    (c): KeywordConfig => ({
      phrases: c.phrases ?? [],
      match: c.match,
      window: c.window ?? null,
      negate: c.negate,
      proximity: c.proximity ?? null,
    }),
  );

const absenceConfig = z
  .strictObject({ phrases, match: matchMode, window: windowSchema })
  .superRefine((c, ctx) => distinctPhrases(c.phrases, ['phrases'], ctx));

const silenceConfig = z.strictObject({ minMs: int(1, MAX_MS) });

const interruptionConfig = z
  .strictObject({ minOverlapMs: int(0, MAX_MS), minCount: int(1, 10_000), windowMs: int(1, MAX_MS).optional() })
  .transform((c): InterruptionConfig => ({ ...c, windowMs: c.windowMs ?? null }));

const base = {
  id: z
    .string()
    .max(MAX_RULE_ID_CHARS)
    .regex(RULE_ID_PATTERN, { error: () => 'a rule id is a slug: lower-case letters and digits, with single ".", "_" or "-" between them' }),
  version: int(1, 1_000_000),
  name: z.string().min(1).max(200),
  scope: z.enum(RULE_SCOPES).default('postcall'),
  role: z.enum(RULE_ROLES).default('any'),
  severity: z.enum(SEVERITIES),
  alert: z.boolean().default(false),
  enabled: z.boolean().default(true),
  tenant: z.string().min(1).max(128).optional(),
  description: z.string().max(2000).optional(),
};

const kindError = (iss: { input?: unknown }): string => {
  const input: unknown = iss.input;
  const kind = input !== null && typeof input === 'object' && 'kind' in input ? input.kind : undefined;
  return kind === undefined
    ? `missing (required): kind is one of ${RULE_KINDS.join(', ')}`
    : `unknown kind ${JSON.stringify(kind)} (kinds: ${RULE_KINDS.join(', ')})`;
};

/** One rule, as written in a rule file or stored in qa_rules (config jsonb inline). */
export const ruleSchema = z
  .discriminatedUnion(
    'kind',
    [
      z.strictObject({ ...base, kind: z.literal('keyword'), config: keywordConfig }),
      z.strictObject({ ...base, kind: z.literal('absence'), config: absenceConfig }),
      z.strictObject({ ...base, kind: z.literal('silence'), config: silenceConfig }),
      z.strictObject({ ...base, kind: z.literal('interruption'), config: interruptionConfig }),
      z.strictObject({ ...base, kind: z.literal('emotion_window'), config: z.record(z.string(), z.unknown()) }),
    ],
    { error: kindError },
  )
  .superRefine((r, ctx) => {
    const live = r.scope !== 'postcall';
    if (r.kind === 'keyword') {
      if (live && r.config.negate) {
        const message = 'a negated keyword rule is decided when its window closes: use scope postcall';
        ctx.addIssue({ code: 'custom', path: ['scope'], message });
      }
      const w = r.config.window;
      if (live && w && !(w.type === 'first' && w.length.unit === 'ms') && !(w.type === 'range' && w.unit === 'ms')) {
        const message = `scope ${r.scope} needs a window in ms from the call start (first: { ms }, fromMs/toMs): the duration is unknown during the call`;
        ctx.addIssue({ code: 'custom', path: ['config', 'window'], message });
      }
    } else if (r.kind !== 'emotion_window' && live) {
      ctx.addIssue({ code: 'custom', path: ['scope'], message: `${r.kind} rules are evaluated post-call only: use scope postcall` });
    }
    if (r.kind === 'silence' && r.role !== 'any') {
      ctx.addIssue({ code: 'custom', path: ['role'], message: 'a silence is when neither side speaks: omit role' });
    }
  })
  .transform((r): Rule => {
    const common: RuleBase = {
      id: r.id,
      version: r.version,
      name: r.name,
      scope: r.scope,
      role: r.role,
      severity: r.severity,
      alert: r.alert,
      enabled: r.enabled,
      tenant: r.tenant ?? null,
      description: r.description ?? null,
    };
    switch (r.kind) {
      case 'keyword':
        return { ...common, kind: r.kind, config: r.config };
      case 'absence':
        return { ...common, kind: r.kind, config: r.config };
      case 'silence':
        return { ...common, kind: r.kind, config: r.config };
      case 'interruption':
        return { ...common, kind: r.kind, config: r.config };
      case 'emotion_window':
        return { ...common, kind: r.kind, config: r.config };
    }
  });

/** A rule file: `{ version?: 1, rules: [...] }`; (id, version) is unique within it. */
export const rulesFileSchema = z
  .strictObject({
    version: z.literal(1, { error: (iss) => `unsupported version ${JSON.stringify(iss.input)} (this callscribe reads version 1)` }).optional(),
    rules: z.array(ruleSchema).max(MAX_RULES),
  })
  .superRefine((f, ctx) => {
    const seen = new Map<string, number>();
    f.rules.forEach((r, i) => {
      const key = `${r.id}@${r.version}`;
      const first = seen.get(key);
      if (first === undefined) seen.set(key, i);
      else {
        const message = `duplicate rule ${r.id} version ${r.version} (also rules[${first}]); publish a change as a new version`;
        ctx.addIssue({ code: 'custom', path: ['rules', i, 'version'], message });
      }
    });
  });

/** Every key of the file format (for "did you mean" on unknown keys). */
export const RULE_FILE_KEYS: readonly string[] = [
  'version', 'rules', 'id', 'name', 'kind', 'scope', 'role', 'severity', 'alert', 'enabled', 'tenant',
  'description', 'config', 'phrases', 'match', 'window', 'negate', 'proximity', 'a', 'b', 'withinChars',
  'first', 'last', 'ms', 'percent', 'fromMs', 'toMs', 'fromPercent', 'toPercent', 'minMs', 'minOverlapMs',
  'minCount', 'windowMs',
];
