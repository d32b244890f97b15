import { describe, expect, it } from 'vitest';
import {
  TWILIO_DROP_CODES,
  TwilioCloseCode,
  TwilioStreamParser,
  sanitizeEventName,
  type TwilioParseResult,
  type TwilioStreamEvent,
} from './parser.js';
import { base64DecodedLength, isStrictBase64, normaliseCustomParameters, parseUintField } from './messages.js';

const SID = 'MZ00000000000000000000000000000001';
const CALL = 'CA00000000000000000000000000000001';
const ACCT = 'AC00000000000000000000000000000001';

const connected = { event: 'connected', protocol: 'Call', version: '1.0.0' };

function start(overrides: { start?: Record<string, unknown>; [k: string]: unknown } = {}): Record<string, unknown> {
  const { start: inner, ...top } = overrides;
  return {
    event: 'start',
    sequenceNumber: '1',
    streamSid: SID,
    start: {
      streamSid: SID,
      accountSid: ACCT,
      callSid: CALL,
      tracks: ['inbound', 'outbound'],
      customParameters: { tenant: 'acme', agentId: '42' },
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      ...inner,
    },
    ...top,
  };
}

const PAYLOAD = Buffer.alloc(160, 0xff);
function media(seq: number, chunk: number, ts: number, extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    event: 'media',
    sequenceNumber: String(seq),
    streamSid: SID,
    media: { track: 'inbound', chunk: String(chunk), timestamp: String(ts), payload: PAYLOAD.toString('base64'), ...extra },
    ...top,
  };
}

const stop = (seq: number) => ({ event: 'stop', sequenceNumber: String(seq), streamSid: SID, stop: { accountSid: ACCT, callSid: CALL } });

function push(p: TwilioStreamParser, msg: unknown, binary = false): TwilioParseResult {
  return p.push(typeof msg === 'string' ? msg : JSON.stringify(msg), binary);
}

function event(r: TwilioParseResult): TwilioStreamEvent {
  if (r.kind !== 'event') throw new Error(`expected event, got ${JSON.stringify(r)}`);
  return r.event;
}

function started(msg: Record<string, unknown> = start()): TwilioStreamParser {
  const p = new TwilioStreamParser();
  expect(push(p, connected).kind).toBe('event');
  expect(push(p, msg).kind).toBe('event');
  return p;
}

