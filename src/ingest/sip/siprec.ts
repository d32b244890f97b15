/**
 * SIPREC bodies (RFC 7866 protocol, RFC 7865 metadata): multipart/mixed parsing (RFC 2046 §5.1),
 * recording-metadata extraction, and the mapping of SDP m-lines to participants and roles.
 *
 * Protocol facts relied on:
 * - delimiter = CRLF "--" boundary, close delimiter adds "--"; the CRLF before a delimiter
 *   belongs to it; preamble and epilogue are ignored (RFC 2046 §5.1.1);
 * - parts: application/sdp and application/rs-metadata+xml (Content-Disposition:
 *   recording-session); others (Cisco's application/gtd) are ignored;
 * - metadata: <participant participant_id><nameID aor><name>, <stream stream_id><label>, and
 *   <participantstreamassoc participant_id><send>/<recv> (RFC 7865 §6); the sender of a stream
 *   is the participant whose <send> names it; the stream's <label> matches the m-line's a=label.
 * Vendor variants accepted (drachtio-siprec-recording-server test data): the unversioned
 * namespace `urn:ietf:params:xml:ns:recording` (Sonus, Acme, Avaya), Sonus <callData> with the
 * original From/To/Call-ID, the pre-RFC Acme/Avaya shape (`id` attributes and <send> inside
 * <participant>), apkt:callingParty; no closing delimiter; LF-only line ends.
 * DOCTYPE/ENTITY declarations are refused (entity expansion).
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { AppError } from '../../core/errors.js';
import type { Role } from '../../core/types.js';
import { SipHeaders, parseNameAddr, parseParams, parseUri } from './message.js';
import type { SessionDescription } from './sdp.js';

export const RECORDING_NAMESPACES: readonly string[] = [
  'urn:ietf:params:xml:ns:recording:1',
  'urn:ietf:params:xml:ns:recording',
];

export class SiprecError extends AppError {
  constructor(code: 'ERR_SIPREC_MULTIPART' | 'ERR_SIPREC_METADATA', message: string) {
    super(code, message, { category: 'protocol' });
    this.name = 'SiprecError';
  }
}

// ---------------------------------------------------------------------------------------------
// multipart/mixed

export interface MimePart {
  readonly headers: SipHeaders;
  /** Lower-case type/subtype without parameters; text/plain when absent (RFC 2046 §5.1). */
  readonly contentType: string;
  /** Disposition type, lower-case, or null. */
  readonly disposition: string | null;
  readonly body: string;
}

