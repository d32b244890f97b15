/** `callscribe emulator`: the DashScope emulator as a standalone process. */
import { statSync } from 'node:fs';
import path from 'node:path';
import { startEmulator } from '../emulator/server.js';
import type { EmulatorKnobs } from '../emulator/knobs.js';
import { createLogger } from '../observability/logger.js';

function intOption(values: Record<string, unknown>, name: string): number | undefined {
  const raw = values[name];
  if (typeof raw !== 'string') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got "${raw}"`);
  return n;
}

export async function runEmulator(values: Record<string, unknown>): Promise<number> {
  const logger = createLogger(process.env['LOG_LEVEL'] ?? 'info', 'dashscope-emulator');
  let scriptDir: string | undefined;
  if (typeof values['script'] === 'string') {
    const p = path.resolve(values['script']);
    scriptDir = statSync(p).isDirectory() ? p : path.dirname(p);
  }
  const knobs: Partial<EmulatorKnobs> = {};
  const rps = intOption(values, 'rps');
  if (rps !== undefined) knobs.rps = rps;
  const resultDelay = intOption(values, 'result-delay-ms');
  if (resultDelay !== undefined) knobs.resultDelayMs = resultDelay;
  const dropAfter = intOption(values, 'drop-after-frames');
  if (dropAfter !== undefined) knobs.faults = { ...knobs.faults, dropAfterFrames: dropAfter, dropConnections: 1 };
  if (typeof values['fail-task'] === 'string') {
    knobs.faults = {
      ...knobs.faults,
      failTasks: { code: values['fail-task'], message: 'injected failure (emulator --fail-task)', count: 1 },
    };
  }
  const handle = await startEmulator({
    host: typeof values['host'] === 'string' ? values['host'] : '127.0.0.1',
    port: intOption(values, 'port') ?? 8765,
    apiKey: typeof values['api-key'] === 'string' ? values['api-key'] : undefined,
    script: scriptDir ? { dir: scriptDir } : undefined,
    knobs,
    logger,
  });
  process.stdout.write(
    `DashScope EMULATOR (does not recognise speech) listening on ${handle.url}/api-ws/v1/inference (paraformer) and ${handle.url}/api-ws/v1/realtime (qwen)\n`,
  );
  return new Promise<number>((resolve) => {
    const stop = () => void handle.close().then(() => resolve(0));
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
