import { describe, expect, it } from 'vitest';
import { DEFAULT_SIP_LIMITS } from './message.js';
import { SipStreamFramer } from './framing.js';
import { sipText } from './testing.js';

const MSG = sipText(['OPTIONS sip:a@h SIP/2.0', 'Via: SIP/2.0/TCP h;branch=z9hG4bK1', 'CSeq: 1 OPTIONS'], 'body!');

describe('SipStreamFramer', () => {
  it('frames back-to-back messages and messages split at every byte', () => {
    const f = new SipStreamFramer();
    const out = f.push(Buffer.concat([MSG, MSG]));
    expect(out.map((o) => o.kind)).toEqual(['message', 'message']);
    expect(out[0]!.kind === 'message' && out[0]!.data.equals(MSG)).toBe(true);

    const g = new SipStreamFramer();
    const all = [];
    for (const byte of Buffer.concat([MSG, MSG])) all.push(...g.push(Buffer.from([byte])));
    expect(all.filter((o) => o.kind === 'message')).toHaveLength(2);
    expect(g.buffered).toBe(0);
  });

  it('ignores CRLF before a start line and reports CRLFCRLF pings', () => {
    const f = new SipStreamFramer();
    expect(f.push(Buffer.from('\r\n\r\n')).map((o) => o.kind)).toEqual(['keepalive']);
    expect(f.push(Buffer.concat([Buffer.from('\r\n'), MSG])).map((o) => o.kind)).toEqual(['message']);
    // a ping split over two reads
    expect(f.push(Buffer.from('\r\n'))).toEqual([]);
    expect(f.push(Buffer.from('\r\n')).map((o) => o.kind)).toEqual(['keepalive']);
  });

  it('fails on a missing Content-Length and hands back the header section', () => {
    const f = new SipStreamFramer();
    const out = f.push(sipText(['OPTIONS sip:a@h SIP/2.0', 'Via: SIP/2.0/TCP h;branch=z9hG4bK1'], '', { contentLength: false }));
    expect(out).toHaveLength(1);
    const e = out[0]!;
    expect(e.kind).toBe('error');
    if (e.kind === 'error') {
      expect(e.error.code).toBe('ERR_SIP_MISSING_HEADER');
      expect(e.headerSection?.toString()).toContain('OPTIONS sip:a@h');
    }
    // the connection is dead afterwards
    expect(f.push(MSG)).toEqual([]);
  });

  it('fails on conflicting or non-numeric Content-Length', () => {
    const f = new SipStreamFramer();
    const out = f.push(sipText(['OPTIONS sip:a@h SIP/2.0', 'Content-Length: 1', 'l: 2'], '', { contentLength: false }));
    expect(out[0]).toMatchObject({ kind: 'error', error: { code: 'ERR_SIP_BAD_HEADER' } });
  });

  it('bounds the header section and the body', () => {
    const limits = { ...DEFAULT_SIP_LIMITS, maxHeaderBytes: 64, maxBodyBytes: 4 };
    const noEnd = new SipStreamFramer(limits).push(Buffer.from(`OPTIONS sip:a@h SIP/2.0\r\nX: ${'a'.repeat(100)}`));
    expect(noEnd[0]).toMatchObject({ kind: 'error', error: { code: 'ERR_SIP_TOO_LARGE' }, headerSection: null });
    const bigBody = new SipStreamFramer(limits).push(sipText(['OPTIONS sip:a@h SIP/2.0'], 'body!'));
    expect(bigBody[0]).toMatchObject({ kind: 'error', error: { code: 'ERR_SIP_TOO_LARGE', status: 413 } });
  });
});
