/**
 * The call-control boundary of the SIP server: what the integrator (RTP receivers, ASR
 * pipeline) sees. The server owns SIP and SDP; the handler owns ports and calls.
 */
import type { CodecChoice, SdpDirection, SessionDescription } from './sdp.js';
import type { RecordingMetadata, RoleAssignment } from './siprec.js';
import type { SipTransport } from './transactions.js';

/**
 * Why a dialog ended. `server-hangup`: hangup() or close(); `error`: the handler failed,
 * timed out, or accepted with unusable media after the call was already answered elsewhere.
 */
export type SipEndReason = 'bye' | 'cancel' | 'ack-timeout' | 'session-expired' | 'server-hangup' | 'error';

export interface SipParty {
  readonly uri: string;
  readonly displayName: string | null;
  /** User part of the URI (number or extension): PII. */
  readonly user: string | null;
  readonly tag: string | null;
}

export interface OfferedMedia {
  /** m-line index in the offer (0-based). */
  readonly index: number;
  /** 'audio', 'video', … */
  readonly media: string;
  /** a=label (SIPREC), or null. */
  readonly label: string | null;
  /** Where the peer sends from / expects media: c= address and m= port. */
  readonly remoteAddress: string | null;
  readonly remotePort: number;
  /** The G.711 codec we will answer with (offer order), or null when the line is unusable. */
  readonly codec: CodecChoice | null;
  readonly telephoneEventPt: number | null;
  readonly ptimeMs: number | null;
  readonly maxptimeMs: number | null;
  /** The offer's direction (sendonly for SIPREC; inactive on hold). */
  readonly direction: SdpDirection;
}

export interface SiprecInfo {
  /** Null when the SRC sent none or it could not be parsed (then see metadataError). */
  readonly metadata: RecordingMetadata | null;
  readonly metadataError: string | null;
  /** Per m-line role and participant; null without metadata. */
  readonly roles: RoleAssignment | null;
}

export interface InviteOffer {
  /** Opaque, ours; stable for the life of the dialog. */
  readonly dialogId: string;
  /** SIP Call-ID of the INVITE. */
  readonly callId: string;
  readonly from: SipParty;
  readonly to: SipParty;
  /** Every X-* header, names lower-cased; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  readonly source: { readonly address: string; readonly port: number; readonly transport: SipTransport };
  readonly sdp: SessionDescription;
  readonly media: readonly OfferedMedia[];
  /** Non-null when the INVITE is SIPREC (Require: siprec, +sip.src, or a metadata part). */
  readonly siprec: SiprecInfo | null;
}

export interface MediaAcceptance {
  readonly accept: {
    /** Ports we listen on per m-line; missing or 0 rejects that line. */
    readonly media: ReadonlyArray<{ readonly index: number; readonly port: number }>;
    /** Our RTP address for c= (an IP literal). */
    readonly address: string;
  };
}

export interface CallRejection {
  /** status 400-699; `code` is logged and counted (e.g. ERR_INGEST_CAPACITY). */
  readonly reject: { readonly status: number; readonly reason: string; readonly code: string };
}

export type OfferDecision = MediaAcceptance | CallRejection;

export interface SipCallHandler {
  /** New INVITE after validation. Return the per-m-line ports we listen on or a rejection. */
  onInvite(offer: InviteOffer): Promise<OfferDecision>;
  /** re-INVITE/UPDATE with a new offer (hold/resume/media change/metadata update): same shape. */
  onReoffer(dialogId: string, offer: InviteOffer): Promise<OfferDecision>;
  /**
   * The dialog ended. Called exactly once for every dialogId whose onInvite resolved with
   * `accept` (also when a CANCEL or a timeout overtook it), never otherwise.
   */
  onEnd(dialogId: string, reason: SipEndReason): void;
  /** Optional: SIPREC metadata arrived without a new SDP offer (UPDATE/re-INVITE). */
  onMetadataUpdate?(dialogId: string, siprec: SiprecInfo): void;
}
