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
  emotion: { paraformer: { tag: string; confidence: number } };
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
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
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
    expect(await upgradeStatus(`${e.url}/api-ws/v1/realtime?model=x`, { Authorization: `Bearer ${KEY}` })).toBe(404);
    const res = await fetch(`${e.url.replace('ws:', 'http:')}/nope`);
    expect(res.status).toBe(404);
    const plain = await fetch(`${e.url.replace('ws:', 'http:')}/api-ws/v1/inference`);
    expect(plain.status).toBe(426);
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
