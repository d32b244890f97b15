import { describe, expect, it } from 'vitest';
import { parseSipMessage, type SipRequest } from './message.js';
import { parseSdp } from './sdp.js';
import { DialogStore, acceptsCSeq, buildBye, negotiateSessionTimer, requestDestination, sessionExpiryDelayMs, type Dialog } from './dialogs.js';
import { sipText } from './testing.js';

function inviteWith(extra: string[]): SipRequest {
  const m = parseSipMessage(sipText(['INVITE sip:rec@h SIP/2.0', 'Via: SIP/2.0/UDP h;branch=z9hG4bK1', 'CSeq: 1 INVITE', ...extra]));
  if (m.kind !== 'request') throw new Error('request expected');
  return m;
}

function dialog(over: Partial<Dialog> = {}): Dialog {
  return {
    id: 'd1', callId: 'call-1', localTag: 'lt', remoteTag: 'rt',
    localParty: '<sip:rec@192.0.2.10>;tag=lt', remoteParty: '"Src" <sip:src@198.51.100.7>;tag=rt',
    remoteTarget: 'sip:src@198.51.100.7:5070', routeSet: [], remoteCSeq: 5, localCSeq: 0,
    transport: 'udp', source: { transport: 'udp', address: '198.51.100.7', port: 5062 },
    awaitingAck: null, busy: false,
    local: { sessionId: '1', version: '1', body: '', address: '192.0.2.10', ports: new Map() },
    remoteSdp: parseSdp('v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\n'),
    sessionTimer: null, siprec: false, siprecMeta: null, ended: false,
    ...over,
  };
}

describe('negotiateSessionTimer (RFC 4028 §9)', () => {
  it('no Session-Expires → no timer', () => {
    expect(negotiateSessionTimer(inviteWith([]), 90)).toEqual({ kind: 'none' });
  });

  it('UAC supports timer → refresher=uac + Require: timer', () => {
    const d = negotiateSessionTimer(inviteWith(['Supported: timer', 'Session-Expires: 1800']), 90);
    expect(d).toEqual({ kind: 'active', intervalS: 1800, headers: [['Session-Expires', '1800;refresher=uac'], ['Require', 'timer']] });
    expect(negotiateSessionTimer(inviteWith(['k: timer', 'x: 600;refresher=uac']), 90)).toMatchObject({ kind: 'active', intervalS: 600 });
  });

  it('below our Min-SE → 422 decision', () => {
    expect(negotiateSessionTimer(inviteWith(['Supported: timer', 'Session-Expires: 60']), 90)).toEqual({ kind: 'too-small', minSeS: 90 });
  });

  it('declines when we would have to refresh', () => {
    expect(negotiateSessionTimer(inviteWith(['Session-Expires: 1800']), 90)).toEqual({ kind: 'declined', reason: 'uac-unsupported' });
    expect(negotiateSessionTimer(inviteWith(['Supported: timer', 'Session-Expires: 1800;refresher=uas']), 90)).toEqual({ kind: 'declined', reason: 'refresher-uas' });
  });

  it('rejects malformed values', () => {
    expect(negotiateSessionTimer(inviteWith(['Session-Expires: soon']), 90)).toEqual({ kind: 'bad-header' });
    expect(negotiateSessionTimer(inviteWith(['Session-Expires: 1800;refresher=me']), 90)).toEqual({ kind: 'bad-header' });
    expect(negotiateSessionTimer(inviteWith(['Session-Expires: 1800', 'Min-SE: x']), 90)).toEqual({ kind: 'bad-header' });
  });

  it('expires at N − min(32 s, N/3)', () => {
    expect(sessionExpiryDelayMs(1800)).toBe(1_768_000);
    expect(sessionExpiryDelayMs(90)).toBe(60_000);
  });
});

describe('DialogStore', () => {
  it('finds by Call-ID + local tag + remote tag and by id; an absent remote tag matches an empty one', () => {
    const s = new DialogStore();
    const d = dialog();
    s.add(d);
    expect(s.find('call-1', 'lt', 'rt')).toBe(d);
    expect(s.find('call-1', 'lt', 'other')).toBeUndefined();
    expect(s.find('call-1', null, 'rt')).toBeUndefined();
    expect(s.get('d1')).toBe(d);
    const legacy = dialog({ id: 'd2', remoteTag: '' });
    s.add(legacy);
    expect(s.find('call-1', 'lt', null)).toBe(legacy);
    s.remove(d);
    expect(s.size).toBe(1);
  });

  it('requires increasing CSeq', () => {
    expect(acceptsCSeq(dialog(), 6)).toBe(true);
    expect(acceptsCSeq(dialog(), 5)).toBe(false);
  });
});

describe('requests we send', () => {
  it('BYE goes to the remote target with From/To swapped and an increasing CSeq', () => {
    const d = dialog();
    const bye = buildBye(d, { transport: 'udp', sentBy: { host: '192.0.2.10', port: 5060 }, branch: 'z9hG4bKb1' }, { reason: 'rtp "timeout"', userAgent: 'ua' });
    expect(bye.uri).toBe('sip:src@198.51.100.7:5070');
    expect(bye.headers.get('from')).toBe('<sip:rec@192.0.2.10>;tag=lt');
    expect(bye.headers.get('to')).toBe('"Src" <sip:src@198.51.100.7>;tag=rt');
    expect(bye.headers.get('cseq')).toBe('1 BYE');
    expect(bye.headers.get('via')).toBe('SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKb1;rport');
    expect(bye.headers.get('reason')).toBe('SIP;cause=200;text="rtp timeout"');
    expect(buildBye(d, { transport: 'udp', sentBy: { host: 'h', port: 1 }, branch: 'z9hG4bKb2' }, { userAgent: 'ua' }).headers.get('cseq')).toBe('2 BYE');
    expect(requestDestination(d)).toEqual({ transport: 'udp', address: '198.51.100.7', port: 5070 });
  });

  it('with a route set, BYE carries Route and goes to the first (loose) route', () => {
    const d = dialog({ routeSet: ['<sip:p1.example.net:5080;lr;transport=tcp>', '<sip:p2.example.net;lr>'] });
    const bye = buildBye(d, { transport: 'tcp', sentBy: { host: '192.0.2.10', port: 5060 }, branch: 'z9hG4bKb1' }, { userAgent: 'ua' });
    expect(bye.headers.getAll('route')).toEqual(d.routeSet);
    expect(requestDestination(d)).toEqual({ transport: 'tcp', address: 'p1.example.net', port: 5080 });
  });

  it('over TCP, reuses the dialog connection', () => {
    const d = dialog({ transport: 'tcp', source: { transport: 'tcp', address: '198.51.100.7', port: 40001, connectionId: 'tcp-3' }, remoteTarget: 'sip:src@198.51.100.7;transport=tcp' });
    expect(requestDestination(d)).toEqual({ transport: 'tcp', address: '198.51.100.7', port: 5060, connectionId: 'tcp-3' });
    expect(requestDestination(dialog({ remoteTarget: 'tel:+15555550100' }))).toBeNull();
  });
});