describe('TwilioStreamParser: a full valid session', () => {
  it('parses connected → start → media (both tracks) → dtmf → mark → stop', () => {
    const p = new TwilioStreamParser();
    expect(p.state).toBe('awaiting-connected');
    expect(event(push(p, connected))).toEqual({ type: 'connected', protocol: 'Call', version: '1.0.0' });
    expect(p.state).toBe('awaiting-start');

    const s = event(push(p, start()));
    expect(s).toEqual({
      type: 'start',
      sequenceNumber: 1,
      streamSid: SID,
      accountSid: ACCT,
      callSid: CALL,
      tracks: ['inbound', 'outbound'],
      tracksDefaulted: false,
      customParameters: { tenant: 'acme', agentId: '42' },
      droppedCustomParameters: 0,
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      codec: 'pcmu',
    });
    expect(p.state).toBe('streaming');
    expect(p.streamSid).toBe(SID);

    const payload = Buffer.from(Array.from({ length: 160 }, (_, i) => i));
    const m1 = event(push(p, media(2, 1, 52, { payload: payload.toString('base64') })));
    expect(m1).toMatchObject({ type: 'media', sequenceNumber: 2, track: 'inbound', chunk: 1, timestampMs: 52, codec: 'pcmu', listedTrack: true });
    expect(m1.type === 'media' && Buffer.compare(m1.payload, payload)).toBe(0);
    const m2 = event(push(p, media(3, 1, 52, { track: 'outbound' })));
    expect(m2).toMatchObject({ type: 'media', track: 'outbound', chunk: 1, timestampMs: 52 });

    expect(event(push(p, { event: 'dtmf', sequenceNumber: '4', streamSid: SID, dtmf: { track: 'inbound_track', digit: '5' } }))).toEqual({
      type: 'dtmf',
      sequenceNumber: 4,
      track: 'inbound_track',
      digit: '5',
    });
    expect(event(push(p, { event: 'mark', sequenceNumber: '5', streamSid: SID, mark: { name: 'greeting' } }))).toEqual({
      type: 'mark',
      sequenceNumber: 5,
      name: 'greeting',
    });
    expect(event(push(p, stop(6)))).toEqual({ type: 'stop', sequenceNumber: 6, accountSid: ACCT, callSid: CALL });
    expect(p.state).toBe('stopped');

    const st = p.stats;
    expect(st.messages).toBe(7);
    expect(st.events).toEqual({ connected: 1, start: 1, media: 2, dtmf: 1, mark: 1, stop: 1 });
    expect(Object.values(st.drops).every((n) => n === 0)).toBe(true);
    expect(st.seqGaps + st.seqRegressions + st.chunkRegressions + st.unlistedTrackFrames).toBe(0);
    expect(st.fatal).toBeNull();
  });

  it('accepts Buffer, ArrayBuffer and fragmented Buffer[] text frames', () => {
    const p = new TwilioStreamParser();
    expect(p.push(Buffer.from(JSON.stringify(connected)), false).kind).toBe('event');
    const s = Buffer.from(JSON.stringify(start()));
    expect(p.push([s.subarray(0, 10), s.subarray(10)], false).kind).toBe('event');
    const m = Buffer.from(JSON.stringify(media(2, 1, 0)));
    const ab = m.buffer.slice(m.byteOffset, m.byteOffset + m.length);
    expect(p.push(ab, false).kind).toBe('event');
  });

  it('inbound-only stream: tracks ["inbound"]', () => {
    const p = started(start({ start: { tracks: ['inbound'] } }));
    expect(event(push(p, media(2, 1, 0))).type).toBe('media');
    expect(p.stats.unlistedTrackFrames).toBe(0);
  });

  it('start.tracks absent or empty → ["inbound"] assumed (tracksDefaulted)', () => {
    for (const tracks of [undefined, []]) {
      const p = new TwilioStreamParser();
      const s = event(push(p, start({ start: { tracks } })));
      expect(s).toMatchObject({ type: 'start', tracks: ['inbound'], tracksDefaulted: true });
    }
  });

  it('a start without connected is accepted (connected is optional)', () => {
    const p = new TwilioStreamParser();
    expect(event(push(p, start())).type).toBe('start');
    expect(p.state).toBe('streaming');
  });

  it('a missing stop is fine: the parser simply stays streaming', () => {
    const p = started();
    for (let i = 0; i < 5; i++) expect(push(p, media(2 + i, 1 + i, 20 * i)).kind).toBe('event');
    expect(p.state).toBe('streaming');
  });

  it('connected: never fails on version/protocol values', () => {
    for (const c of [
      { event: 'connected', protocol: 'Call', version: '0.2.0' },
      { event: 'connected' },
      { event: 'connected', version: 2, protocol: { x: 1 } },
    ]) {
      const p = new TwilioStreamParser();
      expect(push(p, c).kind).toBe('event');
    }
    const p = new TwilioStreamParser();
    expect(event(push(p, { event: 'connected', version: 2, protocol: ['x'] }))).toEqual({ type: 'connected', protocol: null, version: '2' });
  });

  it('a UUID streamSid is accepted (no strict format check)', () => {
    const uuid = '3c0e5a5c-64b7-4d1b-9a0c-1d2e3f405060';
    const p = new TwilioStreamParser();
    push(p, start({ streamSid: uuid, start: { streamSid: uuid } }));
    expect(push(p, media(2, 1, 0, {}, { streamSid: uuid })).kind).toBe('event');
  });

  it('A-law mediaFormat (case-insensitive) → codec pcma on start and media', () => {
    const p = new TwilioStreamParser();
    const s = event(push(p, start({ start: { mediaFormat: { encoding: 'AUDIO/X-ALAW', sampleRate: 8000, channels: 1 } } })));
    expect(s).toMatchObject({ codec: 'pcma' });
    expect(event(push(p, media(2, 1, 0)))).toMatchObject({ codec: 'pcma' });
    const q = new TwilioStreamParser();
    expect(event(push(q, start({ start: { mediaFormat: { encoding: 'Audio/X-MuLaw', sampleRate: 8000, channels: 1 } } })))).toMatchObject({ codec: 'pcmu' });
  });
});

