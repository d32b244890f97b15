/**
 * The SIP UAS core (RFC 3261 §8.2, §12-§15; RFC 3311 UPDATE; RFC 4028 timers; RFC 7866 SIPREC),
 * sans-I/O: parsed messages in (`receive`), messages out through `send`, time from the injected
 * scheduler. The socket adapter (server.ts) parses, applies the source ACL and frames TCP.
 *
 * Request pipeline, each rejection with a stable code (counted, rate-limited log):
 *  1. mandatory headers (Via, From, To, Call-ID, CSeq)      → 400 ERR_SIP_MISSING_HEADER / _BAD_HEADER
 *     (no usable Via: dropped; ACK is never answered)
 *  2. Via stamped with received/rport (RFC 3581); transaction layer absorbs retransmissions
 *  3. method: CANCEL (§9.2); unknown → 501 ERR_SIP_NOT_IMPLEMENTED; known but not
 *     allowed → 405 ERR_SIP_METHOD_NOT_ALLOWED (with Allow)
 *  4. Require with an option tag other than timer/siprec     → 420 ERR_SIP_BAD_EXTENSION
 *  5. new INVITE: shutting down → 503; merged request → 482; digest (401/403); capacity → 503;
 *     Contact → 400; Session-Expires < Min-SE → 422; body: Content-Encoding → 415, Content-Type
 *     not sdp / multipart/mixed → 415, no SDP (late offer) → 488 ERR_SIP_NO_OFFER (Warning 399;
 *     488 rather than 606 because another SRS/route may well accept the same call),
 *     bad SDP → 400, bad multipart → 400, no G.711 line → 488 ERR_SIP_NO_ACCEPTABLE_MEDIA
 *     (Warning 305); then the handler decides (timeout → 500).
 *  6. in-dialog: unknown dialog → 481 ERR_SIP_NO_DIALOG; CSeq not increasing → 500; offer while
 *     one is pending → 500 + Retry-After (re-INVITE, §14.2) / 491 (UPDATE, RFC 3311 §5.2).
 * A re-INVITE without SDP is answered with our current SDP as the offer (the ACK's answer is not
 * inspected). Hangup while a 2xx awaits its ACK defers the BYE until the ACK or its timeout (§15).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import type { Logger } from '../../observability/logger.js';
import { AppError } from '../../core/errors.js';
import {
  SipError, createResponse, formatVia, optionTags, parseNameAddr, parseUri, parseVia, tagOf, validateRequest,
  type NameAddr, type ResponseOptions, type SipMessage, type SipRequest, type ValidatedRequest, type ViaHeader,
} from './message.js';
import {
  SdpError, buildAnswer, chooseG711, hasAcceptableAudio, nextSessionVersion, parseSdp, telephoneEventPt,
  type SdpLimits, type SessionDescription,
} from './sdp.js';
import { SiprecError, assignSiprecRoles, parseContentType, parseRecordingMetadata, parseSiprecBody, type RecordingMetadata, type SiprecRoleOptions } from './siprec.js';
import type { DigestAuth } from './digest.js';
import {
  DialogStore, SUPPORTED_OPTION_TAGS, acceptsCSeq, buildBye, negotiateSessionTimer, requestDestination, sessionExpiryDelayMs,
  type Dialog, type OurAddress, type SessionTimerDecision,
} from './dialogs.js';
import {
  TransactionLayer, MAGIC_COOKIE, retransmitUntilAck,
  type Peer, type SendFn, type ServerTransaction, type SipTimers, type SipTransport, type TimerScheduler, type TransactionStats,
} from './transactions.js';
import { SipCounters, type SipCounterSnapshot } from './stats.js';
import type { InviteOffer, OfferDecision, OfferedMedia, SipCallHandler, SipEndReason, SipParty, SiprecInfo } from './types.js';

export const ALLOWED_METHODS: readonly string[] = ['INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'UPDATE'];
/** Methods we recognise but do not allow (405); anything else is 501. */
const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'REGISTER', 'PRACK', 'SUBSCRIBE', 'NOTIFY', 'PUBLISH', 'INFO', 'REFER', 'MESSAGE',
]);
const ACCEPT = 'application/sdp, multipart/mixed, application/rs-metadata+xml';

export interface SipUasOptions {
  readonly handler: SipCallHandler;
  readonly send: SendFn;
  readonly scheduler: TimerScheduler;
  readonly timers: SipTimers;
  readonly logger: Logger;
  /** Our advertised host:port per transport (Contact, Via of our requests). */
  readonly localAddress: (transport: SipTransport) => OurAddress;
  readonly auth?: DigestAuth | undefined;
  readonly siprecRoles: SiprecRoleOptions;
  /** Our Min-SE in seconds (RFC 4028; at least 90). */
  readonly minSessionExpiresS: number;
  readonly maxDialogs: number;
  readonly maxTransactions: number;
  readonly handlerTimeoutMs: number;
  readonly userAgent: string;
  readonly sdpLimits?: SdpLimits;
}

