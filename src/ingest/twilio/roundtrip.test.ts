/**
 * Simulator → real WebSocket → TwilioStreamParser → TrackTimeline: the two independently
 * written sides of the Twilio protocol agree, and the per-track PCM timeline reproduces the
 * fixture audio sample for sample.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { decodeG711 } from '../../codec/g711.js';
import type { PcmChunk } from '../../core/types.js';
import { FIXTURE_CALLS_DIR, loadFixtureCall, type FixtureCall } from '../../simulator/fixture-call.js';
import { playTwilioCall } from '../../simulator/twilio-client.js';
import { TrackTimeline } from '../track-timeline.js';
import { TwilioStreamParser, type TwilioParseResult } from './parser.js';

let zh: FixtureCall;
beforeAll(async () => {
  zh = await loadFixtureCall(`${FIXTURE_CALLS_DIR}/zh-billing-complaint`);
});

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

interface Received {
  results: TwilioParseResult[];
  chunks: Record<string, PcmChunk[]>;
  parser: TwilioStreamParser;
  timelines: Record<string, TrackTimeline>;
}

async function ingestServer(): Promise<{ url: string; done: Promise<Received> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * 1024 });
  await new Promise<void>((r) => wss.once('listening', r));
  closers.push(() => new Promise<void>((r) => wss.close(() => r())));
  const done = new Promise<Received>((resolve) => {
    wss.once('connection', (ws) => {
      const parser = new TwilioStreamParser();
      const results: TwilioParseResult[] = [];
      const timelines: Record<string, TrackTimeline> = {};
      const chunks: Record<string, PcmChunk[]> = {};
      ws.on('message', (data, isBinary) => {
        const r = parser.push(data, isBinary);
        results.push(r);
        if (r.kind === 'event' && r.event.type === 'media') {
          const e = r.event;
          const tl = (timelines[e.track] ??= new TrackTimeline({ codec: e.codec }));
          (chunks[e.track] ??= []).push(...tl.push(e.timestampMs, e.payload, Date.now(), e.codec));
        }
      });
      ws.on('close', () => {
        for (const [track, tl] of Object.entries(timelines)) {
          const tail = tl.flush();
          if (tail) chunks[track]!.push(tail);
        }
        resolve({ results, chunks, parser, timelines });
      });
    });
  });
  return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/twilio`, done };
}

describe('Twilio round trip: simulator → parser → track timeline', () => {
  it.each([0, 52])('reconstructs both tracks exactly (first timestamp %i ms)', async (startTimestampMs) => {
    const srv = await ingestServer();
    const played = await playTwilioCall({ fixture: zh, url: srv.url, speed: Infinity, startTimestampMs });
    const got = await srv.done;

    expect(got.results.every((r) => r.kind === 'event')).toBe(true);
    const types = got.results.map((r) => (r.kind === 'event' ? r.event.type : r.kind));
    expect(types[0]).toBe('connected');
    expect(types[1]).toBe('start');
    expect(types.at(-1)).toBe('stop');
    const start = got.results[1]!;
    expect(start.kind === 'event' && start.event.type === 'start' && start.event.callSid).toBe(played.callSid);
    expect(got.parser.state).toBe('stopped');
    const st = got.parser.stats;
    expect(st.events.media).toBe(played.framesSent);
    expect(st.seqGaps + st.seqRegressions + st.chunkRegressions + st.unlistedTrackFrames).toBe(0);

    for (const t of zh.tracks) {
      const frames = Math.ceil(t.mulaw.length / 160);
      const padded = Buffer.concat([t.mulaw, Buffer.alloc(frames * 160 - t.mulaw.length, 0xff)]);
      const expected = Buffer.concat([Buffer.alloc(startTimestampMs * 16), decodeG711('pcmu', padded)]);
      const chunks = got.chunks[t.track]!;
      expect(Buffer.concat(chunks.map((c) => c.pcm)).equals(expected)).toBe(true);
      // every chunk but the tail is 100 ms, on the 100 ms grid
      chunks.slice(0, -1).forEach((c, i) => {
        expect(c.pcm.length).toBe(1600);
        expect(c.startMs).toBe(i * 100);
      });
      const tls = got.timelines[t.track]!.stats;
      expect(tls).toMatchObject({ gaps: 0, lateFrames: 0, duplicateFrames: 0, leadInFillMs: startTimestampMs });
    }
  });
});
