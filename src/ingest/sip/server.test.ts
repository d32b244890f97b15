/**
 * Real-socket tests of the SIP server on 127.0.0.1 (UDP and TCP). T1 is shortened to 20 ms;
 * the session-timer test compresses timers of 30 s and more by 1000× through the scheduler.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../observability/logger.js';
import { digestResponse } from './digest.js';
import { SipStreamFramer } from './framing.js';
import { parseSipMessage, type SipMessage, type SipRequest, type SipResponse } from './message.js';
import { parseSdp } from './sdp.js';
import { createSipServer, type SipServer, type SipServerOptions } from './server.js';
import { recordingHandler, sipText, type RecordingHandler } from './testing.js';
import type { TimerScheduler } from './transactions.js';

const TIMERS = { t1Ms: 20, t2Ms: 80, t4Ms: 100 };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Client {
  readonly transport: 'udp' | 'tcp';
  readonly port: number;
  readonly received: SipMessage[];
  send(buf: Buffer): void;
  waitFor(pred: (m: SipMessage) => boolean, timeoutMs?: number): Promise<SipMessage>;
  close(): void;
}

/** Collects what arrives; like a real UA, answers every BYE with 200. */
function makeWaiter(received: SipMessage[], reply: (buf: Buffer) => void) {
  const waiters = new Set<() => void>();
  return {
    push(m: SipMessage) {
      received.push(m);
      if (m.kind === 'request' && m.method === 'BYE') reply(answer(m, 200));
      for (const w of [...waiters]) w();
    },
    waitFor(pred: (m: SipMessage) => boolean, timeoutMs = 3000): Promise<SipMessage> {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const hit = received.find(pred);
          if (hit) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(hit);
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error('timed out waiting for a SIP message'));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
  };
}

async function udpClient(serverPort: number, bindAddress = '127.0.0.1'): Promise<Client> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, bindAddress, () => r()));
  const received: SipMessage[] = [];
  const w = makeWaiter(received, (buf) => socket.send(buf, serverPort, '127.0.0.1'));
  socket.on('message', (buf) => w.push(parseSipMessage(buf)));
  return {
    transport: 'udp', port: socket.address().port, received,
    send: (buf) => socket.send(buf, serverPort, '127.0.0.1'),
    waitFor: w.waitFor,
    close: () => socket.close(),
  };
}

