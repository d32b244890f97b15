/**
 * Provider emotion labels → the common emotion model (src/core/types.ts `Emotion`).
 * The raw label is always kept; `valence` (and `arousal` where the label tells it) is derived
 * here. One mapping per provider family.
 */
import type { Emotion } from '../core/types.js';

export type Valence = -1 | 0 | 1;
/** 1 high, 0 low, null: the label does not tell. */
export type Arousal = 0 | 1 | null;

// ---------------------------------------------------------------------------------------------
// Paraformer (paraformer-realtime-8k-v2)

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

/**
 * A Paraformer emotion in the common model; `provider` is the model name. Arousal is null:
 * positive/negative/neutral say nothing about activation.
 */
export function normaliseParaformerEmotion(
  model: string,
  raw: string,
  confidence: number | null,
): Emotion {
  return { raw, provider: model, confidence, valence: paraformerValence(raw), arousal: null };
}

// ---------------------------------------------------------------------------------------------
// Qwen (qwen3-asr-flash-realtime)

/** Labels qwen3-asr-flash-realtime emits on `…transcription.text` / `…completed` (spec B4.7). */
export const QWEN_EMOTION_LABELS = [
  'surprised',
  'neutral',
  'happy',
  'sad',
  'disgusted',
  'angry',
  'fearful',
] as const;
export type QwenEmotionLabel = (typeof QWEN_EMOTION_LABELS)[number];

/**
 * Qwen's seven labels on the two axes of the valence–arousal circumplex (Russell 1980;
 * Scherer 2005 for the labels Russell does not place). Arousal is binarised at the
 * circumplex's horizontal axis.
 *
 * | label     | valence | arousal | why |
 * |-----------|---------|---------|-----|
 * | angry     | -1      | 1       | unpleasant, activated (upper-left quadrant) |
 * | fearful   | -1      | 1       | unpleasant, activated (upper-left, next to angry) |
 * | disgusted | -1      | 1       | unpleasant; placed in the activated half (Scherer's wheel puts it beside anger; PAD ratings put it above the arousal midpoint). In a call it is active rejection ("this is ridiculous"), closer to escalation than to resignation, which is what a QA alert on high-arousal negatives is for. |
 * | sad       | -1      | 0       | unpleasant, deactivated (lower-left quadrant) |
 * | happy     | 1       | 1       | pleasant, mildly activated (just above the axis, below excited/delighted) |
 * | neutral   | 0       | 0       | the centre of the circumplex: no activation |
 * | surprised | 0       | 1       | high arousal, valence undetermined: never negative on its own (issue 3 §2) |
 * | (unknown) | 0       | null    | a label we do not know says nothing |
 *
 * Labels are matched case-insensitively after trimming; the raw label is kept as received.
 */
const QWEN_AXES: Readonly<Record<QwenEmotionLabel, { readonly valence: Valence; readonly arousal: 0 | 1 }>> = {
  angry: { valence: -1, arousal: 1 },
  fearful: { valence: -1, arousal: 1 },
  disgusted: { valence: -1, arousal: 1 },
  sad: { valence: -1, arousal: 0 },
  happy: { valence: 1, arousal: 1 },
  neutral: { valence: 0, arousal: 0 },
  surprised: { valence: 0, arousal: 1 },
};

export function isQwenEmotionLabel(label: string): label is QwenEmotionLabel {
  return (QWEN_EMOTION_LABELS as readonly string[]).includes(label);
}

function qwenAxes(label: string): { readonly valence: Valence; readonly arousal: 0 | 1 } | undefined {
  const key = label.trim().toLowerCase();
  return isQwenEmotionLabel(key) ? QWEN_AXES[key] : undefined;
}

/** Valence of a Qwen label (table above); an unknown label maps to 0. */
export function qwenValence(label: string): Valence {
  return qwenAxes(label)?.valence ?? 0;
}

/** Arousal of a Qwen label (table above); an unknown label maps to null. */
export function qwenArousal(label: string): Arousal {
  return qwenAxes(label)?.arousal ?? null;
}

/** A Qwen emotion in the common model; Qwen gives no confidence, so it is always null. */
export function normaliseQwenEmotion(model: string, raw: string): Emotion {
  return { raw, provider: model, confidence: null, valence: qwenValence(raw), arousal: qwenArousal(raw) };
}
