import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../core/errors.js';
import { parseRtp, serializeRtp } from '../ingest/rtp/packet.js';
import { parsePcap, readPcap, readPcapFile } from './pcap.js';

const G711A_PCAP = '/usr/share/sip-tester/g711a.pcap';

interface Frame {
  tsSec: number;
  tsFrac: number;
  data: Buffer;
}

function ipv4Udp(src: number[], dst: number[], sport: number, dport: number, payload: Buffer, frag = 0, proto = 17): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + payload.length, 2);
  ip.writeUInt16BE(frag, 6);
  ip[8] = 64;
  ip[9] = proto;
  Buffer.from(src).copy(ip, 12);
  Buffer.from(dst).copy(ip, 16);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(sport, 0);
  udp.writeUInt16BE(dport, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([ip, udp, payload]);
}

function ethernet(ipPacket: Buffer, vlan = false, etherType = 0x0800): Buffer {
  const head = Buffer.alloc(vlan ? 18 : 14);
  if (vlan) {
    head.writeUInt16BE(0x8100, 12);
    head.writeUInt16BE(42, 14);
    head.writeUInt16BE(etherType, 16);
  } else {
    head.writeUInt16BE(etherType, 12);
  }
  return Buffer.concat([head, ipPacket]);
}

function sll(ipPacket: Buffer): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt16BE(0x0800, 14);
  return Buffer.concat([head, ipPacket]);
}

function pcap(frames: Frame[], opts: { le: boolean; ns: boolean; linkType: number }): Buffer {
  const w32 = (b: Buffer, v: number, o: number): number => (opts.le ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o));
  const w16 = (b: Buffer, v: number, o: number): number => (opts.le ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o));
  const g = Buffer.alloc(24);
  w32(g, opts.ns ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  w16(g, 2, 4);
  w16(g, 4, 6);
  w32(g, 65535, 16);
  w32(g, opts.linkType, 20);
  const parts: Buffer[] = [g];
  for (const f of frames) {
    const h = Buffer.alloc(16);
    w32(h, f.tsSec, 0);
    w32(h, f.tsFrac, 4);
    w32(h, f.data.length, 8);
    w32(h, f.data.length, 12);
    parts.push(h, f.data);
  }
  return Buffer.concat(parts);
}

