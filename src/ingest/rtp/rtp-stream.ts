/**
 * One RTP receive port's logic, sans-I/O: datagrams in (with source and arrival time), call
 * timeline events out — G.711 audio frames, DTMF digits, SSRC changes.
 *
 * - Muxed RTCP (RFC 5761) is counted and ignored; malformed packets are counted by code.
 * - Symmetric RTP latching: the first parseable packet with a known payload type fixes the
 *   source address:port (unless `remote` pins it); anything from elsewhere is dropped and
 *   counted before parsing, so a flood costs one comparison per packet.
 * - Payload types (RFC 3551 §6, SDP a=rtpmap): default 0 PCMU, 8 PCMA, 13 CN, 101
 *   telephone-event; a `payloadTypes` option replaces the whole map. Every packet of the
 *   current SSRC goes through the jitter buffer (so sequence numbers stay continuous); at
 *   release, audio is emitted (duration = payload bytes, 8 per ms), telephone-events go to the
 *   DTMF tracker (RFC 4733), CN (RFC 3389) is counted and produces nothing (the consumer's
 *   timeline fills the gap with silence), other payload types are counted and dropped.
 * - Timeline: ms from the stream start, from RTP timestamps: the first released frame sits at
 *   `timelineStartMs`. After an SSRC change or a sequence restart, the first frame continues at
 *   max(end of the audio emitted so far, its arrival-derived position =
 *   timelineStartMs + its arrival − the first frame's arrival). The same re-anchoring is applied
 *   when the timestamps of consecutive audio frames jump back by more than 200 ms, or forward
 *   by more than `maxTimestampJumpMs` beyond their arrival gap (a sender that changed its
 *   timestamp base without changing SSRC).
 * - SSRC change: held frames of the old SSRC are flushed, sequence and DTMF state reset. Only an
 *   audio packet can switch the SSRC (a telephone-event with a different SSRC is dropped and
 *   counted); packets of the previous SSRC within `ssrcHoldoffMs` of the switch are dropped as
 *   stale instead of switching back.
 */
import { DtmfTracker, type DtmfDigit, type DtmfDetection } from './telephone-event.js';
import { JitterBuffer, type JitterFrame } from './jitter-buffer.js';
import { isRtcp, parseRtp, type RtpErrorCode } from './packet.js';

export type RtpPayloadKind = 'pcmu' | 'pcma' | 'telephone-event' | 'cn';
export type RtpAudioCodec = 'pcmu' | 'pcma';

export const DEFAULT_PAYLOAD_TYPES: Readonly<Record<number, RtpPayloadKind>> = Object.freeze({
  0: 'pcmu',
  8: 'pcma',
  13: 'cn',
  101: 'telephone-event',
});

export interface RtpSource {
  readonly address: string;
  readonly port: number;
}

export interface RtpStreamOptions {
  /** Payload type → kind, from the SDP; replaces DEFAULT_PAYLOAD_TYPES entirely. */
  readonly payloadTypes?: Readonly<Record<number, RtpPayloadKind>>;
  /** Call-timeline position of the stream's first frame, ms. Default 0. */
  readonly timelineStartMs?: number;
  /** Jitter buffer reorder window, ms. Default 60. */
  readonly windowMs?: number;
  /** Jitter buffer capacity, packets. Default 64. */
  readonly maxPackets?: number;
  /** Accept only this source instead of latching to the first valid one. */
  readonly remote?: RtpSource;
  /** Packets of the previous SSRC this soon after a switch are dropped as stale, ms. Default 1000. */
  readonly ssrcHoldoffMs?: number;
  /** Forward timestamp jump (beyond the arrival gap) that re-anchors the timeline, ms. Default 5000. */
  readonly maxTimestampJumpMs?: number;
}

export interface RtpAudioEvent {
  readonly kind: 'audio';
  /** Position on the call timeline, ms. */
  readonly timelineMs: number;
  /** G.711 bytes, 1 per sample (a view into the datagram). */
  readonly payload: Uint8Array;
  readonly codec: RtpAudioCodec;
  /** When the packet arrived (the push() clock). */
  readonly arrivalMs: number;
  readonly ssrc: number;
}

export interface RtpDtmfEvent {
  readonly kind: 'dtmf';
  readonly digit: DtmfDigit;
  readonly timelineMs: number;
  readonly durationMs: number;
  readonly volume: number;
  /** False when the end packets were lost. */
  readonly ended: boolean;
}

export interface RtpSsrcChangeEvent {
  readonly kind: 'ssrc-change';
  readonly previousSsrc: number;
  readonly ssrc: number;
  /** Where the new SSRC's first frame sits on the timeline. */
  readonly timelineMs: number;
}

export type RtpStreamEvent = RtpAudioEvent | RtpDtmfEvent | RtpSsrcChangeEvent;

