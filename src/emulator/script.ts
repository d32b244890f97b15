/**
 * The emulator's scripted recogniser. The emulator does NOT recognise speech: it finds the
 * audio it hears inside a fixture call and answers with that call's ground-truth script.
 *
 * A task does not say which call, role or call-timeline offset its audio belongs to (a client
 * may reconnect mid-call and resend audio from any point), so each sentence is *located*: the
 * first 100 voiced samples (200 bytes of PCM16LE) of the sentence are searched for in every
 * role's decoded track (Buffer.indexOf, even byte offsets only). A hit gives the role and the
 * call-timeline position of the sentence start; the sentence's call-time span then selects the
 * text from the script:
 *
 * - every script line of that role that overlaps the span (± a tolerance) contributes the part
 *   of its text the span covers, proportionally to time (snapped to punctuation near the cut;
 *   a span reaching within the tolerance of a line edge covers it fully). With the fixture's
 *   speech and max_sentence_silence 800 every sentence covers exactly one whole line; a longer
 *   max_sentence_silence can merge two lines into one sentence, a forced final (maxSentenceMs)
 *   splits a line into consecutive parts, and audio resent from the middle of a line yields the
 *   rest of that line — as a real recogniser would;
 * - a part that continues the part emitted last for the same line starts exactly where that
 *   one ended, so a task never emits a line's text twice;
 * - the emotion comes from the line with the largest overlap;
 * - audio that is not in the fixture, audio between script lines and calls without lines get
 *   a placeholder text that says it is emulated ("[emulated speech 3.2 s]"), emotion neutral 0.5.
 *
 * `unfinished` tells the caller that the span stops inside a line (a pause within a spoken
 * line); the task machine then holds the final and merges the continuation (see
 * paraformer-task.ts).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { decodeG711 } from '../codec/g711.js';
import { AppError } from '../core/errors.js';

// ---------------------------------------------------------------------------------------------
// WAV

export interface DecodedWav {
  readonly sampleRateHz: number;
  /** PCM16LE mono. */
  readonly pcm: Buffer;
}

function wavError(what: string): AppError {
  return new AppError('ERR_EMULATOR_WAV_INVALID', `unsupported or malformed WAV: ${what}`, {
    category: 'invalid_request',
  });
}

const WAVE_PCM = 1;
const WAVE_ALAW = 6;
const WAVE_MULAW = 7;
const WAVE_EXTENSIBLE = 0xfffe;

/**
 * Byte offset and length of the `data` chunk and the `fmt ` fields of a RIFF/WAVE buffer, or
 * null when `buf` does not start with a RIFF/WAVE header. Chunks are walked properly (any order,
 * padding, unknown chunks such as `fact` or `LIST`); a data size past the end is clamped.
 */
export function findWavChunks(
  buf: Uint8Array,
): { formatTag: number; channels: number; sampleRateHz: number; bitsPerSample: number; dataOffset: number; dataLength: number } | null {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 12 || b.toString('latin1', 0, 4) !== 'RIFF' || b.toString('latin1', 8, 12) !== 'WAVE') return null;
  let pos = 12;
  let fmt: { formatTag: number; channels: number; sampleRateHz: number; bitsPerSample: number } | null = null;
  let data: { dataOffset: number; dataLength: number } | null = null;
  while (pos + 8 <= b.length && (fmt === null || data === null)) {
    const id = b.toString('latin1', pos, pos + 4);
    const size = b.readUInt32LE(pos + 4);
    const body = pos + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + 16 > b.length) throw wavError('short fmt chunk');
      let formatTag = b.readUInt16LE(body);
      if (formatTag === WAVE_EXTENSIBLE && size >= 26 && body + 26 <= b.length) formatTag = b.readUInt16LE(body + 24);
      fmt = {
        formatTag,
        channels: b.readUInt16LE(body + 2),
        sampleRateHz: b.readUInt32LE(body + 4),
        bitsPerSample: b.readUInt16LE(body + 14),
      };
    } else if (id === 'data') {
      data = { dataOffset: body, dataLength: Math.min(size, b.length - body) };
    }
    pos = body + size + (size & 1);
  }
  if (fmt === null) throw wavError('no fmt chunk');
  if (data === null) throw wavError('no data chunk');
  return { ...fmt, ...data };
}

