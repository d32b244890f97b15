/**
 * The emulator end to end over real sockets (127.0.0.1, port 0), driven by a raw `ws` client
 * that speaks the wire protocol itself.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { silentLogger } from '../observability/logger.js';
import type { EmulatorKnobs } from './knobs.js';
import { QWEN_ID_PATTERN } from './qwen-session.js';
import { parseWav } from './script.js';
import { bearerKey, startEmulator, type EmulatorHandle } from './server.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZH_CALL = path.resolve(HERE, '../../../shared/fixtures/calls/zh-billing-complaint');
const KEY = 'sk-test-emulator';

interface ScriptLine {
  role: string;
  text: string;
  startMs: number;
  endMs: number;
  emotion: { paraformer: { tag: string; confidence: number }; qwen: string };
}
const LINES = (JSON.parse(readFileSync(path.join(ZH_CALL, 'script.json'), 'utf8')) as { lines: ScriptLine[] }).lines;
const CUSTOMER_LINES = LINES.filter((l) => l.role === 'customer');

interface WireEvent {
  header: { task_id: string; event: string; attributes: unknown; error_code?: string; error_message?: string };
  payload: {
    output?: {
      sentence?: {
        text: string;
        begin_time: number;
        end_time: number | null;
        sentence_end: boolean;
        heartbeat?: boolean;
        emo_tag?: string;
        emo_confidence?: number;
        words: unknown[];
      };
    };
    usage?: unknown;
  };
}

let customer: Buffer;
beforeAll(() => {
  customer = parseWav(readFileSync(path.join(ZH_CALL, 'customer.wav'))).pcm;
});

const emulators: EmulatorHandle[] = [];
const clients: TestClient[] = [];
const qwenClients: QwenClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  for (const c of qwenClients.splice(0)) c.ws.terminate();
  await Promise.all(emulators.splice(0).map((e) => e.close()));
});

async function start(knobs: Partial<EmulatorKnobs> = {}, apiKey: string | null = KEY): Promise<EmulatorHandle> {
  const e = await startEmulator({ host: '127.0.0.1', port: 0, apiKey: apiKey ?? undefined, script: { dir: ZH_CALL }, knobs, logger: silentLogger });
  emulators.push(e);
  return e;
}

class TestClient {
  readonly events: WireEvent[] = [];
  binaryFrames = 0;
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly listeners = new Set<() => void>();

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (isBinary) this.binaryFrames++;
      else this.events.push(JSON.parse(String(data)) as WireEvent);
      for (const l of this.listeners) l();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        for (const l of this.listeners) l();
      });
    });
  }

  static async open(e: EmulatorHandle, opts: { path?: string; auth?: string } = {}): Promise<TestClient> {
    const ws = new WebSocket(`${e.url}${opts.path ?? '/api-ws/v1/inference'}`, {
      headers: { Authorization: opts.auth ?? `Bearer ${KEY}` },
    });
    const c = new TestClient(ws);
    clients.push(c);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return c;
  }

  /** Resolves with the first event (from the start) that matches; rejects on close or timeout. */
  waitFor(pred: (e: WireEvent) => boolean, timeoutMs = 5000): Promise<WireEvent> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.events.find(pred);
        if (hit) {
          done();
          resolve(hit);
        } else if (this.ws.readyState === WebSocket.CLOSED) {
          done();
          reject(new Error('socket closed before the event arrived'));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error('timed out waiting for an event'));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  runTask(taskId: string, params: Record<string, unknown> = {}): void {
    this.ws.send(
      JSON.stringify({
        header: { action: 'run-task', task_id: taskId, streaming: 'duplex' },
        payload: {
          task_group: 'audio',
          task: 'asr',
          function: 'recognition',
          model: 'paraformer-realtime-8k-v2',
          parameters: { format: 'pcm', sample_rate: 8000, ...params },
          input: {},
        },
      }),
    );
  }

  finishTask(taskId: string): void {
    this.ws.send(JSON.stringify({ header: { action: 'finish-task', task_id: taskId, streaming: 'duplex' }, payload: { input: {} } }));
  }

  /** Sends PCM in 100 ms binary frames, as fast as possible. */
  sendAudio(pcm: Buffer): void {
    for (let i = 0; i < pcm.length; i += 1600) this.ws.send(pcm.subarray(i, i + 1600));
  }

  finals(taskId: string): NonNullable<NonNullable<WireEvent['payload']['output']>['sentence']>[] {
    return this.events.flatMap((e) => {
      const s = e.payload.output?.sentence;
      return e.header.task_id === taskId && e.header.event === 'result-generated' && s?.sentence_end ? [s] : [];
    });
  }
}

