import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { envSchema } from '../../config/env.js';
import { isAppError } from '../../core/errors.js';
import { PARAFORMER_MODELS } from '../providers/paraformer/provider.js';
import { QWEN_MODELS } from '../providers/qwen/messages.js';
import {
  KNOWN_MODELS,
  MAX_CORPUS_TEXT_CHARS,
  RoutingConfigError,
  formatPath,
  loadRoutingFile,
  parseRoutingConfig,
} from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'callscribe-routing-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The problems of a file that must fail. */
function problems(text: string, name = 'routing.yaml'): string[] {
  try {
    parseRoutingConfig(text, name);
  } catch (err) {
    expect(err).toBeInstanceOf(RoutingConfigError);
    return [...(err as RoutingConfigError).problems];
  }
  throw new Error('expected the routing file to be refused');
}

/** 1-based line and column of the first occurrence of `needle` in `text`. */
function pos(text: string, needle: string, nth = 0): string {
  let at = -1;
  for (let i = 0; i <= nth; i++) at = text.indexOf(needle, at + 1);
  if (at < 0) throw new Error(`${needle} not in text`);
  const before = text.slice(0, at).split('\n');
  return `${before.length}:${before.at(-1)!.length + 1}`;
}

const FULL = `version: 1
default:
  model: paraformer-realtime-8k-v2
  fallback: qwen3-asr-flash-realtime
  language: zh
tenants:
  acme:
    hotwords: " 退款, 发票、会员卡，退款 "
    vocabularyId: vocab-acme-24ee19fa
  globex:
    hotwords: [Globex, " 发票 ", ""]
    model: qwen3-asr-flash-realtime-2025-10-27
    fallback: null
rules:
  - name: zh
    match:
      customParameters: { language: zh, queue: [billing, "1025"] }
      role: [customer, agent]
      source: twilio
    model: paraformer-realtime-8k-v2
  - name: not-zh
    match:
      customParameters:
        language: { not: [zh, yue] }
      tenant: { not: globex }
    model: qwen3-asr-flash-realtime
    fallback: paraformer-realtime-v2
    language: en
`;

