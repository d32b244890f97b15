/**
 * SIP call control: turns accepted INVITEs (plain or SIPREC) into RtpCalls and back.
 *
 * - Each usable audio m-line (G.711 chosen by sdp.ts) becomes a leg with its own RTP port;
 *   at most two legs (customer, agent), further lines are rejected with port 0.
 * - Roles: SIPREC → the metadata's participant that SENDS the stream (siprec.ts, configured by
 *   SIPREC_CUSTOMER / SIPREC_AGENT_AOR_PATTERN); plain SIP → `X-Callscribe-Roles: a,b` per
 *   m-line, or the SIP_ROLE_HEADER (`X-Callscribe-Role`) for a single stream, else m-line
 *   order (customer, agent). A leg whose role cannot be told falls back to m-line order.
 * - A re-INVITE / UPDATE (hold, resume, refresh, metadata) keeps the ports: the same answer.
 * - The SIP server's onEnd (BYE, CANCEL, ACK timeout, session expiry) ends the RtpCall; an
 *   RtpCall that ends by itself (RTP inactivity, drain) asks the server to send BYE.
 */
import { randomUUID } from 'node:crypto';
import { errorMessage } from '../core/errors.js';
import { isRole, type Role } from '../core/types.js';
import type { Logger } from '../observability/logger.js';
import type { CallRegistry } from './call-registry.js';
import { RtpCall, type RtpCallDeps, type RtpLeg } from './rtp-call.js';
import type { RtpPayloadKind } from './rtp/rtp-stream.js';
import type { UdpPortLease, UdpPortPool } from './rtp/udp-port-pool.js';
import type { InviteOffer, OfferDecision, OfferedMedia, SipCallHandler, SipEndReason, SiprecInfo } from './sip/types.js';

export interface SipCallsOptions {
  readonly registry: CallRegistry;
  readonly pool: UdpPortPool;
  readonly callDeps: RtpCallDeps;
  readonly logger: Logger;
  /** Our RTP address for the SDP answer (c=). */
  readonly mediaAddress: string;
  /** Header naming the role of a single-stream plain call (SIP_ROLE_HEADER). */
  readonly roleHeader: string;
  readonly accepting: () => boolean;
}

interface LiveDialog {
  readonly call: RtpCall;
  /** m-line index → our port. */
  readonly ports: ReadonlyMap<number, number>;
  /** m-line index → track. */
  readonly tracks: ReadonlyMap<number, string>;
  /** m-line index → the peer's media address:port from the latest offer. */
  readonly remotes: Map<number, string>;
}

const remoteOf = (m: OfferedMedia): string => `${m.remoteAddress ?? ''}:${m.remotePort}`;
/** c=0.0.0.0 or port 0: hold or a disabled line, not a move. */
const isHoldAddress = (m: OfferedMedia): boolean => m.remoteAddress === '0.0.0.0' || m.remoteAddress === '::' || m.remotePort === 0;

const ORDER: readonly Role[] = ['customer', 'agent'];

function reject(status: number, reason: string, code: string): OfferDecision {
  return { reject: { status, reason, code } };
}

/** Non-PII-minimal SIPREC metadata kept with the call (participants' AORs are stored, never logged). */
function siprecMetadata(siprec: SiprecInfo, legs: ReadonlyArray<{ index: number; track: string; role: Role }>): Record<string, unknown> {
  const md = siprec.metadata;
  return {
    siprec: {
      sessionId: md?.sessionId ?? null,
      dataMode: md?.dataMode ?? null,
      metadataError: siprec.metadataError,
      callerBasis: siprec.roles?.basis ?? null,
      participants: (md?.participants ?? []).map((p) => ({ id: p.id, aor: p.aor, name: p.name, number: p.number })),
      streams: legs.map((l) => {
        const s = siprec.roles?.streams.find((x) => x.index === l.index);
        return { index: l.index, label: s?.label ?? null, track: l.track, role: l.role, participantId: s?.participant?.id ?? null, basis: s?.basis ?? 'none' };
      }),
      callData: md?.callData ?? null,
    },
  };
}

/** Decides the role of each usable m-line. */
export function assignRoles(offer: InviteOffer, usable: readonly OfferedMedia[], roleHeader: string): Role[] {
  let roles: Array<Role | null> = usable.map(() => null);
  if (offer.siprec?.roles) {
    const byIndex = new Map(offer.siprec.roles.streams.map((s) => [s.index, s.role]));
    roles = usable.map((m) => byIndex.get(m.index) ?? null);
  } else {
    const list = offer.headers['x-callscribe-roles']?.split(',').map((r) => r.trim().toLowerCase());
    const single = offer.headers[roleHeader.toLowerCase()]?.trim().toLowerCase();
    if (list && list.length >= usable.length && list.every(isRole)) roles = list.slice(0, usable.length) as Role[];
    else if (usable.length === 1 && isRole(single)) roles = [single];
  }
  const unique = roles.every((r) => r !== null) && new Set(roles).size === roles.length;
  return unique ? (roles as Role[]) : usable.map((_, i) => ORDER[i] as Role);
}

export interface SipCalls extends SipCallHandler {
  readonly dialogs: ReadonlyMap<string, LiveDialog>;
  /** Sends BYE for a dialog: set once the SIP server exists (calls that end on their own use it). */
  hangup: ((dialogId: string, reason: string) => void) | null;
}

