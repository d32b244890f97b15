import { describe, expect, it } from 'vitest';
import { createDigestAuth, digestResponse, parseDigestCredentials } from './digest.js';

const SECRET = 'a-test-secret-of-32-characters!!';

function setup() {
  let now = 1_700_000_000_000;
  const auth = createDigestAuth({
    realm: 'callscribe', secret: SECRET, nonceTtlMs: 60_000, now: () => now,
    lookupPassword: (u) => (u === 'sbc1' ? 'pw-sbc1' : undefined),
  });
  return { auth, advance: (ms: number) => { now += ms; } };
}

function nonceOf(challenge: string): string {
  const m = /nonce="([^"]+)"/.exec(challenge);
  if (!m) throw new Error('no nonce');
  return m[1]!;
}

function authorization(p: { username: string; password: string; nonce: string; uri?: string; method?: string; realm?: string; qop?: string }): string {
  const uri = p.uri ?? 'sip:rec@192.0.2.10';
  const response = digestResponse({ username: p.username, realm: p.realm ?? 'callscribe', password: p.password, method: p.method ?? 'INVITE', uri, nonce: p.nonce, nc: '00000001', cnonce: '0a4f113b', qop: 'auth' });
  return `Digest username="${p.username}", realm="${p.realm ?? 'callscribe'}", nonce="${p.nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=${p.qop ?? 'auth'}, nc=00000001, cnonce="0a4f113b"`;
}

describe('digest', () => {
  it('matches the RFC 2617 §3.5 worked example', () => {
    expect(digestResponse({
      username: 'Mufasa', realm: 'testrealm@host.com', password: 'Circle Of Life', method: 'GET', uri: '/dir/index.html',
      nonce: 'dcd98b7102dd2f0e8b11d0f600bfb0c093', nc: '00000001', cnonce: '0a4f113b', qop: 'auth',
    })).toBe('6629fae49393a05397450978507c4ef1');
  });

  it('challenges with realm, nonce, MD5 and qop=auth', () => {
    const { auth } = setup();
    expect(auth.challenge()).toMatch(/^Digest realm="callscribe", nonce="[0-9a-f]+\.[A-Za-z0-9_-]{43}", algorithm=MD5, qop="auth"$/);
    expect(auth.challenge(true)).toMatch(/, stale=true$/);
  });

  it('accepts correct credentials and rejects wrong ones', () => {
    const { auth } = setup();
    const nonce = nonceOf(auth.challenge());
    expect(auth.verify(authorization({ username: 'sbc1', password: 'pw-sbc1', nonce }), 'INVITE', 'sip:rec@192.0.2.10')).toEqual({ ok: true, username: 'sbc1' });
    expect(auth.verify(authorization({ username: 'sbc1', password: 'wrong', nonce }), 'INVITE', 'sip:rec@192.0.2.10')).toEqual({ ok: false, reason: 'bad-response' });
    expect(auth.verify(authorization({ username: 'nobody', password: 'x', nonce }), 'INVITE', 'sip:rec@192.0.2.10')).toEqual({ ok: false, reason: 'unknown-user' });
    // the response is bound to the method and the Request-URI
    expect(auth.verify(authorization({ username: 'sbc1', password: 'pw-sbc1', nonce }), 'BYE', 'sip:rec@192.0.2.10')).toEqual({ ok: false, reason: 'bad-response' });
    expect(auth.verify(authorization({ username: 'sbc1', password: 'pw-sbc1', nonce }), 'INVITE', 'sip:other@192.0.2.10')).toEqual({ ok: false, reason: 'bad-response' });
  });

  it('refuses forged and expired nonces (expired but authentic → stale)', () => {
    const { auth, advance } = setup();
    const nonce = nonceOf(auth.challenge());
    const forged = `${nonce.split('.')[0]}.${'A'.repeat(43)}`;
    expect(auth.verify(authorization({ username: 'sbc1', password: 'pw-sbc1', nonce: forged }), 'INVITE', 'sip:rec@192.0.2.10')).toEqual({ ok: false, reason: 'bad-nonce' });
    advance(60_001);
    expect(auth.verify(authorization({ username: 'sbc1', password: 'pw-sbc1', nonce }), 'INVITE', 'sip:rec@192.0.2.10')).toEqual({ ok: false, reason: 'stale' });
    // a nonce from another server (other secret) is not ours
    const other = createDigestAuth({ realm: 'callscribe', secret: 'another-secret-another-secret!!', now: () => 0, lookupPassword: () => 'pw-sbc1' });
    expect(other.verify(authorization({ username: 'sbc1', password: 'pw-sbc1', nonce }), 'INVITE', 'sip:rec@192.0.2.10')).toEqual({ ok: false, reason: 'bad-nonce' });
  });

  it('reports missing and malformed credentials', () => {
    const { auth } = setup();
    const nonce = nonceOf(auth.challenge());
    expect(auth.verify(undefined, 'INVITE', 'sip:x')).toEqual({ ok: false, reason: 'missing' });
    expect(auth.verify('Basic abc', 'INVITE', 'sip:x')).toEqual({ ok: false, reason: 'malformed' });
    expect(auth.verify(authorization({ username: 'sbc1', password: 'pw-sbc1', nonce, qop: 'auth-int' }), 'INVITE', 'sip:rec@192.0.2.10')).toEqual({ ok: false, reason: 'malformed' });
  });

  it('parses credentials with quoted commas and escapes', () => {
    const c = parseDigestCredentials('Digest username="a\\"b", realm="r,1", nc=00000001');
    expect(c?.get('username')).toBe('a"b');
    expect(c?.get('realm')).toBe('r,1');
    expect(parseDigestCredentials('Digest username="a" garbage')).toBeNull();
  });

  it('refuses a short secret', () => {
    expect(() => createDigestAuth({ realm: 'r', secret: 'short', now: () => 0, lookupPassword: () => undefined })).toThrow();
  });
});
