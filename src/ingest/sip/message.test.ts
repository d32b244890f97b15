import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SIP_LIMITS, SipError, createResponse, parseCSeq, parseNameAddr, parseSipMessage, parseUri, parseVia,
  serializeSipMessage, splitHeaderList, validateRequest, type SipRequest,
} from './message.js';
import { sipText } from './testing.js';

const BASE = [
  'INVITE sip:rec@192.0.2.10:5060 SIP/2.0',
  'Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport',
  'Max-Forwards: 70',
  'From: "Alice Smith" <sip:+15555550100@198.51.100.7>;tag=1928301774',
  'To: <sip:rec@192.0.2.10>',
  'Call-ID: a84b4c76e66710@pc33',
  'CSeq: 314159 INVITE',
  'Contact: <sip:src@198.51.100.7:5060>;+sip.src',
];

function req(lines: readonly string[] = BASE, body = '', opts: { contentLength?: boolean | number } = {}): SipRequest {
  const m = parseSipMessage(sipText(lines, body, opts));
  if (m.kind !== 'request') throw new Error('expected a request');
  return m;
}

function parseError(buf: Buffer, opts: Parameters<typeof parseSipMessage>[1] = {}): SipError {
  try {
    parseSipMessage(buf, opts);
  } catch (err) {
    if (err instanceof SipError) return err;
    throw err;
  }
  throw new Error('expected a SipError');
}