const is = (event: string, taskId?: string) => (e: WireEvent) =>
  e.header.event === event && (taskId === undefined || e.header.task_id === taskId);

/** The HTTP status a refused upgrade answered with. */
function upgradeStatus(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      ws.terminate();
      reject(new Error('upgrade was accepted'));
    });
    ws.on('error', () => undefined);
  });
}

describe('handshake', () => {
  it('says in its logs that it is an emulator', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
    emulators.push(await startEmulator({ port: 0, logger }));
    const warn = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).find((l) => l.level === 40);
    expect(warn?.msg).toMatch(/EMULATOR.*does not recognise speech/);
  });

  it('refuses a missing or wrong key with 401, or 403 when configured', async () => {
    const e = await start();
    const url = `${e.url}/api-ws/v1/inference`;
    expect(await upgradeStatus(url, {})).toBe(401);
    expect(await upgradeStatus(url, { Authorization: 'Bearer wrong' })).toBe(401);
    expect(await upgradeStatus(url, { Authorization: KEY })).toBe(401);
    e.setKnobs({ authFailureStatus: 403 });
    expect(await upgradeStatus(url, { Authorization: 'Bearer wrong' })).toBe(403);
    expect(e.stats.authFailures).toBe(4);
    expect(e.stats.connections).toBe(0);
  });

  it('accepts the scheme in any case, the trailing-slash path, and any key without apiKey', async () => {
    const e = await start();
    await TestClient.open(e, { auth: `bearer ${KEY}` });
    await TestClient.open(e, { path: '/api-ws/v1/inference/' });
    const open = await start({}, null);
    await TestClient.open(open, { auth: 'Bearer anything' });
    expect(await upgradeStatus(`${open.url}/api-ws/v1/inference`, { Authorization: 'Bearer ' })).toBe(401);
    expect(e.stats.connections).toBe(2);
    expect(bearerKey('BEARER k1')).toBe('k1');
    expect(bearerKey('Basic k1')).toBeNull();
  });

  it('answers 404 on other paths', async () => {
    const e = await start();
    expect(await upgradeStatus(`${e.url}/api-ws/v1/nope?model=x`, { Authorization: `Bearer ${KEY}` })).toBe(404);
    const res = await fetch(`${e.url.replace('ws:', 'http:')}/nope`);
    expect(res.status).toBe(404);
    const plain = await fetch(`${e.url.replace('ws:', 'http:')}/api-ws/v1/inference`);
    expect(plain.status).toBe(426);
    const realtime = await fetch(`${e.url.replace('ws:', 'http:')}/api-ws/v1/realtime?model=qwen3-asr-flash-realtime`);
    expect(realtime.status).toBe(426);
  });
});

