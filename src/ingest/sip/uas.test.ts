import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../observability/logger.js';
import { createDigestAuth, digestResponse } from './digest.js';
import { SipError, parseSipMessage, type SipMessage, type SipRequest, type SipResponse } from './message.js';
import { parseSdp } from './sdp.js';
import { ManualScheduler, recordingHandler, sipText } from './testing.js';
import type { Peer } from './transactions.js';
import { SipUas, responsePeer, type SipUasOptions } from './uas.js';

const T = { t1Ms: 100, t2Ms: 400, t4Ms: 500 };
const SRC: Peer = { transport: 'udp', address: '198.51.100.7', port: 5062 };
const crlf = (lines: string[]): string => `${lines.join('\r\n')}\r\n`;

function offerSdp(direction = 'sendrecv', version = 1, codecs = '0 101', rtpmap = ['a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', 'a=fmtp:101 0-16']): string {
  return crlf(['v=0', `o=src 1001 ${version} IN IP4 198.51.100.7`, 's=-', 'c=IN IP4 198.51.100.7', 't=0 0', `m=audio 20000 RTP/AVP ${codecs}`, ...rtpmap, 'a=ptime:20', `a=${direction}`]);
}

interface ReqOpts {
  callId?: string;
  branch?: string;
  cseq?: number;
  toTag?: string;
  fromTag?: string;
  body?: string;
  contentType?: string;
  extra?: string[];
  omit?: string[];
}

let branchSeq = 0;
function req(method: string, o: ReqOpts = {}): Buffer {
  const body = o.body ?? '';
  const lines = [
    `${method} sip:rec@192.0.2.10:5060 SIP/2.0`,
    `Via: SIP/2.0/UDP 198.51.100.7:5062;branch=${o.branch ?? `z9hG4bK${++branchSeq}`};rport`,
    'Max-Forwards: 70',
    `From: "Caller" <sip:+15555550100@198.51.100.7>;tag=${o.fromTag ?? 'ft1'}`,
    `To: <sip:rec@192.0.2.10>${o.toTag ? `;tag=${o.toTag}` : ''}`,
    `Call-ID: ${o.callId ?? 'call-1@198.51.100.7'}`,
    `CSeq: ${o.cseq ?? 1} ${method === 'ACK' || method === 'CANCEL' ? method : method}`,
    'Contact: <sip:src@198.51.100.7:5062>',
    ...(body ? [`Content-Type: ${o.contentType ?? 'application/sdp'}`] : []),
    ...(o.extra ?? []),
  ].filter((l) => !(o.omit ?? []).some((h) => l.toLowerCase().startsWith(`${h}:`)));
  return sipText(lines, body);
}

function harness(over: Partial<SipUasOptions> = {}) {
  const scheduler = new ManualScheduler();
  const handler = recordingHandler();
  const sent: Array<{ msg: SipMessage; peer: Peer }> = [];
  const uas = new SipUas({
    handler, scheduler, timers: T, logger: silentLogger,
    send: (msg, peer) => sent.push({ msg, peer }),
    localAddress: () => ({ host: '192.0.2.10', port: 5060 }),
    siprecRoles: { customer: 'caller' }, minSessionExpiresS: 90, maxDialogs: 10, maxTransactions: 100,
    handlerTimeoutMs: 1000, userAgent: 'callscribe-test',
    ...over,
  });
  const feed = (buf: Buffer, from: Peer = SRC): void => uas.receive(parseSipMessage(buf), from);
  const responses = (): SipResponse[] => sent.flatMap((s) => (s.msg.kind === 'response' ? [s.msg] : []));
  const requests = (): SipRequest[] => sent.flatMap((s) => (s.msg.kind === 'request' ? [s.msg] : []));
  const last = (): SipResponse => {
    const r = responses();
    const l = r[r.length - 1];
    if (!l) throw new Error('no response sent');
    return l;
  };
  const statuses = (): number[] => responses().map((r) => r.status);
  return { scheduler, handler, sent, uas, feed, responses, requests, last, statuses };
}

/** Lets the handler's promises settle (no timers involved). */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

function toTagOf(res: SipResponse): string {
  const m = /;tag=([^;>\s]+)/.exec(res.headers.get('to') ?? '');
  if (!m) throw new Error('no To tag');
  return m[1]!;
}

