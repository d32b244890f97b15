/**
 * The Paraformer client against a tiny scripted `ws` server on 127.0.0.1:0 that records the
 * wire (upgrade headers, text commands, binary audio, close codes). The server here is
 * deliberately independent of the client's message builders and of src/emulator/.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { AppError, isAppError } from '../../../core/errors.js';
import { silentLogger } from '../../../observability/logger.js';
import { createMetrics, type Metrics } from '../../../observability/metrics.js';
import type { AsrConnectOptions, AsrEvent } from '../../provider.js';
import { createParaformerProvider, type ParaformerProviderOptions } from './provider.js';

/** The test server's own (minimal) view of a client command. */
const clientCommand = z.looseObject({
  header: z.looseObject({ action: z.string(), task_id: z.string() }),
  payload: z.record(z.string(), z.unknown()),
});
type ClientCommand = z.infer<typeof clientCommand>;

interface Wire {
  upgrades: IncomingHttpHeaders[];
  paths: string[];
  texts: ClientCommand[];
  rawTexts: string[];
  binaries: Buffer[];
  closeCodes: number[];
}

interface ScriptContext {
  readonly ws: WebSocket;
  readonly wire: Wire;
  /** task_id of the run-task seen on this socket. */
  taskId: string;
}

interface Script {
  /** Reply to the HTTP upgrade with this status instead of accepting it. */
  readonly rejectStatus?: number;
  readonly autoPong?: boolean;
  onRunTask?(ctx: ScriptContext): void;
  onAudio?(ctx: ScriptContext, audio: Buffer): void;
  onFinishTask?(ctx: ScriptContext): void;
}

interface TestServer {
  readonly url: string;
  readonly wire: Wire;
  readonly sockets: WebSocket[];
}

const servers: { http: Server; wss: WebSocketServer }[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) {
    for (const c of s.wss.clients) c.terminate();
    s.wss.close();
    await new Promise<void>((r) => s.http.close(() => r()));
  }
});

function event(taskId: string, name: string, payload: unknown = {}, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ header: { task_id: taskId, event: name, attributes: {}, ...extra }, payload });
}

function sentence(taskId: string, s: Record<string, unknown>, usage: unknown = null): string {
  return event(taskId, 'result-generated', { output: { sentence: s }, usage });
}

function interim(taskId: string, begin: number, text: string): string {
  return sentence(taskId, { begin_time: begin, end_time: null, text, heartbeat: false, sentence_end: false, words: [] });
}

function final(taskId: string, begin: number, end: number, text: string, emo?: [string, number]): string {
  return sentence(
    taskId,
    {
      begin_time: begin,
      end_time: end,
      text,
      heartbeat: false,
      sentence_end: true,
      words: [{ begin_time: begin, end_time: end, text, punctuation: '。' }],
      ...(emo ? { emo_tag: emo[0], emo_confidence: emo[1] } : {}),
    },
    { duration: 1 },
  );
}

function heartbeat(taskId: string): string {
  return sentence(taskId, { sentence_id: 0, begin_time: 0, end_time: null, text: '', heartbeat: true, sentence_end: false, words: [] });
}