export interface RtpStreamStats {
  /** Datagrams pushed, from any source. */
  packets: number;
  bytes: number;
  /** Muxed RTCP packets from the latched source (ignored). */
  rtcp: number;
  /** Unparseable packets from the latched (or a candidate) source, by code. */
  dropped: Record<RtpErrorCode, number>;
  /** Packets from a source other than the latched one. */
  foreignSource: number;
  /** Valid packets with an unmapped payload type before latching (cannot latch). */
  unlatchablePayloadType: number;
  /** Packets of the current SSRC with an unmapped payload type. */
  droppedPayloadType: number;
  /** Non-audio packets with an SSRC other than the current one. */
  otherSsrc: number;
  /** Packets of the previous SSRC shortly after a switch. */
  staleSsrc: number;
  audioFrames: number;
  audioMs: number;
  lostPackets: number;
  lostMs: number;
  duplicates: number;
  late: number;
  reordered: number;
  overflowReleases: number;
  seqJumpsDropped: number;
  seqResyncs: number;
  timestampJumps: number;
  /** DTMF digits reported. */
  dtmf: number;
  /** Comfort-noise packets. */
  cn: number;
  ssrcChanges: number;
}

/**
 * Every dropped packet of a stats snapshot under a stable reason code (for
 * callscribe_ingest_frames_dropped_total{reason}): the parser's ERR_RTP_* codes plus these.
 */
export function rtpDropReasons(s: RtpStreamStats): Record<string, number> {
  return {
    ...s.dropped,
    ERR_RTP_FOREIGN_SOURCE: s.foreignSource,
    ERR_RTP_RTCP_MUXED: s.rtcp,
    ERR_RTP_UNKNOWN_PAYLOAD_TYPE: s.unlatchablePayloadType + s.droppedPayloadType,
    ERR_RTP_OTHER_SSRC: s.otherSsrc,
    ERR_RTP_STALE_SSRC: s.staleSsrc,
    ERR_RTP_DUPLICATE: s.duplicates,
    ERR_RTP_LATE: s.late,
    ERR_RTP_SEQ_JUMP: s.seqJumpsDropped,
  };
}

const EMPTY: readonly RtpStreamEvent[] = Object.freeze([]);
const SAMPLES_PER_MS = 8;
const MAX_BACKWARD_JUMP_MS = 200;

const K_NONE = 0;
const K_PCMU = 1;
const K_PCMA = 2;
const K_DTMF = 3;
const K_CN = 4;
const KIND_CODE: Readonly<Record<RtpPayloadKind, number>> = { pcmu: K_PCMU, pcma: K_PCMA, 'telephone-event': K_DTMF, cn: K_CN };

function buildPayloadTable(map: Readonly<Record<number, RtpPayloadKind>>): Uint8Array {
  const table = new Uint8Array(128);
  for (const [key, kind] of Object.entries(map)) {
    const pt = Number(key);
    if (!Number.isInteger(pt) || pt < 0 || pt > 127) throw new RangeError(`RTP payload type must be 0..127, got ${key}`);
    const code = KIND_CODE[kind];
    if (code === undefined) throw new RangeError(`unknown RTP payload kind ${String(kind)} for payload type ${pt}`);
    table[pt] = code;
  }
  return table;
}

