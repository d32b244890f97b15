import { describe, expect, it } from 'vitest';
import {
  isQwenEmotionLabel,
  normaliseParaformerEmotion,
  normaliseQwenEmotion,
  paraformerValence,
  QWEN_EMOTION_LABELS,
  qwenArousal,
  qwenValence,
} from './emotion.js';

describe('paraformer emotion', () => {
  it('maps labels onto valence; unknown labels are neutral', () => {
    expect(paraformerValence('positive')).toBe(1);
    expect(paraformerValence('negative')).toBe(-1);
    expect(paraformerValence('neutral')).toBe(0);
    expect(paraformerValence('Negative ')).toBe(-1);
    expect(paraformerValence('surprised')).toBe(0);
  });

  it('keeps the raw label, uses the model as provider, and says nothing about arousal', () => {
    expect(normaliseParaformerEmotion('paraformer-realtime-8k-v2', 'negative', 0.8)).toEqual({
      raw: 'negative',
      provider: 'paraformer-realtime-8k-v2',
      confidence: 0.8,
      valence: -1,
      arousal: null,
    });
    expect(normaliseParaformerEmotion('paraformer-realtime-8k-v2', 'positive', null).arousal).toBeNull();
  });
});

describe('qwen emotion', () => {
  const M = 'qwen3-asr-flash-realtime';

  it.each([
    ['angry', -1, 1],
    ['fearful', -1, 1],
    ['disgusted', -1, 1],
    ['sad', -1, 0],
    ['happy', 1, 1],
    ['neutral', 0, 0],
    ['surprised', 0, 1],
  ] as const)('%s → valence %i, arousal %i', (label, valence, arousal) => {
    expect(qwenValence(label)).toBe(valence);
    expect(qwenArousal(label)).toBe(arousal);
    expect(normaliseQwenEmotion(M, label)).toEqual({ raw: label, provider: M, confidence: null, valence, arousal });
  });

  it('covers exactly the seven documented labels', () => {
    expect([...QWEN_EMOTION_LABELS].sort()).toEqual(['angry', 'disgusted', 'fearful', 'happy', 'neutral', 'sad', 'surprised']);
    for (const l of QWEN_EMOTION_LABELS) expect(qwenArousal(l)).not.toBeNull();
  });

  it('surprised is never negative on its own', () => {
    expect(normaliseQwenEmotion(M, 'surprised')).toMatchObject({ valence: 0, arousal: 1 });
  });

  it('matches case-insensitively after trimming, keeping the raw label as received', () => {
    expect(normaliseQwenEmotion(M, ' Angry ')).toEqual({ raw: ' Angry ', provider: M, confidence: null, valence: -1, arousal: 1 });
  });

  it('unknown labels → valence 0, arousal null', () => {
    for (const l of ['bored', '', 'positive', 'constructor', '__proto__']) {
      expect(normaliseQwenEmotion(M, l)).toEqual({ raw: l, provider: M, confidence: null, valence: 0, arousal: null });
    }
    expect(isQwenEmotionLabel('toString')).toBe(false);
  });
});