async function establish(h: ReturnType<typeof harness>, extra: string[] = []): Promise<string> {
  h.feed(req('INVITE', { body: offerSdp(), extra }));
  await flush();
  const ok = h.last();
  expect(ok.status).toBe(200);
  const tag = toTagOf(ok);
  h.feed(req('ACK', { toTag: tag }));
  return tag;
}

describe('SipUas: basic call', () => {
  it('INVITE → 100 + 200 with the answer; ACK stops 2xx retransmission; BYE → 200 + onEnd', async () => {
    const h = harness();
    h.feed(req('INVITE', { body: offerSdp(), extra: ['X-Tenant: acme', 'X-Agent-Id: 42', 'x-tenant: second'] }));
    await flush();
    expect(h.statuses()).toEqual([100, 200]);
    const ok = h.last();
    expect(ok.headers.get('contact')).toBe('<sip:callscribe@192.0.2.10:5060>');
    expect(ok.headers.get('content-type')).toBe('application/sdp');
    const answer = parseSdp(ok.body.toString());
    expect(answer.media[0]).toMatchObject({ port: 40000, formats: ['0', '101'], direction: 'recvonly' });
    expect(answer.origin.sessionVersion).toBe('1');
    // the offer the handler saw
    const offer = h.handler.offers[0]!;
    expect(offer.callId).toBe('call-1@198.51.100.7');
    expect(offer.from).toEqual({ uri: 'sip:+15555550100@198.51.100.7', displayName: 'Caller', user: '+15555550100', tag: 'ft1' });
    expect(offer.headers).toEqual({ 'x-tenant': 'acme, second', 'x-agent-id': '42' });
    expect(offer.source).toEqual({ address: '198.51.100.7', port: 5062, transport: 'udp' });
    expect(offer.media[0]).toMatchObject({ index: 0, remoteAddress: '198.51.100.7', remotePort: 20000, codec: { name: 'PCMU', payloadType: 0 }, telephoneEventPt: 101, ptimeMs: 20, direction: 'sendrecv' });
    expect(offer.siprec).toBeNull();
    // 2xx retransmitted until ACK
    h.scheduler.advance(T.t1Ms);
    expect(h.statuses()).toEqual([100, 200, 200]);
    h.feed(req('ACK', { toTag: toTagOf(ok) }));
    h.scheduler.advance(10_000);
    expect(h.statuses()).toEqual([100, 200, 200]);
    h.feed(req('BYE', { toTag: toTagOf(ok), cseq: 2 }));
    expect(h.last().status).toBe(200);
    expect(h.handler.ended).toEqual([{ dialogId: offer.dialogId, reason: 'bye' }]);
    expect(h.uas.stats().dialogs).toMatchObject({ active: 0, accepted: 1, ended: { bye: 1 } });
  });

  it('responses go to received:rport (RFC 3581) and carry the stamped Via', async () => {
    const h = harness();
    h.feed(req('OPTIONS'), { transport: 'udp', address: '203.0.113.9', port: 61000 });
    const { msg, peer } = h.sent[0]!;
    expect(peer).toEqual({ transport: 'udp', address: '203.0.113.9', port: 61000 });
    expect(msg.headers.get('via')).toMatch(/;rport=61000;received=203\.0\.113\.9$/);
    // without rport: the received address with the sent-by port
    const v = { transport: 'UDP', host: 'h', port: 5070, params: new Map([['received', '203.0.113.9']]) };
    expect(responsePeer(v, { transport: 'udp', address: '203.0.113.9', port: 1 })).toEqual({ transport: 'udp', address: '203.0.113.9', port: 5070 });
  });

  it('no ACK within 64·T1 → BYE and onEnd(ack-timeout)', async () => {
    const h = harness();
    h.feed(req('INVITE', { body: offerSdp() }));
    await flush();
    h.scheduler.advance(64 * T.t1Ms);
    expect(h.handler.ended.map((e) => e.reason)).toEqual(['ack-timeout']);
    const bye = h.requests()[0]!;
    expect(bye.method).toBe('BYE');
    expect(bye.uri).toBe('sip:src@198.51.100.7:5062');
    expect(h.sent.find((s) => s.msg === bye)?.peer).toEqual({ transport: 'udp', address: '198.51.100.7', port: 5062 });
  });

  it('OPTIONS → 200 with Allow, Accept, Supported (503 while closing)', async () => {
    const h = harness();
    h.feed(req('OPTIONS'));
    const ok = h.last();
    expect(ok.status).toBe(200);
    expect(ok.headers.getAll('allow')).toEqual(['INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE']);
    expect(ok.headers.get('accept')).toContain('application/sdp');
    expect(ok.headers.get('supported')).toBe('timer, siprec');
    await h.uas.close();
    h.feed(req('OPTIONS'));
    expect(h.last().status).toBe(503);
  });
});

