import { describe, expect, it } from 'vitest';
import { JitterBuffer, type JitterFrame } from './jitter-buffer.js';
import { parseRtp, serializeRtp, type RtpPacket } from './packet.js';

function pkt(seq: number, ts: number, bytes = 160, pt = 0): RtpPacket {
  const r = parseRtp(serializeRtp({ payloadType: pt, sequenceNumber: seq & 0xffff, timestamp: ts >>> 0, ssrc: 1, payload: new Uint8Array(bytes).fill(seq & 0xff) }));
  if (!r.ok) throw new Error(r.code);
  return r.packet;
}

const seqs = (frames: readonly JitterFrame[]): number[] => frames.map((f) => f.packet.sequenceNumber);

describe('JitterBuffer', () => {
  it('holds the first packet for the window, then releases in-order packets immediately', () => {
    const jb = new JitterBuffer({ windowMs: 60 });
    expect(jb.push(pkt(10, 1000), 0)).toBe('queued');
    expect(jb.poll(0)).toEqual([]);
    expect(jb.nextDeadlineMs).toBe(60);
    jb.push(pkt(11, 1160), 20);
    expect(jb.poll(59)).toEqual([]);
    expect(seqs(jb.poll(60))).toEqual([10, 11]);
    jb.push(pkt(12, 1320), 80);
    expect(seqs(jb.poll(80))).toEqual([12]);
    expect(jb.held).toBe(0);
    expect(jb.nextDeadlineMs).toBe(Infinity);
    expect(jb.stats()).toMatchObject({ pushed: 3, released: 3, lostPackets: 0, reordered: 0 });
  });

  it('sorts a reordered start and reordering within the window', () => {
    const jb = new JitterBuffer({ windowMs: 60 });
    jb.push(pkt(101, 160), 0);
    jb.push(pkt(100, 0), 5);
    jb.push(pkt(102, 320), 20);
    expect(seqs(jb.poll(60))).toEqual([100, 101, 102]);
    // 104 before 103, 103 inside the window
    jb.push(pkt(104, 640), 60);
    expect(jb.poll(60)).toEqual([]);
    jb.push(pkt(103, 480), 90);
    expect(seqs(jb.poll(90))).toEqual([103, 104]);
    expect(jb.stats()).toMatchObject({ reordered: 2, lostPackets: 0, late: 0 });
  });

  it('declares a gap lost after the window (lostMs from timestamps) and drops the straggler as late', () => {
    const jb = new JitterBuffer({ windowMs: 60 });
    jb.push(pkt(1, 0), 0);
    jb.poll(60);
    jb.push(pkt(2, 160), 60);
    expect(seqs(jb.poll(60))).toEqual([2]);
    // 3 and 4 lost
    jb.push(pkt(5, 640), 120);
    expect(jb.poll(179)).toEqual([]);
    const out = jb.poll(180);
    expect(seqs(out)).toEqual([5]);
    expect(out[0]).toMatchObject({ lostPackets: 2, lostMs: 40 });
    expect(jb.push(pkt(3, 320), 200)).toBe('late');
    expect(jb.stats()).toMatchObject({ lostPackets: 2, lostMs: 40, late: 1 });
  });

  it('drops duplicates, held or already released', () => {
    const jb = new JitterBuffer({ windowMs: 60 });
    jb.push(pkt(7, 0), 0);
    expect(jb.push(pkt(7, 0), 1)).toBe('duplicate');
    jb.poll(60);
    expect(jb.push(pkt(7, 0), 61)).toBe('duplicate');
    jb.push(pkt(9, 320), 62);
    expect(jb.push(pkt(9, 320), 63)).toBe('duplicate');
    expect(jb.stats()).toMatchObject({ duplicates: 3, released: 1, held: 1 });
  });

  it('is not fooled by silence suppression: consecutive sequence, timestamp jump', () => {
    const jb = new JitterBuffer();
    jb.push(pkt(1, 0), 0);
    jb.poll(60);
    jb.push(pkt(2, 8000 * 5), 5000); // 5 s of suppressed silence
    const out = jb.poll(5000);
    expect(seqs(out)).toEqual([2]);
    expect(out[0]).toMatchObject({ lostPackets: 0, lostMs: 0 });
    expect(jb.stats().lostPackets).toBe(0);
  });

  it('derives durations from payload length with mixed 10/20/30 ms packets', () => {
    const jb = new JitterBuffer({ windowMs: 40 });
    const sizes = [80, 160, 240, 80, 240, 160, 80];
    let ts = 5000;
    const sent: { seq: number; ts: number; bytes: number }[] = [];
    sizes.forEach((bytes, i) => {
      sent.push({ seq: 200 + i, ts, bytes });
      ts += bytes;
    });
    for (const s of sent) if (s.seq !== 203) jb.push(pkt(s.seq, s.ts, s.bytes), 0);
    const out = [...jb.poll(40)];
    expect(seqs(out)).toEqual([200, 201, 202, 204, 205, 206]);
    const after = out.find((f) => f.packet.sequenceNumber === 204)!;
    expect(after.lostPackets).toBe(1);
    expect(after.lostMs).toBe(10); // the missing packet was 80 bytes = 10 ms
    expect(out.map((f) => f.samples)).toEqual([80, 160, 240, 240, 160, 80]);
  });

  it('extends sequence numbers across the 65535 → 0 wrap, with reordering across it', () => {
    const jb = new JitterBuffer({ windowMs: 60 });
    let t = 0;
    const order = [65533, 65534, 0, 65535, 1, 2];
    for (const s of order) {
      const n = (s - 65533 + 65536) % 65536;
      jb.push(pkt(s, n * 160), t);
      t += 20;
    }
    const out = [...jb.poll(t + 60)];
    expect(seqs(out)).toEqual([65533, 65534, 65535, 0, 1, 2]);
    const ext = out.map((f) => f.extSeq);
    for (let i = 1; i < ext.length; i++) expect(ext[i]! - ext[i - 1]!).toBe(1);
    expect(jb.stats()).toMatchObject({ lostPackets: 0, reordered: 1 });
  });

  it('detects a loss across the sequence wrap', () => {
    const jb = new JitterBuffer({ windowMs: 20 });
    jb.push(pkt(65534, 0), 0);
    jb.push(pkt(1, 3 * 160), 0); // 65535 and 0 lost
    const out = jb.poll(20);
    expect(seqs(out)).toEqual([65534, 1]);
    expect(out[1]).toMatchObject({ lostPackets: 2, lostMs: 40 });
  });

  it('extends timestamps across the 2^32 wrap', () => {
    const jb = new JitterBuffer({ windowMs: 0 });
    const start = 2 ** 32 - 320;
    const out: JitterFrame[] = [];
    for (let i = 0; i < 5; i++) {
      jb.push(pkt(i, (start + i * 160) % 2 ** 32), i * 20);
      out.push(...jb.poll(i * 20));
    }
    expect(out.map((f) => f.packet.timestamp)).toEqual([4294966976, 4294967136, 0, 160, 320]);
    const ext = out.map((f) => f.extTimestamp);
    for (let i = 1; i < ext.length; i++) expect(ext[i]! - ext[i - 1]!).toBe(160);
    expect(jb.stats().lostPackets).toBe(0);
  });

  it('computes lostMs correctly when the lost packets straddle the timestamp wrap', () => {
    const jb = new JitterBuffer({ windowMs: 0 });
    jb.push(pkt(1, 2 ** 32 - 160), 0);
    jb.poll(0);
    jb.push(pkt(4, 320), 60); // seq 2 (ts 0) and 3 (ts 160) lost: 40 ms across the wrap
    const out = jb.poll(60);
    expect(out[0]).toMatchObject({ lostPackets: 2, lostMs: 40 });
  });

  it('drops a lone sequence jump and restarts the sequence when the next packet confirms it', () => {
    const jb = new JitterBuffer({ windowMs: 0 });
    jb.push(pkt(100, 0), 0);
    jb.poll(0);
    expect(jb.push(pkt(30000, 999), 20)).toBe('jump-dropped');
    jb.push(pkt(101, 160), 20);
    expect(seqs(jb.poll(20))).toEqual([101]);
    // a sender restart: 40000, 40001, … with a new timestamp base
    expect(jb.push(pkt(40000, 7777), 40)).toBe('jump-dropped');
    expect(jb.push(pkt(40001, 7937), 60)).toBe('queued');
    const out = jb.poll(60);
    expect(seqs(out)).toEqual([40001]);
    expect(out[0]).toMatchObject({ resync: true, lostPackets: 0 });
    jb.push(pkt(40002, 8097), 80);
    const next = jb.poll(80);
    expect(next[0]).toMatchObject({ resync: false, lostPackets: 0 });
    expect(next[0]!.extTimestamp - out[0]!.extTimestamp).toBe(160);
    expect(jb.stats()).toMatchObject({ jumpsDropped: 2, resyncs: 1 });
  });

  it('is bounded: overflow releases the oldest early and counts it', () => {
    const jb = new JitterBuffer({ windowMs: 1000, maxPackets: 4 });
    jb.push(pkt(1, 0), 0);
    jb.poll(1000);
    // 2 is lost; 3..8 pile up behind the gap
    for (let s = 3; s <= 8; s++) jb.push(pkt(s, (s - 1) * 160), 1000 + s);
    expect(jb.held).toBeLessThanOrEqual(4);
    const out = jb.poll(1010);
    expect(seqs(out)).toEqual([3, 4, 5, 6, 7, 8]); // the overflow released 3, then 4.. followed in order
    expect(out[0]).toMatchObject({ lostPackets: 1, lostMs: 20 });
    expect(jb.stats()).toMatchObject({ overflowReleases: 2, lostPackets: 1 });
  });

  it('flush releases everything in order, gaps counted', () => {
    const jb = new JitterBuffer({ windowMs: 60 });
    jb.push(pkt(3, 320), 0);
    jb.push(pkt(1, 0), 0);
    jb.push(pkt(6, 800), 0);
    const out = jb.flush();
    expect(seqs(out)).toEqual([1, 3, 6]);
    expect(out.map((f) => f.lostPackets)).toEqual([0, 1, 2]);
    expect(jb.held).toBe(0);
    expect(jb.flush()).toEqual([]);
  });

  it('reset forgets the sequence: a new stream starts fresh', () => {
    const jb = new JitterBuffer({ windowMs: 0 });
    jb.push(pkt(500, 0), 0);
    jb.poll(0);
    jb.push(pkt(502, 320), 0);
    jb.reset();
    expect(jb.stats()).toMatchObject({ discarded: 1, held: 0 });
    jb.push(pkt(9, 123456), 10);
    const out = jb.poll(10);
    expect(out[0]).toMatchObject({ lostPackets: 0 });
  });

  it('releases behind a gap after the earliest-arrived held packet waited the window', () => {
    const jb = new JitterBuffer({ windowMs: 60 });
    jb.push(pkt(1, 0), 0);
    jb.poll(60);
    jb.push(pkt(7, 960), 100); // arrived first
    jb.push(pkt(5, 640), 110); // lower sequence, arrived later
    expect(jb.nextDeadlineMs).toBe(160);
    expect(jb.poll(159)).toEqual([]);
    expect(seqs(jb.poll(160))).toEqual([5, 7]);
  });

  it('zero-sample frames (DTMF/CN) keep sequence continuity without moving the audio end', () => {
    const jb = new JitterBuffer({ windowMs: 0 });
    jb.push(pkt(1, 0), 0);
    jb.push(pkt(2, 0, 4, 101), 0, 0); // DTMF packet with the event's start timestamp
    jb.push(pkt(4, 480), 0); // 3 lost
    const out = jb.poll(0);
    expect(seqs(out)).toEqual([1, 2, 4]);
    expect(out[2]).toMatchObject({ lostPackets: 1, lostMs: 40 }); // end of audio was 160
  });
});
