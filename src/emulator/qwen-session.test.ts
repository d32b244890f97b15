import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../observability/logger.js';
import { DEFAULT_KNOBS, FaultState, applyKnobs, createEmulatorStats, type EmulatorKnobs } from './knobs.js';
import {
  DEFAULT_QWEN_SESSION,
  QWEN_ID_PATTERN,
  QwenSession,
  applySessionUpdate,
  createQwenIdSource,
  isQwenModel,
  type QwenAction,
  type QwenDeps,
  type QwenServerEvent,
} from './qwen-session.js';
import { loadCallScript, type CallScript, type ScriptLine } from './script.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZH_CALL = path.resolve(HERE, '../../../shared/fixtures/calls/zh-billing-complaint');
const MODEL = 'qwen3-asr-flash-realtime';
/** 100 ms of 8 kHz PCM16. */
const CHUNK = 1600;

let script: CallScript;
let customer: Buffer;
let customerLines: ScriptLine[];
beforeAll(async () => {
  script = await loadCallScript(ZH_CALL);
  customer = script.tracks.find((t) => t.role === 'customer')!.pcm;
  customerLines = script.lines.filter((l) => l.role === 'customer') as ScriptLine[];
});

function deps(patch: Partial<EmulatorKnobs> = {}, withScript = true): QwenDeps {
  const knobs = applyKnobs(DEFAULT_KNOBS, patch);
  return { knobs, stats: createEmulatorStats(), faults: new FaultState(knobs), script: withScript ? script : null, logger: silentLogger };
}

const ms = (t: number) => t * 16; // byte offset of call ms t in 8 kHz PCM16

const sent = (actions: readonly QwenAction[]): QwenServerEvent[] => actions.flatMap((a) => (a.type === 'send' ? [a.event] : []));
const kinds = (actions: readonly QwenAction[]): string[] =>
  actions.map((a) => (a.type === 'send' ? a.event.type : a.type === 'close' ? `close:${a.code}` : 'drop'));
const ofType = (actions: readonly QwenAction[], type: string) => sent(actions).filter((e) => e.type === type);

class Harness {
  readonly s: QwenSession;
  readonly log: QwenAction[] = [];
  now = 0;

  constructor(readonly d: QwenDeps = deps()) {
    this.s = new QwenSession(d, { apiKey: 'key', connectionId: 1, model: MODEL });
    this.log.push(...this.s.open(this.now));
  }

  send(msg: Record<string, unknown>): QwenAction[] {
    const a = this.s.handleText(JSON.stringify(msg), this.now);
    this.log.push(...a);
    return a;
  }

  update(session: unknown, eventId = 'event_update'): QwenAction[] {
    return this.send({ event_id: eventId, type: 'session.update', session });
  }

  /** 8 kHz telephony, server VAD (optionally overridden). */
  telephony(turn: Record<string, unknown> | null = {}): QwenAction[] {
    return this.update({ sample_rate: 8000, input_audio_transcription: { language: 'zh' }, turn_detection: turn });
  }

  /** Appends `pcm` as base64 in `chunk`-byte events; stops after a close or drop. */
  play(pcm: Buffer, chunk = CHUNK): QwenAction[] {
    const out: QwenAction[] = [];
    for (let i = 0; i < pcm.length; i += chunk) {
      const a = this.send({ event_id: `event_${i}`, type: 'input_audio_buffer.append', audio: pcm.subarray(i, i + chunk).toString('base64') });
      out.push(...a);
      if (a.some((x) => x.type !== 'send')) break;
    }
    return out;
  }

  finish(): QwenAction[] {
    return this.send({ event_id: 'event_finish', type: 'session.finish' });
  }
}

function expectError(actions: readonly QwenAction[], code: string, param: string | null, eventId: string | null): QwenServerEvent {
  const errors = ofType(actions, 'error');
  expect(errors).toHaveLength(1);
  expect(errors[0]!['error']).toMatchObject({ type: 'invalid_request_error', code, param, event_id: eventId });
  return errors[0]!;
}