describe('SipUas: rejections', () => {
  it.each([
    ['unsupported Require', req('INVITE', { body: offerSdp(), extra: ['Require: 100rel'] }), 420, 'ERR_SIP_BAD_EXTENSION'],
    ['known method not allowed', req('REGISTER'), 405, 'ERR_SIP_METHOD_NOT_ALLOWED'],
    ['unknown method', req('FROBNICATE'), 501, 'ERR_SIP_NOT_IMPLEMENTED'],
    ['Content-Type not SDP', req('INVITE', { body: 'hello', contentType: 'text/plain' }), 415, 'ERR_SIP_UNSUPPORTED_MEDIA_TYPE'],
    ['compressed body', req('INVITE', { body: offerSdp(), extra: ['Content-Encoding: gzip'] }), 415, 'ERR_SIP_UNSUPPORTED_MEDIA_TYPE'],
    ['late offer', req('INVITE'), 488, 'ERR_SIP_NO_OFFER'],
    ['no G.711', req('INVITE', { body: offerSdp('sendrecv', 1, '18', ['a=rtpmap:18 G729/8000']) }), 488, 'ERR_SIP_NO_ACCEPTABLE_MEDIA'],
    ['bad SDP', req('INVITE', { body: 'v=0\r\nnonsense\r\n' }), 400, 'ERR_SDP_MALFORMED'],
    ['no Contact', req('INVITE', { body: offerSdp(), omit: ['contact'] }), 400, 'ERR_SIP_MISSING_HEADER'],
    ['session interval too small', req('INVITE', { body: offerSdp(), extra: ['Supported: timer', 'Session-Expires: 30'] }), 422, 'ERR_SIP_SESSION_INTERVAL_TOO_SMALL'],
    ['BYE outside a dialog', req('BYE', { toTag: 'nope' }), 481, 'ERR_SIP_NO_DIALOG'],
    ['CANCEL without its INVITE', req('CANCEL'), 481, 'ERR_SIP_NO_TRANSACTION'],
    ['missing From', req('OPTIONS', { omit: ['from'] }), 400, 'ERR_SIP_MISSING_HEADER'],
    ['bad CSeq', req('OPTIONS', { extra: ['CSeq: 2 OPTIONS'] }), 400, 'ERR_SIP_BAD_HEADER'],
  ])('%s → %i %s', async (_name, buf, status, code) => {
    const h = harness();
    h.feed(buf);
    await flush();
    const res = h.last();
    expect(res.status).toBe(status);
    expect(res.headers.get('warning')).toContain(code);
    expect(h.uas.stats().rejections[code]).toBe(1);
    expect(h.handler.offers).toHaveLength(0);
    // the server carries on
    h.feed(req('OPTIONS', { callId: 'after' }));
    expect(h.last().status).toBe(200);
  });

  it('420 lists the unsupported tags; siprec and timer are accepted; 405 lists Allow; 422 gives Min-SE; 488 no-codec uses Warning 305', async () => {
    const h = harness();
    h.feed(req('OPTIONS', { extra: ['Require: siprec, timer, 100rel, foo'] }));
    expect(h.last().headers.getAll('unsupported')).toEqual(['100rel, foo']);
    h.feed(req('OPTIONS', { extra: ['Require: siprec, timer'] }));
    expect(h.last().status).toBe(200);
    h.feed(req('SUBSCRIBE'));
    expect(h.last().headers.get('allow')).toBe('INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE');
    h.feed(req('INVITE', { body: offerSdp(), extra: ['Supported: timer', 'Session-Expires: 30'] }));
    expect(h.last().headers.get('min-se')).toBe('90');
    h.feed(req('INVITE', { body: offerSdp('sendrecv', 1, '9', ['a=rtpmap:9 G722/8000']) }));
    expect(h.last().headers.get('warning')).toMatch(/^305 192\.0\.2\.10 "ERR_SIP_NO_ACCEPTABLE_MEDIA/);
  });

  it('a request without a usable Via is dropped and counted, never answered', () => {
    const h = harness();
    h.feed(req('OPTIONS', { omit: ['via'] }));
    expect(h.sent).toHaveLength(0);
    expect(h.uas.stats().drops['ERR_SIP_MISSING_HEADER']).toBe(1);
  });

  it('handler rejection, error and timeout', async () => {
    const h = harness();
    h.handler.decide = () => Promise.resolve({ reject: { status: 486, reason: 'Busy Here', code: 'ERR_INGEST_CAPACITY' } });
    h.feed(req('INVITE', { callId: 'c1', body: offerSdp() }));
    await flush();
    expect(h.last().status).toBe(486);
    expect(h.uas.stats().rejections['ERR_INGEST_CAPACITY']).toBe(1);

    h.handler.decide = () => Promise.reject(new Error('boom'));
    h.feed(req('INVITE', { callId: 'c2', body: offerSdp() }));
    await flush();
    expect(h.last().status).toBe(500);
    expect(h.uas.stats().rejections['ERR_SIP_HANDLER_ERROR']).toBe(1);

    let resolveLate!: (d: Awaited<ReturnType<typeof h.handler.decide>>) => void;
    h.handler.decide = (offer) => new Promise((r) => {
      resolveLate = r;
      void offer;
    });
    h.feed(req('INVITE', { callId: 'c3', body: offerSdp() }));
    await flush();
    h.scheduler.advance(1000);
    await flush();
    expect(h.last().status).toBe(500);
    expect(h.uas.stats().rejections['ERR_SIP_HANDLER_TIMEOUT']).toBe(1);
    // a late accept is released at once
    resolveLate({ accept: { address: '127.0.0.1', media: [{ index: 0, port: 4000 }] } });
    await flush();
    expect(h.handler.ended).toEqual([{ dialogId: h.handler.offers[2]!.dialogId, reason: 'error' }]);
    expect(h.uas.stats().dialogs.active).toBe(0);
  });

  it('a bad acceptance from the handler → 500 and onEnd(error)', async () => {
    const h = harness();
    h.handler.decide = () => Promise.resolve({ accept: { address: 'not-an-ip', media: [{ index: 0, port: 4000 }] } });
    h.feed(req('INVITE', { body: offerSdp() }));
    await flush();
    expect(h.last().status).toBe(500);
    expect(h.handler.ended.map((e) => e.reason)).toEqual(['error']);
  });

  it('capacity → 503 with Retry-After; a merged request → 482', async () => {
    const h = harness({ maxDialogs: 1 });
    await establish(h);
    h.feed(req('INVITE', { callId: 'second', body: offerSdp() }));
    await flush();
    expect(h.last().status).toBe(503);
    expect(h.last().headers.get('retry-after')).toBe('5');

    const m = harness();
    m.handler.decide = () => new Promise(() => undefined); // pending
    m.feed(req('INVITE', { branch: 'z9hG4bKpath1', body: offerSdp() }));
    m.feed(req('INVITE', { branch: 'z9hG4bKpath2', body: offerSdp() }));
    await flush();
    expect(m.last().status).toBe(482);
  });
});

describe('SipUas: CANCEL', () => {
  it('CANCEL before the final response → 200 for CANCEL, 487 for INVITE; a late accept ends with cancel', async () => {
    const h = harness();
    let resolve!: (v: { accept: { address: string; media: Array<{ index: number; port: number }> } }) => void;
    h.handler.decide = () => new Promise((r) => {
      resolve = r;
    });
    h.feed(req('INVITE', { branch: 'z9hG4bKinv', body: offerSdp() }));
    await flush();
    h.feed(req('CANCEL', { branch: 'z9hG4bKinv' }));
    const [trying, cancelOk, terminated] = h.responses();
    expect([trying?.status, cancelOk?.status, terminated?.status]).toEqual([100, 200, 487]);
    expect(cancelOk?.headers.get('cseq')).toBe('1 CANCEL');
    expect(terminated?.headers.get('cseq')).toBe('1 INVITE');
    expect(toTagOf(cancelOk!)).toBe(toTagOf(terminated!));
    resolve({ accept: { address: '127.0.0.1', media: [{ index: 0, port: 4000 }] } });
    await flush();
    expect(h.statuses()).toEqual([100, 200, 487]); // no 200 for the INVITE
    expect(h.handler.ended).toEqual([{ dialogId: h.handler.offers[0]!.dialogId, reason: 'cancel' }]);
    // the ACK for the 487 is absorbed by the transaction
    h.feed(req('ACK', { branch: 'z9hG4bKinv', toTag: toTagOf(terminated!) }));
    expect(h.uas.stats().drops['ERR_SIP_STRAY_ACK']).toBeUndefined();
  });

  it('CANCEL after the 200 → 200 for CANCEL, the call goes on', async () => {
    const h = harness();
    h.feed(req('INVITE', { branch: 'z9hG4bKinv2', body: offerSdp() }));
    await flush();
    h.feed(req('CANCEL', { branch: 'z9hG4bKinv2' }));
    expect(h.statuses()).toEqual([100, 200, 200]);
    expect(h.uas.stats().dialogs.active).toBe(1);
    expect(h.handler.ended).toEqual([]);
  });
});

describe('SipUas: re-INVITE and UPDATE', () => {
  it('hold and resume keep the call; the answer version moves only when the answer changes', async () => {
    const h = harness();
    const tag = await establish(h);
    h.feed(req('INVITE', { toTag: tag, cseq: 2, body: offerSdp('inactive', 2) }));
    await flush();
    const hold = h.last();
    expect(hold.status).toBe(200);
    expect(hold.headers.get('contact')).toBe('<sip:callscribe@192.0.2.10:5060>');
    expect(parseSdp(hold.body.toString()).media[0]?.direction).toBe('inactive');
    expect(parseSdp(hold.body.toString()).origin.sessionVersion).toBe('2');
    expect(h.handler.reoffers[0]?.offer.media[0]?.direction).toBe('inactive');
    h.feed(req('ACK', { toTag: tag, cseq: 2 }));

    h.feed(req('INVITE', { toTag: tag, cseq: 3, body: offerSdp('sendonly', 3) }));
    await flush();
    const resume = parseSdp(h.last().body.toString());
    expect(resume.media[0]?.direction).toBe('recvonly');
    expect(resume.origin.sessionVersion).toBe('3');
    h.feed(req('ACK', { toTag: tag, cseq: 3 }));

    h.feed(req('INVITE', { toTag: tag, cseq: 4, body: offerSdp('sendonly', 3) }));
    await flush();
    expect(parseSdp(h.last().body.toString()).origin.sessionVersion).toBe('3');
    h.feed(req('ACK', { toTag: tag, cseq: 4 }));
    expect(h.uas.stats().dialogs.active).toBe(1);
    expect(h.handler.ended).toEqual([]);
  });

  it('a re-INVITE without SDP gets our current SDP (unchanged version) as the offer, no handler call', async () => {
    const h = harness();
    const tag = await establish(h);
    const first = h.responses().find((r) => r.status === 200)!.body.toString();
    h.feed(req('INVITE', { toTag: tag, cseq: 2 }));
    await flush();
    expect(h.last().body.toString()).toBe(first);
    expect(h.handler.reoffers).toHaveLength(0);
  });

  it('a rejected re-offer keeps the dialog (488 for no codec, handler status otherwise)', async () => {
    const h = harness();
    const tag = await establish(h);
    h.feed(req('INVITE', { toTag: tag, cseq: 2, body: offerSdp('sendrecv', 2, '18', ['a=rtpmap:18 G729/8000']) }));
    await flush();
    expect(h.last().status).toBe(488);
    h.handler.decideReoffer = () => Promise.resolve({ reject: { status: 488, reason: 'Not Acceptable Here', code: 'ERR_INGEST_MEDIA' } });
    h.feed(req('UPDATE', { toTag: tag, cseq: 3, body: offerSdp('sendonly', 3) }));
    await flush();
    expect(h.last().status).toBe(488);
    expect(h.uas.stats().dialogs.active).toBe(1);
  });

  it('in-dialog CSeq must increase; a second offer while one is pending gets 500/491', async () => {
    const h = harness();
    const tag = await establish(h);
    h.feed(req('UPDATE', { toTag: tag, cseq: 1 }));
    expect(h.last().status).toBe(500);
    h.handler.decideReoffer = () => new Promise(() => undefined);
    h.feed(req('INVITE', { toTag: tag, cseq: 5, body: offerSdp('sendonly', 2) }));
    await flush();
    h.feed(req('UPDATE', { toTag: tag, cseq: 6, body: offerSdp('sendonly', 3) }));
    expect(h.last().status).toBe(491);
    h.feed(req('INVITE', { toTag: tag, cseq: 7, body: offerSdp('sendonly', 3) }));
    await flush();
    expect(h.last().status).toBe(500);
    expect(h.last().headers.get('retry-after')).toBe('1');
  });

  it('a re-INVITE refreshes the remote target (Contact)', async () => {
    const h = harness();
    const tag = await establish(h);
    const moved = req('INVITE', { toTag: tag, cseq: 2, body: offerSdp('sendonly', 2) }).toString().replace('Contact: <sip:src@198.51.100.7:5062>', 'Contact: <sip:src@198.51.100.8:5090>');
    h.feed(Buffer.from(moved));
    await flush();
    h.feed(req('ACK', { toTag: tag, cseq: 2 }));
    expect(h.uas.hangup(h.handler.offers[0]!.dialogId, 'drain')).toBe(true);
    expect(h.requests()[0]?.uri).toBe('sip:src@198.51.100.8:5090');
  });
});

describe('SipUas: session timers', () => {
  it('answers refresher=uac + Require: timer; an UPDATE refresh resets the timer; expiry ends the call', async () => {
    const h = harness();
    const st = ['Supported: timer', 'Session-Expires: 90;refresher=uac'];
    const tag = await establish(h, st);
    const ok = h.responses().find((r) => r.status === 200)!;
    expect(ok.headers.get('session-expires')).toBe('90;refresher=uac');
    expect(ok.headers.getAll('require')).toEqual(['timer']);
    h.scheduler.advance(50_000);
    h.feed(req('UPDATE', { toTag: tag, cseq: 2, extra: st }));
    expect(h.last().status).toBe(200);
    expect(h.last().headers.get('session-expires')).toBe('90;refresher=uac');
    h.scheduler.advance(59_999); // 90 − min(32, 30) = 60 s after the refresh
    expect(h.handler.ended).toEqual([]);
    h.scheduler.advance(1);
    expect(h.handler.ended.map((e) => e.reason)).toEqual(['session-expired']);
    expect(h.requests().map((r) => r.method)).toEqual(['BYE']);
  });

  it('a re-INVITE refresh also resets it; a refresh without Session-Expires turns it off', async () => {
    const h = harness();
    const st = ['Supported: timer', 'Session-Expires: 120'];
    const tag = await establish(h, st);
    h.scheduler.advance(70_000);
    h.feed(req('INVITE', { toTag: tag, cseq: 2, body: offerSdp('sendonly', 2), extra: st }));
    await flush();
    h.feed(req('ACK', { toTag: tag, cseq: 2 }));
    h.scheduler.advance(70_000);
    expect(h.handler.ended).toEqual([]);
    h.feed(req('UPDATE', { toTag: tag, cseq: 3 }));
    h.scheduler.advance(1_000_000);
    expect(h.handler.ended).toEqual([]);
  });

  it('declines the timer when we would have to refresh', async () => {
    const h = harness();
    await establish(h, ['Session-Expires: 1800']);
    expect(h.responses().find((r) => r.status === 200)!.headers.has('session-expires')).toBe(false);
    h.scheduler.advance(10_000_000);
    expect(h.handler.ended).toEqual([]);
  });
});

describe('SipUas: SIPREC', () => {
  const cisco = readFileSync(new URL('./fixtures/cisco-cube-offer.txt', import.meta.url), 'utf8').replace(/\r?\n/g, '\r\n');
  const hold = readFileSync(new URL('./fixtures/cisco-cube-hold-offer.txt', import.meta.url), 'utf8').replace(/\r?\n/g, '\r\n');
  const siprec = ['Require: siprec', 'Supported: timer'];

  it('answers a multipart SIPREC INVITE with two recvonly lines and hands over metadata and roles', async () => {
    const h = harness();
    h.feed(req('INVITE', { body: cisco, contentType: 'multipart/mixed;boundary=uniqueBoundary', extra: siprec }));
    await flush();
    const ok = h.last();
    expect(ok.status).toBe(200);
    const answer = parseSdp(ok.body.toString());
    expect(answer.media.map((m) => [m.port, m.direction, m.label, m.formats.join(' ')])).toEqual([
      [40000, 'recvonly', '1', '0 101'],
      [40002, 'recvonly', '2', '0 101'],
    ]);
    const offer = h.handler.offers[0]!;
    expect(offer.media.map((m) => [m.label, m.direction, m.codec?.name])).toEqual([['1', 'sendonly', 'PCMU'], ['2', 'sendonly', 'PCMU']]);
    expect(offer.siprec?.metadata?.participants).toHaveLength(2);
    expect(offer.siprec?.roles?.streams.map((s) => [s.index, s.role, s.participant?.number])).toEqual([
      [0, 'customer', '+15555550142'],
      [1, 'agent', '7301'],
    ]);
  });

  it('a SIPREC hold re-INVITE keeps the earlier roles basis and answers inactive; metadata-only UPDATE reaches onMetadataUpdate', async () => {
    const h = harness();
    h.feed(req('INVITE', { body: cisco, contentType: 'multipart/mixed;boundary=uniqueBoundary', extra: siprec }));
    await flush();
    const tag = toTagOf(h.last());
    h.feed(req('ACK', { toTag: tag }));
    h.feed(req('INVITE', { toTag: tag, cseq: 2, body: hold, contentType: 'multipart/mixed;boundary=uniqueBoundary' }));
    await flush();
    expect(parseSdp(h.last().body.toString()).media.map((m) => m.direction)).toEqual(['inactive', 'inactive']);
    expect(h.handler.reoffers[0]?.offer.siprec?.roles?.streams.map((s) => s.basis)).toEqual(['order', 'order']);
    h.feed(req('ACK', { toTag: tag, cseq: 2 }));
    const xml = cisco.slice(cisco.indexOf('<?xml'), cisco.indexOf('</recording>') + '</recording>'.length);
    h.feed(req('UPDATE', { toTag: tag, cseq: 3, body: xml, contentType: 'application/rs-metadata+xml' }));
    expect(h.last().status).toBe(200);
    expect(h.last().body.length).toBe(0);
    expect(h.handler.metadataUpdates[0]?.siprec.roles?.streams.map((s) => s.role)).toEqual(['customer', 'agent']);
  });

  it('a broken multipart body → 400', async () => {
    const h = harness();
    h.feed(req('INVITE', { body: 'no delimiters here', contentType: 'multipart/mixed;boundary=zzz', extra: siprec }));
    await flush();
    expect(h.last().status).toBe(400);
    expect(h.uas.stats().rejections['ERR_SIPREC_MULTIPART']).toBe(1);
  });
});

describe('SipUas: digest authentication', () => {
  it('401 with a challenge, then accepts good credentials and 403s bad ones', async () => {
    let now = 1_000_000;
    const auth = createDigestAuth({ realm: 'callscribe', secret: 'x'.repeat(32), now: () => now, lookupPassword: (u) => (u === 'sbc' ? 'pw' : undefined) });
    const h = harness({ auth });
    h.feed(req('INVITE', { callId: 'a1', body: offerSdp() }));
    await flush();
    const challenge = h.last();
    expect(challenge.status).toBe(401);
    const nonce = /nonce="([^"]+)"/.exec(challenge.headers.get('www-authenticate') ?? '')?.[1] ?? '';
    const cred = (password: string): string => {
      const response = digestResponse({ username: 'sbc', realm: 'callscribe', password, method: 'INVITE', uri: 'sip:rec@192.0.2.10:5060', nonce, nc: '00000001', cnonce: 'abc', qop: 'auth' });
      return `Authorization: Digest username="sbc", realm="callscribe", nonce="${nonce}", uri="sip:rec@192.0.2.10:5060", response="${response}", qop=auth, nc=00000001, cnonce="abc"`;
    };
    h.feed(req('INVITE', { callId: 'a1', cseq: 2, body: offerSdp(), extra: [cred('wrong')] }));
    await flush();
    expect(h.last().status).toBe(403);
    h.feed(req('INVITE', { callId: 'a1', cseq: 3, body: offerSdp(), extra: [cred('pw')] }));
    await flush();
    expect(h.last().status).toBe(200);
    now += 10 * 60_000;
    h.feed(req('INVITE', { callId: 'a2', body: offerSdp(), extra: [cred('pw')] }));
    await flush();
    expect(h.last().status).toBe(401);
    expect(h.last().headers.get('www-authenticate')).toContain('stale=true');
    expect(h.uas.stats().rejections).toMatchObject({ ERR_SIP_AUTH_REQUIRED: 1, ERR_SIP_AUTH_FAILED: 1, ERR_SIP_AUTH_STALE: 1 });
  });
});

