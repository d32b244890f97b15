import { describe, expect, it } from 'vitest';
import { gapsBetween, intersectSpans, mergeSpans, totalMs } from './intervals.js';

const s = (startMs: number, endMs: number) => ({ startMs, endMs });

describe('intervals', () => {
  it('merges overlapping and touching spans in any order and drops empty ones', () => {
    expect(mergeSpans([s(10, 20), s(0, 5), s(5, 8), s(15, 30), s(40, 40)])).toEqual([s(0, 8), s(10, 30)]);
    expect(mergeSpans([])).toEqual([]);
  });

  it('sums lengths', () => {
    expect(totalMs([s(0, 8), s(10, 30)])).toBe(28);
  });

  it('intersects two merged lists', () => {
    // [0,10)∩[5,7) = [5,7); [0,10)∩[9,12) = [9,10); [20,30)∩[9,12) = ∅; [20,30)∩[25,40) = [25,30)
    expect(intersectSpans([s(0, 10), s(20, 30)], [s(5, 7), s(9, 12), s(25, 40)])).toEqual([
      s(5, 7),
      s(9, 10),
      s(25, 30),
    ]);
    expect(intersectSpans([s(0, 5)], [s(5, 9)])).toEqual([]);
  });

  it('finds leading, inner and (when the end is known) trailing gaps', () => {
    expect(gapsBetween([s(2, 4), s(6, 8)], 0, 12)).toEqual([s(0, 2), s(4, 6), s(8, 12)]);
    expect(gapsBetween([s(2, 4), s(6, 8)], 0, null)).toEqual([s(0, 2), s(4, 6)]);
    expect(gapsBetween([], 0, 5)).toEqual([s(0, 5)]);
    expect(gapsBetween([], 0, null)).toEqual([]);
  });
});