describe('parseRoutingConfig', () => {
  it('reads every part of the format into the validated shape', () => {
    const c = parseRoutingConfig(FULL, 'routing.yaml');
    expect(c.version).toBe(1);
    expect(c.source).toBe('routing.yaml');
    expect(c.default).toEqual({ model: 'paraformer-realtime-8k-v2', fallback: 'qwen3-asr-flash-realtime', language: 'zh' });
    expect(c.tenants.get('acme')).toEqual({
      hotwords: ['退款', '发票', '会员卡'],
      vocabularyId: 'vocab-acme-24ee19fa',
      model: undefined,
      fallback: undefined,
      language: undefined,
    });
    expect(c.tenants.get('globex')).toMatchObject({ hotwords: ['Globex', '发票'], model: 'qwen3-asr-flash-realtime-2025-10-27', fallback: null });
    expect(c.rules.map((r) => r.name)).toEqual(['zh', 'not-zh']);
    const [zh, notZh] = c.rules;
    expect(zh).toMatchObject({ model: 'paraformer-realtime-8k-v2', fallback: undefined, language: undefined });
    expect([...zh!.match.customParameters]).toEqual([
      ['language', { kind: 'in', values: ['zh'] }],
      ['queue', { kind: 'in', values: ['billing', '1025'] }],
    ]);
    expect(zh!.match.role).toEqual({ kind: 'in', values: ['customer', 'agent'] });
    expect(zh!.match.source).toEqual({ kind: 'in', values: ['twilio'] });
    expect(zh!.match.tenant).toBeNull();
    expect(notZh!.match.customParameters.get('language')).toEqual({ kind: 'not', values: ['zh', 'yue'] });
    expect(notZh!.match.tenant).toEqual({ kind: 'not', values: ['globex'] });
    expect(notZh).toMatchObject({ fallback: 'paraformer-realtime-v2', language: 'en' });
  });

  it('accepts a minimal file: no default, tenants or rules', () => {
    expect(parseRoutingConfig('version: 1\n', 'r.yaml')).toMatchObject({ default: null, rules: [] });
  });

  it('names file, line, column, path and problem for an unknown model', () => {
    const text = FULL.replace('model: qwen3-asr-flash-realtime\n    fallback: paraformer-realtime-v2', 'model: qwen-asr-flsh\n    fallback: paraformer-realtime-v2');
    const [p, ...rest] = problems(text);
    expect(rest).toEqual([]);
    expect(p).toBe(
      `routing.yaml:${pos(text, 'qwen-asr-flsh')}: rules[1].model: unknown model "qwen-asr-flsh" (known: paraformer-realtime-8k-v2, paraformer-realtime-v2, qwen3-asr-flash-realtime, qwen3-asr-flash-realtime-2025-10-27, qwen3-asr-flash-realtime-2026-02-10)`,
    );
  });

  it('reports every problem at once, each at its own line', () => {
    const text = `version: 1
default:
  model: paraformer-realtime-8k-v2
  fallbak: qwen3-asr-flash-realtime
tenants:
  acme:
    hotwords: [退款, 1025]
rules:
  - name: a
    match: { role: custmer }
    model: paraformer-realtime-8k-v2
    language: english
  - name: b
    match: { customParameters: { queue: 1025, language: { not: zh, but: en } } }
    model: qwen3-asr-flash-realtime
  - match: { source: [twilio, rpt] }
`;
    expect(problems(text)).toEqual([
      `routing.yaml:${pos(text, 'fallbak')}: default.fallbak: unknown key "fallbak" (did you mean "fallback"?)`,
      `routing.yaml:${pos(text, '1025')}: tenants.acme.hotwords[1]: expected a string, got number 1025 (quote it: "1025")`,
      `routing.yaml:${pos(text, 'custmer')}: rules[0].match.role: unknown value "custmer" (expected customer or agent) (did you mean "customer"?)`,
      expect.stringMatching(new RegExp(`^routing\\.yaml:${pos(text, 'english')}: rules\\[0\\]\\.language: unknown language "english" \\(codes: zh, yue, en, `)),
      `routing.yaml:${pos(text, '1025', 1)}: rules[1].match.customParameters.queue: expected a string, got number 1025 (quote it: "1025")`,
      `routing.yaml:${pos(text, 'but')}: rules[1].match.customParameters.language.but: unknown key "but" (did you mean "not"?) (a condition is a value, a list of values, or { not: … })`,
      // a missing key points at the mapping that lacks it
      `routing.yaml:${pos(text, 'match: { source')}: rules[2].name: missing (required)`,
      `routing.yaml:${pos(text, 'match: { source')}: rules[2].model: missing (required)`,
      `routing.yaml:${pos(text, 'rpt')}: rules[2].match.source[1]: unknown value "rpt" (expected twilio, rtp or sip) (did you mean "rtp"?)`,
    ]);
  });

  it('checks what spans fields: duplicate names, self-fallback, empty conditions, reserved names', () => {
    const text = `version: 1
default: { model: qwen3-asr-flash-realtime, fallback: qwen3-asr-flash-realtime }
rules:
  - { name: x, match: { role: agent }, model: paraformer-realtime-8k-v2 }
  - { name: x, match: { tenant: acme }, model: paraformer-realtime-8k-v2 }
`;
    expect(problems(text)).toEqual([
      `routing.yaml:${pos(text, 'qwen3-asr-flash-realtime }')}: default.fallback: fallback is the model itself (qwen3-asr-flash-realtime); omit it or name another model`,
      `routing.yaml:${pos(text, 'x, match: { tenant')}: rules[1].name: duplicate rule name "x" (also rules[0])`,
    ]);

    expect(problems('version: 1\nrules:\n  - { name: a, match: {}, model: paraformer-realtime-v2 }\n')[0]).toMatch(
      /^routing\.yaml:3:23: rules\[0\]\.match: a rule needs at least one condition/,
    );
    expect(problems('version: 1\nrules:\n  - { name: a, match: { customParameters: {} }, model: paraformer-realtime-v2 }\n')[0]).toMatch(
      /rules\[0\]\.match\.customParameters: empty customParameters/,
    );
    expect(problems('version: 1\nrules:\n  - { name: a, match: { role: [] }, model: paraformer-realtime-v2 }\n')[0]).toMatch(/rules\[0\]\.match\.role: empty list/);
    for (const name of ['default', 'env-default', 'customParameters.asrModel', 'tenants.acme']) {
      expect(problems(`version: 1\nrules:\n  - { name: ${name}, match: { role: agent }, model: paraformer-realtime-v2 }\n`)[0]).toMatch(/rules\[0\]\.name: .* is reserved/);
    }
    expect(problems('version: 1\nrules:\n  - { name: "has space", match: { role: agent }, model: paraformer-realtime-v2 }\n')[0]).toMatch(/rules\[0\]\.name: a rule name is/);
  });

  it('refuses a missing or unsupported version, an empty file, a non-mapping', () => {
    expect(problems('rules: []\n')).toEqual(['routing.yaml:1:1: version: missing (required): write `version: 1`']);
    expect(problems('version: 2\n')).toEqual(['routing.yaml:1:10: version: unsupported version 2 (this callscribe reads version 1)']);
    expect(problems('# nothing yet\n')).toEqual(['routing.yaml: the file is empty (expected a mapping starting with `version: 1`)']);
    expect(problems('- version: 1\n')).toEqual(['routing.yaml:1:1: (root): expected a mapping, got a list']);
  });

  it('gives syntax errors with yaml\'s own position, JSON included', () => {
    const yaml = 'version: 1\nrules:\n  - name: a\n    model: [x\n';
    const [p] = problems(yaml);
    expect(p).toMatch(/^routing\.yaml:\d+:\d+: syntax error: /);
    const json = '{\n  "version": 1,\n  "rules": [\n    {"name": "a" "model": "x"}\n  ]\n}\n';
    expect(problems(json, 'routing.json')[0]).toMatch(/^routing\.json:4:\d+: syntax error: /);
    expect(problems('version: 1\nversion: 1\n')).toEqual(['routing.yaml:2:1: duplicate key (each key may appear once in a mapping)']);
  });

  it('bounds hotwords', () => {
    const many = Array.from({ length: 600 }, (_, i) => `w${i}`).join(',');
    expect(problems(`version: 1\ntenants:\n  a: { hotwords: "${many}" }\n`)[0]).toMatch(/tenants\.a\.hotwords: 600 hotwords \(at most 500\)/);
    const long = 'x'.repeat(101);
    expect(problems(`version: 1\ntenants:\n  a: { hotwords: [ok, ${long}] }\n`)[0]).toMatch(/hotword 2 is longer than 100 characters/);
    const big = Array.from({ length: 100 }, (_, i) => `${'y'.repeat(60)}${i}`);
    expect(big.join(', ').length).toBeGreaterThan(MAX_CORPUS_TEXT_CHARS);
    expect(problems(`version: 1\ntenants:\n  a: { hotwords: [${big.join(', ')}] }\n`)[0]).toMatch(/hotwords total more than 4000 characters/);
    expect(problems('version: 1\ntenants:\n  a: { hotwords: 12 }\n')[0]).toMatch(/expected a string \("a, b, c"\) or a list of strings, got number 12/);
    expect(problems('version: 1\ntenants:\n  a: { vocabularyId: "vocab id" }\n')[0]).toMatch(/tenants\.a\.vocabularyId: not a vocabulary id/);
  });

  it('follows aliases and merge keys', () => {
    const c = parseRoutingConfig(
      `version: 1
default: &qwen { model: qwen3-asr-flash-realtime, fallback: paraformer-realtime-8k-v2 }
rules:
  - { name: a, match: { role: customer }, <<: *qwen }
`,
      'r.yaml',
    );
    expect(c.rules[0]).toMatchObject({ name: 'a', model: 'qwen3-asr-flash-realtime', fallback: 'paraformer-realtime-8k-v2' });
  });

  it('throws an AppError with a stable code', () => {
    let err: unknown;
    try {
      parseRoutingConfig('version: 3\n', 'x.yaml');
    } catch (e) {
      err = e;
    }
    expect(isAppError(err) && err.code).toBe('ERR_CONFIG_ROUTING');
    expect(isAppError(err) && err.retryable).toBe(false);
    expect((err as Error).message).toBe('x.yaml:1:10: version: unsupported version 3 (this callscribe reads version 1)');
  });
});

