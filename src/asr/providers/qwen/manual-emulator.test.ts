/**
 * Manual turn detection end to end against the DashScope emulator (src/emulator, real sockets
 * on 127.0.0.1:0) playing the zh-billing-complaint call: the client's local VAD decides the
 * turns and commits them; the emulator answers each commit from the call's script.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { AppError } from '../../../core/errors.js';
import { startEmulator, type EmulatorHandle } from '../../../emulator/server.js';
import { parseWav } from '../../../emulator/script.js';
import { silentLogger } from '../../../observability/logger.js';
import type { AsrEvent } from '../../provider.js';
import { createQwenProvider } from './provider.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZH_CALL = path.resolve(HERE, '../../../../../shared/fixtures/calls/zh-billing-complaint');
const KEY = 'sk-test-emulator';

interface ScriptLine {
  role: string;
  text: string;
  startMs: number;
  endMs: number;
  emotion: { qwen: string };
}

const emulators: EmulatorHandle[] = [];
afterEach(async () => {
  await Promise.all(emulators.splice(0).map((e) => e.close()));
});

describe('qwen manual turn detection against the emulator', () => {
  it('turns the customer track into its 6 lines, with the qwen emotions and local-VAD times within 300 ms', async () => {
    const lines = (JSON.parse(readFileSync(path.join(ZH_CALL, 'script.json'), 'utf8')) as { lines: ScriptLine[] }).lines;
    const customerLines = lines.filter((l) => l.role === 'customer');
    const customer = parseWav(readFileSync(path.join(ZH_CALL, 'customer.wav'))).pcm;
    const e = await startEmulator({ host: '127.0.0.1', port: 0, apiKey: KEY, script: { dir: ZH_CALL }, logger: silentLogger });
    emulators.push(e);

    const provider = createQwenProvider({ url: `${e.url}/api-ws/v1/realtime`, apiKey: KEY, logger: silentLogger, turnDetection: 'manual' });
    const events: AsrEvent[] = [];
    const errors: AppError[] = [];
    const conn = await provider.connect(
      { model: 'qwen3-asr-flash-realtime', sampleRateHz: 8000, language: 'zh', disfluencyRemoval: false, maxSentenceSilenceMs: 400 },
      { onEvent: (ev) => events.push(ev), onError: (err) => errors.push(err) },
    );
    for (let i = 0; i < customer.length; i += 1600) conn.sendAudio(customer.subarray(i, i + 1600));
    await conn.finish(10_000);

    const finals = events.flatMap((ev) => (ev.type === 'final' ? [ev] : []));
    expect(errors).toEqual([]);
    expect(finals.map((f) => f.text)).toEqual(customerLines.map((l) => l.text));
    expect(finals.map((f) => f.emotion?.raw)).toEqual(customerLines.map((l) => l.emotion.qwen));
    customerLines.forEach((l, i) => {
      expect(Math.abs(finals[i]!.startMs - l.startMs)).toBeLessThanOrEqual(300);
      expect(Math.abs(finals[i]!.endMs - l.endMs)).toBeLessThanOrEqual(300);
    });
    expect(events.filter((ev) => ev.type === 'interim').length).toBeGreaterThan(6);
    // every item came from one of our commits (the emulator commits nothing by itself in
    // manual mode before session.finish), and no commit was refused
    expect(e.stats).toMatchObject({ qwenSessions: 1, qwenSessionsFinished: 1, qwenItemsCompleted: 6 });
    expect(e.stats.qwenErrors).toEqual({});
  });
});
