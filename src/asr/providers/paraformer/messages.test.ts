import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  buildFinishTask,
  buildRunTask,
  classifySentence,
  classifyTaskFailure,
  handshakeError,
  isFinalSentence,
  newTaskId,
  parseServerMessage,
  parseWithSchemas,
  sentenceToAsrEvent,
  taskFailedError,
  type ParaformerServerEvent,
  type SentenceMessage,
} from './messages.js';

const TASK = '6a1c4f0e9d3b4c2a8f7e5d4c3b2a1908';

function fixture(name: string): string {
  return readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), 'utf8');
}

function parseOk(text: string): ParaformerServerEvent {
  const r = parseServerMessage(text);
  if (!r.ok) throw new Error(`expected ok, got ${r.reason} ${r.paths.join(',')}`);
  return r.event;
}

function sentenceOf(name: string): SentenceMessage {
  const ev = parseOk(fixture(name));
  if (ev.event !== 'result-generated') throw new Error(`not a result: ${ev.event}`);
  return ev.sentence;
}

describe('parseServerMessage', () => {
  it('parses task-started, task-finished', () => {
    expect(parseOk(fixture('task-started'))).toEqual({ event: 'task-started', taskId: TASK });
    expect(parseOk(fixture('task-finished'))).toEqual({ event: 'task-finished', taskId: TASK });
  });

  it('parses task-failed with error_code and error_message', () => {
    expect(parseOk(fixture('task-failed'))).toEqual({
      event: 'task-failed',
      taskId: TASK,
      errorCode: 'CLIENT_ERROR',
      errorMessage: 'request timeout after 23 seconds.',
    });
  });

  it('parses an interim result', () => {
    const s = sentenceOf('result-interim');
    expect(classifySentence(s)).toBe('interim');
    expect(sentenceToAsrEvent(s)).toEqual({ type: 'interim', startMs: 170, text: '好，我知' });
  });

  it('parses a final with emotion, words and usage', () => {
    const ev = parseOk(fixture('result-final-emotion'));
    expect(ev.event).toBe('result-generated');
    if (ev.event !== 'result-generated') return;
    expect(ev.usage).toEqual({ duration: 3 });
    expect(classifySentence(ev.sentence)).toBe('final');
    expect(sentenceToAsrEvent(ev.sentence)).toEqual({
      type: 'final',
      startMs: 170,
      endMs: 920,
      text: '好，我知道了。',
      words: [
        { startMs: 170, endMs: 295, text: '好', punctuation: '，' },
        { startMs: 295, endMs: 503, text: '我', punctuation: '' },
        { startMs: 503, endMs: 711, text: '知道', punctuation: '' },
        { startMs: 711, endMs: 920, text: '了', punctuation: '。' },
      ],
      emotion: { raw: 'neutral', confidence: 0.914 },
    });
  });

  it('recognises heartbeats and skips them', () => {
    const s = sentenceOf('result-heartbeat');
    expect(classifySentence(s)).toBe('heartbeat');
    expect(sentenceToAsrEvent(s)).toBeNull();
  });

  it('accepts the third-party capture variant (no heartbeat/usage keys, extra ids)', () => {
    const ev = parseOk(fixture('result-third-party-capture'));
    if (ev.event !== 'result-generated') throw new Error('not a result');
    expect(ev.usage).toBeNull();
    expect(ev.sentence.sentence_id).toBe(1);
    expect(ev.sentence.sentence_begin).toBe(true);
    expect(ev.sentence.channel_id).toBe(0);
    expect(sentenceToAsrEvent(ev.sentence)).toEqual({ type: 'interim', startMs: 1940, text: '' });
  });

  it('treats sentence_end true with end_time null as final, ending at the last word', () => {
    const s = sentenceOf('result-final-end-time-null');
    expect(isFinalSentence(s)).toBe(true);
    const e = sentenceToAsrEvent(s);
    expect(e).toMatchObject({ type: 'final', startMs: 120, endMs: 2310, emotion: { raw: 'positive', confidence: 0.71 } });
  });

  it('treats end_time set with sentence_end missing as final (Python SDK rule)', () => {
    const text = JSON.stringify({
      header: { task_id: TASK, event: 'result-generated' },
      payload: { output: { sentence: { begin_time: 0, end_time: 500, text: 'x' } } },
    });
    const ev = parseOk(text);
    if (ev.event !== 'result-generated') throw new Error('not a result');
    expect(sentenceToAsrEvent(ev.sentence)).toEqual({ type: 'final', startMs: 0, endMs: 500, text: 'x', words: [], emotion: null });
  });

  it('rejects bad JSON, bad envelopes, unknown events and bad results', () => {
    expect(parseServerMessage('{nope')).toMatchObject({ ok: false, reason: 'not-json' });
    expect(parseServerMessage('[]')).toMatchObject({ ok: false, reason: 'bad-envelope' });
    expect(parseServerMessage(JSON.stringify({ header: { event: 'task-started' }, payload: {} }))).toMatchObject({
      ok: false,
      reason: 'bad-envelope',
    });
    expect(parseServerMessage(JSON.stringify({ header: { task_id: TASK, event: 'task-paused' }, payload: {} }))).toEqual({
      ok: false,
      reason: 'unknown-event',
      eventName: 'task-paused',
      taskId: TASK,
      paths: [],
    });
    const noSentence = parseServerMessage(
      JSON.stringify({ header: { task_id: TASK, event: 'result-generated' }, payload: { output: {} } }),
    );
    expect(noSentence).toMatchObject({ ok: false, reason: 'bad-payload', eventName: 'result-generated' });
    const badWord = parseServerMessage(
      JSON.stringify({
        header: { task_id: TASK, event: 'result-generated' },
        payload: { output: { sentence: { begin_time: 0, end_time: null, text: 'a', words: [{ begin_time: 'x' }] } } },
      }),
    );
    expect(badWord).toMatchObject({ ok: false, reason: 'bad-payload' });
    const noText = parseServerMessage(
      JSON.stringify({
        header: { task_id: TASK, event: 'result-generated' },
        payload: { output: { sentence: { begin_time: 0, end_time: null } } },
      }),
    );
    expect(noText).toMatchObject({ ok: false, reason: 'bad-payload', paths: ['output.sentence.text'] });
  });

  it('never puts payload content into a failure', () => {
    const r = parseServerMessage(
      JSON.stringify({
        header: { task_id: TASK, event: 'result-generated' },
        payload: { output: { sentence: { begin_time: 'secret text', text: 'secret text' } } },
      }),
    );
    expect(JSON.stringify(r)).not.toContain('secret');
  });
});

