/**
 * The Qwen3-ASR-Flash-Realtime client against a tiny scripted `ws` server on 127.0.0.1:0 that
 * records the wire (upgrade headers and path, client events, decoded audio, close codes, and
 * one ordered log of both directions). The server here is deliberately independent of the
 * client's message builders and of src/emulator/.
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
import { createQwenProvider, sessionUrl, type QwenProviderOptions } from './provider.js';

/** The test server's own (minimal) view of a client event. */
const clientEvent = z.looseObject({ type: z.string(), event_id: z.string() });
type ClientEvent = z.infer<typeof clientEvent>;
const appendEvent = z.object({ type: z.literal('input_audio_buffer.append'), event_id: z.string(), audio: z.string() }).strict();

interface Wire {
  upgrades: IncomingHttpHeaders[];
  paths: string[];
  events: ClientEvent[];
  /** Decoded audio of each append, in order. */
  audio: Buffer[];
  /** Both directions in order: `C:<type>`, `S:<type>`, `C:close:<code>`, `C:binary`. */
  log: string[];
  closeCodes: number[];
  /** Audio bytes received before each commit. */
  commitsAtBytes: number[];
}

interface ScriptContext {
  readonly ws: WebSocket;
  readonly wire: Wire;
  /** Sends a server event (logged as `S:<type>`). */
  send(event: Record<string, unknown> & { type: string }): void;
  /** Sends raw text (logged as `S:raw`). */
  sendRaw(text: string): void;
}

interface Script {
  readonly rejectStatus?: number;
  readonly autoPong?: boolean;
  /** Default: session.created. */
  onConnection?(ctx: ScriptContext): void;
  /** Default: session.updated. */
  onSessionUpdate?(ctx: ScriptContext, msg: ClientEvent): void;
  onAppend?(ctx: ScriptContext, audio: Buffer, n: number): void;
  /** Default: session.finished. */
  onFinish?(ctx: ScriptContext): void;
  /** input_audio_buffer.commit (manual mode); `n` counts commits from 1. Default: no answer. */
  onCommit?(ctx: ScriptContext, msg: ClientEvent, n: number): void;
}

interface TestServer {
  readonly url: string;
  readonly wire: Wire;
}

const servers: { http: Server; wss: WebSocketServer }[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) {
    for (const c of s.wss.clients) c.terminate();
    s.wss.close();
    await new Promise<void>((r) => s.http.close(() => r()));
  }
});

const SESSION_ID = 'sess_Qa1b2c3d4e5f6g7h8i9j0k';

// server events, written out by hand (not with the client's code)
const created = () => ({ event_id: 'event_srv_created', type: 'session.created', session: { id: SESSION_ID, object: 'realtime.session', model: 'qwen3-asr-flash-realtime', modalities: ['text'], input_audio_format: 'pcm', input_audio_transcription: null, turn_detection: { type: 'server_vad', threshold: 0.2, silence_duration_ms: 800 } } });
const updated = () => ({ event_id: 'event_srv_updated', type: 'session.updated', session: { id: SESSION_ID, sample_rate: 8000, turn_detection: { type: 'server_vad', threshold: 0, silence_duration_ms: 400, create_response: true } } });
const started = (item: string, ms: number) => ({ type: 'input_audio_buffer.speech_started', audio_start_ms: ms, item_id: item, event_id: 'event_s1' });
const stopped = (item: string, ms: number) => ({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: ms, item_id: item, event_id: 'event_s2' });
const committed = (item: string, prev: string | null) => ({ type: 'input_audio_buffer.committed', previous_item_id: prev, item_id: item, event_id: 'event_s3' });
const itemCreated = (item: string) => ({ type: 'conversation.item.created', previous_item_id: null, item: { id: item, object: 'realtime.item', type: 'message', status: 'completed', role: 'user', content: [{ type: 'input_audio', transcript: null }] }, event_id: 'event_s4' });
const text = (item: string, t: string, stash: string, emotion = 'neutral') => ({ type: 'conversation.item.input_audio_transcription.text', item_id: item, content_index: 0, language: 'zh', emotion, text: t, stash, event_id: 'event_s5' });
const completed = (item: string, transcript: string, emotion: string) => ({ type: 'conversation.item.input_audio_transcription.completed', item_id: item, content_index: 0, language: 'zh', emotion, transcript, event_id: 'event_s6' });
const failed = (item: string) => ({ type: 'conversation.item.input_audio_transcription.failed', item_id: item, content_index: 0, error: { code: 'audio_unintelligible', message: 'The audio could not be transcribed.', param: null }, event_id: 'event_s7' });
const errorEvent = (type: string | null, code: string | null, message: string, param: string | null = null) => ({ type: 'error', event_id: 'event_s8', error: { type, code, message, param, event_id: 'event_client' } });
const finished = () => ({ event_id: 'event_s9', type: 'session.finished' });