describe('parseSipMessage', () => {
  it('parses a request line, headers and body', () => {
    const r = req(BASE, 'v=0\r\n');
    expect(r.method).toBe('INVITE');
    expect(r.uri).toBe('sip:rec@192.0.2.10:5060');
    expect(r.headers.get('CALL-ID')).toBe('a84b4c76e66710@pc33');
    expect(r.body.toString()).toBe('v=0\r\n');
  });

  it('parses a status line', () => {
    const m = parseSipMessage(sipText(['SIP/2.0 180 Ringing', 'Via: SIP/2.0/UDP h;branch=z9hG4bKx', 'CSeq: 1 INVITE']));
    expect(m.kind).toBe('response');
    if (m.kind === 'response') {
      expect(m.status).toBe(180);
      expect(m.reason).toBe('Ringing');
    }
  });

  it('expands compact header forms', () => {
    const r = req([
      'OPTIONS sip:rec@192.0.2.10 SIP/2.0', 'v: SIP/2.0/TCP h:5060;branch=z9hG4bKa', 'f: <sip:a@h>;tag=1', 't: <sip:b@h>',
      'i: abc', 'CSeq: 1 OPTIONS', 'm: <sip:a@h>', 'k: timer', 's: hello', 'e: identity', 'c: application/sdp', 'x: 1800',
    ]);
    for (const [name, value] of [
      ['via', 'SIP/2.0/TCP h:5060;branch=z9hG4bKa'], ['from', '<sip:a@h>;tag=1'], ['to', '<sip:b@h>'], ['call-id', 'abc'],
      ['contact', '<sip:a@h>'], ['supported', 'timer'], ['subject', 'hello'], ['content-encoding', 'identity'],
      ['content-type', 'application/sdp'], ['session-expires', '1800'],
    ] as const) {
      expect(r.headers.get(name)).toBe(value);
    }
    expect(r.headers.get('l')).toBe('0');
  });

  it('splits comma lists outside quotes and angle brackets, and keeps order across lines', () => {
    const r = req([
      ...BASE.slice(0, 2),
      'Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKa, SIP/2.0/UDP p2.example.com;branch=z9hG4bKb',
      ...BASE.slice(2),
      'Supported: timer, siprec',
      'Record-Route: <sip:p1.example.com;lr>, "A, B" <sip:p2.example.com;lr>',
      'WWW-Authenticate: Digest realm="x", nonce="y"',
    ]);
    expect(r.headers.getAll('via')).toHaveLength(3);
    expect(r.headers.getAll('via')[2]).toBe('SIP/2.0/UDP p2.example.com;branch=z9hG4bKb');
    expect(r.headers.getAll('supported')).toEqual(['timer', 'siprec']);
    expect(r.headers.getAll('record-route')).toEqual(['<sip:p1.example.com;lr>', '"A, B" <sip:p2.example.com;lr>']);
    // not a list header: kept whole
    expect(r.headers.getAll('www-authenticate')).toEqual(['Digest realm="x", nonce="y"']);
  });

  it('unfolds continuation lines (LWS folding)', () => {
    const r = req([...BASE, 'Subject: I know you are there,', '     pick up the phone']);
    expect(r.headers.get('subject')).toBe('I know you are there, pick up the phone');
  });

  it('accepts bare LF line ends', () => {
    const text = `${BASE.join('\n')}\nContent-Length: 3\n\nabc`;
    const m = parseSipMessage(Buffer.from(text));
    expect(m.body.toString()).toBe('abc');
  });

  it('truncates a UDP body to Content-Length and takes the rest when it is absent', () => {
    expect(req(BASE, 'abcdef', { contentLength: 3 }).body.toString()).toBe('abc');
    expect(req(BASE, 'abcdef', { contentLength: false }).body.toString()).toBe('abcdef');
  });

  it('rejects a body shorter than Content-Length with ERR_SIP_BODY_LENGTH and keeps the request for a 400', () => {
    const e = parseError(sipText(BASE, 'abc', { contentLength: 10 }));
    expect(e.code).toBe('ERR_SIP_BODY_LENGTH');
    expect(e.status).toBe(400);
    expect(e.partial?.method).toBe('INVITE');
  });

  it('requires Content-Length on stream transports', () => {
    const e = parseError(sipText(BASE, '', { contentLength: false }), { requireContentLength: true });
    expect(e.code).toBe('ERR_SIP_MISSING_HEADER');
    expect(e.header).toBe('content-length');
  });

  it('rejects a non-numeric or conflicting Content-Length', () => {
    expect(parseError(sipText([...BASE, 'Content-Length: -1'], '', { contentLength: false })).code).toBe('ERR_SIP_BAD_HEADER');
    expect(parseError(sipText([...BASE, 'Content-Length: 0', 'l: 2'], 'ab', { contentLength: false })).code).toBe('ERR_SIP_BAD_HEADER');
  });

  it('enforces size limits with ERR_SIP_TOO_LARGE', () => {
    const limits = { ...DEFAULT_SIP_LIMITS, maxMessageBytes: 300 };
    const big = sipText(BASE, 'x'.repeat(400));
    expect(parseError(big, { limits })).toMatchObject({ code: 'ERR_SIP_TOO_LARGE', status: 513 });
    const bodyLimit = { ...DEFAULT_SIP_LIMITS, maxBodyBytes: 10 };
    expect(parseError(sipText(BASE, 'x'.repeat(11)), { limits: bodyLimit })).toMatchObject({ code: 'ERR_SIP_TOO_LARGE', status: 413 });
    const many = [...BASE, ...Array.from({ length: 200 }, (_, i) => `X-H${i}: v`)];
    expect(parseError(sipText(many)).code).toBe('ERR_SIP_TOO_LARGE');
  });

  it.each([
    ['no colon', [...BASE, 'Bogus header line']],
    ['bad request line', ['INVITE  sip:x SIP/2.0', ...BASE.slice(1)]],
    ['continuation first', [BASE[0]!, ' folded', ...BASE.slice(1)]],
    ['control character', [...BASE, 'X-Evil: a\u0001b']],
    ['bad header name', [...BASE, 'Bad Name: x']],
  ])('rejects malformed input: %s', (_name, lines) => {
    expect(parseError(sipText(lines)).code).toBe('ERR_SIP_MALFORMED');
  });

  it('rejects a missing end of headers and an unsupported version', () => {
    expect(parseError(Buffer.from(`${BASE.join('\r\n')}\r\n`)).code).toBe('ERR_SIP_MALFORMED');
    const e = parseError(sipText(['INVITE sip:x@h SIP/3.0', ...BASE.slice(1)]));
    expect(e).toMatchObject({ code: 'ERR_SIP_VERSION', status: 505 });
  });

  it('round-trips through the serializer with canonical names and a computed Content-Length', () => {
    const r = req(BASE, 'hello');
    const again = parseSipMessage(serializeSipMessage(r));
    expect(again.headers.entries()).toEqual(r.headers.entries().filter((f) => f.name !== 'content-length').concat([{ name: 'content-length', value: '5' }]));
    expect(serializeSipMessage(r).toString()).toContain('\r\nCall-ID: a84b4c76e66710@pc33\r\nCSeq: 314159 INVITE\r\n');
  });
});

