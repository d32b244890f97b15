import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  buildAppend,
  buildCommit,
  buildSessionFinish,
  buildSessionUpdate,
  capCorpus,
  classifyServerError,
  closedBeforeStartError,
  createEventIds,
  handshakeError,
  isQwenModel,
  itemFailedError,
  MAX_CORPUS_CHARS,
  parseServerMessage,
  parseWithSchemas,
  QwenItemTracker,
  serverError,
  type QwenServerEvent,
  type ServerErrorBody,
} from './messages.js';

function fixture(name: string): string {
  return readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), 'utf8');
}

function parseOk(text: string): QwenServerEvent {
  const r = parseServerMessage(text);
  if (!r.ok) throw new Error(`expected ok, got ${r.reason} ${r.paths.join(',')}`);
  return r.event;
}

describe('parseServerMessage (spec B4 examples)', () => {
  it('session.created / session.updated / session.finished', () => {
    expect(parseOk(fixture('session-created'))).toEqual({ type: 'session.created', sessionId: 'sess_001' });
    expect(parseOk(fixture('session-updated'))).toEqual({ type: 'session.updated', sessionId: 'sess_001' });
    expect(parseOk(fixture('session-finished'))).toEqual({ type: 'session.finished' });
    // session.updated without a session object is still accepted
    expect(parseOk('{"type":"session.updated"}')).toEqual({ type: 'session.updated', sessionId: null });
  });

  it('VAD events', () => {
    expect(parseOk(fixture('speech-started'))).toEqual({
      type: 'input_audio_buffer.speech_started',
      itemId: 'item_B1lV7jWLscp4mMV8hSs8c',
      audioStartMs: 64,
    });
    expect(parseOk(fixture('speech-stopped'))).toEqual({
      type: 'input_audio_buffer.speech_stopped',
      itemId: 'item_B3GGE8ry4yqbqJGzrVhEM',
      audioEndMs: 28128,
    });
    expect(parseOk(fixture('committed'))).toEqual({ type: 'input_audio_buffer.committed', itemId: 'msg_002' });
    expect(parseOk(fixture('item-created'))).toEqual({ type: 'conversation.item.created', itemId: 'item_B3GGEPlolCqdMiVbYIf5L' });
    // previous_item_id null for the first item (OpenAI convention)
    expect(parseOk('{"type":"input_audio_buffer.committed","previous_item_id":null,"item_id":"item_A"}')).toMatchObject({ itemId: 'item_A' });
  });

  it('transcription text (text + stash), completed and failed', () => {
    expect(parseOk(fixture('transcription-text'))).toEqual({
      type: 'conversation.item.input_audio_transcription.text',
      itemId: 'item_MpJQPNQzqVRc9aC9zMwSj',
      text: '今天',
      stash: '天气不错',
      language: 'zh',
      emotion: 'neutral',
    });
    expect(parseOk(fixture('transcription-completed'))).toEqual({
      type: 'conversation.item.input_audio_transcription.completed',
      itemId: 'item_B3GGC53jGOuIFcjZkmEQ9',
      transcript: '今天天气怎么样',
      language: 'zh',
      emotion: 'neutral',
    });
    expect(parseOk(fixture('transcription-failed'))).toEqual({
      type: 'conversation.item.input_audio_transcription.failed',
      itemId: 'item_B4KHRmVbcQwp9yZk2UeN3',
      error: { type: null, code: 'audio_unintelligible', message: 'The audio could not be transcribed.', param: null },
    });
  });

  it('error', () => {
    expect(parseOk(fixture('error-invalid-value'))).toEqual({
      type: 'error',
      error: {
        type: 'invalid_request_error',
        code: 'invalid_value',
        message: "Invalid value: 'pcm16'. Supported values are: 'pcm', 'opus'.",
        param: 'session.input_audio_format',
      },
      clientEventId: 'event_123',
    });
    // a numeric code is kept as a string
    expect(parseOk('{"type":"error","error":{"code":429,"message":"x"}}')).toMatchObject({ error: { code: '429' } });
  });

  it('is lenient where the spec is unconfirmed', () => {
    // no item_id / event_id / stash / language / emotion
    expect(parseOk('{"type":"conversation.item.input_audio_transcription.text","text":"好"}')).toEqual({
      type: 'conversation.item.input_audio_transcription.text',
      itemId: null,
      text: '好',
      stash: '',
      language: null,
      emotion: null,
    });
    // a null transcript is an empty one; an extra usage key is ignored
    expect(parseOk('{"type":"conversation.item.input_audio_transcription.completed","item_id":"i","transcript":null,"usage":{"x":1}}')).toMatchObject({
      transcript: '',
      emotion: null,
    });
    // failed without an error object
    expect(parseOk('{"type":"conversation.item.input_audio_transcription.failed","item_id":"i"}')).toMatchObject({
      error: { type: null, code: null, message: '', param: null },
    });
  });

  it('rejects bad JSON, bad envelopes, bad payloads; reports unknown events by type', () => {
    expect(parseServerMessage('{nope')).toMatchObject({ ok: false, reason: 'not-json' });
    expect(parseServerMessage('[]')).toMatchObject({ ok: false, reason: 'bad-envelope' });
    expect(parseServerMessage('{"event_id":"e"}')).toMatchObject({ ok: false, reason: 'bad-envelope', paths: ['type'] });
    expect(parseServerMessage('{"type":"response.done","response":{}}')).toEqual({
      ok: false,
      reason: 'unknown-event',
      eventType: 'response.done',
      paths: [],
    });
    expect(parseServerMessage(JSON.stringify({ type: 'x'.repeat(500) }))).toMatchObject({ eventType: 'x'.repeat(64) });
    expect(parseServerMessage('{"type":"session.created","session":{}}')).toMatchObject({
      ok: false,
      reason: 'bad-payload',
      eventType: 'session.created',
      paths: ['session.id'],
    });
    expect(parseServerMessage('{"type":"input_audio_buffer.speech_started","audio_start_ms":"64"}')).toMatchObject({
      reason: 'bad-payload',
      paths: ['audio_start_ms'],
    });
    expect(parseServerMessage('{"type":"input_audio_buffer.speech_stopped","item_id":"i"}')).toMatchObject({ reason: 'bad-payload' });
    expect(parseServerMessage('{"type":"conversation.item.input_audio_transcription.text","item_id":"i","stash":"x"}')).toMatchObject({
      reason: 'bad-payload',
      paths: ['text'],
    });
    expect(parseServerMessage('{"type":"conversation.item.input_audio_transcription.completed","item_id":"i"}')).toMatchObject({
      reason: 'bad-payload',
      paths: ['transcript'],
    });
    expect(parseServerMessage('{"type":"error"}')).toMatchObject({ reason: 'bad-payload', paths: ['error'] });
  });

  it('never puts payload content into a failure', () => {
    const r = parseServerMessage(
      JSON.stringify({ type: 'conversation.item.input_audio_transcription.text', item_id: 'i', text: 5, stash: 'secret text' }),
    );
    expect(r.ok).toBe(false);
    expect(JSON.stringify(r)).not.toContain('secret');
  });
});

