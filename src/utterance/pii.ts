/**
 * PII redaction for Chinese call transcripts (qa-analytics.md §0/§6: Chinese PII is a
 * differentiator; AWS redacts to `[NAME]`-style tags). Pure; no I/O.
 *
 * Detected, in this order of precedence:
 * - EMAIL: ASCII addresses (local@domain.tld).
 * - Digit runs: digits in a row — ASCII 0-9, full-width ０-９ and the spoken Chinese digits
 *   零〇一二三四五六七八九 and 幺 (1 as read in phone numbers; 两/十/百 are not digits) — where up to
 *   three separators (space, ideographic/no-break space, hyphen, dash) may sit between two digits.
 *   Each run is classified as
 *   - PHONE: a mainland mobile number 1[3-9]\d{9}, optionally prefixed +86, 0086 or 86;
 *   - ID: an 18-character resident ID (17 digits + digit or X) whose GB 11643-1999 check
 *     character is right (ISO 7064 MOD 11-2: weights 2^(17−i) mod 11, check "10X98765432"[Σ mod 11]);
 *   - BANK_CARD: 13–19 digits passing the Luhn check (ISO/IEC 7812);
 *   - DIGITS: anything else with ≥ minDigitRun digits (default 6), e.g. an ID or card number
 *     with a wrong check digit, an order number, a landline, a date written 2024-03-15.
 *   When a whole run is not a PHONE/ID/BANK_CARD, separator-delimited parts of it are tried
 *   (left to right, longest first), so "13812345678 6" gives PHONE and keeps the 6.
 * Shorter digit groups survive: 工号1025, 3个工作日, 12315 (a 5-digit hotline the complaint rules
 * match), 两百块钱.
 *
 * Each finding is replaced by `[TYPE]` (PII_TOKENS); the characters around it, punctuation
 * included, are kept. Finding offsets are UTF-16 indices [begin, end) into the INPUT text.
 */
import { AppError } from '../core/errors.js';

export const PII_TYPES = ['PHONE', 'ID', 'BANK_CARD', 'EMAIL', 'DIGITS'] as const;
export type PiiType = (typeof PII_TYPES)[number];

/** Replacement token per type: stable, language-neutral. */
export const PII_TOKENS: Readonly<Record<PiiType, string>> = {
  PHONE: '[PHONE]',
  ID: '[ID]',
  BANK_CARD: '[BANK_CARD]',
  EMAIL: '[EMAIL]',
  DIGITS: '[DIGITS]',
};

/** Config: store redacted text only, raw text only, or both (raw kept under access control). */
export const PII_MODES = ['redact', 'keep', 'both'] as const;
export type PiiMode = (typeof PII_MODES)[number];

export function isPiiMode(value: unknown): value is PiiMode {
  return value === 'redact' || value === 'keep' || value === 'both';
}

export interface PiiFinding {
  readonly type: PiiType;
  /** UTF-16 offsets into the input text, [begin, end). */
  readonly begin: number;
  readonly end: number;
}

export interface PiiOptions {
  /** Minimum digits of a run redacted as DIGITS (integer ≥ 2; default 6). */
  readonly minDigitRun?: number;
}

export interface RedactionResult {
  readonly text: string;
  /** Sorted by begin; non-overlapping. */
  readonly findings: readonly PiiFinding[];
}

export const DEFAULT_MIN_DIGIT_RUN = 6;

// ---------------------------------------------------------------------------------------------
// Validators

const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK = '10X98765432';

/** 18-character resident ID (17 digits + digit/X) with a correct GB 11643 check character. */
export function isValidResidentId(id: string): boolean {
  if (!/^\d{17}[\dXx]$/.test(id)) return false;
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(id[i]) * ID_WEIGHTS[i]!;
  return ID_CHECK[sum % 11] === id[17]!.toUpperCase();
}