async function startServer(script: Script = {}): Promise<TestServer> {
  const wire: Wire = { upgrades: [], paths: [], events: [], audio: [], log: [], closeCodes: [], commitsAtBytes: [] };
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
      const ctx: ScriptContext = {
        ws,
        wire,
        send(event) {
          wire.log.push(`S:${event.type}`);
          ws.send(JSON.stringify(event));
        },
        sendRaw(t) {
          wire.log.push('S:raw');
          ws.send(t);
        },
      };
      ws.on('close', (code) => {
        wire.closeCodes.push(code);
        wire.log.push(`C:close:${code}`);
      });
      ws.on('message', (data, isBinary) => {
        const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
        if (isBinary) {
          wire.log.push('C:binary');
          return;
        }
        const msg = clientEvent.parse(JSON.parse(buf.toString('utf8')));
        wire.events.push(msg);
        wire.log.push(`C:${msg.type}`);
        if (msg.type === 'session.update') {
          if (script.onSessionUpdate) script.onSessionUpdate(ctx, msg);
          else ctx.send(updated());
        } else if (msg.type === 'input_audio_buffer.append') {
          const audio = Buffer.from(appendEvent.parse(msg).audio, 'base64');
          wire.audio.push(audio);
          script.onAppend?.(ctx, audio, wire.audio.length);
        } else if (msg.type === 'session.finish') {
          if (script.onFinish) script.onFinish(ctx);
          else ctx.send(finished());
        } else if (msg.type === 'input_audio_buffer.commit') {
          wire.commitsAtBytes.push(wire.audio.reduce((n, a) => n + a.length, 0));
          script.onCommit?.(ctx, msg, wire.commitsAtBytes.length);
        }
      });
      if (script.onConnection) script.onConnection(ctx);
      else ctx.send(created());
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  servers.push({ http, wss });
  const { port } = http.address() as AddressInfo;
  return { url: `ws://127.0.0.1:${port}/api-ws/v1/realtime`, wire };
}

const CONNECT: AsrConnectOptions = {
  model: 'qwen3-asr-flash-realtime',
  sampleRateHz: 8000,
  language: 'zh',
  corpusText: '账单 退款 订单号',
  disfluencyRemoval: false,
  maxSentenceSilenceMs: 400,
};