describe('tasks over the wire', () => {
  it('transcribes the customer track into exactly its 6 lines, then reuses the connection', async () => {
    const e = await start();
    const c = await TestClient.open(e);
    c.runTask('task-1');
    await c.waitFor(is('task-started', 'task-1'));
    c.sendAudio(customer);
    c.finishTask('task-1');
    await c.waitFor(is('task-finished', 'task-1'));
    const finals = c.finals('task-1');
    expect(finals.map((s) => s.text)).toEqual(CUSTOMER_LINES.map((l) => l.text));
    expect(finals.map((s) => s.emo_tag)).toEqual(CUSTOMER_LINES.map((l) => l.emotion.paraformer.tag));
    finals.forEach((s, i) => {
      expect(Math.abs(s.begin_time - CUSTOMER_LINES[i]!.startMs)).toBeLessThanOrEqual(300);
      expect(Math.abs(s.end_time! - CUSTOMER_LINES[i]!.endMs)).toBeLessThanOrEqual(300);
    });
    const finished = c.events.find(is('task-finished'))!;
    expect(finished.payload).toEqual({ output: {}, usage: null });
    expect(c.events.indexOf(finished)).toBe(c.events.length - 1);

    // a second task on the same socket, with a new task_id
    c.runTask('task-2');
    await c.waitFor(is('task-started', 'task-2'));
    c.sendAudio(customer.subarray(59_000 * 16));
    c.finishTask('task-2');
    await c.waitFor(is('task-finished', 'task-2'));
    expect(c.finals('task-2').map((s) => s.text)).toEqual(['好吧，谢谢。']);
    expect(c.finals('task-2')[0]!.begin_time).toBeLessThan(1000);

    for (const ev of c.events) {
      expect(typeof ev.header.task_id).toBe('string');
      expect(ev.header.attributes).toEqual({});
      expect(typeof ev.payload).toBe('object');
      expect(['task-started', 'result-generated', 'task-finished']).toContain(ev.header.event);
    }
    expect(c.binaryFrames).toBe(0);
    expect(e.stats).toMatchObject({ tasksStarted: 2, tasksFinished: 2, finalsSent: 7, audioFramesReceived: 657 + 67 });
  });

  it('buffers audio sent right behind run-task until the delayed task-started', async () => {
    const e = await start({ taskStartDelayMs: 100 });
    const c = await TestClient.open(e);
    c.runTask('t');
    c.sendAudio(customer.subarray(10_000 * 16, 16_500 * 16));
    c.finishTask('t');
    await c.waitFor(is('task-finished'));
    expect(c.events[0]!.header.event).toBe('task-started');
    expect(c.finals('t').map((s) => s.text)).toEqual([CUSTOMER_LINES[0]!.text]);
  });

  it('keeps the order of results and task-finished when results are delayed', async () => {
    const e = await start({ resultDelayMs: 60 });
    const c = await TestClient.open(e);
    c.runTask('t');
    await c.waitFor(is('task-started'));
    c.sendAudio(customer.subarray(24_000 * 16, 27_800 * 16));
    c.finishTask('t');
    await c.waitFor(is('task-finished'));
    const kinds = c.events.map((ev) => ev.header.event);
    expect(kinds.at(-1)).toBe('task-finished');
    expect(c.finals('t').map((s) => s.text)).toEqual(['13812345678。']);
  });

  it('answers an envelope error with task-failed and a close, or with close 1007', async () => {
    const e = await start();
    const c = await TestClient.open(e);
    c.ws.send(JSON.stringify({ header: { action: 'run-task', task_id: 'bad', streaming: 'duplex' }, payload: {} }));
    const failed = await c.waitFor(is('task-failed'));
    expect(failed.header).toMatchObject({ task_id: 'bad', error_code: 'InvalidParameter' });
    expect((await c.closed).code).toBe(1000);

    e.setKnobs({ envelopeErrorMode: 'close-1007' });
    const c2 = await TestClient.open(e);
    c2.ws.send('{"header":');
    expect((await c2.closed).code).toBe(1007);
    expect(c2.events).toEqual([]);
  });

  it('throttles run-tasks over the rate limit and closes the socket', async () => {
    const e = await start({ rps: 2 });
    const cs = await Promise.all([0, 1, 2].map(() => TestClient.open(e)));
    cs.forEach((c, i) => c.runTask(`t${i}`));
    const firsts = await Promise.all(cs.map((c) => c.waitFor(() => true)));
    const failed = firsts.filter((f) => f.header.event === 'task-failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.header).toMatchObject({
      error_code: 'Throttling.RateQuota',
      error_message: 'Requests rate limit exceeded, please try again later.',
    });
    const loser = cs[firsts.indexOf(failed[0]!)]!;
    expect((await loser.closed).code).toBe(1000);
    expect(e.stats.throttled).toBe(1);
  });

  it('fails the next run-tasks with failTasks, then starts again', async () => {
    const e = await start();
    e.setKnobs({ faults: { failTasks: { code: 'Throttling.RateQuota', message: 'injected', count: 1 } } });
    const c = await TestClient.open(e);
    c.runTask('t1');
    expect((await c.waitFor(is('task-failed'))).header).toMatchObject({ error_code: 'Throttling.RateQuota', error_message: 'injected' });
    await c.closed;
    const c2 = await TestClient.open(e);
    c2.runTask('t2');
    await c2.waitFor(is('task-started'));
    expect(e.stats.tasksFailed).toEqual({ 'Throttling.RateQuota': 1 });
  });
});