describe('TwilioStreamParser: vendor number-typed fields', () => {
  it('accepts numbers for sequenceNumber, chunk, timestamp, sampleRate, channels', () => {
    const p = new TwilioStreamParser();
    const s = event(
      push(p, start({ sequenceNumber: 1, start: { mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: '8000', channels: '1' } } })),
    );
    expect(s).toMatchObject({ sequenceNumber: 1, mediaFormat: { sampleRate: 8000, channels: 1 } });
    const m = event(
      push(p, {
        event: 'media',
        sequenceNumber: 2,
        streamSid: SID,
        media: { track: 'inbound', chunk: 1, timestamp: 40, payload: PAYLOAD.toString('base64') },
      }),
    );
    expect(m).toMatchObject({ sequenceNumber: 2, chunk: 1, timestampMs: 40 });
    expect(event(push(p, { event: 'stop', sequenceNumber: 3, streamSid: SID }))).toEqual({
      type: 'stop',
      sequenceNumber: 3,
      accountSid: null,
      callSid: null,
    });
  });

  it('customParameters: strings kept, numbers/booleans coerced, others dropped and counted', () => {
    const p = new TwilioStreamParser();
    const s = event(
      push(p, start({ start: { customParameters: { a: 'x', n: 42, f: 1.5, b: true, o: { x: 1 }, arr: [1], nul: null } } })),
    );
    expect(s).toMatchObject({ customParameters: { a: 'x', n: '42', f: '1.5', b: 'true' }, droppedCustomParameters: 3 });
    expect(p.stats.droppedCustomParameters).toBe(3);
  });

  it('customParameters that is not an object counts as one drop; absent → {}', () => {
    const p = new TwilioStreamParser();
    expect(event(push(p, start({ start: { customParameters: 'tenant=acme' } })))).toMatchObject({
      customParameters: {},
      droppedCustomParameters: 1,
    });
    const q = new TwilioStreamParser();
    expect(event(push(q, start({ start: { customParameters: undefined } })))).toMatchObject({
      customParameters: {},
      droppedCustomParameters: 0,
    });
  });
});

