import { describe, expect, it } from 'vitest';
import { readPcapFile } from '../../simulator/pcap.js';
import { serializeRtp } from './packet.js';
import { RtpStream, rtpDropReasons, type RtpAudioEvent, type RtpStreamEvent } from './rtp-stream.js';
import { serializeTelephoneEvent } from './telephone-event.js';

const SRC = { address: '10.0.0.1', port: 4000 };
const OTHER = { address: '10.0.0.1', port: 4002 };
const G711A_PCAP = '/usr/share/sip-tester/g711a.pcap';

interface PacketSpec {
  seq: number;
  ts: number;
  bytes?: number;
  pt?: number;
  ssrc?: number;
  marker?: boolean;
  payload?: Uint8Array;
}

/** A packet whose payload encodes its sequence number (so order is checkable from bytes). */
function rtp(s: PacketSpec): Buffer {
  const bytes = s.bytes ?? 160;
  return serializeRtp({
    payloadType: s.pt ?? 0,
    sequenceNumber: s.seq & 0xffff,
    timestamp: s.ts >>> 0,
    ssrc: s.ssrc ?? 0x1234,
    marker: s.marker ?? false,
    payload: s.payload ?? new Uint8Array(bytes).fill(s.seq & 0xff),
  });
}

function dtmf(seq: number, ts: number, event: number, duration: number, end: boolean, ssrc = 0x1234): Buffer {
  return rtp({ seq, ts, pt: 101, ssrc, payload: serializeTelephoneEvent({ event, end, volume: 10, duration }) });
}

const audio = (evs: readonly RtpStreamEvent[]): RtpAudioEvent[] => evs.filter((e): e is RtpAudioEvent => e.kind === 'audio');
const times = (evs: readonly RtpStreamEvent[]): number[] => audio(evs).map((e) => e.timelineMs);
const firstBytes = (evs: readonly RtpStreamEvent[]): number[] => audio(evs).map((e) => e.payload[0]!);

/** Pushes datagrams at the given arrival times, then polls far in the future; all events. */
function run(stream: RtpStream, items: readonly [Buffer, number, { address: string; port: number }?][]): RtpStreamEvent[] {
  const out: RtpStreamEvent[] = [];
  let last = 0;
  for (const [buf, at, from] of items) {
    out.push(...stream.poll(at));
    out.push(...stream.push(buf, from ?? SRC, at));
    last = at;
  }
  out.push(...stream.poll(last + 10_000));
  return out;
}

/** n packets of `bytes` each from seq/ts, arriving every packet duration from t0. */
function series(n: number, seq0: number, ts0: number, t0: number, bytes = 160, extra: Partial<PacketSpec> = {}): [Buffer, number][] {
  const items: [Buffer, number][] = [];
  for (let i = 0; i < n; i++) items.push([rtp({ seq: seq0 + i, ts: ts0 + i * bytes, bytes, ...extra }), t0 + (i * bytes) / 8]);
  return items;
}

