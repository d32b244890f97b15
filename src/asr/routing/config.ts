/**
 * The routing file (ROUTING_FILE): which recogniser model each call and role gets, fallbacks,
 * and per-tenant hotwords. JSON or YAML (both parsed with `yaml`, which keeps source
 * positions), validated with zod. Any problem is a RoutingConfigError (ERR_CONFIG_ROUTING)
 * whose message names the file, line and column, the path and the problem, e.g.
 *
 *   routing.yaml:12:12: rules[2].model: unknown model "qwen-asr-flsh" (known: …)
 *
 * Users write this file: docs/routing.md is its reference, with complete examples.
 */
import { readFileSync } from 'node:fs';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import { ROLES, type CallSource } from '../../core/types.js';

/** Paraformer real-time models on the inference endpoint (spec Part A). */
export const PARAFORMER_ROUTING_MODELS = ['paraformer-realtime-8k-v2', 'paraformer-realtime-v2'] as const;
/** Qwen3-ASR-Flash-Realtime: the stable alias and its dated snapshots (spec B1). */
export const QWEN_REALTIME_MODELS = [
  'qwen3-asr-flash-realtime',
  'qwen3-asr-flash-realtime-2025-10-27',
  'qwen3-asr-flash-realtime-2026-02-10',
] as const;
/** Every model a routing file (or a call's `asrModel`) may name. */
export const KNOWN_MODELS = [...PARAFORMER_ROUTING_MODELS, ...QWEN_REALTIME_MODELS] as const;
export type KnownModel = (typeof KNOWN_MODELS)[number];

export function isKnownModel(value: unknown): value is KnownModel {
  return typeof value === 'string' && (KNOWN_MODELS as readonly string[]).includes(value);
}

/**
 * Language codes a hint may use: qwen's 27 (spec B3.1), a superset of paraformer-realtime-v2's
 * `language_hints`. paraformer-realtime-8k-v2 recognises Mandarin only and ignores hints.
 */
export const LANGUAGE_CODES = [
  'zh', 'yue', 'en', 'ja', 'de', 'ko', 'ru', 'fr', 'pt', 'ar', 'it', 'es', 'hi', 'id',
  'th', 'tr', 'uk', 'vi', 'cs', 'da', 'fil', 'fi', 'is', 'ms', 'no', 'pl', 'sv',
] as const;
export type LanguageCode = (typeof LANGUAGE_CODES)[number];

export function isLanguageCode(value: unknown): value is LanguageCode {
  return typeof value === 'string' && (LANGUAGE_CODES as readonly string[]).includes(value);
}

export const CALL_SOURCES: readonly CallSource[] = ['twilio', 'rtp', 'sip'];

/** Hotword limits: qwen's corpus.text takes ≤ 10 000 tokens; we stay far below. */
export const MAX_HOTWORD_CHARS = 100;
export const MAX_HOTWORDS = 500;
export const MAX_CORPUS_TEXT_CHARS = 4000;
/** Separators of a hotword string: ASCII and full-width commas, 、, semicolons, newlines. */
export const HOTWORD_SEPARATORS = /[,，、;；\n]/;
/** Paraformer vocabulary ids look like `vocab-prefix-24ee19fa…`. */
export const VOCABULARY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Rule names: stored with every call (calls.routing) and logged. */
export const RULE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Values of RoutingDecision.rule that are not rule names. */
export const RESERVED_RULE_NAMES = ['default', 'env-default', 'customParameters.asrModel'] as const;

// ---------------------------------------------------------------------------------------------
// The validated configuration (what resolveRouting reads)

/** A condition on one value: one of `values` ("in"), or present and none of them ("not"). */
export interface ValueMatcher {
  readonly kind: 'in' | 'not';
  readonly values: readonly string[];
}

export interface RuleMatch {
  /** Every listed parameter must match (AND). */
  readonly customParameters: ReadonlyMap<string, ValueMatcher>;
  readonly role: ValueMatcher | null;
  readonly source: ValueMatcher | null;
  readonly tenant: ValueMatcher | null;
}

/** model / fallback / language of one layer. `fallback: undefined` inherits, `null` means none. */
export interface RouteTarget {
  readonly model: KnownModel;
  readonly fallback: KnownModel | null | undefined;
  readonly language: LanguageCode | undefined;
}

export interface RoutingRule extends RouteTarget {
  readonly name: string;
  readonly match: RuleMatch;
}

