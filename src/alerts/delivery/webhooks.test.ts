import { describe, expect, it } from 'vitest';
import {
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  classifyStatus,
  describeFetchError,
  signWebhook,
  verifyWebhookSignature,
  webhookJobId,
  webhookJobSchema,
} from './webhooks.js';

const SECRET = 'whsec_test';
const BODY = '{"v":1,"type":"alert"}';
const TS = 1_700_000_000_000;
// printf '%s' '1700000000000.{"v":1,"type":"alert"}' | openssl dgst -sha256 -hmac whsec_test
const VECTOR = 'sha256=3cc9612c5e59010cf552a0726e8ebd95715fe408966a62ef34554cd71ada2d49';

function headers(signature: string, timestamp: string | number = TS): Record<string, string> {
  return { 'x-callscribe-signature': signature, 'x-callscribe-timestamp': String(timestamp) };
}

describe('signWebhook', () => {
  it('matches an HMAC-SHA256 computed by openssl over "<timestamp>.<body>"', () => {
    expect(signWebhook(SECRET, TS, BODY)).toBe(VECTOR);
    expect(signWebhook(SECRET, String(TS), Buffer.from(BODY))).toBe(VECTOR);
  });
});

describe('verifyWebhookSignature', () => {
  it('accepts a valid signature inside the window (plain headers and Headers)', () => {
    expect(verifyWebhookSignature(SECRET, headers(VECTOR), BODY, 300_000, TS + 1000)).toEqual({ ok: true, timestamp: TS });
    const h = new Headers({ [HEADER_SIGNATURE]: VECTOR, [HEADER_TIMESTAMP]: String(TS) });
    expect(verifyWebhookSignature(SECRET, h, Buffer.from(BODY), 300_000, TS - 1000)).toEqual({ ok: true, timestamp: TS });
  });

  it('refuses a tampered body, another secret, a shifted timestamp and a truncated signature', () => {
    const at = TS + 10;
    expect(verifyWebhookSignature(SECRET, headers(VECTOR), BODY.replace('alert', 'alerT'), 60_000, at)).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifyWebhookSignature('other', headers(VECTOR), BODY, 60_000, at)).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifyWebhookSignature(SECRET, headers(VECTOR, TS + 1), BODY, 60_000, at)).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifyWebhookSignature(SECRET, headers(VECTOR.slice(0, -2)), BODY, 60_000, at)).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('refuses replays outside the window and malformed or missing headers', () => {
    expect(verifyWebhookSignature(SECRET, headers(VECTOR), BODY, 60_000, TS + 60_001)).toEqual({ ok: false, reason: 'expired' });
    expect(verifyWebhookSignature(SECRET, headers(VECTOR), BODY, 60_000, TS - 60_001)).toEqual({ ok: false, reason: 'expired' });
    expect(verifyWebhookSignature(SECRET, headers(VECTOR, '17e11'), BODY, 60_000, TS)).toEqual({ ok: false, reason: 'bad-timestamp' });
    expect(verifyWebhookSignature(SECRET, { 'x-callscribe-timestamp': String(TS) }, BODY, 60_000, TS)).toEqual({ ok: false, reason: 'missing-signature' });
    expect(verifyWebhookSignature(SECRET, { 'x-callscribe-signature': VECTOR }, BODY, 60_000, TS)).toEqual({ ok: false, reason: 'missing-timestamp' });
  });
});

describe('classifyStatus', () => {
  it.each([
    [200, 'delivered'],
    [204, 'delivered'],
    [408, 'retry'],
    [429, 'retry'],
    [500, 'retry'],
    [503, 'retry'],
    [301, 'final'],
    [400, 'final'],
    [401, 'final'],
    [404, 'final'],
    [410, 'final'],
  ] as const)('HTTP %i → %s', (status, kind) => {
    expect(classifyStatus(status).kind).toBe(kind);
  });
});

describe('describeFetchError', () => {
  it('names timeouts and network error codes without the URL', () => {
    const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    expect(describeFetchError(timeout, 5000)).toBe('timeout after 5000 ms');
    const refused = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
    expect(describeFetchError(refused, 5000)).toBe('network error ECONNREFUSED');
    expect(describeFetchError(new Error('x'), 5000)).toBe('network error');
  });
});

describe('webhook jobs', () => {
  it('builds deterministic, colon-free job ids per (alert, url)', () => {
    const a = webhookJobId('a1', 'https://hooks.example.com/x?token=1');
    expect(a).toMatch(/^wh-a1-[0-9a-f]{12}$/);
    expect(webhookJobId('a1', 'https://hooks.example.com/x?token=1')).toBe(a);
    expect(webhookJobId('a1', 'https://hooks.example.com/x?token=2')).not.toBe(a);
    expect(a).not.toContain(':');
  });

  it('validates job data: http(s) URLs only', () => {
    const ok = { alertId: 'a1', url: 'https://hooks.example.com/x', event: 'alert', body: BODY };
    expect(webhookJobSchema.safeParse(ok).success).toBe(true);
    expect(webhookJobSchema.safeParse({ ...ok, url: 'file:///etc/passwd' }).success).toBe(false);
    expect(webhookJobSchema.safeParse({ ...ok, event: 'other' }).success).toBe(false);
  });
});
