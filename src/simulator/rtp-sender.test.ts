import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeG711, encodeG711 } from '../codec/g711.js';
import { parseRtp } from '../ingest/rtp/packet.js';
import { impair, packetiseG711, readWavAsG711 } from './rtp-sender.js';

const AUDIO = Uint8Array.from({ length: 1000 }, (_, i) => (i * 13) & 0xff);

describe('packetiseG711', () => {
  it.each([10, 20, 30] as const)('cuts %i ms packets with consecutive sequence and timestamps', (ptimeMs) => {
    const plan = packetiseG711(AUDIO, { codec: 'pcma', ptimeMs, ssrc: 0xdee0ee8f, initialSequence: 65534, initialTimestamp: 2 ** 32 - 100 });
    const bytes = ptimeMs * 8;
    expect(plan.packets).toHaveLength(Math.ceil(1000 / bytes));
    plan.packets.forEach((p, i) => {
      const r = parseRtp(p.data);
      if (!r.ok) throw new Error(r.code);
      expect(r.packet).toMatchObject({
        payloadType: 8,
        ssrc: 0xdee0ee8f,
        marker: i === 0,
        sequenceNumber: (65534 + i) % 65536,
        timestamp: (2 ** 32 - 100 + i * bytes) % 2 ** 32,
      });
      expect(p.sendAtMs).toBe(i * ptimeMs);
    });
    // the last packet carries the remainder, unpadded: the bytes round-trip exactly
    const out = Buffer.concat(plan.packets.map((p) => p.payload));
    expect(out.equals(Buffer.from(AUDIO))).toBe(true);
  });

  it('picks PT 0 for PCMU, random ids by default, and rejects other ptimes', () => {
    const a = packetiseG711(AUDIO, { codec: 'pcmu' });
    const b = packetiseG711(AUDIO, { codec: 'pcmu' });
    expect(a.payloadType).toBe(0);
    expect(a.packets[0]!.data[1]).toBe(0x80); // marker + PT 0
    const differs = a.ssrc !== b.ssrc || a.packets[0]!.sequenceNumber !== b.packets[0]!.sequenceNumber;
    expect(differs).toBe(true);
    expect(() => packetiseG711(AUDIO, { codec: 'pcmu', ptimeMs: 25 as 20 })).toThrow(RangeError);
  });
});

describe('impair', () => {
  const plan = packetiseG711(new Uint8Array(160 * 200), { codec: 'pcmu', ssrc: 1, initialSequence: 0, initialTimestamp: 0 });

  it('is the identity without impairments', () => {
    const { items, counts } = impair(plan.packets);
    expect(items.map((i) => i.index)).toEqual(plan.packets.map((_, i) => i));
    expect(counts).toEqual({ lost: 0, duplicated: 0, reordered: 0 });
  });

  it('loses, duplicates and swaps reproducibly, keeping the schedule sorted', () => {
    const a = impair(plan.packets, { lossRate: 0.1, duplicateRate: 0.1, reorderRate: 0.1, seed: 9 });
    const b = impair(plan.packets, { lossRate: 0.1, duplicateRate: 0.1, reorderRate: 0.1, seed: 9 });
    expect(a.items.map((i) => i.index)).toEqual(b.items.map((i) => i.index));
    const { counts, items } = a;
    expect(counts.lost).toBeGreaterThan(5);
    expect(counts.duplicated).toBeGreaterThan(5);
    expect(counts.reordered).toBeGreaterThan(5);
    expect(items.length).toBe(200 - counts.lost + counts.duplicated);
    expect(new Set(items.map((i) => i.index)).size).toBe(200 - counts.lost);
    for (let k = 1; k < items.length; k++) expect(items[k]!.sendAtMs).toBeGreaterThanOrEqual(items[k - 1]!.sendAtMs);
    let inversions = 0;
    for (let k = 1; k < items.length; k++) if (items[k]!.index < items[k - 1]!.index) inversions++;
    expect(inversions).toBe(counts.reordered);
  });
});

describe('readWavAsG711', () => {
  it('reads a μ-law WAV as μ-law, and transcodes it to A-law', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rtp-sender-'));
    try {
      const mu = encodeG711('pcmu', Int16Array.from({ length: 400 }, (_, i) => Math.round(8000 * Math.sin(i / 5))));
      const fmt = Buffer.alloc(16);
      fmt.writeUInt16LE(7, 0);
      fmt.writeUInt16LE(1, 2);
      fmt.writeUInt32LE(8000, 4);
      fmt.writeUInt32LE(8000, 8);
      fmt.writeUInt16LE(1, 12);
      fmt.writeUInt16LE(8, 14);
      const chunk = (id: string, body: Uint8Array): Buffer => {
        const h = Buffer.alloc(8);
        h.write(id, 0, 'latin1');
        h.writeUInt32LE(body.length, 4);
        return Buffer.concat([h, body]);
      };
      const body = Buffer.concat([Buffer.from('WAVE'), chunk('fmt ', fmt), chunk('data', mu)]);
      const riff = Buffer.alloc(8);
      riff.write('RIFF', 0, 'latin1');
      riff.writeUInt32LE(body.length, 4);
      const path = join(dir, 'a.wav');
      await writeFile(path, Buffer.concat([riff, body]));
      expect((await readWavAsG711(path, 'pcmu')).equals(Buffer.from(mu))).toBe(true);
      const alaw = await readWavAsG711(path, 'pcma');
      expect(alaw.length).toBe(400);
      // same audio within companding error
      const x = decodeG711('pcmu', mu);
      const y = decodeG711('pcma', alaw);
      for (let i = 0; i < 400; i++) expect(Math.abs(x.readInt16LE(i * 2) - y.readInt16LE(i * 2))).toBeLessThan(600);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