describe('TwilioStreamParser: drops, in validation order', () => {
  it('binary frame → ERR_INGEST_BINARY_FRAME (even if it holds valid JSON)', () => {
    const p = started();
    expect(p.push(Buffer.from(JSON.stringify(media(2, 1, 0))), true)).toEqual({ kind: 'drop', code: 'ERR_INGEST_BINARY_FRAME' });
  });

  it.each([['{not json'], [''], ['{"event":"media",'], ['\u0000']])('bad JSON %j → ERR_INGEST_BAD_JSON', (text) => {
    const p = started();
    expect(p.push(text, false)).toEqual({ kind: 'drop', code: 'ERR_INGEST_BAD_JSON' });
  });

  it.each([['42'], ['"media"'], ['null'], ['[{"event":"media"}]'], ['{}'], ['{"event":5}'], ['{"event":null}']])(
    'not an object / no string event %s → ERR_INGEST_SCHEMA',
    (text) => {
      const p = started();
      const r = p.push(text, false);
      expect(r.kind).toBe('drop');
      expect(r.kind === 'drop' && r.code).toBe('ERR_INGEST_SCHEMA');
    },
  );

  it('unknown event → ERR_INGEST_UNKNOWN_EVENT with a sanitised name; the stream continues', () => {
    const p = started();
    expect(push(p, { event: 'clear', streamSid: SID })).toEqual({ kind: 'drop', code: 'ERR_INGEST_UNKNOWN_EVENT', detail: 'clear' });
    expect(push(p, { event: 'Media' })).toEqual({ kind: 'drop', code: 'ERR_INGEST_UNKNOWN_EVENT', detail: 'media' });
    const long = push(p, { event: 'x'.repeat(100) + '<script>' });
    expect(long).toEqual({ kind: 'drop', code: 'ERR_INGEST_UNKNOWN_EVENT', detail: 'x'.repeat(32) });
    expect(push(p, { event: 'weird-Event 1!' })).toEqual({ kind: 'drop', code: 'ERR_INGEST_UNKNOWN_EVENT', detail: 'weird_event___' });
    expect(push(p, { event: '' })).toEqual({ kind: 'drop', code: 'ERR_INGEST_UNKNOWN_EVENT', detail: '_' });
    expect(push(p, media(2, 1, 0)).kind).toBe('event');
    expect(p.stats.drops.ERR_INGEST_UNKNOWN_EVENT).toBe(5);
  });

  it('unknown events before start are dropped, not fatal', () => {
    const p = new TwilioStreamParser();
    expect(push(p, { event: 'ping' })).toMatchObject({ kind: 'drop', code: 'ERR_INGEST_UNKNOWN_EVENT' });
    expect(push(p, start()).kind).toBe('event');
  });

  it.each([
    ['missing sequenceNumber', media(2, 1, 0, {}, { sequenceNumber: undefined }), 'sequenceNumber'],
    ['non-digit sequenceNumber', media(2, 1, 0, {}, { sequenceNumber: '2a' }), 'sequenceNumber'],
    ['negative sequenceNumber', media(2, 1, 0, {}, { sequenceNumber: -2 }), 'sequenceNumber'],
    ['fractional sequenceNumber', media(2, 1, 0, {}, { sequenceNumber: 2.5 }), 'sequenceNumber'],
    ['missing streamSid', media(2, 1, 0, {}, { streamSid: undefined }), 'streamSid'],
    ['empty streamSid', media(2, 1, 0, {}, { streamSid: '' }), 'streamSid'],
    ['numeric streamSid', media(2, 1, 0, {}, { streamSid: 7 }), 'streamSid'],
    ['media not an object', media(2, 1, 0, {}, { media: 'x' }), 'media'],
    ['media an array', media(2, 1, 0, {}, { media: [] }), 'media'],
    ['track not a string', media(2, 1, 0, { track: 1 }), 'media.track'],
    ['missing chunk', media(2, 1, 0, { chunk: undefined }), 'media.chunk'],
    ['timestamp with a sign', media(2, 1, 0, { timestamp: '-20' }), 'media.timestamp'],
    ['timestamp decimal', media(2, 1, 0, { timestamp: '20.5' }), 'media.timestamp'],
    ['timestamp too long', media(2, 1, 0, { timestamp: '1234567890123456' }), 'media.timestamp'],
    ['timestamp empty', media(2, 1, 0, { timestamp: '' }), 'media.timestamp'],
    ['payload not a string', media(2, 1, 0, { payload: [1, 2] }), 'media.payload'],
  ])('media schema: %s → ERR_INGEST_SCHEMA', (_name, msg, detail) => {
    const p = started();
    expect(push(p, msg)).toEqual({ kind: 'drop', code: 'ERR_INGEST_SCHEMA', detail });
  });

  it('a malformed media frame before start is a schema drop, not fatal (schema comes first)', () => {
    const p = new TwilioStreamParser();
    expect(push(p, media(2, 1, 0, {}, { media: null }))).toMatchObject({ kind: 'drop', code: 'ERR_INGEST_SCHEMA' });
    expect(p.state).toBe('awaiting-connected');
  });

  it.each([
    ['no callSid', start({ start: { callSid: undefined } })],
    ['no streamSid anywhere', start({ streamSid: undefined, start: { streamSid: undefined } })],
    ['streamSids disagree', start({ start: { streamSid: 'MZother' } })],
    ['no mediaFormat', start({ start: { mediaFormat: undefined } })],
    ['sampleRate not a number', start({ start: { mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 'fast', channels: 1 } } })],
    ['unknown track in tracks', start({ start: { tracks: ['inbound', 'both_tracks'] } })],
    ['tracks not an array', start({ start: { tracks: 'inbound' } })],
    ['no sequenceNumber', start({ sequenceNumber: undefined })],
    ['start not an object', { event: 'start', sequenceNumber: '1', streamSid: SID, start: 'x' }],
  ])('start schema: %s → ERR_INGEST_SCHEMA, state unchanged', (_name, msg) => {
    const p = new TwilioStreamParser();
    const r = push(p, msg);
    expect(r).toMatchObject({ kind: 'drop', code: 'ERR_INGEST_SCHEMA' });
    expect(p.state).toBe('awaiting-connected');
  });

  it('the top-level streamSid alone (start.streamSid absent) is enough', () => {
    const p = new TwilioStreamParser();
    expect(event(push(p, start({ start: { streamSid: undefined } })))).toMatchObject({ streamSid: SID });
    const q = new TwilioStreamParser();
    expect(event(push(q, start({ streamSid: undefined })))).toMatchObject({ streamSid: SID });
  });

  it.each([
    ['dtmf without digit', { event: 'dtmf', sequenceNumber: '3', streamSid: SID, dtmf: { track: 'inbound_track' } }],
    ['dtmf without body', { event: 'dtmf', sequenceNumber: '3', streamSid: SID }],
    ['mark without name', { event: 'mark', sequenceNumber: '3', streamSid: SID, mark: {} }],
    ['stop without streamSid', { event: 'stop', sequenceNumber: '3' }],
    ['stop with bad sequenceNumber', { event: 'stop', sequenceNumber: 'x', streamSid: SID }],
  ])('%s → ERR_INGEST_SCHEMA', (_name, msg) => {
    const p = started();
    expect(push(p, msg)).toMatchObject({ kind: 'drop', code: 'ERR_INGEST_SCHEMA' });
    expect(p.state).toBe('streaming');
  });

  it('streamSid mismatch → ERR_INGEST_STREAM_SID_MISMATCH (media, dtmf, mark, stop)', () => {
    const p = started();
    const other = 'MZ99999999999999999999999999999999';
    expect(push(p, media(2, 1, 0, {}, { streamSid: other }))).toEqual({ kind: 'drop', code: 'ERR_INGEST_STREAM_SID_MISMATCH' });
    expect(push(p, { event: 'dtmf', sequenceNumber: '3', streamSid: other, dtmf: { digit: '1' } }).kind).toBe('drop');
    expect(push(p, { event: 'mark', sequenceNumber: '4', streamSid: other, mark: { name: 'm' } }).kind).toBe('drop');
    expect(push(p, { ...stop(5), streamSid: other })).toEqual({ kind: 'drop', code: 'ERR_INGEST_STREAM_SID_MISMATCH' });
    expect(p.state).toBe('streaming');
    expect(p.stats.drops.ERR_INGEST_STREAM_SID_MISMATCH).toBe(4);
  });

  it.each([
    ['characters outside the alphabet', '////-___'],
    ['base64url', 'ab-_'],
    ['whitespace', 'AAAA AAA='],
    ['newline', 'AAAA\nAAAA'],
    ['bad length', 'AAAAA'],
    ['unpadded', 'AAAAAA'],
    ['three pads', 'A==='],
    ['pad in the middle', 'AA==AAAA'],
    ['only pads', '===='],
    ['non-ASCII', 'AAA\u00e9'],
  ])('bad base64 (%s) → ERR_INGEST_BAD_BASE64', (_name, payload) => {
    const p = started();
    expect(push(p, media(2, 1, 0, { payload }))).toEqual({ kind: 'drop', code: 'ERR_INGEST_BAD_BASE64' });
  });

  it('empty payload → ERR_INGEST_EMPTY_PAYLOAD', () => {
    const p = started();
    expect(push(p, media(2, 1, 0, { payload: '' }))).toEqual({ kind: 'drop', code: 'ERR_INGEST_EMPTY_PAYLOAD' });
  });

  it('base64 is checked before the track (order), unknown track → ERR_INGEST_UNKNOWN_TRACK', () => {
    const p = started();
    expect(push(p, media(2, 1, 0, { track: 'both', payload: '!!' }))).toMatchObject({ code: 'ERR_INGEST_BAD_BASE64' });
    expect(push(p, media(3, 1, 0, { track: 'both', payload: '' }))).toMatchObject({ code: 'ERR_INGEST_EMPTY_PAYLOAD' });
    for (const track of ['both', 'inbound_track', 'Inbound', '']) {
      expect(push(p, media(4, 1, 0, { track }))).toEqual({ kind: 'drop', code: 'ERR_INGEST_UNKNOWN_TRACK' });
    }
  });

  it('a valid track not listed in start.tracks is accepted and counted (documented decision)', () => {
    const p = started(start({ start: { tracks: ['inbound'] } }));
    const r = event(push(p, media(2, 1, 0, { track: 'outbound' })));
    expect(r).toMatchObject({ type: 'media', track: 'outbound', listedTrack: false });
    expect(p.stats.unlistedTrackFrames).toBe(1);
  });

  it('a second connected → ERR_INGEST_UNEXPECTED_CONNECTED (before and after start)', () => {
    const p = new TwilioStreamParser();
    push(p, connected);
    expect(push(p, connected)).toEqual({ kind: 'drop', code: 'ERR_INGEST_UNEXPECTED_CONNECTED' });
    push(p, start());
    expect(push(p, connected)).toEqual({ kind: 'drop', code: 'ERR_INGEST_UNEXPECTED_CONNECTED' });
    expect(p.state).toBe('streaming');
  });

  it('frames after stop → ERR_INGEST_AFTER_STOP (media, dtmf, mark, stop, start, connected)', () => {
    const p = started();
    push(p, stop(2));
    expect(push(p, media(3, 1, 0))).toEqual({ kind: 'drop', code: 'ERR_INGEST_AFTER_STOP' });
    expect(push(p, { event: 'mark', sequenceNumber: '4', streamSid: SID, mark: { name: 'm' } })).toMatchObject({ code: 'ERR_INGEST_AFTER_STOP' });
    expect(push(p, { event: 'dtmf', sequenceNumber: '5', streamSid: SID, dtmf: { digit: '1' } })).toMatchObject({ code: 'ERR_INGEST_AFTER_STOP' });
    expect(push(p, stop(6))).toMatchObject({ code: 'ERR_INGEST_AFTER_STOP' });
    expect(push(p, start())).toMatchObject({ code: 'ERR_INGEST_AFTER_STOP' });
    expect(push(p, connected)).toMatchObject({ code: 'ERR_INGEST_AFTER_STOP' });
    expect(p.state).toBe('stopped');
    expect(p.stats.drops.ERR_INGEST_AFTER_STOP).toBe(6);
  });
});

