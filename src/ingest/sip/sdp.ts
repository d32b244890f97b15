/**
 * SDP parsing (RFC 4566) and answer generation (RFC 3264) for a receive-only G.711 endpoint.
 *
 * Protocol facts relied on:
 * - `<type>=<value>` lines, `v=0` first; session-level lines until the first `m=`;
 *   c= at session level applies to every m-line without its own (RFC 4566 §5.7);
 * - static payload types 0 = PCMU/8000 and 8 = PCMA/8000 need no rtpmap (RFC 3551 §6);
 * - direction attributes default to sendrecv; a session-level one applies to all m-lines;
 * - the answer has exactly the offer's m-lines, in order; a rejected line has port 0 and keeps
 *   the offered formats (RFC 3264 §6); we never send media, so sendonly/sendrecv offers are
 *   answered recvonly, recvonly/inactive offers inactive (RFC 3264 §6.1; SIPREC, RFC 7866 §8.1.1);
 * - the o= session version increases only when the answer changes (RFC 3264 §8).
 * Leniency: bare LF line ends; empty s=; missing t=.
 */
import net from 'node:net';
import { AppError } from '../../core/errors.js';

export type SdpDirection = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
const DIRECTIONS: ReadonlySet<string> = new Set(['sendrecv', 'sendonly', 'recvonly', 'inactive']);
const isDirection = (name: string): name is SdpDirection => DIRECTIONS.has(name);

export class SdpError extends AppError {
  constructor(message: string) {
    super('ERR_SDP_MALFORMED', message, { category: 'protocol' });
    this.name = 'SdpError';
  }
}

export interface SdpConnection {
  readonly addrType: 'IP4' | 'IP6';
  readonly address: string;
}

export interface SdpOrigin {
  readonly username: string;
  readonly sessionId: string;
  readonly sessionVersion: string;
  readonly addrType: string;
  readonly address: string;
}

export interface RtpMap {
  readonly encoding: string;
  readonly clockRate: number;
  readonly channels: number | null;
}

export interface SdpAttribute {
  readonly name: string;
  readonly value: string | null;
}

export interface SdpMedia {
  readonly index: number;
  readonly media: string;
  readonly port: number;
  readonly proto: string;
  readonly formats: readonly string[];
  /** Media-level c=, else the session's; null only for port-0 lines. */
  readonly connection: SdpConnection | null;
  readonly rtpmap: ReadonlyMap<number, RtpMap>;
  readonly fmtp: ReadonlyMap<number, string>;
  readonly ptimeMs: number | null;
  readonly maxptimeMs: number | null;
  /** Effective direction (media level, else session level, else sendrecv). */
  readonly direction: SdpDirection;
  readonly label: string | null;
  readonly attributes: readonly SdpAttribute[];
}

export interface SessionDescription {
  readonly origin: SdpOrigin;
  readonly sessionName: string;
  readonly connection: SdpConnection | null;
  readonly media: readonly SdpMedia[];
  readonly attributes: readonly SdpAttribute[];
}

export interface SdpLimits {
  readonly maxBytes: number;
  readonly maxMediaLines: number;
}

export const DEFAULT_SDP_LIMITS: SdpLimits = { maxBytes: 16_384, maxMediaLines: 16 };

const STATIC_PT: ReadonlyMap<number, RtpMap> = new Map([
  [0, { encoding: 'PCMU', clockRate: 8000, channels: 1 }],
  [8, { encoding: 'PCMA', clockRate: 8000, channels: 1 }],
]);

function parseConnection(value: string): SdpConnection {
  const m = /^IN (IP4|IP6) ([^\s/]+)(?:\/\d+){0,2}$/.exec(value);
  if (!m) throw new SdpError('bad c= line');
  return { addrType: m[1] === 'IP6' ? 'IP6' : 'IP4', address: m[2]! };
}

function parseAttribute(value: string): SdpAttribute {
  const colon = value.indexOf(':');
  return colon < 0 ? { name: value, value: null } : { name: value.slice(0, colon), value: value.slice(colon + 1) };
}

function parseMs(value: string | null): number | null {
  if (value === null || !/^\d{1,5}(?:\.\d+)?$/.test(value.trim())) return null;
  return Math.round(Number(value.trim()));
}

interface MediaDraft {
  media: string;
  port: number;
  proto: string;
  formats: string[];
  connection: SdpConnection | null;
  attributes: SdpAttribute[];
}

