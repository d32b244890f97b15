import { describe, expect, it } from 'vitest';
import { createResponse, parseSipMessage, parseVia, type SipMessage, type SipRequest } from './message.js';
import { ManualScheduler, sipText } from './testing.js';
import { TransactionLayer, retransmitUntilAck, transactionKey, type Peer } from './transactions.js';

const T = { t1Ms: 100, t2Ms: 400, t4Ms: 500 };
const UDP: Peer = { transport: 'udp', address: '192.0.2.1', port: 5060 };
const TCP: Peer = { transport: 'tcp', address: '192.0.2.1', port: 40000, connectionId: 'c1' };

function request(method: string, opts: { branch?: string; cseqMethod?: string; toTag?: boolean } = {}): SipRequest {
  const m = parseSipMessage(sipText([
    `${method} sip:rec@192.0.2.10 SIP/2.0`,
    `Via: SIP/2.0/UDP 192.0.2.1:5060;branch=${opts.branch ?? 'z9hG4bKabc'}`,
    'From: <sip:a@h>;tag=f1',
    `To: <sip:rec@h>${opts.toTag ? ';tag=t1' : ''}`,
    'Call-ID: call-1',
    `CSeq: 1 ${opts.cseqMethod ?? method}`,
  ]));
  if (m.kind !== 'request') throw new Error('request expected');
  return m;
}

function setup() {
  const scheduler = new ManualScheduler();
  const sent: Array<{ msg: SipMessage; peer: Peer }> = [];
  const layer = new TransactionLayer({ scheduler, timers: T, send: (msg, peer) => sent.push({ msg, peer }), maxTransactions: 10 });
  const receive = (req: SipRequest, peer: Peer = UDP) => layer.receiveRequest(req, parseVia(req.headers.get('via')!)!, peer);
  const statuses = () => sent.map((s) => (s.msg.kind === 'response' ? s.msg.status : s.msg.method));
  return { scheduler, sent, layer, receive, statuses };
}

function newTx(r: ReturnType<ReturnType<typeof setup>['receive']>) {
  if (r.kind !== 'new') throw new Error(`expected a new transaction, got ${r.kind}`);
  return r.tx;
}

describe('INVITE server transaction', () => {
  it('resends the last provisional on a retransmitted INVITE', () => {
    const { receive, statuses } = setup();
    const tx = newTx(receive(request('INVITE')));
    tx.respond(createResponse(tx.request, 100));
    expect(receive(request('INVITE')).kind).toBe('absorbed');
    expect(statuses()).toEqual([100, 100]);
  });

  it('non-2xx over UDP: Timer G doubles to T2 until ACK, then Timer I ends it', () => {
    const { receive, statuses, scheduler, layer } = setup();
    const tx = newTx(receive(request('INVITE')));
    tx.respond(createResponse(tx.request, 486, { toTag: 'x' }));
    scheduler.advance(100); // G: 100
    scheduler.advance(200); // G: 200
    scheduler.advance(400); // G: 400 (T2)
    scheduler.advance(400); // G: 400
    expect(statuses()).toEqual([486, 486, 486, 486, 486]);
    // a retransmitted INVITE also gets the final response again
    expect(receive(request('INVITE')).kind).toBe('absorbed');
    expect(statuses()).toHaveLength(6);
    expect(receive(request('ACK', { cseqMethod: 'ACK' })).kind).toBe('absorbed');
    expect(tx.state).toBe('confirmed');
    scheduler.advance(10_000);
    expect(statuses()).toHaveLength(6); // no more retransmissions
    expect(tx.state).toBe('terminated');
    expect(layer.size).toBe(0);
  });

  it('non-2xx without ACK: Timer H gives up after 64·T1 and counts it', () => {
    const { receive, scheduler, layer, statuses } = setup();
    const tx = newTx(receive(request('INVITE')));
    tx.respond(createResponse(tx.request, 488, { toTag: 'x' }));
    scheduler.advance(64 * T.t1Ms - 1);
    expect(tx.state).toBe('completed');
    const count = statuses().length;
    expect(count).toBeGreaterThan(10);
    scheduler.advance(1);
    expect(tx.state).toBe('terminated');
    expect(layer.stats.inviteAckTimeouts).toBe(1);
  });

  it('non-2xx over TCP: no Timer G; ACK ends it at once (Timer I = 0)', () => {
    const { receive, scheduler, statuses } = setup();
    const tx = newTx(receive(request('INVITE'), TCP));
    tx.respond(createResponse(tx.request, 486, { toTag: 'x' }));
    scheduler.advance(1000);
    expect(statuses()).toEqual([486]);
    receive(request('ACK', { cseqMethod: 'ACK' }), TCP);
    scheduler.advance(0);
    expect(tx.state).toBe('terminated');
  });

  it('2xx: accepted (RFC 6026) absorbs INVITE retransmissions and passes ACKs to the core, Timer L ends it', () => {
    const { receive, scheduler, statuses } = setup();
    const tx = newTx(receive(request('INVITE')));
    tx.respond(createResponse(tx.request, 200, { toTag: 'x' }));
    expect(tx.state).toBe('accepted');
    expect(receive(request('INVITE')).kind).toBe('absorbed');
    expect(statuses()).toEqual([200]);
    expect(receive(request('ACK', { cseqMethod: 'ACK' })).kind).toBe('core-ack');
    scheduler.advance(64 * T.t1Ms);
    expect(tx.state).toBe('terminated');
    // an ACK with a new branch never matches a transaction
    expect(receive(request('ACK', { cseqMethod: 'ACK', branch: 'z9hG4bKother' })).kind).toBe('core-ack');
  });

  it('ignores a second final response', () => {
    const { receive, statuses } = setup();
    const tx = newTx(receive(request('INVITE')));
    tx.respond(createResponse(tx.request, 487));
    tx.respond(createResponse(tx.request, 200));
    expect(statuses()).toEqual([487]);
  });
});

