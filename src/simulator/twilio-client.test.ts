import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { isAppError } from '../core/errors.js';
import { FIXTURE_CALLS_DIR, loadFixtureCall, type FixtureCall } from './fixture-call.js';
import { base64Frames, framesDue, playManyCalls, playTwilioCall } from './twilio-client.js';

interface Conn {
  readonly ws: WebSocket;
  readonly headers: IncomingHttpHeaders;
  readonly messages: string[];
  closeCode: number | null;
  readonly closed: Promise<void>;
}

interface Recorder {
  readonly url: string;
  readonly conns: Conn[];
  close(): Promise<void>;
}

const servers: Recorder[] = [];

/** A ws server on 127.0.0.1:0 that records the wire of every connection. */
async function recordingServer(opts: { onMessage?: (conn: Conn, text: string) => void; reject?: number } = {}): Promise<Recorder> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    verifyClient: opts.reject ? (_info, cb) => cb(false, opts.reject) : undefined,
  });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const conns: Conn[] = [];
  wss.on('connection', (ws, req) => {
    let done!: () => void;
    const conn: Conn = { ws, headers: req.headers, messages: [], closeCode: null, closed: new Promise((r) => (done = r)) };
    conns.push(conn);
    ws.on('message', (data, isBinary) => {
      expect(isBinary).toBe(false);
      const text = data.toString();
      conn.messages.push(text);
      opts.onMessage?.(conn, text);
    });
    ws.on('close', (code) => {
      conn.closeCode = code;
      done();
    });
  });
  const port = (wss.address() as AddressInfo).port;
  const rec: Recorder = {
    url: `ws://127.0.0.1:${port}/twilio`,
    conns,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  };
  servers.push(rec);
  return rec;
}

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

/** Test-side wire decoding: every field the simulator may send, all of them strings as on Twilio. */
const wireSchema = z.strictObject({
  event: z.enum(['connected', 'start', 'media', 'stop']),
  protocol: z.string().optional(),
  version: z.string().optional(),
  sequenceNumber: z.string().regex(/^\d+$/).optional(),
  streamSid: z.string().optional(),
  start: z
    .strictObject({
      streamSid: z.string(),
      accountSid: z.string(),
      callSid: z.string(),
      tracks: z.array(z.string()),
      customParameters: z.record(z.string(), z.string()),
      mediaFormat: z.strictObject({ encoding: z.string(), sampleRate: z.number(), channels: z.number() }),
    })
    .optional(),
  media: z
    .strictObject({ track: z.string(), chunk: z.string(), timestamp: z.string(), payload: z.string() })
    .optional(),
  stop: z.strictObject({ accountSid: z.string(), callSid: z.string() }).optional(),
});
type Wire = z.infer<typeof wireSchema>;

function parse(text: string): Wire {
  return wireSchema.parse(JSON.parse(text));
}

function mediaOf(m: Wire): NonNullable<Wire['media']> {
  if (!m.media) throw new Error('not a media message');
  return m.media;
}

function syntheticFixture(bytes: number, tracks: ('inbound' | 'outbound')[] = ['inbound', 'outbound']): FixtureCall {
  return {
    name: 'synthetic',
    dir: '/nonexistent',
    tracks: tracks.map((track, k) => ({
      role: track === 'inbound' ? 'customer' : 'agent',
      track,
      mulaw: Buffer.from(Array.from({ length: bytes }, (_, i) => (i * 7 + k * 50) & 0xff)),
    })),
    script: { roles: {}, durationMs: bytes / 8, lines: [] },
  };
}

let zh: FixtureCall;
beforeAll(async () => {
  zh = await loadFixtureCall(`${FIXTURE_CALLS_DIR}/zh-billing-complaint`);
});

