/**
 * Loads a QA rule file (YAML or JSON; `yaml` parses both and keeps source positions) and
 * validates it with ./schema.ts. Any problem is a RulesConfigError (ERR_CONFIG_RULES) whose
 * message has one line per problem, `file:line:col: path: problem`, e.g.
 *
 *   rules/zh-starter.yaml:40:15: rules[3].config.window.first: give either ms or percent
 *
 * Parsing and locating reuse the routing file's machinery (src/asr/routing/config.ts
 * `validateConfigText`). A duplicate (id, version) is rejected.
 */
import { readFileSync } from 'node:fs';
import { AppError } from '../../core/errors.js';
import { validateConfigText } from '../../asr/routing/config.js';
import { RULE_FILE_KEYS, rulesFileSchema, type Rule } from './schema.js';

export interface RuleSet {
  /** In file order. */
  readonly rules: readonly Rule[];
  /** The file it came from (for logs). */
  readonly source: string;
}

export class RulesConfigError extends AppError {
  /** One line per problem, `file:line:col: path: problem`. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[], cause?: unknown) {
    const shown = problems.slice(0, 20);
    const more = problems.length > shown.length ? `\n(${problems.length - shown.length} more problems)` : '';
    super('ERR_CONFIG_RULES', `${shown.join('\n')}${more}`, {
      category: 'invalid_request',
      retryable: false,
      cause,
      details: { problems: problems.length },
    });
    this.name = 'RulesConfigError';
    this.problems = problems;
  }
}

/** Parses and validates rule-file text; `fileName` only labels the error messages. */
export function parseRulesFile(text: string, fileName: string): RuleSet {
  const result = validateConfigText(text, fileName, rulesFileSchema, {
    knownKeys: RULE_FILE_KEYS,
    emptyMessage: 'the file is empty (expected a mapping with `rules: [...]`)',
  });
  if (!result.ok) throw new RulesConfigError(result.problems, result.cause);
  return { rules: result.data.rules, source: fileName };
}

/** Reads and validates a rule file. Throws RulesConfigError (unreadable, syntax, invalid rule). */
export function loadRulesFile(path: string): RuleSet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new RulesConfigError([`${path}: cannot read the rule file (${code})`], err);
  }
  return parseRulesFile(text, path);
}