/** `type/subtype` (lower-case) and parameters of a Content-Type value. */
export function parseContentType(value: string): { type: string; params: Map<string, string | null> } {
  const semi = value.indexOf(';');
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  return { type, params: parseParams(semi < 0 ? '' : value.slice(semi)) };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function parseMultipart(body: Buffer, contentType: string, maxParts = 8): MimePart[] {
  const { type, params } = parseContentType(contentType);
  if (!type.startsWith('multipart/')) throw new SiprecError('ERR_SIPREC_MULTIPART', 'not a multipart body');
  const boundary = params.get('boundary');
  if (!boundary || boundary.length > 70 || /[\r\n]/.test(boundary)) {
    throw new SiprecError('ERR_SIPREC_MULTIPART', 'missing or bad boundary');
  }
  const text = body.toString('utf8');
  const delimiter = new RegExp(`(?:^|\\r?\\n)--${escapeRegExp(boundary)}(--)?[ \\t]*(?=\\r?\\n|$)`, 'g');
  const parts: MimePart[] = [];
  let partStart = -1;
  let closed = false;
  for (const match of text.matchAll(delimiter)) {
    if (partStart >= 0) parts.push(parsePart(text.slice(partStart, match.index)));
    if (parts.length > maxParts) throw new SiprecError('ERR_SIPREC_MULTIPART', 'too many parts');
    if (match[1] === '--') {
      closed = true;
      break;
    }
    partStart = match.index + match[0].length;
    // skip the line end after the delimiter
    if (text.startsWith('\r\n', partStart)) partStart += 2;
    else if (text.startsWith('\n', partStart)) partStart += 1;
  }
  if (!closed && partStart >= 0) parts.push(parsePart(text.slice(partStart))); // vendors omit the close
  if (parts.length === 0) throw new SiprecError('ERR_SIPREC_MULTIPART', 'no body parts');
  if (parts.length > maxParts) throw new SiprecError('ERR_SIPREC_MULTIPART', 'too many parts');
  return parts;
}

function parsePart(text: string): MimePart {
  const headers = new SipHeaders();
  const blank = /\r?\n\r?\n/.exec(text);
  let headerText: string;
  let body: string;
  if (text.startsWith('\r\n') || text.startsWith('\n')) {
    headerText = '';
    body = text.replace(/^\r?\n/, '');
  } else if (blank) {
    headerText = text.slice(0, blank.index);
    body = text.slice(blank.index + blank[0].length);
  } else {
    headerText = text;
    body = '';
  }
  for (const line of headerText.split(/\r?\n/)) {
    if (!line) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new SiprecError('ERR_SIPREC_MULTIPART', 'bad part header');
    headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const ct = headers.get('content-type');
  const cd = headers.get('content-disposition');
  return {
    headers,
    contentType: ct === undefined ? 'text/plain' : parseContentType(ct).type,
    disposition: cd === undefined ? null : parseContentType(cd).type,
    body,
  };
}

// ---------------------------------------------------------------------------------------------
// rs-metadata

export interface Participant {
  readonly id: string;
  /** As sent; may lack the sip: scheme (Sonus). PII. */
  readonly aor: string | null;
  /** PII. */
  readonly name: string | null;
  /** User part of the AOR (a phone number or extension). PII. */
  readonly number: string | null;
  /** Acme/Avaya `apkt:callingParty`, when present. */
  readonly callingParty: boolean | null;
}

export interface MetadataStream {
  readonly id: string;
  readonly label: string | null;
}

export interface StreamAssociation {
  readonly participantId: string;
  readonly send: readonly string[];
  readonly recv: readonly string[];
}

export interface CallData {
  /** Original From/To header values (PII), Call-ID. */
  readonly from: string | null;
  readonly to: string | null;
  readonly callId: string | null;
}

export interface RecordingMetadata {
  readonly namespace: string;
  readonly dataMode: 'complete' | 'partial' | null;
  readonly sessionId: string | null;
  readonly participants: readonly Participant[];
  readonly streams: readonly MetadataStream[];
  readonly associations: readonly StreamAssociation[];
  readonly callData: CallData | null;
}

interface XmlNode {
  readonly local: string;
  readonly ns: string | null;
  readonly attrs: ReadonlyMap<string, string>;
  readonly children: readonly XmlNode[];
  readonly text: string;
}

const MAX_ENTRIES = 64;

const xmlParser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: true,
  htmlEntities: false,
});

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** fast-xml-parser's preserveOrder output → namespace-resolved nodes. */
function toNodes(items: unknown, scope: ReadonlyMap<string, string>, depth: number): XmlNode[] {
  if (!Array.isArray(items) || depth > 16) return [];
  const out: XmlNode[] = [];
  for (const item of items) {
    if (!isRecord(item)) continue;
    const key = Object.keys(item).find((k) => k !== ':@');
    if (key === undefined || key === '#text' || key.startsWith('?')) continue;
    const rawAttrs = isRecord(item[':@']) ? item[':@'] : {};
    const nsScope = new Map(scope);
    const attrs = new Map<string, string>();
    for (const [name, value] of Object.entries(rawAttrs)) {
      if (typeof value !== 'string') continue;
      if (name === 'xmlns') nsScope.set('', value);
      else if (name.startsWith('xmlns:')) nsScope.set(name.slice(6), value);
      else attrs.set(name.includes(':') ? name.slice(name.indexOf(':') + 1) : name, value);
    }
    const colon = key.indexOf(':');
    const prefix = colon < 0 ? '' : key.slice(0, colon);
    const rawChildren = item[key];
    const text = Array.isArray(rawChildren)
      ? rawChildren.map((c) => (isRecord(c) && typeof c['#text'] === 'string' ? c['#text'] : '')).join('')
      : '';
    out.push({
      local: colon < 0 ? key : key.slice(colon + 1),
      ns: nsScope.get(prefix) ?? null,
      attrs,
      children: toNodes(rawChildren, nsScope, depth + 1),
      text: text.trim(),
    });
  }
  return out;
}