describe('non-INVITE server transaction', () => {
  it('absorbs retransmissions while trying, resends the final while completed, Timer J = 64·T1 on UDP', () => {
    const { receive, scheduler, statuses, layer } = setup();
    const tx = newTx(receive(request('BYE', { toTag: true })));
    expect(receive(request('BYE', { toTag: true })).kind).toBe('absorbed');
    expect(statuses()).toEqual([]);
    tx.respond(createResponse(tx.request, 200));
    receive(request('BYE', { toTag: true }));
    expect(statuses()).toEqual([200, 200]);
    scheduler.advance(64 * T.t1Ms - 1);
    expect(layer.size).toBe(1);
    scheduler.advance(1);
    expect(layer.size).toBe(0);
  });

  it('Timer J is 0 over TCP', () => {
    const { receive, scheduler, layer } = setup();
    const tx = newTx(receive(request('OPTIONS'), TCP));
    tx.respond(createResponse(tx.request, 200));
    scheduler.advance(0);
    expect(layer.size).toBe(0);
  });
});

describe('matching', () => {
  it('keys on branch + sent-by + method (ACK → INVITE, CANCEL separate)', () => {
    const inv = request('INVITE');
    const via = parseVia(inv.headers.get('via')!)!;
    expect(transactionKey(request('ACK', { cseqMethod: 'ACK' }), via)).toBe(transactionKey(inv, via));
    expect(transactionKey(request('CANCEL'), via)).not.toBe(transactionKey(inv, via));
    const { receive, layer } = setup();
    const tx = newTx(receive(inv));
    const cancel = request('CANCEL');
    expect(layer.findInvite(cancel, parseVia(cancel.headers.get('via')!)!)).toBe(tx);
    const other = request('CANCEL', { branch: 'z9hG4bKnope' });
    expect(layer.findInvite(other, parseVia(other.headers.get('via')!)!)).toBeUndefined();
  });

  it('matches RFC 2543 requests (no magic cookie) on Call-ID, From tag, CSeq and Via', () => {
    const { receive } = setup();
    newTx(receive(request('INVITE', { branch: 'oldstyle1' })));
    expect(receive(request('INVITE', { branch: 'oldstyle1' })).kind).toBe('absorbed');
  });

  it('refuses new transactions when the table is full', () => {
    const { receive } = setup();
    for (let i = 0; i < 10; i++) newTx(receive(request('OPTIONS', { branch: `z9hG4bK${i}` })));
    expect(receive(request('OPTIONS', { branch: 'z9hG4bK-full' })).kind).toBe('overload');
  });
});