/** Parses a mono WAV (G.711 μ-law, A-law or 16-bit PCM) into PCM16LE. */
export function parseWav(buf: Uint8Array): DecodedWav {
  const info = findWavChunks(buf);
  if (info === null) throw wavError('not a RIFF/WAVE file');
  if (info.channels !== 1) throw wavError('not mono');
  if (info.sampleRateHz <= 0) throw wavError('bad sample rate');
  const data = buf.subarray(info.dataOffset, info.dataOffset + info.dataLength);
  if ((info.formatTag === WAVE_MULAW || info.formatTag === WAVE_ALAW) && info.bitsPerSample === 8) {
    return { sampleRateHz: info.sampleRateHz, pcm: decodeG711(info.formatTag === WAVE_MULAW ? 'pcmu' : 'pcma', data) };
  }
  if (info.formatTag === WAVE_PCM && info.bitsPerSample === 16) {
    const even = data.length & ~1;
    return { sampleRateHz: info.sampleRateHz, pcm: Buffer.from(data.subarray(0, even)) };
  }
  throw wavError(`format ${info.formatTag}/${info.bitsPerSample} bit`);
}

// ---------------------------------------------------------------------------------------------
// Text units (the words of a result)

export interface TextUnit {
  readonly text: string;
  /** Punctuation right after the unit ("" when none). */
  readonly punctuation: string;
}

export interface SplitText {
  readonly units: readonly TextUnit[];
  /** '' for CJK text (one unit per character), ' ' for space-separated text. */
  readonly joiner: '' | ' ';
}

const CJK = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]/u;
const PUNCT = /^\p{P}$/u;
const TRAILING_PUNCT = /\p{P}+$/u;

/** How to cut text into words: per character (Chinese, Japanese, Korean), on spaces, or guess. */
export type SplitMode = 'chars' | 'spaces' | 'auto';

/** Script languages whose lines are cut per character. */
export function splitModeForLanguage(language: string | undefined): SplitMode {
  if (language === undefined) return 'auto';
  return /^(zh|cmn|yue|ja|ko)\b/i.test(language) ? 'chars' : 'spaces';
}

/**
 * Splits a line into result words. Chinese ('chars', or 'auto' with any CJK character in the
 * text): one word per character, punctuation attached to the preceding word. Other text: split on
 * whitespace, trailing punctuation of a token goes to its `punctuation`.
 */
export function splitText(text: string, mode: SplitMode = 'auto'): SplitText {
  if (mode === 'chars' || (mode === 'auto' && CJK.test(text))) {
    const units: Array<{ text: string; punctuation: string }> = [];
    let leading = '';
    for (const ch of text) {
      if (/\s/u.test(ch)) continue;
      if (PUNCT.test(ch)) {
        const last = units.at(-1);
        if (last) last.punctuation += ch;
        else leading += ch;
        continue;
      }
      units.push({ text: leading + ch, punctuation: '' });
      leading = '';
    }
    return { units, joiner: '' };
  }
  const units: Array<{ text: string; punctuation: string }> = [];
  for (const token of text.split(/\s+/u)) {
    if (token === '') continue;
    const m = TRAILING_PUNCT.exec(token);
    const punct = m ? m[0] : '';
    const word = token.slice(0, token.length - punct.length);
    if (word === '') {
      const last = units.at(-1);
      if (last) {
        last.punctuation += token;
        continue;
      }
    }
    units.push({ text: word === '' ? token : word, punctuation: word === '' ? '' : punct });
  }
  return { units, joiner: ' ' };
}