export interface SipUasStats extends SipCounterSnapshot {
  readonly requests: Readonly<Record<string, number>>;
  readonly dialogs: {
    readonly active: number;
    readonly pendingInvites: number;
    readonly accepted: number;
    readonly ended: Readonly<Record<string, number>>;
  };
  readonly transactions: TransactionStats & { readonly active: number };
}

interface Pending {
  readonly dialogId: string;
  readonly localTag: string;
  readonly tx: ServerTransaction;
  /** Set when a CANCEL or shutdown answered the INVITE before the handler did. */
  endedBy: SipEndReason | null;
  readonly mergeKey: string;
}

type BodyResult =
  | { readonly kind: 'reject'; readonly status: number; readonly code: string; readonly headers?: ReadonlyArray<readonly [string, string]>; readonly warning?: string }
  | {
    readonly kind: 'ok';
    readonly sdp: SessionDescription | null;
    /** Null when the body had no metadata part. */
    readonly metadata: { readonly metadata: RecordingMetadata | null; readonly error: string | null } | null;
  };

const token = (bytes: number): string => randomBytes(bytes).toString('hex');

function isAccept(d: OfferDecision): d is Extract<OfferDecision, { accept: unknown }> {
  return 'accept' in d;
}

export class SipUas {
  readonly counters: SipCounters;
  private readonly opts: SipUasOptions;
  private readonly layer: TransactionLayer;
  private readonly dialogs = new DialogStore();
  private readonly pending = new Map<string, Pending>();
  private readonly requestCounts = new Map<string, number>();
  private readonly endedCounts = new Map<string, number>();
  private accepted = 0;
  private closing = false;
  private readonly byesInFlight = new Set<Promise<void>>();
  /** Deferred hangups: a BYE waits for the ACK of our 2xx (§15). */
  private readonly pendingHangups = new Map<Dialog, string>();

  constructor(opts: SipUasOptions) {
    this.opts = opts;
    this.counters = new SipCounters(opts.logger, () => opts.scheduler.now());
    this.layer = new TransactionLayer({
      scheduler: opts.scheduler, timers: opts.timers, send: opts.send, maxTransactions: opts.maxTransactions,
    });
  }

  /** A parsed message from `source`. */
  receive(msg: SipMessage, source: Peer): void {
    if (msg.kind === 'response') {
      if (!this.layer.receiveResponse(msg)) this.counters.drop('ERR_SIP_STRAY_RESPONSE');
      return;
    }
    const method = KNOWN_METHODS.has(msg.method) || ALLOWED_METHODS.includes(msg.method) ? msg.method : 'other';
    this.requestCounts.set(method, (this.requestCounts.get(method) ?? 0) + 1);
    const v = validateRequest(msg);
    if (v instanceof SipError) {
      this.rejectUnparsable(v, source);
      return;
    }
    const via = this.stampVia(msg, v.topVia, source);
    const peer = responsePeer(via, source);
    const disposition = this.layer.receiveRequest(msg, via, peer);
    switch (disposition.kind) {
      case 'absorbed':
        return;
      case 'core-ack':
        this.handleAck(v);
        return;
      case 'overload':
        if (msg.method !== 'ACK') this.sendStateless(msg, peer, 503, 'ERR_SIP_OVERLOAD', [['Retry-After', '5']]);
        else this.counters.drop('ERR_SIP_OVERLOAD');
        return;
      case 'new':
        this.dispatch(v, disposition.tx, source);
    }
  }

  /** A message that failed to parse: answered 400 (or its status) when its Via is usable. */
  rejectUnparsable(err: SipError, source: Peer): void {
    const req = err.partial;
    const via = req ? parseVia(req.headers.get('via') ?? '') : null;
    if (!req || !via || req.method === 'ACK') {
      this.counters.drop(err.code, { header: err.header, transport: source.transport });
      return;
    }
    const stamped = this.stampVia(req, via, source);
    const headers: Array<readonly [string, string]> = [['Warning', this.warning(399, `${err.code}${err.header ? ` (${err.header})` : ''}`)]];
    this.sendStateless(req, responsePeer(stamped, source), err.status, err.code, headers);
  }

  /** Sends BYE and ends the dialog; false when no such established dialog. */
  hangup(dialogId: string, reason = 'server-hangup'): boolean {
    const d = this.dialogs.get(dialogId);
    if (!d || d.ended) return false;
    if (d.awaitingAck) {
      this.pendingHangups.set(d, reason);
      return true;
    }
    this.end(d, 'server-hangup', reason);
    return true;
  }

