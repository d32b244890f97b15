import { describe, expect, it } from 'vitest';
import { newFastMediaFields, scanTwilioMedia } from './fast-media.js';
import { TwilioStreamParser, type TwilioParseResult } from './parser.js';

const SID = 'MZ0123456789abcdef0123456789abcdef';
const frame = (o: { seq?: string; track?: string; chunk?: string; ts?: string; payload?: string; sid?: string } = {}) =>
  `{"event":"media","sequenceNumber":"${o.seq ?? '7'}","media":{"track":"${o.track ?? 'inbound'}","chunk":"${o.chunk ?? '3'}","timestamp":"${o.ts ?? '40'}","payload":"${o.payload ?? Buffer.from([1, 2, 3, 250, 255]).toString('base64')}"},"streamSid":"${o.sid ?? SID}"}`;

function scan(text: string) {
  const buf = Buffer.from(text);
  const dst = Buffer.alloc(buf.length);
  const out = newFastMediaFields();
  const ok = scanTwilioMedia(buf, dst, out);
  return { ok, out, payload: dst.subarray(0, out.payloadBytes), sid: buf.subarray(out.sidStart, out.sidEnd).toString() };
}

describe('scanTwilioMedia', () => {
  it('reads Twilio’s media layout and decodes the payload', () => {
    const r = scan(frame());
    expect(r.ok).toBe(true);
    expect(r.out).toMatchObject({ sequenceNumber: 7, track: 'inbound', chunk: 3, timestampMs: 40 });
    expect([...r.payload]).toEqual([1, 2, 3, 250, 255]);
    expect(r.sid).toBe(SID);
  });

  it.each([0, 1, 2, 3, 160, 161, 162])('decodes %i-byte payloads like Buffer.from(base64)', (n) => {
    const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 97 + 13) & 0xff));
    const r = scan(frame({ payload: bytes.toString('base64') }));
    if (n === 0) {
      expect(r.ok).toBe(false); // empty payloads take the general path (ERR_INGEST_EMPTY_PAYLOAD)
      return;
    }
    expect(r.ok).toBe(true);
    expect(r.payload.equals(bytes)).toBe(true);
  });

  it.each([
    ['whitespace', frame().replace('"media",', '"media", ')],
    ['other key order', frame().replace('{"event":"media","sequenceNumber":"7"', '{"sequenceNumber":"7","event":"media"')],
    ['numeric sequenceNumber', frame().replace('"sequenceNumber":"7"', '"sequenceNumber":7')],
    ['unknown track', frame({ track: 'both' })],
    ['escaped sid', frame({ sid: 'MZ\\u0041' })],
    ['trailing bytes', `${frame()} `],
    ['truncated', frame().slice(0, -3)],
    ['bad base64 character', frame({ payload: 'AA-A' })],
    ['padding in the middle', frame({ payload: 'AA==AAAA' })],
    ['base64 length not a multiple of 4', frame({ payload: 'AAA' })],
    ['16-digit timestamp', frame({ ts: '1234567890123456' })],
    ['empty sequenceNumber', frame({ seq: '' })],
    ['extra field', frame().replace('"streamSid"', '"extra":"x","streamSid"')],
  ])('does not recognise: %s', (_, text) => {
    expect(scan(text).ok).toBe(false);
  });
});

/** Seeded PRNG for a reproducible differential test. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function normalise(r: TwilioParseResult): unknown {
  if (r.kind !== 'event') return r;
  const e = r.event;
  return e.type === 'media' ? { ...e, payload: [...e.payload] } : e;
}

describe('fast path ≡ general path', () => {
  it('gives identical results and stats for valid and mutated frames', () => {
    const start = JSON.stringify({
      event: 'start',
      sequenceNumber: '1',
      streamSid: SID,
      start: { streamSid: SID, accountSid: 'AC1', callSid: 'CA1', tracks: ['inbound'], customParameters: {}, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
    });
    const fast = new TwilioStreamParser();
    const slow = new TwilioStreamParser({ fastPath: false });
    fast.push(Buffer.from(start), false);
    slow.push(Buffer.from(start), false);
    const rand = rng(42);
    const alphabet = '{}":,AZaz09+/=\\ -x';
    let recognised = 0;
    for (let i = 0; i < 5000; i++) {
      const n = 1 + Math.floor(rand() * 200);
      const payload = Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256))).toString('base64');
      let text = frame({
        seq: String(i + 2),
        track: rand() < 0.5 ? 'inbound' : 'outbound',
        chunk: String(i),
        ts: String(i * 20),
        payload,
        sid: rand() < 0.05 ? 'MZother' : SID,
      });
      const mutation = rand();
      if (mutation < 0.3) {
        // change one byte
        const at = Math.floor(rand() * text.length);
        text = text.slice(0, at) + alphabet[Math.floor(rand() * alphabet.length)] + text.slice(at + 1);
      } else if (mutation < 0.4) {
        text = text.slice(0, Math.floor(rand() * text.length));
      }
      const buf = Buffer.from(text);
      if (scan(text).ok) recognised++;
      expect(normalise(fast.push(buf, false)), text).toEqual(normalise(slow.push(buf, false)));
    }
    expect(fast.stats).toEqual(slow.stats);
    expect(recognised).toBeGreaterThan(2500); // the fast path really was exercised
  });
});