export function joinUnits(units: readonly TextUnit[], joiner: string): string {
  let out = '';
  for (let i = 0; i < units.length; i++) {
    const u = units[i]!;
    if (i > 0) out += joiner;
    out += u.text + u.punctuation;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The call script

export interface ParaformerEmotion {
  readonly tag: string;
  readonly confidence: number;
}

export const PLACEHOLDER_EMOTION: ParaformerEmotion = Object.freeze({ tag: 'neutral', confidence: 0.5 });

export interface ScriptLine {
  /** Position in script.json `lines`. */
  readonly index: number;
  readonly role: string;
  readonly text: string;
  readonly startMs: number;
  readonly endMs: number;
  readonly emotion: ParaformerEmotion;
  /** The line's qwen3-asr emotion label (`emotion.qwen` in script.json), when the script has one. */
  readonly qwenEmotion?: string;
  readonly units: readonly TextUnit[];
  readonly joiner: '' | ' ';
}

export interface RoleTrack {
  readonly role: string;
  readonly sampleRateHz: number;
  /** The role's whole track, PCM16LE. */
  readonly pcm: Buffer;
}

/** Where heard audio sits in the fixture call. */
export interface AudioLocation {
  readonly role: string;
  /** Call-timeline ms of the located audio's first sample. */
  readonly callMs: number;
}

/** Bytes of PCM16LE searched for: the first 100 samples of a sentence. */
export const PROBE_BYTES = 200;
const MAX_CANDIDATES = 4;

export class CallScript {
  readonly name: string;
  /** script.json `language` (e.g. "zh"), when given. */
  readonly language: string | undefined;
  readonly tracks: readonly RoleTrack[];
  readonly lines: readonly ScriptLine[];
  private readonly byRole = new Map<string, ScriptLine[]>();

  constructor(
    name: string,
    tracks: readonly RoleTrack[],
    lines: ReadonlyArray<Omit<ScriptLine, 'units' | 'joiner'>>,
    splitMode: SplitMode = 'auto',
    language?: string,
  ) {
    this.name = name;
    this.language = language;
    this.tracks = tracks;
    this.lines = lines.map((l) => ({ ...l, ...splitText(l.text, splitMode) }));
    for (const line of this.lines) {
      const list = this.byRole.get(line.role) ?? [];
      list.push(line);
      this.byRole.set(line.role, list);
    }
    for (const list of this.byRole.values()) list.sort((a, b) => a.startMs - b.startMs);
  }

  linesOf(role: string): readonly ScriptLine[] {
    return this.byRole.get(role) ?? [];
  }

  /**
   * Finds `probe` (PCM16LE at `sampleRateHz`) in the role tracks. Only sample-aligned (even)
   * offsets count. With `expected` (where the task's previous sentence continues to), the
   * candidate closest to it wins (role first); otherwise the first hit.
   */
  locate(probe: Uint8Array, sampleRateHz: number, expected: AudioLocation | null): AudioLocation | null {
    let best: AudioLocation | null = null;
    let bestScore = Infinity;
    const tracks = expected
      ? [...this.tracks].sort((a, b) => Number(b.role === expected.role) - Number(a.role === expected.role))
      : this.tracks;
    for (const track of tracks) {
      if (track.sampleRateHz !== sampleRateHz) continue;
      const samplesPerMs = sampleRateHz / 1000;
      let from = 0;
      let candidates = 0;
      while (candidates < MAX_CANDIDATES) {
        const idx = track.pcm.indexOf(probe, from);
        if (idx < 0) break;
        from = idx + 1;
        if ((idx & 1) !== 0) continue;
        candidates++;
        const loc: AudioLocation = { role: track.role, callMs: idx / 2 / samplesPerMs };
        if (expected === null) return loc;
        const score = (track.role === expected.role ? 0 : 1e12) + Math.abs(loc.callMs - expected.callMs);
        if (score < bestScore) {
          best = loc;
          bestScore = score;
        }
        if (score <= 1) return best;
      }
    }
    return best;
  }
}

const emotionSchema = z.object({
  tag: z.string().min(1),
  confidence: z.number().min(0).max(1),
});

const scriptSchema = z.object({
  name: z.string().optional(),
  language: z.string().optional(),
  roles: z.record(z.string(), z.object({ file: z.string().min(1) })),
  lines: z.array(
    z.object({
      role: z.string().min(1),
      text: z.string(),
      startMs: z.number().nonnegative(),
      endMs: z.number().nonnegative(),
      emotion: z.object({ paraformer: emotionSchema.optional(), qwen: z.string().min(1).optional() }).optional(),
    }),
  ),
});

/** Loads a fixture call folder: script.json and the WAV of every role it names. */
export async function loadCallScript(dir: string): Promise<CallScript> {
  const root = path.resolve(dir);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path.join(root, 'script.json'), 'utf8'));
  } catch (err) {
    throw new AppError('ERR_EMULATOR_SCRIPT_INVALID', 'cannot read script.json', {
      category: 'invalid_request',
      cause: err,
      details: { dir: root },
    });
  }
  const parsed = scriptSchema.safeParse(raw);
  if (!parsed.success) {
    throw new AppError('ERR_EMULATOR_SCRIPT_INVALID', 'script.json does not match the fixture format', {
      category: 'invalid_request',
      details: { dir: root, issues: parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.')}: ${i.message}`) },
    });
  }
  const tracks: RoleTrack[] = [];
  for (const [role, spec] of Object.entries(parsed.data.roles)) {
    const file = path.resolve(root, spec.file);
    if (path.dirname(file) !== root) {
      throw new AppError('ERR_EMULATOR_SCRIPT_INVALID', 'a role file must sit in the call folder', {
        category: 'invalid_request',
        details: { dir: root, role },
      });
    }
    const wav = parseWav(await readFile(file));
    tracks.push({ role, sampleRateHz: wav.sampleRateHz, pcm: wav.pcm });
  }
  const roles = new Set(tracks.map((t) => t.role));
  const lines = parsed.data.lines
    .map((l, index) => ({
      index,
      role: l.role,
      text: l.text,
      startMs: l.startMs,
      endMs: Math.max(l.startMs, l.endMs),
      emotion: l.emotion?.paraformer ?? PLACEHOLDER_EMOTION,
      ...(l.emotion?.qwen !== undefined ? { qwenEmotion: l.emotion.qwen } : {}),
    }))
    .filter((l) => roles.has(l.role));
  return new CallScript(
    parsed.data.name ?? path.basename(root),
    tracks,
    lines,
    splitModeForLanguage(parsed.data.language),
    parsed.data.language,
  );
}