export interface TenantConfig {
  readonly hotwords: readonly string[];
  readonly vocabularyId: string | undefined;
  readonly model: KnownModel | undefined;
  readonly fallback: KnownModel | null | undefined;
  readonly language: LanguageCode | undefined;
}

export interface RoutingConfig {
  readonly version: 1;
  /** null: the env default (ASR_MODEL) for every role, no fallback. */
  readonly default: RouteTarget | null;
  readonly tenants: ReadonlyMap<string, TenantConfig>;
  /** In file order; the first match wins. */
  readonly rules: readonly RoutingRule[];
  /** The file it came from (for logs). */
  readonly source: string;
}

export class RoutingConfigError extends AppError {
  /** One line per problem, `file:line:col: path: problem`. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[], cause?: unknown) {
    const shown = problems.slice(0, 20);
    const more = problems.length > shown.length ? `\n(${problems.length - shown.length} more problems)` : '';
    super('ERR_CONFIG_ROUTING', `${shown.join('\n')}${more}`, {
      category: 'invalid_request',
      retryable: false,
      cause,
      details: { problems: problems.length },
    });
    this.name = 'RoutingConfigError';
    this.problems = problems;
  }
}

// ---------------------------------------------------------------------------------------------
// Schema

const nonString = (input: unknown): string => {
  if (input === undefined) return 'missing (required)';
  if (typeof input === 'number' || typeof input === 'boolean') {
    return `expected a string, got ${typeof input} ${String(input)} (quote it: "${String(input)}")`;
  }
  return `expected a string, got ${describe(input)}`;
};

const str = () => z.string({ error: (iss) => nonString(iss.input) });

const modelName = z.enum(KNOWN_MODELS, {
  error: (iss) =>
    typeof iss.input === 'string'
      ? `unknown model ${JSON.stringify(iss.input)} (known: ${KNOWN_MODELS.join(', ')})${suggest(iss.input, KNOWN_MODELS)}`
      : nonString(iss.input),
});

const languageCode = z.enum(LANGUAGE_CODES, {
  error: (iss) =>
    typeof iss.input === 'string'
      ? `unknown language ${JSON.stringify(iss.input)} (codes: ${LANGUAGE_CODES.join(', ')})`
      : nonString(iss.input),
});

const fallbackModel = modelName.nullable().optional();

/** `value`, `[values]` or `{ not: value | [values] }`; `allowed` restricts the values. */
function valueMatcher(allowed?: readonly string[]) {
  return z.unknown().transform((input, ctx): ValueMatcher => {
    let kind: ValueMatcher['kind'] = 'in';
    let raw = input;
    const base: (string | number)[] = [];
    if (input !== null && typeof input === 'object' && !Array.isArray(input)) {
      const keys = Object.keys(input);
      const extra = keys.filter((k) => k !== 'not');
      for (const k of extra) {
        ctx.addIssue({
          code: 'custom',
          path: [k],
          params: { at: 'key' },
          message: `unknown key ${JSON.stringify(k)}${suggest(k, ['not'])} (a condition is a value, a list of values, or { not: … })`,
        });
      }
      if (!('not' in input)) {
        if (extra.length === 0) {
          ctx.addIssue({ code: 'custom', message: 'empty condition (expected a value, a list of values, or { not: … })' });
        }
        return z.NEVER;
      }
      kind = 'not';
      raw = input.not;
      base.push('not');
    }
    const list = Array.isArray(raw) ? raw : [raw];
    if (Array.isArray(raw) && raw.length === 0) {
      ctx.addIssue({ code: 'custom', path: base, message: 'empty list (expected at least one value)' });
      return z.NEVER;
    }
    const values: string[] = [];
    list.forEach((v, i) => {
      const path = Array.isArray(raw) ? [...base, i] : base;
      if (typeof v !== 'string') {
        ctx.addIssue({ code: 'custom', path, message: nonString(v) });
      } else if (allowed && !allowed.includes(v)) {
        const message = `unknown value ${JSON.stringify(v)} (expected ${orList(allowed)})${suggest(v, allowed)}`;
        ctx.addIssue({ code: 'custom', path, message });
      } else {
        values.push(v);
      }
    });
    return values.length === list.length ? { kind, values } : z.NEVER;
  });
}

/** A string ("a, b、c") or a list of strings → distinct trimmed terms, within the limits. */
const hotwordsSchema = z.unknown().transform((input, ctx): string[] => {
  let terms: string[];
  if (typeof input === 'string') {
    terms = splitHotwords(input);
  } else if (Array.isArray(input)) {
    terms = [];
    input.forEach((t, i) => {
      if (typeof t === 'string') {
        if (t.trim().length > 0) terms.push(t.trim());
      } else {
        ctx.addIssue({ code: 'custom', path: [i], message: nonString(t) });
      }
    });
  } else {
    ctx.addIssue({ code: 'custom', message: `expected a string ("a, b, c") or a list of strings, got ${describe(input)}` });
    return z.NEVER;
  }
  const unique = [...new Set(terms)];
  const long = unique.findIndex((t) => t.length > MAX_HOTWORD_CHARS);
  if (long >= 0) {
    ctx.addIssue({ code: 'custom', message: `hotword ${long + 1} is longer than ${MAX_HOTWORD_CHARS} characters` });
  }
  if (unique.length > MAX_HOTWORDS) {
    ctx.addIssue({ code: 'custom', message: `${unique.length} hotwords (at most ${MAX_HOTWORDS})` });
  }
  if (joinHotwords(unique).length > MAX_CORPUS_TEXT_CHARS) {
    ctx.addIssue({ code: 'custom', message: `hotwords total more than ${MAX_CORPUS_TEXT_CHARS} characters` });
  }
  return unique;
});

const vocabularyId = str().regex(VOCABULARY_ID_PATTERN, {
  error: () => 'not a vocabulary id (letters, digits, "_", ".", "-"; e.g. vocab-callscribe-24ee19fa)',
});

const ruleName = str()
  .regex(RULE_NAME_PATTERN, { error: () => 'a rule name is 1-64 letters, digits, "_", "." or "-", starting with a letter or digit' })
  .refine((n) => !(RESERVED_RULE_NAMES as readonly string[]).includes(n) && !n.startsWith('tenants.'), {
    error: (iss) => `${JSON.stringify(iss.input)} is reserved (default, env-default, customParameters.asrModel, tenants.*)`,
  });

function noSelfFallback(v: { model?: string | undefined; fallback?: string | null | undefined }, ctx: z.RefinementCtx) {
  if (v.model !== undefined && v.fallback === v.model) {
    ctx.addIssue({ code: 'custom', path: ['fallback'], message: `fallback is the model itself (${v.model}); omit it or name another model` });
  }
}

const targetSchema = z
  .strictObject({ model: modelName, fallback: fallbackModel, language: languageCode.optional() })
  .superRefine(noSelfFallback);

const tenantSchema = z
  .strictObject({
    hotwords: hotwordsSchema.optional(),
    vocabularyId: vocabularyId.optional(),
    model: modelName.optional(),
    fallback: fallbackModel,
    language: languageCode.optional(),
  })
  .superRefine(noSelfFallback);

const matchSchema = z
  .strictObject({
    customParameters: z.record(str(), valueMatcher()).optional(),
    role: valueMatcher(ROLES).optional(),
    source: valueMatcher(CALL_SOURCES).optional(),
    tenant: valueMatcher().optional(),
  })
  .superRefine((m, ctx) => {
    const params = m.customParameters === undefined ? 0 : Object.keys(m.customParameters).length;
    if (m.customParameters !== undefined && params === 0) {
      ctx.addIssue({ code: 'custom', path: ['customParameters'], message: 'empty customParameters (name at least one parameter)' });
    } else if (params === 0 && !m.role && !m.source && !m.tenant) {
      ctx.addIssue({
        code: 'custom',
        message: 'a rule needs at least one condition (customParameters, role, source, tenant); calls no rule matches use `default`',
      });
    }
  });

const ruleSchema = z
  .strictObject({ name: ruleName, match: matchSchema, model: modelName, fallback: fallbackModel, language: languageCode.optional() })
  .superRefine(noSelfFallback);

const fileSchema = z
  .strictObject({
    version: z.literal(1, {
      error: (iss) =>
        iss.input === undefined
          ? 'missing (required): write `version: 1`'
          : `unsupported version ${JSON.stringify(iss.input)} (this callscribe reads version 1)`,
    }),
    default: targetSchema.optional(),
    tenants: z.record(str().min(1, { error: () => 'empty tenant id' }), tenantSchema).optional(),
    rules: z.array(ruleSchema).max(1000).optional(),
  })
  .superRefine((f, ctx) => {
    const seen = new Map<string, number>();
    (f.rules ?? []).forEach((r, i) => {
      const first = seen.get(r.name);
      if (first === undefined) seen.set(r.name, i);
      else {
        const message = `duplicate rule name ${JSON.stringify(r.name)} (also rules[${first}])`;
        ctx.addIssue({ code: 'custom', path: ['rules', i, 'name'], message });
      }
    });
  });

// ---------------------------------------------------------------------------------------------
// Hotwords

/** Splits a hotword string on commas (ASCII, full-width), 、, semicolons and newlines. */
export function splitHotwords(text: string): string[] {
  return text
    .split(HOTWORD_SEPARATORS)
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
}

/** The qwen corpus.text for a list of hotwords. */
export function joinHotwords(terms: readonly string[]): string {
  return terms.join(', ');
}

// ---------------------------------------------------------------------------------------------
// Loading

/** Parses and validates routing-file text; `fileName` only labels the error messages. */
export function parseRoutingConfig(text: string, fileName: string): RoutingConfig {
  const result = validateConfigText(text, fileName, fileSchema, {
    knownKeys: ALL_KEYS,
    emptyMessage: 'the file is empty (expected a mapping starting with `version: 1`)',
  });
  if (!result.ok) throw new RoutingConfigError(result.problems, result.cause);
  return toConfig(result.data, fileName);
}

/** Outcome of validateConfigText: the parsed data, or one `file:line:col: path: problem` per problem. */
export type ConfigTextResult<T> =
  | { readonly ok: true; readonly data: T }
  | { readonly ok: false; readonly problems: string[]; readonly cause?: unknown };

/**
 * Parses JSON or YAML text (`yaml` keeps source positions) and validates it with a zod schema;
 * every syntax error and schema issue becomes `file:line:col: path: problem`, in file order.
 * `knownKeys` feeds "did you mean" for unknown keys; `emptyMessage` is the problem for an empty
 * file. Shared with the QA rule files (src/analytics/rules/loader.ts).
 */
export function validateConfigText<S extends z.ZodType>(
  text: string,
  fileName: string,
  schema: S,
  options: { readonly knownKeys: readonly string[]; readonly emptyMessage: string },
): ConfigTextResult<z.output<S>> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true });
  const at = (offset: number | undefined): string => {
    if (offset === undefined) return fileName;
    const { line, col } = lineCounter.linePos(offset);
    return `${fileName}:${line}:${col}`;
  };
  if (doc.errors.length > 0) {
    return { ok: false, problems: doc.errors.map((e) => `${at(e.pos[0])}: ${syntaxMessage(e.code, e.message)}`) };
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { ok: false, problems: [`${fileName}: ${err instanceof Error ? err.message : String(err)}`], cause: err };
  }
  if (data === null || data === undefined) {
    return { ok: false, problems: [`${fileName}: ${options.emptyMessage}`] };
  }
  const parsed = schema.safeParse(data, { reportInput: true });
  if (parsed.success) return { ok: true, data: parsed.data };
  const found: { offset: number | undefined; text: string }[] = [];
  for (const issue of parsed.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const path = [...issue.path, key];
        const offset = locate(doc, path, true);
        found.push({ offset, text: `${at(offset)}: ${formatPath(path)}: unknown key ${JSON.stringify(key)}${suggest(key, options.knownKeys)}` });
      }
      continue;
    }
    const atKey = issue.code === 'custom' && (issue.params as { at?: string } | undefined)?.at === 'key';
    const offset = locate(doc, issue.path, atKey);
    found.push({ offset, text: `${at(offset)}: ${formatPath(issue.path)}: ${issueMessage(issue)}` });
  }
  // in file order (stable: problems at one place keep zod's order)
  found.sort((a, b) => (a.offset ?? Infinity) - (b.offset ?? Infinity));
  return { ok: false, problems: found.map((f) => f.text), cause: parsed.error };
}

