import { describe, expect, it } from 'vitest';
import { findOccurrences, findProximity, foldPhrase, foldText, outermost } from './match.js';

const find = (text: string, phrases: string[]) =>
  findOccurrences(foldText(text), phrases.map(foldPhrase)).map((o) => ({ phrase: o.phrase, text: text.slice(o.charBegin, o.charEnd) }));

describe('foldText', () => {
  it('folds full-width, case, punctuation and spaces, keeping original offsets', () => {
    const text = 'ＶＩＰ会员，　请问 有什么！';
    const f = foldText(text);
    expect(f.text).toBe('vip会员请问有什么');
    expect(f.begin).toHaveLength(f.text.length);
    // "请" is at original offset 7 (after "，" and the ideographic space)
    const i = f.text.indexOf('请');
    expect(text.slice(f.begin[i], f.end[i])).toBe('请');
  });

  it('keeps symbols and digits, drops only punctuation and spaces', () => {
    expect(foldText('¥200，１２３').text).toBe('¥200123');
    expect(foldPhrase('，。！ ')).toBe('');
  });

  it('normalises a letter with a combining mark together (NFKC per cluster)', () => {
    expect(foldPhrase('Cafe\u0301')).toBe(foldPhrase('CAFÉ'));
  });
});

describe('findOccurrences', () => {
  it('matches across punctuation and spaces in the text, reporting the original span', () => {
    expect(find('我要，投 诉你们！', ['我要投诉'])).toEqual([{ phrase: 0, text: '我要，投 诉' }]);
  });

  it('matches Latin case-insensitively and full-width digits', () => {
    expect(find('打１２３１５，还有Vip', ['12315', 'VIP'])).toEqual([
      { phrase: 0, text: '１２３１５' },
      { phrase: 1, text: 'Vip' },
    ]);
  });

  it('requires word edges for Latin/digit phrases but not for CJK ones', () => {
    expect(find('13812315678', ['12315'])).toEqual([]);
    expect(find('电话1381-2315', ['2315'])).toEqual([{ phrase: 0, text: '2315' }]);
    expect(find('vipx vip', ['vip'])).toEqual([{ phrase: 0, text: 'vip' }]);
    expect(find('我要投诉', ['投诉'])).toEqual([{ phrase: 0, text: '投诉' }]);
  });

  it('finds every occurrence in text order', () => {
    const text = '录音，通话录音';
    const occ = findOccurrences(foldText(text), ['通话录音', '录音'].map(foldPhrase));
    expect(occ.map((o) => [o.phrase, o.charBegin, o.charEnd])).toEqual([
      [1, 0, 2],
      [0, 3, 7],
      [1, 5, 7],
    ]);
    // the inner "录音" of "通话录音" is dropped for evidence
    expect(outermost(occ).map((o) => [o.phrase, o.charBegin])).toEqual([
      [1, 0],
      [0, 3],
    ]);
  });
});

describe('findProximity', () => {
  const prox = (text: string, within: number) =>
    findProximity(foldText(text), ['提供'], ['手机号', '身份证'], within).map((m) => text.slice(m.charBegin, m.charEnd));

  it('pairs a and b terms within N folded characters, either order', () => {
    expect(prox('请您提供一下手机号码', 2)).toEqual(['提供一下手机号']);
    expect(prox('请您提供一下手机号码', 1)).toEqual([]);
    expect(prox('身份证，麻烦提供', 2)).toEqual(['身份证，麻烦提供']);
  });

  it('does not count punctuation in the gap', () => {
    expect(prox('提供，，，手机号', 0)).toEqual(['提供，，，手机号']);
  });
});
