/**
 * Call simulator, RTP side: G.711 bytes (raw, or from a WAV via ./wav.ts) → RTP packets
 * (RFC 3550 header, RFC 3551 PT 0 PCMU / 8 PCMA, 8000 Hz clock: timestamp += payload bytes),
 * paced in real time over UDP to host:port.
 *
 * - packetiseG711(): pure. ptime 10/20/30 ms (80/160/240 bytes); random start sequence,
 *   timestamp and SSRC unless given (RFC 3550 §5.1); marker on the first packet (start of a
 *   talkspurt); the last packet carries the remainder (shorter, not padded), so the bytes
 *   received equal the bytes sent.
 * - impair(): pure, seeded. Loss, duplication and reordering (a packet swapped with the next
 *   one, i.e. sent one ptime late) for tests.
 * - sendRtp(): the socket part. Drift-free schedule (packets due are computed from the elapsed
 *   time at every wake-up), `speed` > 1 plays faster; resolves once every datagram was handed
 *   to the kernel.
 */
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeG711, encodeG711, pcmToSamples, type G711Codec } from '../codec/g711.js';
import { serializeRtp } from '../ingest/rtp/packet.js';
import { parseWav, wavToMulaw } from './wav.js';

export type RtpPtimeMs = 10 | 20 | 30;

export interface PacketiseOptions {
  readonly codec: G711Codec;
  /** Default 20. */
  readonly ptimeMs?: RtpPtimeMs;
  /** Default 0 for PCMU, 8 for PCMA. */
  readonly payloadType?: number;
  /** Defaults: random. */
  readonly ssrc?: number;
  readonly initialSequence?: number;
  readonly initialTimestamp?: number;
}

export interface RtpPlannedPacket {
  readonly sequenceNumber: number;
  readonly timestamp: number;
  readonly marker: boolean;
  /** A view into the input audio. */
  readonly payload: Uint8Array;
  /** Serialized datagram. */
  readonly data: Buffer;
  /** When to send it, ms after the first packet (= its audio position). */
  readonly sendAtMs: number;
}

export interface RtpPacketisation {
  readonly ssrc: number;
  readonly payloadType: number;
  readonly packets: readonly RtpPlannedPacket[];
}

const SAMPLES_PER_MS = 8;

function checkPtime(ptimeMs: number): void {
  if (ptimeMs !== 10 && ptimeMs !== 20 && ptimeMs !== 30) throw new RangeError(`ptimeMs must be 10, 20 or 30, got ${ptimeMs}`);
}

/** Cuts G.711 bytes (1 per sample) into RTP packets. */
export function packetiseG711(audio: Uint8Array, opts: PacketiseOptions): RtpPacketisation {
  const ptimeMs = opts.ptimeMs ?? 20;
  checkPtime(ptimeMs);
  const frameBytes = ptimeMs * SAMPLES_PER_MS;
  const payloadType = opts.payloadType ?? (opts.codec === 'pcmu' ? 0 : 8);
  const ssrc = opts.ssrc ?? randomInt(0, 0x100000000);
  const seq0 = opts.initialSequence ?? randomInt(0, 0x10000);
  const ts0 = opts.initialTimestamp ?? randomInt(0, 0x100000000);
  const packets: RtpPlannedPacket[] = [];
  for (let off = 0, i = 0; off < audio.length; off += frameBytes, i++) {
    const payload = audio.subarray(off, Math.min(off + frameBytes, audio.length));
    const sequenceNumber = (seq0 + i) % 0x10000;
    const timestamp = (ts0 + off) % 0x100000000;
    const marker = i === 0;
    packets.push({
      sequenceNumber,
      timestamp,
      marker,
      payload,
      data: serializeRtp({ payloadType, sequenceNumber, timestamp, ssrc, marker, payload }),
      sendAtMs: off / SAMPLES_PER_MS,
    });
  }
  return { ssrc, payloadType, packets };
}

export interface RtpImpairments {
  /** Probability a packet is not sent. */
  readonly lossRate?: number;
  /** Probability a packet is sent twice. */
  readonly duplicateRate?: number;
  /** Probability a packet is swapped with the next one. */
  readonly reorderRate?: number;
  /** PRNG seed (default 1), so a run is reproducible. */
  readonly seed?: number;
}

export interface RtpSendItem {
  readonly data: Buffer;
  readonly sendAtMs: number;
  /** Index in the packetisation. */
  readonly index: number;
}

export interface ImpairmentCounts {
  lost: number;
  duplicated: number;
  reordered: number;
}

