import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRulesFile, parseRulesFile, RulesConfigError } from './loader.js';

const STARTER = new URL('../../../rules/zh-starter.yaml', import.meta.url).pathname;

/** The problems of an invalid file (fails the test when it parses). */
function problems(text: string, name = 'r.yaml'): readonly string[] {
  try {
    parseRulesFile(text, name);
  } catch (err) {
    expect(err).toBeInstanceOf(RulesConfigError);
    expect((err as RulesConfigError).code).toBe('ERR_CONFIG_RULES');
    return (err as RulesConfigError).problems;
  }
  throw new Error('expected the file to be rejected');
}

const KEYWORD = `
  - id: kw
    version: 1
    name: keyword
    kind: keyword
    severity: info
    config:
      phrases: [投诉]`;

describe('parseRulesFile', () => {
  it('applies the defaults and normalises the config', () => {
    const set = parseRulesFile(`rules:${KEYWORD}\n      window: { first: { percent: 10 } }\n`, 'r.yaml');
    expect(set.source).toBe('r.yaml');
    expect(set.rules).toEqual([
      {
        id: 'kw',
        version: 1,
        name: 'keyword',
        kind: 'keyword',
        scope: 'postcall',
        role: 'any',
        severity: 'info',
        alert: false,
        enabled: true,
        tenant: null,
        description: null,
        config: {
          phrases: ['投诉'],
          match: 'any',
          window: { type: 'first', length: { unit: 'percent', value: 10 } },
          negate: false,
          proximity: null,
        },
      },
    ]);
  });

  it('reads JSON, every kind, and keeps emotion_window config opaque', () => {
    const file = {
      version: 1,
      rules: [
        { id: 'a', version: 2, name: 'a', kind: 'absence', severity: 'warning', role: 'agent', config: { phrases: ['录音'], window: { fromMs: 0, toMs: 15000 } } },
        { id: 's', version: 1, name: 's', kind: 'silence', severity: 'warning', config: { minMs: 20000 } },
        { id: 'i', version: 1, name: 'i', kind: 'interruption', severity: 'info', config: { minOverlapMs: 1000, minCount: 2 } },
        { id: 'e', version: 1, name: 'e', kind: 'emotion_window', scope: 'realtime', severity: 'critical', alert: true, config: { windowSentences: 5 } },
        { id: 'p', version: 1, name: 'p', kind: 'keyword', severity: 'info', config: { proximity: { a: '提供', b: ['手机号', '身份证'], withinChars: 4 }, window: { fromPercent: 50 } } },
      ],
    };
    const set = parseRulesFile(JSON.stringify(file, null, 2), 'r.json');
    expect(set.rules.map((r) => r.kind)).toEqual(['absence', 'silence', 'interruption', 'emotion_window', 'keyword']);
    const [absence, , interruption, emotion, proximity] = set.rules;
    expect(absence?.config).toEqual({ phrases: ['录音'], match: 'any', window: { type: 'range', unit: 'ms', from: 0, to: 15000 } });
    expect(interruption?.config).toEqual({ minOverlapMs: 1000, minCount: 2, windowMs: null });
    expect(emotion?.config).toEqual({ windowSentences: 5 });
    expect(proximity?.config).toMatchObject({
      phrases: [],
      window: { type: 'range', unit: 'percent', from: 50, to: null },
      proximity: { a: ['提供'], b: ['手机号', '身份证'], withinChars: 4 },
    });
  });

  it('names file:line:col and the path of each problem', () => {
    const text = `version: 1
rules:
  - id: ok
    version: 1
    name: x
    kind: keywrd
    severity: info
    config: {}
  - id: w
    version: 1
    name: x
    kind: keyword
    severity: info
    config:
      phrases: [投诉, 12315]
      windw: {}
`;
    expect(problems(text)).toEqual([
      'r.yaml:6:11: rules[0].kind: unknown kind "keywrd" (kinds: keyword, absence, silence, interruption, emotion_window)',
      'r.yaml:15:21: rules[1].config.phrases[1]: expected a string, got number 12315 (quote it: "12315")',
      'r.yaml:16:7: rules[1].config.windw: unknown key "windw" (did you mean "window"?)',
    ]);
  });

  it('rejects a duplicate (id, version) at the second one, but not a new version', () => {
    const rule = (v: number) => KEYWORD.replace('version: 1', `version: ${v}`);
    expect(parseRulesFile(`rules:${rule(1)}${rule(2)}\n`, 'r.yaml').rules.map((r) => r.version)).toEqual([1, 2]);
    expect(problems(`rules:${rule(1)}${rule(1)}\n`)).toEqual([
      'r.yaml:10:14: rules[1].version: duplicate rule kw version 1 (also rules[0]); publish a change as a new version',
    ]);
  });

  it('rejects windows, phrases and ids that make no sense', () => {
    const rule = (config: string, extra = '') =>
      `rules:\n  - id: r\n    version: 1\n    name: r\n    kind: keyword\n    severity: info\n${extra}    config: ${config}\n`;
    expect(problems(rule('{ phrases: [a], window: { first: { ms: 1, percent: 2 } } }'))[0]).toMatch(/window\.first: give either ms or percent/);
    expect(problems(rule('{ phrases: [a], window: { first: { ms: 1 }, toMs: 5 } }'))[0]).toMatch(/window: a window has one form, not first and fromMs\/toMs/);
    expect(problems(rule('{ phrases: [a], window: { fromMs: 5, toMs: 5 } }'))[0]).toMatch(/window\.toMs: must be after the window start/);
    expect(problems(rule('{ phrases: ["，。"] }'))[0]).toMatch(/phrases\[0\]: a phrase needs a letter/);
    expect(problems(rule('{ phrases: [投诉, "投 诉！"] }'))[0]).toMatch(/phrases\[1\]: same phrase as phrases\[0\]/);
    expect(problems(rule('{ match: all }'))[0]).toMatch(/config: a keyword rule needs phrases, proximity or both/);
    expect(problems(rule('{ phrases: [a] }').replace('id: r', 'id: Bad_Id'))[0]).toMatch(/rules\[0\]\.id: a rule id is a slug/);
  });

  it('rejects scopes the evaluator cannot run live', () => {
    const rule = (kind: string, config: string, scope = 'both') =>
      `rules:\n  - id: r\n    version: 1\n    name: r\n    kind: ${kind}\n    scope: ${scope}\n    severity: info\n    config: ${config}\n`;
    expect(problems(rule('keyword', '{ phrases: [a], window: { first: { percent: 10 } } }'))[0]).toMatch(
      /rules\[0\]\.config\.window: scope both needs a window in ms from the call start/,
    );
    expect(problems(rule('keyword', '{ phrases: [a], window: { last: { ms: 1000 } } }', 'realtime'))[0]).toMatch(/config\.window: scope realtime/);
    expect(problems(rule('keyword', '{ phrases: [a], negate: true }'))[0]).toMatch(/rules\[0\]\.scope: a negated keyword rule/);
    expect(problems(rule('absence', '{ phrases: [a], window: { first: { ms: 1 } } }'))[0]).toMatch(/absence rules are evaluated post-call only/);
    expect(problems(rule('silence', '{ minMs: 1 }', 'realtime'))[0]).toMatch(/silence rules are evaluated post-call only/);
    // live keyword rules with an ms window from the start are fine
    expect(() => parseRulesFile(rule('keyword', '{ phrases: [a], window: { fromMs: 0, toMs: 30000 } }'), 'r.yaml')).not.toThrow();
  });

  it('reports syntax errors and empty files with positions', () => {
    expect(problems('rules:\n  - id: a\n  - id: [\n')[0]).toMatch(/^r\.yaml:\d+:\d+: syntax error/);
    expect(problems('')).toEqual(['r.yaml: the file is empty (expected a mapping with `rules: [...]`)']);
    expect(problems('version: 2\nrules: []\n')).toEqual(['r.yaml:1:10: version: unsupported version 2 (this callscribe reads version 1)']);
  });
});

describe('loadRulesFile', () => {
  it('loads the starter pack', () => {
    const set = loadRulesFile(STARTER);
    expect(set.source).toBe(STARTER);
    expect(new Set(set.rules.map((r) => r.id)).size).toBe(set.rules.length);
    expect(new Set(set.rules.map((r) => r.kind))).toEqual(new Set(['keyword', 'absence', 'silence', 'interruption', 'emotion_window']));
  });

  it('reports an unreadable file with ERR_CONFIG_RULES', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rules-'));
    expect(() => loadRulesFile(join(dir, 'missing.yaml'))).toThrow(/missing\.yaml: cannot read the rule file \(ENOENT\)/);
    writeFileSync(join(dir, 'bad.yaml'), 'rules: 3\n');
    expect(() => loadRulesFile(join(dir, 'bad.yaml'))).toThrow(/bad\.yaml:1:8: rules: expected a list, got number 3/);
  });
});
