import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../core/errors.js';
import { fixtureScriptSchema } from '../simulator/fixture-call.js';
import { isChineseMobile, isPiiMode, isValidResidentId, luhnValid, redactPii } from './pii.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZH_SCRIPT = path.resolve(HERE, '../../../shared/fixtures/calls/zh-billing-complaint/script.json');
const script = fixtureScriptSchema.parse(JSON.parse(readFileSync(ZH_SCRIPT, 'utf8')));

// Resident IDs (GB 11643 weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2, check "10X98765432"[Σ mod 11]):
// 11010519491231002: 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4 = 167, 167 mod 11 = 2 → 'X'
const ID_X = '11010519491231002X';
// 44030819900307123: 28+36+0+15+0+32+2+9+54+0+0+27+0+35+8+8+6 = 260, 260 mod 11 = 7 → '5'
const ID_5 = '440308199003071235';
// Cards (Luhn: from the right, double every second digit, subtract 9 above 9, sum mod 10 = 0):
// 4111 1111 1111 1111: doubled (2nd, 4th … 16th from the right) 1×2 ×7 + 4×2 = 22, others 1 ×8 = 8; 30 mod 10 = 0
const VISA = '4111 1111 1111 1111';
const UNIONPAY = '6222021234567890128'; // 19 digits, Luhn-valid (computed; 6222021234567890127 is not)

describe('validators', () => {
  it('checks resident ID check characters', () => {
    expect(isValidResidentId(ID_X)).toBe(true);
    expect(isValidResidentId(ID_X.toLowerCase())).toBe(true);
    expect(isValidResidentId(ID_5)).toBe(true);
    expect(isValidResidentId('440308199003071234')).toBe(false);
    expect(isValidResidentId('110105194912310021')).toBe(false);
    expect(isValidResidentId('44030819900307123')).toBe(false); // 17 characters
  });

  it('checks Luhn', () => {
    expect(luhnValid(VISA.replaceAll(' ', ''))).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(luhnValid(UNIONPAY)).toBe(true);
    expect(luhnValid('6222021234567890127')).toBe(false);
  });

  it('recognises mainland mobiles with and without the country prefix', () => {
    expect(isChineseMobile('13812345678')).toBe(true);
    expect(isChineseMobile('8613812345678')).toBe(true);
    expect(isChineseMobile('008613812345678')).toBe(true);
    expect(isChineseMobile('12812345678')).toBe(false); // second digit 2
    expect(isChineseMobile('1381234567')).toBe(false);
  });

  it('knows the PII modes', () => {
    expect(isPiiMode('both')).toBe(true);
    expect(isPiiMode('none')).toBe(false);
  });
});