describe('injected drops', () => {
  it('destroys the socket without a close frame after dropAfterFrames frames', async () => {
    const e = await start({ faults: { dropAfterFrames: 5, dropConnections: 1 } });
    const c = await TestClient.open(e);
    c.runTask('t');
    await c.waitFor(is('task-started'));
    c.sendAudio(customer.subarray(0, 1600 * 20));
    expect((await c.closed).code).toBe(1006);
    expect(e.stats.dropsInjected).toBe(1);
    // the budget is spent: the next connection keeps working
    const c2 = await TestClient.open(e);
    c2.runTask('t');
    await c2.waitFor(is('task-started'));
    c2.sendAudio(customer.subarray(0, 1600 * 20));
    c2.finishTask('t');
    await c2.waitFor(is('task-finished'));
  });

  it('drops mid-sentence with dropInSentence', async () => {
    const e = await start();
    e.setKnobs({ faults: { dropInSentence: 2, dropConnections: 1 } });
    const c = await TestClient.open(e);
    c.runTask('t');
    await c.waitFor(is('task-started'));
    c.sendAudio(customer);
    expect((await c.closed).code).toBe(1006);
    expect(c.finals('t').map((s) => s.text)).toEqual([CUSTOMER_LINES[0]!.text]);
    expect(c.events.some(is('task-finished'))).toBe(false);
    expect(e.stats.dropsInjected).toBe(1);
  });
});

describe('timers', () => {
  it('sends heartbeat results while heartbeat=true and the audio is silent', async () => {
    const e = await start({ heartbeatIntervalMs: 40 });
    const c = await TestClient.open(e);
    c.runTask('t', { heartbeat: true });
    await c.waitFor(is('task-started'));
    const silence = Buffer.alloc(320);
    const timer = setInterval(() => c.ws.send(silence), 20);
    try {
      await c.waitFor(() => c.events.filter((x) => x.payload.output?.sentence?.heartbeat === true).length >= 2);
    } finally {
      clearInterval(timer);
    }
    const hb = c.events.find((x) => x.payload.output?.sentence?.heartbeat === true)!;
    expect(hb.payload.output!.sentence).toMatchObject({ text: '', sentence_end: false, end_time: null });
    c.finishTask('t');
    await c.waitFor(is('task-finished'));
  });

  it('fails a task that receives nothing (CLIENT_ERROR) and closes', async () => {
    const e = await start({ noDataTimeoutMs: 200 });
    const c = await TestClient.open(e);
    c.runTask('t');
    const failed = await c.waitFor(is('task-failed'));
    expect(failed.header).toMatchObject({ task_id: 't', error_code: 'CLIENT_ERROR', error_message: 'request timeout after 23 seconds.' });
    expect((await c.closed).code).toBe(1000);
  });

  it('fails on silent audio without heartbeat (RequestTimeOut)', async () => {
    const e = await start({ silenceTimeoutMs: 500 });
    const c = await TestClient.open(e);
    c.runTask('t');
    await c.waitFor(is('task-started'));
    c.sendAudio(Buffer.alloc(16 * 600));
    const failed = await c.waitFor(is('task-failed'));
    expect(failed.header).toMatchObject({ error_code: 'RequestTimeOut', error_message: 'Response timeout!' });
    await c.closed;
  });

  it('closes a connection that starts no task within idleTimeoutMs after the last one', async () => {
    const e = await start({ idleTimeoutMs: 150 });
    const c = await TestClient.open(e);
    c.runTask('t');
    await c.waitFor(is('task-started'));
    c.finishTask('t');
    await c.waitFor(is('task-finished'));
    expect((await c.closed).code).toBe(1000);
    await vi.waitFor(() => expect(e.stats.openConnections).toBe(0));
  });
});

// ---------------------------------------------------------------------------------------------
// Part B: qwen3-asr-flash-realtime

const QWEN = 'qwen3-asr-flash-realtime';

interface QwenEvent {
  event_id: string;
  type: string;
  [field: string]: unknown;
}

