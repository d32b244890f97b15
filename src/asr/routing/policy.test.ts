import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Role } from '../../core/types.js';
import { parseRoutingConfig, type RoutingConfig } from './config.js';
import { resolveRouting, storedRouting, type RoutingInput } from './policy.js';

const PARA = 'paraformer-realtime-8k-v2';
const PARA_V2 = 'paraformer-realtime-v2';
const QWEN = 'qwen3-asr-flash-realtime';
const QWEN_DATED = 'qwen3-asr-flash-realtime-2025-10-27';

/** The `# example: <name>` YAML blocks of docs/routing.md: the documented policies are tested as written. */
const DOC = readFileSync(new URL('../../../docs/routing.md', import.meta.url), 'utf8');
const BLOCKS = [...DOC.matchAll(/```(yaml|json)\n([\s\S]*?)```/g)].map((m) => m[2]!);
function example(name: string): RoutingConfig {
  const block = BLOCKS.find((b) => b.startsWith(`# example: ${name}\n`));
  if (!block) throw new Error(`docs/routing.md has no example ${name}`);
  return parseRoutingConfig(block, `docs/routing.md#${name}`);
}

function input(role: Role, extra: Partial<RoutingInput> = {}): RoutingInput {
  return { source: 'twilio', role, tenantId: 'default', customParameters: {}, envDefaultModel: PARA, ...extra };
}

const config = (text: string) => parseRoutingConfig(`version: 1\n${text}`, 'test.yaml');