  /** Ends everything: pending INVITEs get 503, live dialogs a BYE; resolves when the BYEs complete or `timeoutMs` passes. */
  async close(timeoutMs = 2000): Promise<void> {
    this.closing = true;
    for (const p of [...this.pending.values()]) {
      if (p.tx.state === 'proceeding') {
        p.endedBy = 'server-hangup';
        this.respond(p.tx, 503, { toTag: p.localTag, headers: [['Retry-After', '5']] });
      }
    }
    for (const d of this.dialogs.all()) this.end(d, 'server-hangup', 'shutdown');
    if (this.byesInFlight.size > 0) {
      await new Promise<void>((resolve) => {
        const cancel = this.opts.scheduler.setTimer(timeoutMs, resolve);
        void Promise.all([...this.byesInFlight]).then(() => {
          cancel();
          resolve();
        });
      });
    }
    this.layer.close();
  }

  stats(): SipUasStats {
    return {
      ...this.counters.snapshot(),
      requests: Object.fromEntries(this.requestCounts),
      dialogs: {
        active: this.dialogs.size,
        pendingInvites: this.pending.size,
        accepted: this.accepted,
        ended: Object.fromEntries(this.endedCounts),
      },
      transactions: { ...this.layer.stats, active: this.layer.size },
    };
  }

  // -------------------------------------------------------------------------------------------

  private dispatch(v: ValidatedRequest, tx: ServerTransaction, source: Peer): void {
    const { method } = v.request;
    if (method === 'CANCEL') return this.handleCancel(v, tx);
    if (!ALLOWED_METHODS.includes(method)) {
      if (KNOWN_METHODS.has(method)) this.reject(tx, 405, 'ERR_SIP_METHOD_NOT_ALLOWED', { headers: [['Allow', ALLOWED_METHODS.join(', ')]] });
      else this.reject(tx, 501, 'ERR_SIP_NOT_IMPLEMENTED');
      return;
    }
    const unsupported = optionTags(v.request.headers, 'require').filter((t) => !SUPPORTED_OPTION_TAGS.includes(t));
    if (unsupported.length > 0) {
      this.reject(tx, 420, 'ERR_SIP_BAD_EXTENSION', { headers: [['Unsupported', unsupported.join(', ')]] });
      return;
    }
    const toTag = tagOf(v.to);
    switch (method) {
      case 'OPTIONS':
        if (this.closing) this.reject(tx, 503, 'ERR_SIP_SHUTTING_DOWN');
        else this.respond(tx, 200, { headers: [['Allow', ALLOWED_METHODS.join(', ')], ['Accept', ACCEPT], ['Supported', SUPPORTED_OPTION_TAGS.join(', ')]] });
        return;
      case 'INVITE':
        if (toTag === null) void this.newInvite(v, tx, source).catch((err: unknown) => this.internalError(tx, err));
        else this.inDialog(v, tx);
        return;
      default:
        this.inDialog(v, tx);
    }
  }

  private inDialog(v: ValidatedRequest, tx: ServerTransaction): void {
    const d = this.dialogs.find(v.callId, tagOf(v.to), tagOf(v.from));
    if (!d || d.ended) {
      this.reject(tx, 481, 'ERR_SIP_NO_DIALOG');
      return;
    }
    if (!acceptsCSeq(d, v.cseq.seq)) {
      this.reject(tx, 500, 'ERR_SIP_CSEQ_ORDER');
      return;
    }
    d.remoteCSeq = v.cseq.seq;
    const { method } = v.request;
    if (method === 'BYE') {
      this.respond(tx, 200);
      this.end(d, 'bye', null);
      return;
    }
    if (d.busy) {
      if (method === 'INVITE') this.reject(tx, 500, 'ERR_SIP_PENDING_OFFER', { headers: [['Retry-After', '1']] });
      else this.reject(tx, 491, 'ERR_SIP_PENDING_OFFER');
      return;
    }
    // target refresh (§12.2.2)
    const contact = v.request.headers.get('contact');
    const contactUri = contact === undefined ? null : parseNameAddr(contact)?.uri;
    if (contactUri && parseUri(contactUri)) d.remoteTarget = contactUri;
    void this.modifySession(d, v, tx).catch((err: unknown) => this.internalError(tx, err));
  }