describe('TwilioStreamParser: fatal results', () => {
  it.each([
    ['media', media(2, 1, 0)],
    ['dtmf', { event: 'dtmf', sequenceNumber: '2', streamSid: SID, dtmf: { digit: '1' } }],
    ['mark', { event: 'mark', sequenceNumber: '2', streamSid: SID, mark: { name: 'x' } }],
    ['stop', stop(2)],
  ])('%s before start → ERR_INGEST_MEDIA_BEFORE_START, close 4001', (_name, msg) => {
    for (const withConnected of [false, true]) {
      const p = new TwilioStreamParser();
      if (withConnected) push(p, connected);
      expect(push(p, msg)).toEqual({
        kind: 'fatal',
        code: 'ERR_INGEST_MEDIA_BEFORE_START',
        closeCode: 4001,
        reason: 'media before start',
      });
      expect(p.state).toBe('failed');
      expect(p.stats.fatal).toBe('ERR_INGEST_MEDIA_BEFORE_START');
    }
  });

  it('a second start → ERR_INGEST_DUPLICATE_START, close 4002', () => {
    const p = started();
    expect(push(p, start({ sequenceNumber: '2' }))).toEqual({
      kind: 'fatal',
      code: 'ERR_INGEST_DUPLICATE_START',
      closeCode: TwilioCloseCode.DUPLICATE_START,
      reason: 'duplicate start',
    });
  });

  it.each([
    ['L16', { encoding: 'audio/x-l16', sampleRate: 8000, channels: 1 }],
    ['16 kHz', { encoding: 'audio/x-mulaw', sampleRate: 16000, channels: 1 }],
    ['stereo', { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 2 }],
    ['empty encoding', { encoding: '', sampleRate: 8000, channels: 1 }],
  ])('unsupported mediaFormat (%s) → ERR_INGEST_UNSUPPORTED_FORMAT, close 4003', (_name, mediaFormat) => {
    const p = new TwilioStreamParser();
    expect(push(p, start({ start: { mediaFormat } }))).toEqual({
      kind: 'fatal',
      code: 'ERR_INGEST_UNSUPPORTED_FORMAT',
      closeCode: 4003,
      reason: 'unsupported media format',
    });
  });

  it('after a fatal result every push is dropped as ERR_INGEST_AFTER_FATAL', () => {
    const p = new TwilioStreamParser();
    push(p, media(2, 1, 0));
    expect(push(p, start())).toEqual({ kind: 'drop', code: 'ERR_INGEST_AFTER_FATAL' });
    expect(p.push('garbage', true)).toEqual({ kind: 'drop', code: 'ERR_INGEST_AFTER_FATAL' });
    expect(p.stats.drops.ERR_INGEST_AFTER_FATAL).toBe(2);
  });

  it('exports the close code table', () => {
    expect(TwilioCloseCode).toEqual({
      NORMAL: 1000,
      GOING_AWAY: 1001,
      POLICY_VIOLATION: 1008,
      MESSAGE_TOO_BIG: 1009,
      INTERNAL_ERROR: 1011,
      MEDIA_BEFORE_START: 4001,
      DUPLICATE_START: 4002,
      UNSUPPORTED_FORMAT: 4003,
      IDLE_TIMEOUT: 4004,
      CAPACITY: 4005,
      ASR_UNAVAILABLE: 4006,
    });
  });
});