describe('RtpStream audio', () => {
  it('emits G.711 frames on the call timeline from timelineStartMs, codec from the payload type', () => {
    const s = new RtpStream({ timelineStartMs: 1500 });
    const evs = run(s, [
      [rtp({ seq: 10, ts: 999, pt: 0 }), 0],
      [rtp({ seq: 11, ts: 1159, pt: 0 }), 20],
      [rtp({ seq: 12, ts: 1319, pt: 8 }), 40],
    ]);
    expect(evs.map((e) => e.kind)).toEqual(['audio', 'audio', 'audio']);
    expect(audio(evs).map((e) => [e.timelineMs, e.codec, e.payload.length, e.arrivalMs, e.ssrc])).toEqual([
      [1500, 'pcmu', 160, 0, 0x1234],
      [1520, 'pcmu', 160, 20, 0x1234],
      [1540, 'pcma', 160, 40, 0x1234],
    ]);
    expect(s.positionMs).toBe(1560);
    expect(s.stats()).toMatchObject({ packets: 3, audioFrames: 3, audioMs: 60, lostPackets: 0 });
  });

  it('releases in-order packets on push once started (no added latency)', () => {
    const s = new RtpStream({ windowMs: 60 });
    expect(s.push(rtp({ seq: 1, ts: 0 }), SRC, 0)).toEqual([]);
    expect(s.nextDeadlineMs).toBe(60);
    expect(times(s.poll(60))).toEqual([0]);
    expect(times(s.push(rtp({ seq: 2, ts: 160 }), SRC, 65))).toEqual([20]);
    expect(s.nextDeadlineMs).toBe(Infinity);
  });

  it('handles mixed 10/20/30 ms packets: duration from payload length', () => {
    const s = new RtpStream();
    const sizes = [80, 160, 240, 240, 80, 160, 80, 240];
    const items: [Buffer, number][] = [];
    let ts = 777;
    sizes.forEach((bytes, i) => {
      items.push([rtp({ seq: 50 + i, ts, bytes }), (ts - 777) / 8]);
      ts += bytes;
    });
    const evs = run(s, items);
    expect(times(evs)).toEqual([0, 10, 30, 60, 90, 100, 120, 130]);
    expect(s.positionMs).toBe(160);
    expect(s.stats()).toMatchObject({ lostPackets: 0, audioMs: 160 });
  });

  it('puts reordered packets back in order', () => {
    const s = new RtpStream();
    const items = series(8, 100, 0, 0);
    // swap 102/103 and 105/106 (each arrives ~20 ms late), and deliver 101 before 100
    const order = [1, 0, 3, 2, 4, 6, 5, 7];
    const evs = run(s, order.map((i) => items[i]!));
    expect(firstBytes(evs)).toEqual([100, 101, 102, 103, 104, 105, 106, 107]);
    expect(times(evs)).toEqual([0, 20, 40, 60, 80, 100, 120, 140]);
    expect(s.stats()).toMatchObject({ reordered: 3, lostPackets: 0, late: 0 });
  });

  it('drops duplicates', () => {
    const s = new RtpStream();
    const items = series(4, 1, 0, 0);
    const evs = run(s, [items[0]!, items[0]!, items[1]!, items[2]!, items[1]!, items[3]!, items[3]!]);
    expect(firstBytes(evs)).toEqual([1, 2, 3, 4]);
    expect(s.stats().duplicates).toBe(3);
  });

  it('reports loss from the sequence gap, sized by the timestamps; the next frame keeps its timestamp position', () => {
    const s = new RtpStream();
    const items = series(10, 1000, 0, 0);
    const kept = items.filter((_, i) => i !== 3 && i !== 4 && i !== 7);
    const evs = run(s, kept);
    expect(times(evs)).toEqual([0, 20, 40, 100, 120, 160, 180]);
    expect(s.stats()).toMatchObject({ lostPackets: 3, lostMs: 60 });
  });

  it('reports loss sized by 30 ms frames', () => {
    const s = new RtpStream();
    const items = series(5, 1, 0, 0, 240);
    run(s, [items[0]!, items[1]!, items[3]!, items[4]!]);
    expect(s.stats()).toMatchObject({ lostPackets: 1, lostMs: 30 });
  });

  it('does not count silence suppression as loss', () => {
    const s = new RtpStream();
    const evs = run(s, [
      [rtp({ seq: 1, ts: 0 }), 0],
      [rtp({ seq: 2, ts: 160 }), 20],
      [rtp({ seq: 3, ts: 160 + 8 * 3000, marker: true }), 3020], // talkspurt after 3 s of silence
      [rtp({ seq: 4, ts: 320 + 8 * 3000 }), 3040],
    ]);
    expect(times(evs)).toEqual([0, 20, 3020, 3040]);
    expect(s.stats()).toMatchObject({ lostPackets: 0, lostMs: 0, timestampJumps: 0 });
  });

  it('stays continuous across the sequence wrap at 65535', () => {
    const s = new RtpStream();
    const evs = run(s, series(6, 65533, 40_000, 0));
    expect(audio(evs).map((e) => e.payload[0])).toEqual([65533 & 0xff, 65534 & 0xff, 0xff, 0, 1, 2]);
    expect(times(evs)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(s.stats()).toMatchObject({ lostPackets: 0, seqJumpsDropped: 0 });
  });

  it('stays continuous across the timestamp wrap at 2^32', () => {
    const s = new RtpStream();
    const evs = run(s, series(6, 7, 2 ** 32 - 480, 0));
    expect(times(evs)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(s.stats()).toMatchObject({ lostPackets: 0, timestampJumps: 0 });
  });

  it('reads payloads behind CSRCs and an extension, with padding stripped', () => {
    const s = new RtpStream();
    const payload = Uint8Array.from({ length: 160 }, (_, i) => i);
    const pkt = serializeRtp({
      payloadType: 8,
      sequenceNumber: 1,
      timestamp: 0,
      ssrc: 9,
      csrcs: [1, 2, 3],
      extension: { profile: 0xbede, data: new Uint8Array(8).fill(0xee) },
      paddingBytes: 12,
      payload,
    });
    const evs = run(s, [[pkt, 0]]);
    expect(audio(evs)).toHaveLength(1);
    expect([...audio(evs)[0]!.payload]).toEqual([...payload]);
  });
});

describe('RtpStream robustness', () => {
  it('counts garbage and truncated packets by code, never throws, and the stream continues', () => {
    const s = new RtpStream();
    let seed = 7;
    const rand = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const items: [Buffer, number][] = [];
    const good = series(20, 300, 0, 0);
    for (let i = 0; i < 20; i++) {
      items.push(good[i]!);
      for (let k = 0; k < 200; k++) {
        const b = Buffer.alloc(Math.floor(rand() * 40));
        for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
        // keep random SSRC-changing or sequence-jumping "valid" packets out: make them invalid RTP
        if (b.length >= 12 && b[0]! >> 6 === 2) b[0] = b[0]! & 0x3f;
        items.push([b, good[i]![1]]);
      }
      items.push([good[i]![0].subarray(0, 11), good[i]![1]]);
    }
    const evs = run(s, items);
    expect(firstBytes(evs)).toEqual(Array.from({ length: 20 }, (_, i) => (300 + i) & 0xff));
    const st = s.stats();
    expect(st.dropped.ERR_RTP_TRUNCATED).toBeGreaterThan(20);
    expect(st.dropped.ERR_RTP_VERSION).toBeGreaterThan(100);
    expect(st.lostPackets).toBe(0);
  });

  it('latches to the first valid source; a flood from elsewhere does not disturb the stream', () => {
    const s = new RtpStream();
    const good = series(50, 1, 0, 0);
    const items: [Buffer, number, { address: string; port: number }?][] = [];
    let flood = 0;
    for (let i = 0; i < good.length; i++) {
      items.push(good[i]!);
      const t = good[i]![1];
      for (let k = 0; k < 100; k++) {
        // same SSRC, plausible sequence numbers and timestamps, and random other SSRCs
        const fake = k % 2 === 0 ? rtp({ seq: i + 2 + k, ts: (i + 1 + k) * 160, payload: new Uint8Array(160).fill(0xaa) }) : rtp({ seq: k, ts: k, ssrc: k });
        items.push([fake, t, k % 3 === 0 ? { address: '10.6.6.6', port: 4000 } : OTHER]);
        flood++;
      }
    }
    const evs = run(s, items);
    expect(firstBytes(evs)).toEqual(Array.from({ length: 50 }, (_, i) => (i + 1) & 0xff));
    expect(times(evs)).toEqual(Array.from({ length: 50 }, (_, i) => i * 20));
    expect(s.stats()).toMatchObject({ foreignSource: flood, ssrcChanges: 0, duplicates: 0, lostPackets: 0 });
    expect(s.source).toEqual(SRC);
  });

  it('relatch(): after a re-INVITE moves the sender, the new source latches and the old one is foreign', () => {
    const s = new RtpStream();
    const before = run(s, series(10, 1, 0, 0));
    expect(times(before)).toEqual(Array.from({ length: 10 }, (_, i) => i * 20));
    // without relatch the moved sender is foreign
    expect(audio(run(s, [[rtp({ seq: 500, ts: 90_000, ssrc: 0x9999 }), 300, OTHER]]))).toEqual([]);
    s.relatch();
    const moved = series(10, 700, 50_000, 400, 160, { ssrc: 0x9999 }).map(([b, t]) => [b, t, OTHER] as [Buffer, number, typeof OTHER]);
    const after = audio(run(s, [...moved, [rtp({ seq: 11, ts: 1600 }), 700, SRC]]));
    expect(after).toHaveLength(10);
    expect(after.every((e) => e.ssrc === 0x9999)).toBe(true);
    // the timeline continues after the audio already emitted
    expect(after[0]!.timelineMs).toBeGreaterThanOrEqual(200);
    expect(s.source).toEqual(OTHER);
    expect(s.stats()).toMatchObject({ ssrcChanges: 1, foreignSource: 2 });
    // a pinned remote is never relatched
    const pinned = new RtpStream({ remote: SRC });
    pinned.relatch();
    expect(pinned.source).toEqual(SRC);
  });

  it('maps every drop to a stable reason code', () => {
    const s = new RtpStream();
    const items = series(4, 1, 0, 0);
    run(s, [items[0]!, items[0]!, [Buffer.alloc(5), 1], [rtp({ seq: 1, ts: 0 }), 2, OTHER], [rtp({ seq: 2, ts: 160, pt: 18 }), 3], items[3]!]);
    run(s, [[items[2]![0], 9000]]); // seq 3, declared lost long ago
    const reasons = rtpDropReasons(s.stats());
    expect(Object.keys(reasons).every((k) => /^ERR_RTP_[A-Z_]+$/.test(k))).toBe(true);
    expect(reasons).toMatchObject({ ERR_RTP_DUPLICATE: 1, ERR_RTP_TRUNCATED: 1, ERR_RTP_FOREIGN_SOURCE: 1, ERR_RTP_UNKNOWN_PAYLOAD_TYPE: 1, ERR_RTP_LATE: 1 });
  });

  it('does not latch on garbage, RTCP or unmapped payload types', () => {
    const s = new RtpStream();
    run(s, [
      [Buffer.from('hello world, not rtp'), 0, OTHER],
      [Buffer.from([0x81, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]), 0, OTHER],
      [rtp({ seq: 1, ts: 0, pt: 18 }), 0, OTHER],
    ]);
    expect(s.source).toBeNull();
    const evs = run(s, series(2, 1, 0, 100));
    expect(audio(evs)).toHaveLength(2);
    expect(s.source).toEqual(SRC);
    expect(s.stats()).toMatchObject({ rtcp: 1, unlatchablePayloadType: 1, dropped: expect.objectContaining({ ERR_RTP_VERSION: 1 }) as unknown });
  });

  it('accepts only the pinned remote when given one', () => {
    const s = new RtpStream({ remote: OTHER });
    const evs = run(s, [...series(3, 1, 0, 0), [rtp({ seq: 9, ts: 0 }), 70, OTHER]]);
    expect(firstBytes(evs)).toEqual([9]);
    expect(s.stats().foreignSource).toBe(3);
  });

  it('counts muxed RTCP from the latched source and ignores it', () => {
    const s = new RtpStream();
    const sr = Buffer.alloc(28);
    sr[0] = 0x80;
    sr[1] = 200;
    const items = series(3, 1, 0, 0);
    const evs = run(s, [items[0]!, [sr, 10], items[1]!, items[2]!]);
    expect(audio(evs)).toHaveLength(3);
    expect(s.stats()).toMatchObject({ rtcp: 1, lostPackets: 0 });
  });

  it('drops unmapped payload types of the current SSRC without counting loss', () => {
    const s = new RtpStream();
    const evs = run(s, [
      [rtp({ seq: 1, ts: 0 }), 0],
      [rtp({ seq: 2, ts: 160, pt: 18, bytes: 20 }), 20],
      [rtp({ seq: 3, ts: 320 }), 40],
    ]);
    expect(times(evs)).toEqual([0, 40]);
    expect(s.stats()).toMatchObject({ droppedPayloadType: 1, lostPackets: 0 });
  });

  it('treats PT 13 comfort noise as no audio, no loss; the talkspurt resumes at its timestamp', () => {
    const s = new RtpStream();
    const evs = run(s, [
      [rtp({ seq: 1, ts: 0 }), 0],
      [rtp({ seq: 2, ts: 160 }), 20],
      [rtp({ seq: 3, ts: 320, pt: 13, bytes: 1 }), 40],
      [rtp({ seq: 4, ts: 320 + 8000, pt: 13, bytes: 1 }), 1040],
      [rtp({ seq: 5, ts: 320 + 16000, marker: true }), 2040],
    ]);
    expect(times(evs)).toEqual([0, 20, 2040]);
    expect(s.stats()).toMatchObject({ cn: 2, lostPackets: 0, audioFrames: 3 });
  });

  it('re-anchors when the timestamps jump back without an SSRC change', () => {
    const s = new RtpStream();
    const evs = run(s, [...series(3, 1, 100_000, 0), ...series(3, 4, 50, 60)]);
    expect(times(evs)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(s.stats().timestampJumps).toBe(1);
  });

  it('re-anchors when the timestamps jump far ahead of the arrival gap', () => {
    const s = new RtpStream();
    const evs = run(s, [...series(3, 1, 0, 0), ...series(2, 4, 8000 * 3600, 60)]);
    expect(times(evs)).toEqual([0, 20, 40, 60, 80]);
    expect(s.stats().timestampJumps).toBe(1);
  });

  it('tracks lastPacketAt from the latched source only', () => {
    const s = new RtpStream();
    expect(s.lastPacketAt).toBeNull();
    s.push(rtp({ seq: 1, ts: 0 }), SRC, 100);
    s.push(rtp({ seq: 2, ts: 160 }), OTHER, 500);
    expect(s.lastPacketAt).toBe(100);
  });

  it('flush() releases packets still held behind a gap', () => {
    const s = new RtpStream();
    const items = series(4, 1, 0, 0);
    const out = [...s.push(items[0]![0], SRC, 0), ...s.poll(60), ...s.push(items[2]![0], SRC, 61), ...s.push(items[3]![0], SRC, 62)];
    expect(times(out)).toEqual([0]);
    expect(times(s.flush())).toEqual([40, 60]);
    expect(s.stats().lostPackets).toBe(1);
  });
});

describe('RtpStream SSRC change', () => {
  it('resets sequence state and keeps the timeline continuous', () => {
    const s = new RtpStream();
    const a = series(5, 100, 5000, 0, 160, { ssrc: 0xaaaa });
    // the new SSRC starts with an unrelated sequence and timestamp base, right after A
    const b = series(5, 60000, 3_000_000_000, 100, 160, { ssrc: 0xbbbb });
    const evs = run(s, [...a, ...b]);
    expect(evs.map((e) => e.kind)).toEqual(['audio', 'audio', 'audio', 'audio', 'audio', 'ssrc-change', 'audio', 'audio', 'audio', 'audio', 'audio']);
    expect(evs[5]).toEqual({ kind: 'ssrc-change', previousSsrc: 0xaaaa, ssrc: 0xbbbb, timelineMs: 100 });
    expect(times(evs)).toEqual([0, 20, 40, 60, 80, 100, 120, 140, 160, 180]);
    expect(s.stats()).toMatchObject({ ssrcChanges: 1, lostPackets: 0, late: 0, duplicates: 0 });
    expect(s.ssrc).toBe(0xbbbb);
  });

  it('places the new SSRC at its arrival-derived position after a pause', () => {
    const s = new RtpStream({ timelineStartMs: 200 });
    const a = series(3, 1, 0, 1000, 160, { ssrc: 1 });
    const b = series(2, 9, 42, 1000 + 5000, 160, { ssrc: 2 }); // 5 s later
    const evs = run(s, [...a, ...b]);
    expect(times(evs)).toEqual([200, 220, 240, 5200, 5220]);
  });

  it('never places the new SSRC before audio already emitted', () => {
    const s = new RtpStream();
    // A's packets arrive in a burst (arrival-derived position lags the timestamps)
    const a = series(10, 1, 0, 0).map(([b]) => [b, 0] as [Buffer, number]);
    const b = series(2, 500, 0, 1, 160, { ssrc: 2 });
    const evs = run(s, [...a, ...b]);
    expect(times(evs).slice(-3)).toEqual([180, 200, 220]);
  });

  it('flushes frames of the old SSRC held behind a gap before switching', () => {
    const s = new RtpStream();
    const a = series(4, 1, 0, 0, 160, { ssrc: 1 });
    const b = series(2, 77, 0, 80, 160, { ssrc: 2 });
    const evs = run(s, [a[0]!, a[1]!, a[3]!, ...b]);
    expect(audio(evs).map((e) => [e.ssrc, e.timelineMs])).toEqual([
      [1, 0],
      [1, 20],
      [1, 60],
      [2, 80],
      [2, 100],
    ]);
    expect(s.stats().lostPackets).toBe(1);
  });

  it('drops stale packets of the previous SSRC instead of switching back, and DTMF of a foreign SSRC', () => {
    const s = new RtpStream();
    const a = series(3, 1, 0, 0, 160, { ssrc: 1 });
    const b = series(3, 900, 0, 60, 160, { ssrc: 2 });
    const evs = run(s, [a[0]!, a[1]!, b[0]!, a[2]!, b[1]!, [dtmf(5, 0, 1, 160, false, 3), 95], b[2]!]);
    expect(audio(evs).map((e) => e.ssrc)).toEqual([1, 1, 2, 2, 2]);
    expect(s.stats()).toMatchObject({ ssrcChanges: 1, staleSsrc: 1, otherSsrc: 1 });
  });

  it('allows switching back to an earlier SSRC after the hold-off', () => {
    const s = new RtpStream({ ssrcHoldoffMs: 500 });
    const evs = run(s, [...series(2, 1, 0, 0, 160, { ssrc: 1 }), ...series(2, 50, 0, 40, 160, { ssrc: 2 }), ...series(2, 3, 320, 1000, 160, { ssrc: 1 })]);
    expect(evs.filter((e) => e.kind === 'ssrc-change')).toHaveLength(2);
    expect(audio(evs).map((e) => e.ssrc)).toEqual([1, 1, 2, 2, 1, 1]);
    expect(times(evs)).toEqual([0, 20, 40, 60, 1000, 1020]);
  });
});

describe('RtpStream DTMF', () => {
  it('reports an event once when the end packet is repeated with the same sequence number (SIPp style)', () => {
    const s = new RtpStream();
    const items: [Buffer, number][] = [...series(5, 1, 0, 0)];
    // event starts at ts 800 (timeline 100 ms); audio continues meanwhile in many stacks — here it stops
    for (let i = 0; i < 7; i++) items.push([dtmf(6 + i, 800, 9, 320 * (i + 1), false), 100 + 20 * i]);
    for (let k = 0; k < 3; k++) items.push([dtmf(13, 800, 9, 2240, true), 240 + k]);
    items.push(...series(2, 14, 800 + 2400, 400));
    const evs = run(s, items);
    const d = evs.filter((e) => e.kind === 'dtmf');
    expect(d).toEqual([{ kind: 'dtmf', digit: '9', timelineMs: 100, durationMs: 280, volume: 10, ended: true }]);
    expect(s.stats()).toMatchObject({ dtmf: 1, lostPackets: 0, duplicates: 2 });
    expect(times(evs)).toEqual([0, 20, 40, 60, 80, 400, 420]);
  });

  it('reports an event once when the end packet is repeated with new sequence numbers (RFC 4733 style)', () => {
    const s = new RtpStream();
    const items: [Buffer, number][] = [...series(2, 1, 0, 0)];
    items.push([dtmf(3, 320, 12, 160, false), 40], [dtmf(4, 320, 12, 320, false), 60]);
    for (let k = 0; k < 3; k++) items.push([dtmf(5 + k, 320, 12, 480, true), 80 + k]);
    const evs = run(s, items);
    expect(evs.filter((e) => e.kind === 'dtmf')).toEqual([{ kind: 'dtmf', digit: 'A', timelineMs: 40, durationMs: 60, volume: 10, ended: true }]);
    expect(s.stats()).toMatchObject({ dtmf: 1, lostPackets: 0, duplicates: 0 });
  });

  it('reports a digit whose end packets were lost on flush', () => {
    const s = new RtpStream();
    run(s, [[dtmf(1, 0, 0, 160, false), 0]]);
    expect(s.flush()).toEqual([{ kind: 'dtmf', digit: '0', timelineMs: 0, durationMs: 20, volume: 10, ended: false }]);
  });

  it('uses the payload map: telephone-event on 96, and 101 unmapped', () => {
    const s = new RtpStream({ payloadTypes: { 0: 'pcmu', 96: 'telephone-event' } });
    const te = serializeTelephoneEvent({ event: 1, end: true, volume: 5, duration: 800 });
    const evs = run(s, [
      [rtp({ seq: 1, ts: 0 }), 0],
      [rtp({ seq: 2, ts: 160, pt: 101, payload: te }), 20],
      [rtp({ seq: 3, ts: 160, pt: 96, payload: te }), 21],
      [rtp({ seq: 4, ts: 160, pt: 8 }), 40],
    ]);
    expect(evs.map((e) => e.kind)).toEqual(['audio', 'dtmf']);
    expect(s.stats()).toMatchObject({ droppedPayloadType: 2, dtmf: 1 });
  });

  it('rejects a bad payload map', () => {
    expect(() => new RtpStream({ payloadTypes: { 128: 'pcmu' } })).toThrow(RangeError);
  });

  it.each(['0', '5', '9', 'star', 'pound'])('decodes SIPp dtmf_2833_%s.pcap to one digit', async (name) => {
    const file = await readPcapFile(`/usr/share/sip-tester/dtmf_2833_${name}.pcap`);
    expect(file.datagrams).toHaveLength(10);
    const s = new RtpStream();
    const evs: RtpStreamEvent[] = [];
    const t0 = file.datagrams[0]!.tsMs;
    for (const d of file.datagrams) evs.push(...s.push(d.payload, { address: d.src, port: d.srcPort }, d.tsMs - t0));
    evs.push(...s.flush());
    const digit = name === 'star' ? '*' : name === 'pound' ? '#' : name;
    expect(evs).toEqual([{ kind: 'dtmf', digit, timelineMs: 0, durationMs: 280, volume: 10, ended: true }]);
    expect(s.stats()).toMatchObject({ dtmf: 1, duplicates: 2, lostPackets: 0 });
  });
});

describe('RtpStream pcap replay (SIPp g711a.pcap)', () => {
  it('yields the capture payloads, in order, contiguous on the timeline, with zero loss', async () => {
    const file = await readPcapFile(G711A_PCAP);
    const s = new RtpStream();
    const evs: RtpStreamEvent[] = [];
    const t0 = file.datagrams[0]!.tsMs;
    for (const d of file.datagrams) {
      const at = d.tsMs - t0;
      evs.push(...s.poll(at), ...s.push(d.payload, { address: d.src, port: d.srcPort }, at));
    }
    evs.push(...s.flush());
    const frames = audio(evs);
    expect(frames).toHaveLength(236);
    expect(frames.every((f) => f.codec === 'pcma' && f.payload.length === 240 && f.ssrc === 0xdee0ee8f)).toBe(true);
    expect(times(evs)).toEqual(Array.from({ length: 236 }, (_, i) => i * 30));
    const expected = Buffer.concat(file.datagrams.map((d) => d.payload.subarray(12)));
    expect(Buffer.concat(frames.map((f) => f.payload)).equals(expected)).toBe(true);
    expect(s.stats()).toMatchObject({ packets: 236, lostPackets: 0, duplicates: 0, late: 0, audioMs: 236 * 30 });
  });

  it('yields the same bytes when the capture is replayed shuffled within the window', async () => {
    const file = await readPcapFile(G711A_PCAP);
    const ds = [...file.datagrams];
    // swap every 3rd pair; the later one arrives 30 ms late
    for (let i = 1; i + 1 < ds.length; i += 3) [ds[i], ds[i + 1]] = [ds[i + 1]!, ds[i]!];
    const s = new RtpStream({ windowMs: 80 });
    const evs: RtpStreamEvent[] = [];
    ds.forEach((d, i) => {
      const at = i * 30;
      evs.push(...s.poll(at), ...s.push(d.payload, { address: d.src, port: d.srcPort }, at));
    });
    evs.push(...s.flush());
    const expected = Buffer.concat(file.datagrams.map((d) => d.payload.subarray(12)));
    expect(Buffer.concat(audio(evs).map((f) => f.payload)).equals(expected)).toBe(true);
    expect(s.stats()).toMatchObject({ lostPackets: 0, late: 0 });
    expect(s.stats().reordered).toBeGreaterThan(70);
  });
});
