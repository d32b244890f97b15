/**
 * SIP transactions (RFC 3261 §17, as updated by RFC 6026), sans-I/O: time comes from an injected
 * scheduler and messages leave through a `send` callback.
 *
 * Server side (§17.2):
 * - INVITE: proceeding → (2xx) accepted [RFC 6026: Timer L = 64·T1; INVITE retransmissions are
 *   absorbed, an ACK matching the transaction goes to the core] | (300-699) completed [Timer G
 *   resends the response T1, 2·T1 … ≤ T2 on UDP; Timer H = 64·T1 gives up] → (ACK) confirmed
 *   [Timer I = T4 on UDP, 0 on TCP] → terminated. A retransmitted INVITE resends the last
 *   provisional (proceeding) or final (completed) response.
 * - non-INVITE: trying → proceeding → completed [Timer J = 64·T1 on UDP, 0 on TCP]; a
 *   retransmission resends the last response.
 * - matching (§17.2.3): top Via branch (z9hG4bK…) + sent-by + method, ACK matching INVITE;
 *   RFC 2543 requests without the magic cookie match on Call-ID, From tag, CSeq number and the
 *   top Via.
 * Client side (§17.1.2), for the BYE we send: Timer E resends T1 … ≤ T2 on UDP (T2 once a
 * provisional arrived), Timer F = 64·T1 times out, Timer K = T4 (UDP) absorbs retransmitted
 * responses. Responses match on the top Via branch + CSeq method (§17.1.3).
 * The UAS core's 2xx retransmission until ACK (§13.3.1.4) is `retransmitUntilAck`.
 */
import type { SipMessage, SipRequest, SipResponse, ViaHeader } from './message.js';
import { parseCSeq, parseNameAddr, parseVia, tagOf } from './message.js';

export type CancelTimer = () => void;

export interface TimerScheduler {
  now(): number;
  setTimer(delayMs: number, fn: () => void): CancelTimer;
}

export const systemScheduler: TimerScheduler = {
  now: () => Date.now(),
  setTimer(delayMs, fn) {
    const t = setTimeout(fn, delayMs);
    t.unref();
    return () => clearTimeout(t);
  },
};

export interface SipTimers {
  readonly t1Ms: number;
  readonly t2Ms: number;
  readonly t4Ms: number;
}

export const DEFAULT_TIMERS: SipTimers = { t1Ms: 500, t2Ms: 4000, t4Ms: 5000 };

export type SipTransport = 'udp' | 'tcp';

/** Where a message goes (or came from). `connectionId` names a TCP connection. */
export interface Peer {
  readonly transport: SipTransport;
  readonly address: string;
  readonly port: number;
  readonly connectionId?: string;
}

export type SendFn = (msg: SipMessage, peer: Peer) => void;

export const MAGIC_COOKIE = 'z9hG4bK';

/** Transaction key of a request (§17.2.3); ACK maps to its INVITE. */
export function transactionKey(req: SipRequest, via: ViaHeader): string {
  const method = req.method === 'ACK' ? 'INVITE' : req.method;
  const branch = via.params.get('branch');
  if (branch && branch.startsWith(MAGIC_COOKIE)) return `${branch}|${via.host}:${via.port ?? ''}|${method}`;
  const from = parseNameAddr(req.headers.get('from') ?? '');
  const cseq = parseCSeq(req.headers.get('cseq') ?? '');
  return `2543|${req.headers.get('call-id') ?? ''}|${from ? (tagOf(from) ?? '') : ''}|${cseq?.seq ?? ''}|${via.host}:${via.port ?? ''}|${branch ?? ''}|${method}`;
}

export type ServerTxState = 'trying' | 'proceeding' | 'accepted' | 'completed' | 'confirmed' | 'terminated';

export interface ServerTransaction {
  readonly key: string;
  readonly method: string;
  readonly request: SipRequest;
  /** Where responses go (Via + received/rport, resolved by the caller). */
  readonly peer: Peer;
  readonly state: ServerTxState;
  readonly finalResponse: SipResponse | null;
  respond(res: SipResponse): void;
}

export type RequestDisposition =
  | { readonly kind: 'new'; readonly tx: ServerTransaction }
  /** A retransmission (the last response was resent if there was one) or a spurious ACK. */
  | { readonly kind: 'absorbed' }
  /** An ACK for a 2xx: belongs to the dialog, not to a transaction. */
  | { readonly kind: 'core-ack' }
  /** The transaction table is full: answer statelessly (503). */
  | { readonly kind: 'overload' };

export interface TransactionStats {
  serverTransactions: number;
  clientTransactions: number;
  retransmissionsReceived: number;
  responsesResent: number;
  requestsResent: number;
  inviteAckTimeouts: number;
  clientTimeouts: number;
  strayResponses: number;
}