describe('TwilioStreamParser: sequence and chunk monotonicity (counted, never dropped)', () => {
  it('counts gaps, missing messages and regressions but still accepts the frames', () => {
    const p = started();
    const results = [
      push(p, media(2, 1, 0)),
      push(p, media(5, 2, 20)), // gap: 3, 4 missing
      push(p, media(5, 3, 40)), // duplicate seq → regression
      push(p, media(4, 4, 60)), // regression
      push(p, media(6, 5, 80)),
      push(p, media(9, 6, 100)), // gap: 7, 8 missing
    ];
    expect(results.every((r) => r.kind === 'event')).toBe(true);
    const s = p.stats;
    expect(s.seqGaps).toBe(2);
    expect(s.seqMissing).toBe(4);
    expect(s.seqRegressions).toBe(2);
    expect(s.chunkRegressions).toBe(0);
  });

  it('counts chunk regressions per track (tracks have independent counters)', () => {
    const p = started();
    push(p, media(2, 1, 0));
    push(p, media(3, 1, 0, { track: 'outbound' })); // outbound chunk 1: not a regression
    push(p, media(4, 2, 20));
    push(p, media(5, 2, 20)); // inbound chunk 2 again
    push(p, media(6, 1, 40, { track: 'outbound' })); // outbound chunk 1 again
    expect(p.stats.chunkRegressions).toBe(2);
    expect(p.stats.seqGaps + p.stats.seqRegressions).toBe(0);
  });

  it('sequence numbers of frames dropped later for their payload still count as seen', () => {
    const p = started();
    push(p, media(2, 1, 0, { payload: '' }));
    push(p, media(3, 2, 20));
    expect(p.stats.seqGaps).toBe(0);
  });
});

