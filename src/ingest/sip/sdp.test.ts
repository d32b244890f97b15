import { describe, expect, it } from 'vitest';
import { SdpError, answerDirection, buildAnswer, chooseG711, hasAcceptableAudio, nextSessionVersion, parseSdp, telephoneEventPt } from './sdp.js';

const crlf = (lines: string[]): string => `${lines.join('\r\n')}\r\n`;

const OFFER = crlf([
  'v=0',
  'o=- 20518 0 IN IP4 198.51.100.1',
  's=-',
  'c=IN IP4 198.51.100.1',
  't=0 0',
  'a=sendonly',
  'm=audio 49170 RTP/AVP 18 8 0 101',
  'a=rtpmap:18 G729/8000',
  'a=rtpmap:101 telephone-event/8000',
  'a=fmtp:101 0-15',
  'a=ptime:30',
  'a=label:caller',
  'm=video 51372 RTP/AVP 31',
  'a=rtpmap:31 H261/90000',
  'm=audio 49180 RTP/AVP 9',
  'c=IN IP6 2001:db8::5',
  'a=rtpmap:9 G722/8000',
  'a=inactive',
]);

describe('parseSdp', () => {
  it('parses m-lines with formats, rtpmap (static PTs implied), fmtp, ptime, label and connection inheritance', () => {
    const sdp = parseSdp(OFFER);
    expect(sdp.origin).toMatchObject({ username: '-', sessionId: '20518', sessionVersion: '0', address: '198.51.100.1' });
    expect(sdp.media).toHaveLength(3);
    const [a, v, b] = sdp.media;
    expect(a).toMatchObject({ index: 0, media: 'audio', port: 49170, proto: 'RTP/AVP', formats: ['18', '8', '0', '101'], ptimeMs: 30, label: 'caller', direction: 'sendonly' });
    expect(a!.connection).toEqual({ addrType: 'IP4', address: '198.51.100.1' });
    expect(a!.fmtp.get(101)).toBe('0-15');
    expect(v).toMatchObject({ media: 'video', direction: 'sendonly' });
    expect(b).toMatchObject({ direction: 'inactive', label: null });
    expect(b!.connection).toEqual({ addrType: 'IP6', address: '2001:db8::5' });
  });

  it('accepts LF-only SDP and maxptime', () => {
    const sdp = parseSdp('v=0\no=x 1 1 IN IP4 192.0.2.1\ns=\nc=IN IP4 192.0.2.1\nm=audio 1000 RTP/AVP 0\na=maxptime:20\n');
    expect(sdp.media[0]).toMatchObject({ maxptimeMs: 20, ptimeMs: null, direction: 'sendrecv' });
  });

  it.each([
    ['not starting with v=0', 'o=x 1 1 IN IP4 h\r\n'],
    ['bad line', 'v=0\r\nhello\r\n'],
    ['missing o=', 'v=0\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\n'],
    ['m-line without c=', 'v=0\r\no=x 1 1 IN IP4 h\r\ns=-\r\nm=audio 1000 RTP/AVP 0\r\n'],
    ['bad port', 'v=0\r\no=x 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 70000 RTP/AVP 0\r\n'],
    ['bad c=', 'v=0\r\no=x 1 1 IN IP4 h\r\ns=-\r\nc=IN IPX h\r\n'],
    ['bad rtpmap', 'v=0\r\no=x 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:zero PCMU\r\n'],
  ])('rejects malformed SDP: %s', (_name, text) => {
    expect(() => parseSdp(text)).toThrow(SdpError);
  });

  it('bounds size and m-line count', () => {
    expect(() => parseSdp(OFFER, { maxBytes: 50, maxMediaLines: 16 })).toThrow('SDP too large');
    expect(() => parseSdp(OFFER, { maxBytes: 16_384, maxMediaLines: 2 })).toThrow('too many m= lines');
  });
});