describe('docs/routing.md', () => {
  it('every complete file in the docs is valid', () => {
    const files = BLOCKS.filter((b) => /^(# example: .*\n)?(version: 1|\{\n\s+"version": 1)/.test(b));
    expect(files.length).toBeGreaterThanOrEqual(7);
    for (const b of files) expect(() => parseRoutingConfig(b, 'docs/routing.md')).not.toThrow();
  });
});

describe('typical policies (the docs examples)', () => {
  it('Mandarin calls on paraformer-8k-v2 for both roles', () => {
    const c = example('mandarin-on-paraformer');
    for (const role of ['customer', 'agent'] as const) {
      expect(resolveRouting(c, input(role, { customParameters: { language: 'zh' } }))).toEqual({
        model: PARA,
        fallback: QWEN,
        language: 'zh',
        corpusText: null,
        vocabularyId: null,
        rule: 'mandarin-on-paraformer',
        rejected: [],
      });
      expect(resolveRouting(c, input(role, { customParameters: { language: 'en' } }))).toMatchObject({ model: QWEN, fallback: PARA_V2, language: 'en', rule: 'default' });
      expect(resolveRouting(c, input(role))).toMatchObject({ model: QWEN, language: null, rule: 'default' });
    }
  });

  it('the customer on qwen for 7-class emotion while the agent stays on paraformer', () => {
    const c = example('customer-emotion-on-qwen');
    expect(resolveRouting(c, input('customer'))).toMatchObject({ model: QWEN, fallback: PARA, rule: 'customer-emotion-on-qwen' });
    expect(resolveRouting(c, input('agent'))).toMatchObject({ model: PARA, fallback: null, rule: 'default' });
  });

  it('non-Chinese language hints on qwen, with the hint', () => {
    const c = example('non-chinese-on-qwen');
    for (const role of ['customer', 'agent'] as const) {
      expect(resolveRouting(c, input(role, { customParameters: { language: 'en' } }))).toMatchObject({
        model: QWEN,
        fallback: PARA_V2,
        language: 'en',
        rule: 'non-chinese-on-qwen',
      });
      expect(resolveRouting(c, input(role, { customParameters: { language: 'zh' } }))).toMatchObject({ model: PARA, language: 'zh', rule: 'default' });
      // `not` needs the parameter: no hint is not a non-Chinese hint
      expect(resolveRouting(c, input(role))).toMatchObject({ model: PARA, language: null, rule: 'default' });
    }
  });

  it('a tenant pinned to a model, ahead of the other rules', () => {
    const c = example('tenant-pinned');
    for (const role of ['customer', 'agent'] as const) {
      expect(resolveRouting(c, input(role, { tenantId: 'globex' }))).toMatchObject({
        model: QWEN_DATED,
        fallback: PARA,
        rule: 'globex-on-qwen',
        corpusText: 'Globex, 退款, 发票',
      });
    }
    expect(resolveRouting(c, input('customer', { tenantId: 'acme' }))).toMatchObject({ model: QWEN, rule: 'customer-emotion-on-qwen', corpusText: null });
    expect(resolveRouting(c, input('agent', { tenantId: 'acme' }))).toMatchObject({ model: PARA, rule: 'default' });
  });

  it('the combined example decides as the docs say', () => {
    const c = example('combined');
    const acme = (role: Role, params: Record<string, string>) => resolveRouting(c, input(role, { tenantId: 'acme', customParameters: params }));
    for (const role of ['customer', 'agent'] as const) {
      expect(acme(role, { queue: 'billing' })).toEqual({
        model: PARA,
        fallback: QWEN,
        language: 'zh',
        corpusText: '退款, 发票, 会员卡',
        vocabularyId: 'vocab-acme-24ee19fa',
        rule: 'default',
        rejected: [],
      });
    }
    expect(acme('customer', { queue: 'complaints' })).toMatchObject({ model: QWEN, fallback: PARA, rule: 'complaints-customer-on-qwen' });
    expect(acme('agent', { queue: 'complaints' })).toMatchObject({ model: PARA, rule: 'default' });
    expect(resolveRouting(c, input('agent', { tenantId: 'initech' }))).toMatchObject({ model: PARA_V2, fallback: QWEN, language: 'en', rule: 'tenants.initech' });
    expect(resolveRouting(c, input('agent', { tenantId: 'globex' }))).toMatchObject({ model: QWEN_DATED, fallback: QWEN, rule: 'globex-on-qwen' });
    expect(resolveRouting(c, input('agent', { source: 'rtp' }))).toMatchObject({ model: PARA, fallback: null, rule: 'rtp-on-paraformer' });
    expect(resolveRouting(c, input('agent', { customParameters: { language: 'yue' } }))).toMatchObject({ model: PARA, language: 'yue', rule: 'default' });
    expect(resolveRouting(c, input('agent', { customParameters: { asrModel: QWEN } }))).toMatchObject({ model: QWEN, fallback: PARA, rule: 'customParameters.asrModel' });
  });
});

describe('resolveRouting', () => {
  it('without a file: the env default for every role, no fallback', () => {
    for (const role of ['customer', 'agent'] as const) {
      expect(resolveRouting(null, input(role, { envDefaultModel: QWEN }))).toEqual({
        model: QWEN,
        fallback: null,
        language: null,
        corpusText: null,
        vocabularyId: null,
        rule: 'env-default',
        rejected: [],
      });
    }
    expect(resolveRouting(config('rules: []\n'), input('agent'))).toMatchObject({ model: PARA, fallback: null, rule: 'env-default' });
  });

  it('first match wins, all conditions of a rule must hold', () => {
    const c = config(`rules:
  - { name: one, match: { role: customer, customParameters: { queue: vip } }, model: ${QWEN} }
  - { name: two, match: { customParameters: { queue: [vip, gold] } }, model: ${PARA_V2} }
  - { name: three, match: { role: customer }, model: ${QWEN_DATED} }
  - { name: four, match: { source: sip }, model: ${QWEN} }
`);
    const vip = { customParameters: { queue: 'vip' } };
    expect(resolveRouting(c, input('customer', vip)).rule).toBe('one');
    expect(resolveRouting(c, input('agent', vip)).rule).toBe('two');
    expect(resolveRouting(c, input('agent', { customParameters: { queue: 'gold' } })).rule).toBe('two');
    expect(resolveRouting(c, input('customer', { customParameters: { queue: 'Gold' } })).rule).toBe('three'); // exact strings
    expect(resolveRouting(c, input('agent', { source: 'sip' })).rule).toBe('four');
    expect(resolveRouting(c, input('agent')).rule).toBe('env-default');
  });

  it('fallback and language: rule, then tenant, then default; null stops; a self-fallback is dropped', () => {
    const c = config(`default: { model: ${PARA}, fallback: ${QWEN}, language: zh }
tenants:
  t1: { fallback: ${PARA_V2}, language: en }
  t2: { model: ${QWEN}, fallback: null }
rules:
  - { name: inherit, match: { role: customer, tenant: [t0, t1] }, model: ${PARA_V2} }
  - { name: none, match: { customParameters: { x: "1" } }, model: ${PARA_V2}, fallback: null, language: ja }
`);
    expect(resolveRouting(c, input('customer', { tenantId: 't0' }))).toMatchObject({ model: PARA_V2, fallback: QWEN, language: 'zh', rule: 'inherit' });
    // the tenant's fallback is PARA_V2, the model itself: dropped
    expect(resolveRouting(c, input('customer', { tenantId: 't1' }))).toMatchObject({ model: PARA_V2, fallback: null, language: 'en', rule: 'inherit' });
    expect(resolveRouting(c, input('agent', { tenantId: 't1' }))).toMatchObject({ model: PARA, fallback: PARA_V2, language: 'en', rule: 'default' });
    expect(resolveRouting(c, input('agent', { customParameters: { x: '1' } }))).toMatchObject({ model: PARA_V2, fallback: null, language: 'ja', rule: 'none' });
    expect(resolveRouting(c, input('agent', { tenantId: 't2' }))).toMatchObject({ model: QWEN, fallback: null, language: 'zh', rule: 'tenants.t2' });
    // the default's fallback equal to a rule's model is dropped too
    const d = config(`default: { model: ${PARA}, fallback: ${QWEN} }\nrules:\n  - { name: q, match: { role: agent }, model: ${QWEN} }\n`);
    expect(resolveRouting(d, input('agent'))).toMatchObject({ model: QWEN, fallback: null, rule: 'q' });
  });

  it('asrModel pins the call; its fallback is what routing would have chosen; an unknown one is ignored', () => {
    const c = config(`default: { model: ${PARA}, fallback: ${QWEN} }\nrules:\n  - { name: cust, match: { role: customer }, model: ${QWEN}, fallback: ${PARA_V2} }\n`);
    expect(resolveRouting(c, input('agent', { customParameters: { asrModel: QWEN_DATED } }))).toMatchObject({
      model: QWEN_DATED,
      fallback: PARA,
      rule: 'customParameters.asrModel',
      rejected: [],
    });
    // pinned to what the rule chose anyway: the rule's fallback stays
    expect(resolveRouting(c, input('customer', { customParameters: { asrModel: QWEN } }))).toMatchObject({ model: QWEN, fallback: PARA_V2, rule: 'customParameters.asrModel' });
    expect(resolveRouting(null, input('agent', { customParameters: { asrModel: ` ${QWEN} ` } }))).toMatchObject({ model: QWEN, fallback: PARA, rule: 'customParameters.asrModel' });
    expect(resolveRouting(null, input('agent', { customParameters: { asrModel: PARA } }))).toMatchObject({ model: PARA, fallback: null });

    const bad = resolveRouting(c, input('customer', { customParameters: { asrModel: 'qwen-asr-flsh' } }));
    expect(bad).toMatchObject({ model: QWEN, fallback: PARA_V2, rule: 'cust' });
    expect(bad.rejected).toEqual(['customParameters.asrModel: unknown model "qwen-asr-flsh", ignored']);
  });

  it('the call\'s language hint wins over the file; a non-code is ignored with a reason', () => {
    const c = config(`default: { model: ${QWEN}, language: zh }\n`);
    expect(resolveRouting(c, input('agent', { customParameters: { language: 'ja' } })).language).toBe('ja');
    const bad = resolveRouting(c, input('agent', { customParameters: { language: 'zh-CN' } }));
    expect(bad.language).toBe('zh');
    expect(bad.rejected).toEqual(['customParameters.language: "zh-CN" is not a language code, ignored']);
    expect(resolveRouting(c, input('agent', { customParameters: { language: '  ' } }))).toMatchObject({ language: 'zh', rejected: [] });
  });

  it('hotwords: the call\'s (comma- or 、-separated) over the tenant\'s, bounded', () => {
    const c = config(`tenants:\n  acme: { hotwords: [发票, 会员卡], vocabularyId: vocab-acme-1 }\n`);
    const acme = (params: Record<string, string>) => resolveRouting(c, input('customer', { tenantId: 'acme', customParameters: params, envVocabularyId: 'vocab-env' }));
    expect(acme({})).toMatchObject({ corpusText: '发票, 会员卡', vocabularyId: 'vocab-acme-1' });
    expect(acme({ hotwords: '退款、账单， 王经理,退款;;' })).toMatchObject({ corpusText: '退款, 账单, 王经理', vocabularyId: 'vocab-acme-1' });
    expect(acme({ hotwords: ' , 、 ' })).toMatchObject({ corpusText: '发票, 会员卡' });
    expect(acme({ vocabularyId: 'vocab-call-2' }).vocabularyId).toBe('vocab-call-2');
    expect(resolveRouting(c, input('agent', { envVocabularyId: 'vocab-env' })).vocabularyId).toBe('vocab-env');
    expect(resolveRouting(c, input('agent'))).toMatchObject({ corpusText: null, vocabularyId: null });

    const badVocab = acme({ vocabularyId: 'vocab 1; drop' });
    expect(badVocab.vocabularyId).toBe('vocab-acme-1');
    expect(badVocab.rejected).toEqual(['customParameters.vocabularyId: "vocab 1; drop" is not a vocabulary id, ignored']);

    const long = `${'x'.repeat(101)},ok`;
    const many = Array.from({ length: 700 }, (_, i) => `词${i}`).join('、');
    const a = acme({ hotwords: long });
    expect(a.corpusText).toBe('ok');
    expect(a.rejected).toEqual([expect.stringMatching(/^customParameters\.hotwords: 1 term\(s\) dropped/)]);
    const b = acme({ hotwords: many });
    expect(b.corpusText!.split(', ')).toHaveLength(500);
    expect(b.rejected[0]).toMatch(/200 term\(s\) dropped/);
    expect(b.rejected[0]).not.toContain('词'); // no hotword text in reasons
    const huge = acme({ hotwords: Array.from({ length: 400 }, (_, i) => `${'y'.repeat(20)}${i}`).join(',') });
    expect(huge.corpusText!.length).toBeLessThanOrEqual(4000);
  });

  it('is not fooled by Object.prototype names in tenants or parameters', () => {
    const c = config(`rules:\n  - { name: p, match: { customParameters: { toString: { not: x } } }, model: ${QWEN} }\n`);
    expect(resolveRouting(c, input('agent', { tenantId: 'constructor' }))).toMatchObject({ model: PARA, rule: 'env-default' });
    expect(resolveRouting(c, input('agent', { tenantId: '__proto__' }))).toMatchObject({ rule: 'env-default' });
    expect(resolveRouting(c, input('agent', { customParameters: { toString: 'y' } })).rule).toBe('p');
  });

  it('stores model, fallback, rule and language', () => {
    const d = resolveRouting(null, input('agent', { customParameters: { hotwords: 'a', language: 'zh' } }));
    expect(storedRouting(d)).toEqual({ model: PARA, fallback: null, rule: 'env-default', language: 'zh' });
  });
});
