/**
 * G.711 decode: alawmulaw's per-chunk allocation vs our 256-entry table into a preallocated
 * buffer. Prints figures; asserts nothing. `npm run bench:codec`
 */
import alawmulaw from 'alawmulaw';
import { decodeG711Into } from '../src/codec/g711.js';

const FRAME = 160; // 20 ms of 8 kHz G.711
const FRAMES = 200_000; // ≈ 66 minutes of audio
const frame = Uint8Array.from({ length: FRAME }, (_, i) => (i * 37) & 0xff);

function time(label: string, fn: () => void): number {
  fn(); // warm-up
  const t0 = process.hrtime.bigint();
  fn();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const perFrameNs = (ms * 1e6) / FRAMES;
  console.log(`${label.padEnd(44)} ${ms.toFixed(1).padStart(8)} ms   ${perFrameNs.toFixed(0).padStart(6)} ns/frame   ${(FRAMES / (ms / 1000) / 1e6).toFixed(2)} M frames/s`);
  return ms;
}

let sink = 0;
const a = time('alawmulaw.mulaw.decode (allocates Int16Array)', () => {
  for (let i = 0; i < FRAMES; i++) {
    const pcm = alawmulaw.mulaw.decode(frame);
    sink += pcm[0]!;
  }
});
const a2 = time('alawmulaw + Buffer copy to PCM16LE', () => {
  for (let i = 0; i < FRAMES; i++) {
    const pcm = alawmulaw.mulaw.decode(frame);
    const buf = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    sink += buf[0]!;
  }
});
const out = Buffer.allocUnsafe(FRAME * 2 * 5);
const b = time('decodeG711Into (256-entry table, preallocated)', () => {
  for (let i = 0; i < FRAMES; i++) {
    decodeG711Into('pcmu', frame, out, (i % 5) * FRAME * 2);
    sink += out[0]!;
  }
});
console.log(`\ntable decode is ${(a / b).toFixed(1)}× faster than alawmulaw.decode, ${(a2 / b).toFixed(1)}× with the copy (sink ${sink & 1})`);