/** mulberry32 */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The send schedule after loss, duplication and reordering (sorted by sendAtMs). */
export function impair(
  packets: readonly RtpPlannedPacket[],
  imp: RtpImpairments = {},
): { items: RtpSendItem[]; counts: ImpairmentCounts } {
  const rand = prng(imp.seed ?? 1);
  const loss = imp.lossRate ?? 0;
  const dup = imp.duplicateRate ?? 0;
  const reorder = imp.reorderRate ?? 0;
  const counts: ImpairmentCounts = { lost: 0, duplicated: 0, reordered: 0 };
  const items: RtpSendItem[] = [];
  for (let i = 0; i < packets.length; i++) {
    const p = packets[i]!;
    if (loss > 0 && rand() < loss) {
      counts.lost++;
      continue;
    }
    items.push({ data: p.data, sendAtMs: p.sendAtMs, index: i });
    if (dup > 0 && rand() < dup) {
      counts.duplicated++;
      items.push({ data: p.data, sendAtMs: p.sendAtMs, index: i });
    }
  }
  if (reorder > 0) {
    // swap an item with the next distinct packet: each goes out at the other's time
    for (let k = 0; k + 1 < items.length; k++) {
      const a = items[k]!;
      const b = items[k + 1]!;
      if (a.index === b.index || rand() >= reorder) continue;
      items[k] = { data: b.data, sendAtMs: a.sendAtMs, index: b.index };
      items[k + 1] = { data: a.data, sendAtMs: b.sendAtMs, index: a.index };
      counts.reordered++;
      k++;
    }
  }
  return { items, counts };
}

/** G.711 bytes of a WAV file in the requested codec (transcoded when needed). */
export async function readWavAsG711(path: string, codec: G711Codec): Promise<Buffer> {
  const info = parseWav(await readFile(path), path);
  if (codec === 'pcmu') return wavToMulaw(info);
  if (info.encoding === 'pcma') return Buffer.from(info.data);
  const pcm = info.encoding === 'pcm16' ? info.data : decodeG711('pcmu', info.data);
  const a = encodeG711('pcma', pcmToSamples(pcm));
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

export interface SendRtpOptions extends PacketiseOptions {
  readonly host: string;
  readonly port: number;
  /** G.711 bytes in `codec`. */
  readonly audio: Uint8Array;
  /** 1 = real time (default); 2 = twice as fast; Infinity = no pacing. */
  readonly speed?: number;
  readonly impairments?: RtpImpairments;
  /** Local IPv4 address/port to send from (default: any, ephemeral). */
  readonly localAddress?: string;
  readonly localPort?: number;
  readonly signal?: AbortSignal;
}

export interface SendRtpResult extends ImpairmentCounts {
  readonly ssrc: number;
  readonly payloadType: number;
  readonly firstSequence: number;
  readonly firstTimestamp: number;
  /** Packets in the packetisation. */
  readonly packets: number;
  /** Datagrams sent (after loss and duplication). */
  readonly sent: number;
  readonly bytesSent: number;
  readonly sendErrors: number;
  /** Local port the datagrams came from. */
  readonly localPort: number;
  readonly durationMs: number;
  readonly aborted: boolean;
}

/** Packetises `audio` and sends it to host:port, paced; resolves when done (or aborted). */
export async function sendRtp(opts: SendRtpOptions): Promise<SendRtpResult> {
  const speed = opts.speed ?? 1;
  if (!(speed > 0)) throw new RangeError('speed must be > 0');
  const plan = packetiseG711(opts.audio, opts);
  const { items, counts } = impair(plan.packets, opts.impairments);
  const socket = createSocket({ type: 'udp4' });
  let sendErrors = 0;
  let handed = 0;
  let acked = 0;
  let bytesSent = 0;
  let drained: (() => void) | null = null;
  socket.on('error', () => {
    sendErrors++;
  });
  const onSent = (err: Error | null): void => {
    if (err) sendErrors++;
    acked++;
    if (acked === handed && drained !== null) drained();
  };
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ port: opts.localPort ?? 0, ...(opts.localAddress === undefined ? {} : { address: opts.localAddress }) }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  const localPort = socket.address().port;
  const started = performance.now();
  let next = 0;
  let aborted = false;
  try {
    while (next < items.length) {
      if (opts.signal?.aborted) {
        aborted = true;
        break;
      }
      const elapsed = speed === Number.POSITIVE_INFINITY ? Number.POSITIVE_INFINITY : (performance.now() - started) * speed;
      while (next < items.length && items[next]!.sendAtMs <= elapsed) {
        const item = items[next++]!;
        handed++;
        bytesSent += item.data.length;
        socket.send(item.data, opts.port, opts.host, onSent);
      }
      if (next < items.length) {
        const waitMs = (items[next]!.sendAtMs - elapsed) / speed;
        try {
          await sleep(Math.max(1, waitMs), undefined, opts.signal === undefined ? undefined : { signal: opts.signal });
        } catch {
          aborted = true;
          break;
        }
      }
    }
    if (acked < handed) await new Promise<void>((resolve) => (drained = resolve));
  } finally {
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
  const first = plan.packets[0];
  return {
    ssrc: plan.ssrc,
    payloadType: plan.payloadType,
    firstSequence: first?.sequenceNumber ?? 0,
    firstTimestamp: first?.timestamp ?? 0,
    packets: plan.packets.length,
    sent: handed,
    bytesSent,
    sendErrors,
    localPort,
    durationMs: performance.now() - started,
    aborted,
    ...counts,
  };
}
