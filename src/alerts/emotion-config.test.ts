import { describe, expect, it } from 'vitest';
import { isAppError } from '../core/errors.js';
import {
  DEFAULT_EMOTION_WINDOW,
  DEFAULT_ESCALATION_KEYWORDS,
  emotionWindowConfigSchema,
  parseEmotionWindowConfig,
} from './emotion-config.js';

describe('emotion_window config', () => {
  it('defaults to the spec table (qa-analytics.md §3.2)', () => {
    expect(DEFAULT_EMOTION_WINDOW).toEqual({
      role: 'customer',
      minConfidence: 0.6,
      minDurationMs: 1000,
      minChars: 4,
      windowMs: 60_000,
      windowCount: 6,
      shareThreshold: 0.5,
      minNegative: 3,
      streakLength: 3,
      escalateAfterMs: 60_000,
      escalationKeywords: ['投诉', '举报', '12315', '工信部', '曝光', '律师', '找你们领导', '经理'],
      keywordMinNegative: 2,
      agentNegative: 1,
      clearShare: 0.3,
      clearAfterMs: 60_000,
      cooldownMs: 120_000,
      maxPerCall: 3,
    });
    expect(Object.isFrozen(DEFAULT_EMOTION_WINDOW)).toBe(true);
    expect(Object.isFrozen(DEFAULT_EMOTION_WINDOW.escalationKeywords)).toBe(true);
    // parse gives a fresh keyword list each time (the default is not shared mutable state)
    const a = emotionWindowConfigSchema.parse({});
    a.escalationKeywords.push('x');
    expect(emotionWindowConfigSchema.parse({}).escalationKeywords).toEqual([...DEFAULT_ESCALATION_KEYWORDS]);
  });

  it('lets every knob be overridden', () => {
    const overrides = {
      role: 'agent',
      minConfidence: 0.75,
      minDurationMs: 1500,
      minChars: 6,
      windowMs: 90_000,
      windowCount: 10,
      shareThreshold: 0.6,
      minNegative: 4,
      streakLength: 5,
      escalateAfterMs: 30_000,
      escalationKeywords: ['退网', '消协'],
      keywordMinNegative: 1,
      agentNegative: 0,
      clearShare: 0.2,
      clearAfterMs: 45_000,
      cooldownMs: 300_000,
      maxPerCall: 1,
    } as const;
    // a knob added to the schema without a line here fails this test
    expect(Object.keys(overrides).sort()).toEqual(Object.keys(DEFAULT_EMOTION_WINDOW).sort());
    for (const [key, value] of Object.entries(overrides)) {
      expect(DEFAULT_EMOTION_WINDOW).not.toHaveProperty(key, value);
      expect(parseEmotionWindowConfig({ [key]: value })).toHaveProperty(key, value);
    }
    expect(parseEmotionWindowConfig(overrides)).toEqual(overrides);
  });

  it.each([
    [{ minConfidence: 1.2 }, 'minConfidence'],
    [{ minConfidence: '0.6' }, 'minConfidence'],
    [{ minDurationMs: -1 }, 'minDurationMs'],
    [{ windowMs: 0 }, 'windowMs'],
    [{ windowMs: 1.5 }, 'windowMs'],
    [{ windowCount: 0 }, 'windowCount'],
    [{ shareThreshold: 0 }, 'shareThreshold'],
    [{ streakLength: 0 }, 'streakLength'],
    [{ keywordMinNegative: 0 }, 'keywordMinNegative'],
    [{ agentNegative: -1 }, 'agentNegative'],
    [{ maxPerCall: 0 }, 'maxPerCall'],
    [{ role: 'supervisor' }, 'role'],
    [{ escalationKeywords: ['投诉', '  '] }, 'escalationKeywords.1'],
    [{ escalationKeywords: '投诉' }, 'escalationKeywords'],
    [{ clearShare: 0.5 }, 'clearShare'],
    [{ shareThreshold: 0.25 }, 'clearShare'],
    [{ cooldownMS: 1000 }, '(root)'],
  ])('rejects %j at %s', (input, path) => {
    const result = emotionWindowConfigSchema.safeParse(input);
    expect(result.success).toBe(false);
    const paths = result.error?.issues.map((i) => i.path.map(String).join('.') || '(root)');
    expect(paths).toContain(path);
    let caught: unknown;
    try {
      parseEmotionWindowConfig(input);
    } catch (err) {
      caught = err;
    }
    expect(isAppError(caught)).toBe(true);
    if (isAppError(caught)) {
      expect(caught.code).toBe('ERR_ALERTS_RULE_CONFIG');
      expect(caught.message).toContain(path === '(root)' ? 'cooldownMS' : `${path}:`);
    }
  });

  it('trims keywords', () => {
    expect(parseEmotionWindowConfig({ escalationKeywords: [' 投诉 '] }).escalationKeywords).toEqual(['投诉']);
  });
});