async function tcpClient(serverPort: number): Promise<Client & { readonly socket: net.Socket }> {
  const socket = net.connect(serverPort, '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const received: SipMessage[] = [];
  const w = makeWaiter(received, (buf) => socket.write(buf));
  const framer = new SipStreamFramer();
  socket.on('data', (chunk: Buffer) => {
    for (const out of framer.push(chunk)) if (out.kind === 'message') w.push(parseSipMessage(out.data));
  });
  socket.on('error', () => undefined);
  return {
    transport: 'tcp', port: socket.localPort ?? 0, received, socket,
    send: (buf) => socket.write(buf),
    waitFor: w.waitFor,
    close: () => socket.destroy(),
  };
}

const crlf = (lines: string[]): string => `${lines.join('\r\n')}\r\n`;
function offerSdp(direction = 'sendrecv', version = 1, codecs = '0 8 101'): string {
  return crlf(['v=0', `o=sipp 1 ${version} IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio 6000 RTP/AVP ${codecs}`,
    'a=rtpmap:101 telephone-event/8000', 'a=fmtp:101 0-15', `a=${direction}`]);
}

let seq = 0;
function request(c: Client, method: string, o: { callId: string; cseq?: number; toTag?: string; branch?: string; body?: string; contentType?: string; extra?: string[]; omit?: string[] }): Buffer {
  const body = o.body ?? '';
  const cseqMethod = method;
  const lines = [
    `${method} sip:rec@127.0.0.1 SIP/2.0`,
    `Via: SIP/2.0/${c.transport.toUpperCase()} 127.0.0.1:${c.port};branch=${o.branch ?? `z9hG4bKt${++seq}`};rport`,
    'Max-Forwards: 70',
    `From: <sip:+15555550100@127.0.0.1>;tag=from-${o.callId}`,
    `To: <sip:rec@127.0.0.1>${o.toTag ? `;tag=${o.toTag}` : ''}`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq ?? 1} ${cseqMethod}`,
    `Contact: <sip:src@127.0.0.1:${c.port}${c.transport === 'tcp' ? ';transport=tcp' : ''}>`,
    ...(body ? [`Content-Type: ${o.contentType ?? 'application/sdp'}`] : []),
    ...(o.extra ?? []),
  ].filter((l) => !(o.omit ?? []).some((h) => l.toLowerCase().startsWith(`${h}:`)));
  return sipText(lines, body);
}

const isResponse = (callId: string, status: number, method = 'INVITE', cseq?: number) => (m: SipMessage): m is SipResponse =>
  m.kind === 'response' && m.status === status && m.headers.get('call-id') === callId
  && (m.headers.get('cseq') ?? '').endsWith(` ${method}`) && (cseq === undefined || m.headers.get('cseq') === `${cseq} ${method}`);

function toTag(m: SipMessage): string {
  const t = /;tag=([^;>\s]+)/.exec(m.headers.get('to') ?? '')?.[1];
  if (!t) throw new Error('no To tag');
  return t;
}

const servers: SipServer[] = [];
const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  for (const c of clients.splice(0)) c.close();
});

async function start(over: Partial<SipServerOptions> = {}): Promise<{ server: SipServer; handler: RecordingHandler }> {
  const handler = recordingHandler();
  const server = await createSipServer({
    host: '127.0.0.1', port: 0, allowFrom: ['127.0.0.0/8'], logger: silentLogger, handler, timers: TIMERS, ...over,
  });
  servers.push(server);
  return { server, handler };
}

async function client(server: SipServer, transport: 'udp' | 'tcp', bindAddress?: string): Promise<Client> {
  const c = transport === 'udp' ? await udpClient(server.ports.udp!, bindAddress) : await tcpClient(server.ports.tcp!);
  clients.push(c);
  return c;
}

async function optionsStillAnswered(c: Client, label: string): Promise<void> {
  c.send(request(c, 'OPTIONS', { callId: `alive-${label}` }));
  await c.waitFor(isResponse(`alive-${label}`, 200, 'OPTIONS'));
}

describe.each(['udp', 'tcp'] as const)('SIP server over %s', (transport) => {
  it('plain call: 100/200 with a correct answer, ACK, BYE → 200 and onEnd', async () => {
    const { server, handler } = await start();
    expect(server.ports.udp).toBe(server.ports.tcp);
    const c = await client(server, transport);
    c.send(request(c, 'INVITE', { callId: 'plain', body: offerSdp() }));
    await c.waitFor(isResponse('plain', 100));
    const ok = await c.waitFor(isResponse('plain', 200));
    const answer = parseSdp(ok.body.toString());
    expect(answer.connection?.address).toBe('127.0.0.1');
    expect(answer.media[0]).toMatchObject({ port: 40000, formats: ['0', '101'], direction: 'recvonly' });
    expect(ok.headers.get('contact')).toBe(`<sip:callscribe@127.0.0.1:${server.ports.udp}${transport === 'tcp' ? ';transport=tcp' : ''}>`);
    expect(handler.offers[0]?.source.transport).toBe(transport);
    c.send(request(c, 'ACK', { callId: 'plain', toTag: toTag(ok) }));
    c.send(request(c, 'BYE', { callId: 'plain', toTag: toTag(ok), cseq: 2 }));
    await c.waitFor(isResponse('plain', 200, 'BYE'));
    expect(handler.ended).toEqual([{ dialogId: handler.offers[0]!.dialogId, reason: 'bye' }]);
    expect(server.stats().dialogs).toMatchObject({ active: 0, accepted: 1 });
  });

  it('OPTIONS → 200 with Allow, Accept, Supported', async () => {
    const { server } = await start();
    const c = await client(server, transport);
    c.send(request(c, 'OPTIONS', { callId: 'opt' }));
    const ok = await c.waitFor(isResponse('opt', 200, 'OPTIONS'));
    expect(ok.headers.getAll('allow')).toEqual(['INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'UPDATE']);
    expect(ok.headers.getAll('accept')).toContain('multipart/mixed');
    expect(ok.headers.getAll('supported')).toEqual(['timer', 'siprec']);
  });

  it('SIPREC INVITE with a multipart body → two recvonly lines, roles to the handler', async () => {
    const { server, handler } = await start();
    const c = await client(server, transport);
    const body = readFileSync(new URL('./fixtures/cisco-cube-offer.txt', import.meta.url), 'utf8').replace(/\r?\n/g, '\r\n');
    c.send(request(c, 'INVITE', { callId: 'rec', body, contentType: 'multipart/mixed;boundary=uniqueBoundary', extra: ['Require: siprec'] }));
    const ok = await c.waitFor(isResponse('rec', 200));
    expect(parseSdp(ok.body.toString()).media.map((m) => [m.direction, m.label])).toEqual([['recvonly', '1'], ['recvonly', '2']]);
    expect(handler.offers[0]?.siprec?.roles?.streams.map((s) => s.role)).toEqual(['customer', 'agent']);
    c.send(request(c, 'ACK', { callId: 'rec', toTag: toTag(ok) }));
  });

  it('bad SIP is answered or dropped and the server keeps answering OPTIONS', async () => {
    const { server } = await start({ limits: { maxMessageBytes: 4096 } });
    const c = await client(server, transport);
    // missing From → 400 with a Warning naming the code
    c.send(request(c, 'INVITE', { callId: 'nofrom', body: offerSdp(), omit: ['from'] }));
    const bad = await c.waitFor(isResponse('nofrom', 400));
    expect(bad.headers.get('warning')).toContain('ERR_SIP_MISSING_HEADER (from)');
    await optionsStillAnswered(c, 'a');
    // INVITE without SDP → 488
    c.send(request(c, 'INVITE', { callId: 'nosdp' }));
    await c.waitFor(isResponse('nosdp', 488));
    // only G.729 → 488
    c.send(request(c, 'INVITE', { callId: 'g729', body: offerSdp('sendrecv', 1, '18') }));
    await c.waitFor(isResponse('g729', 488));
    // BYE for an unknown dialog → 481
    c.send(request(c, 'BYE', { callId: 'ghost', toTag: 'none' }));
    await c.waitFor(isResponse('ghost', 481, 'BYE'));
    await optionsStillAnswered(c, 'b');
    // oversized → 513
    c.send(request(c, 'OPTIONS', { callId: 'huge', extra: [`X-Pad: ${'p'.repeat(5000)}`] }));
    await c.waitFor(isResponse('huge', 513, 'OPTIONS'));
    const stats = server.stats();
    expect(stats.rejections).toMatchObject({ ERR_SIP_MISSING_HEADER: 1, ERR_SIP_NO_OFFER: 1, ERR_SIP_NO_ACCEPTABLE_MEDIA: 1, ERR_SIP_NO_DIALOG: 1, ERR_SIP_TOO_LARGE: 1 });
    if (transport === 'udp') await optionsStillAnswered(c, 'c');
    else {
      // TCP: an oversized message kills that connection only
      const again = await client(server, 'tcp');
      await optionsStillAnswered(again, 'c');
    }
  });
});

describe('SIP server over UDP: timers and races', () => {
  it('retransmits the 2xx until the ACK arrives', async () => {
    const { server } = await start();
    const c = await client(server, 'udp');
    c.send(request(c, 'INVITE', { callId: 'rtx', body: offerSdp() }));
    const ok = await c.waitFor(isResponse('rtx', 200));
    await sleep(200); // T1 = 20 ms: resent at 20, 60, 140 ms …
    const before = c.received.filter(isResponse('rtx', 200)).length;
    expect(before).toBeGreaterThanOrEqual(3);
    c.send(request(c, 'ACK', { callId: 'rtx', toTag: toTag(ok) }));
    await sleep(250);
    const settled = c.received.filter(isResponse('rtx', 200)).length;
    await sleep(250);
    expect(c.received.filter(isResponse('rtx', 200)).length).toBe(settled);
    expect(server.stats().dialogs.active).toBe(1);
  });

  it('no ACK → BYE after 64·T1 and onEnd(ack-timeout)', async () => {
    const { server, handler } = await start();
    const c = await client(server, 'udp');
    c.send(request(c, 'INVITE', { callId: 'noack', body: offerSdp() }));
    await c.waitFor(isResponse('noack', 200));
    const bye = await c.waitFor((m) => m.kind === 'request' && m.method === 'BYE', 3000);
    expect(bye.headers.get('call-id')).toBe('noack');
    expect(handler.ended.map((e) => e.reason)).toEqual(['ack-timeout']);
    expect(server.stats().dialogs.active).toBe(0);
  });

  it('CANCEL race: 200 for CANCEL, 487 for INVITE, and the late acceptance is released', async () => {
    const { server, handler } = await start();
    handler.decide = async (offer) => {
      await sleep(150);
      return { accept: { address: '127.0.0.1', media: offer.media.map((m) => ({ index: m.index, port: 41000 })) } };
    };
    const c = await client(server, 'udp');
    c.send(request(c, 'INVITE', { callId: 'cancel', branch: 'z9hG4bKcancel1', body: offerSdp() }));
    await c.waitFor(isResponse('cancel', 100));
    c.send(request(c, 'CANCEL', { callId: 'cancel', branch: 'z9hG4bKcancel1' }));
    await c.waitFor(isResponse('cancel', 200, 'CANCEL'));
    const terminated = await c.waitFor(isResponse('cancel', 487));
    c.send(request(c, 'ACK', { callId: 'cancel', branch: 'z9hG4bKcancel1', toTag: toTag(terminated) }));
    await sleep(250);
    expect(c.received.some(isResponse('cancel', 200))).toBe(false);
    expect(handler.ended.map((e) => e.reason)).toEqual(['cancel']);
  });

  it('re-INVITE hold and resume keep the call', async () => {
    const { server, handler } = await start();
    const c = await client(server, 'udp');
    c.send(request(c, 'INVITE', { callId: 'hold', body: offerSdp() }));
    const ok = await c.waitFor(isResponse('hold', 200));
    const tag = toTag(ok);
    c.send(request(c, 'ACK', { callId: 'hold', toTag: tag }));
    c.send(request(c, 'INVITE', { callId: 'hold', toTag: tag, cseq: 2, body: offerSdp('inactive', 2) }));
    const held = await c.waitFor(isResponse('hold', 200, 'INVITE', 2));
    expect(parseSdp(held.body.toString()).media[0]?.direction).toBe('inactive');
    c.send(request(c, 'ACK', { callId: 'hold', toTag: tag, cseq: 2 }));
    c.send(request(c, 'INVITE', { callId: 'hold', toTag: tag, cseq: 3, body: offerSdp('sendonly', 3) }));
    const resumed = await c.waitFor(isResponse('hold', 200, 'INVITE', 3));
    expect(parseSdp(resumed.body.toString()).media[0]?.direction).toBe('recvonly');
    c.send(request(c, 'ACK', { callId: 'hold', toTag: tag, cseq: 3 }));
    await sleep(100);
    expect(handler.reoffers.map((r) => r.offer.media[0]?.direction)).toEqual(['inactive', 'sendonly']);
    expect(handler.ended).toEqual([]);
    expect(server.stats().dialogs.active).toBe(1);
  });

  it('session timer: an UPDATE refresh keeps the call, no refresh ends it with a BYE', async () => {
    // timers of 30 s or more run 1000× faster: Session-Expires 1800 → expiry after ~1.77 s
    const compressed: TimerScheduler = {
      now: () => Date.now(),
      setTimer(ms, fn) {
        const t = setTimeout(fn, ms >= 30_000 ? ms / 1000 : ms);
        return () => clearTimeout(t);
      },
    };
    const { server, handler } = await start({ scheduler: compressed });
    const c = await client(server, 'udp');
    const st = ['Supported: timer', 'Session-Expires: 1800;refresher=uac'];
    c.send(request(c, 'INVITE', { callId: 'st', body: offerSdp(), extra: st }));
    const ok = await c.waitFor(isResponse('st', 200));
    expect(ok.headers.get('session-expires')).toBe('1800;refresher=uac');
    const tag = toTag(ok);
    c.send(request(c, 'ACK', { callId: 'st', toTag: tag }));
    await sleep(1000);
    c.send(request(c, 'UPDATE', { callId: 'st', toTag: tag, cseq: 2, extra: st }));
    await c.waitFor(isResponse('st', 200, 'UPDATE'));
    await sleep(1000); // 2 s after the 200: it would have expired at 1.77 s without the refresh
    expect(handler.ended).toEqual([]);
    await c.waitFor((m) => m.kind === 'request' && m.method === 'BYE', 3000);
    expect(handler.ended.map((e) => e.reason)).toEqual(['session-expired']);
  });
});

describe('SIP server: garbage, ACL and digest', () => {
  it('drops garbage datagrams and keep-alives without answering, counting them', async () => {
    const { server } = await start();
    const c = await client(server, 'udp');
    c.send(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x10]));
    c.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    c.send(Buffer.from('\r\n\r\n'));
    await optionsStillAnswered(c, 'garbage');
    expect(c.received).toHaveLength(1);
    const stats = server.stats();
    expect(stats.drops['ERR_SIP_NOT_SIP']).toBe(2);
    expect(stats.udp.keepalives).toBe(1);
  });

  it('answers a TCP CRLFCRLF ping with CRLF', async () => {
    const { server } = await start();
    const c = await tcpClient(server.ports.tcp!);
    clients.push(c);
    const pong = new Promise<Buffer>((resolve) => c.socket.once('data', resolve));
    c.send(Buffer.from('\r\n\r\n'));
    expect((await pong).toString()).toBe('\r\n');
    await optionsStillAnswered(c, 'ping');
  });

  it('drops sources outside the allow-list without a response (UDP and TCP)', async () => {
    const { server } = await start({ allowFrom: ['127.0.0.2/32'] });
    const denied = await client(server, 'udp', '127.0.0.1');
    denied.send(request(denied, 'OPTIONS', { callId: 'denied' }));
    const tcpDenied = net.connect(server.ports.tcp!, '127.0.0.1');
    const closed = new Promise<void>((r) => tcpDenied.once('close', () => r()));
    tcpDenied.on('error', () => undefined);
    await closed;
    const allowed = await client(server, 'udp', '127.0.0.2');
    await optionsStillAnswered(allowed, 'acl');
    expect(denied.received).toHaveLength(0);
    expect(server.stats().drops['ERR_SIP_SOURCE_DENIED']).toBe(2);
  });

  it('digest: 401 challenge, 403 on bad credentials, 200 on good ones', async () => {
    const { server } = await start({ auth: { realm: 'callscribe', secret: 's'.repeat(32), lookupPassword: (u) => (u === 'sbc' ? 'secret-pw' : undefined) } });
    const c = await client(server, 'udp');
    c.send(request(c, 'INVITE', { callId: 'auth', body: offerSdp() }));
    const challenge = await c.waitFor(isResponse('auth', 401));
    const nonce = /nonce="([^"]+)"/.exec(challenge.headers.get('www-authenticate') ?? '')?.[1] ?? '';
    expect(nonce).not.toBe('');
    const authz = (password: string): string => {
      const response = digestResponse({ username: 'sbc', realm: 'callscribe', password, method: 'INVITE', uri: 'sip:rec@127.0.0.1', nonce, nc: '00000001', cnonce: 'c0ffee', qop: 'auth' });
      return `Authorization: Digest username="sbc", realm="callscribe", nonce="${nonce}", uri="sip:rec@127.0.0.1", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`;
    };
    c.send(request(c, 'INVITE', { callId: 'auth', cseq: 2, body: offerSdp(), extra: [authz('guess')] }));
    await c.waitFor(isResponse('auth', 403, 'INVITE', 2));
    c.send(request(c, 'INVITE', { callId: 'auth', cseq: 3, body: offerSdp(), extra: [authz('secret-pw')] }));
    const ok = await c.waitFor(isResponse('auth', 200, 'INVITE', 3));
    c.send(request(c, 'ACK', { callId: 'auth', cseq: 3, toTag: toTag(ok) }));
    await optionsStillAnswered(c, 'auth');
  });

  it('close() sends BYE to live dialogs and is idempotent', async () => {
    const { server, handler } = await start();
    const c = await client(server, 'udp');
    c.send(request(c, 'INVITE', { callId: 'drain', body: offerSdp() }));
    const ok = await c.waitFor(isResponse('drain', 200));
    c.send(request(c, 'ACK', { callId: 'drain', toTag: toTag(ok) }));
    await sleep(50);
    const closing = server.close();
    await c.waitFor((m) => m.kind === 'request' && m.method === 'BYE');
    await Promise.all([closing, server.close()]);
    // the BYE was answered: close() did not have to wait for Timer F
    expect(server.stats().transactions.clientTimeouts).toBe(0);
    expect(handler.ended.map((e) => e.reason)).toEqual(['server-hangup']);
  });
});

/** A UAC-side response to a request the server sent (BYE). */
function answer(req: SipRequest, status: number): Buffer {
  const lines = [`SIP/2.0 ${status} OK`, ...req.headers.getAll('via').map((v) => `Via: ${v}`),
    `From: ${req.headers.get('from')}`, `To: ${req.headers.get('to')}`, `Call-ID: ${req.headers.get('call-id')}`, `CSeq: ${req.headers.get('cseq')}`];
  return sipText(lines);
}
