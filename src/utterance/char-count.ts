/**
 * Spoken-character count of a transcript sentence, the unit of characters-per-minute (CPM).
 * Counted: every letter and digit code point (Unicode \p{L} and \p{N}) after NFC normalisation,
 * so each CJK ideograph, kana or Hangul syllable counts as one, and so does each Latin letter
 * or digit. Not counted: whitespace, punctuation (，。？！、…), symbols (¥ % emoji) and combining
 * marks (accents belong to their base letter). Pure; no I/O.
 */
const SPOKEN_CHAR = /[\p{L}\p{N}]/gu;

export function countSpokenChars(text: string): number {
  if (text.length === 0) return 0;
  let n = 0;
  for (const _ of text.normalize('NFC').matchAll(SPOKEN_CHAR)) n++;
  return n;
}
