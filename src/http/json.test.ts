import { Readable } from 'node:stream';
import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { HttpError, bearerToken, hasBearer, parseBody, readJsonBody, requireBearer, tokensEqual } from './json.js';
import { matchPrefixRoute } from './server.js';

function request(body: string | Buffer | null, headers: Record<string, string> = {}): http.IncomingMessage {
  const stream = Readable.from(body === null ? [] : [Buffer.from(body)]);
  return Object.assign(stream, { headers }) as unknown as http.IncomingMessage;
}

async function failure(p: Promise<unknown>): Promise<HttpError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof HttpError)) throw new Error('expected an HttpError');
  return err;
}

describe('readJsonBody', () => {
  const json = { 'content-type': 'application/json; charset=utf-8' };

  it('parses a JSON body; an empty body is {}', async () => {
    const body = '{"by":"sup-1"}';
    expect(await readJsonBody(request(body, { ...json, 'content-length': String(body.length) }))).toEqual({ by: 'sup-1' });
    expect(await readJsonBody(request(null))).toEqual({});
  });

  it('refuses oversized bodies (declared or streamed), other media types, bad JSON and bad UTF-8', async () => {
    expect((await failure(readJsonBody(request('{}', { ...json, 'content-length': '99999' }), { maxBytes: 100 }))).code).toBe('ERR_HTTP_BODY_TOO_LARGE');
    const big = `{"a":"${'x'.repeat(200)}"}`;
    const streamed = await failure(readJsonBody(request(big, { ...json, 'transfer-encoding': 'chunked' }), { maxBytes: 100 }));
    expect([streamed.status, streamed.code]).toEqual([413, 'ERR_HTTP_BODY_TOO_LARGE']);
    expect((await failure(readJsonBody(request('a=1', { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '3' })))).status).toBe(415);
    expect((await failure(readJsonBody(request('{"a":', { ...json, 'content-length': '5' })))).code).toBe('ERR_HTTP_BAD_JSON');
    const invalidUtf8 = Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]);
    expect((await failure(readJsonBody(request(invalidUtf8, { ...json, 'content-length': '5' })))).code).toBe('ERR_HTTP_BAD_JSON');
  });
});

describe('parseBody', () => {
  it('returns the data or a 400 with issue paths (no values)', () => {
    const schema = z.object({ by: z.string().min(1), n: z.number() });
    expect(parseBody(schema, { by: 'x', n: 1 })).toEqual({ by: 'x', n: 1 });
    let err: unknown;
    try {
      parseBody(schema, { by: '', n: 'secret-value' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HttpError);
    const e = err as HttpError;
    expect([e.status, e.code]).toEqual([400, 'ERR_HTTP_VALIDATION']);
    expect(e.issues?.map((i) => i.path)).toEqual(['by', 'n']);
    expect(JSON.stringify(e.issues)).not.toContain('secret-value');
  });
});

describe('bearer tokens', () => {
  it('compares tokens exactly (any length) and never accepts an empty expected token', () => {
    expect(tokensEqual('s3cret', 's3cret')).toBe(true);
    expect(tokensEqual('s3cret', 's3cre')).toBe(false);
    expect(tokensEqual('s3cret', 's3cret ')).toBe(false);
    expect(tokensEqual('', '')).toBe(false);
  });

  it('reads Authorization: Bearer and throws 401 with WWW-Authenticate otherwise', () => {
    expect(bearerToken({ headers: { authorization: 'bearer abc' } })).toBe('abc');
    expect(bearerToken({ headers: { authorization: 'Basic abc' } })).toBeUndefined();
    expect(hasBearer({ headers: { authorization: 'Bearer abc' } }, 'abc')).toBe(true);
    expect(() => requireBearer({ headers: { authorization: 'Bearer abc' } }, 'abc')).not.toThrow();
    let err: unknown;
    try {
      requireBearer({ headers: {} }, 'abc');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ status: 401, code: 'ERR_HTTP_UNAUTHORIZED', headers: { 'www-authenticate': 'Bearer' } });
  });
});

describe('matchPrefixRoute', () => {
  it('matches the prefix itself and paths below it, longest prefix first', () => {
    const routes = { '/v1/alerts': 'alerts', '/v1': 'v1', '/v1/alerts/special/': 'special' };
    expect(matchPrefixRoute(routes, '/v1/alerts')).toBe('alerts');
    expect(matchPrefixRoute(routes, '/v1/alerts/a1/resolve')).toBe('alerts');
    expect(matchPrefixRoute(routes, '/v1/alerts/special/x')).toBe('special');
    expect(matchPrefixRoute(routes, '/v1/alertsx')).toBe('v1');
    expect(matchPrefixRoute(routes, '/v2')).toBeUndefined();
    expect(matchPrefixRoute(undefined, '/v1')).toBeUndefined();
  });
});
