import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../observability/logger.js';
import { DEFAULT_KNOBS, FaultState, applyKnobs, createEmulatorStats, type EmulatorKnobs } from './knobs.js';
import {
  ParaformerConnection,
  RunTaskRateLimiter,
  parseClientMessage,
  validateRunTask,
  type ConnectionAction,
  type ParaformerDeps,
  type ServerEvent,
  type WireSentence,
} from './paraformer-task.js';
import { loadCallScript, type CallScript, type ScriptLine } from './script.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZH_CALL = path.resolve(HERE, '../../../shared/fixtures/calls/zh-billing-complaint');

let script: CallScript;
let customer: Buffer;
let agent: Buffer;
beforeAll(async () => {
  script = await loadCallScript(ZH_CALL);
  customer = script.tracks.find((t) => t.role === 'customer')!.pcm;
  agent = script.tracks.find((t) => t.role === 'agent')!.pcm;
});

function deps(patch: Partial<EmulatorKnobs> = {}, withScript = true): ParaformerDeps {
  const knobs = applyKnobs(DEFAULT_KNOBS, patch);
  return {
    knobs,
    stats: createEmulatorStats(),
    faults: new FaultState(knobs),
    limiter: new RunTaskRateLimiter(() => knobs.rps),
    script: withScript ? script : null,
    logger: silentLogger,
  };
}

function connect(d: ParaformerDeps, now = 0): ParaformerConnection {
  return new ParaformerConnection(d, { apiKey: 'key', connectionId: 1 }, now);
}

const runTask = (taskId: string, params: Record<string, unknown> = {}, model = 'paraformer-realtime-8k-v2'): string =>
  JSON.stringify({
    header: { action: 'run-task', task_id: taskId, streaming: 'duplex' },
    payload: {
      task_group: 'audio',
      task: 'asr',
      function: 'recognition',
      model,
      parameters: { format: 'pcm', sample_rate: 8000, ...params },
      input: {},
    },
  });
const finishTask = (taskId: string): string =>
  JSON.stringify({ header: { action: 'finish-task', task_id: taskId, streaming: 'duplex' }, payload: { input: {} } });

const events = (actions: readonly ConnectionAction[]): ServerEvent[] =>
  actions.flatMap((a) => (a.type === 'send' ? [a.event] : []));
const names = (actions: readonly ConnectionAction[]): string[] =>
  actions.map((a) => (a.type === 'send' ? a.event.header.event : a.type === 'close' ? `close:${a.code}` : 'drop'));
const sentence = (e: ServerEvent): WireSentence => (e.payload['output'] as { sentence: WireSentence }).sentence;
const finals = (actions: readonly ConnectionAction[]) =>
  events(actions).filter((e) => e.header.event === 'result-generated' && sentence(e).sentence_end);

/** Feeds `pcm` in frames; stops after a drop or close. */
function play(conn: ParaformerConnection, pcm: Buffer, frameBytes = 1600, now = 0): ConnectionAction[] {
  const out: ConnectionAction[] = [];
  for (let i = 0; i < pcm.length; i += frameBytes) {
    const a = conn.handleAudio(pcm.subarray(i, i + frameBytes), now);
    out.push(...a);
    if (a.some((x) => x.type !== 'send')) break;
  }
  return out;
}

/** run-task, all of `pcm`, finish-task: every action. */
function transcribe(pcm: Buffer, params: Record<string, unknown> = {}, model?: string, d = deps()): ConnectionAction[] {
  const conn = connect(d);
  const out = [...conn.handleText(runTask('t1', params, model), 0)];
  out.push(...play(conn, pcm));
  out.push(...conn.handleText(finishTask('t1'), 0));
  return out;
}

function expectLines(actions: readonly ConnectionAction[], lines: readonly ScriptLine[], offsetMs = 0): void {
  const got = finals(actions).map(sentence);
  expect(got.map((s) => s.text)).toEqual(lines.map((l) => l.text));
  got.forEach((s, i) => {
    const l = lines[i]!;
    expect(Math.abs(s.begin_time + offsetMs - l.startMs), `line ${l.index} begin`).toBeLessThanOrEqual(300);
    expect(Math.abs(s.end_time! + offsetMs - l.endMs), `line ${l.index} end`).toBeLessThanOrEqual(300);
    expect(s.emo_tag).toBe(l.emotion.tag);
    expect(s.emo_confidence).toBe(l.emotion.confidence);
  });
}