// ---------------------------------------------------------------------------------------------
// Per-task recogniser

export interface CoveragePiece {
  readonly line: ScriptLine;
  /** Units [from, to) of the line. */
  readonly from: number;
  readonly to: number;
  /** Real overlap of the span with the line, ms (may be ≤ 0 at the tolerance edges). */
  readonly overlapMs: number;
}

export interface SentenceTranscript {
  readonly text: string;
  readonly units: readonly TextUnit[];
  readonly emotion: ParaformerEmotion;
  /** The audio was found in the fixture and overlaps script lines. */
  readonly matched: boolean;
  /** The span stops inside its last line (the speaker paused mid-line). */
  readonly unfinished: boolean;
  readonly pieces: readonly CoveragePiece[];
}

/** Placeholder for audio the script cannot answer. */
export function placeholderText(durationMs: number): string {
  return `[emulated speech ${(Math.max(0, durationMs) / 1000).toFixed(1)} s]`;
}

/** Index of the unit boundary at call time `t` inside `line`, snapped to nearby punctuation. */
function unitBoundaryAt(line: ScriptLine, t: number): number {
  const n = line.units.length;
  const dur = Math.max(1, line.endMs - line.startMs);
  const k = Math.min(n, Math.max(0, Math.round((n * (t - line.startMs)) / dur)));
  if (k <= 0 || k >= n) return k;
  for (const d of [0, 1, -1, 2, -2]) {
    const j = k + d;
    if (j > 0 && j < n && line.units[j - 1]!.punctuation !== '') return j;
  }
  return k;
}