describe('…transcription.text fast guard ≡ zod schemas', () => {
  const base = {
    event_id: 'event_R7Pfu8QVBfP5HmpcbEFSd',
    type: 'conversation.item.input_audio_transcription.text',
    item_id: 'item_MpJQPNQzqVRc9aC9zMwSj',
    content_index: 0,
    language: 'zh',
    emotion: 'neutral',
    text: '今天',
    stash: '天气不错',
  };
  // free-form mutations of a test message: any is the honest type here
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  type Loose = any;
  const variants: Array<[string, (m: Loose) => void]> = [
    ['as is', () => undefined],
    ['all optional fields missing', (m) => { for (const k of ['event_id', 'item_id', 'content_index', 'language', 'emotion', 'stash']) delete m[k]; }],
    ['all optional fields null', (m) => { for (const k of ['event_id', 'item_id', 'content_index', 'language', 'emotion', 'stash']) m[k] = null; }],
    ['empty text', (m) => { m.text = ''; }],
    ['no text', (m) => { delete m.text; }],
    ['text null', (m) => { m.text = null; }],
    ['text number', (m) => { m.text = 5; }],
    ['stash number', (m) => { m.stash = 5; }],
    ['item_id number', (m) => { m.item_id = 5; }],
    ['event_id number', (m) => { m.event_id = 5; }],
    ['fractional content_index', (m) => { m.content_index = 0.5; }],
    ['unsafe content_index', (m) => { m.content_index = 2 ** 60; }],
    ['content_index string', (m) => { m.content_index = '0'; }],
    ['emotion object', (m) => { m.emotion = {}; }],
    ['language array', (m) => { m.language = ['zh']; }],
    ['extra keys', (m) => { m.extra = 1; m.logprobs = []; }],
  ];
  it.each(variants)('%s', (_, mutate) => {
    const m = structuredClone(base) as Loose;
    mutate(m);
    const text = JSON.stringify(m);
    expect(parseServerMessage(text)).toEqual(parseWithSchemas(JSON.parse(text)));
  });
});

