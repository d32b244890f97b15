import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { isAppError } from '../core/errors.js';
import {
  PROBE_BYTES,
  ScriptedRecognizer,
  joinUnits,
  loadCallScript,
  parseWav,
  placeholderText,
  splitText,
  type CallScript,
  type ScriptLine,
} from './script.js';
import { segmentPcm } from './vad.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZH_CALL = path.resolve(HERE, '../../../shared/fixtures/calls/zh-billing-complaint');
const EN_CALL = path.resolve(HERE, '../../../shared/fixtures/calls/en-auto-repairs');

function riff(chunks: Array<[string, Buffer]>): Buffer {
  const parts = chunks.map(([id, body]) => {
    const head = Buffer.alloc(8);
    head.write(id, 0, 'latin1');
    head.writeUInt32LE(body.length, 4);
    return Buffer.concat([head, body, body.length % 2 ? Buffer.alloc(1) : Buffer.alloc(0)]);
  });
  const header = Buffer.alloc(12);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(4 + parts.reduce((n, p) => n + p.length, 0), 4);
  header.write('WAVE', 8, 'latin1');
  return Buffer.concat([header, ...parts]);
}

function fmt(tag: number, channels: number, rate: number, bits: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(tag, 0);
  b.writeUInt16LE(channels, 2);
  b.writeUInt32LE(rate, 4);
  b.writeUInt32LE((rate * channels * bits) / 8, 8);
  b.writeUInt16LE((channels * bits) / 8, 12);
  b.writeUInt16LE(bits, 14);
  return b;
}

describe('parseWav', () => {
  it('decodes the μ-law fixture (fmt, fact and data chunks) to PCM16LE', () => {
    const file = readFileSync(path.join(ZH_CALL, 'customer.wav'));
    const wav = parseWav(file);
    expect(wav.sampleRateHz).toBe(8000);
    expect(wav.pcm.length).toBe((file.length - 0x3a) * 2);
    expect(Math.round(wav.pcm.length / 16)).toBe(65688);
  });

  it('walks unknown and odd-sized chunks and reads 16-bit PCM', () => {
    const samples = Buffer.alloc(8);
    [1, -1, 300, -32768].forEach((s, i) => samples.writeInt16LE(s, i * 2));
    const wav = parseWav(riff([['LIST', Buffer.from('abc')], ['fmt ', fmt(1, 1, 16000, 16)], ['data', samples]]));
    expect(wav.sampleRateHz).toBe(16000);
    expect(wav.pcm.equals(samples)).toBe(true);
  });

  it('clamps a data size that runs past the end', () => {
    const buf = riff([['fmt ', fmt(7, 1, 8000, 8)], ['data', Buffer.from([0xff, 0x80])]]);
    buf.writeUInt32LE(0xffffffff, buf.length - 2 - 4);
    expect(parseWav(buf).pcm.length).toBe(4);
  });

  it('rejects what it cannot decode', () => {
    const cases = [
      Buffer.from('not a wav file at all'),
      riff([['fmt ', fmt(1, 2, 8000, 16)], ['data', Buffer.alloc(4)]]),
      riff([['fmt ', fmt(3, 1, 8000, 32)], ['data', Buffer.alloc(4)]]),
      riff([['fmt ', fmt(1, 1, 8000, 16)]]),
    ];
    for (const c of cases) {
      let err: unknown;
      try {
        parseWav(c);
      } catch (e) {
        err = e;
      }
      expect(isAppError(err) && err.code).toBe('ERR_EMULATOR_WAV_INVALID');
    }
  });
});