export function parseSdp(text: string, limits: SdpLimits = DEFAULT_SDP_LIMITS): SessionDescription {
  if (Buffer.byteLength(text, 'utf8') > limits.maxBytes) throw new SdpError('SDP too large');
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines[0] !== 'v=0') throw new SdpError('SDP must start with v=0');
  let origin: SdpOrigin | null = null;
  let sessionName: string | null = null;
  let sessionConnection: SdpConnection | null = null;
  const sessionAttrs: SdpAttribute[] = [];
  const drafts: MediaDraft[] = [];
  for (const line of lines.slice(1)) {
    const m = /^([a-z])=(.*)$/.exec(line);
    if (!m) throw new SdpError('bad SDP line');
    const type = m[1]!;
    const value = m[2]!;
    const current = drafts[drafts.length - 1];
    switch (type) {
      case 'o': {
        const o = /^(\S+) (\d+) (\d+) IN (IP4|IP6) (\S+)$/.exec(value);
        if (!o || current) throw new SdpError('bad o= line');
        origin = { username: o[1]!, sessionId: o[2]!, sessionVersion: o[3]!, addrType: o[4]!, address: o[5]! };
        break;
      }
      case 's':
        if (!current) sessionName = value;
        break;
      case 'c':
        if (current) current.connection = parseConnection(value);
        else sessionConnection = parseConnection(value);
        break;
      case 'm': {
        const mm = /^([a-z0-9\-_]+) (\d{1,5})(?:\/(\d+))? ([A-Za-z0-9/]+)((?: \S+)+)$/i.exec(value);
        if (!mm) throw new SdpError('bad m= line');
        const port = Number(mm[2]);
        if (port > 65535) throw new SdpError('bad m= port');
        if (drafts.length >= limits.maxMediaLines) throw new SdpError('too many m= lines');
        drafts.push({ media: mm[1]!.toLowerCase(), port, proto: mm[4]!, formats: mm[5]!.trim().split(' '), connection: null, attributes: [] });
        break;
      }
      case 'a':
        (current ? current.attributes : sessionAttrs).push(parseAttribute(value));
        break;
      default:
        break; // i u e p b t r z k: not needed by a recorder
    }
  }
  if (!origin) throw new SdpError('missing o= line');
  if (sessionName === null) throw new SdpError('missing s= line');
  const sessionDirection = sessionAttrs.map((a) => a.name).find(isDirection);
  const media = drafts.map((d, index): SdpMedia => {
    const connection = d.connection ?? sessionConnection;
    if (!connection && d.port !== 0) throw new SdpError('m= line without c=');
    const rtpmap = new Map<number, RtpMap>();
    const fmtp = new Map<number, string>();
    let direction: SdpDirection = sessionDirection ?? 'sendrecv';
    let label: string | null = null;
    for (const a of d.attributes) {
      if (a.name === 'rtpmap' && a.value !== null) {
        const r = /^(\d{1,3}) ([^/\s]+)\/(\d+)(?:\/(\d+))?$/.exec(a.value.trim());
        if (!r) throw new SdpError('bad rtpmap');
        rtpmap.set(Number(r[1]), { encoding: r[2]!, clockRate: Number(r[3]), channels: r[4] === undefined ? null : Number(r[4]) });
      } else if (a.name === 'fmtp' && a.value !== null) {
        const f = /^(\d{1,3}) (.*)$/.exec(a.value.trim());
        if (f) fmtp.set(Number(f[1]), f[2]!);
      } else if (isDirection(a.name)) direction = a.name;
      else if (a.name === 'label' && a.value !== null) label = a.value.trim();
    }
    const attr = (name: string): string | null => d.attributes.find((a) => a.name === name)?.value ?? null;
    return {
      index, media: d.media, port: d.port, proto: d.proto, formats: d.formats, connection, rtpmap, fmtp,
      ptimeMs: parseMs(attr('ptime')), maxptimeMs: parseMs(attr('maxptime')), direction, label, attributes: d.attributes,
    };
  });
  return { origin, sessionName, connection: sessionConnection, media, attributes: sessionAttrs };
}

// ---------------------------------------------------------------------------------------------
// Offer analysis and answer

export type G711Codec = 'PCMU' | 'PCMA';

export interface CodecChoice {
  readonly name: G711Codec;
  readonly payloadType: number;
}

/** Protocols we can receive: plain RTP (no SRTP). */
const RTP_PROTOS: ReadonlySet<string> = new Set(['RTP/AVP', 'RTP/AVPF']);