function kids(node: XmlNode, local: string): XmlNode[] {
  return node.children.filter((c) => c.local === local);
}

function kidText(node: XmlNode, local: string): string | null {
  const k = kids(node, local)[0];
  return k && k.text ? k.text : null;
}

function find(node: XmlNode, local: string, depth: number): XmlNode | null {
  for (const c of node.children) {
    if (c.local === local) return c;
    if (depth > 0) {
      const hit = find(c, local, depth - 1);
      if (hit) return hit;
    }
  }
  return null;
}

/** User part of an AOR: `sip:+1555@host;user=phone` → `+1555`; `2249888500@h` → `2249888500`. */
export function aorUser(aor: string): string | null {
  const withScheme = /^(sips?|tel):/i.test(aor) ? aor : `sip:${aor}`;
  const uri = parseUri(withScheme);
  if (uri?.user) return uri.user.split(';')[0] || null;
  const m = /^(?:sips?:|tel:)?([^@;]+)/i.exec(aor.trim());
  return m?.[1] ?? null;
}

export function parseRecordingMetadata(xml: string): RecordingMetadata {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new SiprecError('ERR_SIPREC_METADATA', 'DOCTYPE not allowed');
  if (XMLValidator.validate(xml) !== true) throw new SiprecError('ERR_SIPREC_METADATA', 'malformed XML');
  let parsed: unknown;
  try {
    parsed = xmlParser.parse(xml);
  } catch {
    throw new SiprecError('ERR_SIPREC_METADATA', 'malformed XML');
  }
  const root = toNodes(parsed, new Map(), 0).find((n) => n.local === 'recording');
  if (!root || root.ns === null || !RECORDING_NAMESPACES.includes(root.ns)) {
    throw new SiprecError('ERR_SIPREC_METADATA', 'not a recording document in a known namespace');
  }
  const participantsEl = kids(root, 'participant');
  const streamsEl = kids(root, 'stream');
  const assocEl = kids(root, 'participantstreamassoc');
  if (participantsEl.length > MAX_ENTRIES || streamsEl.length > MAX_ENTRIES || assocEl.length > MAX_ENTRIES) {
    throw new SiprecError('ERR_SIPREC_METADATA', 'too many metadata entries');
  }
  const associations: StreamAssociation[] = [];
  const participants: Participant[] = [];
  for (const p of participantsEl) {
    const id = p.attrs.get('participant_id') ?? p.attrs.get('id');
    if (!id) continue;
    const nameId = kids(p, 'nameID')[0];
    const aor = nameId?.attrs.get('aor')?.trim() || null;
    const calling = find(p, 'callingParty', 2)?.text.toLowerCase();
    participants.push({
      id, aor, name: nameId ? kidText(nameId, 'name') : null, number: aor ? aorUser(aor) : null,
      callingParty: calling === 'true' ? true : calling === 'false' ? false : null,
    });
    // pre-RFC 7865 shape (Acme, Avaya): <send>/<recv> inside <participant>
    const send = kids(p, 'send').map((s) => s.text).filter(Boolean);
    const recv = kids(p, 'recv').map((s) => s.text).filter(Boolean);
    if (send.length || recv.length) associations.push({ participantId: id, send, recv });
  }
  for (const a of assocEl) {
    const participantId = a.attrs.get('participant_id') ?? a.attrs.get('id');
    if (!participantId) continue;
    associations.push({
      participantId,
      send: kids(a, 'send').map((s) => s.text).filter(Boolean),
      recv: kids(a, 'recv').map((s) => s.text).filter(Boolean),
    });
  }
  const streams: MetadataStream[] = [];
  for (const s of streamsEl) {
    const id = s.attrs.get('stream_id') ?? s.attrs.get('id');
    if (id) streams.push({ id, label: kidText(s, 'label') });
  }
  const session = kids(root, 'session')[0];
  const cd = find(root, 'callData', 2);
  const mode = kidText(root, 'datamode')?.toLowerCase();
  return {
    namespace: root.ns,
    dataMode: mode === 'complete' || mode === 'partial' ? mode : null,
    sessionId: session ? (session.attrs.get('session_id') ?? session.attrs.get('id') ?? null) : null,
    participants,
    streams,
    associations,
    callData: cd ? { from: kidText(cd, 'fromhdr'), to: kidText(cd, 'tohdr'), callId: kidText(cd, 'callid') } : null,
  };
}