describe('splitText', () => {
  it('cuts Chinese into characters with punctuation on the preceding word', () => {
    const s = splitText('好，我知道了。');
    expect(s.joiner).toBe('');
    expect(s.units).toEqual([
      { text: '好', punctuation: '，' },
      { text: '我', punctuation: '' },
      { text: '知', punctuation: '' },
      { text: '道', punctuation: '' },
      { text: '了', punctuation: '。' },
    ]);
    expect(joinUnits(s.units, s.joiner)).toBe('好，我知道了。');
  });

  it('cuts digits per character in chars mode', () => {
    const s = splitText('13812345678。', 'chars');
    expect(s.units).toHaveLength(11);
    expect(s.units.at(-1)).toEqual({ text: '8', punctuation: '。' });
  });

  it('cuts other text on spaces', () => {
    const s = splitText('Hello, world. Yes');
    expect(s.units).toEqual([
      { text: 'Hello', punctuation: ',' },
      { text: 'world', punctuation: '.' },
      { text: 'Yes', punctuation: '' },
    ]);
    expect(joinUnits(s.units, s.joiner)).toBe('Hello, world. Yes');
    expect(joinUnits(splitText(placeholderText(3210)).units, ' ')).toBe('[emulated speech 3.2 s]');
  });
});

describe('the zh-billing-complaint fixture', () => {
  let script: CallScript;
  let pcm: Record<string, Buffer>;
  beforeAll(async () => {
    script = await loadCallScript(ZH_CALL);
    pcm = Object.fromEntries(script.tracks.map((t) => [t.role, t.pcm]));
  });

  it('loads 12 lines with texts, times, emotions and per-character words', () => {
    expect(script.lines).toHaveLength(12);
    expect(script.linesOf('customer').map((l) => l.index)).toEqual([1, 3, 5, 6, 8, 10]);
    const l4 = script.lines[3]!;
    expect(l4.text).toBe('13812345678。');
    expect(l4.units).toHaveLength(11);
    expect(script.lines[5]!.emotion).toEqual({ tag: 'negative', confidence: 0.92 });
  });

  // Measured once to decide how the emulator handles pauses inside a line: with the default
  // max_sentence_silence (800) every line of either role is exactly one VAD segment; with 200,
  // some lines have internal pauses and split (which is why held sentences are merged).
  it.each(['customer', 'agent'])('gives exactly one VAD segment per %s line at 800 ms', (role) => {
    const segs = segmentPcm(pcm[role]!, { sampleRateHz: 8000, thresholdRms: 300, maxSilenceMs: 800 });
    const lines = script.linesOf(role);
    expect(segs).toHaveLength(lines.length);
    segs.forEach((s, i) => {
      expect(Math.abs(s.startMs - lines[i]!.startMs)).toBeLessThanOrEqual(100);
      expect(Math.abs(s.endMs - lines[i]!.endMs)).toBeLessThanOrEqual(100);
    });
    const split = segmentPcm(pcm[role]!, { sampleRateHz: 8000, thresholdRms: 300, maxSilenceMs: 200 });
    expect(split.length).toBeGreaterThan(lines.length);
  });

  it('locates a probe of voiced audio in the right track, at even offsets only', () => {
    const at = (role: string, ms: number) => pcm[role]!.subarray(ms * 16, ms * 16 + PROBE_BYTES);
    expect(script.locate(at('customer', 39_400), 8000, null)).toEqual({ role: 'customer', callMs: 39_400 });
    expect(script.locate(at('agent', 16_300), 8000, null)).toEqual({ role: 'agent', callMs: 16_300 });
    // a byte-shifted probe only matches at an odd offset: not a sample boundary
    const shifted = pcm['agent']!.subarray(16_300 * 16 + 1, 16_300 * 16 + 1 + PROBE_BYTES);
    expect(script.locate(shifted, 8000, null)).toBeNull();
    expect(script.locate(at('customer', 39_400), 16000, null)).toBeNull();
    const noise = Buffer.alloc(PROBE_BYTES);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) & 0xff;
    expect(script.locate(noise, 8000, null)).toBeNull();
  });

  describe('ScriptedRecognizer', () => {
    const line = (i: number): ScriptLine => script.lines[i]!;

    it('answers a span covering a line with that line', () => {
      const r = new ScriptedRecognizer(script, 8000, 300);
      const l = line(5);
      const t = r.transcribe({ role: 'customer', callMs: l.startMs - 10 }, 0, l.endMs - l.startMs + 20);
      expect(t.text).toBe(l.text);
      expect(t.emotion).toEqual(l.emotion);
      expect(t.units).toHaveLength(l.units.length);
      expect(t.matched).toBe(true);
      expect(t.unfinished).toBe(false);
    });

    it('gives the covered part of a line and continues exactly where the last part ended', () => {
      const r = new ScriptedRecognizer(script, 8000, 300);
      const l = line(0); // agent, 9.6 s
      const mid = l.startMs + 4000;
      const first = r.transcribe({ role: 'agent', callMs: l.startMs }, 0, 4000);
      expect(first.unfinished).toBe(true);
      expect(l.text.startsWith(first.text)).toBe(true);
      expect(first.text.length).toBeGreaterThan(5);
      expect(first.text.length).toBeLessThan(l.text.length);
      r.commit(first);
      const rest = r.transcribe({ role: 'agent', callMs: mid + 150 }, 4150, 4150 + l.endMs - mid - 150);
      expect(first.text + rest.text).toBe(l.text);
      expect(rest.unfinished).toBe(false);
    });

    it('answers audio resent from the middle of a line with the rest of the line', () => {
      const r = new ScriptedRecognizer(script, 8000, 300);
      const l = line(5);
      const t = r.transcribe({ role: 'customer', callMs: 41_000 }, 0, l.endMs - 41_000);
      expect(t.text.length).toBeGreaterThan(3);
      expect(t.text.length).toBeLessThan(l.text.length);
      expect(l.text.endsWith(t.text)).toBe(true);
    });

    it('merges two lines covered by one span; emotion from the larger overlap', () => {
      const r = new ScriptedRecognizer(script, 8000, 300);
      const a = line(5);
      const b = line(6);
      const t = r.transcribe({ role: 'customer', callMs: a.startMs }, 0, b.endMs - a.startMs);
      expect(t.text).toBe(a.text + b.text);
      expect(t.emotion).toEqual(a.emotion);
    });

    it('answers unknown audio and gaps with a placeholder that says it is emulated', () => {
      const r = new ScriptedRecognizer(script, 8000, 300);
      expect(r.transcribe(null, 0, 3210)).toMatchObject({ text: '[emulated speech 3.2 s]', matched: false, emotion: { tag: 'neutral', confidence: 0.5 } });
      expect(r.transcribe({ role: 'customer', callMs: 30_000 }, 0, 1000).text).toBe('[emulated speech 1.0 s]');
      expect(new ScriptedRecognizer(script, 16000, 300).probeBytes).toBe(0);
      expect(new ScriptedRecognizer(null, 8000, 300).probeBytes).toBe(0);
    });
  });
});

describe('a fixture without lines', () => {
  it('loads and locates, but has nothing to say', async () => {
    const en = await loadCallScript(EN_CALL);
    expect(en.lines).toHaveLength(0);
    const track = en.tracks.find((t) => t.role === 'customer')!;
    const seg = segmentPcm(track.pcm, { sampleRateHz: 8000, thresholdRms: 300, maxSilenceMs: 800 })[3]!;
    const loc = en.locate(track.pcm.subarray(seg.startMs * 16, seg.startMs * 16 + PROBE_BYTES), 8000, null);
    expect(loc).toEqual({ role: 'customer', callMs: seg.startMs });
    const t = new ScriptedRecognizer(en, 8000, 300).transcribe(loc, 0, 2500);
    expect(t.text).toBe('[emulated speech 2.5 s]');
  });

  it('rejects a folder without script.json', async () => {
    await expect(loadCallScript(HERE)).rejects.toMatchObject({ code: 'ERR_EMULATOR_SCRIPT_INVALID' });
  });
});