  private async newInvite(v: ValidatedRequest, tx: ServerTransaction, source: Peer): Promise<void> {
    const req = v.request;
    this.respond(tx, 100);
    if (this.closing) return this.reject(tx, 503, 'ERR_SIP_SHUTTING_DOWN', { headers: [['Retry-After', '5']] });
    const mergeKey = `${v.callId}\n${tagOf(v.from) ?? ''}\n${v.cseq.seq}`;
    if ([...this.pending.values()].some((p) => p.mergeKey === mergeKey)) return this.reject(tx, 482, 'ERR_SIP_MERGED_REQUEST');
    if (this.opts.auth && !this.authorize(req, tx)) return;
    if (this.dialogs.size + this.pending.size >= this.opts.maxDialogs) {
      return this.reject(tx, 503, 'ERR_SIP_CAPACITY', { headers: [['Retry-After', '5']] });
    }
    const contact = req.headers.get('contact');
    const contactAddr = contact === undefined ? null : parseNameAddr(contact);
    if (!contactAddr || !parseUri(contactAddr.uri)) {
      return this.reject(tx, 400, 'ERR_SIP_MISSING_HEADER', { warning: 'contact' });
    }
    const timer = negotiateSessionTimer(req, this.opts.minSessionExpiresS);
    if (this.rejectTimer(tx, timer)) return;
    const body = this.readBody(req, false);
    if (body.kind === 'reject') return this.reject(tx, body.status, body.code, body);
    if (!body.sdp) return this.reject(tx, 488, 'ERR_SIP_NO_OFFER', { warning: 'late offer (INVITE without SDP) is not supported' });
    if (!hasAcceptableAudio(body.sdp)) {
      return this.reject(tx, 488, 'ERR_SIP_NO_ACCEPTABLE_MEDIA', { warningCode: 305, warning: 'only PCMU/PCMA over RTP/AVP' });
    }
    const isSiprec = optionTags(req.headers, 'require').includes('siprec') || contactAddr.params.has('+sip.src') || body.metadata !== null;
    const dialogId = randomUUID();
    const localTag = token(8);
    const offer = this.buildOffer(dialogId, v, source, body.sdp, isSiprec ? body.metadata : undefined);
    const pending: Pending = { dialogId, localTag, tx, endedBy: null, mergeKey };
    this.pending.set(tx.key, pending);
    this.opts.logger.info({ dialogId, siprec: isSiprec, mLines: body.sdp.media.length, transport: source.transport }, 'sip invite');
    let decision: OfferDecision | 'timeout' | 'error';
    try {
      decision = await this.decide(() => this.opts.handler.onInvite(offer), (late) => {
        if (isAccept(late)) this.endCall(dialogId, 'error');
      });
    } finally {
      this.pending.delete(tx.key);
    }
    if (pending.endedBy !== null) {
      // a CANCEL or shutdown already answered the INVITE
      if (decision !== 'timeout' && decision !== 'error' && isAccept(decision)) this.endCall(dialogId, pending.endedBy);
      return;
    }
    if (decision === 'timeout') return this.reject(tx, 500, 'ERR_SIP_HANDLER_TIMEOUT', { toTag: localTag });
    if (decision === 'error') return this.reject(tx, 500, 'ERR_SIP_HANDLER_ERROR', { toTag: localTag });
    if (!isAccept(decision)) return this.rejectByHandler(tx, decision.reject, localTag);
    if (this.closing) {
      this.reject(tx, 503, 'ERR_SIP_SHUTTING_DOWN', { toTag: localTag });
      return this.endCall(dialogId, 'server-hangup');
    }
    const answer = this.answer(body.sdp, decision, { sessionId: String(randomBytes(4).readUInt32BE() >>> 1), version: '1' }, null);
    if (typeof answer === 'string') {
      this.reject(tx, answer === 'ERR_SIP_NO_ACCEPTABLE_MEDIA' ? 488 : 500, answer, { toTag: localTag });
      return this.endCall(dialogId, 'error');
    }
    const d: Dialog = {
      id: dialogId, callId: v.callId, localTag, remoteTag: tagOf(v.from) ?? '',
      localParty: `${req.headers.get('to')!};tag=${localTag}`, remoteParty: req.headers.get('from')!,
      remoteTarget: contactAddr.uri, routeSet: req.headers.getAll('record-route'),
      remoteCSeq: v.cseq.seq, localCSeq: 0, transport: source.transport, source,
      awaitingAck: null, busy: false, local: answer.local, remoteSdp: body.sdp, sessionTimer: null,
      siprec: isSiprec, siprecMeta: isSiprec ? (body.metadata ?? { metadata: null, error: null }) : null, ended: false,
    };
    this.dialogs.add(d);
    this.accepted++;
    this.sendInvite2xx(d, tx, v.cseq.seq, answer.sdp, timer);
  }

