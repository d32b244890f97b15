/**
 * Provider emotion labels → the common emotion model (src/core/types.ts `Emotion`).
 * The raw label is always kept; only `valence` is derived here. One mapping per provider
 * family; the Qwen mapping will join this file.
 */
import type { Emotion } from '../core/types.js';

export type Valence = -1 | 0 | 1;

/** Labels paraformer-realtime-8k-v2 emits on final sentences (spec A5.3). */
export const PARAFORMER_EMOTION_LABELS = ['positive', 'negative', 'neutral'] as const;

const PARAFORMER_VALENCE: Readonly<Record<string, Valence>> = {
  positive: 1,
  negative: -1,
  neutral: 0,
};

/** positive → 1, negative → -1, neutral → 0; an unknown label maps to 0 (neutral). */
export function paraformerValence(label: string): Valence {
  return PARAFORMER_VALENCE[label.trim().toLowerCase()] ?? 0;
}

/** A Paraformer emotion in the common model; `provider` is the model name. */
export function normaliseParaformerEmotion(
  model: string,
  raw: string,
  confidence: number | null,
): Emotion {
  return { raw, provider: model, confidence, valence: paraformerValence(raw) };
}
