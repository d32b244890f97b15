import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { computeTwilioSignature, twilioSignedString, validateTwilioSignature } from './signature.js';

/** Independent reimplementation straight from Twilio's description, for cross-checking. */
function reference(token: string, url: string, params: Record<string, string>): string {
  const data = Object.keys(params)
    .sort()
    .reduce((acc, k) => acc + k + params[k], url);
  return createHmac('sha1', Buffer.from(token, 'utf8')).update(Buffer.from(data, 'utf8')).digest('base64');
}

// Twilio's documented example (webhooks-security page and the twilio-php validation docs).
// NOTE: the vector is for https://mycompany.com/..., not example.com.
const DOC_URL = 'https://mycompany.com/myapp.php?foo=1&bar=2';
const DOC_PARAMS = {
  CallSid: 'CA1234567890ABCDE',
  Caller: '+12349013030',
  Digits: '1234',
  From: '+12349013030',
  To: '+18005551212',
};

const WSS_URL = 'wss://callscribe.example.com/twilio';
const TOKEN = 'f0e1d2c3b4a5968778695a4b3c2d1e0f';

describe('Twilio signature', () => {
  it("matches Twilio's documented example: 0/KCTR6DLpKmkAf8muzZqo1nDgQ=", () => {
    expect(computeTwilioSignature('12345', DOC_URL, DOC_PARAMS)).toBe('0/KCTR6DLpKmkAf8muzZqo1nDgQ=');
    expect(validateTwilioSignature('12345', DOC_URL, '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', DOC_PARAMS)).toBe(true);
  });

  it("matches the older twilio-php example (Caller +14158675309): RSOYDt4T1cUTdK1PDd93/VVr8B8=", () => {
    const params = { ...DOC_PARAMS, Caller: '+14158675309', From: '+14158675309' };
    expect(computeTwilioSignature('12345', DOC_URL, params)).toBe('RSOYDt4T1cUTdK1PDd93/VVr8B8=');
  });

  it('the documented signature does not validate for example.com (the URL is part of the signature)', () => {
    const url = 'https://example.com/myapp.php?foo=1&bar=2';
    expect(validateTwilioSignature('12345', url, '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', DOC_PARAMS)).toBe(false);
    expect(computeTwilioSignature('12345', url, DOC_PARAMS)).toBe(reference('12345', url, DOC_PARAMS));
  });

  it('agrees with an independent implementation (params sorted by name, inserted unsorted)', () => {
    const params = { Zeta: 'z', alpha: 'a', Beta: 'b  b', Empty: '', Unicode: '你好' };
    expect(computeTwilioSignature(TOKEN, WSS_URL, params)).toBe(reference(TOKEN, WSS_URL, params));
    expect(twilioSignedString('u', { b: '2', a: '1', B: '3' })).toBe('uB3a1b2');
  });

  it('WebSocket upgrade: URL alone (params {}), the wss:// form', () => {
    const sig = computeTwilioSignature(TOKEN, WSS_URL);
    expect(sig).toBe(createHmac('sha1', TOKEN).update(WSS_URL).digest('base64'));
    expect(validateTwilioSignature(TOKEN, WSS_URL, sig)).toBe(true);
    expect(validateTwilioSignature(TOKEN, WSS_URL, sig, {})).toBe(true);
  });

  it('multi-valued params: name+value per distinct value, values sorted', () => {
    expect(twilioSignedString('u', { m: ['2', '1', '2'] })).toBe('um1m2');
  });

  it('rejects a wrong token', () => {
    const sig = computeTwilioSignature(TOKEN, WSS_URL);
    expect(validateTwilioSignature(TOKEN.replace('f', 'e'), WSS_URL, sig)).toBe(false);
  });

  it.each([
    ['another path', 'wss://callscribe.example.com/twilio2'],
    ['trailing slash', 'wss://callscribe.example.com/twilio/'],
    ['another host', 'wss://evil.example.com/twilio'],
    ['a query string', 'wss://callscribe.example.com/twilio?x=1'],
    ['explicit port', 'wss://callscribe.example.com:443/twilio'],
    ['https:// instead of wss:// (proxy-rebuilt URL)', 'https://callscribe.example.com/twilio'],
    ['http:// internal URL', 'http://10.0.0.5:8080/twilio'],
    ['ws:// instead of wss://', 'ws://callscribe.example.com/twilio'],
  ])('rejects a tampered URL: %s', (_name, url) => {
    const sig = computeTwilioSignature(TOKEN, WSS_URL);
    expect(validateTwilioSignature(TOKEN, url, sig)).toBe(false);
  });

  it('rejects tampered params', () => {
    const sig = computeTwilioSignature('12345', DOC_URL, DOC_PARAMS);
    expect(validateTwilioSignature('12345', DOC_URL, sig, { ...DOC_PARAMS, Digits: '9999' })).toBe(false);
    expect(validateTwilioSignature('12345', DOC_URL, sig, {})).toBe(false);
  });

  it('rejects a missing, empty, truncated, extended or case-changed header', () => {
    const sig = computeTwilioSignature(TOKEN, WSS_URL);
    expect(validateTwilioSignature(TOKEN, WSS_URL, undefined)).toBe(false);
    expect(validateTwilioSignature(TOKEN, WSS_URL, '')).toBe(false);
    expect(validateTwilioSignature(TOKEN, WSS_URL, sig.slice(0, -1))).toBe(false);
    expect(validateTwilioSignature(TOKEN, WSS_URL, sig + 'A')).toBe(false);
    expect(validateTwilioSignature(TOKEN, WSS_URL, sig.toLowerCase() === sig ? sig.toUpperCase() : sig.toLowerCase())).toBe(false);
    expect(validateTwilioSignature(TOKEN, WSS_URL, '你'.repeat(28))).toBe(false);
  });

  it('rejects everything when the token is empty', () => {
    expect(validateTwilioSignature('', WSS_URL, computeTwilioSignature('', WSS_URL))).toBe(false);
  });
});