  private async modifySession(d: Dialog, v: ValidatedRequest, tx: ServerTransaction): Promise<void> {
    const req = v.request;
    const isInvite = req.method === 'INVITE';
    if (isInvite) this.respond(tx, 100);
    const timer = negotiateSessionTimer(req, this.opts.minSessionExpiresS);
    if (this.rejectTimer(tx, timer)) return;
    const body = this.readBody(req, true);
    if (body.kind === 'reject') return this.reject(tx, body.status, body.code, body);
    if (body.metadata !== null && !body.sdp) {
      // SIPREC metadata update without a new offer (RFC 7866 §7.1.2)
      d.siprecMeta = body.metadata;
      const siprec = this.siprecInfo(body.metadata, d.remoteSdp, req);
      try {
        this.opts.handler.onMetadataUpdate?.(d.id, siprec);
      } catch (err) {
        this.opts.logger.error({ dialogId: d.id, err: err instanceof Error ? err.message : String(err) }, 'sip onMetadataUpdate threw');
      }
    }
    if (!body.sdp) {
      // refresh or metadata-only: no offer; a re-INVITE gets our current SDP as the offer
      if (isInvite) this.sendInvite2xx(d, tx, v.cseq.seq, d.local.body, timer);
      else {
        this.respond(tx, 200, { headers: this.timerHeaders(timer) });
        this.applyTimer(d, timer);
      }
      return;
    }
    if (!hasAcceptableAudio(body.sdp)) {
      return this.reject(tx, 488, 'ERR_SIP_NO_ACCEPTABLE_MEDIA', { warningCode: 305, warning: 'only PCMU/PCMA over RTP/AVP' });
    }
    if (d.siprec && body.metadata !== null) d.siprecMeta = body.metadata;
    // a SIPREC re-offer without new metadata keeps the last metadata (roles follow the new SDP)
    const offer = this.buildOffer(d.id, v, d.source, body.sdp, d.siprec ? (d.siprecMeta ?? { metadata: null, error: null }) : undefined);
    d.busy = true;
    const pending: Pending = { dialogId: d.id, localTag: d.localTag, tx, endedBy: null, mergeKey: '' };
    if (isInvite) this.pending.set(tx.key, pending);
    let decision: OfferDecision | 'timeout' | 'error';
    try {
      decision = await this.decide(() => this.opts.handler.onReoffer(d.id, offer), () => undefined);
    } finally {
      d.busy = false;
      this.pending.delete(tx.key);
    }
    if (pending.endedBy !== null) return; // CANCELled: 487 sent, the session is unchanged
    if (d.ended) return this.reject(tx, 481, 'ERR_SIP_NO_DIALOG');
    if (decision === 'timeout') return this.reject(tx, 500, 'ERR_SIP_HANDLER_TIMEOUT');
    if (decision === 'error') return this.reject(tx, 500, 'ERR_SIP_HANDLER_ERROR');
    if (!isAccept(decision)) return this.rejectByHandler(tx, decision.reject, d.localTag);
    const answer = this.answer(body.sdp, decision, { sessionId: d.local.sessionId, version: d.local.version }, d.local.body);
    if (typeof answer === 'string') {
      return this.reject(tx, answer === 'ERR_SIP_NO_ACCEPTABLE_MEDIA' ? 488 : 500, answer);
    }
    d.local = answer.local;
    d.remoteSdp = body.sdp;
    if (isInvite) this.sendInvite2xx(d, tx, v.cseq.seq, answer.sdp, timer);
    else {
      this.respond(tx, 200, { headers: [...this.contactHeaders(d.transport), ...this.timerHeaders(timer)], body: Buffer.from(answer.sdp), contentType: 'application/sdp' });
      this.applyTimer(d, timer);
    }
  }

  private sendInvite2xx(d: Dialog, tx: ServerTransaction, cseq: number, sdp: string, timer: SessionTimerDecision): void {
    const res = createResponse(tx.request, 200, {
      toTag: d.localTag,
      headers: [
        ...this.contactHeaders(d.transport),
        ['Allow', ALLOWED_METHODS.join(', ')],
        ['Supported', 'timer'],
        ...this.timerHeaders(timer),
        ['Server', this.opts.userAgent],
      ],
      body: Buffer.from(sdp),
      contentType: 'application/sdp',
    });
    tx.respond(res);
    d.awaitingAck?.stop();
    d.awaitingAck = {
      cseq,
      ...retransmitUntilAck(this.opts.scheduler, this.opts.timers, () => this.opts.send(res, tx.peer), () => {
        d.awaitingAck = null;
        this.pendingHangups.delete(d);
        this.end(d, 'ack-timeout', 'no ACK');
      }),
    };
    this.applyTimer(d, timer);
  }

  private handleAck(v: ValidatedRequest): void {
    const d = this.dialogs.find(v.callId, tagOf(v.to), tagOf(v.from));
    if (!d || !d.awaitingAck || d.awaitingAck.cseq !== v.cseq.seq) {
      this.counters.drop('ERR_SIP_STRAY_ACK');
      return;
    }
    d.awaitingAck.stop();
    d.awaitingAck = null;
    const deferred = this.pendingHangups.get(d);
    if (deferred !== undefined) {
      this.pendingHangups.delete(d);
      this.end(d, 'server-hangup', deferred);
    }
  }

  private handleCancel(v: ValidatedRequest, tx: ServerTransaction): void {
    const invite = this.layer.findInvite(v.request, v.topVia);
    if (!invite) return this.reject(tx, 481, 'ERR_SIP_NO_TRANSACTION');
    const p = this.pending.get(invite.key);
    const toTag = p?.localTag ?? token(8);
    this.respond(tx, 200, { toTag });
    if (invite.state === 'proceeding') {
      if (p) p.endedBy = 'cancel';
      this.respond(invite, 487, { toTag });
      this.counters.reject('ERR_SIP_CANCELLED', 487);
    }
  }