export interface ClientCallbacks {
  onResponse(res: SipResponse): void;
  /** Timer F (or a transport error reported by the caller). */
  onTimeout(): void;
}

interface ServerTxImpl extends ServerTransaction {
  state: ServerTxState;
  finalResponse: SipResponse | null;
  provisional: SipResponse | null;
  timers: CancelTimer[];
}

interface ClientTx {
  readonly key: string;
  state: 'trying' | 'proceeding' | 'completed';
  timers: CancelTimer[];
  readonly handle: (res: SipResponse) => void;
}

export interface TransactionLayerOptions {
  readonly scheduler: TimerScheduler;
  readonly timers: SipTimers;
  readonly send: SendFn;
  readonly maxTransactions: number;
}

export class TransactionLayer {
  private readonly server = new Map<string, ServerTxImpl>();
  private readonly client = new Map<string, ClientTx>();
  private readonly opts: TransactionLayerOptions;
  readonly stats: TransactionStats = {
    serverTransactions: 0, clientTransactions: 0, retransmissionsReceived: 0, responsesResent: 0,
    requestsResent: 0, inviteAckTimeouts: 0, clientTimeouts: 0, strayResponses: 0,
  };

  constructor(opts: TransactionLayerOptions) {
    this.opts = opts;
  }

  get size(): number {
    return this.server.size + this.client.size;
  }

  /** Feeds a received request (top Via already parsed). */
  receiveRequest(req: SipRequest, via: ViaHeader, peer: Peer): RequestDisposition {
    const key = transactionKey(req, via);
    const tx = this.server.get(key);
    if (req.method === 'ACK') {
      if (!tx) return { kind: 'core-ack' };
      if (tx.state === 'accepted') return { kind: 'core-ack' }; // RFC 6026 §8.5
      if (tx.state === 'completed') {
        this.clearTimers(tx);
        tx.state = 'confirmed';
        this.after(tx, peer.transport === 'udp' ? this.opts.timers.t4Ms : 0, () => this.terminate(tx)); // Timer I
      }
      return { kind: 'absorbed' };
    }
    if (tx) {
      this.stats.retransmissionsReceived++;
      const resend = tx.state === 'completed' ? tx.finalResponse : tx.state === 'proceeding' ? tx.provisional : null;
      if (resend) this.resend(resend, tx.peer);
      return { kind: 'absorbed' };
    }
    if (this.size >= this.opts.maxTransactions) return { kind: 'overload' };
    const created: ServerTxImpl = {
      key, method: req.method, request: req, peer, finalResponse: null, provisional: null, timers: [],
      state: req.method === 'INVITE' ? 'proceeding' : 'trying',
      respond: (res) => this.respond(created, res),
    };
    this.server.set(key, created);
    this.stats.serverTransactions++;
    return { kind: 'new', tx: created };
  }

  /** The INVITE server transaction a CANCEL refers to (§9.2), if any. */
  findInvite(cancel: SipRequest, via: ViaHeader): ServerTransaction | undefined {
    const key = transactionKey({ ...cancel, method: 'INVITE' }, via);
    return this.server.get(key);
  }

  private respond(tx: ServerTxImpl, res: SipResponse): void {
    if (tx.state === 'terminated' || tx.state === 'completed' || tx.state === 'confirmed' || tx.state === 'accepted') {
      return; // a final response was already sent
    }
    const { timers } = this.opts;
    const udp = tx.peer.transport === 'udp';
    this.opts.send(res, tx.peer);
    if (res.status < 200) {
      tx.provisional = res;
      if (tx.state === 'trying') tx.state = 'proceeding';
      return;
    }
    tx.finalResponse = res;
    if (tx.method !== 'INVITE') {
      tx.state = 'completed';
      this.after(tx, udp ? 64 * timers.t1Ms : 0, () => this.terminate(tx)); // Timer J
      return;
    }
    if (res.status < 300) {
      tx.state = 'accepted';
      this.after(tx, 64 * timers.t1Ms, () => this.terminate(tx)); // Timer L
      return;
    }
    tx.state = 'completed';
    if (udp) {
      let interval = timers.t1Ms;
      const timerG = (): void => {
        if (tx.state !== 'completed') return;
        this.resend(res, tx.peer);
        interval = Math.min(2 * interval, timers.t2Ms);
        this.after(tx, interval, timerG);
      };
      this.after(tx, interval, timerG);
    }
    this.after(tx, 64 * timers.t1Ms, () => {
      // Timer H: no ACK ever came
      if (tx.state === 'completed') this.stats.inviteAckTimeouts++;
      this.terminate(tx);
    });
  }