describe('codec choice', () => {
  it('picks the first G.711 format in offer order and the telephone-event PT', () => {
    const sdp = parseSdp(OFFER);
    expect(chooseG711(sdp.media[0]!)).toEqual({ name: 'PCMA', payloadType: 8 });
    expect(telephoneEventPt(sdp.media[0]!)).toBe(101);
    expect(chooseG711(sdp.media[1]!)).toBeNull(); // video
    expect(chooseG711(sdp.media[2]!)).toBeNull(); // G.722 only
    expect(hasAcceptableAudio(sdp)).toBe(true);
  });

  it('maps a dynamic PT bound to PCMU and refuses SRTP and wrong clock rates', () => {
    const dyn = parseSdp(crlf(['v=0', 'o=- 1 1 IN IP4 h', 's=-', 'c=IN IP4 192.0.2.1', 'm=audio 1 RTP/AVP 96', 'a=rtpmap:96 pcmu/8000']));
    expect(chooseG711(dyn.media[0]!)).toEqual({ name: 'PCMU', payloadType: 96 });
    const srtp = parseSdp(crlf(['v=0', 'o=- 1 1 IN IP4 h', 's=-', 'c=IN IP4 192.0.2.1', 'm=audio 1 RTP/SAVP 0']));
    expect(chooseG711(srtp.media[0]!)).toBeNull();
    const wide = parseSdp(crlf(['v=0', 'o=- 1 1 IN IP4 h', 's=-', 'c=IN IP4 192.0.2.1', 'm=audio 1 RTP/AVP 0', 'a=rtpmap:0 PCMU/16000']));
    expect(hasAcceptableAudio(wide)).toBe(false);
  });
});

describe('buildAnswer', () => {
  it('answers every m-line in order; accepted audio gets one G.711 codec + telephone-event, recvonly', () => {
    const offer = parseSdp(OFFER);
    const { sdp, media } = buildAnswer(offer, { address: '192.0.2.99', ports: new Map([[0, 40000], [1, 40002], [2, 40004]]), sessionId: '77', sessionVersion: '1' });
    expect(media.map((m) => m.port)).toEqual([40000, 0, 0]);
    expect(sdp).toBe(crlf([
      'v=0',
      'o=callscribe 77 1 IN IP4 192.0.2.99',
      's=callscribe',
      'c=IN IP4 192.0.2.99',
      't=0 0',
      'm=audio 40000 RTP/AVP 8 101',
      'a=rtpmap:8 PCMA/8000',
      'a=rtpmap:101 telephone-event/8000',
      'a=fmtp:101 0-15',
      'a=ptime:30',
      'a=recvonly',
      'a=label:caller',
      'm=video 0 RTP/AVP 31',
      'm=audio 0 RTP/AVP 9',
    ]));
    // the answer itself parses and keeps the m-line count
    expect(parseSdp(sdp).media).toHaveLength(offer.media.length);
  });

  it('maps directions: sendonly/sendrecv → recvonly, recvonly/inactive → inactive', () => {
    expect(answerDirection('sendonly')).toBe('recvonly');
    expect(answerDirection('sendrecv')).toBe('recvonly');
    expect(answerDirection('recvonly')).toBe('inactive');
    expect(answerDirection('inactive')).toBe('inactive');
    const held = parseSdp(crlf(['v=0', 'o=- 1 2 IN IP4 h', 's=-', 'c=IN IP4 192.0.2.1', 'm=audio 1 RTP/AVP 0', 'a=inactive']));
    expect(buildAnswer(held, { address: '192.0.2.9', ports: new Map([[0, 4000]]), sessionId: '1', sessionVersion: '2' }).sdp).toContain('a=inactive');
  });

  it('rejects a line given port 0, uses IP6 for an IPv6 address, and refuses a non-IP address', () => {
    const offer = parseSdp(OFFER);
    const a = buildAnswer(offer, { address: '2001:db8::9', ports: new Map([[0, 0]]), sessionId: '1', sessionVersion: '1' });
    expect(a.sdp).toContain('c=IN IP6 2001:db8::9');
    expect(a.sdp).toContain('m=audio 0 RTP/AVP 18 8 0 101');
    expect(a.media.every((m) => m.port === 0)).toBe(true);
    expect(() => buildAnswer(offer, { address: 'host.example', ports: new Map(), sessionId: '1', sessionVersion: '1' })).toThrow(SdpError);
  });

  it('increments session versions beyond 2^53', () => {
    expect(nextSessionVersion('9007199254740993')).toBe('9007199254740994');
  });
});