  private authorize(req: SipRequest, tx: ServerTransaction): boolean {
    const auth = this.opts.auth!;
    const values = req.headers.getAll('authorization');
    const result = values.length === 0 ? auth.verify(undefined, req.method, req.uri)
      : values.map((a) => auth.verify(a, req.method, req.uri)).find((r) => r.ok) ?? auth.verify(values[0], req.method, req.uri);
    if (result.ok) return true;
    switch (result.reason) {
      case 'missing':
        this.reject(tx, 401, 'ERR_SIP_AUTH_REQUIRED', { headers: [['WWW-Authenticate', auth.challenge()]] });
        break;
      case 'stale':
      case 'bad-nonce':
        this.reject(tx, 401, 'ERR_SIP_AUTH_STALE', { headers: [['WWW-Authenticate', auth.challenge(result.reason === 'stale')]] });
        break;
      default:
        this.reject(tx, 403, 'ERR_SIP_AUTH_FAILED', { warning: result.reason });
    }
    return false;
  }

  private rejectTimer(tx: ServerTransaction, timer: SessionTimerDecision): boolean {
    if (timer.kind === 'too-small') {
      this.reject(tx, 422, 'ERR_SIP_SESSION_INTERVAL_TOO_SMALL', { headers: [['Min-SE', String(timer.minSeS)]] });
      return true;
    }
    if (timer.kind === 'bad-header') {
      this.reject(tx, 400, 'ERR_SIP_BAD_HEADER', { warning: 'session-expires' });
      return true;
    }
    if (timer.kind === 'declined') this.counters.drop('ERR_SIP_SESSION_TIMER_DECLINED', { reason: timer.reason });
    return false;
  }

  private timerHeaders(timer: SessionTimerDecision): ReadonlyArray<readonly [string, string]> {
    return timer.kind === 'active' ? timer.headers : [];
  }

  private applyTimer(d: Dialog, timer: SessionTimerDecision): void {
    d.sessionTimer?.cancel();
    d.sessionTimer = null;
    if (timer.kind !== 'active') return;
    const cancel = this.opts.scheduler.setTimer(sessionExpiryDelayMs(timer.intervalS), () => {
      if (d.sessionTimer?.cancel === cancel) this.end(d, 'session-expired', 'session expired');
    });
    d.sessionTimer = { intervalS: timer.intervalS, cancel };
  }

  private readBody(req: SipRequest, inDialog: boolean): BodyResult {
    if (req.body.length === 0) return { kind: 'ok', sdp: null, metadata: null };
    const encodings = optionTags(req.headers, 'content-encoding').filter((e) => e !== 'identity');
    if (encodings.length > 0) {
      return { kind: 'reject', status: 415, code: 'ERR_SIP_UNSUPPORTED_MEDIA_TYPE', headers: [['Accept-Encoding', 'identity'], ['Accept', ACCEPT]] };
    }
    const ct = req.headers.get('content-type');
    if (ct === undefined) return { kind: 'reject', status: 400, code: 'ERR_SIP_MISSING_HEADER', warning: 'content-type' };
    const type = parseContentType(ct).type;
    let sdpText: string | null = null;
    let metadata: { metadata: RecordingMetadata | null; error: string | null } | null = null;
    try {
      if (type === 'application/sdp') sdpText = req.body.toString('utf8');
      else if (type === 'multipart/mixed') {
        const parts = parseSiprecBody(req.body, ct);
        sdpText = parts.sdp;
        if (parts.metadata !== null || parts.metadataError !== null) metadata = { metadata: parts.metadata, error: parts.metadataError };
      } else if (inDialog && (type === 'application/rs-metadata+xml' || type === 'application/rs-metadata')) {
        try {
          metadata = { metadata: parseRecordingMetadata(req.body.toString('utf8')), error: null };
        } catch (err) {
          metadata = { metadata: null, error: err instanceof AppError ? err.code : 'ERR_SIPREC_METADATA' };
        }
      } else {
        return { kind: 'reject', status: 415, code: 'ERR_SIP_UNSUPPORTED_MEDIA_TYPE', headers: [['Accept', ACCEPT]] };
      }
    } catch (err) {
      if (err instanceof SiprecError) return { kind: 'reject', status: 400, code: err.code, warning: err.message };
      throw err;
    }
    if (metadata?.error) this.counters.drop(metadata.error, { part: 'rs-metadata' });
    if (sdpText === null) return { kind: 'ok', sdp: null, metadata };
    try {
      return { kind: 'ok', sdp: parseSdp(sdpText, this.opts.sdpLimits), metadata };
    } catch (err) {
      if (err instanceof SdpError) return { kind: 'reject', status: 400, code: err.code, warning: err.message };
      throw err;
    }
  }

  private siprecInfo(meta: { metadata: RecordingMetadata | null; error: string | null }, sdp: SessionDescription, req: SipRequest): SiprecInfo {
    return {
      metadata: meta.metadata,
      metadataError: meta.error,
      roles: meta.metadata ? assignSiprecRoles(meta.metadata, sdp, this.opts.siprecRoles, req.headers.get('from') ?? null) : null,
    };
  }