function provider(url: string, over: Partial<QwenProviderOptions> = {}, metrics?: Metrics) {
  return createQwenProvider({
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

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** 100 ms of 8 kHz PCM16 with a recognisable pattern. */
function chunk(seed: number, bytes = 1600): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

async function errorCount(metrics: Metrics, code: string): Promise<number> {
  const json = await metrics.registry.getSingleMetric('callscribe_asr_errors_total')?.get();
  return json?.values.find((v) => v.labels['code'] === code)?.value ?? 0;
}

describe('qwen provider — happy path', () => {
  it('handshakes, configures the session, streams base64 audio, delivers a VAD sequence and finishes', async () => {
    const srv = await startServer({
      onAppend(ctx, _audio, n) {
        if (n === 1) {
          ctx.send(started('item_A', 40));
          ctx.send(text('item_A', '', '你'));
        }
        if (n === 2) {
          ctx.send(text('item_A', '你好', '，请问'));
          ctx.send(stopped('item_A', 180));
          ctx.send(committed('item_A', null));
          ctx.send(itemCreated('item_A'));
          ctx.send(completed('item_A', '你好。', 'angry'));
        }
        if (n === 3) ctx.send(started('item_B', 220));
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    expect(conn.taskId).toBe(SESSION_ID);

    const a = chunk(1);
    const b = chunk(2);
    const c = chunk(3);
    conn.sendAudio(a);
    conn.sendAudio(b);
    conn.sendAudio(c);
    await vi.waitFor(() => expect(srv.wire.audio).toHaveLength(3));
    await vi.waitFor(() => expect(rec.events).toHaveLength(3));
    conn.close();

    // upgrade: ?model=, key, OpenAI-Beta, user agent, workspace
    expect(srv.wire.paths).toEqual(['/api-ws/v1/realtime?model=qwen3-asr-flash-realtime']);
    const headers = srv.wire.upgrades[0];
    expect(headers?.['authorization']).toBe('Bearer sk-test-key');
    expect(headers?.['openai-beta']).toBe('realtime=v1');
    expect(headers?.['user-agent']).toBe('callscribe-test/1');
    expect(headers?.['x-dashscope-workspace']).toBe('ws-123');
    expect(headers?.['sec-websocket-extensions']).toBeUndefined(); // perMessageDeflate off
    // session.update: 8000 Hz as is, language, corpus, server VAD (threshold 0.0 default, silence from options)
    expect(srv.wire.events[0]).toEqual({
      event_id: expect.stringMatching(/^event_[0-9a-f]+$/),
      type: 'session.update',
      session: {
        modalities: ['text'],
        input_audio_format: 'pcm',
        sample_rate: 8000,
        input_audio_transcription: { language: 'zh', corpus: { text: '账单 退款 订单号' } },
        turn_detection: { type: 'server_vad', threshold: 0, silence_duration_ms: 400 },
      },
    });
    // appends: exactly the audio sent, one event per chunk, unique hex event ids
    expect(srv.wire.audio.map((x) => x.length)).toEqual([1600, 1600, 1600]);
    expect(Buffer.concat(srv.wire.audio).equals(Buffer.concat([a, b, c]))).toBe(true);
    const ids = srv.wire.events.map((e) => e.event_id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^event_[0-9a-f]{20}$/);
    // events: interim = text + stash (start from speech_started); final framed by the VAD times
    expect(rec.events).toEqual([
      { type: 'interim', startMs: 40, text: '你' },
      { type: 'interim', startMs: 40, text: '你好，请问' },
      { type: 'final', startMs: 40, endMs: 180, text: '你好。', words: [], emotion: { raw: 'angry', confidence: null } },
    ]);
    expect(rec.errors).toEqual([]);
  });

  it('finish() sends session.finish and waits for session.finished; a completed in between is delivered first', async () => {
    let closesWhenFinishedSent = -1;
    const srv = await startServer({
      onAppend(ctx, _audio, n) {
        if (n === 2) ctx.send(started('item_B', 120));
      },
      onFinish(ctx) {
        // the server takes its time: the client must neither close nor resolve meanwhile
        setTimeout(() => ctx.send(completed('item_B', '再见。', 'happy')), 40);
        setTimeout(() => {
          closesWhenFinishedSent = ctx.wire.closeCodes.length;
          ctx.send(finished());
        }, 80);
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    conn.sendAudio(chunk(2));
    conn.sendAudio(chunk(3, 800)); // 50 ms: 250 ms sent in all
    await vi.waitFor(() => expect(srv.wire.audio).toHaveLength(3));

    let resolved = false;
    const done = conn.finish(2000).then(() => {
      resolved = true;
    });
    await vi.waitFor(() => expect(srv.wire.log).toContain('S:conversation.item.input_audio_transcription.completed'));
    expect(resolved).toBe(false);
    await done;
    // the last utterance arrived before finish() resolved (no speech_stopped: it ends at the audio sent)
    expect(rec.events).toEqual([
      { type: 'final', startMs: 120, endMs: 250, text: '再见。', words: [], emotion: { raw: 'happy', confidence: null } },
    ]);
    expect(closesWhenFinishedSent).toBe(0);
    await vi.waitFor(() => expect(srv.wire.closeCodes).toEqual([1000]));
    // wire order: appends, session.finish, the pending completed, session.finished, then the client close
    expect(srv.wire.log.filter((l) => l !== 'S:input_audio_buffer.speech_started')).toEqual([
      'S:session.created',
      'C:session.update',
      'S:session.updated',
      'C:input_audio_buffer.append',
      'C:input_audio_buffer.append',
      'C:input_audio_buffer.append',
      'C:session.finish',
      'S:conversation.item.input_audio_transcription.completed',
      'S:session.finished',
      'C:close:1000',
    ]);
    expect(rec.errors).toEqual([]);
    conn.close(); // idempotent after finish
  });

  it('finish() with no speech: session.finished at once', async () => {
    const srv = await startServer();
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(Buffer.alloc(1600));
    await conn.finish(1000);
    expect(srv.wire.events.map((e) => e.type)).toEqual(['session.update', 'input_audio_buffer.append', 'session.finish']);
    await vi.waitFor(() => expect(srv.wire.closeCodes).toEqual([1000]));
    expect(rec.events).toEqual([]);
    // finish() twice returns the same settled promise; audio after finish is not sent
    await conn.finish(1000);
    conn.sendAudio(Buffer.alloc(1600));
    await delay(20);
    expect(srv.wire.audio).toHaveLength(1);
  });

  it('accepts text before speech_stopped and no committed/item.created (third-party order)', async () => {
    const srv = await startServer({
      onAppend(ctx, _audio, n) {
        if (n !== 1) return;
        ctx.send(started('item_C', 300));
        ctx.send(text('item_C', '', '我想', 'sad'));
        ctx.send(text('item_C', '我想', '退款', 'sad'));
        ctx.send(stopped('item_C', 1650));
        ctx.send(text('item_C', '我想退款', '。', 'sad'));
        ctx.send(completed('item_C', '我想退款。', 'sad'));
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    await vi.waitFor(() => expect(rec.events).toHaveLength(4));
    expect(rec.events).toEqual([
      { type: 'interim', startMs: 300, text: '我想' },
      { type: 'interim', startMs: 300, text: '我想退款' },
      { type: 'interim', startMs: 300, text: '我想退款。' },
      { type: 'final', startMs: 300, endMs: 1650, text: '我想退款。', words: [], emotion: { raw: 'sad', confidence: null } },
    ]);
    conn.close();
  });

  it('delivers an empty transcript as a final (the runner needs its end position)', async () => {
    const srv = await startServer({
      onAppend(ctx) {
        ctx.send(started('item_E', 0));
        ctx.send(stopped('item_E', 90));
        ctx.send(completed('item_E', '', 'neutral'));
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    await vi.waitFor(() => expect(rec.events).toHaveLength(1));
    expect(rec.events[0]).toEqual({ type: 'final', startMs: 0, endMs: 90, text: '', words: [], emotion: { raw: 'neutral', confidence: null } });
    conn.close();
  });

  it('counts session time in ms of audio at the connection sample rate (16 kHz)', async () => {
    const srv = await startServer({
      onAppend(ctx, _a, n) {
        if (n === 1) ctx.send(started('item_F', 10));
        if (n === 2) ctx.send(completed('item_F', 'hi', 'happy'));
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url).connect({ ...CONNECT, sampleRateHz: 16000 }, rec.handlers);
    conn.sendAudio(Buffer.alloc(3200)); // 100 ms at 16 kHz
    conn.sendAudio(Buffer.alloc(1600)); // 50 ms
    await vi.waitFor(() => expect(rec.events).toHaveLength(1));
    expect(rec.events[0]).toMatchObject({ startMs: 10, endMs: 150 });
    expect(srv.wire.events[0]).toMatchObject({ session: { sample_rate: 16000 } });
    conn.close();
  });

  it('leaves language/corpus and the workspace header out when unset; uses the configured VAD threshold', async () => {
    const srv = await startServer();
    const conn = await provider(srv.url, { workspace: undefined, vadThreshold: 0.3 }).connect(
      { ...CONNECT, model: 'qwen3-asr-flash-realtime-2025-10-27', language: undefined, corpusText: undefined, maxSentenceSilenceMs: 800 },
      recorder().handlers,
    );
    expect(srv.wire.paths).toEqual(['/api-ws/v1/realtime?model=qwen3-asr-flash-realtime-2025-10-27']);
    expect(srv.wire.upgrades[0]).not.toHaveProperty('x-dashscope-workspace');
    expect(srv.wire.events[0]?.['session']).toEqual({
      modalities: ['text'],
      input_audio_format: 'pcm',
      sample_rate: 8000,
      turn_detection: { type: 'server_vad', threshold: 0.3, silence_duration_ms: 800 },
    });
    conn.close();
  });

  it('sends no audio before session.updated (the connection resolves only then)', async () => {
    const srv = await startServer({
      onSessionUpdate(ctx) {
        setTimeout(() => ctx.send(updated()), 30);
      },
    });
    const conn = await provider(srv.url).connect(CONNECT, recorder().handlers);
    expect(srv.wire.log.slice(0, 3)).toEqual(['S:session.created', 'C:session.update', 'S:session.updated']);
    conn.sendAudio(chunk(1));
    await vi.waitFor(() => expect(srv.wire.audio).toHaveLength(1));
    conn.close();
  });

  it('ignores a session.updated that arrives before our session.update', async () => {
    const srv = await startServer({
      onConnection(ctx) {
        ctx.send(updated()); // unsolicited, before session.created
        ctx.send(created());
      },
      onSessionUpdate(ctx) {
        setTimeout(() => ctx.send(updated()), 20);
      },
    });
    const conn = await provider(srv.url).connect(CONNECT, recorder().handlers);
    expect(srv.wire.events.map((e) => e.type)).toEqual(['session.update']);
    expect(srv.wire.log.filter((l) => l === 'S:session.updated')).toHaveLength(2);
    conn.close();
  });

  it('describes its capabilities and maps emotion', () => {
    const p = provider('ws://127.0.0.1:1');
    expect(p.name).toBe('dashscope-qwen-asr');
    expect(p.models).toEqual(['qwen3-asr-flash-realtime', 'qwen3-asr-flash-realtime-2026-02-10', 'qwen3-asr-flash-realtime-2025-10-27']);
    for (const m of p.models) {
      expect(p.capabilities(m)).toEqual({
        emotionLabels: ['surprised', 'neutral', 'happy', 'sad', 'disgusted', 'angry', 'fearful'],
        emotionConfidence: false,
        wordTimestamps: false,
        sampleRatesHz: [8000, 16000],
      });
    }
    expect(() => p.capabilities('paraformer-realtime-8k-v2')).toThrow(AppError);
    expect(p.normaliseEmotion('qwen3-asr-flash-realtime', 'surprised', null)).toEqual({
      raw: 'surprised',
      provider: 'qwen3-asr-flash-realtime',
      confidence: null,
      valence: 0,
      arousal: 1,
    });
    expect(p.normaliseEmotion('qwen3-asr-flash-realtime', 'angry', 0.9)).toMatchObject({ valence: -1, confidence: null });
  });

  it('refuses a VAD threshold outside [-1, 1] at construction', () => {
    expect(() => provider('ws://127.0.0.1:1', { vadThreshold: 1.5 })).toThrow(AppError);
    expect(() => provider('ws://127.0.0.1:1', { vadThreshold: Number.NaN })).toThrow(AppError);
    expect(() => provider('ws://127.0.0.1:1', { vadThreshold: -1 })).not.toThrow();
  });

  it('builds the session URL with ?model= (or &model= after an existing query)', () => {
    expect(sessionUrl('wss://h/api-ws/v1/realtime', 'qwen3-asr-flash-realtime')).toBe('wss://h/api-ws/v1/realtime?model=qwen3-asr-flash-realtime');
    expect(sessionUrl('wss://h/r?x=1', 'a b')).toBe('wss://h/r?x=1&model=a%20b');
  });
});

describe('qwen provider — connect failures', () => {
  it('401 on the upgrade → ERR_ASR_AUTH (permanent); 403 the same', async () => {
    const s401 = await startServer({ rejectStatus: 401 });
    const err = await rejection(provider(s401.url).connect(CONNECT, recorder().handlers));
    expect(err).toMatchObject({ code: 'ERR_ASR_AUTH', category: 'authentication', retryable: false });
    expect(err.details).toEqual({ httpStatus: 401 });
    expect(s401.wire.upgrades).toHaveLength(1);
    const s403 = await startServer({ rejectStatus: 403 });
    expect(await rejection(provider(s403.url).connect(CONNECT, recorder().handlers))).toMatchObject({ code: 'ERR_ASR_AUTH', retryable: false });
  });

  it('429 → ERR_ASR_THROTTLED (retryable); 503 → ERR_ASR_CONNECT (retryable)', async () => {
    const s429 = await startServer({ rejectStatus: 429 });
    expect(await rejection(provider(s429.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_THROTTLED',
      category: 'rate_limit',
      retryable: true,
    });
    const s503 = await startServer({ rejectStatus: 503 });
    expect(await rejection(provider(s503.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_CONNECT',
      category: 'connectivity',
      retryable: true,
    });
  });

  it('close 1007 "Model not found" → ERR_ASR_UNSUPPORTED_MODEL (permanent)', async () => {
    const srv = await startServer({ onConnection: (ctx) => ctx.ws.close(1007, 'Model not found') });
    const err = await rejection(provider(srv.url).connect({ ...CONNECT, model: 'qwen3-asr-flash-realtime-2026-02-10' }, recorder().handlers));
    expect(err).toMatchObject({
      code: 'ERR_ASR_UNSUPPORTED_MODEL',
      category: 'invalid_request',
      retryable: false,
      details: { closeCode: 1007, closeReason: 'Model not found' },
    });
    expect(srv.wire.paths).toEqual(['/api-ws/v1/realtime?model=qwen3-asr-flash-realtime-2026-02-10']);
  });

  it('closed before session.updated otherwise → ERR_ASR_CONNECT (retryable)', async () => {
    const srv = await startServer({ onSessionUpdate: (ctx) => ctx.ws.close(1011, 'internal') });
    expect(await rejection(provider(srv.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_CONNECT',
      retryable: true,
      details: { closeCode: 1011 },
    });
  });

  it('error invalid_value before session.updated → ERR_ASR_BAD_REQUEST (permanent), details kept', async () => {
    const srv = await startServer({
      onSessionUpdate(ctx, msg) {
        ctx.send({ ...errorEvent('invalid_request_error', 'invalid_value', "Invalid value: 'pcm16'.", 'session.input_audio_format'), event_id: 'event_e1' });
        expect(msg.type).toBe('session.update');
      },
    });
    const err = await rejection(provider(srv.url).connect(CONNECT, recorder().handlers));
    expect(err).toMatchObject({ code: 'ERR_ASR_BAD_REQUEST', category: 'invalid_request', retryable: false });
    expect(err.details).toEqual({
      providerType: 'invalid_request_error',
      providerCode: 'invalid_value',
      providerMessage: "Invalid value: 'pcm16'.",
      providerParam: 'session.input_audio_format',
      taskId: SESSION_ID,
    });
  });

  it('a throttling error (even before session.created) → ERR_ASR_THROTTLED (retryable)', async () => {
    const srv = await startServer({
      onConnection(ctx) {
        ctx.send(errorEvent('invalid_request_error', 'Throttling.RateQuota', 'Requests rate limit exceeded, please try again later.'));
      },
    });
    expect(await rejection(provider(srv.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_THROTTLED',
      retryable: true,
      details: { providerCode: 'Throttling.RateQuota' },
    });
  });

  it('another error before session.updated → ERR_ASR_TASK_FAILED (retryable)', async () => {
    const srv = await startServer({ onSessionUpdate: (ctx) => ctx.send(errorEvent('server_error', 'internal_error', 'oops')) });
    expect(await rejection(provider(srv.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_TASK_FAILED',
      category: 'server',
      retryable: true,
    });
  });

  it('a missing key fails without opening a socket', async () => {
    const srv = await startServer();
    const err = await rejection(provider(srv.url, { apiKey: undefined }).connect(CONNECT, recorder().handlers));
    expect(err).toMatchObject({ code: 'ERR_ASR_NO_API_KEY', retryable: false });
    expect(srv.wire.upgrades).toHaveLength(0);
  });

  it('rejects unsupported models, sample rates and silence settings without connecting', async () => {
    const srv = await startServer();
    const p = provider(srv.url);
    expect(await rejection(p.connect({ ...CONNECT, model: 'paraformer-realtime-8k-v2' }, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_UNSUPPORTED_MODEL',
      retryable: false,
    });
    expect(await rejection(p.connect({ ...CONNECT, sampleRateHz: 24000 }, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_BAD_REQUEST',
      retryable: false,
    });
    expect(await rejection(p.connect({ ...CONNECT, maxSentenceSilenceMs: 100 }, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_BAD_REQUEST',
    });
    expect(srv.wire.upgrades).toHaveLength(0);
  });

  it('no session.created / no session.updated in time → ERR_ASR_CONNECT_TIMEOUT, socket closed', async () => {
    const s1 = await startServer({ onConnection: () => undefined });
    const e1 = await rejection(provider(s1.url, { connectTimeoutMs: 50 }).connect(CONNECT, recorder().handlers));
    expect(e1).toMatchObject({ code: 'ERR_ASR_CONNECT_TIMEOUT', retryable: true, details: { phase: 'awaiting-created' } });
    await vi.waitFor(() => expect(s1.wire.closeCodes).toHaveLength(1));
    const s2 = await startServer({ onSessionUpdate: () => undefined });
    const e2 = await rejection(provider(s2.url, { connectTimeoutMs: 50 }).connect(CONNECT, recorder().handlers));
    expect(e2).toMatchObject({ code: 'ERR_ASR_CONNECT_TIMEOUT', details: { phase: 'updating' } });
  });

  it('connection refused → ERR_ASR_CONNECT (retryable)', async () => {
    const srv = await startServer();
    const url = srv.url;
    for (const s of servers.splice(0)) await new Promise<void>((r) => s.http.close(() => r()));
    const err = await rejection(provider(url).connect(CONNECT, recorder().handlers));
    expect(err).toMatchObject({ code: 'ERR_ASR_CONNECT', category: 'connectivity', retryable: true });
    expect(err.details).toMatchObject({ wsError: 'ECONNREFUSED' });
  });

  it('a malformed message before session.updated fails the connect with ERR_ASR_PROTOCOL', async () => {
    const srv = await startServer({ onConnection: (ctx) => ctx.sendRaw('{"type":') });
    expect(await rejection(provider(srv.url).connect(CONNECT, recorder().handlers))).toMatchObject({
      code: 'ERR_ASR_PROTOCOL',
      category: 'protocol',
      retryable: true,
    });
  });

  it('unknown events before session.updated are ignored', async () => {
    const metrics = createMetrics();
    const srv = await startServer({
      onConnection(ctx) {
        ctx.send({ type: 'rate_limits.updated', rate_limits: [] });
        ctx.send(created());
      },
    });
    const conn = await provider(srv.url, {}, metrics).connect(CONNECT, recorder().handlers);
    expect(conn.taskId).toBe(SESSION_ID);
    expect(await errorCount(metrics, 'ERR_ASR_UNKNOWN_EVENT')).toBe(1);
    conn.close();
  });
});

describe('qwen provider — failures after start', () => {
  it('transcription.failed → onError once (ERR_ASR_ITEM_FAILED, retryable) and the socket is closed', async () => {
    const srv = await startServer({
      onAppend(ctx, _a, n) {
        if (n !== 1) return;
        ctx.send(started('item_X', 50));
        ctx.send(stopped('item_X', 900));
        ctx.send(failed('item_X'));
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    await vi.waitFor(() => expect(srv.wire.closeCodes).toEqual([1000]));
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({
      code: 'ERR_ASR_ITEM_FAILED',
      category: 'server',
      retryable: true,
      details: { itemId: 'item_X', providerCode: 'audio_unintelligible', taskId: SESSION_ID },
    });
    expect(rec.events).toEqual([]);
    // a later finish() reports the same failure instead of hanging
    expect(await rejection(conn.finish(100))).toBe(rec.errors[0]);
  });

  it('error invalid_request_error after start → onError permanent (ERR_ASR_BAD_REQUEST)', async () => {
    const srv = await startServer({
      onAppend: (ctx) => ctx.send(errorEvent('invalid_request_error', 'invalid_value', 'audio too large', 'audio')),
    });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    expect(rec.errors[0]).toMatchObject({ code: 'ERR_ASR_BAD_REQUEST', retryable: false, details: { providerParam: 'audio' } });
    await vi.waitFor(() => expect(srv.wire.closeCodes).toEqual([1000]));
  });

  it('error server_error after start → onError retryable (ERR_ASR_TASK_FAILED)', async () => {
    const srv = await startServer({ onAppend: (ctx) => ctx.send(errorEvent('server_error', null, 'internal')) });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    expect(rec.errors[0]).toMatchObject({ code: 'ERR_ASR_TASK_FAILED', retryable: true });
  });

  it('socket destroyed mid-session → onError once (ERR_ASR_DISCONNECTED)', async () => {
    const srv = await startServer({ onAppend: (ctx) => ctx.ws.terminate() });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    await delay(20);
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ code: 'ERR_ASR_DISCONNECTED', category: 'connectivity', retryable: true });
    conn.sendAudio(chunk(2)); // ignored, no throw
    conn.close();
    expect(rec.errors).toHaveLength(1);
  });

  it('finish timeout → rejects ERR_ASR_FINISH_TIMEOUT after sending session.finish, closes; no onError', async () => {
    const srv = await startServer({ onFinish: () => undefined });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    const err = await rejection(conn.finish(50));
    expect(err).toMatchObject({ code: 'ERR_ASR_FINISH_TIMEOUT', retryable: true });
    await vi.waitFor(() => expect(srv.wire.closeCodes).toHaveLength(1));
    expect(rec.errors).toEqual([]);
    expect(srv.wire.events.map((e) => e.type)).toEqual(['session.update', 'input_audio_buffer.append', 'session.finish']);
  });

  it('an error during finish rejects finish instead of calling onError', async () => {
    const srv = await startServer({ onFinish: (ctx) => ctx.send(errorEvent('server_error', 'internal_error', 'x')) });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    expect(await rejection(conn.finish(1000))).toMatchObject({ code: 'ERR_ASR_TASK_FAILED', details: { providerCode: 'internal_error' } });
    expect(rec.errors).toEqual([]);
  });

  it('an unasked session.finished is a retryable failure', async () => {
    const srv = await startServer({ onAppend: (ctx) => ctx.send(finished()) });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    expect(rec.errors[0]).toMatchObject({ code: 'ERR_ASR_TASK_FAILED', retryable: true });
  });

  it('ignores unknown events (counted, never fatal, however many)', async () => {
    const metrics = createMetrics();
    const srv = await startServer({
      onAppend(ctx) {
        for (let i = 0; i < 15; i++) ctx.send({ type: i % 2 ? 'response.created' : 'input_audio_buffer.cleared', event_id: `e${i}` });
        ctx.send(started('item_U', 0));
        ctx.send(stopped('item_U', 100));
        ctx.send(completed('item_U', '好。', 'neutral'));
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url, { maxProtocolErrors: 2 }, metrics).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    await vi.waitFor(() => expect(rec.events).toHaveLength(1));
    expect(rec.events[0]).toMatchObject({ type: 'final', text: '好。', startMs: 0, endMs: 100 });
    expect(rec.errors).toEqual([]);
    expect(await errorCount(metrics, 'ERR_ASR_UNKNOWN_EVENT')).toBe(15);
    expect(await errorCount(metrics, 'ERR_ASR_PROTOCOL')).toBe(0);
    conn.close();
  });

  it('drops single malformed events (counted), keeps delivering, and fails after too many', async () => {
    const metrics = createMetrics();
    const srv = await startServer({
      onAppend(ctx, _a, n) {
        if (n === 1) {
          ctx.sendRaw('not json');
          ctx.sendRaw('{"no":"type"}');
          ctx.ws.send(Buffer.from([1, 2, 3]), { binary: true });
          ctx.send({ type: 'conversation.item.input_audio_transcription.text', item_id: 'i', text: 5 });
          ctx.send({ type: 'input_audio_buffer.speech_started', audio_start_ms: 'soon' });
          ctx.send(started('item_M', 10));
          ctx.send(completed('item_M', '好。', 'happy'));
        } else {
          ctx.sendRaw('still not json');
        }
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url, { maxProtocolErrors: 5 }, metrics).connect(CONNECT, rec.handlers);
    conn.sendAudio(chunk(1));
    await vi.waitFor(() => expect(rec.events).toHaveLength(1));
    expect(rec.events[0]).toMatchObject({ type: 'final', text: '好。', startMs: 10 });
    expect(rec.errors).toEqual([]);
    expect(await errorCount(metrics, 'ERR_ASR_PROTOCOL')).toBe(5);
    // the sixth invalid message goes over the limit
    conn.sendAudio(chunk(2));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    expect(rec.errors[0]).toMatchObject({ code: 'ERR_ASR_PROTOCOL', category: 'protocol', retryable: true });
  });

  it('a server that stops answering pings is declared dead; one that answers stays up', async () => {
    const dead = await startServer({ autoPong: false });
    const r1 = recorder();
    await provider(dead.url, { pingIntervalMs: 30 }).connect(CONNECT, r1.handlers);
    await vi.waitFor(() => expect(r1.errors).toHaveLength(1));
    expect(r1.errors[0]).toMatchObject({ code: 'ERR_ASR_DISCONNECTED', details: { reason: 'ping-timeout' } });

    const alive = await startServer();
    const r2 = recorder();
    const conn = await provider(alive.url, { pingIntervalMs: 20 }).connect(CONNECT, r2.handlers);
    await delay(120);
    expect(r2.errors).toEqual([]);
    conn.close();
    await vi.waitFor(() => expect(alive.wire.closeCodes).toEqual([1000]));
    expect(r2.errors).toEqual([]); // close() is not an error
  });

  it('close() during finish rejects the finish with ERR_ASR_CLOSED; close() is idempotent', async () => {
    const srv = await startServer({ onFinish: () => undefined });
    const rec = recorder();
    const conn = await provider(srv.url).connect(CONNECT, rec.handlers);
    const pending = conn.finish(5000);
    conn.close();
    conn.close();
    expect(await rejection(pending)).toMatchObject({ code: 'ERR_ASR_CLOSED', retryable: false });
    await vi.waitFor(() => expect(srv.wire.closeCodes).toEqual([1000]));
    expect(rec.errors).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Manual turn detection (turn_detection null; the client commits, spec B3.3 / B5)

/** 8 kHz PCM16LE: `ms` of a square wave (RMS = amplitude, well above the 300 default). */
function tone(ms: number, amplitude = 3000): Buffer {
  const b = Buffer.alloc(ms * 16);
  for (let i = 0; i < b.length / 2; i++) b.writeInt16LE(i % 2 === 0 ? amplitude : -amplitude, i * 2);
  return b;
}
const quiet = (ms: number) => Buffer.alloc(ms * 16);

/** Sends audio the way the runner does: 100 ms chunks. */
function sendIn100ms(conn: { sendAudio(pcm: Buffer): void }, audio: Buffer): void {
  for (let i = 0; i < audio.length; i += 1600) conn.sendAudio(audio.subarray(i, i + 1600));
}

const commitTypes = (wire: Wire) => wire.events.filter((e) => e.type === 'input_audio_buffer.commit');

/** Answers the n-th commit with committed → item.created → text → completed for item_M<n>. */
function answerCommits(transcripts: string[], emotion = 'angry'): Pick<Script, 'onCommit'> {
  return {
    onCommit(ctx, _msg, n) {
      const id = `item_M${n}`;
      const t = transcripts[n - 1] ?? '';
      ctx.send(committed(id, n === 1 ? null : `item_M${n - 1}`));
      ctx.send(itemCreated(id));
      ctx.send(text(id, '', t.slice(0, 1), emotion));
      ctx.send(completed(id, t, emotion));
    },
  };
}

describe('qwen provider — manual turn detection', () => {
  it('sends turn_detection null and commits after each sentence + silence, exactly at the turn end', async () => {
    const srv = await startServer(answerCommits(['你好。', '再见。']));
    const rec = recorder();
    const conn = await provider(srv.url, { turnDetection: 'manual' }).connect(CONNECT, rec.handlers);
    // 300 ms silence, 1.05 s speech, 2.55 s silence, 500 ms speech (at 3.9 s), 500 ms silence
    sendIn100ms(conn, Buffer.concat([quiet(300), tone(1050), quiet(2550), tone(500), quiet(500)]));
    await vi.waitFor(() => expect(rec.events.filter((e) => e.type === 'final')).toHaveLength(2));

    expect(srv.wire.events[0]).toMatchObject({
      type: 'session.update',
      session: { modalities: ['text'], input_audio_format: 'pcm', sample_rate: 8000, turn_detection: null },
    });
    expect(srv.wire.events[0]?.['session']).toHaveProperty('turn_detection', null);
    // one commit per sentence, 400 ms (maxSentenceSilenceMs) after its last voiced window:
    // the 100 ms chunk holding that point (1750 ms) is split there
    expect(srv.wire.commitsAtBytes).toEqual([(1350 + 400) * 16, (4400 + 400) * 16]);
    expect(srv.wire.audio.map((a) => a.length).slice(17, 19)).toEqual([800, 800]);
    for (const e of commitTypes(srv.wire)) expect(Object.keys(e).sort()).toEqual(['event_id', 'type']);
    expect(srv.wire.audio.reduce((n, a) => n + a.length, 0)).toBe(4900 * 16);
    expect(rec.events).toEqual([
      { type: 'interim', startMs: 300, text: '你' },
      { type: 'final', startMs: 300, endMs: 1350, text: '你好。', words: [], emotion: { raw: 'angry', confidence: null } },
      { type: 'interim', startMs: 3900, text: '再' },
      { type: 'final', startMs: 3900, endMs: 4400, text: '再见。', words: [], emotion: { raw: 'angry', confidence: null } },
    ]);
    await conn.finish(1000); // nothing pending: no third commit
    expect(commitTypes(srv.wire)).toHaveLength(2);
    await vi.waitFor(() => expect(srv.wire.closeCodes).toEqual([1000]));
    expect(srv.wire.log.slice(-4)).toEqual(['C:input_audio_buffer.append', 'C:session.finish', 'S:session.finished', 'C:close:1000']);
    expect(rec.errors).toEqual([]);
  });

  it('never commits silence or sub-threshold noise, not even at finish', async () => {
    const srv = await startServer();
    const rec = recorder();
    const conn = await provider(srv.url, { turnDetection: 'manual', manualVadRms: 500 }).connect(CONNECT, rec.handlers);
    sendIn100ms(conn, Buffer.concat([quiet(3000), tone(2000, 400), quiet(1000)]));
    await conn.finish(1000);
    expect(srv.wire.audio).toHaveLength(60);
    expect(commitTypes(srv.wire)).toEqual([]);
    expect(srv.wire.events.at(-1)?.type).toBe('session.finish');
  });

  it('server VAD mode (the default) never commits', async () => {
    const srv = await startServer();
    const conn = await provider(srv.url).connect(CONNECT, recorder().handlers);
    sendIn100ms(conn, Buffer.concat([tone(1000), quiet(1000)]));
    await conn.finish(1000);
    expect(commitTypes(srv.wire)).toEqual([]);
    expect(srv.wire.events[0]?.['session']).toMatchObject({ turn_detection: { type: 'server_vad' } });
  });

  it('finish() commits the turn still open, then sends session.finish; its final comes first', async () => {
    const srv = await startServer({
      ...answerCommits(['最后一句。']),
      onFinish(ctx) {
        setTimeout(() => ctx.send(finished()), 20);
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url, { turnDetection: 'manual' }).connect(CONNECT, rec.handlers);
    sendIn100ms(conn, Buffer.concat([quiet(200), tone(700), quiet(200)])); // pause < 400 ms: still open
    await vi.waitFor(() => expect(srv.wire.audio).toHaveLength(11));
    expect(commitTypes(srv.wire)).toEqual([]);
    await conn.finish(1000);
    expect(srv.wire.log.filter((l) => !l.endsWith('append'))).toEqual([
      'S:session.created',
      'C:session.update',
      'S:session.updated',
      'C:input_audio_buffer.commit',
      'S:input_audio_buffer.committed',
      'S:conversation.item.created',
      'S:conversation.item.input_audio_transcription.text',
      'S:conversation.item.input_audio_transcription.completed',
      'C:session.finish',
      'S:session.finished',
    ]);
    expect(srv.wire.commitsAtBytes).toEqual([1100 * 16]);
    expect(rec.events.at(-1)).toEqual({ type: 'final', startMs: 200, endMs: 900, text: '最后一句。', words: [], emotion: { raw: 'angry', confidence: null } });
  });

  it('forces a commit after manualMaxTurnMs of continuous speech (spec B6 cap)', async () => {
    const srv = await startServer(answerCommits(['一', '二', '三']));
    const rec = recorder();
    const conn = await provider(srv.url, { turnDetection: 'manual', manualMaxTurnMs: 1000 }).connect(CONNECT, rec.handlers);
    sendIn100ms(conn, Buffer.concat([tone(2500), quiet(500)]));
    await vi.waitFor(() => expect(rec.events.filter((e) => e.type === 'final')).toHaveLength(3));
    expect(srv.wire.commitsAtBytes).toEqual([1000 * 16, 2000 * 16, 2900 * 16]);
    expect(rec.events.filter((e) => e.type === 'final').map((e) => [e.startMs, e.type === 'final' ? e.endMs : -1])).toEqual([
      [0, 1000],
      [1000, 2000],
      [2000, 2500],
    ]);
  });

  it('an empty-buffer error answering a commit is counted and the session goes on (times stay aligned)', async () => {
    const metrics = createMetrics();
    const srv = await startServer({
      onCommit(ctx, msg, n) {
        if (n === 1) {
          ctx.send({ type: 'error', event_id: 'event_e', error: { type: 'invalid_request_error', code: 'input_audio_buffer_commit_empty', message: 'Error committing input audio buffer: the buffer is empty.', param: null, event_id: msg.event_id } });
          return;
        }
        ctx.send(committed('item_X', null));
        ctx.send(completed('item_X', '第二句。', 'neutral'));
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url, { turnDetection: 'manual' }, metrics).connect(CONNECT, rec.handlers);
    sendIn100ms(conn, Buffer.concat([tone(500), quiet(500), tone(300), quiet(500)]));
    await vi.waitFor(() => expect(rec.events).toHaveLength(1));
    expect(rec.events[0]).toMatchObject({ type: 'final', startMs: 1000, endMs: 1300, text: '第二句。' });
    expect(rec.errors).toEqual([]);
    expect(await errorCount(metrics, 'ERR_ASR_COMMIT_REJECTED')).toBe(1);
    await conn.finish(1000);
  });

  it('any other error answering a commit takes the normal path (onError, permanent for invalid_request_error)', async () => {
    const srv = await startServer({
      onCommit(ctx, msg) {
        ctx.send({ type: 'error', event_id: 'event_e', error: { type: 'invalid_request_error', code: 'invalid_value', message: 'input_audio_buffer.commit is only available in manual mode.', param: 'type', event_id: msg.event_id } });
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url, { turnDetection: 'manual' }).connect(CONNECT, rec.handlers);
    sendIn100ms(conn, Buffer.concat([tone(500), quiet(500)]));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1));
    expect(rec.errors[0]).toMatchObject({ code: 'ERR_ASR_BAD_REQUEST', retryable: false });
    conn.close();
  });

  it('a server that sends no committed events: each new item takes the next turn', async () => {
    const srv = await startServer({
      onCommit(ctx, _msg, n) {
        ctx.send(completed(`item_N${n}`, `句${n}`, 'happy'));
      },
    });
    const rec = recorder();
    const conn = await provider(srv.url, { turnDetection: 'manual' }).connect(CONNECT, rec.handlers);
    sendIn100ms(conn, Buffer.concat([quiet(100), tone(400), quiet(600), tone(200), quiet(400)]));
    await vi.waitFor(() => expect(rec.events).toHaveLength(2));
    expect(rec.events.map((e) => (e.type === 'final' ? [e.startMs, e.endMs, e.text] : null))).toEqual([
      [100, 500, '句1'],
      [1100, 1300, '句2'],
    ]);
    conn.close();
  });

  it('validates the manual-mode options at construction', () => {
    expect(() => provider('ws://127.0.0.1:1', { turnDetection: 'semantic' as 'manual' })).toThrow(AppError);
    expect(() => provider('ws://127.0.0.1:1', { manualVadRms: -1 })).toThrow(AppError);
    expect(() => provider('ws://127.0.0.1:1', { manualVadRms: Number.NaN })).toThrow(AppError);
    expect(() => provider('ws://127.0.0.1:1', { manualMaxTurnMs: 60_001 })).toThrow(AppError);
    expect(() => provider('ws://127.0.0.1:1', { manualMaxTurnMs: 999 })).toThrow(AppError);
    expect(() => provider('ws://127.0.0.1:1', { turnDetection: 'manual', manualVadRms: 0, manualMaxTurnMs: 60_000 })).not.toThrow();
  });
});