type Ev = QwenServerEvent & Record<string, unknown>;

describe('ids and models', () => {
  it('makes event_/item_/sess_ ids of 21 url-safe characters, all different', () => {
    const ids = createQwenIdSource();
    const all = Array.from({ length: 500 }, (_, i) => ids(i % 3 === 0 ? 'event' : i % 3 === 1 ? 'item' : 'sess'));
    for (const id of all) expect(id).toMatch(QWEN_ID_PATTERN);
    expect(new Set(all).size).toBe(all.length);
  });

  it('knows the three model names', () => {
    expect(isQwenModel('qwen3-asr-flash-realtime')).toBe(true);
    expect(isQwenModel('qwen3-asr-flash-realtime-2026-02-10')).toBe(true);
    expect(isQwenModel('qwen3-asr-flash-realtime-2025-10-27')).toBe(true);
    expect(isQwenModel('qwen3-asr-flash')).toBe(false);
    expect(isQwenModel(null)).toBe(false);
  });
});

describe('session.created / session.update', () => {
  it('sends session.created with the defaults at once', () => {
    const h = new Harness();
    expect(kinds(h.log)).toEqual(['session.created']);
    const ev = sent(h.log)[0]!;
    expect(ev.event_id).toMatch(QWEN_ID_PATTERN);
    expect(ev['session']).toEqual({
      id: h.s.sessionId,
      object: 'realtime.session',
      model: MODEL,
      modalities: ['text'],
      input_audio_format: 'pcm',
      sample_rate: 16000,
      input_audio_transcription: null,
      turn_detection: { type: 'server_vad', threshold: 0.2, silence_duration_ms: 800 },
    });
    expect(h.s.sessionId).toMatch(/^sess_/);
  });

  it('deep-merges updates and tolerates the SDKs’ extra fields', () => {
    const h = new Harness();
    const a = h.update({
      modalities: ['text'],
      voice: null,
      output_audio_format: 'pcm24',
      sample_rate: 8000,
      input_audio_transcription: { model: null, language: 'zh', corpus: { text: '星河通信 退费' } },
      turn_detection: { type: 'server_vad', threshold: 0.0, prefix_padding_ms: 300, silence_duration_ms: 400 },
    });
    expect(kinds(a)).toEqual(['session.updated']);
    expect(sent(a)[0]!['session']).toMatchObject({
      sample_rate: 8000,
      input_audio_transcription: { language: 'zh', corpus: { text: '星河通信 退费' } },
      turn_detection: { type: 'server_vad', threshold: 0, silence_duration_ms: 400 },
    });
    // only the silence changes: threshold, language and rate stay
    const b = h.update({ turn_detection: { silence_duration_ms: 500 }, audio: { input: { format: { type: 'pcm', sample_rate: 8000 } }, output: {} } });
    expect(sent(b)[0]!['session']).toMatchObject({
      sample_rate: 8000,
      input_audio_transcription: { language: 'zh' },
      turn_detection: { type: 'server_vad', threshold: 0, silence_duration_ms: 500 },
    });
    // turn_detection null → manual; an object afterwards starts from the defaults
    expect(sent(h.update({ turn_detection: null }))[0]!['session']).toMatchObject({ turn_detection: null });
    expect(sent(h.update({ turn_detection: { threshold: -0.5 } }))[0]!['session']).toMatchObject({
      turn_detection: { type: 'server_vad', threshold: -0.5, silence_duration_ms: 800 },
    });
    // the Java "audio" form sets the flat fields
    expect(sent(h.update({ audio: { input: { format: { type: 'opus', sample_rate: 16000 } } } }))[0]!['session']).toMatchObject({
      input_audio_format: 'opus',
      sample_rate: 16000,
    });
  });

  it.each([
    [{ input_audio_format: 'pcm16' }, 'session.input_audio_format', "Invalid value: 'pcm16'. Supported values are: 'pcm', 'opus'."],
    [{ sample_rate: 44100 }, 'session.sample_rate', 'Invalid value: 44100. Supported values are: 8000, 16000.'],
    [{ sample_rate: '8000' }, 'session.sample_rate', null],
    [{ turn_detection: { threshold: 1.5 } }, 'session.turn_detection.threshold', null],
    [{ turn_detection: { threshold: -1.01 } }, 'session.turn_detection.threshold', null],
    [{ turn_detection: { silence_duration_ms: 100 } }, 'session.turn_detection.silence_duration_ms', null],
    [{ turn_detection: { silence_duration_ms: 6001 } }, 'session.turn_detection.silence_duration_ms', null],
    [{ turn_detection: { silence_duration_ms: 400.5 } }, 'session.turn_detection.silence_duration_ms', null],
    [{ turn_detection: 'server_vad' }, 'session.turn_detection', null],
    [{ turn_detection: { type: 'semantic_vad' } }, 'session.turn_detection.type', null],
    [{ input_audio_transcription: { language: 'zh-CN' } }, 'session.input_audio_transcription.language', null],
    [{ input_audio_transcription: { corpus: { text: 42 } } }, 'session.input_audio_transcription.corpus.text', null],
    [{ input_audio_transcription: 'zh' }, 'session.input_audio_transcription', null],
    [{ modalities: 'text' }, 'session.modalities', null],
    [{ audio: { input: { format: { type: 'wav' } } } }, 'session.audio.input.format.type', null],
    [{ audio: { input: { format: { sample_rate: 22050 } } } }, 'session.audio.input.format.sample_rate', null],
  ])('rejects %j with an invalid_value error naming %s', (patch, param, message) => {
    const h = new Harness();
    const a = h.update(patch, 'event_123');
    const err = expectError(a, 'invalid_value', param, 'event_123');
    if (message !== null) expect((err['error'] as { message: string }).message).toBe(message);
    expect(kinds(a)).toEqual(['error']);
    expect(h.s.config).toEqual(DEFAULT_QWEN_SESSION); // nothing applied
  });

  it('rejects a missing session object and keeps the socket open', () => {
    const h = new Harness();
    expectError(h.send({ type: 'session.update' }), 'missing_required_parameter', 'session', null);
    expect(kinds(h.update({ sample_rate: 8000 }))).toEqual(['session.updated']);
  });

  it('applySessionUpdate is pure: the current config is not touched', () => {
    const r = applySessionUpdate(DEFAULT_QWEN_SESSION, { turn_detection: { threshold: 0 } });
    expect(r.ok).toBe(true);
    expect(DEFAULT_QWEN_SESSION.turn_detection?.threshold).toBe(0.2);
  });
});

