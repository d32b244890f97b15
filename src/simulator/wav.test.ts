import { describe, expect, it } from 'vitest';
import { decodeG711, encodeG711, pcmToSamples } from '../codec/g711.js';
import { isAppError } from '../core/errors.js';
import { parseWav, wavToMulaw } from './wav.js';

interface WavSpec {
  formatTag: number;
  channels?: number;
  sampleRate?: number;
  bitsPerSample: number;
  data: Buffer;
  /** Chunks inserted before `fmt `, e.g. LIST. */
  before?: Buffer[];
  /** Chunks between `fmt ` and `data`, e.g. fact. */
  between?: Buffer[];
  extensible?: boolean;
}

function chunk(id: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.write(id, 0, 'latin1');
  head.writeUInt32LE(body.length, 4);
  const pad = body.length & 1 ? Buffer.alloc(1) : Buffer.alloc(0);
  return Buffer.concat([head, body, pad]);
}

function makeWav(spec: WavSpec): Buffer {
  const channels = spec.channels ?? 1;
  const rate = spec.sampleRate ?? 8000;
  const blockAlign = (channels * spec.bitsPerSample) / 8;
  const fmt = Buffer.alloc(spec.extensible ? 40 : 18);
  fmt.writeUInt16LE(spec.extensible ? 0xfffe : spec.formatTag, 0);
  fmt.writeUInt16LE(channels, 2);
  fmt.writeUInt32LE(rate, 4);
  fmt.writeUInt32LE(rate * blockAlign, 8);
  fmt.writeUInt16LE(blockAlign, 12);
  fmt.writeUInt16LE(spec.bitsPerSample, 14);
  if (spec.extensible) {
    fmt.writeUInt16LE(22, 16);
    fmt.writeUInt16LE(spec.bitsPerSample, 18);
    fmt.writeUInt32LE(4, 20);
    fmt.writeUInt16LE(spec.formatTag, 24); // sub-format GUID starts with the format code
  }
  const body = Buffer.concat([
    Buffer.from('WAVE', 'latin1'),
    ...(spec.before ?? []),
    chunk('fmt ', fmt),
    ...(spec.between ?? []),
    chunk('data', spec.data),
  ]);
  const head = Buffer.alloc(8);
  head.write('RIFF', 0, 'latin1');
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
}

const MU = Buffer.from(Array.from({ length: 333 }, (_, i) => (i * 37) & 0xff));

function expectWavError(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(isAppError(err) && err.code).toBe('ERR_SIMULATOR_WAV_FORMAT');
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('expected a WAV format error');
}

describe('parseWav / wavToMulaw', () => {
  it('μ-law WAV (format 7) with fact and LIST chunks and an odd data length', () => {
    const wav = makeWav({
      formatTag: 7,
      bitsPerSample: 8,
      data: MU,
      before: [chunk('LIST', Buffer.from('INFOISFT\u0003\u0000\u0000\u0000abc', 'latin1'))],
      between: [chunk('fact', Buffer.from([0x4d, 1, 0, 0]))],
    });
    const info = parseWav(wav);
    expect(info).toMatchObject({ encoding: 'pcmu', sampleRate: 8000, channels: 1, bitsPerSample: 8 });
    expect(info.data.equals(MU)).toBe(true);
    expect(wavToMulaw(info).equals(MU)).toBe(true);
  });

  it('A-law WAV (format 6) is transcoded to μ-law', () => {
    const alaw = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const info = parseWav(makeWav({ formatTag: 6, bitsPerSample: 8, data: alaw }));
    expect(info.encoding).toBe('pcma');
    const mu = wavToMulaw(info);
    expect(mu).toHaveLength(256);
    expect(Buffer.from(encodeG711('pcmu', pcmToSamples(decodeG711('pcma', alaw)))).equals(mu)).toBe(true);
  });

  it('16-bit PCM WAV (format 1) is encoded to μ-law', () => {
    const samples = Int16Array.from({ length: 400 }, (_, i) => Math.round(Math.sin(i / 5) * 12000));
    const pcm = Buffer.from(samples.buffer);
    const info = parseWav(makeWav({ formatTag: 1, bitsPerSample: 16, data: pcm }));
    expect(info.encoding).toBe('pcm16');
    const mu = wavToMulaw(info);
    expect(mu).toHaveLength(400);
    expect(mu.equals(Buffer.from(encodeG711('pcmu', samples)))).toBe(true);
  });

  it('WAVE_FORMAT_EXTENSIBLE with a μ-law sub-format', () => {
    const info = parseWav(makeWav({ formatTag: 7, bitsPerSample: 8, data: MU, extensible: true }));
    expect(info.encoding).toBe('pcmu');
    expect(info.formatTag).toBe(7);
  });

  it('clamps a data size larger than the file (streaming writers)', () => {
    const wav = makeWav({ formatTag: 7, bitsPerSample: 8, data: MU.subarray(0, 100) });
    wav.writeUInt32LE(0xffffffff, wav.length - 100 - 4);
    expect(parseWav(wav).data).toHaveLength(100);
  });

  it('rejects what it cannot play, with clear messages', () => {
    expectWavError(() => parseWav(Buffer.from('not a wav file at all')), /not a RIFF\/WAVE/);
    expectWavError(() => parseWav(makeWav({ formatTag: 7, bitsPerSample: 8, data: MU, channels: 2 })), /8000 Hz mono.*2 channels/);
    expectWavError(() => parseWav(makeWav({ formatTag: 7, bitsPerSample: 8, data: MU, sampleRate: 16000 })), /16000 Hz/);
    expectWavError(() => parseWav(makeWav({ formatTag: 3, bitsPerSample: 32, data: MU })), /unsupported WAV format 3/);
    expectWavError(() => parseWav(makeWav({ formatTag: 1, bitsPerSample: 8, data: MU })), /16-bit/);
    const noData = makeWav({ formatTag: 7, bitsPerSample: 8, data: Buffer.alloc(0) }).subarray(0, -8);
    expectWavError(() => parseWav(noData), /no data chunk/);
    const noFmt = Buffer.concat([Buffer.from('RIFF\u0000\u0000\u0000\u0000WAVE', 'latin1'), chunk('data', MU)]);
    expectWavError(() => parseWav(noFmt), /no fmt chunk/);
  });
});