export class RtpStream {
  readonly #pt: Uint8Array;
  readonly #jb: JitterBuffer;
  readonly #dtmf = new DtmfTracker();
  readonly #timelineStartMs: number;
  readonly #ssrcHoldoffMs: number;
  readonly #maxJumpMs: number;
  #srcAddress: string | null = null;
  #pinned = false;
  #srcPort = 0;
  #ssrc: number | null = null;
  #prevSsrc: number | null = null;
  #switchedAt = 0;
  #pendingPrevSsrc: number | null = null;
  #lastPacketAt: number | null = null;
  // timeline
  #needAnchor = true;
  #anchorTs = 0;
  #anchorMs = 0;
  #firstArrivalMs = Number.NaN;
  #endMs = Number.NEGATIVE_INFINITY;
  #haveAudio = false;
  #audioEndTs = 0;
  #audioArrivalMs = 0;
  #audioSamples = 0;
  #out: RtpStreamEvent[] | null = null;
  readonly #dropped: Record<RtpErrorCode, number>;
  readonly #stats = {
    packets: 0,
    bytes: 0,
    rtcp: 0,
    foreignSource: 0,
    unlatchablePayloadType: 0,
    droppedPayloadType: 0,
    otherSsrc: 0,
    staleSsrc: 0,
    audioFrames: 0,
    timestampJumps: 0,
    cn: 0,
    ssrcChanges: 0,
  };

  constructor(opts: RtpStreamOptions = {}) {
    this.#pt = buildPayloadTable(opts.payloadTypes ?? DEFAULT_PAYLOAD_TYPES);
    this.#jb = new JitterBuffer({
      ...(opts.windowMs === undefined ? {} : { windowMs: opts.windowMs }),
      ...(opts.maxPackets === undefined ? {} : { maxPackets: opts.maxPackets }),
    });
    this.#timelineStartMs = opts.timelineStartMs ?? 0;
    this.#ssrcHoldoffMs = opts.ssrcHoldoffMs ?? 1000;
    this.#maxJumpMs = opts.maxTimestampJumpMs ?? 5000;
    if (!Number.isFinite(this.#timelineStartMs)) throw new RangeError('timelineStartMs must be finite');
    if (opts.remote !== undefined) {
      this.#srcAddress = opts.remote.address;
      this.#srcPort = opts.remote.port;
      this.#pinned = true;
    }
    this.#dropped = {
      ERR_RTP_TRUNCATED: 0,
      ERR_RTP_VERSION: 0,
      ERR_RTP_BAD_PADDING: 0,
      ERR_RTP_BAD_EXTENSION: 0,
      ERR_RTP_BAD_CSRC: 0,
      ERR_RTP_EMPTY: 0,
    };
  }

  /**
   * Forgets the latched source (a re-INVITE moved the sender, e.g. after a transfer): the next
   * valid packet latches again. The timeline and the SSRC state stay; a new SSRC from the new
   * source goes through the usual SSRC change. No effect on a pinned `remote`.
   */
  relatch(): void {
    if (!this.#pinned) this.#srcAddress = null;
  }

  /** The latched (or pinned) source, null before the first valid packet. */
  get source(): RtpSource | null {
    return this.#srcAddress === null ? null : { address: this.#srcAddress, port: this.#srcPort };
  }

  get ssrc(): number | null {
    return this.#ssrc;
  }

  /** Arrival time of the last packet accepted from the source (inactivity checks), or null. */
  get lastPacketAt(): number | null {
    return this.#lastPacketAt;
  }

  /** End of the audio emitted so far on the call timeline, ms (NaN before any audio). */
  get positionMs(): number {
    return Number.isFinite(this.#endMs) ? this.#endMs : Number.NaN;
  }

  /** When poll() next has work without new input (push() clock); Infinity when idle. */
  get nextDeadlineMs(): number {
    return this.#jb.nextDeadlineMs;
  }

  /**
   * One UDP datagram. Returns the events it made ready (often none; a shared frozen empty
   * array then). Call poll() on a timer for frames waiting behind a gap.
   */
  push(datagram: Uint8Array, from: RtpSource, arrivalMs: number): readonly RtpStreamEvent[] {
    const stats = this.#stats;
    stats.packets++;
    stats.bytes += datagram.length;
    const latched = this.#srcAddress !== null;
    if (latched && (from.port !== this.#srcPort || from.address !== this.#srcAddress)) {
      stats.foreignSource++;
      return EMPTY;
    }
    if (isRtcp(datagram)) {
      stats.rtcp++;
      return EMPTY;
    }
    const r = parseRtp(datagram);
    if (!r.ok) {
      this.#dropped[r.code]++;
      return EMPTY;
    }
    const p = r.packet;
    const kind = this.#pt[p.payloadType]!;
    if (!latched || this.#ssrc === null) {
      if (kind === K_NONE) {
        stats.unlatchablePayloadType++;
        return EMPTY;
      }
      if (!latched) {
        this.#srcAddress = from.address;
        this.#srcPort = from.port;
      }
      // after relatch() the SSRC is kept: a new one switches below (state reset, timeline kept)
      this.#ssrc ??= p.ssrc;
    }
    this.#out = null;
    if (p.ssrc !== this.#ssrc) {
      if (p.ssrc === this.#prevSsrc && arrivalMs - this.#switchedAt < this.#ssrcHoldoffMs) {
        stats.staleSsrc++;
        return EMPTY;
      }
      if (kind !== K_PCMU && kind !== K_PCMA) {
        stats.otherSsrc++;
        return EMPTY;
      }
      this.#switchSsrc(p.ssrc, arrivalMs);
    }
    this.#lastPacketAt = arrivalMs;
    this.#jb.push(p, arrivalMs, kind === K_PCMU || kind === K_PCMA ? p.payload.length : 0);
    this.#release(this.#jb.poll(arrivalMs));
    return this.#takeOut();
  }

  /** Frames whose reorder window expired by `nowMs`. */
  poll(nowMs: number): readonly RtpStreamEvent[] {
    this.#out = null;
    this.#release(this.#jb.poll(nowMs));
    return this.#takeOut();
  }

  /** Everything held, and a DTMF event whose end never came (end of the stream). */
  flush(): readonly RtpStreamEvent[] {
    this.#out = null;
    this.#release(this.#jb.flush());
    this.#emitDtmf(this.#dtmf.flush());
    return this.#takeOut();
  }

  stats(): RtpStreamStats {
    const jb = this.#jb.stats();
    return {
      ...this.#stats,
      dropped: { ...this.#dropped },
      audioMs: this.#audioSamples / SAMPLES_PER_MS,
      lostPackets: jb.lostPackets,
      lostMs: jb.lostMs,
      duplicates: jb.duplicates,
      late: jb.late,
      reordered: jb.reordered,
      overflowReleases: jb.overflowReleases,
      seqJumpsDropped: jb.jumpsDropped,
      seqResyncs: jb.resyncs,
      dtmf: this.#dtmf.stats().reported,
    };
  }

  #switchSsrc(ssrc: number, arrivalMs: number): void {
    this.#release(this.#jb.flush());
    this.#emitDtmf(this.#dtmf.flush());
    this.#jb.reset();
    this.#dtmf.reset();
    this.#prevSsrc = this.#ssrc;
    this.#pendingPrevSsrc = this.#ssrc;
    this.#ssrc = ssrc;
    this.#switchedAt = arrivalMs;
    this.#needAnchor = true;
    this.#stats.ssrcChanges++;
  }

  #release(frames: readonly JitterFrame[]): void {
    for (let i = 0; i < frames.length; i++) {
      const f = frames[i]!;
      if (f.resync) this.#needAnchor = true;
      if (this.#needAnchor) this.#anchor(f);
      const p = f.packet;
      const kind = this.#pt[p.payloadType]!;
      if (kind === K_PCMU || kind === K_PCMA) {
        this.#emitAudio(f, kind === K_PCMU ? 'pcmu' : 'pcma');
      } else if (kind === K_DTMF) {
        this.#emitDtmf(this.#dtmf.push(f.extTimestamp, this.#timelineOf(f.extTimestamp), p.payload));
      } else if (kind === K_CN) {
        this.#stats.cn++;
      } else {
        this.#stats.droppedPayloadType++;
      }
    }
  }

  #timelineOf(extTs: number): number {
    return this.#anchorMs + (extTs - this.#anchorTs) / SAMPLES_PER_MS;
  }

  #anchor(f: JitterFrame): void {
    if (Number.isNaN(this.#firstArrivalMs)) {
      this.#firstArrivalMs = f.arrivalMs;
      this.#anchorMs = this.#timelineStartMs;
    } else {
      const arrivalPos = this.#timelineStartMs + (f.arrivalMs - this.#firstArrivalMs);
      this.#anchorMs = Math.max(this.#endMs, arrivalPos);
    }
    this.#anchorTs = f.extTimestamp;
    this.#needAnchor = false;
    this.#haveAudio = false;
    const prev = this.#pendingPrevSsrc;
    if (prev !== null && this.#ssrc !== null) {
      this.#pendingPrevSsrc = null;
      (this.#out ??= []).push({ kind: 'ssrc-change', previousSsrc: prev, ssrc: this.#ssrc, timelineMs: this.#anchorMs });
    }
  }

  #emitAudio(f: JitterFrame, codec: RtpAudioCodec): void {
    if (this.#haveAudio) {
      const gapMs = (f.extTimestamp - this.#audioEndTs) / SAMPLES_PER_MS;
      if (gapMs < -MAX_BACKWARD_JUMP_MS || gapMs > f.arrivalMs - this.#audioArrivalMs + this.#maxJumpMs) {
        this.#stats.timestampJumps++;
        this.#anchor(f);
      }
    }
    const timelineMs = this.#timelineOf(f.extTimestamp);
    const samples = f.samples;
    this.#haveAudio = true;
    this.#audioEndTs = f.extTimestamp + samples;
    this.#audioArrivalMs = f.arrivalMs;
    this.#audioSamples += samples;
    const end = timelineMs + samples / SAMPLES_PER_MS;
    if (end > this.#endMs) this.#endMs = end;
    this.#stats.audioFrames++;
    (this.#out ??= []).push({
      kind: 'audio',
      timelineMs,
      payload: f.packet.payload,
      codec,
      arrivalMs: f.arrivalMs,
      ssrc: f.packet.ssrc,
    });
  }

  #emitDtmf(found: readonly DtmfDetection[]): void {
    for (const d of found) {
      (this.#out ??= []).push({
        kind: 'dtmf',
        digit: d.digit,
        timelineMs: d.timelineMs,
        durationMs: d.durationMs,
        volume: d.volume,
        ended: d.ended,
      });
    }
  }

  #takeOut(): readonly RtpStreamEvent[] {
    const out = this.#out;
    this.#out = null;
    return out ?? EMPTY;
  }
}
