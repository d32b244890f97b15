/**
 * Chinese full-text search tokens (qa-analytics.md §5.4): application-side segmentation stored
 * in `utterances.seg` and indexed as `to_tsvector('simple', seg)` (GIN), which works on any
 * Postgres. `segmentForIndex` emits, space-separated and de-duplicated:
 *  - jieba search-mode words (@node-rs/jieba 2.0.2, default dictionary + ./dict.txt, a small
 *    domain dictionary: without it 到账 is split into 到 / 账);
 *  - every CJK character and every pair of adjacent CJK characters (unigrams and bigrams), so a
 *    1–2 character query matches wherever those characters occur (pg_bigm-like);
 *  - Latin/other-script words and digit runs, lower-cased (NFKC first: full-width → half-width).
 * Punctuation and symbols are dropped. The 'simple' parser then sees only plain words, one
 * lexeme per token.
 *
 * `buildSearchQuery` turns a user query into a `to_tsquery('simple', …)` string: the AND of its
 * words (jieba decides the boundaries of CJK runs); a CJK word of 1–2 characters is its own
 * lexeme, a longer one the AND of its bigrams (found wherever the word occurs in the text,
 * however the sentence was segmented). Every lexeme is quoted and holds only letters, digits
 * and marks, so tsquery operators in the query (& | ! : * ( ) ' \ < ->) are inert.
 *
 * Store SEGMENTER_VERSION with the rows: a different value means the tokens must be rebuilt.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Jieba } from '@node-rs/jieba';
import type * as JiebaDict from '@node-rs/jieba/dict.js';

/**
 * Bump on any change to dict.txt, the jieba version or the token rules (the dictionary hash is
 * pinned in segment.test.ts so a dictionary edit without a bump fails the tests).
 */
export const SEGMENTER_VERSION = 'jieba-2.0.2+dict-1+bigram-1';

/** Tokens longer than this (garbage Latin runs) are not indexed; counted. */
export const MAX_TOKEN_CHARS = 64;

const DICT_URL = new URL('./dict.txt', import.meta.url);
const CJK = '\\p{Script=Han}\\p{Script=Hiragana}\\p{Script=Katakana}\\p{Script=Hangul}';
/** A CJK run, or a run of other letters/digits (with their combining marks). */
const PIECE = new RegExp(`([${CJK}]+)|((?:(?![${CJK}])[\\p{L}\\p{N}\\p{M}])+)`, 'gu');
const CJK_ONLY = new RegExp(`^[${CJK}]+$`, 'u');

let jieba: Jieba | null = null;
const counters = { segmented: 0, droppedLongTokens: 0 };

/** The shared Jieba instance, built on first use (the default dictionary is ~5 MB). */
function segmenter(): Jieba {
  if (jieba === null) {
    // the dict module reads its files when loaded: require it only when needed
    const { dict } = createRequire(import.meta.url)('@node-rs/jieba/dict') as typeof JiebaDict;
    const j = Jieba.withDict(dict);
    j.loadDict(readFileSync(DICT_URL));
    jieba = j;
  }
  return jieba;
}

function normalise(text: string): string {
  return text.normalize('NFKC').toLowerCase();
}

function chars(run: string): string[] {
  return [...run];
}

function bigrams(cs: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < cs.length; i++) out.push(cs[i]! + cs[i + 1]!);
  return out;
}

/** Space-joined search tokens of a sentence, for `to_tsvector('simple', …)`. */
export function segmentForIndex(text: string): string {
  counters.segmented++;
  const norm = normalise(text);
  const tokens = new Set<string>();
  for (const word of segmenter().cutForSearch(norm, false)) {
    if (CJK_ONLY.test(word)) tokens.add(word);
  }
  for (const m of norm.matchAll(PIECE)) {
    if (m[1] !== undefined) {
      const cs = chars(m[1]);
      for (const c of cs) tokens.add(c);
      for (const b of bigrams(cs)) tokens.add(b);
    } else {
      tokens.add(m[0]);
    }
  }
  const out: string[] = [];
  for (const t of tokens) {
    if (t.length > MAX_TOKEN_CHARS) counters.droppedLongTokens++;
    else out.push(t);
  }
  return out.join(' ');
}

/**
 * A `to_tsquery('simple', …)` string matching sentences that contain every word of `query`;
 * '' when the query has no letters or digits (callers treat that as "no text condition").
 */
export function buildSearchQuery(query: string): string {
  const lexemes = new Set<string>();
  for (const m of normalise(query).matchAll(PIECE)) {
    if (m[1] === undefined) {
      if (m[0].length <= MAX_TOKEN_CHARS) lexemes.add(m[0]);
      continue;
    }
    const words = m[1].length <= 2 ? [m[1]] : segmenter().cut(m[1], false);
    for (const w of words) {
      const cs = chars(w);
      for (const l of cs.length <= 2 ? [w] : bigrams(cs)) lexemes.add(l);
    }
  }
  return [...lexemes].map(quoteLexeme).join(' & ');
}

/** A quoted tsquery lexeme: '…' with ' doubled and \ escaped. */
function quoteLexeme(lexeme: string): string {
  return `'${lexeme.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** Counters for the lead's metrics. */
export function searchSegmentStats(): { readonly segmented: number; readonly droppedLongTokens: number } {
  return { ...counters };
}