class QwenClient {
  readonly events: QwenEvent[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly listeners = new Set<() => void>();

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      expect(isBinary).toBe(false);
      this.events.push(JSON.parse(String(data)) as QwenEvent);
      for (const l of this.listeners) l();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        for (const l of this.listeners) l();
      });
    });
  }

  static connect(e: EmulatorHandle, opts: { model?: string | null; auth?: string } = {}): QwenClient {
    const model = opts.model === undefined ? QWEN : opts.model;
    const query = model === null ? '' : `?model=${encodeURIComponent(model)}`;
    const ws = new WebSocket(`${e.url}/api-ws/v1/realtime${query}`, {
      headers: { Authorization: opts.auth ?? `Bearer ${KEY}`, 'OpenAI-Beta': 'realtime=v1' },
    });
    ws.on('error', () => undefined);
    const c = new QwenClient(ws);
    qwenClients.push(c);
    return c;
  }

  static async open(e: EmulatorHandle, opts: { model?: string | null } = {}): Promise<QwenClient> {
    const c = QwenClient.connect(e, opts);
    await new Promise<void>((resolve, reject) => {
      c.ws.once('open', () => resolve());
      c.ws.once('unexpected-response', () => reject(new Error('upgrade refused')));
    });
    return c;
  }

  send(msg: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(msg));
  }

  /** 8 kHz telephony audio, server VAD. */
  configure(turn: Record<string, unknown> | null = { type: 'server_vad', threshold: 0.0, silence_duration_ms: 400 }): void {
    this.send({
      event_id: 'event_cfg',
      type: 'session.update',
      session: { modalities: ['text'], input_audio_format: 'pcm', sample_rate: 8000, input_audio_transcription: { language: 'zh' }, turn_detection: turn },
    });
  }

  /** Appends PCM as base64 in 100 ms events, as fast as possible. */
  appendAudio(pcm: Buffer): void {
    for (let i = 0; i < pcm.length; i += 1600) {
      this.send({ event_id: `event_a${i}`, type: 'input_audio_buffer.append', audio: pcm.subarray(i, i + 1600).toString('base64') });
    }
  }

  waitFor(pred: (e: QwenEvent) => boolean, timeoutMs = 5000): Promise<QwenEvent> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.events.find(pred);
        if (hit) {
          done();
          resolve(hit);
        } else if (this.ws.readyState === WebSocket.CLOSED) {
          done();
          reject(new Error('socket closed before the event arrived'));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error('timed out waiting for an event'));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  of(type: string): QwenEvent[] {
    return this.events.filter((e) => e.type === type);
  }
}

const type = (t: string) => (e: QwenEvent) => e.type === t;

describe('qwen realtime: handshake', () => {
  it('refuses a missing or wrong key with 401 (403 when configured), on the realtime path too', async () => {
    const e = await start();
    const url = `${e.url}/api-ws/v1/realtime?model=${QWEN}`;
    expect(await upgradeStatus(url, { 'OpenAI-Beta': 'realtime=v1' })).toBe(401);
    expect(await upgradeStatus(url, { Authorization: 'Bearer wrong' })).toBe(401);
    e.setKnobs({ authFailureStatus: 403 });
    expect(await upgradeStatus(url, { Authorization: 'Bearer wrong' })).toBe(403);
    expect(e.stats).toMatchObject({ authFailures: 3, connections: 0, qwenSessions: 0 });
  });

  it('accepts the upgrade of an unknown or missing model, then closes with 1007 "Model not found"', async () => {
    const e = await start();
    for (const model of ['qwen3-asr-flash', null]) {
      const c = QwenClient.connect(e, { model });
      expect(await c.closed).toEqual({ code: 1007, reason: 'Model not found' });
      expect(c.events).toEqual([]);
    }
    expect(e.stats.qwenModelNotFound).toBe(2);
    await vi.waitFor(() => expect(e.stats.openConnections).toBe(0));
  });

  it('opens every listed model with session.created, without needing OpenAI-Beta', async () => {
    const e = await start();
    for (const model of ['qwen3-asr-flash-realtime', 'qwen3-asr-flash-realtime-2026-02-10', 'qwen3-asr-flash-realtime-2025-10-27']) {
      const ws = new WebSocket(`${e.url}/api-ws/v1/realtime/?model=${model}`, { headers: { Authorization: `Bearer ${KEY}` } });
      const c = new QwenClient(ws);
      qwenClients.push(c);
      const created = await c.waitFor(type('session.created'));
      expect(created.session).toMatchObject({ model, object: 'realtime.session', input_audio_format: 'pcm', sample_rate: 16000 });
    }
  });
});