/** Luhn (mod 10) check over an all-digit string. */
export function luhnValid(digits: string): boolean {
  if (!/^\d+$/.test(digits)) return false;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

const MOBILE = /^1[3-9]\d{9}$/;

/** A mainland mobile number, optionally with the 86 / 0086 country prefix (digits only). */
export function isChineseMobile(digits: string): boolean {
  if (digits.startsWith('0086')) return MOBILE.test(digits.slice(4));
  if (digits.startsWith('86') && digits.length === 13) return MOBILE.test(digits.slice(2));
  return MOBILE.test(digits);
}

// ---------------------------------------------------------------------------------------------
// Scanning

const EMAIL = /[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;

const CHINESE_DIGITS: Readonly<Record<string, string>> = {
  零: '0',
  〇: '0',
  一: '1',
  幺: '1',
  二: '2',
  三: '3',
  四: '4',
  五: '5',
  六: '6',
  七: '7',
  八: '8',
  九: '9',
};

function digitOf(ch: string | undefined): string | undefined {
  if (ch === undefined) return undefined;
  const c = ch.charCodeAt(0);
  if (c >= 0x30 && c <= 0x39) return ch;
  if (c >= 0xff10 && c <= 0xff19) return String(c - 0xff10);
  return CHINESE_DIGITS[ch];
}

const SEPARATOR = /[ \u00a0\u3000\-\u2010-\u2013\uff0d]/;
const MAX_SEPARATORS = 3;
/** Longest digit string any strong type can have (19-digit card). */
const MAX_STRONG_DIGITS = 19;

/** Separator-free digit group of a run. */
interface Group {
  readonly digits: string;
  readonly begin: number;
  readonly end: number;
}

function strongType(digits: string, plusBefore: boolean, xAfter: boolean): PiiType | null {
  if (isChineseMobile(digits) || (plusBefore && digits.startsWith('86') && MOBILE.test(digits.slice(2)))) return 'PHONE';
  if (digits.length === 17 && xAfter && isValidResidentId(`${digits}X`)) return 'ID';
  if (digits.length === 18 && isValidResidentId(digits)) return 'ID';
  if (digits.length >= 13 && digits.length <= 19 && luhnValid(digits)) return 'BANK_CARD';
  return null;
}

/** Classifies one run (its groups), returning findings in order. */
function classifyRun(text: string, groups: readonly Group[], minDigitRun: number, out: PiiFinding[]): void {
  const last = groups[groups.length - 1]!;
  // an X check character directly (or after one space) after the run
  const afterX = /^ ?[Xx\uff38]/.exec(text.slice(last.end, last.end + 2));
  const xEnd = afterX === null ? -1 : last.end + afterX[0].length;
  const xIsWordEnd = xEnd !== -1 && !/[A-Za-z0-9]/.test(text[xEnd] ?? '');
  const plusAt = groups[0]!.begin - 1;
  const plusBefore = text[plusAt] === '+' || text[plusAt] === '\uff0b';

  let leftover: Group[] = [];
  const flushLeftover = (): void => {
    const n = leftover.reduce((sum, g) => sum + g.digits.length, 0);
    if (n >= minDigitRun) out.push({ type: 'DIGITS', begin: leftover[0]!.begin, end: leftover[leftover.length - 1]!.end });
    leftover = [];
  };

  let a = 0;
  while (a < groups.length) {
    let found: { b: number; type: PiiType } | null = null;
    // longest first: b from the furthest group that keeps the digits within MAX_STRONG_DIGITS
    let b = a;
    let len = groups[a]!.digits.length;
    while (b + 1 < groups.length && len + groups[b + 1]!.digits.length <= MAX_STRONG_DIGITS) {
      b++;
      len += groups[b]!.digits.length;
    }
    for (; b >= a && found === null; b--) {
      const digits = groups
        .slice(a, b + 1)
        .map((g) => g.digits)
        .join('');
      const type = strongType(digits, a === 0 && plusBefore, b === groups.length - 1 && xIsWordEnd);
      if (type !== null) found = { b, type };
    }
    if (found === null) {
      leftover.push(groups[a]!);
      a++;
      continue;
    }
    flushLeftover();
    const withPlus = a === 0 && plusBefore && found.type === 'PHONE' && groups[0]!.digits.startsWith('86');
    const begin = withPlus ? plusAt : groups[a]!.begin;
    const digitsLen = groups.slice(a, found.b + 1).reduce((sum, g) => sum + g.digits.length, 0);
    const end = found.type === 'ID' && digitsLen === 17 ? xEnd : groups[found.b]!.end;
    out.push({ type: found.type, begin, end });
    a = found.b + 1;
  }
  flushLeftover();
}

function optionsError(): AppError {
  return new AppError('ERR_PII_OPTIONS_INVALID', 'minDigitRun must be an integer ≥ 2', { category: 'invalid_request' });
}

/**
 * Finds PII in one transcript sentence and replaces each finding by its PII_TOKENS token.
 * Throws AppError ERR_PII_OPTIONS_INVALID for a bad minDigitRun.
 */
export function redactPii(text: string, options?: PiiOptions): RedactionResult {
  const minDigitRun = options?.minDigitRun ?? DEFAULT_MIN_DIGIT_RUN;
  if (!Number.isInteger(minDigitRun) || minDigitRun < 2) throw optionsError();

  const findings: PiiFinding[] = [];
  if (text.includes('@')) {
    for (const m of text.matchAll(EMAIL)) findings.push({ type: 'EMAIL', begin: m.index, end: m.index + m[0].length });
  }
  const emails = [...findings];
  const inEmail = (i: number): boolean => emails.some((f) => i >= f.begin && i < f.end);

  let i = 0;
  while (i < text.length) {
    const d = inEmail(i) ? undefined : digitOf(text[i]);
    if (d === undefined) {
      i++;
      continue;
    }
    const groups: Group[] = [];
    let begin = i;
    let digits = '';
    let j = i;
    for (;;) {
      const dj = inEmail(j) ? undefined : digitOf(text[j]);
      if (dj !== undefined) {
        digits += dj;
        j++;
        continue;
      }
      groups.push({ digits, begin, end: j });
      let k = j;
      while (k < text.length && k - j < MAX_SEPARATORS && SEPARATOR.test(text[k]!)) k++;
      if (k === j || inEmail(k) || digitOf(text[k]) === undefined) break;
      begin = k;
      digits = '';
      j = k;
    }
    classifyRun(text, groups, minDigitRun, findings);
    i = groups[groups.length - 1]!.end;
  }

  findings.sort((x, y) => x.begin - y.begin);
  let out = '';
  let cursor = 0;
  for (const f of findings) {
    out += text.slice(cursor, f.begin) + PII_TOKENS[f.type];
    cursor = f.end;
  }
  return { text: out + text.slice(cursor), findings };
}