// ---------------------------------------------------------------------------------------------
// The SIPREC body as a whole

export interface SiprecBody {
  readonly sdp: string | null;
  /** Null when there is no metadata part or it could not be parsed (see metadataError). */
  readonly metadata: RecordingMetadata | null;
  readonly metadataError: string | null;
}

/** Extracts the SDP and metadata parts of a multipart body; other parts are ignored. */
export function parseSiprecBody(body: Buffer, contentType: string): SiprecBody {
  const parts = parseMultipart(body, contentType);
  const sdpPart = parts.find((p) => p.contentType === 'application/sdp');
  const metaPart = parts.find(
    (p) => p.contentType === 'application/rs-metadata+xml' || p.contentType === 'application/rs-metadata',
  );
  let metadata: RecordingMetadata | null = null;
  let metadataError: string | null = null;
  if (metaPart) {
    try {
      metadata = parseRecordingMetadata(metaPart.body);
    } catch (err) {
      metadataError = err instanceof AppError ? err.code : 'ERR_SIPREC_METADATA';
    }
  }
  return { sdp: sdpPart ? sdpPart.body : null, metadata, metadataError };
}

// ---------------------------------------------------------------------------------------------
// Streams → participants → roles

export interface StreamMapping {
  readonly index: number;
  readonly label: string | null;
  readonly streamId: string | null;
  /** The participant that SENDS this stream. */
  readonly sender: Participant | null;
}

/** For each m-line: its label → metadata stream → the participant whose <send> names it. */
export function mapStreamsToParticipants(metadata: RecordingMetadata, sdp: SessionDescription): StreamMapping[] {
  return sdp.media.map((m) => {
    const stream = m.label === null ? undefined : metadata.streams.find((s) => s.label === m.label);
    const assoc = stream ? metadata.associations.find((a) => a.send.includes(stream.id)) : undefined;
    const sender = assoc ? (metadata.participants.find((p) => p.id === assoc.participantId) ?? null) : null;
    return { index: m.index, label: m.label, streamId: stream?.id ?? null, sender };
  });
}

export interface SiprecRoleOptions {
  /** Which party is the customer; default 'caller' (the trunk side of an inbound call). */
  readonly customer: 'caller' | 'callee';
  /** Participants whose AOR or number matches are agents (e.g. /^sip:7\d{3}@/ for extensions). */
  readonly agentAorPattern?: RegExp;
}

export type CallerBasis = 'call-data' | 'calling-party' | 'sip-from' | 'first-participant' | 'agent-pattern' | 'none';

export interface StreamRole {
  readonly index: number;
  readonly label: string | null;
  readonly role: Role | null;
  readonly participant: Participant | null;
  /** How the m-line was tied to its participant. */
  readonly basis: 'association' | 'order' | 'none';
}