describe('loadRoutingFile', () => {
  it('reads YAML and JSON files', () => {
    const y = loadRoutingFile(file('routing.yaml', FULL));
    expect(y.rules).toHaveLength(2);
    const j = loadRoutingFile(
      file('routing.json', JSON.stringify({ version: 1, rules: [{ name: 'a', match: { role: 'customer' }, model: 'qwen3-asr-flash-realtime' }] }, null, '\t')),
    );
    expect(j.rules[0]).toMatchObject({ name: 'a', model: 'qwen3-asr-flash-realtime' });
  });

  it('names the file in every error: unreadable, bad JSON, invalid', () => {
    const missing = join(dir, 'nope.yaml');
    expect(() => loadRoutingFile(missing)).toThrow(`${missing}: cannot read the routing file (ENOENT)`);
    const badJson = file('bad.json', '{\n  "version": 1,\n  "default": {"model": "paraformer-realtime-8k-v2",}}\n  ]\n');
    expect(() => loadRoutingFile(badJson)).toThrow(new RegExp(`^${badJson.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `));
    const invalid = file('invalid.json', '{\n  "version": 1,\n  "default": {\n    "model": "paraformer-8k"\n  }\n}\n');
    expect(() => loadRoutingFile(invalid)).toThrow(`${invalid}:4:14: default.model: unknown model "paraformer-8k"`);
  });
});

describe('model list', () => {
  it('is exactly the models the providers run, and covers every ASR_MODEL value', () => {
    expect([...KNOWN_MODELS].sort()).toEqual([...PARAFORMER_MODELS, ...QWEN_MODELS].sort());
    for (const m of envSchema.shape.ASR_MODEL.unwrap().options) expect(KNOWN_MODELS).toContain(m);
  });

  it('formats paths the way users read them', () => {
    expect(formatPath([])).toBe('(root)');
    expect(formatPath(['rules', 2, 'match', 'customParameters', 'queue'])).toBe('rules[2].match.customParameters.queue');
    expect(formatPath(['tenants', 'acme corp', 'hotwords', 0])).toBe('tenants["acme corp"].hotwords[0]');
  });
});