  /** Sends a non-INVITE request (BYE) reliably; the request's top Via must carry a fresh branch. */
  sendRequest(req: SipRequest, peer: Peer, callbacks: ClientCallbacks): void {
    const branch = parseVia(req.headers.get('via') ?? '')?.params.get('branch');
    if (!branch || req.method === 'INVITE' || req.method === 'ACK') {
      throw new Error('sendRequest: a non-INVITE request with a Via branch is required');
    }
    const { timers, scheduler } = this.opts;
    const udp = peer.transport === 'udp';
    const tx: ClientTx = {
      key: `${branch}|${req.method}`,
      state: 'trying',
      timers: [],
      handle: (res) => {
        if (tx.state === 'completed') return; // Timer K: absorb retransmitted responses
        if (res.status < 200) {
          tx.state = 'proceeding';
          return;
        }
        tx.state = 'completed';
        this.cancelClient(tx);
        callbacks.onResponse(res);
        add(udp ? timers.t4Ms : 0, () => this.endClient(tx)); // Timer K
      },
    };
    const add = (ms: number, fn: () => void): void => {
      tx.timers.push(scheduler.setTimer(ms, fn));
    };
    this.client.set(tx.key, tx);
    this.stats.clientTransactions++;
    this.opts.send(req, peer);
    if (udp) {
      let interval = timers.t1Ms;
      const timerE = (): void => {
        if (tx.state === 'completed') return;
        this.stats.requestsResent++;
        this.opts.send(req, peer);
        interval = tx.state === 'proceeding' ? timers.t2Ms : Math.min(2 * interval, timers.t2Ms);
        add(interval, timerE);
      };
      add(interval, timerE);
    }
    add(64 * timers.t1Ms, () => {
      // Timer F
      if (tx.state === 'completed') return;
      this.stats.clientTimeouts++;
      this.endClient(tx);
      callbacks.onTimeout();
    });
  }

  /** Feeds a received response; false when it matches no client transaction. */
  receiveResponse(res: SipResponse): boolean {
    const branch = parseVia(res.headers.get('via') ?? '')?.params.get('branch');
    const cseq = parseCSeq(res.headers.get('cseq') ?? '');
    const tx = branch && cseq ? this.client.get(`${branch}|${cseq.method}`) : undefined;
    if (!tx) {
      this.stats.strayResponses++;
      return false;
    }
    tx.handle(res);
    return true;
  }

  private cancelClient(tx: ClientTx): void {
    for (const cancel of tx.timers) cancel();
    tx.timers = [];
  }

  private endClient(tx: ClientTx): void {
    this.cancelClient(tx);
    if (this.client.get(tx.key) === tx) this.client.delete(tx.key);
  }

  /** Cancels every timer (shutdown). */
  close(): void {
    for (const tx of this.server.values()) this.clearTimers(tx);
    for (const tx of this.client.values()) this.cancelClient(tx);
    this.server.clear();
    this.client.clear();
  }

  private resend(res: SipResponse, peer: Peer): void {
    this.stats.responsesResent++;
    this.opts.send(res, peer);
  }

  private after(tx: ServerTxImpl, ms: number, fn: () => void): void {
    tx.timers.push(this.opts.scheduler.setTimer(ms, fn));
  }

  private clearTimers(tx: ServerTxImpl): void {
    for (const cancel of tx.timers) cancel();
    tx.timers = [];
  }

  private terminate(tx: ServerTxImpl): void {
    this.clearTimers(tx);
    tx.state = 'terminated';
    if (this.server.get(tx.key) === tx) this.server.delete(tx.key);
  }
}

/**
 * The UAS core's 2xx retransmission (§13.3.1.4): resend at T1, 2·T1 … capped at T2 until
 * `stop()` (the ACK arrived); after 64·T1 without an ACK, `onGiveUp` (the caller ends the call).
 */
export function retransmitUntilAck(
  scheduler: TimerScheduler,
  timers: SipTimers,
  resend: () => void,
  onGiveUp: () => void,
): { stop(): void } {
  let stopped = false;
  let interval = timers.t1Ms;
  let cancelResend: CancelTimer = scheduler.setTimer(interval, function tick() {
    if (stopped) return;
    resend();
    interval = Math.min(2 * interval, timers.t2Ms);
    cancelResend = scheduler.setTimer(interval, tick);
  });
  const cancelGiveUp = scheduler.setTimer(64 * timers.t1Ms, () => {
    if (stopped) return;
    stopped = true;
    cancelResend();
    onGiveUp();
  });
  return {
    stop() {
      stopped = true;
      cancelResend();
      cancelGiveUp();
    },
  };
}