describe('redactPii', () => {
  it('redacts the phone number of zh-billing-complaint line 4 and keeps the 。', () => {
    const line4 = script.lines[3]!;
    expect(line4.text).toBe('13812345678。');
    expect(redactPii(line4.text)).toEqual({ text: '[PHONE]。', findings: [{ type: 'PHONE', begin: 0, end: 11 }] });
  });

  it('finds nothing in the other 11 script lines', () => {
    const others = script.lines.filter((_, i) => i !== 3);
    expect(others).toHaveLength(11);
    for (const line of others) expect(redactPii(line.text)).toEqual({ text: line.text, findings: [] });
  });

  it('redacts mobiles written with spaces, dashes, +86, 0086 and spoken digits', () => {
    expect(redactPii('我的号码是138 1234 5678，谢谢').text).toBe('我的号码是[PHONE]，谢谢');
    expect(redactPii('手机138-1234-5678。').text).toBe('手机[PHONE]。');
    expect(redactPii('打+86 13812345678吧')).toEqual({
      text: '打[PHONE]吧',
      findings: [{ type: 'PHONE', begin: 1, end: 16 }],
    });
    expect(redactPii('0086-138-1234-5678').text).toBe('[PHONE]');
    expect(redactPii('幺三八幺二三四五六七八，记一下').text).toBe('[PHONE]，记一下');
    expect(redactPii('１３８１２３４５６７８').text).toBe('[PHONE]');
  });

  it('splits a run so a phone keeps a following short number', () => {
    expect(redactPii('电话13812345678 6点以后打')).toEqual({
      text: '电话[PHONE] 6点以后打',
      findings: [{ type: 'PHONE', begin: 2, end: 13 }],
    });
  });

  it('redacts checksum-valid IDs as ID and invalid ones as DIGITS', () => {
    expect(redactPii(`身份证号${ID_X}。`)).toEqual({
      text: '身份证号[ID]。',
      findings: [{ type: 'ID', begin: 4, end: 22 }],
    });
    expect(redactPii(`身份证${ID_5}`).text).toBe('身份证[ID]');
    expect(redactPii('身份证号11010519491231002x，对').text).toBe('身份证号[ID]，对');
    // wrong check character: still ≥ 6 digits, so DIGITS (an ID misheard by one digit is still PII)
    expect(redactPii('身份证440308199003071234').findings).toEqual([{ type: 'DIGITS', begin: 3, end: 21 }]);
    // 17 digits + wrong X: the 17 digits are DIGITS and the X stays
    expect(redactPii('11010519491231003X').text).toBe('[DIGITS]X');
  });

  it('redacts Luhn-valid cards as BANK_CARD and invalid ones as DIGITS', () => {
    expect(redactPii(`卡号${VISA}。`)).toEqual({ text: '卡号[BANK_CARD]。', findings: [{ type: 'BANK_CARD', begin: 2, end: 21 }] });
    expect(redactPii(`卡号是${UNIONPAY}`).text).toBe('卡号是[BANK_CARD]');
    expect(redactPii('卡号4111 1111 1111 1112').findings).toEqual([{ type: 'DIGITS', begin: 2, end: 21 }]);
    expect(redactPii('6222021234567890127').findings.map((f) => f.type)).toEqual(['DIGITS']);
  });

  it('redacts email addresses, digits inside them included', () => {
    expect(redactPii('邮箱是zhang.san_88@example.com.cn，发给我')).toEqual({
      text: '邮箱是[EMAIL]，发给我',
      findings: [{ type: 'EMAIL', begin: 3, end: 30 }],
    });
    expect(redactPii('13812345678@qq.com').text).toBe('[EMAIL]');
  });

  it('redacts spoken digit runs and respects the configured minimum', () => {
    expect(redactPii('验证码是三九二 零幺五').text).toBe('验证码是[DIGITS]');
    expect(redactPii('订单号是2024 0315 88').text).toBe('订单号是[DIGITS]');
    expect(redactPii('密码一二三四五').text).toBe('密码一二三四五'); // 5 digits
    expect(redactPii('密码一二三四五', { minDigitRun: 5 }).text).toBe('密码[DIGITS]');
  });

  it('keeps short numbers, amounts and the 12315 hotline', () => {
    const keep = ['我是工号1025的客服', '工号1025 3个工作日', '多扣了两百块钱', '我要打12315投诉', '一二三四五', '95588'];
    for (const text of keep) {
      expect(redactPii(text)).toEqual({ text, findings: [] });
    }
  });

  it('reports several findings in order with input offsets', () => {
    const text = '电话13812345678，邮箱a@b.cn，卡6222021234567890128';
    const r = redactPii(text);
    expect(r.text).toBe('电话[PHONE]，邮箱[EMAIL]，卡[BANK_CARD]');
    expect(r.findings.map((f) => [f.type, text.slice(f.begin, f.end)])).toEqual([
      ['PHONE', '13812345678'],
      ['EMAIL', 'a@b.cn'],
      ['BANK_CARD', '6222021234567890128'],
    ]);
  });

  it('rejects a bad minDigitRun', () => {
    let code: string | undefined;
    try {
      redactPii('x', { minDigitRun: 1 });
    } catch (err) {
      code = isAppError(err) ? err.code : 'not an AppError';
    }
    expect(code).toBe('ERR_PII_OPTIONS_INVALID');
  });
});
