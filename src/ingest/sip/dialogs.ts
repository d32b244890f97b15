/**
 * Dialog state for the UAS (RFC 3261 §12) and the pure rules the core applies to it:
 * - a dialog is identified by Call-ID + local tag (our To tag) + remote tag (their From tag);
 *   the remote target is the INVITE's Contact, the route set its Record-Route in order
 *   (§12.1.1); target refresh requests (re-INVITE, UPDATE) replace the remote target (§12.2.2);
 * - in-dialog requests must have a CSeq above the last one (§12.2.2: lower → 500);
 * - requests we send (BYE) carry From = our To, To = their From, the route set as Route, and go
 *   to the first route (loose routing) or the remote target (§12.2.1.1, §8.1.2);
 * - session timers (RFC 4028 §9, §10): a UAC that supports `timer` gets
 *   `Session-Expires: N;refresher=uac` + `Require: timer`; N below our Min-SE → 422; when we
 *   would have to refresh ourselves (refresher=uas asked, or no `Supported: timer`) the timer is
 *   declined (no Session-Expires in the answer); without a refresh the session ends at
 *   N − min(32 s, N/3) after the last one.
 */
import type { SipRequest } from './message.js';
import { SipHeaders, optionTags, parseHostPort, parseNameAddr, parseParams, parseUri } from './message.js';
import type { Peer, SipTransport } from './transactions.js';
import type { SessionDescription } from './sdp.js';
import type { RecordingMetadata } from './siprec.js';

export interface LocalSdpState {
  readonly sessionId: string;
  version: string;
  /** The last answer (or offer) body we sent. */
  body: string;
  address: string;
  /** Ports per m-line index from the handler's last accept. */
  ports: Map<number, number>;
}

export interface Dialog {
  readonly id: string;
  readonly callId: string;
  readonly localTag: string;
  readonly remoteTag: string;
  /** Our To header value with our tag (From of our requests). */
  readonly localParty: string;
  /** Their From header value (To of our requests). */
  readonly remoteParty: string;
  remoteTarget: string;
  readonly routeSet: readonly string[];
  remoteCSeq: number;
  localCSeq: number;
  readonly transport: SipTransport;
  readonly source: Peer;
  /** Set while a 2xx to (re-)INVITE waits for its ACK. */
  awaitingAck: { readonly cseq: number; stop(): void } | null;
  /** An offer/answer exchange (handler call) is in progress. */
  busy: boolean;
  local: LocalSdpState;
  remoteSdp: SessionDescription;
  sessionTimer: { readonly intervalS: number; cancel(): void } | null;
  readonly siprec: boolean;
  /** The last SIPREC metadata received (null when not SIPREC). */
  siprecMeta: { metadata: RecordingMetadata | null; error: string | null } | null;
  ended: boolean;
}

export function dialogKey(callId: string, localTag: string, remoteTag: string): string {
  return `${callId}\n${localTag}\n${remoteTag}`;
}

export class DialogStore {
  private readonly byKey = new Map<string, Dialog>();
  private readonly byId = new Map<string, Dialog>();

  add(d: Dialog): void {
    this.byKey.set(dialogKey(d.callId, d.localTag, d.remoteTag), d);
    this.byId.set(d.id, d);
  }

  /** A missing remote tag (RFC 2543 peers) matches an empty one (§12.1.1). */
  find(callId: string, localTag: string | null, remoteTag: string | null): Dialog | undefined {
    if (localTag === null) return undefined;
    return this.byKey.get(dialogKey(callId, localTag, remoteTag ?? ''));
  }

  get(id: string): Dialog | undefined {
    return this.byId.get(id);
  }

  remove(d: Dialog): void {
    this.byKey.delete(dialogKey(d.callId, d.localTag, d.remoteTag));
    this.byId.delete(d.id);
  }

  all(): Dialog[] {
    return [...this.byId.values()];
  }

  get size(): number {
    return this.byId.size;
  }
}

/** §12.2.2: in-dialog requests other than ACK/CANCEL need a higher CSeq than the last one. */
export function acceptsCSeq(d: Dialog, seq: number): boolean {
  return seq > d.remoteCSeq;
}

// ---------------------------------------------------------------------------------------------
// Session timers (RFC 4028)

export const SUPPORTED_OPTION_TAGS: readonly string[] = ['timer', 'siprec'];

