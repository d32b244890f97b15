import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { offeredProtocols, parseClientMessage, presentedToken, selectProtocol } from './supervisor-protocol.js';

describe('parseClientMessage', () => {
  const callId = randomUUID();

  it('accepts watch, unwatch and ping', () => {
    expect(parseClientMessage(JSON.stringify({ type: 'watch', callId }), false)).toEqual({ ok: true, message: { type: 'watch', callId } });
    expect(parseClientMessage(Buffer.from(JSON.stringify({ type: 'unwatch', callId })), false)).toEqual({ ok: true, message: { type: 'unwatch', callId } });
    expect(parseClientMessage('{"type":"ping","id":7}', false)).toEqual({ ok: true, message: { type: 'ping', id: 7 } });
    expect(parseClientMessage('{"type":"ping"}', false)).toEqual({ ok: true, message: { type: 'ping' } });
  });

  it('rejects binary frames, bad JSON, unknown types and invalid fields with distinct codes', () => {
    expect(parseClientMessage(Buffer.from('{}'), true)).toMatchObject({ ok: false, code: 'ERR_SUPERVISOR_BINARY' });
    expect(parseClientMessage('{"type":', false)).toMatchObject({ ok: false, code: 'ERR_SUPERVISOR_BAD_JSON' });
    expect(parseClientMessage('[1,2]', false)).toMatchObject({ ok: false, code: 'ERR_SUPERVISOR_UNKNOWN_TYPE' });
    expect(parseClientMessage('{"type":"subscribe"}', false)).toMatchObject({ ok: false, code: 'ERR_SUPERVISOR_UNKNOWN_TYPE' });
    expect(parseClientMessage('{"type":"watch","callId":"abc"}', false)).toMatchObject({ ok: false, code: 'ERR_SUPERVISOR_BAD_MESSAGE' });
    expect(parseClientMessage(JSON.stringify({ type: 'watch', callId, extra: 1 }), false)).toMatchObject({ ok: false, code: 'ERR_SUPERVISOR_BAD_MESSAGE' });
  });
});

describe('presentedToken', () => {
  it('prefers the Authorization header, then a bearer.* subprotocol, then ?token=', () => {
    const all = {
      url: '/supervisor?token=q',
      headers: { authorization: 'Bearer h', 'sec-websocket-protocol': 'callscribe.v1, bearer.p' },
    };
    expect(presentedToken(all, true)).toEqual({ token: 'h', source: 'header' });
    expect(presentedToken({ ...all, headers: { 'sec-websocket-protocol': 'callscribe.v1, bearer.p' } }, true)).toEqual({ token: 'p', source: 'protocol' });
    expect(presentedToken({ url: all.url, headers: {} }, true)).toEqual({ token: 'q', source: 'query' });
    expect(presentedToken({ url: all.url, headers: {} }, false)).toBeUndefined();
    expect(presentedToken({ url: '/supervisor', headers: { authorization: 'Basic abc' } }, true)).toBeUndefined();
    expect(presentedToken({ url: '/supervisor', headers: { 'sec-websocket-protocol': 'bearer.' } }, true)).toBeUndefined();
  });

  it('selects callscribe.v1 and never echoes a bearer protocol', () => {
    expect(offeredProtocols({ headers: { 'sec-websocket-protocol': ' a ,b,, c' } })).toEqual(['a', 'b', 'c']);
    expect(selectProtocol(new Set(['bearer.x', 'callscribe.v1']))).toBe('callscribe.v1');
    expect(selectProtocol(new Set(['bearer.x']))).toBe(false);
  });
});