describe('client events', () => {
  it('event ids: event_ + per-connection hex prefix + counter, unique', () => {
    const next = createEventIds();
    const a = next();
    const b = next();
    expect(a).toMatch(/^event_[0-9a-f]{20}$/);
    expect(b).toMatch(/^event_[0-9a-f]{20}$/);
    expect(a.slice(0, 18)).toBe(b.slice(0, 18));
    expect(a).not.toBe(b);
    expect(createEventIds()().slice(0, 18)).not.toBe(a.slice(0, 18));
  });

  it('session.update like spec B3.1 (8000 Hz, language, corpus, server VAD)', () => {
    expect(
      buildSessionUpdate('event_1', { sampleRateHz: 8000, language: 'zh', corpusText: '退款 订单号', vadThreshold: 0, silenceDurationMs: 400 }),
    ).toEqual({
      event_id: 'event_1',
      type: 'session.update',
      session: {
        modalities: ['text'],
        input_audio_format: 'pcm',
        sample_rate: 8000,
        input_audio_transcription: { language: 'zh', corpus: { text: '退款 订单号' } },
        turn_detection: { type: 'server_vad', threshold: 0, silence_duration_ms: 400 },
      },
    });
  });

  it('manual mode: turn_detection null (spec B3.1); commit event (B3.3)', () => {
    const msg = buildSessionUpdate('e', { sampleRateHz: 8000, language: 'zh', turnDetection: 'manual', vadThreshold: 0, silenceDurationMs: 400 });
    expect(msg.session).toEqual({ modalities: ['text'], input_audio_format: 'pcm', sample_rate: 8000, input_audio_transcription: { language: 'zh' }, turn_detection: null });
    expect(JSON.stringify(msg)).toContain('"turn_detection":null');
    const vad = buildSessionUpdate('e', { sampleRateHz: 8000, turnDetection: 'server_vad', vadThreshold: 0, silenceDurationMs: 400 });
    expect(vad.session.turn_detection).toEqual({ type: 'server_vad', threshold: 0, silence_duration_ms: 400 });
    expect(JSON.parse(buildCommit('event_7'))).toEqual({ event_id: 'event_7', type: 'input_audio_buffer.commit' });
  });

  it('leaves input_audio_transcription out when neither language nor corpus is set', () => {
    const msg = buildSessionUpdate('e', { sampleRateHz: 8000, vadThreshold: 0.2, silenceDurationMs: 800 });
    expect(msg.session).not.toHaveProperty('input_audio_transcription');
    const blank = buildSessionUpdate('e', { sampleRateHz: 8000, language: ' ', corpusText: '  ', vadThreshold: 0.2, silenceDurationMs: 800 });
    expect(blank.session).not.toHaveProperty('input_audio_transcription');
    const langOnly = buildSessionUpdate('e', { sampleRateHz: 16000, language: 'en', vadThreshold: 0.2, silenceDurationMs: 800 });
    expect(langOnly.session.input_audio_transcription).toEqual({ language: 'en' });
  });

  it('caps the corpus at MAX_CORPUS_CHARS code points without splitting a surrogate pair', () => {
    expect(capCorpus('abc')).toBe('abc');
    const long = '😀'.repeat(MAX_CORPUS_CHARS + 5);
    const capped = capCorpus(long);
    expect(Array.from(capped)).toHaveLength(MAX_CORPUS_CHARS);
    expect(capped.endsWith('😀')).toBe(true);
  });

  it('append is valid JSON whose audio base64-decodes to the PCM', () => {
    const pcm = Buffer.from([0, 1, 2, 250, 255, 128, 7]);
    const json: unknown = JSON.parse(buildAppend('event_abc', pcm));
    expect(json).toEqual({ event_id: 'event_abc', type: 'input_audio_buffer.append', audio: pcm.toString('base64') });
    expect(Buffer.from(pcm.toString('base64'), 'base64').equals(pcm)).toBe(true);
  });

  it('session.finish', () => {
    expect(buildSessionFinish('event_9')).toEqual({ event_id: 'event_9', type: 'session.finish' });
  });

  it('knows the model names', () => {
    expect(isQwenModel('qwen3-asr-flash-realtime')).toBe(true);
    expect(isQwenModel('qwen3-asr-flash-realtime-2025-10-27')).toBe(true);
    expect(isQwenModel('qwen3-asr-flash-realtime-2026-02-10')).toBe(true);
    expect(isQwenModel('qwen3-asr-flash')).toBe(false);
  });
});