describe('header grammar', () => {
  it('parses Via with IPv6, rport and received', () => {
    const v = parseVia('SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKx;rport;received=192.0.2.1');
    expect(v).toMatchObject({ transport: 'UDP', host: '2001:db8::1', port: 5070 });
    expect(v?.params.get('rport')).toBeNull();
    expect(v?.params.get('received')).toBe('192.0.2.1');
    expect(parseVia('SIP/2.0 UDP h')).toBeNull();
  });

  it('parses name-addr and addr-spec forms', () => {
    const a = parseNameAddr('"Smith, \\"Al\\"" <sip:al@h;transport=tcp>;tag=abc');
    expect(a).toMatchObject({ displayName: 'Smith, "Al"', uri: 'sip:al@h;transport=tcp' });
    expect(a?.params.get('tag')).toBe('abc');
    const b = parseNameAddr('sip:bob@h;tag=9');
    expect(b).toMatchObject({ displayName: null, uri: 'sip:bob@h' });
    expect(b?.params.get('tag')).toBe('9');
    expect(parseNameAddr('<sip:x@h')).toBeNull();
  });

  it('parses URIs including user parameters and tel:', () => {
    expect(parseUri('sip:+1555;phone-context=x@host:5061;user=phone')).toMatchObject({ scheme: 'sip', user: '+1555;phone-context=x', host: 'host', port: 5061 });
    expect(parseUri('tel:+15555550100;ext=1')).toMatchObject({ scheme: 'tel', user: '+15555550100' });
    expect(parseUri('http://x')).toBeNull();
  });

  it('parses CSeq strictly', () => {
    expect(parseCSeq('10 INVITE')).toEqual({ seq: 10, method: 'INVITE' });
    expect(parseCSeq('x INVITE')).toBeNull();
    expect(parseCSeq(String(2 ** 31))).toBeNull();
  });

  it('splitHeaderList ignores commas in quotes', () => {
    expect(splitHeaderList('a, "b,c" <x>, <y,z>')).toEqual(['a', '"b,c" <x>', '<y,z>']);
  });
});

describe('validateRequest', () => {
  it.each(['via', 'from', 'to', 'call-id', 'cseq'])('reports a missing %s', (header) => {
    const lines = BASE.filter((l) => l.toLowerCase().split(':')[0] !== header);
    const v = validateRequest(req(lines));
    expect(v).toBeInstanceOf(SipError);
    if (v instanceof SipError) {
      expect(v.code).toBe('ERR_SIP_MISSING_HEADER');
      expect(v.header).toBe(header);
      expect(v.status).toBe(400);
    }
  });

  it('tolerates a missing Max-Forwards but rejects a bad one and a CSeq method mismatch', () => {
    const ok = validateRequest(req(BASE.filter((l) => !l.startsWith('Max-Forwards'))));
    expect(ok).not.toBeInstanceOf(SipError);
    expect(validateRequest(req([...BASE.filter((l) => !l.startsWith('Max-Forwards')), 'Max-Forwards: abc']))).toMatchObject({ code: 'ERR_SIP_BAD_HEADER', header: 'max-forwards' });
    expect(validateRequest(req([...BASE.filter((l) => !l.startsWith('CSeq')), 'CSeq: 1 BYE']))).toMatchObject({ code: 'ERR_SIP_BAD_HEADER', header: 'cseq' });
  });
});

describe('createResponse', () => {
  it('copies Via (all), From, To (+tag), Call-ID, CSeq, and Record-Route on 2xx to INVITE', () => {
    const r = req([...BASE, 'Via: SIP/2.0/UDP second;branch=z9hG4bK2', 'Record-Route: <sip:p1;lr>', 'Timestamp: 54']);
    const ok = createResponse(r, 200, { toTag: 'ourtag' });
    expect(ok.headers.getAll('via')).toEqual(r.headers.getAll('via'));
    expect(ok.headers.get('to')).toBe('<sip:rec@192.0.2.10>;tag=ourtag');
    expect(ok.headers.get('from')).toBe(r.headers.get('from'));
    expect(ok.headers.get('call-id')).toBe('a84b4c76e66710@pc33');
    expect(ok.headers.get('cseq')).toBe('314159 INVITE');
    expect(ok.headers.getAll('record-route')).toEqual(['<sip:p1;lr>']);
    expect(ok.reason).toBe('OK');
    const trying = createResponse(r, 100, { toTag: 'ourtag' });
    expect(trying.headers.get('to')).toBe('<sip:rec@192.0.2.10>');
    expect(trying.headers.get('timestamp')).toBe('54');
    expect(createResponse(r, 486).headers.has('record-route')).toBe(false);
  });

  it('keeps an existing To tag', () => {
    const r = req([...BASE.filter((l) => !l.startsWith('To:')), 'To: <sip:rec@h>;tag=existing']);
    expect(createResponse(r, 200, { toTag: 'new' }).headers.get('to')).toBe('<sip:rec@h>;tag=existing');
  });
});
