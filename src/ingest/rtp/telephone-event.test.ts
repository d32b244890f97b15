import { describe, expect, it } from 'vitest';
import {
  DTMF_DIGITS,
  DtmfTracker,
  digitToEvent,
  eventToDigit,
  parseTelephoneEvent,
  serializeTelephoneEvent,
} from './telephone-event.js';

const te = (event: number, duration: number, end = false, volume = 10): Uint8Array =>
  serializeTelephoneEvent({ event, end, volume, duration });

describe('parseTelephoneEvent', () => {
  it('reads event, E bit, volume and duration (SIPp capture bytes)', () => {
    // from dtmf_2833_0.pcap: the end packet of digit 0, volume 10, duration 0x08c0 = 2240
    expect(parseTelephoneEvent(Uint8Array.from([0x00, 0x8a, 0x08, 0xc0]))).toEqual({ event: 0, end: true, volume: 10, duration: 2240 });
    // R bit set is ignored; volume is 6 bits
    expect(parseTelephoneEvent(Uint8Array.from([0x0b, 0x7f, 0xff, 0xff]))).toEqual({ event: 11, end: false, volume: 63, duration: 65535 });
    expect(parseTelephoneEvent(Uint8Array.from([1, 2, 3]))).toBeNull();
  });

  it('round-trips serializeTelephoneEvent', () => {
    const ev = { event: 15, end: true, volume: 33, duration: 1234 };
    expect(parseTelephoneEvent(serializeTelephoneEvent(ev))).toEqual(ev);
  });

  it('maps events 0–15 to 0-9 * # A-D and nothing else', () => {
    expect(Array.from({ length: 16 }, (_, i) => eventToDigit(i)).join('')).toBe('0123456789*#ABCD');
    expect(eventToDigit(16)).toBeNull(); // flash
    expect(eventToDigit(255)).toBeNull();
    for (const d of DTMF_DIGITS) expect(eventToDigit(digitToEvent(d))).toBe(d);
  });
});

describe('DtmfTracker', () => {
  it('reports an event once although its end packet comes three times', () => {
    const t = new DtmfTracker();
    const out = [];
    for (let d = 0; d <= 1600; d += 320) out.push(...t.push(8000, 500, te(5, d)));
    expect(out).toEqual([]);
    for (let i = 0; i < 3; i++) out.push(...t.push(8000, 500, te(5, 1760, true)));
    expect(out).toEqual([{ digit: '5', timelineMs: 500, durationMs: 220, volume: 10, ended: true }]);
    expect(t.stats()).toMatchObject({ packets: 9, reported: 1, repeats: 2 });
  });

  it('ignores a late end copy after the next event started', () => {
    const t = new DtmfTracker();
    expect(t.push(100, 10, te(1, 800, true))).toHaveLength(1);
    expect(t.push(5000, 600, te(2, 160))).toEqual([]);
    expect(t.push(100, 10, te(1, 800, true))).toEqual([]);
    expect(t.push(5000, 600, te(2, 800, true))).toEqual([{ digit: '2', timelineMs: 600, durationMs: 100, volume: 10, ended: true }]);
    expect(t.stats().reported).toBe(2);
  });

  it('reports an event whose end packets were all lost when the next one starts, and on flush', () => {
    const t = new DtmfTracker();
    t.push(100, 10, te(11, 160));
    t.push(100, 10, te(11, 480));
    const next = t.push(9000, 1100, te(10, 160));
    expect(next).toEqual([{ digit: '#', timelineMs: 10, durationMs: 60, volume: 10, ended: false }]);
    expect(t.flush()).toEqual([{ digit: '*', timelineMs: 1100, durationMs: 20, volume: 10, ended: false }]);
    expect(t.flush()).toEqual([]);
    expect(t.stats()).toMatchObject({ reported: 2, reportedWithoutEnd: 2 });
  });

  it('reports the pending event and a single-packet event pushed together', () => {
    const t = new DtmfTracker();
    t.push(100, 10, te(3, 160));
    const out = t.push(900, 110, te(4, 400, true));
    expect(out.map((d) => [d.digit, d.ended])).toEqual([
      ['3', false],
      ['4', true],
    ]);
  });

  it('counts and ignores non-digit events and short payloads', () => {
    const t = new DtmfTracker();
    expect(t.push(1, 0, te(16, 800, true))).toEqual([]);
    expect(t.push(1, 0, Uint8Array.from([1, 2]))).toEqual([]);
    expect(t.stats()).toMatchObject({ nonDigit: 1, invalid: 1, reported: 0 });
  });

  it('after reset the same timestamp is a new event (new SSRC)', () => {
    const t = new DtmfTracker();
    expect(t.push(100, 0, te(7, 800, true))).toHaveLength(1);
    t.reset();
    expect(t.push(100, 2000, te(7, 800, true))).toHaveLength(1);
  });
});