describe('QwenItemTracker', () => {
  it('VAD order (docs): start/stop times frame the final; interim = text + stash', () => {
    const t = new QwenItemTracker();
    t.speechStarted('item_A', 320);
    t.speechStopped('item_A', 2480);
    expect(t.interim('item_A', '今天', '天气不错')).toEqual({ type: 'interim', startMs: 320, text: '今天天气不错' });
    expect(t.completed('item_A', '今天天气不错。', 'happy', 3000)).toEqual({
      type: 'final',
      startMs: 320,
      endMs: 2480,
      text: '今天天气不错。',
      words: [],
      emotion: { raw: 'happy', confidence: null },
    });
    expect(t.size).toBe(0);
  });

  it('text before speech_stopped (third-party order) is accepted', () => {
    const t = new QwenItemTracker();
    t.speechStarted('item_B', 1000);
    expect(t.interim('item_B', '', '你')).toEqual({ type: 'interim', startMs: 1000, text: '你' });
    expect(t.interim('item_B', '你好', '')).toEqual({ type: 'interim', startMs: 1000, text: '你好' });
    t.speechStopped('item_B', 1800);
    expect(t.completed('item_B', '你好。', 'neutral', 2500)).toMatchObject({ startMs: 1000, endMs: 1800 });
  });

  it('without speech_stopped the end is the audio sent so far', () => {
    const t = new QwenItemTracker();
    t.speechStarted('item_C', 500);
    expect(t.completed('item_C', '喂', null, 1234)).toEqual({ type: 'final', startMs: 500, endMs: 1234, text: '喂', words: [], emotion: null });
  });

  it('without speech_started the start is the previous final end; empty transcripts are finals', () => {
    const t = new QwenItemTracker();
    expect(t.completed('item_1', '', '', 700)).toMatchObject({ type: 'final', startMs: 0, endMs: 700, text: '', emotion: null });
    t.speechStopped('item_2', 1500);
    expect(t.interim('item_2', 'a', 'b')).toEqual({ type: 'interim', startMs: 700, text: 'ab' });
    expect(t.completed('item_2', 'ab', 'sad', 2000)).toMatchObject({ startMs: 700, endMs: 1500 });
  });

  it('events without item_id belong to the latest speech_started', () => {
    const t = new QwenItemTracker();
    t.speechStarted(null, 100);
    t.speechStopped(null, 900);
    expect(t.interim(null, 'x', '')).toMatchObject({ startMs: 100 });
    expect(t.completed(null, 'x', null, 1000)).toMatchObject({ startMs: 100, endMs: 900 });
    t.speechStarted('item_Z', 1200);
    expect(t.interim(null, 'y', '')).toMatchObject({ startMs: 1200 });
  });

  it('keeps overlapping items apart', () => {
    const t = new QwenItemTracker();
    t.speechStarted('a', 0);
    t.speechStopped('a', 1000);
    t.speechStarted('b', 1500);
    t.speechStopped('b', 2500);
    expect(t.completed('a', 'A', null, 3000)).toMatchObject({ startMs: 0, endMs: 1000 });
    expect(t.completed('b', 'B', null, 3000)).toMatchObject({ startMs: 1500, endMs: 2500 });
  });

  it('start never exceeds end; negative server times clamp to 0', () => {
    const t = new QwenItemTracker();
    t.speechStarted('a', 900);
    t.speechStopped('a', 400);
    expect(t.completed('a', 'x', null, 1000)).toMatchObject({ startMs: 400, endMs: 400 });
    t.speechStarted('b', -5);
    expect(t.completed('b', 'x', null, 1000)).toMatchObject({ startMs: 0 });
  });

  it('is bounded: the oldest uncompleted item is evicted and counted', () => {
    const t = new QwenItemTracker(3);
    for (let i = 0; i < 5; i++) t.speechStarted(`i${i}`, i * 100);
    expect(t.size).toBe(3);
    expect(t.evicted).toBe(2);
    // i1 (start 100) was evicted: its completed falls back to the previous final end (0)
    expect(t.completed('i1', 'x', null, 5000)).toMatchObject({ startMs: 0, endMs: 5000 });
    expect(t.completed('i2', 'x', null, 5000)).toMatchObject({ startMs: 200 });
    expect(t.completed('i4', 'y', null, 6000)).toMatchObject({ startMs: 400, endMs: 6000 });
  });

  it('a failed item is forgotten', () => {
    const t = new QwenItemTracker();
    t.speechStarted('a', 100);
    t.failed('a');
    expect(t.size).toBe(0);
  });
});