  private buildOffer(
    dialogId: string, v: ValidatedRequest, source: Peer, sdp: SessionDescription,
    metadata: { metadata: RecordingMetadata | null; error: string | null } | null | undefined,
  ): InviteOffer {
    const headers: Record<string, string> = {};
    for (const f of v.request.headers.entries()) {
      if (f.name.startsWith('x-')) headers[f.name] = headers[f.name] === undefined ? f.value : `${headers[f.name]}, ${f.value}`;
    }
    const media = sdp.media.map((m): OfferedMedia => ({
      index: m.index, media: m.media, label: m.label, remoteAddress: m.connection?.address ?? null, remotePort: m.port,
      codec: chooseG711(m), telephoneEventPt: telephoneEventPt(m), ptimeMs: m.ptimeMs, maxptimeMs: m.maxptimeMs, direction: m.direction,
    }));
    return {
      dialogId, callId: v.callId, from: party(v.from), to: party(v.to), headers,
      source: { address: source.address, port: source.port, transport: source.transport },
      sdp, media,
      siprec: metadata === undefined ? null : this.siprecInfo(metadata ?? { metadata: null, error: null }, sdp, v.request),
    };
  }

  /** Runs a handler call with the timeout; a result arriving after the timeout goes to `late`. */
  private decide(call: () => Promise<OfferDecision>, late: (d: OfferDecision) => void): Promise<OfferDecision | 'timeout' | 'error'> {
    return new Promise((resolve) => {
      let settled = false;
      const cancel = this.opts.scheduler.setTimer(this.opts.handlerTimeoutMs, () => {
        if (settled) return;
        settled = true;
        resolve('timeout');
      });
      let promise: Promise<OfferDecision>;
      try {
        promise = call();
      } catch (err) {
        promise = Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      promise.then(
        (d) => {
          if (settled) return late(d);
          settled = true;
          cancel();
          resolve(d);
        },
        (err: unknown) => {
          this.opts.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'sip call handler failed');
          if (settled) return;
          settled = true;
          cancel();
          resolve('error');
        },
      );
    });
  }

  /** Validates the handler's acceptance and builds the SDP answer; a string is an error code. */
  private answer(
    offer: SessionDescription,
    decision: Extract<OfferDecision, { accept: unknown }>,
    origin: { sessionId: string; version: string },
    previousBody: string | null,
  ): { sdp: string; local: Dialog['local'] } | string {
    const { address, media } = decision.accept;
    if (typeof address !== 'string' || !net.isIP(address) || !Array.isArray(media)) return 'ERR_SIP_HANDLER_BAD_ANSWER';
    const ports = new Map<number, number>();
    for (const m of media) {
      if (!Number.isInteger(m.index) || m.index < 0 || m.index >= offer.media.length || ports.has(m.index)
        || !Number.isInteger(m.port) || m.port < 0 || m.port > 65535) {
        return 'ERR_SIP_HANDLER_BAD_ANSWER';
      }
      ports.set(m.index, m.port);
    }
    let built = buildAnswer(offer, { address, ports, sessionId: origin.sessionId, sessionVersion: origin.version });
    if (!built.media.some((m) => m.port > 0)) return 'ERR_SIP_NO_ACCEPTABLE_MEDIA';
    let version = origin.version;
    if (previousBody !== null && built.sdp !== previousBody) {
      // RFC 3264 §8: a changed answer carries the next session version
      version = nextSessionVersion(origin.version);
      built = buildAnswer(offer, { address, ports, sessionId: origin.sessionId, sessionVersion: version });
    }
    return { sdp: built.sdp, local: { sessionId: origin.sessionId, version, body: built.sdp, address, ports } };
  }

  private end(d: Dialog, reason: SipEndReason, byeReason: string | null): void {
    if (d.ended) return;
    d.ended = true;
    this.pendingHangups.delete(d);
    d.awaitingAck?.stop();
    d.awaitingAck = null;
    d.sessionTimer?.cancel();
    d.sessionTimer = null;
    this.dialogs.remove(d);
    if (byeReason !== null) this.sendBye(d, byeReason);
    this.endCall(d.id, reason);
  }

  private endCall(dialogId: string, reason: SipEndReason): void {
    this.endedCounts.set(reason, (this.endedCounts.get(reason) ?? 0) + 1);
    this.opts.logger.info({ dialogId, reason }, 'sip dialog ended');
    try {
      this.opts.handler.onEnd(dialogId, reason);
    } catch (err) {
      this.opts.logger.error({ dialogId, err: err instanceof Error ? err.message : String(err) }, 'sip onEnd threw');
    }
  }