describe('client commands', () => {
  it('newTaskId is 32 lower-case hex digits, UUID v4', () => {
    const id = newTaskId();
    expect(id).toMatch(/^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    expect(newTaskId()).not.toBe(id);
  });

  it('builds run-task like spec A4.1 (heartbeat on, semantic punctuation off)', () => {
    const msg = buildRunTask({
      taskId: TASK,
      model: 'paraformer-realtime-8k-v2',
      sampleRateHz: 8000,
      vocabularyId: 'vocab-1',
      disfluencyRemoval: false,
      maxSentenceSilenceMs: 800,
    });
    expect(msg).toEqual({
      header: { action: 'run-task', task_id: TASK, streaming: 'duplex' },
      payload: {
        task_group: 'audio',
        task: 'asr',
        function: 'recognition',
        model: 'paraformer-realtime-8k-v2',
        input: {},
        parameters: {
          format: 'pcm',
          sample_rate: 8000,
          vocabulary_id: 'vocab-1',
          disfluency_removal_enabled: false,
          max_sentence_silence: 800,
          semantic_punctuation_enabled: false,
          punctuation_prediction_enabled: true,
          inverse_text_normalization_enabled: true,
          heartbeat: true,
        },
      },
    });
  });

  it('leaves vocabulary_id and language_hints out when unset', () => {
    const msg = buildRunTask({ taskId: TASK, model: 'm', sampleRateHz: 8000, disfluencyRemoval: true, maxSentenceSilenceMs: 1300 });
    expect(Object.keys(msg.payload.parameters)).not.toContain('vocabulary_id');
    expect(Object.keys(msg.payload.parameters)).not.toContain('language_hints');
    expect(msg.payload.parameters.disfluency_removal_enabled).toBe(true);
  });

  it('builds finish-task with the same task id', () => {
    expect(buildFinishTask(TASK)).toEqual({
      header: { action: 'finish-task', task_id: TASK, streaming: 'duplex' },
      payload: { input: {} },
    });
  });
});

describe('error mapping', () => {
  it.each([
    ['Throttling.RateQuota', '', 'ERR_ASR_THROTTLED', true],
    ['Throttling.BurstRate', 'Request rate increased too quickly', 'ERR_ASR_THROTTLED', true],
    ['UNKNOWN', 'Requests rate limit exceeded, please try again later.', 'ERR_ASR_THROTTLED', true],
    ['InvalidParameter', 'bad sample_rate', 'ERR_ASR_BAD_REQUEST', false],
    ['UNSUPPORTED_FORMAT', '', 'ERR_ASR_BAD_REQUEST', false],
    ['ModelNotFound', 'Model not found', 'ERR_ASR_BAD_REQUEST', false],
    ['InvalidApiKey', 'Invalid API-key provided.', 'ERR_ASR_AUTH', false],
    ['Arrearage', 'Access denied', 'ERR_ASR_QUOTA', false],
    ['CLIENT_ERROR', 'request timeout after 23 seconds.', 'ERR_ASR_TASK_FAILED', true],
    ['RequestTimeOut', 'Response timeout!', 'ERR_ASR_TASK_FAILED', true],
    ['NO_VALID_AUDIO_ERROR', '', 'ERR_ASR_TASK_FAILED', true],
    ['SomethingNew', '', 'ERR_ASR_TASK_FAILED', true],
  ])('%s / %s → %s', (code, message, expected, retryable) => {
    const c = classifyTaskFailure(code, message);
    expect(c.code).toBe(expected);
    expect(c.retryable).toBe(retryable);
  });

  it('keeps the provider code and message in details', () => {
    const e = taskFailedError('CLIENT_ERROR', 'request timeout after 23 seconds.', TASK);
    expect(e.details).toEqual({ providerCode: 'CLIENT_ERROR', providerMessage: 'request timeout after 23 seconds.', taskId: TASK });
  });

  it.each([
    [401, 'ERR_ASR_AUTH', false],
    [403, 'ERR_ASR_AUTH', false],
    [429, 'ERR_ASR_THROTTLED', true],
    [404, 'ERR_ASR_BAD_REQUEST', false],
    [408, 'ERR_ASR_CONNECT', true],
    [500, 'ERR_ASR_CONNECT', true],
    [503, 'ERR_ASR_CONNECT', true],
  ])('handshake %i → %s', (status, code, retryable) => {
    const e = handshakeError(status);
    expect(e.code).toBe(code);
    expect(e.retryable).toBe(retryable);
    expect(e.details).toEqual({ httpStatus: status });
  });
});

describe('result-generated fast guard ≡ zod schemas', () => {
  const KNOWN = ['begin_time', 'end_time', 'text', 'words', 'heartbeat', 'sentence_end', 'emo_tag', 'emo_confidence', 'sentence_id', 'sentence_begin', 'channel_id', 'speaker_id', 'stash'];
  const pick = (r: ReturnType<typeof parseServerMessage>) => {
    if (!r.ok) return { ok: false };
    if (r.event.event !== 'result-generated') return { ok: true, event: r.event.event };
    const s = r.event.sentence as Record<string, unknown>;
    const words = Array.isArray(s['words'])
      ? (s['words'] as Array<Record<string, unknown>>).map((w) => [w['begin_time'], w['end_time'], w['text'], w['punctuation'] ?? null])
      : s['words'] ?? null;
    return {
      ok: true,
      taskId: r.event.taskId,
      sentence: Object.fromEntries(KNOWN.filter((k) => k !== 'words').map((k) => [k, s[k] ?? null])),
      words,
      usage: r.event.usage?.duration ?? null,
    };
  };
  const base = {
    header: { task_id: 'T1', event: 'result-generated', attributes: {} },
    payload: {
      output: {
        sentence: {
          begin_time: 170, end_time: 920, text: '好，我知道了。', heartbeat: false, sentence_end: true,
          emo_tag: 'neutral', emo_confidence: 0.9, sentence_id: 1,
          words: [{ begin_time: 170, end_time: 295, text: '好', punctuation: '，' }],
        },
      },
      usage: { duration: 3 },
    },
  };
  // free-form mutations of a test message: any is the honest type here
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  type Loose = any;
  const variants: Array<[string, (m: Loose) => void]> = [
    ['as is', () => undefined],
    ['interim', (m) => { m.payload.output.sentence.end_time = null; m.payload.usage = null; }],
    ['heartbeat without text', (m) => { m.payload.output.sentence = { heartbeat: true, sentence_id: 0 }; }],
    ['no begin_time', (m) => { delete m.payload.output.sentence.begin_time; }],
    ['text a number', (m) => { m.payload.output.sentence.text = 5; }],
    ['word without end', (m) => { delete m.payload.output.sentence.words[0].end_time; }],
    ['words not an array', (m) => { m.payload.output.sentence.words = {}; }],
    ['fractional sentence_id', (m) => { m.payload.output.sentence.sentence_id = 1.5; }],
    ['string speaker', (m) => { m.payload.output.sentence.speaker_id = 'spk1'; }],
    ['bad speaker', (m) => { m.payload.output.sentence.speaker_id = true; }],
    ['stash array', (m) => { m.payload.output.sentence.stash = []; }],
    ['usage duration string', (m) => { m.payload.usage = { duration: '3' }; }],
    ['no output', (m) => { delete m.payload.output; }],
    ['empty task id', (m) => { m.header.task_id = ''; }],
    ['error_code number', (m) => { m.header.error_code = 5; }],
    ['extra keys', (m) => { m.payload.output.sentence.vad_pre_end = true; m.extra = 1; }],
  ];
  it.each(variants)('%s', (_, mutate) => {
    const m = structuredClone(base) as Loose;
    mutate(m);
    const text = JSON.stringify(m);
    expect(pick(parseServerMessage(text))).toEqual(pick(parseWithSchemas(JSON.parse(text))));
  });
});