/**
 * Reads and validates a routing file (JSON or YAML: `yaml` parses both, with positions).
 * Throws RoutingConfigError for an unreadable file, a syntax error or an invalid policy.
 */
export function loadRoutingFile(path: string): RoutingConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new RoutingConfigError([`${path}: cannot read the routing file (${code})`], err);
  }
  // YAML 1.2 is a superset of JSON: one parser, with positions, whatever the extension
  return parseRoutingConfig(text, path);
}

type ParsedFile = z.infer<typeof fileSchema>;

function toTarget(t: {
  model: KnownModel;
  fallback?: KnownModel | null | undefined;
  language?: LanguageCode | undefined;
}): RouteTarget {
  return { model: t.model, fallback: t.fallback, language: t.language };
}

function toConfig(f: ParsedFile, source: string): RoutingConfig {
  const tenants = new Map<string, TenantConfig>();
  for (const [id, t] of Object.entries(f.tenants ?? {})) {
    tenants.set(id, {
      hotwords: t.hotwords ?? [],
      vocabularyId: t.vocabularyId,
      model: t.model,
      fallback: t.fallback,
      language: t.language,
    });
  }
  const rules: RoutingRule[] = (f.rules ?? []).map((r) => ({
    name: r.name,
    ...toTarget(r),
    match: {
      customParameters: new Map(Object.entries(r.match.customParameters ?? {})),
      role: r.match.role ?? null,
      source: r.match.source ?? null,
      tenant: r.match.tenant ?? null,
    },
  }));
  return { version: 1, default: f.default ? toTarget(f.default) : null, tenants, rules, source };
}