describe('qwen realtime: a call over the wire', () => {
  it('transcribes the customer track into exactly its 6 lines with their qwen emotions and session times', async () => {
    const e = await start();
    const c = await QwenClient.open(e);
    c.configure(); // sent before reading session.created, as the SDKs do
    await c.waitFor(type('session.updated'));
    expect(c.events[0]!.type).toBe('session.created');
    c.appendAudio(customer);
    c.send({ event_id: 'event_fin', type: 'session.finish' });
    await c.waitFor(type('session.finished'));
    const completed = c.of('conversation.item.input_audio_transcription.completed');
    expect(completed.map((x) => x.transcript)).toEqual(CUSTOMER_LINES.map((l) => l.text));
    expect(completed.map((x) => x.emotion)).toEqual(CUSTOMER_LINES.map((l) => l.emotion.qwen));
    const started = c.of('input_audio_buffer.speech_started');
    const stopped = c.of('input_audio_buffer.speech_stopped');
    expect(started).toHaveLength(6);
    expect(stopped).toHaveLength(6);
    CUSTOMER_LINES.forEach((l, i) => {
      expect(started[i]!.item_id).toBe(completed[i]!.item_id);
      expect(stopped[i]!.item_id).toBe(completed[i]!.item_id);
      expect(Math.abs((started[i]!.audio_start_ms as number) - l.startMs)).toBeLessThanOrEqual(300);
      expect(Math.abs((stopped[i]!.audio_end_ms as number) - l.endMs)).toBeLessThanOrEqual(300);
    });
    expect(c.of('conversation.item.input_audio_transcription.text').length).toBeGreaterThan(30);
    expect(c.events.at(-1)!.type).toBe('session.finished');
    for (const ev of c.events) expect(ev.event_id).toMatch(QWEN_ID_PATTERN);
    // the socket stays open until the client closes it
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.ws.close(1000);
    expect((await c.closed).code).toBe(1000);
    await vi.waitFor(() => expect(e.stats.openConnections).toBe(0));
    expect(e.stats).toMatchObject({ qwenSessions: 1, qwenSessionsFinished: 1, qwenItemsCompleted: 6, qwenAppends: 657, itemsDroppedOnClose: 0 });
  });

  it('answers a bad session.update with an error naming the field, and the session goes on', async () => {
    const e = await start();
    const c = await QwenClient.open(e);
    c.send({ event_id: 'event_123', type: 'session.update', session: { input_audio_format: 'pcm16' } });
    const err = await c.waitFor(type('error'));
    expect(err.error).toEqual({
      type: 'invalid_request_error',
      code: 'invalid_value',
      message: "Invalid value: 'pcm16'. Supported values are: 'pcm', 'opus'.",
      param: 'session.input_audio_format',
      event_id: 'event_123',
    });
    c.configure();
    await c.waitFor(type('session.updated'));
  });

  it('counts the item in progress as dropped when the client closes without session.finish', async () => {
    const e = await start();
    const c = await QwenClient.open(e);
    c.configure();
    c.appendAudio(customer.subarray(10_000 * 16, 13_000 * 16));
    await c.waitFor(type('input_audio_buffer.speech_started'));
    await c.waitFor(() => c.of('conversation.item.input_audio_transcription.text').length >= 3);
    c.ws.close(1000);
    await vi.waitFor(() => expect(e.stats.itemsDroppedOnClose).toBe(1));
    expect(c.of('conversation.item.input_audio_transcription.completed')).toEqual([]);
  });

  it('closes a finished session itself after the grace period', async () => {
    const e = await start({ qwenFinishGraceMs: 100 });
    const c = await QwenClient.open(e);
    c.send({ type: 'session.finish' });
    await c.waitFor(type('session.finished'));
    expect(await c.closed).toEqual({ code: 1000, reason: 'session finished' });
  });
});