  private sendBye(d: Dialog, reason: string): void {
    const dest = requestDestination(d);
    if (!dest) {
      this.counters.drop('ERR_SIP_NO_ROUTE', { method: 'BYE' });
      return;
    }
    const bye = buildBye(d, { transport: dest.transport, sentBy: this.opts.localAddress(dest.transport), branch: `${MAGIC_COOKIE}${token(10)}` }, {
      reason, userAgent: this.opts.userAgent,
    });
    const done = new Promise<void>((resolve) => {
      this.layer.sendRequest(bye, dest, {
        onResponse: (res) => {
          if (res.status >= 300) this.counters.drop('ERR_SIP_BYE_REJECTED', { status: res.status });
          resolve();
        },
        onTimeout: () => {
          this.counters.drop('ERR_SIP_BYE_TIMEOUT');
          resolve();
        },
      });
    });
    this.byesInFlight.add(done);
    void done.then(() => this.byesInFlight.delete(done));
  }

  private contactHeaders(transport: SipTransport): ReadonlyArray<readonly [string, string]> {
    const { host, port } = this.opts.localAddress(transport);
    const h = host.includes(':') ? `[${host}]` : host;
    return [['Contact', `<sip:callscribe@${h}:${port}${transport === 'tcp' ? ';transport=tcp' : ''}>`]];
  }

  private warning(code: number, text: string): string {
    const host = this.opts.localAddress('udp').host;
    return `${code} ${host.includes(':') ? `[${host}]` : host} "${text.replace(/["\\\r\n]/g, '')}"`;
  }

  private respond(tx: ServerTransaction, status: number, opts: ResponseOptions = {}): void {
    const headers = [...(opts.headers ?? [])];
    if (status > 100) headers.push(['Server', this.opts.userAgent]);
    tx.respond(createResponse(tx.request, status, { ...opts, toTag: opts.toTag ?? this.toTagFor(tx), headers }));
  }

  private toTagFor(tx: ServerTransaction): string {
    return this.pending.get(tx.key)?.localTag ?? token(8);
  }

  private reject(
    tx: ServerTransaction,
    status: number,
    code: string,
    opts: { headers?: ReadonlyArray<readonly [string, string]>; warning?: string; warningCode?: number; toTag?: string } = {},
  ): void {
    this.counters.reject(code, status, { method: tx.method });
    const headers = [...(opts.headers ?? [])];
    headers.push(['Warning', this.warning(opts.warningCode ?? 399, opts.warning ? `${code}: ${opts.warning}` : code)]);
    this.respond(tx, status, { headers, ...(opts.toTag === undefined ? {} : { toTag: opts.toTag }) });
  }

  private rejectByHandler(tx: ServerTransaction, r: { status: number; reason: string; code: string }, toTag: string): void {
    const status = Number.isInteger(r.status) && r.status >= 400 && r.status <= 699 ? r.status : 500;
    const code = typeof r.code === 'string' && /^[A-Z0-9_]{1,64}$/.test(r.code) ? r.code : 'ERR_SIP_HANDLER_REJECT';
    this.counters.reject(code, status, { method: tx.method });
    const reason = typeof r.reason === 'string' && /^[\x20-\x7e]{1,64}$/.test(r.reason) ? r.reason : undefined;
    this.respond(tx, status, { toTag, ...(reason === undefined ? {} : { reason }), headers: [['Warning', this.warning(399, code)]] });
  }

  private sendStateless(req: SipRequest, peer: Peer, status: number, code: string, headers: ReadonlyArray<readonly [string, string]> = []): void {
    this.counters.reject(code, status, { method: req.method });
    this.opts.send(createResponse(req, status, { toTag: token(8), headers: [...headers, ['Server', this.opts.userAgent]] }), peer);
  }

  private internalError(tx: ServerTransaction, err: unknown): void {
    this.opts.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'sip core error');
    if (tx.state === 'proceeding' || tx.state === 'trying') this.reject(tx, 500, 'ERR_SIP_INTERNAL');
  }

  /** RFC 3581 / §18.2.1: add received (and rport) to the top Via; returns the stamped Via. */
  private stampVia(req: SipRequest, via: ViaHeader, source: Peer): ViaHeader {
    const params = new Map(via.params);
    if (params.has('rport')) {
      params.set('rport', String(source.port));
      params.set('received', source.address);
    } else if (via.host !== source.address) params.set('received', source.address);
    const stamped: ViaHeader = { ...via, params };
    req.headers.setFirst('via', formatVia(stamped));
    return stamped;
  }
}

/** Where responses go (§18.2.2, RFC 3581): the TCP connection, else received:rport / sent-by port. */
export function responsePeer(via: ViaHeader, source: Peer): Peer {
  if (source.transport === 'tcp') return source;
  const rport = via.params.get('rport');
  const port = rport && /^\d{1,5}$/.test(rport) ? Number(rport) : (via.port ?? 5060);
  return { transport: 'udp', address: via.params.get('received') ?? via.host, port };
}

function party(na: NameAddr): SipParty {
  const uri = parseUri(na.uri);
  return { uri: na.uri, displayName: na.displayName, user: uri?.user ?? null, tag: tagOf(na) };
}
