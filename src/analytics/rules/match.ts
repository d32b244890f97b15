/**
 * Chinese-aware phrase matching for keyword rules, on the stored (redacted) sentence text.
 *
 * Both the text and the phrases are folded the same way: NFKC per character cluster (full-width
 * Ａ１！ → half-width A1!, ideographic space → space), lower-cased (Latin is case-insensitive),
 * and punctuation (\p{P}) and white space dropped, so "请问，有什么 可以帮您" contains the phrase
 * "请问有什么可以帮您". Every folded unit remembers the original [begin, end) it came from, so a
 * match is reported as UTF-16 offsets [charBegin, charEnd) into the original text.
 * A phrase that starts (ends) with a Latin letter or digit only matches at a Latin word edge,
 * so "12315" does not match inside the phone number 13812315678. CJK has no word edges: a
 * CJK phrase matches anywhere. Pure.
 */

export interface FoldedText {
  /** Folded text: NFKC, lower case, no punctuation or spaces. */
  readonly text: string;
  /** Per folded UTF-16 unit: original offset of the cluster it came from, [begin, end). */
  readonly begin: readonly number[];
  readonly end: readonly number[];
}

/** A base character and its combining marks: normalised together. */
const CLUSTER = /\P{M}\p{M}*|\p{M}+/gu;
const DROPPED = /[\p{P}\p{Z}\s]/u;
const LATIN_EDGE = /[a-z0-9]/;

export function foldText(input: string): FoldedText {
  let text = '';
  const begin: number[] = [];
  const end: number[] = [];
  for (const m of input.matchAll(CLUSTER)) {
    const b = m.index;
    const e = b + m[0].length;
    for (const ch of m[0].normalize('NFKC').toLowerCase()) {
      if (DROPPED.test(ch)) continue;
      text += ch;
      for (let i = 0; i < ch.length; i++) {
        begin.push(b);
        end.push(e);
      }
    }
  }
  return { text, begin, end };
}

/** The folded form of a phrase ('' when it has nothing but punctuation and spaces). */
export function foldPhrase(phrase: string): string {
  return foldText(phrase).text;
}

/** One occurrence of a folded phrase: folded [from, to) and original [charBegin, charEnd). */
export interface Occurrence {
  /** Index of the phrase in the list searched for. */
  readonly phrase: number;
  readonly from: number;
  readonly to: number;
  readonly charBegin: number;
  readonly charEnd: number;
}

/** Every (non-overlapping per phrase) occurrence of each folded phrase, in text order. */
export function findOccurrences(folded: FoldedText, phrases: readonly string[]): Occurrence[] {
  const out: Occurrence[] = [];
  phrases.forEach((p, phrase) => {
    if (p.length === 0) return;
    const latinStart = LATIN_EDGE.test(p[0]!);
    const latinEnd = LATIN_EDGE.test(p[p.length - 1]!);
    let at = folded.text.indexOf(p);
    while (at >= 0) {
      const to = at + p.length;
      if ((!latinStart || isEdge(folded, at - 1, at)) && (!latinEnd || isEdge(folded, to - 1, to))) {
        out.push({ phrase, from: at, to, charBegin: folded.begin[at]!, charEnd: folded.end[to - 1]! });
        at = folded.text.indexOf(p, to);
      } else {
        at = folded.text.indexOf(p, at + 1);
      }
    }
  });
  return out.sort((a, b) => a.from - b.from || b.to - a.to || a.phrase - b.phrase);
}

/** True unless folded units `left` and `right` are both Latin alphanumerics and adjacent in the original. */
function isEdge(folded: FoldedText, left: number, right: number): boolean {
  if (left < 0 || right >= folded.text.length) return true;
  if (!LATIN_EDGE.test(folded.text[left]!) || !LATIN_EDGE.test(folded.text[right]!)) return true;
  // a dropped space or punctuation mark between them is an edge
  return folded.end[left]! < folded.begin[right]!;
}

/** Drops occurrences lying inside an earlier, longer one ("录音" inside "通话录音"). Input in text order. */
export function outermost(occurrences: readonly Occurrence[]): Occurrence[] {
  const out: Occurrence[] = [];
  let reach = -1;
  for (const o of occurrences) {
    if (o.to <= reach) continue;
    out.push(o);
    reach = Math.max(reach, o.to);
  }
  return out;
}

/** A pair of an `a` and a `b` occurrence at most `withinChars` folded characters apart. */
export interface ProximityMatch {
  readonly a: Occurrence;
  readonly b: Occurrence;
  readonly charBegin: number;
  readonly charEnd: number;
}

/**
 * For each `a` occurrence, the nearest non-overlapping `b` occurrence (either side) with at
 * most `withinChars` folded characters (letters, digits, CJK; punctuation and spaces do not
 * count) between them.
 */
export function findProximity(
  folded: FoldedText,
  a: readonly string[],
  b: readonly string[],
  withinChars: number,
): ProximityMatch[] {
  const as = findOccurrences(folded, a);
  const bs = findOccurrences(folded, b);
  const out: ProximityMatch[] = [];
  for (const x of as) {
    let best: Occurrence | null = null;
    let bestGap = Infinity;
    for (const y of bs) {
      if (y.from < x.to && x.from < y.to) continue; // overlapping
      const gap = y.from >= x.to ? y.from - x.to : x.from - y.to;
      if (gap <= withinChars && gap < bestGap) {
        best = y;
        bestGap = gap;
      }
    }
    if (best) {
      out.push({ a: x, b: best, charBegin: Math.min(x.charBegin, best.charBegin), charEnd: Math.max(x.charEnd, best.charEnd) });
    }
  }
  return out;
}