describe('error mapping', () => {
  const body = (type: string | null, code: string | null, message = ''): ServerErrorBody => ({ type, code, message, param: null });

  it.each([
    [body('invalid_request_error', 'invalid_value'), 'ERR_ASR_BAD_REQUEST', false],
    [body(null, 'invalid_value'), 'ERR_ASR_BAD_REQUEST', false],
    [body('invalid_request_error', null, 'anything'), 'ERR_ASR_BAD_REQUEST', false],
    [body(null, 'InvalidParameter'), 'ERR_ASR_BAD_REQUEST', false],
    [body(null, 'Throttling.RateQuota'), 'ERR_ASR_THROTTLED', true],
    [body('invalid_request_error', 'Throttling'), 'ERR_ASR_THROTTLED', true],
    [body(null, 'rate_limit_exceeded'), 'ERR_ASR_THROTTLED', true],
    [body('server_error', null, 'Requests rate limit exceeded, please try again later.'), 'ERR_ASR_THROTTLED', true],
    [body(null, 'InvalidApiKey'), 'ERR_ASR_AUTH', false],
    [body('authentication_error', null), 'ERR_ASR_AUTH', false],
    [body(null, 'Arrearage'), 'ERR_ASR_QUOTA', false],
    [body('server_error', 'internal_error'), 'ERR_ASR_TASK_FAILED', true],
    [body(null, null), 'ERR_ASR_TASK_FAILED', true],
  ])('%o → %s', (e, code, retryable) => {
    const c = classifyServerError(e);
    expect(c.code).toBe(code);
    expect(c.retryable).toBe(retryable);
  });

  it('keeps the provider type, code, message and param in details', () => {
    const e = serverError({ type: 'invalid_request_error', code: 'invalid_value', message: 'bad', param: 'session.sample_rate' }, 'sess_1');
    expect(e).toMatchObject({ code: 'ERR_ASR_BAD_REQUEST', category: 'invalid_request', retryable: false });
    expect(e.details).toEqual({
      providerType: 'invalid_request_error',
      providerCode: 'invalid_value',
      providerMessage: 'bad',
      providerParam: 'session.sample_rate',
      taskId: 'sess_1',
    });
  });

  it('transcription.failed is always a retryable ERR_ASR_ITEM_FAILED', () => {
    const e = itemFailedError(body('invalid_request_error', 'audio_unintelligible'), 'item_1', 'sess_1');
    expect(e).toMatchObject({ code: 'ERR_ASR_ITEM_FAILED', retryable: true, details: { itemId: 'item_1', providerCode: 'audio_unintelligible' } });
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

  it.each([
    [1007, 'Model not found', 'ERR_ASR_UNSUPPORTED_MODEL', false],
    [1007, 'Invalid payload data', 'ERR_ASR_BAD_REQUEST', false],
    [1011, 'internal', 'ERR_ASR_CONNECT', true],
    [1006, '', 'ERR_ASR_CONNECT', true],
  ])('close %i %s before start → %s', (code, reason, expected, retryable) => {
    const e = closedBeforeStartError(code, reason);
    expect(e.code).toBe(expected);
    expect(e.retryable).toBe(retryable);
    expect(e.details).toEqual({ closeCode: code, closeReason: reason });
  });
});