describe('readPcap', () => {
  it('reads SIPp g711a.pcap: 236 RTP packets, PT 8, 240-byte payloads, SSRC 0xdee0ee8f, marker first', async () => {
    const file = await readPcapFile(G711A_PCAP);
    expect(file.linkType).toBe(1);
    expect(file.datagrams).toHaveLength(236);
    expect(file.stats).toMatchObject({ records: 236, udp: 236, truncated: 0, truncatedFile: false });
    const rtp = file.datagrams.map((d) => {
      const r = parseRtp(d.payload);
      if (!r.ok) throw new Error(r.code);
      return r.packet;
    });
    expect(rtp.every((p) => p.payloadType === 8 && p.payload.length === 240 && p.ssrc === 0xdee0ee8f)).toBe(true);
    expect(rtp.map((p) => p.marker)).toEqual([true, ...new Array<boolean>(235).fill(false)]);
    for (let i = 1; i < rtp.length; i++) {
      expect((rtp[i]!.sequenceNumber - rtp[i - 1]!.sequenceNumber) & 0xffff).toBe(1);
      expect(rtp[i]!.timestamp - rtp[i - 1]!.timestamp).toBe(240);
    }
    const d0 = file.datagrams[0]!;
    expect(d0).toMatchObject({ src: '10.1.3.143', srcPort: 5000, dst: '10.1.6.18', dstPort: 2006 });
    const span = file.datagrams[235]!.tsMs - d0.tsMs;
    expect(span).toBeGreaterThan(7000);
    expect(span).toBeLessThan(7100);
  });

  it.each([
    { le: true, ns: false },
    { le: false, ns: false },
    { le: true, ns: true },
    { le: false, ns: true },
  ])('reads both byte orders and timestamp precisions (%o)', (o) => {
    const payload = serializeRtp({ payloadType: 0, sequenceNumber: 1, timestamp: 2, ssrc: 3, payload: Buffer.alloc(160, 0x7f) });
    const frames: Frame[] = [
      { tsSec: 1_700_000_000, tsFrac: o.ns ? 123_456_789 : 123_456, data: ethernet(ipv4Udp([192, 168, 1, 2], [10, 0, 0, 9], 40000, 30000, payload)) },
      { tsSec: 1_700_000_001, tsFrac: 0, data: ethernet(ipv4Udp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, Buffer.from('x')), true) },
    ];
    const file = readPcap(pcap(frames, { ...o, linkType: 1 }));
    expect(file.nanosecond).toBe(o.ns);
    expect(file.datagrams).toHaveLength(2);
    const [a, b] = file.datagrams;
    expect(a).toMatchObject({ src: '192.168.1.2', dst: '10.0.0.9', srcPort: 40000, dstPort: 30000 });
    expect(a!.tsMs - 1_700_000_000_000).toBeCloseTo(o.ns ? 123.456789 : 123.456, 3);
    expect(Buffer.from(a!.payload).equals(payload)).toBe(true);
    expect(b).toMatchObject({ src: '1.2.3.4', srcPort: 1, dstPort: 2 });
    expect(Buffer.from(b!.payload).toString()).toBe('x');
  });

  it('reads Linux cooked captures (link type 113)', () => {
    const buf = pcap([{ tsSec: 1, tsFrac: 0, data: sll(ipv4Udp([127, 0, 0, 1], [127, 0, 0, 1], 5, 6, Buffer.from('abc'))) }], {
      le: true,
      ns: false,
      linkType: 113,
    });
    const ds = parsePcap(buf);
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ src: '127.0.0.1', srcPort: 5, dstPort: 6, tsMs: 1000 });
    expect(Buffer.from(ds[0]!.payload).toString()).toBe('abc');
  });

  it('skips and counts non-IPv4, non-UDP, fragments and truncated frames; stops at a cut record', () => {
    const ok = ipv4Udp([1, 1, 1, 1], [2, 2, 2, 2], 10, 20, Buffer.from('ok'));
    const frames: Frame[] = [
      { tsSec: 1, tsFrac: 0, data: ethernet(Buffer.alloc(40), false, 0x86dd) }, // IPv6
      { tsSec: 1, tsFrac: 0, data: ethernet(ipv4Udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, Buffer.alloc(4), 0, 6)) }, // TCP
      { tsSec: 1, tsFrac: 0, data: ethernet(ipv4Udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, Buffer.alloc(4), 0x2000)) }, // MF
      { tsSec: 1, tsFrac: 0, data: ethernet(ipv4Udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, Buffer.alloc(40))).subarray(0, 50) }, // snapped
      { tsSec: 1, tsFrac: 0, data: ethernet(ok) },
    ];
    const whole = pcap(frames, { le: true, ns: false, linkType: 1 });
    const file = readPcap(Buffer.concat([whole, Buffer.alloc(10)]));
    expect(file.datagrams).toHaveLength(1);
    expect(file.stats).toEqual({ records: 5, udp: 1, notIpv4: 1, notUdp: 1, fragments: 1, truncated: 1, truncatedFile: true });
  });

  it('rejects a bad global header with ERR_SIMULATOR_PCAP_FORMAT', async () => {
    const bad = [Buffer.alloc(10), Buffer.alloc(24), pcap([], { le: true, ns: false, linkType: 105 })];
    const pcapng = Buffer.alloc(28);
    pcapng.writeUInt32LE(0x0a0d0d0a, 0);
    bad.push(pcapng);
    for (const b of bad) {
      let code: string | undefined;
      try {
        readPcap(b);
      } catch (err) {
        code = isAppError(err) ? err.code : 'not an AppError';
      }
      expect(code).toBe('ERR_SIMULATOR_PCAP_FORMAT');
    }
    // a real file is not rejected
    await expect(readFile(G711A_PCAP).then((b) => readPcap(b).datagrams.length)).resolves.toBe(236);
  });
});
