import { describe, expect, it } from 'vitest';
import { normaliseParaformerEmotion, paraformerValence } from './emotion.js';

describe('paraformer emotion', () => {
  it('maps labels onto valence; unknown labels are neutral', () => {
    expect(paraformerValence('positive')).toBe(1);
    expect(paraformerValence('negative')).toBe(-1);
    expect(paraformerValence('neutral')).toBe(0);
    expect(paraformerValence('Negative ')).toBe(-1);
    expect(paraformerValence('surprised')).toBe(0);
  });

  it('keeps the raw label and uses the model as provider', () => {
    expect(normaliseParaformerEmotion('paraformer-realtime-8k-v2', 'negative', 0.8)).toEqual({
      raw: 'negative',
      provider: 'paraformer-realtime-8k-v2',
      confidence: 0.8,
      valence: -1,
    });
  });
});