/** Events of each item (by item_id), in order. */
function byItem(actions: readonly QwenAction[]): Map<string, Ev[]> {
  const m = new Map<string, Ev[]>();
  for (const e of sent(actions) as Ev[]) {
    const id = (e['item_id'] ?? (e['item'] as { id?: string } | undefined)?.id) as string | undefined;
    if (id === undefined) continue;
    const list = m.get(id) ?? [];
    list.push(e);
    m.set(id, list);
  }
  return m;
}

function expectScriptedItems(actions: readonly QwenAction[], lines: readonly ScriptLine[], offsetMs = 0): Ev[] {
  const completed = ofType(actions, 'conversation.item.input_audio_transcription.completed') as Ev[];
  expect(completed.map((c) => c['transcript'])).toEqual(lines.map((l) => l.text));
  expect(completed.map((c) => c['emotion'])).toEqual(lines.map((l) => l.qwenEmotion));
  const items = byItem(actions);
  completed.forEach((c, i) => {
    const evs = items.get(c['item_id'] as string)!;
    const started = evs.find((e) => e.type === 'input_audio_buffer.speech_started')!;
    const stopped = evs.find((e) => e.type === 'input_audio_buffer.speech_stopped')!;
    expect(Math.abs((started['audio_start_ms'] as number) + offsetMs - lines[i]!.startMs), `line ${i} start`).toBeLessThanOrEqual(300);
    expect(Math.abs((stopped['audio_end_ms'] as number) + offsetMs - lines[i]!.endMs), `line ${i} end`).toBeLessThanOrEqual(300);
    expect(c).toMatchObject({ content_index: 0, language: 'zh' });
  });
  return completed;
}