/** A server that behaves like the happy path unless the script overrides a step. */
async function startServer(script: Script = {}): Promise<TestServer> {
  const wire: Wire = { upgrades: [], paths: [], texts: [], rawTexts: [], binaries: [], closeCodes: [] };
  const sockets: WebSocket[] = [];
  const http = createServer();
  const wss = new WebSocketServer({ noServer: true, autoPong: script.autoPong ?? true });
  http.on('upgrade', (req, socket, head) => {
    wire.upgrades.push(req.headers);
    wire.paths.push(req.url ?? '');
    if (script.rejectStatus) {
      socket.end(`HTTP/1.1 ${script.rejectStatus} Nope\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.push(ws);
      const ctx: ScriptContext = { ws, wire, taskId: '' };
      ws.on('close', (code) => wire.closeCodes.push(code));
      ws.on('message', (data, isBinary) => {
        const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
        if (isBinary) {
          wire.binaries.push(buf);
          script.onAudio?.(ctx, buf);
          return;
        }
        const text = buf.toString('utf8');
        wire.rawTexts.push(text);
        const msg = clientCommand.parse(JSON.parse(text));
        wire.texts.push(msg);
        const header = msg.header;
        if (header.action === 'run-task') {
          ctx.taskId = header.task_id;
          if (script.onRunTask) script.onRunTask(ctx);
          else ws.send(event(ctx.taskId, 'task-started'));
        } else if (header.action === 'finish-task') {
          if (script.onFinishTask) script.onFinishTask(ctx);
          else ws.send(event(ctx.taskId, 'task-finished', { output: {}, usage: null }));
        }
      });
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  servers.push({ http, wss });
  const { port } = http.address() as AddressInfo;
  return { url: `ws://127.0.0.1:${port}/api-ws/v1/inference`, wire, sockets };
}

const CONNECT: AsrConnectOptions = {
  model: 'paraformer-realtime-8k-v2',
  sampleRateHz: 8000,
  vocabularyId: 'vocab-test-1',
  disfluencyRemoval: false,
  maxSentenceSilenceMs: 800,
};

function provider(url: string, over: Partial<ParaformerProviderOptions> = {}, metrics?: Metrics) {
  return createParaformerProvider({
    url,
    apiKey: 'sk-test-key',
    workspace: 'ws-123',
    logger: silentLogger,
    connectTimeoutMs: 2000,
    userAgent: 'callscribe-test/1',
    metrics,
    ...over,
  });
}

function recorder() {
  const events: AsrEvent[] = [];
  const errors: AppError[] = [];
  return { events, errors, handlers: { onEvent: (e: AsrEvent) => events.push(e), onError: (e: AppError) => errors.push(e) } };
}

async function rejection(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    if (isAppError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('paraformer provider — happy path', () => {
  it('handshakes with the key, runs a task, streams binary audio and finishes', async () => {
    const srv = await startServer({
      onAudio(ctx) {
        if (ctx.wire.binaries.length === 1) {
          ctx.ws.send(interim(ctx.taskId, 100, '你好'));
          ctx.ws.send(heartbeat(ctx.taskId));
        }
        if (ctx.wire.binaries.length === 2) ctx.ws.send(final(ctx.taskId, 100, 180, '你好。', ['negative', 0.62]));
      },
      onFinishTask(ctx) {
        ctx.ws.send(final(ctx.taskId, 220, 290, '再见。', ['positive', 0.9]));
        ctx.ws.send(event(ctx.taskId, 'task-finished', { output: {}, usage: null }));
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    expect(conn.taskId).toMatch(/^[0-9a-f]{32}$/);

    const a = Buffer.alloc(1600, 1);
    const b = Buffer.alloc(1600, 2);
    const c = Buffer.alloc(800, 3);
    conn.sendAudio(a);
    conn.sendAudio(b);
    conn.sendAudio(c);
    await vi.waitFor(() => expect(srv.wire.binaries).toHaveLength(3));
    await vi.waitFor(() => expect(rec.events).toHaveLength(2));
    await conn.finish(2000);

    // upgrade
    expect(srv.wire.paths).toEqual(['/api-ws/v1/inference']);
    const headers = srv.wire.upgrades[0];
    expect(headers?.['authorization']).toBe('Bearer sk-test-key');
    expect(headers?.['user-agent']).toBe('callscribe-test/1');
    expect(headers?.['x-dashscope-workspace']).toBe('ws-123');
    // run-task
    expect(srv.wire.texts[0]).toEqual({
      header: { action: 'run-task', task_id: conn.taskId, streaming: 'duplex' },
      payload: {
        task_group: 'audio',
        task: 'asr',
        function: 'recognition',
        model: 'paraformer-realtime-8k-v2',
        input: {},
        parameters: {
          format: 'pcm',
          sample_rate: 8000,
          vocabulary_id: 'vocab-test-1',
          disfluency_removal_enabled: false,
          max_sentence_silence: 800,
          semantic_punctuation_enabled: false,
          punctuation_prediction_enabled: true,
          inverse_text_normalization_enabled: true,
          heartbeat: true,
        },
      },
    });
    // audio as binary frames, byte for byte
    expect(srv.wire.binaries.map((x) => x.length)).toEqual([1600, 1600, 800]);
    expect(Buffer.concat(srv.wire.binaries).equals(Buffer.concat([a, b, c]))).toBe(true);
    // finish-task with the same task id
    expect(srv.wire.texts[1]).toEqual({ header: { action: 'finish-task', task_id: conn.taskId, streaming: 'duplex' }, payload: { input: {} } });
    expect(srv.wire.texts).toHaveLength(2);
    // results: heartbeat skipped, the last final delivered before finish resolved
    expect(rec.events).toEqual([
      { type: 'interim', startMs: 100, text: '你好' },
      {
        type: 'final',
        startMs: 100,
        endMs: 180,
        text: '你好。',
        words: [{ startMs: 100, endMs: 180, text: '你好。', punctuation: '。' }],
        emotion: { raw: 'negative', confidence: 0.62 },
      },
      {
        type: 'final',
        startMs: 220,
        endMs: 290,
        text: '再见。',
        words: [{ startMs: 220, endMs: 290, text: '再见。', punctuation: '。' }],
        emotion: { raw: 'positive', confidence: 0.9 },
      },
    ]);
    // the client closes with 1000 after task-finished; no error was reported
    await vi.waitFor(() => expect(srv.wire.closeCodes).toEqual([1000]));
    expect(rec.errors).toEqual([]);
    conn.close();
    conn.close(); // idempotent
  });

  it('sends language_hints only for paraformer-realtime-v2, and no workspace header when unset', async () => {
    const srv = await startServer();
    const conn = await provider(srv.url, { workspace: undefined }).connect(
      { ...CONNECT, model: 'paraformer-realtime-v2', vocabularyId: undefined, language: 'zh' },
      recorder().handlers,
    );
    expect(srv.wire.texts[0]?.payload).toMatchObject({ model: 'paraformer-realtime-v2', parameters: { language_hints: ['zh'] } });
    expect(srv.wire.texts[0]?.payload['parameters']).not.toHaveProperty('vocabulary_id');
    expect(srv.wire.upgrades[0]).not.toHaveProperty('x-dashscope-workspace');
    conn.close();
  });

  it('does not send audio before task-started (audio is only possible on a started connection)', async () => {
    const srv = await startServer({
      onRunTask(ctx) {
        setTimeout(() => ctx.ws.send(event(ctx.taskId, 'task-started')), 30);
      },
    });
    const conn = await provider(srv.url).connect(CONNECT, recorder().handlers);
    expect(srv.wire.binaries).toHaveLength(0);
    conn.sendAudio(Buffer.alloc(320));
    await vi.waitFor(() => expect(srv.wire.binaries).toHaveLength(1));
    conn.close();
  });

  it('describes its capabilities and maps emotion', () => {
    const p = provider('ws://127.0.0.1:1');
    expect(p.models).toContain('paraformer-realtime-8k-v2');
    expect(p.capabilities('paraformer-realtime-8k-v2')).toEqual({
      emotionLabels: ['positive', 'negative', 'neutral'],
      emotionConfidence: true,
      wordTimestamps: true,
      sampleRatesHz: [8000],
    });
    expect(p.capabilities('paraformer-realtime-v2').emotionLabels).toEqual([]);
    expect(() => p.capabilities('whisper')).toThrow(AppError);
    expect(p.normaliseEmotion('paraformer-realtime-8k-v2', 'positive', 0.7)).toEqual({
      raw: 'positive',
      provider: 'paraformer-realtime-8k-v2',
      confidence: 0.7,
      valence: 1,
      arousal: null,
    });
    expect(p.normaliseEmotion('paraformer-realtime-8k-v2', 'bored', null).valence).toBe(0);
  });
});

describe('paraformer provider — connect failures', () => {
  it('401 on the upgrade → ERR_ASR_AUTH (permanent)', async () => {
    const srv = await startServer({ rejectStatus: 401 });
    const err = await rejection(provider(srv.url).connect(CONNECT, recorder().handlers));
    expect(err).toMatchObject({ code: 'ERR_ASR_AUTH', category: 'authentication', retryable: false });
    expect(err.details).toEqual({ httpStatus: 401 });
    expect(srv.wire.upgrades).toHaveLength(1);
  });

  it('403 → ERR_ASR_AUTH, 503 → ERR_ASR_CONNECT (retryable)', async () => {
    const s403 = await startServer({ rejectStatus: 403 });
    expect(await rejection(provider(s403.url).connect(CONNECT, recorder().handlers))).toMatchObject({ code: 'ERR_ASR_AUTH' });
    const s503 = await startServer({ rejectStatus: 503 });
    expect(await rejection(provider(s503.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_CONNECT',
      category: 'connectivity',
      retryable: true,
    });
  });

  it('a missing key fails without opening a socket', async () => {
    const srv = await startServer();
    const err = await rejection(provider(srv.url, { apiKey: undefined }).connect(CONNECT, recorder().handlers));
    expect(err).toMatchObject({ code: 'ERR_ASR_NO_API_KEY', retryable: false });
    expect(srv.wire.upgrades).toHaveLength(0);
  });

  it('rejects unsupported models and a wrong sample rate without connecting', async () => {
    const srv = await startServer();
    const p = provider(srv.url);
    expect(await rejection(p.connect({ ...CONNECT, model: 'paraformer-realtime-v1' }, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_UNSUPPORTED_MODEL',
      retryable: false,
    });
    expect(await rejection(p.connect({ ...CONNECT, sampleRateHz: 16000 }, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_BAD_REQUEST',
      retryable: false,
    });
    expect(srv.wire.upgrades).toHaveLength(0);
  });

  it('task-failed throttling before task-started → ERR_ASR_THROTTLED (retryable), details kept', async () => {
    const srv = await startServer({
      onRunTask(ctx) {
        ctx.ws.send(
          event(ctx.taskId, 'task-failed', {}, {
            error_code: 'Throttling.RateQuota',
            error_message: 'Requests rate limit exceeded, please try again later.',
          }),
        );
        ctx.ws.close(1000);
      },
    });
    const err = await rejection(provider(srv.url).connect(CONNECT, recorder().handlers));
    expect(err).toMatchObject({ code: 'ERR_ASR_THROTTLED', category: 'rate_limit', retryable: true });
    expect(err.details).toMatchObject({
      providerCode: 'Throttling.RateQuota',
      providerMessage: 'Requests rate limit exceeded, please try again later.',
    });
  });

  it('task-failed InvalidParameter before start → ERR_ASR_BAD_REQUEST (permanent)', async () => {
    const srv = await startServer({
      onRunTask(ctx) {
        ctx.ws.send(event(ctx.taskId, 'task-failed', {}, { error_code: 'InvalidParameter', error_message: 'sample_rate' }));
      },
    });
    expect(await rejection(provider(srv.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_BAD_REQUEST',
      retryable: false,
    });
  });

  it('no task-started in time → ERR_ASR_CONNECT_TIMEOUT, and the socket is closed', async () => {
    const srv = await startServer({ onRunTask: () => undefined });
    const err = await rejection(provider(srv.url, { connectTimeoutMs: 50 }).connect(CONNECT, recorder().handlers));
    expect(err).toMatchObject({ code: 'ERR_ASR_CONNECT_TIMEOUT', retryable: true });
    expect(err.details).toMatchObject({ phase: 'starting' });
    await vi.waitFor(() => expect(srv.wire.closeCodes).toHaveLength(1));
  });

  it('connection refused → ERR_ASR_CONNECT (retryable)', async () => {
    const srv = await startServer();
    const url = srv.url;
    // close the server to get a port nobody listens on
    for (const s of servers.splice(0)) await new Promise<void>((r) => s.http.close(() => r()));
    const err = await rejection(provider(url).connect(CONNECT, recorder().handlers));
    expect(err).toMatchObject({ code: 'ERR_ASR_CONNECT', category: 'connectivity', retryable: true });
    expect(err.details).toMatchObject({ wsError: 'ECONNREFUSED' });
  });

  it('closed before task-started → ERR_ASR_CONNECT; close 1007 → ERR_ASR_BAD_REQUEST', async () => {
    const s1 = await startServer({ onRunTask: (ctx) => ctx.ws.close(1011, 'internal') });
    expect(await rejection(provider(s1.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_CONNECT',
      retryable: true,
      details: { closeCode: 1011 },
    });
    const s2 = await startServer({ onRunTask: (ctx) => ctx.ws.close(1007, 'Model not found') });
    expect(await rejection(provider(s2.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_BAD_REQUEST',
      retryable: false,
      details: { closeCode: 1007, closeReason: 'Model not found' },
    });
  });

  it('a malformed message before task-started fails the connect with ERR_ASR_PROTOCOL', async () => {
    const srv = await startServer({ onRunTask: (ctx) => ctx.ws.send('{"header":') });
    expect(await rejection(provider(srv.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_PROTOCOL',
      category: 'protocol',
      retryable: true,
    });
  });
});

describe('paraformer provider — failures after start', () => {
  it('task-failed mid-task → onError once (ERR_ASR_TASK_FAILED, retryable)', async () => {
    const srv = await startServer({
      onAudio(ctx) {
        ctx.ws.send(event(ctx.taskId, 'task-failed', {}, { error_code: 'CLIENT_ERROR', error_message: 'request timeout after 23 seconds.' }));
        ctx.ws.close(1000);
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(Buffer.alloc(1600));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    await vi.waitFor(() => expect(srv.wire.closeCodes).toHaveLength(1));
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({
      code: 'ERR_ASR_TASK_FAILED',
      retryable: true,
      details: { providerCode: 'CLIENT_ERROR', providerMessage: 'request timeout after 23 seconds.', taskId: conn.taskId },
    });
    // a later finish() reports the same failure instead of hanging
    expect(await rejection(conn.finish(100))).toBe(rec.errors[0]);
  });

  it('socket destroyed mid-task → onError once (ERR_ASR_DISCONNECTED)', async () => {
    const srv = await startServer({ onAudio: (ctx) => ctx.ws.terminate() });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(Buffer.alloc(1600));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    await new Promise((r) => setTimeout(r, 20));
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ code: 'ERR_ASR_DISCONNECTED', category: 'connectivity', retryable: true });
    conn.sendAudio(Buffer.alloc(1600)); // ignored, no throw
  });

  it('finish timeout → rejects ERR_ASR_FINISH_TIMEOUT and closes the socket; no onError', async () => {
    const srv = await startServer({ onFinishTask: () => undefined });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(Buffer.alloc(1600));
    const err = await rejection(conn.finish(50));
    expect(err).toMatchObject({ code: 'ERR_ASR_FINISH_TIMEOUT', retryable: true });
    await vi.waitFor(() => expect(srv.wire.closeCodes).toHaveLength(1));
    expect(rec.errors).toEqual([]);
    expect(srv.wire.texts.map((t) => t.header.action)).toEqual(['run-task', 'finish-task']);
  });

  it('task-failed during finish rejects finish instead of calling onError', async () => {
    const srv = await startServer({
      onFinishTask(ctx) {
        ctx.ws.send(event(ctx.taskId, 'task-failed', {}, { error_code: 'NO_VALID_AUDIO_ERROR', error_message: '' }));
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    expect(await rejection(conn.finish(1000))).toMatchObject({ code: 'ERR_ASR_TASK_FAILED', details: { providerCode: 'NO_VALID_AUDIO_ERROR' } });
    expect(rec.errors).toEqual([]);
  });

  it('drops single malformed messages (counted), keeps delivering, and fails after too many', async () => {
    const metrics = createMetrics();
    const srv = await startServer({
      onAudio(ctx) {
        const n = ctx.wire.binaries.length;
        if (n === 1) {
          ctx.ws.send('not json');
          ctx.ws.send(event(ctx.taskId, 'task-paused'));
          ctx.ws.send(Buffer.from([1, 2, 3]), { binary: true });
          ctx.ws.send(final('someone-elses-task', 0, 100, 'x'));
          ctx.ws.send(sentence(ctx.taskId, { begin_time: 'zero', text: 'x' }));
          ctx.ws.send(final(ctx.taskId, 0, 100, '好。'));
        } else {
          ctx.ws.send('still not json');
        }
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url, { maxProtocolErrors: 5 }, metrics).connect(CONNECT, rec.handlers);
    conn.sendAudio(Buffer.alloc(1600));
    await vi.waitFor(() => expect(rec.events).toHaveLength(1));
    expect(rec.events[0]).toMatchObject({ type: 'final', text: '好。' });
    expect(rec.errors).toEqual([]);
    const json = await metrics.registry.getSingleMetric('callscribe_asr_errors_total')?.get();
    expect(json?.values.find((v) => v.labels['code'] === 'ERR_ASR_PROTOCOL')?.value).toBe(5);
    // the sixth invalid message goes over the limit
    conn.sendAudio(Buffer.alloc(1600));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    expect(rec.errors[0]).toMatchObject({ code: 'ERR_ASR_PROTOCOL', category: 'protocol', retryable: true });
  });

  it('an unasked task-finished is a retryable task failure', async () => {
    const srv = await startServer({ onAudio: (ctx) => ctx.ws.send(event(ctx.taskId, 'task-finished', { output: {} })) });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(Buffer.alloc(1600));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    expect(rec.errors[0]).toMatchObject({ code: 'ERR_ASR_TASK_FAILED', retryable: true });
  });

  it('a server that stops answering pings is declared dead', async () => {
    const srv = await startServer({ autoPong: false });
    const rec = recorder();
    await provider(srv.url, { pingIntervalMs: 30 }).connect(CONNECT, rec.handlers);
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    expect(rec.errors[0]).toMatchObject({ code: 'ERR_ASR_DISCONNECTED', details: { reason: 'ping-timeout' } });
  });

  it('a server that answers pings stays up', async () => {
    const srv = await startServer();
    const rec = recorder();
    const conn = await provider(srv.url, { pingIntervalMs: 20 }).connect(CONNECT, rec.handlers);
    await new Promise((r) => setTimeout(r, 120));
    expect(rec.errors).toEqual([]);
    conn.close();
    await vi.waitFor(() => expect(srv.wire.closeCodes).toEqual([1000]));
    expect(rec.errors).toEqual([]); // close() is not an error
  });

  it('close() during finish rejects the finish with ERR_ASR_CLOSED', async () => {
    const srv = await startServer({ onFinishTask: () => undefined });
    const conn = await provider(srv.url).connect(CONNECT, recorder().handlers);
    const pending = conn.finish(5000);
    conn.close();
    expect(await rejection(pending)).toMatchObject({ code: 'ERR_ASR_CLOSED', retryable: false });
  });
});
