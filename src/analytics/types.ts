/**
 * The contract between the QA analytics parts: metrics (metrics.ts), rules (rules/), the alert
 * engine (../alerts/engine.ts) and the database (../db). Pure data: no I/O here.
 *
 * All offsets are milliseconds on the call timeline (from the stream start), like utterances.
 */
import type { Role } from '../core/types.js';

/** One final sentence as analytics sees it (a stored `utterances` row, text already redacted). */
export interface AnalyticsUtterance {
  readonly role: Role;
  /** Per (call, role) sentence index from 1. (role, seq) identifies the sentence in a call. */
  readonly seq: number;
  readonly startMs: number;
  readonly endMs: number;
  /** Stored (redacted) text. */
  readonly text: string;
  /** Letters and digits in text, each CJK character one (utterances.char_count). */
  readonly charCount: number;
  /** Word timings where the recogniser gave them ([] if none). */
  readonly words: readonly { readonly startMs: number; readonly endMs: number; readonly text: string }[];
  /** Provider emotion label as received ('negative', 'angry', …); null: none. */
  readonly emotionRaw: string | null;
  /** 0..1; null where the provider gives none (qwen). */
  readonly emotionConfidence: number | null;
  /** -1 | 0 | 1; null: no emotion. */
  readonly valence: -1 | 0 | 1 | null;
  /** 1 high, 0 low, null unknown. */
  readonly arousal: 0 | 1 | null;
  /** Recogniser model of the sentence. */
  readonly model: string;
}

/** Sorts sentences the way every analytics part reads them: by start, then end, role, seq. */
export function byTimeline(a: AnalyticsUtterance, b: AnalyticsUtterance): number {
  return a.startMs - b.startMs || a.endMs - b.endMs || (a.role < b.role ? -1 : a.role > b.role ? 1 : 0) || a.seq - b.seq;
}

/** A sentence referenced as evidence (alerts, rule hits). */
export interface EvidenceRef {
  readonly role: Role;
  readonly seq: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly emotionRaw?: string | null;
  readonly emotionConfidence?: number | null;
  readonly valence?: -1 | 0 | 1 | null;
  /** Character offsets [begin, end) of the match inside the sentence text (keyword rules). */
  readonly charBegin?: number;
  readonly charEnd?: number;
}

export type Severity = 'info' | 'warning' | 'critical';
export const SEVERITY_RANK: Readonly<Record<Severity, number>> = { info: 0, warning: 1, critical: 2 };

/** A span on the call timeline. */
export interface Span {
  readonly startMs: number;
  readonly endMs: number;
}
