/**
 * The routing decision for one speaker stream of one call: which model, which fallback, the
 * language hint, the hotwords (qwen corpus.text / paraformer vocabulary_id), and the rule that
 * decided. Pure: the ingest side calls it once per role when a call starts and stores the
 * result with the call (CallStartJob.routing → calls.routing). docs/routing.md explains the
 * order below with examples.
 *
 * Model, per role:
 *   1. customParameters.asrModel, when it names a known model, pins the call (both roles);
 *   2. else the first rule whose `match` holds;
 *   3. else the call's tenant block with a `model`;
 *   4. else `default`;
 *   5. else the env default (ASR_MODEL), without fallback.
 * fallback / language come from the most specific layer that sets them: the matching rule, the
 * call's tenant block, `default` (`fallback: null` sets "none"); a fallback equal to the model
 * is dropped.
 * A pinned call falls back to what routing would have chosen without the pin.
 * The call's `language` hint wins over the file's; its `hotwords` / `vocabularyId` win over
 * the tenant's. Call values that cannot be used are ignored, with a reason in `rejected`.
 */
import type { CallSource, Role } from '../../core/types.js';
import type { RoleRouting } from '../../queue/jobs.js';
import {
  isKnownModel,
  isLanguageCode,
  joinHotwords,
  MAX_CORPUS_TEXT_CHARS,
  MAX_HOTWORD_CHARS,
  MAX_HOTWORDS,
  splitHotwords,
  VOCABULARY_ID_PATTERN,
  type RoutingConfig,
  type RuleMatch,
  type TenantConfig,
  type ValueMatcher,
} from './config.js';

export interface RoutingInput {
  readonly source: CallSource;
  readonly role: Role;
  readonly tenantId: string;
  /** Telephony custom parameters (Twilio <Parameter>s). */
  readonly customParameters: Readonly<Record<string, string>>;
  /** ASR_MODEL. */
  readonly envDefaultModel: string;
  /** ASR_VOCABULARY_ID: the vocabulary when neither the call nor its tenant names one. */
  readonly envVocabularyId?: string | undefined;
}

export interface RoutingDecision {
  readonly model: string;
  readonly fallback: string | null;
  /** Language hint (a code of LANGUAGE_CODES), or null: the model detects it. */
  readonly language: string | null;
  /** qwen `corpus.text` from the call's or the tenant's hotwords. */
  readonly corpusText: string | null;
  /** Paraformer `vocabulary_id`. */
  readonly vocabularyId: string | null;
  /** Rule name, or "customParameters.asrModel", "tenants.<id>", "default", "env-default". */
  readonly rule: string;
  /** Call values that were ignored, and why (non-PII: never hotword text). */
  readonly rejected: readonly string[];
}

/** Call parameters routing reads (besides the ones rules name). */
export const CALL_PARAMETERS = {
  model: 'asrModel',
  language: 'language',
  hotwords: 'hotwords',
  vocabularyId: 'vocabularyId',
} as const;

function param(params: Readonly<Record<string, string>>, key: string): string | undefined {
  if (!Object.hasOwn(params, key)) return undefined;
  const v = params[key];
  if (typeof v !== 'string') return undefined;
  const t = v.trim();
  return t.length > 0 ? t : undefined;
}

/** A value for messages: quoted, at most 40 characters. */
function shown(v: string): string {
  return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
}

function matches(m: ValueMatcher, value: string | undefined): boolean {
  if (value === undefined) return false; // `not` too: it needs the value to be present
  const hit = m.values.includes(value);
  return m.kind === 'in' ? hit : !hit;
}

export function ruleMatches(match: RuleMatch, input: RoutingInput): boolean {
  if (match.role && !matches(match.role, input.role)) return false;
  if (match.source && !matches(match.source, input.source)) return false;
  if (match.tenant && !matches(match.tenant, input.tenantId)) return false;
  for (const [key, m] of match.customParameters) {
    const raw = Object.hasOwn(input.customParameters, key) ? input.customParameters[key] : undefined;
    if (!matches(m, raw)) return false;
  }
  return true;
}

interface Base {
  readonly model: string;
  readonly fallback: string | null;
  readonly language: string | null;
  readonly rule: string;
}

