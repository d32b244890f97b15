// Real UDP on 127.0.0.1: the simulator's RTP sender → UdpPortPool lease → RtpReceiver.
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { sendRtp } from '../../simulator/rtp-sender.js';
import { serializeRtp } from './packet.js';
import { RtpReceiver } from './rtp-receiver.js';
import type { RtpAudioEvent, RtpStreamEvent } from './rtp-stream.js';
import { UdpPortPool } from './udp-port-pool.js';

const HOST = '127.0.0.1';
const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0)) await fn();
});

function newPool(): UdpPortPool {
  const b = 25_000 + randomInt(0, 3000) * 2;
  const pool = new UdpPortPool({ minPort: b, maxPort: b + 40, host: HOST });
  cleanup.push(() => pool.close());
  return pool;
}

async function until(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(5);
  }
}

/** One UDP socket (one source address:port) for hand-made datagrams. */
function rawSender(): (port: number, datagrams: Buffer[]) => Promise<void> {
  const s = createSocket('udp4');
  cleanup.push(() => new Promise<void>((r) => s.close(() => r())));
  return async (port, datagrams) => {
    for (const d of datagrams) await new Promise<void>((resolve, reject) => s.send(d, port, HOST, (err) => (err ? reject(err) : resolve())));
  };
}

const isAudio = (e: RtpStreamEvent): e is RtpAudioEvent => e.kind === 'audio';

describe('RtpReceiver over real UDP', () => {
  it('delivers exactly the bytes the sender sent, despite reordering and duplicates, and ignores a foreign source', async () => {
    const pool = newPool();
    const events: RtpStreamEvent[] = [];
    const receiver = new RtpReceiver({ lease: await pool.lease(), onEvent: (e) => events.push(e), timelineStartMs: 40 });
    cleanup.push(() => receiver.close());
    const audio = Uint8Array.from({ length: 8000 + 57 }, (_, i) => (i * 31 + (i >> 8)) & 0xff); // 1 s + a 57-byte tail
    const sending = sendRtp({
      host: HOST,
      port: receiver.port,
      audio,
      codec: 'pcma',
      ptimeMs: 20,
      speed: 2,
      impairments: { reorderRate: 0.15, duplicateRate: 0.1, seed: 3 },
    });
    // a stranger sprays valid-looking RTP at the port once the real source has latched
    await until(() => receiver.source !== null);
    await rawSender()(
      receiver.port,
      Array.from({ length: 50 }, (_, i) => serializeRtp({ payloadType: 8, sequenceNumber: i, timestamp: i * 160, ssrc: 99, payload: Buffer.alloc(160, 0x55) })),
    );
    const result = await sending;
    expect(result.reordered).toBeGreaterThan(0);
    expect(result.duplicated).toBeGreaterThan(0);
    await until(() => receiver.stats().packets >= result.sent + 50);
    await receiver.close();

    const frames = events.filter(isAudio);
    expect(Buffer.concat(frames.map((f) => f.payload)).equals(Buffer.from(audio))).toBe(true);
    expect(frames.map((f) => f.timelineMs)).toEqual(frames.map((_, i) => 40 + i * 20));
    expect(frames.every((f) => f.codec === 'pcma' && f.ssrc === result.ssrc)).toBe(true);
    expect(receiver.source).toEqual({ address: HOST, port: result.localPort });
    expect(receiver.stats()).toMatchObject({
      lostPackets: 0,
      late: 0,
      duplicates: result.duplicated,
      foreignSource: 50,
      ssrcChanges: 0,
      audioFrames: 51,
      callbackErrors: 0,
    });
    expect(receiver.stats().reordered).toBeGreaterThan(0);
  });

  it('reports injected loss and still places later audio by its timestamps (30 ms ptime)', async () => {
    const pool = newPool();
    const events: RtpStreamEvent[] = [];
    const receiver = new RtpReceiver({ lease: await pool.lease(), onEvent: (e) => events.push(e) });
    cleanup.push(() => receiver.close());
    const audio = new Uint8Array(240 * 30).fill(0xd5);
    const result = await sendRtp({ host: HOST, port: receiver.port, audio, codec: 'pcma', ptimeMs: 30, speed: 3, impairments: { lossRate: 0.2, seed: 11 } });
    expect(result.lost).toBeGreaterThan(0);
    await until(() => receiver.stats().packets >= result.sent);
    await receiver.close();
    const frames = events.filter(isAudio);
    expect(frames).toHaveLength(30 - result.lost);
    const st = receiver.stats();
    // a loss at the very end is invisible (nothing follows it)
    expect(st.lostPackets).toBeGreaterThan(0);
    expect(st.lostPackets).toBeLessThanOrEqual(result.lost);
    expect(st.lostMs).toBe(st.lostPackets * 30);
    for (const f of frames) expect(f.timelineMs % 30).toBe(0);
  });

  it('polls on a timer (injected clock) for frames behind a gap, flushes on close, counts RTCP on the odd port and callback failures', async () => {
    const pool = newPool();
    const lease = await pool.lease();
    const events: RtpStreamEvent[] = [];
    const errors: unknown[] = [];
    let clock = 1_000;
    const receiver = new RtpReceiver({
      lease,
      windowMs: 30,
      now: () => clock,
      onEvent: (e) => {
        events.push(e);
        if (events.length === 1) throw new Error('consumer bug');
      },
      onError: (err) => errors.push(err),
    });
    cleanup.push(() => receiver.close());
    const sendRaw = rawSender();
    const pkt = (seq: number): Buffer => serializeRtp({ payloadType: 0, sequenceNumber: seq, timestamp: seq * 160, ssrc: 5, payload: Buffer.alloc(160, seq) });
    await sendRaw(receiver.port, [pkt(1), pkt(3)]);
    await until(() => receiver.stats().packets === 2);
    await sleep(60); // real time passes, the injected clock does not: nothing is due
    expect(events).toHaveLength(0);
    clock += 30;
    // both come out by the timer alone (start window, then the gap before 3 declared lost)
    await until(() => events.length === 2);
    expect(receiver.stats()).toMatchObject({ lostPackets: 1, callbackErrors: 1 });
    expect(receiver.stats().timerPolls).toBeGreaterThan(0);
    expect(errors).toHaveLength(1);
    // 6 waits behind the gap at 4-5 (the clock stands still) until close() flushes it
    await sendRaw(receiver.port, [pkt(6)]);
    await until(() => receiver.stats().packets === 3);
    await sendRaw(lease.rtcpPort, [Buffer.from([0x81, 201, 0, 1, 0, 0, 0, 5])]);
    await until(() => receiver.stats().rtcpPortPackets === 1);
    expect(events).toHaveLength(2);
    await receiver.close();
    expect(events.filter(isAudio).map((e) => [e.payload[0], e.arrivalMs])).toEqual([
      [1, 1000],
      [3, 1000],
      [6, 1030],
    ]);
    expect(receiver.stats().lostPackets).toBe(3);
    expect(pool.stats()).toMatchObject({ active: 0, releases: 1 });
  });
});
