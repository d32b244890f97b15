/** SIP user agent server for SIPREC / plain-INVITE call ingest: the public surface. */
export { createSipServer, type SipServer, type SipServerOptions, type SipServerStats } from './server.js';
export type {
  CallRejection, InviteOffer, MediaAcceptance, OfferDecision, OfferedMedia, SipCallHandler, SipEndReason, SipParty, SiprecInfo,
} from './types.js';
export type { CodecChoice, SdpDirection, SessionDescription, SdpMedia } from './sdp.js';
export type { Participant, RecordingMetadata, RoleAssignment, SiprecRoleOptions, StreamRole } from './siprec.js';
export type { SipTimers, SipTransport, TimerScheduler } from './transactions.js';