function rtpmapOf(m: SdpMedia, pt: number): RtpMap | undefined {
  return m.rtpmap.get(pt) ?? STATIC_PT.get(pt);
}

/** The first G.711 format in the offer's preference order, or null. */
export function chooseG711(m: SdpMedia): CodecChoice | null {
  if (m.media !== 'audio' || m.port === 0 || !RTP_PROTOS.has(m.proto.toUpperCase())) return null;
  for (const f of m.formats) {
    if (!/^\d{1,3}$/.test(f)) continue;
    const pt = Number(f);
    const map = rtpmapOf(m, pt);
    if (!map || map.clockRate !== 8000 || (map.channels !== null && map.channels !== 1)) continue;
    const enc = map.encoding.toUpperCase();
    if (enc === 'PCMU' || enc === 'PCMA') return { name: enc, payloadType: pt };
  }
  return null;
}

/** The offered telephone-event/8000 payload type (RFC 4733), or null. */
export function telephoneEventPt(m: SdpMedia): number | null {
  for (const f of m.formats) {
    const pt = Number(f);
    const map = m.rtpmap.get(pt);
    if (map && map.encoding.toLowerCase() === 'telephone-event' && map.clockRate === 8000) return pt;
  }
  return null;
}

export function hasAcceptableAudio(offer: SessionDescription): boolean {
  return offer.media.some((m) => chooseG711(m) !== null);
}

export function answerDirection(offered: SdpDirection): SdpDirection {
  return offered === 'sendonly' || offered === 'sendrecv' ? 'recvonly' : 'inactive';
}

export interface AnswerChoices {
  /** Our media address (c=). */
  readonly address: string;
  /** Port per m-line index; 0 or absent rejects the line. */
  readonly ports: ReadonlyMap<number, number>;
  readonly sessionId: string;
  readonly sessionVersion: string;
  readonly username?: string;
}

export interface AnsweredMedia {
  readonly index: number;
  /** 0 when rejected. */
  readonly port: number;
  readonly codec: CodecChoice | null;
  readonly telephoneEventPt: number | null;
  readonly direction: SdpDirection;
}

export interface SdpAnswer {
  readonly sdp: string;
  readonly media: readonly AnsweredMedia[];
}

function addrType(address: string): 'IP4' | 'IP6' {
  return net.isIPv6(address) ? 'IP6' : 'IP4';
}

/** Builds the answer: same m-lines in order; accepted audio lines carry one G.711 codec. */
export function buildAnswer(offer: SessionDescription, choices: AnswerChoices): SdpAnswer {
  if (!net.isIP(choices.address)) throw new SdpError('answer address must be an IP literal');
  const at = addrType(choices.address);
  const lines = [
    'v=0',
    `o=${choices.username ?? 'callscribe'} ${choices.sessionId} ${choices.sessionVersion} IN ${at} ${choices.address}`,
    's=callscribe',
    `c=IN ${at} ${choices.address}`,
    't=0 0',
  ];
  const media: AnsweredMedia[] = [];
  for (const m of offer.media) {
    const port = choices.ports.get(m.index) ?? 0;
    const codec = chooseG711(m);
    if (port <= 0 || port > 65535 || codec === null) {
      lines.push(`m=${m.media} 0 ${m.proto} ${m.formats.join(' ')}`);
      media.push({ index: m.index, port: 0, codec: null, telephoneEventPt: null, direction: 'inactive' });
      continue;
    }
    const te = telephoneEventPt(m);
    const direction = answerDirection(m.direction);
    lines.push(`m=audio ${port} ${m.proto} ${codec.payloadType}${te === null ? '' : ` ${te}`}`);
    lines.push(`a=rtpmap:${codec.payloadType} ${codec.name}/8000`);
    if (te !== null) {
      lines.push(`a=rtpmap:${te} telephone-event/8000`, `a=fmtp:${te} ${m.fmtp.get(te) ?? '0-15'}`);
    }
    if (m.ptimeMs !== null) lines.push(`a=ptime:${m.ptimeMs}`);
    lines.push(`a=${direction}`);
    if (m.label !== null) lines.push(`a=label:${m.label}`);
    media.push({ index: m.index, port, codec, telephoneEventPt: te, direction });
  }
  return { sdp: `${lines.join('\r\n')}\r\n`, media };
}

/** The next o= session version (decimal string, may exceed 2^53). */
export function nextSessionVersion(version: string): string {
  return (BigInt(version) + 1n).toString();
}