describe('qwen realtime: throttling, outages and drops', () => {
  it('throttles sessions over the rate limit with an error event, or with HTTP 429', async () => {
    const e = await start({ rps: 1 });
    const first = await QwenClient.open(e);
    await first.waitFor(type('session.created'));
    const second = QwenClient.connect(e);
    const err = await second.waitFor(type('error'));
    expect(err.error).toMatchObject({ code: 'Throttling.RateQuota', message: 'Requests rate limit exceeded, please try again later.' });
    expect((await second.closed).code).toBe(1000);
    expect(second.of('session.created')).toEqual([]);
    // the limit is per model: another model name still opens
    const other = await QwenClient.open(e, { model: 'qwen3-asr-flash-realtime-2026-02-10' });
    await other.waitFor(type('session.created'));
    e.setKnobs({ qwenThrottleMode: 'http-429' });
    expect(await upgradeStatus(`${e.url}/api-ws/v1/realtime?model=${QWEN}`, { Authorization: `Bearer ${KEY}` })).toBe(429);
    expect(e.stats.qwenThrottled).toBe(2);
  });

  it('refuses sessions during an outage: HTTP 503 for the next N, then recovers', async () => {
    const e = await start();
    e.setKnobs({ faults: { qwenOutage: { mode: 'http-503', count: 2 } } });
    const url = `${e.url}/api-ws/v1/realtime?model=${QWEN}`;
    expect(await upgradeStatus(url, { Authorization: `Bearer ${KEY}` })).toBe(503);
    expect(await upgradeStatus(url, { Authorization: `Bearer ${KEY}` })).toBe(503);
    const c = await QwenClient.open(e);
    await c.waitFor(type('session.created'));
    expect(e.stats.qwenOutageRefusals).toBe(2);
  });

  it('refuses sessions with close 1011, or an error event then 1011, until the outage is cleared', async () => {
    const e = await start();
    e.setKnobs({ faults: { qwenOutage: { mode: 'close-1011', count: null } } });
    for (let i = 0; i < 3; i++) {
      const c = QwenClient.connect(e);
      expect((await c.closed).code).toBe(1011);
      expect(c.events).toEqual([]);
    }
    e.setKnobs({ faults: { qwenOutage: { mode: 'error-event', count: null } } });
    const c = QwenClient.connect(e);
    const err = await c.waitFor(type('error'));
    expect(err.error).toMatchObject({ type: 'server_error', code: 'ServiceUnavailable' });
    expect((await c.closed).code).toBe(1011);
    // paraformer is not affected
    const p = await TestClient.open(e);
    p.runTask('t');
    await p.waitFor(is('task-started'));
    e.setKnobs({ faults: { qwenOutage: null } });
    await (await QwenClient.open(e)).waitFor(type('session.created'));
    expect(e.stats.qwenOutageRefusals).toBe(4);
  });

  it('drops live qwen sessions when an outage is set with dropLive, and only them', async () => {
    const e = await start();
    const q = await QwenClient.open(e);
    q.configure();
    await q.waitFor(type('session.updated'));
    const p = await TestClient.open(e);
    p.runTask('t');
    await p.waitFor(is('task-started'));
    e.setKnobs({ faults: { qwenOutage: { mode: 'close-1011', count: null, dropLive: true } } });
    expect((await q.closed).code).toBe(1006);
    expect(e.stats.qwenOutageDrops).toBe(1);
    const next = QwenClient.connect(e);
    expect((await next.closed).code).toBe(1011);
    p.finishTask('t');
    await p.waitFor(is('task-finished'));
  });

  it('destroys a qwen socket after dropAfterFrames appends (frames = append events)', async () => {
    const e = await start({ faults: { dropAfterFrames: 5, dropConnections: 1 } });
    const c = await QwenClient.open(e);
    c.configure();
    c.appendAudio(customer.subarray(0, 1600 * 20));
    expect((await c.closed).code).toBe(1006);
    expect(e.stats.dropsInjected).toBe(1);
    // the budget is spent: the next session works
    const c2 = await QwenClient.open(e);
    c2.configure();
    c2.appendAudio(customer.subarray(24_000 * 16, 27_800 * 16));
    c2.send({ type: 'session.finish' });
    await c2.waitFor(type('session.finished'));
    expect(c2.of('conversation.item.input_audio_transcription.completed').map((x) => x.transcript)).toEqual(['13812345678。']);
  });

  it('drops a qwen session in the middle of its Nth utterance with dropInSentence', async () => {
    const e = await start();
    e.setKnobs({ faults: { dropInSentence: 2, dropConnections: 1 } });
    const c = await QwenClient.open(e);
    c.configure();
    c.appendAudio(customer.subarray(0, 20_000 * 16));
    await c.waitFor(type('conversation.item.input_audio_transcription.completed'));
    c.appendAudio(customer.subarray(20_000 * 16));
    expect((await c.closed).code).toBe(1006);
    expect(c.of('conversation.item.input_audio_transcription.completed').map((x) => x.transcript)).toEqual([CUSTOMER_LINES[0]!.text]);
    await vi.waitFor(() => expect(e.stats.itemsDroppedOnClose).toBe(1));
  });
});