describe('parseClientMessage', () => {
  it.each([
    ['not json', 'message is not JSON'],
    ['[1]', 'message is not a JSON object'],
    ['{"payload":{"input":{}}}', 'header is missing'],
    ['{"header":{"action":"run-task","streaming":"duplex"},"payload":{"input":{}}}', 'header.task_id is missing'],
    ['{"header":{"task_id":"t","streaming":"duplex"},"payload":{"input":{}}}', 'header.action is missing'],
    ['{"header":{"action":"run-task","task_id":"t","streaming":"simplex"},"payload":{"input":{}}}', 'header.streaming must be "duplex"'],
    ['{"header":{"action":"run-task","task_id":"t","streaming":"duplex"}}', 'payload is missing'],
    ['{"header":{"action":"run-task","task_id":"t","streaming":"duplex"},"payload":{}}', 'payload.input must be an object'],
    ['{"header":{"action":"run-task","task_id":"t","streaming":"duplex"},"payload":{"input":[]}}', 'payload.input must be an object'],
  ])('rejects %s', (text, problem) => {
    const r = parseClientMessage(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toBe(problem);
  });

  it('accepts a well-formed command', () => {
    expect(parseClientMessage(finishTask('abc'))).toEqual({
      ok: true,
      command: { action: 'finish-task', taskId: 'abc', payload: { input: {} } },
    });
  });
});

describe('validateRunTask', () => {
  const payload = (p: Record<string, unknown> = {}, over: Record<string, unknown> = {}) => ({
    task_group: 'audio',
    task: 'asr',
    function: 'recognition',
    model: 'paraformer-realtime-8k-v2',
    parameters: { format: 'pcm', sample_rate: 8000, ...p },
    input: {},
    ...over,
  });

  it('accepts the spec example and ignores unknown parameters', () => {
    const v = validateRunTask(payload({ pre_task_id: 'x', stream: true, heartbeat: true, max_sentence_silence: 1300 }));
    expect(v).toEqual({
      ok: true,
      params: {
        model: 'paraformer-realtime-8k-v2',
        sampleRateHz: 8000,
        format: 'pcm',
        maxSentenceSilenceMs: 1300,
        heartbeat: true,
        semanticPunctuation: false,
        emotion: true,
      },
    });
    expect(validateRunTask(payload({ semantic_punctuation_enabled: true }))).toMatchObject({ params: { emotion: false } });
  });

  it.each([
    [{}, { task_group: 'video' }, 'InvalidParameter'],
    [{}, { function: 'x' }, 'InvalidParameter'],
    [{}, { model: undefined }, 'InvalidParameter'],
    [{}, { model: 'paraformer-nope' }, 'ModelNotFound'],
    [{}, { parameters: undefined }, 'InvalidParameter'],
    [{ format: 'flac' }, {}, 'InvalidParameter'],
    [{ format: 'opus' }, {}, 'UNSUPPORTED_FORMAT'],
    [{ sample_rate: 16000 }, {}, 'InvalidParameter'],
    [{ sample_rate: '8000' }, {}, 'InvalidParameter'],
    [{ max_sentence_silence: 100 }, {}, 'InvalidParameter'],
    [{ max_sentence_silence: 6001 }, {}, 'InvalidParameter'],
    [{ heartbeat: 'yes' }, {}, 'InvalidParameter'],
    [{ sample_rate: 8000 }, { model: 'paraformer-realtime-v1' }, 'InvalidParameter'],
  ])('rejects parameters %j / payload %j with %s', (p, over, code) => {
    expect(validateRunTask(payload(p, over))).toMatchObject({ ok: false, code });
  });

  it('knows the sample rates of each model', () => {
    expect(validateRunTask(payload({ sample_rate: 16000 }, { model: 'paraformer-realtime-v2' })).ok).toBe(true);
    expect(validateRunTask(payload({ sample_rate: 16000 }, { model: 'paraformer-realtime-v1' })).ok).toBe(true);
    expect(validateRunTask(payload({ sample_rate: 8000 }, { model: 'paraformer-realtime-8k-v1' })).ok).toBe(true);
  });
});

describe('ParaformerConnection: task lifecycle', () => {
  it('run-task → task-started → results → finish-task → task-finished, then a new task_id', () => {
    const d = deps();
    const conn = connect(d);
    const started = conn.handleText(runTask('t1'), 0);
    expect(started).toEqual([
      { type: 'send', delayMs: 0, event: { header: { task_id: 't1', event: 'task-started', attributes: {} }, payload: {} } },
    ]);
    expect(conn.state).toBe('running');
    const res = play(conn, customer.subarray(10_000 * 16, 16_500 * 16));
    const done = conn.handleText(finishTask('t1'), 0);
    expect(names(done)).toEqual(['task-finished']);
    expect(events(done)[0]).toEqual({
      header: { task_id: 't1', event: 'task-finished', attributes: {} },
      payload: { output: {}, usage: null },
    });
    expect(conn.state).toBe('idle');
    const all = [...res, ...done];
    for (const e of events(all)) {
      expect(e.header.task_id).toBe('t1');
      expect(e.header.attributes).toEqual({});
      expect(typeof e.payload).toBe('object');
    }
    // reuse with a new task_id
    expect(names(conn.handleText(runTask('t2'), 0))).toEqual(['task-started']);
    expect(names(conn.handleText(finishTask('t2'), 0))).toEqual(['task-finished']);
    // the same task_id again fails and closes
    const again = conn.handleText(runTask('t1'), 0);
    expect(names(again)).toEqual(['task-failed', 'close:1000']);
    expect(events(again)[0]!.header).toMatchObject({ task_id: 't1', error_code: 'InvalidParameter' });
    expect(conn.state).toBe('closed');
    expect(d.stats).toMatchObject({ tasksStarted: 2, tasksFinished: 2, tasksFailed: { InvalidParameter: 1 } });
  });

  it('emits begin, growing interims and one final per sentence', () => {
    const l = script.lines[1]!;
    const all = transcribe(customer.subarray(10_000 * 16, 16_500 * 16));
    const results = events(all).filter((e) => e.header.event === 'result-generated').map(sentence);
    const begin = results[0]!;
    expect(begin).toMatchObject({ text: '', sentence_begin: true, sentence_end: false, end_time: null, words: [] });
    const interims = results.slice(1, -1);
    expect(interims.length).toBeGreaterThan(10);
    let prev = '';
    for (const s of interims) {
      expect(s.sentence_end).toBe(false);
      expect(s.end_time).toBeNull();
      expect(s.emo_tag).toBeUndefined();
      expect(l.text.startsWith(s.text)).toBe(true);
      expect(s.text.length).toBeGreaterThanOrEqual(prev.length);
      expect(s.words.map((w) => w.text + w.punctuation).join('')).toBe(s.text);
      prev = s.text;
    }
    expect(interims.some((s) => s.text.length > 0 && s.text.length < l.text.length)).toBe(true);
    const fin = results.at(-1)!;
    expect(fin).toMatchObject({ text: l.text, sentence_end: true, heartbeat: false, emo_tag: 'neutral', emo_confidence: 0.66 });
    expect(fin.words).toHaveLength(18);
    expect(fin.words[0]!.begin_time).toBe(fin.begin_time);
    expect(fin.words.at(-1)!.end_time).toBe(fin.end_time);
    expect(fin.words[0]).toMatchObject({ text: '你', punctuation: '' });
    expect(fin.words[1]).toMatchObject({ text: '好', punctuation: '，' });
    const finalEvent = finals(all)[0]!;
    // audio heard when the final is decided: 5 560 + 800 ms of silence → 6.36 s, rounded up
    expect(finalEvent.payload['usage']).toEqual({ duration: 7 });
  });

  it('finds the 6 customer lines in the whole customer track', () => {
    const all = transcribe(customer);
    expectLines(all, script.linesOf('customer'));
    const durations = finals(all).map((e) => (e.payload['usage'] as { duration: number }).duration);
    expect(durations).toEqual([...durations].sort((a, b) => a - b));
    expect(durations.every((n) => Number.isInteger(n))).toBe(true);
  });

  it('finds the lines when the audio starts mid-call (offset 39 000 ms), in task time', () => {
    const all = transcribe(customer.subarray(39_000 * 16));
    expectLines(
      all,
      script.linesOf('customer').filter((l) => l.startMs > 39_000),
      39_000,
    );
  });

  it('answers audio resent from the middle of a line with the rest of that line', () => {
    const got = finals(transcribe(customer.subarray(41_000 * 16))).map(sentence);
    const l6 = script.lines[5]!;
    expect(got[0]!.begin_time).toBe(0);
    expect(got[0]!.text.length).toBeLessThan(l6.text.length);
    expect(l6.text.endsWith(got[0]!.text)).toBe(true);
    expect(got.slice(1).map((s) => s.text)).toEqual([6, 8, 10].map((i) => script.lines[i]!.text));
  });

  it('merges a line split by max_sentence_silence 200 back into one final', () => {
    expectLines(transcribe(agent, { max_sentence_silence: 200 }), script.linesOf('agent'));
    expectLines(transcribe(customer, { max_sentence_silence: 200 }), script.linesOf('customer'));
  });

  it('merges two lines when max_sentence_silence spans the gap between them (1300)', () => {
    const texts = finals(transcribe(customer, { max_sentence_silence: 1300 })).map((e) => sentence(e).text);
    expect(texts).toContain(script.lines[5]!.text + script.lines[6]!.text);
    expect(texts).toHaveLength(5);
  });

  it('forces finals on long sentences without repeating text', () => {
    const d = deps({ maxSentenceMs: 3000 });
    const got = finals(transcribe(agent.subarray(0, 10_500 * 16), {}, undefined, d)).map(sentence);
    expect(got.length).toBeGreaterThanOrEqual(3);
    expect(got.map((s) => s.text).join('')).toBe(script.lines[0]!.text);
    for (const s of got) expect(s.end_time! - s.begin_time).toBeLessThanOrEqual(3000);
  });

  it('adds no emotion for other models or with semantic punctuation', () => {
    const pcm = customer.subarray(10_000 * 16, 16_500 * 16);
    expect(sentence(finals(transcribe(pcm, {}, 'paraformer-realtime-v2'))[0]!).emo_tag).toBeUndefined();
    expect(sentence(finals(transcribe(pcm, { semantic_punctuation_enabled: true }))[0]!).emo_tag).toBeUndefined();
  });

  it('answers with a placeholder without a script', () => {
    const got = finals(transcribe(customer.subarray(10_000 * 16, 16_500 * 16), {}, undefined, deps({}, false))).map(sentence);
    expect(got.map((s) => s.text)).toEqual(['[emulated speech 4.9 s]']);
    expect(got[0]).toMatchObject({ emo_tag: 'neutral', emo_confidence: 0.5 });
  });

  it('ignores audio outside a task and fails commands in the wrong state', () => {
    const d = deps();
    const conn = connect(d);
    expect(conn.handleAudio(Buffer.alloc(1600), 0)).toEqual([]);
    expect(d.stats.audioFramesIgnored).toBe(1);
    expect(names(conn.handleText(finishTask('x'), 0))).toEqual(['task-failed', 'close:1000']);
    const c2 = connect(d);
    c2.handleText(runTask('a'), 0);
    expect(names(c2.handleText(finishTask('b'), 0))).toEqual(['task-failed', 'close:1000']);
    const c3 = connect(d);
    c3.handleText(runTask('a'), 0);
    expect(names(c3.handleText(runTask('b'), 0))).toEqual(['task-failed', 'close:1000']);
    const c4 = connect(d);
    const cont = JSON.stringify({ header: { action: 'continue-task', task_id: 'a', streaming: 'duplex' }, payload: { input: {} } });
    expect(names(c4.handleText(cont, 0))).toEqual(['task-failed', 'close:1000']);
  });

  it('answers envelope errors with task-failed, or closes with 1007', () => {
    const conn = connect(deps());
    const a = conn.handleText('{"header":{"action":"run-task","task_id":"t9","streaming":"duplex"},"payload":{}}', 0);
    expect(names(a)).toEqual(['task-failed', 'close:1000']);
    expect(events(a)[0]!.header).toMatchObject({ task_id: 't9', error_code: 'InvalidParameter' });
    expect(events(a)[0]!.payload).toEqual({});
    const c2 = connect(deps({ envelopeErrorMode: 'close-1007' }));
    expect(names(c2.handleText('nonsense', 0))).toEqual(['close:1007']);
    expect(c2.state).toBe('closed');
    expect(c2.handleText(runTask('t'), 0)).toEqual([]);
  });

  it('can fail finish-task without audio (NO_VALID_AUDIO_ERROR)', () => {
    const conn = connect(deps({ failFinishWithoutAudio: true }));
    conn.handleText(runTask('t'), 0);
    const a = conn.handleText(finishTask('t'), 0);
    expect(events(a)[0]!.header.error_code).toBe('NO_VALID_AUDIO_ERROR');
  });
});

describe('ParaformerConnection: timing and faults', () => {
  it('buffers audio that arrives before a delayed task-started', () => {
    const d = deps({ taskStartDelayMs: 50 });
    const conn = connect(d, 1000);
    expect(conn.handleText(runTask('t'), 1000)).toEqual([]);
    expect(conn.state).toBe('starting');
    expect(conn.nextDeadline()).toBe(1050);
    expect(play(conn, customer.subarray(10_000 * 16, 16_500 * 16), 1600, 1010)).toEqual([]);
    expect(conn.handleText(finishTask('t'), 1020)).toEqual([]);
    expect(conn.tick(1049)).toEqual([]);
    const a = conn.tick(1050);
    expect(names(a)[0]).toBe('task-started');
    expect(names(a).at(-1)).toBe('task-finished');
    expect(finals(a).map((e) => sentence(e).text)).toEqual([script.lines[1]!.text]);
  });

  it('bounds the early audio buffer and counts the drop', () => {
    const d = deps({ taskStartDelayMs: 50, maxEarlyAudioBytes: 2000 });
    const conn = connect(d);
    conn.handleText(runTask('t'), 0);
    conn.handleAudio(Buffer.alloc(1600), 0);
    conn.handleAudio(Buffer.alloc(1600), 0);
    expect(d.stats.earlyAudioBytesDropped).toBe(1200);
  });

  it('sends heartbeats on silence with heartbeat=true, none in speech', () => {
    const d = deps({ heartbeatIntervalMs: 100 });
    const conn = connect(d, 0);
    conn.handleText(runTask('t', { heartbeat: true }), 0);
    conn.handleAudio(Buffer.alloc(1600), 50);
    expect(conn.nextDeadline()).toBe(100);
    const hb = conn.tick(100);
    expect(names(hb)).toEqual(['result-generated']);
    expect(sentence(events(hb)[0]!)).toEqual({
      sentence_id: 0,
      begin_time: 0,
      end_time: null,
      text: '',
      heartbeat: true,
      sentence_end: false,
      words: [],
    });
    expect(events(hb)[0]!.payload['usage']).toBeNull();
    // in speech: no heartbeat
    conn.handleAudio(customer.subarray(10_680 * 16, 11_680 * 16), 150);
    expect(conn.tick(250)).toEqual([]);
    expect(d.stats.heartbeatsSent).toBe(1);
  });

  it('fails a task that receives nothing for noDataTimeoutMs (CLIENT_ERROR)', () => {
    const conn = connect(deps({ noDataTimeoutMs: 200 }), 0);
    conn.handleText(runTask('t'), 0);
    conn.handleAudio(Buffer.alloc(1600), 100);
    expect(conn.nextDeadline()).toBe(300);
    expect(conn.tick(299)).toEqual([]);
    const a = conn.tick(300);
    expect(names(a)).toEqual(['task-failed', 'close:1000']);
    expect(events(a)[0]!.header).toMatchObject({ error_code: 'CLIENT_ERROR', error_message: 'request timeout after 23 seconds.' });
  });

  it('fails after silenceTimeoutMs of audio without speech unless heartbeat is on', () => {
    const silence = Buffer.alloc(16 * 1200);
    const a = transcribe(silence, {}, undefined, deps({ silenceTimeoutMs: 1000 }));
    expect(names(a)).toEqual(['task-started', 'task-failed', 'close:1000']);
    expect(events(a)[1]!.header).toMatchObject({ error_code: 'RequestTimeOut', error_message: 'Response timeout!' });
    const b = transcribe(silence, { heartbeat: true }, undefined, deps({ silenceTimeoutMs: 1000 }));
    expect(names(b)).toEqual(['task-started', 'task-finished']);
  });

  it('closes a connection idle for idleTimeoutMs after its task', () => {
    const conn = connect(deps({ idleTimeoutMs: 500 }), 0);
    conn.handleText(runTask('t'), 100);
    conn.handleText(finishTask('t'), 200);
    expect(conn.nextDeadline()).toBe(700);
    expect(conn.tick(699)).toEqual([]);
    expect(names(conn.tick(700))).toEqual(['close:1000']);
    expect(conn.nextDeadline()).toBeNull();
  });

  it('throttles run-tasks per key and model per second', () => {
    const d = deps({ rps: 2 });
    const started = (now: number, model?: string) => names(connect(d).handleText(runTask('t', {}, model), now))[0];
    expect([started(0), started(10), started(20)]).toEqual(['task-started', 'task-started', 'task-failed']);
    expect(started(30, 'paraformer-realtime-v2')).toBe('task-started');
    expect(started(1005)).toBe('task-started');
    const c = connect(d);
    const a = c.handleText(runTask('t'), 1006);
    expect(events(a)[0]!.header).toMatchObject({
      error_code: 'Throttling.RateQuota',
      error_message: 'Requests rate limit exceeded, please try again later.',
    });
    expect(names(a)).toEqual(['task-failed', 'close:1000']);
    expect(d.stats.throttled).toBe(2);
  });

  it('fails the next failTasks.count run-tasks with the injected error', () => {
    const d = deps({ faults: { failTasks: { code: 'InternalError', message: 'boom', count: 2 } } });
    const first = (id: string) => events(connect(d).handleText(runTask(id), 0))[0]!.header;
    expect(first('a')).toMatchObject({ event: 'task-failed', error_code: 'InternalError', error_message: 'boom' });
    expect(first('b')).toMatchObject({ event: 'task-failed', error_code: 'InternalError' });
    expect(first('c')).toMatchObject({ event: 'task-started' });
    expect(d.stats.failuresInjected).toBe(2);
    expect(d.stats.tasksFailed).toEqual({ InternalError: 2 });
  });

  it('drops the first dropConnections connections after dropAfterFrames frames', () => {
    const d = deps({ faults: { dropAfterFrames: 3, dropConnections: 1 } });
    const a = connect(d);
    a.handleText(runTask('t'), 0);
    const actsA = play(a, Buffer.alloc(1600 * 10));
    expect(names(actsA)).toEqual(['drop']);
    expect(d.stats.audioFramesReceived).toBe(3);
    expect(a.state).toBe('closed');
    const b = connect(d);
    b.handleText(runTask('t'), 0);
    expect(play(b, Buffer.alloc(1600 * 10)).filter((x) => x.type === 'drop')).toEqual([]);
    expect(d.stats.dropsInjected).toBe(1);
  });

  it('drops the connection 300 ms into its Nth speech segment (dropInSentence)', () => {
    const d = deps({ faults: { dropInSentence: 2 } });
    const conn = connect(d);
    conn.handleText(runTask('t'), 0);
    const acts = play(conn, customer, 160); // 10 ms frames
    expect(names(acts).at(-1)).toBe('drop');
    expect(finals(acts).map((e) => sentence(e).text)).toEqual([script.lines[1]!.text]);
    // 24 180 ms: the second customer segment starts; dropped after 300 ms of it
    expect(d.stats.audioBytesReceived / 16).toBe(24_180 + 300);
  });
});