describe('SipUas: hangup and close', () => {
  it('hangup sends BYE with Route to the first route and ends the call; unknown ids return false', async () => {
    const h = harness();
    const tag = await establish(h, ['Record-Route: <sip:sbc.example.net:5080;lr>']);
    const id = h.handler.offers[0]!.dialogId;
    expect(h.uas.hangup(id, 'rtp-timeout')).toBe(true);
    const bye = h.requests()[0]!;
    expect(bye.headers.getAll('route')).toEqual(['<sip:sbc.example.net:5080;lr>']);
    expect(bye.headers.get('to')).toContain(';tag=ft1');
    expect(bye.headers.get('from')).toContain(`;tag=${tag}`);
    expect(h.sent.find((s) => s.msg === bye)?.peer).toEqual({ transport: 'udp', address: 'sbc.example.net', port: 5080 });
    expect(h.handler.ended).toEqual([{ dialogId: id, reason: 'server-hangup' }]);
    expect(h.uas.hangup(id)).toBe(false);
    expect(h.uas.hangup('nope')).toBe(false);
  });

  it('hangup before the ACK waits for it (§15)', async () => {
    const h = harness();
    h.feed(req('INVITE', { body: offerSdp() }));
    await flush();
    const tag = toTagOf(h.last());
    expect(h.uas.hangup(h.handler.offers[0]!.dialogId)).toBe(true);
    expect(h.requests()).toHaveLength(0);
    h.feed(req('ACK', { toTag: tag }));
    expect(h.requests().map((r) => r.method)).toEqual(['BYE']);
    expect(h.handler.ended.map((e) => e.reason)).toEqual(['server-hangup']);
  });

  it('close() sends BYE to live dialogs and 503 to pending INVITEs, then new INVITEs get 503', async () => {
    const h = harness();
    await establish(h);
    h.handler.decide = () => new Promise(() => undefined);
    h.feed(req('INVITE', { callId: 'pending', body: offerSdp() }));
    await flush();
    const closed = h.uas.close(500);
    h.scheduler.advance(500);
    await closed;
    // one BYE, retransmitted by Timer E while no 200 came (UDP)
    expect(new Set(h.requests().map((r) => `${r.method} ${r.headers.get('via')}`)).size).toBe(1);
    expect(h.requests()[0]?.method).toBe('BYE');
    expect(h.statuses()).toContain(503);
    expect(h.handler.ended.map((e) => e.reason)).toEqual(['server-hangup']);
    h.feed(req('INVITE', { callId: 'late', body: offerSdp() }));
    await flush();
    expect(h.last().status).toBe(503);
  });
});