describe('VAD mode', () => {
  it('turns the customer track into the 6 scripted items, in the documented order', () => {
    const h = new Harness();
    h.telephony();
    const a = h.play(customer);
    a.push(...h.finish());
    const completed = expectScriptedItems(a, customerLines);
    const items = byItem(a);
    expect(items.size).toBe(6);
    let prev: string | null = null;
    for (const c of completed) {
      const id = c['item_id'] as string;
      expect(id).toMatch(QWEN_ID_PATTERN);
      const seq = items.get(id)!.map((e) => e.type);
      const texts = seq.filter((t) => t === 'conversation.item.input_audio_transcription.text').length;
      expect(texts).toBeGreaterThanOrEqual(2);
      // speech_started → text* → speech_stopped → committed → item.created → text → completed
      expect(seq.filter((t) => t !== 'conversation.item.input_audio_transcription.text')).toEqual([
        'input_audio_buffer.speech_started',
        'input_audio_buffer.speech_stopped',
        'input_audio_buffer.committed',
        'conversation.item.created',
        'conversation.item.input_audio_transcription.completed',
      ]);
      expect(seq[1]).toBe('conversation.item.input_audio_transcription.text');
      expect(seq.at(-2)).toBe('conversation.item.input_audio_transcription.text');
      const evs = items.get(id)!;
      let confirmed = '';
      for (const t of evs.filter((e) => e.type === 'conversation.item.input_audio_transcription.text')) {
        const text = t['text'] as string;
        expect(text.startsWith(confirmed)).toBe(true);
        expect((c['transcript'] as string).startsWith(text + (t['stash'] as string))).toBe(true);
        confirmed = text;
      }
      const committed = evs.find((e) => e.type === 'input_audio_buffer.committed')!;
      const created = evs.find((e) => e.type === 'conversation.item.created')!;
      expect(committed['previous_item_id']).toBe(prev);
      expect(created).toMatchObject({
        previous_item_id: prev,
        item: { id, object: 'realtime.item', type: 'message', status: 'completed', role: 'user', content: [{ type: 'input_audio', transcript: null }] },
      });
      prev = id;
    }
    expect(kinds(a).at(-1)).toBe('session.finished');
    const ids = sent(h.log).map((e) => e.event_id);
    for (const id of ids) expect(id).toMatch(QWEN_ID_PATTERN);
    expect(new Set(ids).size).toBe(ids.length);
    expect(h.d.stats).toMatchObject({ qwenSessions: 1, qwenSessionsFinished: 1, qwenItemsCompleted: 6, scriptMatches: 6, scriptMisses: 0 });
  });

  it('grows text (confirmed, never shrinking) and stash (the tentative rest) as full-state snapshots', () => {
    const h = new Harness();
    h.telephony();
    const a = h.play(customer.subarray(ms(10_000), ms(16_500)));
    const line = customerLines[0]!;
    const texts = ofType(a, 'conversation.item.input_audio_transcription.text') as Ev[];
    expect(texts.length).toBeGreaterThan(10);
    let confirmed = '';
    let preview = '';
    for (const t of texts) {
      const text = t['text'] as string;
      const stash = t['stash'] as string;
      expect(text.startsWith(confirmed)).toBe(true);
      expect(line.text.startsWith(text + stash)).toBe(true);
      expect((text + stash).length).toBeGreaterThanOrEqual(preview.length);
      expect(t).toMatchObject({ content_index: 0, language: 'zh', emotion: line.qwenEmotion });
      confirmed = text;
      preview = text + stash;
    }
    const interim = texts.slice(0, -1);
    expect(interim.some((t) => (t['text'] as string) !== '' && (t['stash'] as string) !== '')).toBe(true);
    expect(texts.at(-1)).toMatchObject({ text: line.text, stash: '' });
  });

  it('after-commit timing: no text during speech, growing text after item.created', () => {
    const h = new Harness(deps({ qwenTextTiming: 'after-commit' }));
    h.telephony();
    const a = h.play(customer.subarray(ms(10_000), ms(16_500)));
    const seq = kinds(a);
    const created = seq.indexOf('conversation.item.created');
    expect(seq.slice(0, created)).toEqual(['input_audio_buffer.speech_started', 'input_audio_buffer.speech_stopped', 'input_audio_buffer.committed']);
    const texts = ofType(a, 'conversation.item.input_audio_transcription.text');
    expect(texts.length).toBeGreaterThan(3);
    expect(seq.at(-1)).toBe('conversation.item.input_audio_transcription.completed');
  });

  it('leaves out committed and item.created with qwenCommitEvents=false', () => {
    const h = new Harness(deps({ qwenCommitEvents: false }));
    h.telephony();
    const a = h.play(customer.subarray(ms(24_000), ms(27_800)));
    expect(kinds(a).filter((k) => !k.endsWith('.text'))).toEqual([
      'input_audio_buffer.speech_started',
      'input_audio_buffer.speech_stopped',
      'conversation.item.input_audio_transcription.completed',
    ]);
  });

  it('uses session time: resent audio from the middle of the call starts at 0', () => {
    const h = new Harness();
    h.telephony({ threshold: 0, silence_duration_ms: 400 });
    const a = h.play(customer.subarray(ms(39_000)));
    a.push(...h.finish());
    expectScriptedItems(a, customerLines.slice(2), 39_000);
  });

  it('answers audio that is not in the fixture with a placeholder and neutral', () => {
    const h = new Harness();
    h.telephony();
    const tone = Buffer.alloc(ms(1500));
    for (let i = 0; i < tone.length / 2; i++) tone.writeInt16LE(Math.round(8000 * Math.sin(i / 3)), i * 2);
    const a = h.play(Buffer.concat([tone, Buffer.alloc(ms(1000))]));
    const done = ofType(a, 'conversation.item.input_audio_transcription.completed')[0]!;
    expect(done).toMatchObject({ emotion: 'neutral', transcript: '[emulated speech 1.5 s]' });
    const texts = ofType(a, 'conversation.item.input_audio_transcription.text');
    expect(texts[0]).toMatchObject({ text: '', emotion: 'neutral' });
    expect(texts[0]!['stash']).toMatch(/^\[emulated speech/);
    expect(h.d.stats.scriptMisses).toBe(1);
  });

  it('does not match 8 kHz audio in a session left at the 16 kHz default', () => {
    const h = new Harness();
    const a = h.play(customer.subarray(ms(10_000), ms(16_500)));
    a.push(...h.finish());
    const done = ofType(a, 'conversation.item.input_audio_transcription.completed');
    expect(done).toHaveLength(1);
    expect(done[0]!['transcript']).toMatch(/^\[emulated speech/);
  });

  it('refuses commit in VAD mode', () => {
    const h = new Harness();
    h.telephony();
    h.play(customer.subarray(ms(10_000), ms(11_000)));
    expectError(h.send({ event_id: 'event_c', type: 'input_audio_buffer.commit' }), 'invalid_value', 'type', 'event_c');
  });
});

describe('manual mode', () => {
  it('refuses an empty commit, then commits → text* → completed', () => {
    const h = new Harness();
    h.telephony(null);
    expectError(h.send({ event_id: 'event_c0', type: 'input_audio_buffer.commit' }), 'input_audio_buffer_commit_empty', null, 'event_c0');
    expect(h.play(customer.subarray(ms(10_000), ms(16_500)))).toEqual([]); // appends are never acknowledged
    const a = h.send({ event_id: 'event_c1', type: 'input_audio_buffer.commit' });
    const seq = kinds(a);
    expect(seq[0]).toBe('input_audio_buffer.committed');
    expect(seq[1]).toBe('conversation.item.created');
    expect(seq.at(-1)).toBe('conversation.item.input_audio_transcription.completed');
    expect(seq.slice(2, -1).every((k) => k === 'conversation.item.input_audio_transcription.text')).toBe(true);
    expect(seq.length).toBeGreaterThan(4);
    expect(sent(a)[0]).toMatchObject({ previous_item_id: null });
    const done = ofType(a, 'conversation.item.input_audio_transcription.completed')[0]!;
    expect(done).toMatchObject({ transcript: customerLines[0]!.text, emotion: 'neutral', language: 'zh' });
    expect(sent(a).every((e) => e['item_id'] === undefined || e['item_id'] === sent(a)[0]!['item_id'])).toBe(true);
    // the buffer is empty again
    expectError(h.send({ type: 'input_audio_buffer.commit' }), 'input_audio_buffer_commit_empty', null, null);
    // the next item chains to the first one
    h.play(customer.subarray(ms(39_000), ms(44_200)));
    const b = h.send({ type: 'input_audio_buffer.commit' });
    expect(sent(b)[0]).toMatchObject({ previous_item_id: sent(a)[0]!['item_id'] });
    expect(ofType(b, 'conversation.item.input_audio_transcription.completed')[0]).toMatchObject({
      transcript: customerLines[2]!.text,
      emotion: 'angry',
    });
  });

  it('commits silence as an item with an empty transcript', () => {
    const h = new Harness();
    h.telephony(null);
    h.play(Buffer.alloc(ms(500)));
    const a = h.send({ type: 'input_audio_buffer.commit' });
    expect(kinds(a)).toEqual(['input_audio_buffer.committed', 'conversation.item.created', 'conversation.item.input_audio_transcription.completed']);
    expect(ofType(a, 'conversation.item.input_audio_transcription.completed')[0]).toMatchObject({ transcript: '', emotion: 'neutral' });
  });

  it('session.finish completes uncommitted speech', () => {
    const h = new Harness();
    h.telephony(null);
    h.play(customer.subarray(ms(24_000), ms(27_500)));
    const a = h.finish();
    expect(kinds(a)[0]).toBe('input_audio_buffer.committed');
    expect(ofType(a, 'conversation.item.input_audio_transcription.completed')[0]).toMatchObject({ transcript: '13812345678。' });
    expect(kinds(a).at(-1)).toBe('session.finished');
  });
});

describe('session.finish and closing', () => {
  it('completes the item in progress, then session.finished; waits for the client, then closes after the grace', () => {
    const h = new Harness(deps({ qwenFinishGraceMs: 500 }));
    h.telephony();
    const during = h.play(customer.subarray(ms(10_000), ms(13_000))); // stops in the middle of line 1
    expect(ofType(during, 'conversation.item.input_audio_transcription.completed')).toHaveLength(0);
    const a = h.finish();
    expect(kinds(a).filter((k) => !k.endsWith('.text'))).toEqual([
      'input_audio_buffer.speech_stopped',
      'input_audio_buffer.committed',
      'conversation.item.created',
      'conversation.item.input_audio_transcription.completed',
      'session.finished',
    ]);
    const transcript = ofType(a, 'conversation.item.input_audio_transcription.completed')[0]!['transcript'] as string;
    expect(transcript.length).toBeGreaterThan(3);
    expect(customerLines[0]!.text.startsWith(transcript)).toBe(true);
    expect(transcript).not.toBe(customerLines[0]!.text);
    // after session.finished: events are ignored, the socket stays open until the grace passes
    h.now = 100;
    expect(h.play(customer.subarray(ms(24_000), ms(27_500)))).toEqual([]);
    expect(h.s.nextDeadline()).toBe(500);
    expect(h.s.tick(499)).toEqual([]);
    expect(h.s.tick(500)).toEqual([{ type: 'close', code: 1000, reason: 'session finished' }]);
    expect(h.d.stats.itemsDroppedOnClose).toBe(0);
  });

  it('answers session.finish without speech with session.finished only', () => {
    const h = new Harness();
    h.telephony();
    h.play(Buffer.alloc(ms(2000)));
    expect(kinds(h.finish())).toEqual(['session.finished']);
  });

  it('drops the item in progress silently when the client closes without session.finish', () => {
    const h = new Harness();
    h.telephony();
    const a = h.play(customer.subarray(ms(10_000), ms(13_000)));
    expect(ofType(a, 'input_audio_buffer.speech_started')).toHaveLength(1);
    h.s.handleClose();
    expect(h.s.phase).toBe('closed');
    expect(h.d.stats.itemsDroppedOnClose).toBe(1);
    expect(h.s.handleText(JSON.stringify({ type: 'session.finish' }), 0)).toEqual([]);
    // nothing in progress: nothing dropped
    const h2 = new Harness(h.d);
    h2.telephony();
    h2.play(customer.subarray(ms(10_000), ms(16_500)));
    h2.s.handleClose();
    expect(h.d.stats.itemsDroppedOnClose).toBe(1);
  });
});

describe('client errors and unknown events', () => {
  it('answers unknown events with an error, or ignores them', () => {
    const h = new Harness();
    expectError(h.send({ event_id: 'event_r', type: 'response.create' }), 'invalid_value', 'type', 'event_r');
    const quiet = new Harness(deps({ qwenUnknownEventMode: 'ignore' }));
    expect(quiet.send({ type: 'input_audio_buffer.clear' })).toEqual([]);
    expect(quiet.d.stats.qwenEventsIgnored).toBe(1);
  });

  it('reports bad JSON, a missing type, bad base64 and binary frames, and stays open', () => {
    const h = new Harness();
    expectError(h.s.handleText('{"type":', 0), 'invalid_json', null, null);
    expectError(h.send({ event_id: 'event_t' }), 'missing_required_parameter', 'type', 'event_t');
    expectError(h.send({ event_id: 'event_a', type: 'input_audio_buffer.append', audio: 'not base64!' }), 'invalid_value', 'audio', 'event_a');
    expectError(h.send({ type: 'input_audio_buffer.append' }), 'missing_required_parameter', 'audio', null);
    expectError(h.s.handleAudio(Buffer.alloc(10), 0), 'invalid_value', null, null);
    expect(h.s.phase).toBe('open');
    expect(h.d.stats.qwenErrors).toEqual({ invalid_json: 1, missing_required_parameter: 2, invalid_value: 2 });
  });

  it('closes after an error with qwenCloseAfterError', () => {
    const h = new Harness(deps({ qwenCloseAfterError: true }));
    expect(kinds(h.update({ sample_rate: 1 }))).toEqual(['error', 'close:1000']);
    expect(h.s.phase).toBe('closed');
  });

  it('accepts opus but reports once that it does not decode it', () => {
    const h = new Harness();
    expect(kinds(h.update({ input_audio_format: 'opus', sample_rate: 8000 }))).toEqual(['session.updated']);
    const a = h.play(customer.subarray(ms(10_000), ms(12_000)));
    expect(kinds(a)).toEqual(['error']);
    expect(sent(a)[0]!['error']).toMatchObject({ code: 'unsupported_audio_format', param: 'session.input_audio_format' });
  });
});

describe('knobs for the unconfirmed behaviour', () => {
  it('sends an unsolicited session.updated and usage on completed when asked', () => {
    const h = new Harness(deps({ qwenUnsolicitedUpdated: true, qwenCompletedUsage: true }));
    expect(kinds(h.log)).toEqual(['session.created', 'session.updated']);
    h.telephony();
    const a = h.play(customer.subarray(ms(24_000), ms(27_800)));
    expect(ofType(a, 'conversation.item.input_audio_transcription.completed')[0]).toMatchObject({ usage: { type: 'duration', seconds: 3 } });
  });

  it('ends an idle session and a session past its maximum length with an error and a close', () => {
    const idle = new Harness(deps({ qwenIdleTimeoutMs: 1000 }));
    idle.now = 400;
    idle.play(Buffer.alloc(CHUNK));
    expect(idle.s.nextDeadline()).toBe(1400);
    const a = idle.s.tick(1400);
    expect(kinds(a)).toEqual(['error', 'close:1000']);
    expect(sent(a)[0]!['error']).toMatchObject({ code: 'idle_timeout' });

    const long = new Harness(deps({ qwenMaxSessionMs: 5000, qwenIdleTimeoutMs: 60_000 }));
    long.now = 4000;
    long.play(Buffer.alloc(CHUNK));
    expect(long.s.nextDeadline()).toBe(5000);
    const b = long.s.tick(5000);
    expect(kinds(b)).toEqual(['error', 'close:1000']);
    expect(sent(b)[0]!['error']).toMatchObject({ code: 'session_expired' });
  });

  it('refuses a throttled session, or one during an outage, without session.created', () => {
    const d = deps();
    const thr = new QwenSession(d, { apiKey: 'k', connectionId: 1, model: MODEL });
    const a = thr.open(0, { kind: 'throttled' });
    expect(kinds(a)).toEqual(['error', 'close:1000']);
    expect(sent(a)[0]!['error']).toMatchObject({
      code: 'Throttling.RateQuota',
      message: 'Requests rate limit exceeded, please try again later.',
    });
    const down = new QwenSession(d, { apiKey: 'k', connectionId: 2, model: MODEL });
    const b = down.open(0, { kind: 'outage', mode: 'error-event' });
    expect(kinds(b)).toEqual(['error', 'close:1011']);
    expect(sent(b)[0]!['error']).toMatchObject({ type: 'server_error', code: 'ServiceUnavailable' });
    const gone = new QwenSession(d, { apiKey: 'k', connectionId: 3, model: MODEL });
    expect(kinds(gone.open(0, { kind: 'outage', mode: 'close-1011' }))).toEqual(['close:1011']);
    expect(d.stats.qwenSessions).toBe(0);
  });
});

describe('drop faults', () => {
  it('drops after dropAfterFrames appends', () => {
    const h = new Harness(deps({ faults: { dropAfterFrames: 5, dropConnections: 1 } }));
    h.telephony();
    const a = h.play(customer.subarray(0, CHUNK * 20));
    expect(kinds(a)).toEqual(['drop']);
    expect(h.d.stats).toMatchObject({ dropsInjected: 1, qwenAppends: 5 });
  });

  it('drops 300 ms into the Nth speech segment, losing that item', () => {
    const h = new Harness(deps({ faults: { dropInSentence: 2, dropConnections: 1 } }));
    h.telephony();
    const a = h.play(customer);
    expect(kinds(a).at(-1)).toBe('drop');
    expect(ofType(a, 'conversation.item.input_audio_transcription.completed').map((e) => e['transcript'])).toEqual([customerLines[0]!.text]);
    expect(ofType(a, 'input_audio_buffer.speech_started')).toHaveLength(2);
    expect(h.d.stats).toMatchObject({ dropsInjected: 1, itemsDroppedOnClose: 1 });
  });
});
