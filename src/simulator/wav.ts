/**
 * Minimal RIFF/WAVE reader for the call simulator: walks the chunk list (so `fact`, `LIST`
 * and other chunks in any order are skipped), reads `fmt ` and `data`, and converts the
 * audio to μ-law bytes. Accepted: 8000 Hz mono G.711 μ-law (format 7), A-law (6) or 16-bit
 * PCM (1), including WAVE_FORMAT_EXTENSIBLE (0xFFFE) with one of those sub-formats.
 */
import { readFile } from 'node:fs/promises';
import { AppError } from '../core/errors.js';
import { decodeG711, encodeG711, pcmToSamples } from '../codec/g711.js';

export type WavEncoding = 'pcmu' | 'pcma' | 'pcm16';

export interface WavInfo {
  readonly encoding: WavEncoding;
  readonly formatTag: number;
  readonly sampleRate: number;
  readonly channels: number;
  readonly bitsPerSample: number;
  /** The sample bytes of the `data` chunk (a view into the input). */
  readonly data: Buffer;
}

const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_ALAW = 6;
const WAVE_FORMAT_MULAW = 7;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

function wavError(message: string, details: Record<string, unknown> = {}): AppError {
  return new AppError('ERR_SIMULATOR_WAV_FORMAT', message, { category: 'invalid_request', details });
}

/** Parses a WAV file held in memory. Throws AppError ERR_SIMULATOR_WAV_FORMAT when unusable. */
export function parseWav(buf: Buffer, name = 'wav'): WavInfo {
  if (buf.length < 12 || buf.toString('latin1', 0, 4) !== 'RIFF' || buf.toString('latin1', 8, 12) !== 'WAVE') {
    throw wavError(`${name}: not a RIFF/WAVE file`);
  }
  let fmt: { formatTag: number; channels: number; sampleRate: number; bitsPerSample: number } | null = null;
  let data: Buffer | null = null;
  let off = 12;
  while (off + 8 <= buf.length) {
    const id = buf.toString('latin1', off, off + 4);
    const declared = buf.readUInt32LE(off + 4);
    const bodyStart = off + 8;
    // streaming writers leave sizes at 0 / 0xFFFFFFFF; clamp to what the file holds
    const size = Math.min(declared, buf.length - bodyStart);
    if (id === 'fmt ') {
      if (size < 16) throw wavError(`${name}: fmt chunk too short`, { size });
      let formatTag = buf.readUInt16LE(bodyStart);
      if (formatTag === WAVE_FORMAT_EXTENSIBLE) {
        if (size < 40) throw wavError(`${name}: WAVE_FORMAT_EXTENSIBLE fmt chunk too short`, { size });
        formatTag = buf.readUInt16LE(bodyStart + 24);
      }
      fmt = {
        formatTag,
        channels: buf.readUInt16LE(bodyStart + 2),
        sampleRate: buf.readUInt32LE(bodyStart + 4),
        bitsPerSample: buf.readUInt16LE(bodyStart + 14),
      };
    } else if (id === 'data') {
      data = buf.subarray(bodyStart, bodyStart + size);
      if (fmt !== null) break;
    }
    off = bodyStart + size + (size & 1); // chunks are padded to an even size
  }
  if (fmt === null) throw wavError(`${name}: no fmt chunk`);
  if (data === null) throw wavError(`${name}: no data chunk`);

  let encoding: WavEncoding;
  if (fmt.formatTag === WAVE_FORMAT_MULAW) encoding = 'pcmu';
  else if (fmt.formatTag === WAVE_FORMAT_ALAW) encoding = 'pcma';
  else if (fmt.formatTag === WAVE_FORMAT_PCM) encoding = 'pcm16';
  else {
    throw wavError(`${name}: unsupported WAV format ${fmt.formatTag} (need 7 μ-law, 6 A-law or 1 PCM)`, {
      formatTag: fmt.formatTag,
    });
  }
  if (fmt.sampleRate !== 8000 || fmt.channels !== 1) {
    throw wavError(`${name}: need 8000 Hz mono, got ${fmt.sampleRate} Hz × ${fmt.channels} channels`, {
      sampleRate: fmt.sampleRate,
      channels: fmt.channels,
    });
  }
  const expectedBits = encoding === 'pcm16' ? 16 : 8;
  if (fmt.bitsPerSample !== expectedBits) {
    throw wavError(`${name}: need ${expectedBits}-bit samples for format ${fmt.formatTag}, got ${fmt.bitsPerSample}`, {
      bitsPerSample: fmt.bitsPerSample,
    });
  }
  if (encoding === 'pcm16' && (data.length & 1) === 1) data = data.subarray(0, data.length - 1);
  return {
    encoding,
    formatTag: fmt.formatTag,
    sampleRate: fmt.sampleRate,
    channels: fmt.channels,
    bitsPerSample: fmt.bitsPerSample,
    data,
  };
}

/** The audio of a parsed WAV as μ-law bytes (a copy for μ-law; transcoded otherwise). */
export function wavToMulaw(info: WavInfo): Buffer {
  switch (info.encoding) {
    case 'pcmu':
      return Buffer.from(info.data);
    case 'pcma': {
      const mu = encodeG711('pcmu', pcmToSamples(decodeG711('pcma', info.data)));
      return Buffer.from(mu.buffer, mu.byteOffset, mu.byteLength);
    }
    case 'pcm16': {
      const mu = encodeG711('pcmu', pcmToSamples(info.data));
      return Buffer.from(mu.buffer, mu.byteOffset, mu.byteLength);
    }
  }
}

/** Reads a WAV file and returns its audio as μ-law bytes. */
export async function readWavAsMulaw(path: string): Promise<Buffer> {
  const buf = await readFile(path);
  return wavToMulaw(parseWav(buf, path));
}