describe('SipUas: robustness', () => {
  it('never throws on mutated messages (seeded byte mutations of INVITE, re-INVITE, CANCEL, BYE)', async () => {
    const h = harness();
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const cisco = readFileSync(new URL('./fixtures/cisco-cube-offer.txt', import.meta.url), 'utf8').replace(/\r?\n/g, '\r\n');
    const seeds = [
      req('INVITE', { body: offerSdp(), extra: ['Supported: timer', 'Session-Expires: 1800'] }),
      req('INVITE', { body: cisco, contentType: 'multipart/mixed;boundary=uniqueBoundary', extra: ['Require: siprec'] }),
      req('CANCEL'), req('BYE', { toTag: 'x' }), req('UPDATE', { toTag: 'x', body: offerSdp() }),
    ];
    const alphabet = Buffer.from(' :;,<>"=\r\n\t0-9azAZ@/\\');
    let parsed = 0;
    for (let i = 0; i < 1500; i++) {
      const buf = Buffer.from(seeds[i % seeds.length]!);
      for (let k = 0, n = 1 + rand(4); k < n; k++) {
        const at = rand(buf.length);
        if (rand(3) === 0) buf[at] = rand(256);
        else buf[at] = alphabet[rand(alphabet.length)]!;
      }
      let msg: SipMessage;
      try {
        msg = parseSipMessage(buf);
      } catch (err) {
        expect(err).toBeInstanceOf(SipError);
        continue;
      }
      parsed++;
      expect(() => h.uas.receive(msg, SRC)).not.toThrow();
      if (i % 50 === 0) await flush();
    }
    await flush();
    expect(parsed).toBeGreaterThan(300);
    h.feed(req('OPTIONS', { callId: 'still-alive' }));
    expect(h.last().status).toBe(200);
  });
});