// ---------------------------------------------------------------------------------------------
// Error messages

/** Every key the file format knows (for "did you mean"). */
const ALL_KEYS = [
  'version', 'default', 'tenants', 'rules', 'model', 'fallback', 'language', 'hotwords',
  'vocabularyId', 'name', 'match', 'customParameters', 'role', 'source', 'tenant', 'not',
];

function orList(values: readonly string[]): string {
  return values.length <= 1 ? values.join('') : `${values.slice(0, -1).join(', ')} or ${values.at(-1)!}`;
}

/** A short description of a parsed value for messages ("a list", "the string \"x\""). */
export function describe(input: unknown): string {
  if (input === undefined) return 'nothing';
  if (input === null) return 'null (an empty value)';
  if (Array.isArray(input)) return 'a list';
  if (typeof input === 'object') return 'a mapping';
  if (typeof input === 'string') return `the string ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`;
  return `${typeof input} ${String(input)}`;
}

function issueMessage(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.input === undefined) return 'missing (required)';
      const expected = issue.expected === 'object' ? 'a mapping' : issue.expected === 'array' ? 'a list' : `a ${issue.expected}`;
      // custom messages (str(), version) are already phrased for users
      return issue.message.startsWith('Invalid input') ? `expected ${expected}, got ${describe(issue.input)}` : issue.message;
    }
    case 'too_big':
      return issue.origin === 'array' ? `too many entries (at most ${String(issue.maximum)})` : issue.message;
    default:
      return issue.message;
  }
}