export type SessionTimerDecision =
  | { readonly kind: 'none' }
  | { readonly kind: 'declined'; readonly reason: 'refresher-uas' | 'uac-unsupported' }
  | { readonly kind: 'too-small'; readonly minSeS: number }
  | { readonly kind: 'bad-header' }
  | { readonly kind: 'active'; readonly intervalS: number; readonly headers: ReadonlyArray<readonly [string, string]> };

export function negotiateSessionTimer(req: SipRequest, minSeS: number): SessionTimerDecision {
  const se = req.headers.get('session-expires');
  if (se === undefined) return { kind: 'none' };
  const m = /^(\d{1,10})\s*(;.*)?$/.exec(se.trim());
  if (!m) return { kind: 'bad-header' };
  const intervalS = Number(m[1]);
  const refresher = parseParams(m[2] ?? '').get('refresher')?.toLowerCase();
  if (refresher !== undefined && refresher !== 'uac' && refresher !== 'uas') return { kind: 'bad-header' };
  const minSe = req.headers.get('min-se');
  if (minSe !== undefined && !/^\d{1,10}\s*(;.*)?$/.test(minSe.trim())) return { kind: 'bad-header' };
  if (intervalS < minSeS) return { kind: 'too-small', minSeS };
  if (!optionTags(req.headers, 'supported').includes('timer')) return { kind: 'declined', reason: 'uac-unsupported' };
  if (refresher === 'uas') return { kind: 'declined', reason: 'refresher-uas' };
  return {
    kind: 'active',
    intervalS,
    headers: [['Session-Expires', `${intervalS};refresher=uac`], ['Require', 'timer']],
  };
}

/** When the non-refreshing side gives up (RFC 4028 §10), in ms after the last refresh. */
export function sessionExpiryDelayMs(intervalS: number): number {
  return Math.round((intervalS - Math.min(32, intervalS / 3)) * 1000);
}

// ---------------------------------------------------------------------------------------------
// Requests we send

/** Where an in-dialog request goes: the first loose route, else the remote target (§8.1.2). */
export function requestDestination(d: Dialog): Peer | null {
  const first = d.routeSet[0];
  const uriText = first === undefined ? d.remoteTarget : (parseNameAddr(first)?.uri ?? '');
  const uri = parseUri(uriText);
  if (!uri || uri.scheme === 'tel') return null;
  const maddrOrHost = uri.params.get('maddr') ?? uri.host;
  const hp = parseHostPort(maddrOrHost.includes(':') && !maddrOrHost.startsWith('[') ? `[${maddrOrHost}]` : maddrOrHost);
  const param = uri.params.get('transport')?.toLowerCase();
  const transport: SipTransport = param === 'tcp' ? 'tcp' : param === 'udp' ? 'udp' : d.transport;
  const port = uri.port ?? (uri.scheme === 'sips' ? 5061 : 5060);
  if (!hp) return null;
  // over TCP, reuse the connection the dialog arrived on (connection reuse, as SBCs expect)
  // (the adapter opens a new connection to the target when that one has closed)
  if (transport === 'tcp' && d.transport === 'tcp' && d.source.connectionId !== undefined) {
    return { transport, address: hp.host, port, connectionId: d.source.connectionId };
  }
  return { transport, address: hp.host, port };
}

export interface OurAddress {
  readonly host: string;
  readonly port: number;
}

export function buildBye(
  d: Dialog,
  via: { transport: SipTransport; sentBy: OurAddress; branch: string },
  opts: { reason?: string; userAgent: string },
): SipRequest {
  d.localCSeq += 1;
  const h = new SipHeaders();
  const host = via.sentBy.host.includes(':') ? `[${via.sentBy.host}]` : via.sentBy.host;
  h.append('via', `SIP/2.0/${via.transport.toUpperCase()} ${host}:${via.sentBy.port};branch=${via.branch};rport`);
  h.append('max-forwards', '70');
  h.append('from', d.localParty);
  h.append('to', d.remoteParty);
  h.append('call-id', d.callId);
  h.append('cseq', `${d.localCSeq} BYE`);
  for (const r of d.routeSet) h.append('route', r);
  if (opts.reason) h.append('reason', `SIP;cause=200;text="${opts.reason.replace(/["\\\r\n]/g, '')}"`);
  h.append('user-agent', opts.userAgent);
  return { kind: 'request', method: 'BYE', uri: d.remoteTarget, headers: h, body: Buffer.alloc(0) };
}
