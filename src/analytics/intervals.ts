/**
 * Interval arithmetic on the call timeline for the QA metrics (qa-analytics.md §1: every call
 * metric is unions, intersections and gaps of speech intervals). Spans are half-open
 * [startMs, endMs); a "merged" list is sorted by start with no two spans touching or
 * overlapping. Pure.
 */
import type { Span } from './types.js';

/** The union of `spans` as a merged list; empty spans vanish, touching spans join. */
export function mergeSpans(spans: readonly Span[]): Span[] {
  const sorted = spans.filter((s) => s.endMs > s.startMs).sort((a, b) => a.startMs - b.startMs || a.endMs - b.endMs);
  const out: { startMs: number; endMs: number }[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && s.startMs <= last.endMs) last.endMs = Math.max(last.endMs, s.endMs);
    else out.push({ startMs: s.startMs, endMs: s.endMs });
  }
  return out;
}

/** Total length of a merged list (or of any list of disjoint spans). */
export function totalMs(spans: readonly Span[]): number {
  let sum = 0;
  for (const s of spans) sum += s.endMs - s.startMs;
  return sum;
}

/** The intersection of two merged lists, merged. Linear two-pointer sweep. */
export function intersectSpans(a: readonly Span[], b: readonly Span[]): Span[] {
  const out: Span[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const startMs = Math.max(x.startMs, y.startMs);
    const endMs = Math.min(x.endMs, y.endMs);
    if (endMs > startMs) out.push({ startMs, endMs });
    if (x.endMs < y.endMs) i++;
    else j++;
  }
  return out;
}

/**
 * The gaps of a merged list inside [fromMs, toMs]: before the first span (from `fromMs`),
 * between spans, and after the last span up to `toMs` (omitted when `toMs` is null). With no
 * spans the gap is [fromMs, toMs] when `toMs` is given.
 */
export function gapsBetween(merged: readonly Span[], fromMs: number, toMs: number | null): Span[] {
  const out: Span[] = [];
  let cursor = fromMs;
  for (const s of merged) {
    if (s.startMs > cursor) out.push({ startMs: cursor, endMs: s.startMs });
    cursor = Math.max(cursor, s.endMs);
  }
  if (toMs !== null && toMs > cursor) out.push({ startMs: cursor, endMs: toMs });
  return out;
}
