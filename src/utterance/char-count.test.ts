import { describe, expect, it } from 'vitest';
import { countSpokenChars } from './char-count.js';

describe('countSpokenChars', () => {
  it('counts each CJK character and skips full-width punctuation', () => {
    expect(countSpokenChars('我要投诉你们，退款到现在还没到账！')).toBe(15);
    expect(countSpokenChars('好的。')).toBe(2);
    expect(countSpokenChars('「请稍等」……')).toBe(3);
  });

  it('skips ASCII punctuation and every kind of space', () => {
    expect(countSpokenChars('OK, thanks!')).toBe(8);
    expect(countSpokenChars(' \t\n\u3000\u00a0 ')).toBe(0);
    expect(countSpokenChars('')).toBe(0);
  });

  it('counts digits and letters in mixed text, not symbols', () => {
    expect(countSpokenChars('我的iPhone 15坏了')).toBe(12);
    expect(countSpokenChars('退款¥100，5%')).toBe(6);
    expect(countSpokenChars('😡👍')).toBe(0);
  });

  it('counts kana, Hangul and astral ideographs once each', () => {
    expect(countSpokenChars('ありがとう')).toBe(5);
    expect(countSpokenChars('감사합니다')).toBe(5);
    // U+20BB7 is outside the BMP (a surrogate pair in UTF-16)
    expect(countSpokenChars('𠮷野家')).toBe(3);
  });

  it('counts a decomposed accented letter once', () => {
    expect(countSpokenChars('cafe\u0301')).toBe(4);
    // decomposed Hangul jamo compose to one syllable under NFC
    expect(countSpokenChars('\u1100\u1161')).toBe(1);
  });
});