/** How far continuation parts may drift (in units) and still be glued to the previous part. */
const CONTINUATION_SLACK_UNITS = 3;

/**
 * One task's recogniser: locates sentences (remembering where the previous one was, to prefer
 * the continuing position) and remembers which part of each line it has emitted.
 */
export class ScriptedRecognizer {
  /** Bytes of probe wanted (0: locating is impossible for this task). */
  readonly probeBytes: number;
  private last: { role: string; callMs: number; taskMs: number } | null = null;
  private readonly emittedTo = new Map<number, number>();

  constructor(
    private readonly script: CallScript | null,
    private readonly sampleRateHz: number,
    private readonly toleranceMs: number,
  ) {
    const usable = script !== null && script.tracks.some((t) => t.sampleRateHz === sampleRateHz);
    this.probeBytes = usable ? PROBE_BYTES : 0;
  }

  /** Locates a sentence starting at task time `taskMs` from its probe bytes. */
  locate(probe: Uint8Array, taskMs: number): AudioLocation | null {
    if (this.script === null || this.probeBytes === 0) return null;
    const expected = this.last ? { role: this.last.role, callMs: this.last.callMs + (taskMs - this.last.taskMs) } : null;
    const loc = this.script.locate(probe, this.sampleRateHz, expected);
    if (loc) this.last = { role: loc.role, callMs: loc.callMs, taskMs };
    return loc;
  }

  /**
   * The text of a sentence located at `loc` that spans task time [beginMs, endMs]. Pure: call
   * `commit()` once the final was sent.
   */
  transcribe(loc: AudioLocation | null, beginMs: number, endMs: number): SentenceTranscript {
    const durationMs = Math.max(0, endMs - beginMs);
    if (loc === null || this.script === null) return this.placeholder(durationMs);
    const callStart = loc.callMs;
    const callEnd = loc.callMs + durationMs;
    const tol = this.toleranceMs;
    const pieces: CoveragePiece[] = [];
    let overlapped = false;
    for (const line of this.script.linesOf(loc.role)) {
      if (callEnd + tol < line.startMs || callStart - tol > line.endMs) continue;
      overlapped = true;
      const n = line.units.length;
      let from = callStart <= line.startMs + tol ? 0 : unitBoundaryAt(line, callStart);
      const to = callEnd >= line.endMs - tol ? n : unitBoundaryAt(line, callEnd);
      const done = this.emittedTo.get(line.index);
      if (done !== undefined && Math.abs(from - done) <= CONTINUATION_SLACK_UNITS) from = done;
      if (to <= from) continue;
      const overlapMs = Math.min(line.endMs, callEnd) - Math.max(line.startMs, callStart);
      pieces.push({ line, from, to, overlapMs });
    }
    if (!overlapped) return this.placeholder(durationMs);
    const units: TextUnit[] = [];
    let text = '';
    let best: CoveragePiece | null = null;
    for (const p of pieces) {
      const part = p.line.units.slice(p.from, p.to);
      const partText = joinUnits(part, p.line.joiner);
      if (text !== '' && partText !== '' && p.line.joiner === ' ') text += ' ';
      text += partText;
      units.push(...part);
      if (best === null || p.overlapMs > best.overlapMs) best = p;
    }
    const lastPiece = pieces.at(-1);
    return {
      text,
      units,
      emotion: best ? best.line.emotion : PLACEHOLDER_EMOTION,
      matched: true,
      unfinished: lastPiece !== undefined && lastPiece.to < lastPiece.line.units.length,
      pieces,
    };
  }

  /** Records that a final with this transcript was sent. */
  commit(t: SentenceTranscript): void {
    for (const p of t.pieces) this.emittedTo.set(p.line.index, p.to);
  }

  private placeholder(durationMs: number): SentenceTranscript {
    const text = placeholderText(durationMs);
    return { text, units: splitText(text).units, emotion: PLACEHOLDER_EMOTION, matched: false, unfinished: false, pieces: [] };
  }
}