describe('client transaction (BYE)', () => {
  function bye(branch = 'z9hG4bKbye1') {
    const m = parseSipMessage(sipText(['BYE sip:a@192.0.2.1 SIP/2.0', `Via: SIP/2.0/UDP 192.0.2.10:5060;branch=${branch}`, 'CSeq: 1 BYE', 'Call-ID: c']));
    if (m.kind !== 'request') throw new Error('request expected');
    return m;
  }

  it('Timer E retransmits T1, 2·T1 … ≤ T2 on UDP until a final response, then absorbs repeats', () => {
    const { layer, scheduler, statuses } = setup();
    const results: number[] = [];
    layer.sendRequest(bye(), UDP, { onResponse: (r) => results.push(r.status), onTimeout: () => results.push(-1) });
    scheduler.advance(100 + 200 + 400 + 400);
    expect(statuses()).toEqual(['BYE', 'BYE', 'BYE', 'BYE', 'BYE']);
    const ok = parseSipMessage(sipText(['SIP/2.0 200 OK', 'Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKbye1', 'CSeq: 1 BYE']));
    if (ok.kind !== 'response') throw new Error('response expected');
    expect(layer.receiveResponse(ok)).toBe(true);
    expect(layer.receiveResponse(ok)).toBe(true); // Timer K absorbs
    scheduler.advance(10_000);
    expect(results).toEqual([200]);
    expect(statuses()).toHaveLength(5);
    expect(layer.receiveResponse(ok)).toBe(false); // after Timer K
  });

  it('Timer F times out after 64·T1; TCP sends once', () => {
    const { layer, scheduler, statuses } = setup();
    let timedOut = 0;
    layer.sendRequest(bye(), TCP, { onResponse: () => undefined, onTimeout: () => timedOut++ });
    scheduler.advance(64 * T.t1Ms);
    expect(timedOut).toBe(1);
    expect(statuses()).toEqual(['BYE']);
    expect(layer.stats.clientTimeouts).toBe(1);
  });

  it('a provisional response slows Timer E to T2', () => {
    const { layer, scheduler, statuses } = setup();
    layer.sendRequest(bye(), UDP, { onResponse: () => undefined, onTimeout: () => undefined });
    const trying = parseSipMessage(sipText(['SIP/2.0 100 Trying', 'Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKbye1', 'CSeq: 1 BYE']));
    if (trying.kind !== 'response') throw new Error('response expected');
    layer.receiveResponse(trying);
    scheduler.advance(100); // first E fires at T1 and reschedules at T2
    scheduler.advance(399);
    expect(statuses()).toHaveLength(2);
    scheduler.advance(1);
    expect(statuses()).toHaveLength(3);
  });
});

describe('retransmitUntilAck', () => {
  it('resends at T1, 2·T1 … ≤ T2 and gives up at 64·T1', () => {
    const scheduler = new ManualScheduler();
    const at: number[] = [];
    let gaveUp = false;
    retransmitUntilAck(scheduler, T, () => at.push(scheduler.now()), () => {
      gaveUp = true;
    });
    scheduler.advance(64 * T.t1Ms);
    expect(at.slice(0, 5)).toEqual([100, 300, 700, 1100, 1500]);
    expect(gaveUp).toBe(true);
    expect(scheduler.pending).toBe(0);
  });

  it('stops on ACK', () => {
    const scheduler = new ManualScheduler();
    let sends = 0;
    let gaveUp = false;
    const r = retransmitUntilAck(scheduler, T, () => sends++, () => {
      gaveUp = true;
    });
    scheduler.advance(150);
    r.stop();
    scheduler.advance(10_000);
    expect(sends).toBe(1);
    expect(gaveUp).toBe(false);
  });
});