export interface RoleAssignment {
  readonly callerId: string | null;
  readonly basis: CallerBasis;
  readonly streams: readonly StreamRole[];
}

/** Same user part (number/extension): hosts differ between an SBC's legs, so they are not compared. */
function matchesHeader(p: Participant, headerValue: string | null): boolean {
  if (!headerValue || !p.number) return false;
  const na = parseNameAddr(headerValue);
  const user = aorUser(na ? na.uri : headerValue);
  return user !== null && user === p.number;
}

/** Tested against the AOR as sent, the AOR with a sip: scheme added (Sonus omits it), and the number. */
function testPattern(pattern: RegExp, p: Participant): boolean {
  const withScheme = p.aor !== null && !/^(sips?|tel):/i.test(p.aor) ? `sip:${p.aor}` : null;
  const values = [p.aor, withScheme, p.number].filter((v): v is string => v !== null);
  return values.some((v) => {
    pattern.lastIndex = 0;
    return pattern.test(v);
  });
}

/**
 * Per m-line role and participant. The caller is the participant matching the original From
 * (Sonus callData), else the Acme callingParty, else the SIP From of the INVITE, else the first
 * participant; `customer` says whether the caller is the customer. `agentAorPattern`, when it
 * matches some but not all participants, overrides: matches are agents, the rest customers.
 * When no <send> association exists and the counts agree, m-lines map to participants in order.
 */
export function assignSiprecRoles(
  metadata: RecordingMetadata,
  sdp: SessionDescription,
  options: SiprecRoleOptions,
  sipFrom: string | null = null,
): RoleAssignment {
  const ps = metadata.participants;
  const roleOf = new Map<string, Role>();
  let callerId: string | null = null;
  let basis: CallerBasis = 'none';
  const agents = options.agentAorPattern ? ps.filter((p) => testPattern(options.agentAorPattern!, p)) : [];
  if (agents.length > 0 && agents.length < ps.length) {
    basis = 'agent-pattern';
    for (const p of ps) roleOf.set(p.id, agents.includes(p) ? 'agent' : 'customer');
    callerId = (options.customer === 'caller' ? ps.find((p) => !agents.includes(p)) : agents[0])?.id ?? null;
  } else {
    const byCallData = ps.find((p) => matchesHeader(p, metadata.callData?.from ?? null));
    const byCalling = ps.find((p) => p.callingParty === true);
    const byFrom = ps.find((p) => matchesHeader(p, sipFrom));
    const caller = byCallData ?? byCalling ?? byFrom ?? ps[0];
    basis = byCallData ? 'call-data' : byCalling ? 'calling-party' : byFrom ? 'sip-from' : caller ? 'first-participant' : 'none';
    if (caller) {
      callerId = caller.id;
      const callerRole: Role = options.customer === 'caller' ? 'customer' : 'agent';
      const otherRole: Role = callerRole === 'customer' ? 'agent' : 'customer';
      for (const p of ps) roleOf.set(p.id, p.id === caller.id ? callerRole : otherRole);
    }
  }
  const mapping = mapStreamsToParticipants(metadata, sdp);
  const anyAssociated = mapping.some((m) => m.sender !== null);
  const audio = sdp.media.filter((m) => m.media === 'audio');
  const byOrder = !anyAssociated && audio.length === ps.length;
  const streams = mapping.map((m): StreamRole => {
    let participant = m.sender;
    let how: StreamRole['basis'] = participant ? 'association' : 'none';
    if (!participant && byOrder) {
      participant = ps[audio.findIndex((a) => a.index === m.index)] ?? null;
      if (participant) how = 'order';
    }
    return { index: m.index, label: m.label, role: participant ? (roleOf.get(participant.id) ?? null) : null, participant, basis: how };
  });
  return { callerId, basis, streams };
}