describe('TwilioStreamParser: stats', () => {
  it('counts every push and every drop code; stats are a snapshot', () => {
    const p = new TwilioStreamParser();
    const snap = p.stats;
    p.push('x', true);
    p.push('{', false);
    expect(snap.messages).toBe(0);
    expect(p.stats.messages).toBe(2);
    expect(p.stats.drops.ERR_INGEST_BINARY_FRAME).toBe(1);
    expect(p.stats.drops.ERR_INGEST_BAD_JSON).toBe(1);
    expect(Object.keys(p.stats.drops).sort()).toEqual([...TWILIO_DROP_CODES].sort());
  });
});

describe('message helpers', () => {
  it('parseUintField', () => {
    expect(parseUintField('0')).toBe(0);
    expect(parseUintField('007')).toBe(7);
    expect(parseUintField('999999999999999')).toBe(999999999999999);
    expect(parseUintField(12)).toBe(12);
    for (const bad of ['', ' 1', '1 ', '+1', '1e3', '0x10', '1234567890123456', -1, 1.5, NaN, Infinity, null, undefined, {}, true]) {
      expect(parseUintField(bad)).toBe(-1);
    }
  });

  it('isStrictBase64 agrees with Buffer round trips for every length 0..64', () => {
    for (let n = 0; n <= 64; n++) {
      const s = Buffer.alloc(n, 0xab).toString('base64');
      expect(isStrictBase64(s)).toBe(true);
      expect(base64DecodedLength(s)).toBe(n);
      if (s.endsWith('=')) expect(isStrictBase64(s.replace(/=+$/, ''))).toBe(false);
    }
    // 160 bytes of μ-law = 216 base64 characters
    expect(Buffer.alloc(160).toString('base64')).toHaveLength(216);
  });

  it('normaliseCustomParameters bounds names, values, count and ignores __proto__', () => {
    const input: Record<string, unknown> = JSON.parse('{"__proto__":"x","ok":"1"}');
    const r = normaliseCustomParameters(input);
    expect(r.params).toEqual({ ok: '1' });
    expect(Object.getPrototypeOf(r.params)).toBe(Object.prototype);
    expect(r.dropped).toBe(1);
    const many = Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`k${i}`, 'v']));
    expect(normaliseCustomParameters(many)).toMatchObject({ dropped: 6 });
    expect(normaliseCustomParameters({ big: 'v'.repeat(5000), ['k'.repeat(200)]: 'v' }).dropped).toBe(2);
    expect(normaliseCustomParameters({ inf: Infinity }).dropped).toBe(1);
  });

  it('sanitizeEventName', () => {
    expect(sanitizeEventName('Clear')).toBe('clear');
    expect(sanitizeEventName('a.b-c')).toBe('a_b_c');
    expect(sanitizeEventName('ünï')).toBe('_n_');
    expect(sanitizeEventName('z'.repeat(40))).toHaveLength(32);
  });
});