export function createSipCallHandler(options: SipCallsOptions): SipCalls {
  const dialogs = new Map<string, LiveDialog>();
  const { logger } = options;

  const onInvite = async (offer: InviteOffer): Promise<OfferDecision> => {
    if (!options.accepting()) return reject(503, 'Service Unavailable', 'ERR_HTTP_DRAINING');
    if (!options.registry.hasCapacity()) return reject(503, 'Service Unavailable', 'ERR_INGEST_CAPACITY');
    const usable = offer.media.filter((m) => m.media === 'audio' && m.codec !== null && m.remotePort > 0).slice(0, 2);
    if (usable.length === 0) return reject(488, 'Not Acceptable Here', 'ERR_SIP_NO_G711');
    const roles = assignRoles(offer, usable, options.roleHeader);
    let leases: UdpPortLease[];
    try {
      leases = await options.pool.leaseMany(usable.length);
    } catch (err) {
      logger.error({ code: 'ERR_RTP_PORTS_EXHAUSTED', err: errorMessage(err) }, 'no RTP port for a SIP call');
      return reject(503, 'Service Unavailable', 'ERR_RTP_PORTS_EXHAUSTED');
    }
    const callId = randomUUID();
    const legs: RtpLeg[] = usable.map((m, i) => {
      const codec = m.codec as NonNullable<OfferedMedia['codec']>;
      const payloadTypes: Record<number, RtpPayloadKind> = { [codec.payloadType]: codec.name === 'PCMU' ? 'pcmu' : 'pcma', 13: 'cn' };
      if (m.telephoneEventPt !== null) payloadTypes[m.telephoneEventPt] = 'telephone-event';
      return {
        track: m.label !== null ? `label-${m.label}` : `m${m.index}`,
        role: roles[i] as Role,
        codec: codec.name === 'PCMU' ? 'pcmu' : 'pcma',
        lease: leases[i] as UdpPortLease,
        payloadTypes,
      };
    });
    const h = offer.headers;
    const metadata = offer.siprec
      ? siprecMetadata(offer.siprec, usable.map((m, i) => ({ index: m.index, track: legs[i]?.track ?? '', role: roles[i] as Role })))
      : { sip: { streams: usable.map((m, i) => ({ index: m.index, track: legs[i]?.track, role: roles[i] })) } };
    const agentFromSiprec = offer.siprec?.roles?.streams.find((s) => s.role === 'agent')?.participant?.number ?? null;
    const log = logger.child({ callId, dialogId: offer.dialogId });
    const call = new RtpCall(
      { ...options.callDeps, logger: log },
      {
        start: {
          callId,
          source: 'sip',
          startedAt: Date.now(),
          tenantId: h['x-callscribe-tenant'] ?? 'default',
          externalIds: {
            sipCallId: offer.callId,
            ...(h['x-callscribe-call-ref'] ? { callRef: h['x-callscribe-call-ref'] } : {}),
          },
          customParameters: Object.fromEntries(
            Object.entries(h)
              .filter(([k]) => k.startsWith('x-callscribe-'))
              .map(([k, v]) => [k.slice('x-callscribe-'.length), v]),
          ),
          agentId: h['x-callscribe-agent'] ?? agentFromSiprec,
          queueId: h['x-callscribe-queue'] ?? null,
          metadata,
        },
        legs,
        onSelfEnd: (reason) => self.hangup?.(offer.dialogId, reason),
      },
    );
    dialogs.set(offer.dialogId, {
      call,
      ports: new Map(usable.map((m, i) => [m.index, legs[i]?.lease.port ?? 0])),
      tracks: new Map(usable.map((m, i) => [m.index, legs[i]?.track ?? ''])),
      remotes: new Map(usable.map((m) => [m.index, remoteOf(m)])),
    });
    void call.done.finally(() => dialogs.delete(offer.dialogId));
    options.registry.add(call);
    call.begin();
    log.info({ siprec: offer.siprec !== null, legs: legs.length, transport: offer.source.transport }, 'sip call accepted');
    return { accept: { media: usable.map((m, i) => ({ index: m.index, port: legs[i]?.lease.port ?? 0 })), address: options.mediaAddress } };
  };

  const onReoffer = (dialogId: string, offer: InviteOffer): Promise<OfferDecision> => {
    const dialog = dialogs.get(dialogId);
    if (!dialog) return Promise.resolve(reject(481, 'Call/Transaction Does Not Exist', 'ERR_SIP_UNKNOWN_DIALOG'));
    // hold, resume, session refresh, metadata update: same ports; new m-lines are declined.
    // A sender that moved (new address:port, e.g. after a transfer) is re-latched.
    for (const m of offer.media) {
      const track = dialog.tracks.get(m.index);
      if (track === undefined || isHoldAddress(m)) continue;
      const now = remoteOf(m);
      if (dialog.remotes.get(m.index) !== now) {
        dialog.remotes.set(m.index, now);
        dialog.call.relatch(track);
      }
    }
    const media = offer.media.map((m) => ({ index: m.index, port: dialog.ports.get(m.index) ?? 0 }));
    return Promise.resolve({ accept: { media, address: options.mediaAddress } });
  };

  const onEnd = (dialogId: string, reason: SipEndReason): void => {
    const dialog = dialogs.get(dialogId);
    if (!dialog) return;
    void dialog.call.end(reason);
  };

  // onSelfEnd above reads `self` only when a call ends, long after this line ran
  const self: SipCalls = { onInvite, onReoffer, onEnd, dialogs, hangup: null };
  return self;
}
