/**
 * Configuration of the `emotion_window` rule (qa-analytics.md §3.2): every knob of the emotion
 * alert engine (./engine.ts) with the spec's starting default. A rule's `config` jsonb
 * (qa_rules.config) is parsed with `parseEmotionWindowConfig`; `{}` gives the defaults.
 * Unknown keys are rejected (a typo such as `cooldownMS` must not silently fall back to the
 * default). Durations are call-timeline milliseconds.
 */
import { z } from 'zod';
import { AppError } from '../core/errors.js';
import { ROLES } from '../core/types.js';

/** The spec's Chinese escalation lexicon (§3.2 "Escalate to critical"). */
export const DEFAULT_ESCALATION_KEYWORDS: readonly string[] = Object.freeze([
  '投诉',
  '举报',
  '12315',
  '工信部',
  '曝光',
  '律师',
  '找你们领导',
  '经理',
]);

/** Hard bound on the sentences the engine keeps per window (drop-oldest, counted). */
export const MAX_WINDOW_SENTENCES = 512;
const MAX_MS = 24 * 3600 * 1000;

const ms = (fallback: number) => z.number().int().nonnegative().max(MAX_MS).default(fallback);
const count = (min: number, fallback: number) => z.number().int().min(min).max(MAX_WINDOW_SENTENCES).default(fallback);
const share = (fallback: number) => z.number().min(0).max(1).default(fallback);

export const emotionWindowConfigSchema = z
  .strictObject({
    /** Role whose speech is watched; the other role only feeds `agentNegative`. */
    role: z.enum(ROLES).default('customer'),
    /** Confidence gate; applies only when the provider gives a confidence (paraformer). */
    minConfidence: share(0.6),
    /** A sentence qualifies when it lasts ≥ minDurationMs OR has ≥ minChars spoken characters. */
    minDurationMs: ms(1000),
    minChars: count(0, 4),
    /** Window: the role's qualifying sentences that ended in the last windowMs, or its last windowCount, whichever is more. */
    windowMs: z.number().int().positive().max(MAX_MS).default(60_000),
    windowCount: count(1, 6),
    /** Warning: negative share ≥ shareThreshold with ≥ minNegative negatives, or streakLength consecutive negatives. */
    shareThreshold: z.number().gt(0).max(1).default(0.5),
    minNegative: count(1, 3),
    streakLength: count(1, 3),
    /** Critical when the warning state lasts escalateAfterMs and the role is still negative. */
    escalateAfterMs: ms(60_000),
    /** Critical when a negative sentence carries one of these (substring match, as written). */
    escalationKeywords: z
      .array(z.string().trim().min(1).max(32))
      .max(200)
      .default(() => [...DEFAULT_ESCALATION_KEYWORDS]),
    /** From calm, the keyword path needs this many consecutive negative sentences (the keyword one included). */
    keywordMinNegative: count(1, 2),
    /** Critical when the other role has this many negative qualifying sentences in the window span; 0 disables. */
    agentNegative: count(0, 1),
    /** Hysteresis: back to calm once the share stays below clearShare for clearAfterMs. */
    clearShare: share(0.3),
    clearAfterMs: ms(60_000),
    /** Per call and rule: no new open alert within cooldownMs of the last one unless severity rises. */
    cooldownMs: ms(120_000),
    /** Per call and rule: at most this many open alerts. */
    maxPerCall: count(1, 3),
  })
  .superRefine((c, ctx) => {
    if (c.clearShare >= c.shareThreshold) {
      ctx.addIssue({
        code: 'custom',
        path: ['clearShare'],
        message: `must be below shareThreshold (${c.shareThreshold}), or the state could clear while the rule still fires`,
      });
    }
  });

export type EmotionWindowConfigInput = z.input<typeof emotionWindowConfigSchema>;
export type EmotionWindowConfig = Readonly<Omit<z.output<typeof emotionWindowConfigSchema>, 'escalationKeywords'>> & {
  readonly escalationKeywords: readonly string[];
};

function freezeConfig(c: z.output<typeof emotionWindowConfigSchema>): EmotionWindowConfig {
  return Object.freeze({ ...c, escalationKeywords: Object.freeze([...c.escalationKeywords]) });
}

export const DEFAULT_EMOTION_WINDOW: EmotionWindowConfig = freezeConfig(emotionWindowConfigSchema.parse({}));

/**
 * Validates a rule's config (e.g. qa_rules.config). Throws ERR_ALERTS_RULE_CONFIG whose message
 * lists `path: problem` for each issue (values are config, never PII).
 */
export function parseEmotionWindowConfig(input: unknown): EmotionWindowConfig {
  const parsed = emotionWindowConfigSchema.safeParse(input);
  if (parsed.success) return freezeConfig(parsed.data);
  const problems = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
  throw new AppError('ERR_ALERTS_RULE_CONFIG', `invalid emotion_window config: ${problems.join('; ')}`, {
    category: 'invalid_request',
    retryable: false,
    details: { problems: problems.length },
  });
}
