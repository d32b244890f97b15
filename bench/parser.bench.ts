/**
 * Twilio parser + track timeline on the media path, in isolation: µs per frame.
 * `npx tsx bench/parser.bench.ts` — prints figures, asserts nothing.
 */
import { TwilioStreamParser } from '../src/ingest/twilio/parser.js';
import { TrackTimeline } from '../src/ingest/track-timeline.js';

const SID = 'MZ11111111111111111111111111111111';
const payload = Buffer.alloc(160, 0x7f).toString('base64');
const FRAMES = 400_000;
const frames: Buffer[] = [];
for (let i = 0; i < 2000; i++) {
  frames.push(
    Buffer.from(
      JSON.stringify({
        event: 'media',
        sequenceNumber: String(i + 2),
        media: { track: i % 2 ? 'outbound' : 'inbound', chunk: String((i >> 1) + 1), timestamp: String((i >> 1) * 20), payload },
        streamSid: SID,
      }),
    ),
  );
}
const start = Buffer.from(
  JSON.stringify({
    event: 'start',
    sequenceNumber: '1',
    streamSid: SID,
    start: { streamSid: SID, accountSid: 'AC1', callSid: 'CA1', tracks: ['inbound', 'outbound'], customParameters: {}, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
  }),
);

function run(withTimeline: boolean): number {
  let parser = new TwilioStreamParser();
  parser.push(start, false);
  let tl = { inbound: new TrackTimeline({ codec: 'pcmu' }), outbound: new TrackTimeline({ codec: 'pcmu' }) };
  let chunks = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < FRAMES; i++) {
    const k = i % frames.length;
    if (k === 0) {
      parser = new TwilioStreamParser();
      parser.push(start, false);
      tl = { inbound: new TrackTimeline({ codec: 'pcmu' }), outbound: new TrackTimeline({ codec: 'pcmu' }) };
    }
    const r = parser.push(frames[k]!, false);
    if (withTimeline && r.kind === 'event' && r.event.type === 'media') {
      chunks += tl[r.event.track].push(r.event.timestampMs, r.event.payload, 0, r.event.codec).length;
    }
  }
  const us = Number(process.hrtime.bigint() - t0) / 1000 / FRAMES;
  return us + chunks * 0;
}

run(true); // warm-up
console.log(`parser only          ${run(false).toFixed(2)} µs/frame`);
console.log(`parser + timeline    ${run(true).toFixed(2)} µs/frame`);