describe('playTwilioCall: the wire', () => {
  it('plays zh-billing-complaint as Twilio would (both tracks, as fast as possible)', async () => {
    const srv = await recordingServer();
    const result = await playTwilioCall({
      fixture: zh,
      url: srv.url,
      speed: Infinity,
      customParameters: { tenant: 'acme', role_inbound: 'customer' },
      headers: { 'X-Twilio-Signature': 'sig123' },
    });
    const conn = srv.conns[0]!;
    await conn.closed;
    expect(srv.conns).toHaveLength(1);
    expect(conn.headers['x-twilio-signature']).toBe('sig123');
    expect(conn.closeCode).toBe(1000);
    expect(result).toMatchObject({ closeCode: 1000, closedByServer: false, stopSent: true, aborted: false });

    const msgs = conn.messages.map(parse);
    // connected first, without sequenceNumber / streamSid
    expect(msgs[0]).toEqual({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    // start
    const start = msgs[1]!;
    expect(start).toEqual({
      event: 'start',
      sequenceNumber: '1',
      streamSid: result.streamSid,
      start: {
        streamSid: result.streamSid,
        accountSid: result.accountSid,
        callSid: result.callSid,
        tracks: ['inbound', 'outbound'],
        customParameters: { tenant: 'acme', role_inbound: 'customer' },
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
    });
    expect(result.streamSid).toMatch(/^MZ[0-9a-f]{32}$/);
    expect(result.callSid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(result.accountSid).toMatch(/^AC[0-9a-f]{32}$/);

    // media: per-track counts = ceil(track bytes / 160)
    const media = msgs.slice(2, -1);
    const dataBytes = 525_506;
    const perTrack = Math.ceil(dataBytes / 160);
    expect(perTrack).toBe(3285);
    expect(media).toHaveLength(2 * perTrack);
    expect(result.framesSent).toBe(2 * perTrack);
    expect(result.framesPerTrack).toEqual({ inbound: perTrack, outbound: perTrack });
    expect(result.audioMs).toBe(perTrack * 20);

    const payloads: Record<string, Buffer[]> = { inbound: [], outbound: [] };
    media.forEach((m, i) => {
      expect(m.event).toBe('media');
      expect(m.streamSid).toBe(result.streamSid);
      expect(m.sequenceNumber).toBe(String(i + 2)); // shared counter, start was "1"
      const k = Math.floor(i / 2);
      // interleaved: inbound then outbound for each 20 ms slot
      const md = mediaOf(m);
      expect(md.track).toBe(i % 2 === 0 ? 'inbound' : 'outbound');
      expect(md.chunk).toBe(String(k + 1));
      expect(md.timestamp).toBe(String(20 * k));
      expect(md.payload).toHaveLength(216);
      payloads[md.track]!.push(Buffer.from(md.payload, 'base64'));
    });
    for (const t of zh.tracks) {
      const wire = Buffer.concat(payloads[t.track]!);
      expect(wire).toHaveLength(perTrack * 160);
      expect(wire.subarray(0, dataBytes).equals(t.mulaw)).toBe(true);
      // the last frame is padded with μ-law silence
      expect(wire.subarray(dataBytes).equals(Buffer.alloc(perTrack * 160 - dataBytes, 0xff))).toBe(true);
    }

    // stop last
    expect(msgs.at(-1)).toEqual({
      event: 'stop',
      sequenceNumber: String(2 + 2 * perTrack),
      streamSid: result.streamSid,
      stop: { accountSid: result.accountSid, callSid: result.callSid },
    });
  });

  it('inbound only, with given ids and a first timestamp of 52 ms', async () => {
    const srv = await recordingServer();
    const ids = {
      streamSid: 'MZ11111111111111111111111111111111',
      callSid: 'CA22222222222222222222222222222222',
      accountSid: 'AC33333333333333333333333333333333',
    };
    const result = await playTwilioCall({
      fixture: syntheticFixture(1000),
      url: srv.url,
      speed: 0,
      tracks: 'inbound',
      startTimestampMs: 52,
      ...ids,
    });
    expect(result).toMatchObject({ ...ids, framesSent: 7, framesPerTrack: { inbound: 7 } });
    const msgs = srv.conns[0]!.messages.map(parse);
    expect(msgs[1]!.start?.tracks).toEqual(['inbound']);
    expect(msgs[1]!.start?.customParameters).toEqual({});
    const media = msgs.filter((m) => m.event === 'media');
    expect(media.map((m) => mediaOf(m).track)).toEqual(Array(7).fill('inbound'));
    expect(media.map((m) => mediaOf(m).timestamp)).toEqual(['52', '72', '92', '112', '132', '152', '172']);
    expect(media.map((m) => m.sequenceNumber)).toEqual(['2', '3', '4', '5', '6', '7', '8']);
    expect(msgs.at(-1)!.sequenceNumber).toBe('9');
  });

  it('frameMs 30 → 240-byte frames, timestamps every 30 ms', async () => {
    const srv = await recordingServer();
    const result = await playTwilioCall({ fixture: syntheticFixture(480, ['inbound']), url: srv.url, speed: 0, frameMs: 30 });
    expect(result.framesSent).toBe(2);
    const media = srv.conns[0]!.messages.map(parse).filter((m) => m.event === 'media');
    expect(media.map((m) => [mediaOf(m).timestamp, Buffer.from(mediaOf(m).payload, 'base64').length])).toEqual([
      ['0', 240],
      ['30', 240],
    ]);
  });

  it('sendStop: false closes with 1000 without a stop (a missing stop)', async () => {
    const srv = await recordingServer();
    const result = await playTwilioCall({ fixture: syntheticFixture(320), url: srv.url, speed: 0, sendStop: false });
    await srv.conns[0]!.closed;
    expect(result).toMatchObject({ stopSent: false, closeCode: 1000 });
    expect(srv.conns[0]!.messages.map((t) => parse(t).event)).toEqual(['connected', 'start', 'media', 'media', 'media', 'media']);
    expect(srv.conns[0]!.closeCode).toBe(1000);
  });

  it('stops and reports the code when the server closes first', async () => {
    const srv = await recordingServer({
      onMessage: (conn, text) => {
        if (parse(text).event === 'start') conn.ws.close(4005, 'capacity');
      },
    });
    const result = await playTwilioCall({ fixture: zh, url: srv.url, speed: 1 });
    expect(result).toMatchObject({ closeCode: 4005, closeReason: 'capacity', closedByServer: true, stopSent: false });
    expect(result.framesSent).toBeLessThan(100); // of 6570: sending stopped at the close
  });

  it('abort: stops sending, closes 1000 without stop, resolves with aborted', async () => {
    const ac = new AbortController();
    const srv = await recordingServer({
      onMessage: (_conn, text) => {
        if (parse(text).event === 'media') ac.abort();
      },
    });
    const result = await playTwilioCall({ fixture: zh, url: srv.url, speed: 1, signal: ac.signal });
    await srv.conns[0]!.closed;
    expect(result).toMatchObject({ aborted: true, stopSent: false, closeCode: 1000 });
    expect(srv.conns[0]!.messages.map((t) => parse(t).event)).not.toContain('stop');
    expect(srv.conns[0]!.closeCode).toBe(1000);
  });

  it('rejects with ERR_SIMULATOR_UPGRADE_REJECTED (status) when the upgrade is refused', async () => {
    const srv = await recordingServer({ reject: 403 });
    const err: unknown = await playTwilioCall({ fixture: zh, url: srv.url }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isAppError(err) && err.code).toBe('ERR_SIMULATOR_UPGRADE_REJECTED');
    expect(isAppError(err) && err.details).toEqual({ status: 403 });
  });

  it('rejects with ERR_SIMULATOR_CONNECT when nothing listens', async () => {
    const srv = await recordingServer();
    const url = srv.url;
    await srv.close();
    const err: unknown = await playTwilioCall({ fixture: zh, url }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isAppError(err) && err.code).toBe('ERR_SIMULATOR_CONNECT');
  });

  it('real-time pacing: 10 frames at speed 1 are not sent faster than 20 ms apart', async () => {
    const srv = await recordingServer();
    const sentAt: number[] = [];
    const result = await playTwilioCall({
      fixture: syntheticFixture(1600, ['inbound']),
      url: srv.url,
      speed: 1,
      onFrameSent: (_track, _chunk, at) => sentAt.push(at),
    });
    expect(result.framesSent).toBe(10);
    expect(sentAt).toHaveLength(10);
    // lower bound only (a schedule may run late, never early): frame 9 is due 180 ms after frame 0
    expect(sentAt.at(-1)! - sentAt[0]!).toBeGreaterThanOrEqual(175);
  });

  it('onFrameSent reports every frame with its track and chunk', async () => {
    const srv = await recordingServer();
    const seen: string[] = [];
    await playTwilioCall({
      fixture: syntheticFixture(320),
      url: srv.url,
      speed: 0,
      onFrameSent: (track, chunk) => seen.push(`${track}:${chunk}`),
    });
    expect(seen).toEqual(['inbound:1', 'outbound:1', 'inbound:2', 'outbound:2']);
  });

  it('validates options', async () => {
    await expect(playTwilioCall({ fixture: zh, url: 'ws://127.0.0.1:1', speed: -1 })).rejects.toThrow(RangeError);
    await expect(playTwilioCall({ fixture: zh, url: 'ws://127.0.0.1:1', frameMs: 0 })).rejects.toThrow(RangeError);
    await expect(
      playTwilioCall({ fixture: syntheticFixture(160, ['outbound']), url: 'ws://127.0.0.1:1', tracks: 'inbound' }),
    ).rejects.toThrow(/no inbound track/);
  });
});

describe('playManyCalls', () => {
  it('plays N calls with distinct ids and per-call parameters', async () => {
    const srv = await recordingServer();
    const results = await playManyCalls({
      fixture: syntheticFixture(800),
      url: srv.url,
      calls: 5,
      staggerMs: 2,
      speed: 0,
      customParameters: (i) => ({ idx: String(i) }),
    });
    expect(results.map((r) => r.status)).toEqual(Array(5).fill('fulfilled'));
    const values = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(new Set(values.map((v) => v.streamSid)).size).toBe(5);
    expect(new Set(values.map((v) => v.callSid)).size).toBe(5);
    expect(values.every((v) => v.framesSent === 10 && v.closeCode === 1000)).toBe(true);
    expect(srv.conns).toHaveLength(5);
    const idx = srv.conns.map((c) => parse(c.messages[1]!).start?.customParameters['idx']).sort();
    expect(idx).toEqual(['0', '1', '2', '3', '4']);
  });

  it('reports failures per call without rejecting', async () => {
    const srv = await recordingServer({ reject: 503 });
    const results = await playManyCalls({ fixture: zh, url: srv.url, calls: 2 });
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });
});

describe('helpers', () => {
  it('framesDue: drift-free schedule', () => {
    expect(framesDue(-1, 20, 10)).toBe(0);
    expect(framesDue(0, 20, 10)).toBe(1);
    expect(framesDue(19.9, 20, 10)).toBe(1);
    expect(framesDue(20, 20, 10)).toBe(2);
    expect(framesDue(95, 20, 10)).toBe(5); // a late tick catches up
    expect(framesDue(10_000, 20, 10)).toBe(10);
    expect(framesDue(10, 2, 100)).toBe(6); // speed 10
  });

  it('base64Frames: cached per track and frame size; last frame padded with 0xFF', () => {
    const fx = syntheticFixture(170, ['inbound']);
    const t = fx.tracks[0]!;
    const a = base64Frames(t, 160);
    expect(base64Frames(t, 160)).toBe(a);
    expect(a).toHaveLength(2);
    const last = Buffer.from(a[1]!, 'base64');
    expect(last).toHaveLength(160);
    expect(last.subarray(0, 10).equals(t.mulaw.subarray(160))).toBe(true);
    expect(last.subarray(10).equals(Buffer.alloc(150, 0xff))).toBe(true);
    expect(base64Frames(t, 80)).toHaveLength(3);
  });
});