/** Steps 2-5: the decision of the file (or env) alone. */
function decideFromConfig(config: RoutingConfig | null, tenant: TenantConfig | null, input: RoutingInput): Base {
  if (config === null) return { model: input.envDefaultModel, fallback: null, language: null, rule: 'env-default' };
  const rule = config.rules.find((r) => ruleMatches(r.match, input));
  // most specific first: the matching rule, the call's tenant block, `default`
  const layers = [rule, tenant, config.default].filter((l) => l !== undefined && l !== null);
  let model: string;
  let ruleName: string;
  if (rule) [model, ruleName] = [rule.model, rule.name];
  else if (tenant?.model !== undefined) [model, ruleName] = [tenant.model, `tenants.${input.tenantId}`];
  else if (config.default) [model, ruleName] = [config.default.model, 'default'];
  else [model, ruleName] = [input.envDefaultModel, 'env-default'];
  const fallback = layers.find((l) => l.fallback !== undefined)?.fallback ?? null;
  const language = layers.find((l) => l.language !== undefined)?.language ?? null;
  return { model, fallback: fallback === model ? null : fallback, language, rule: ruleName };
}

function callHotwords(raw: string, rejected: string[]): string[] {
  const terms: string[] = [];
  let dropped = 0;
  let length = 0;
  for (const t of new Set(splitHotwords(raw))) {
    const added = (terms.length > 0 ? 2 : 0) + t.length; // joinHotwords separator
    if (t.length > MAX_HOTWORD_CHARS || terms.length >= MAX_HOTWORDS || length + added > MAX_CORPUS_TEXT_CHARS) {
      dropped++;
      continue;
    }
    terms.push(t);
    length += added;
  }
  if (dropped > 0) {
    rejected.push(
      `customParameters.hotwords: ${dropped} term(s) dropped ` +
        `(limits: ${MAX_HOTWORDS} terms, ${MAX_HOTWORD_CHARS} characters each, ${MAX_CORPUS_TEXT_CHARS} in all)`,
    );
  }
  return terms;
}

/** The routing decision for one role of one call (see the header for the order). */
export function resolveRouting(config: RoutingConfig | null, input: RoutingInput): RoutingDecision {
  const rejected: string[] = [];
  const params = input.customParameters;
  const tenant = config?.tenants.get(input.tenantId) ?? null;
  let decision: Base = decideFromConfig(config, tenant, input);

  const pinned = param(params, CALL_PARAMETERS.model);
  if (pinned !== undefined) {
    if (isKnownModel(pinned)) {
      const fallback = decision.model !== pinned ? decision.model : decision.fallback;
      decision = { ...decision, model: pinned, fallback: fallback === pinned ? null : fallback, rule: 'customParameters.asrModel' };
    } else {
      rejected.push(`customParameters.asrModel: unknown model ${shown(pinned)}, ignored`);
    }
  }

  const language = param(params, CALL_PARAMETERS.language);
  if (language !== undefined) {
    if (isLanguageCode(language)) decision = { ...decision, language };
    else rejected.push(`customParameters.language: ${shown(language)} is not a language code, ignored`);
  }

  const rawHotwords = param(params, CALL_PARAMETERS.hotwords);
  const terms = rawHotwords !== undefined ? callHotwords(rawHotwords, rejected) : [];
  const hotwords = terms.length > 0 ? terms : (tenant?.hotwords ?? []);

  let vocabularyId: string | null = null;
  const callVocabulary = param(params, CALL_PARAMETERS.vocabularyId);
  if (callVocabulary !== undefined) {
    if (VOCABULARY_ID_PATTERN.test(callVocabulary)) vocabularyId = callVocabulary;
    else rejected.push(`customParameters.vocabularyId: ${shown(callVocabulary)} is not a vocabulary id, ignored`);
  }
  vocabularyId ??= tenant?.vocabularyId ?? input.envVocabularyId ?? null;

  return {
    model: decision.model,
    fallback: decision.fallback,
    language: decision.language,
    corpusText: hotwords.length > 0 ? joinHotwords(hotwords) : null,
    vocabularyId,
    rule: decision.rule,
    rejected,
  };
}

/** The part of a decision stored with the call (CallStartJob.routing, calls.routing). */
export function storedRouting(d: RoutingDecision): RoleRouting {
  return { model: d.model, fallback: d.fallback, rule: d.rule, language: d.language };
}
