// Real sockets on 127.0.0.1 (a random range below the Linux ephemeral range, so parallel runs rarely meet).
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { isAppError } from '../../core/errors.js';
import { UdpPortPool } from './udp-port-pool.js';

const HOST = '127.0.0.1';
const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0)) await fn();
});

function base(): number {
  return 20_000 + randomInt(0, 5000) * 2;
}

function pool(min: number, max: number): UdpPortPool {
  const p = new UdpPortPool({ minPort: min, maxPort: max, host: HOST });
  cleanup.push(() => p.close());
  return p;
}

async function occupy(port: number): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, HOST, () => resolve());
  });
  cleanup.push(() => new Promise<void>((r) => s.close(() => r())));
  return s;
}

async function send(port: number, data: Buffer): Promise<void> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => s.send(data, port, HOST, (err) => (err ? reject(err) : resolve())));
  await new Promise<void>((r) => s.close(() => r()));
}

async function until(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(5);
  }
}

describe('UdpPortPool', () => {
  it('leases an even RTP port with the odd RTCP port bound too; RTCP is read and counted', async () => {
    const b = base();
    const p = pool(b + 1, b + 20); // odd min rounds up
    const lease = await p.lease();
    expect(lease.port).toBe(b + 2);
    expect(lease.rtcpPort).toBe(b + 3);
    let got = 0;
    lease.socket.on('message', () => got++);
    await send(lease.port, Buffer.from('rtp'));
    await send(lease.rtcpPort, Buffer.from('rtcp'));
    await until(() => got === 1 && lease.rtcpPackets === 1);
    expect(p.stats()).toMatchObject({ leases: 1, active: 1, rtcpPackets: 1 });
    await lease.release();
    await lease.release();
    expect(p.stats()).toMatchObject({ releases: 1, active: 0, rtcpPackets: 1 });
  });

  it('skips pairs whose RTP or RTCP port is taken (EADDRINUSE)', async () => {
    const b = base();
    await occupy(b);
    await occupy(b + 3);
    const p = pool(b, b + 9);
    const lease = await p.lease();
    expect(lease.port).toBe(b + 4);
    expect(p.stats().bindRetries).toBe(2);
    // the RTCP half of the skipped pair was released again
    await occupy(b + 2);
  });

  it('is bounded: ERR_RTP_PORTS_EXHAUSTED when every pair is leased, and a release frees one', async () => {
    const b = base();
    const p = pool(b, b + 3);
    expect(p.capacity).toBe(2);
    const l1 = await p.lease();
    const l2 = await p.lease();
    expect(new Set([l1.port, l2.port])).toEqual(new Set([b, b + 2]));
    let code: string | undefined;
    try {
      await p.lease();
    } catch (err) {
      code = isAppError(err) ? err.code : String(err);
    }
    expect(code).toBe('ERR_RTP_PORTS_EXHAUSTED');
    await l1.release();
    const l3 = await p.lease();
    expect(l3.port).toBe(l1.port);
    expect(p.stats()).toMatchObject({ leases: 3, releases: 1, exhausted: 1, active: 2 });
  });

  it('leaseMany is all or none: a shortfall releases what it took', async () => {
    const b = base();
    const p = pool(b, b + 3);
    const held = await p.lease();
    await expect(p.leaseMany(2)).rejects.toMatchObject({ code: 'ERR_RTP_PORTS_EXHAUSTED' });
    expect(p.active).toBe(1);
    await held.release();
    const both = await p.leaseMany(2);
    expect(both.map((l) => l.port).sort()).toEqual([b, b + 2]);
  });

  it('does not hand out the same pair to concurrent lease() calls', async () => {
    const b = base();
    const p = pool(b, b + 11);
    const leases = await Promise.all([p.lease(), p.lease(), p.lease()]);
    expect(new Set(leases.map((l) => l.port)).size).toBe(3);
  });

  it('moves on after a release instead of reusing the port at once', async () => {
    const b = base();
    const p = pool(b, b + 11);
    const l1 = await p.lease();
    await l1.release();
    const l2 = await p.lease();
    expect(l2.port).toBe(b + 2);
  });

  it('close() releases every lease', async () => {
    const b = base();
    const p = pool(b, b + 11);
    await p.lease();
    await p.lease();
    await p.close();
    expect(p.stats().active).toBe(0);
    await occupy(b);
    await occupy(b + 2);
  });

  it('rejects ranges without a pair', () => {
    expect(() => new UdpPortPool({ minPort: 3001, maxPort: 3002 })).toThrow(RangeError);
    expect(() => new UdpPortPool({ minPort: 0, maxPort: 10 })).toThrow(RangeError);
    expect(() => new UdpPortPool({ minPort: 10, maxPort: 70000 })).toThrow(RangeError);
    expect(new UdpPortPool({ minPort: 3000, maxPort: 3001 }).capacity).toBe(1);
  });
});