function syntaxMessage(code: string, message: string): string {
  if (code === 'DUPLICATE_KEY') return 'duplicate key (each key may appear once in a mapping)';
  return `syntax error: ${message}`;
}

/** `rules[2].match.customParameters.language`, `tenants["acme corp"].hotwords[0]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(root)';
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else {
      const s = String(seg);
      if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(s)) out += out.length === 0 ? s : `.${s}`;
      else out += `[${JSON.stringify(s)}]`;
    }
  }
  return out;
}

/** ` (did you mean "x"?)` for a near miss (edit distance ≤ 2), else ''. */
function suggest(word: string, candidates: readonly string[]): string {
  let best: string | null = null;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance && d < Math.max(word.length, c.length)) {
      best = c;
      bestDistance = d;
    }
  }
  return best === null || best === word ? '' : ` (did you mean ${JSON.stringify(best)}?)`;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * Source offset of the node at `path` (or of its key when `atKey`); the nearest existing
 * ancestor when the path does not exist in the document (a missing key: its parent mapping).
 */
function locate(doc: Document, path: readonly PropertyKey[], atKey: boolean): number | undefined {
  let node: unknown = doc.contents;
  let best = rangeStart(node);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (isAlias(node)) node = node.resolve(doc);
    let next: unknown;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      const last = i === path.length - 1;
      if ((last && atKey) || pair.value === null) {
        return rangeStart(pair.key) ?? best;
      }
      next = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      next = node.items[seg];
    } else {
      break;
    }
    if (next === undefined || next === null) break;
    node = next;
    best = rangeStart(node) ?? best;
  }
  return best;
}

function rangeStart(node: unknown): number | undefined {
  if (node === null || typeof node !== 'object' || !('range' in node)) return undefined;
  const range = (node as { range?: unknown }).range;
  return Array.isArray(range) && typeof range[0] === 'number' ? range[0] : undefined;
}
