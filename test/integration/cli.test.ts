/** The CLI as a user runs it: help texts, config errors that name the variable. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/callscribe.js');

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('callscribe CLI', () => {
  it('lists every command', async () => {
    const { code, stdout } = await cli(['--help']);
    expect(code).toBe(0);
    for (const c of ['serve', 'ingest', 'worker', 'migrate', 'emulator', 'simulate']) expect(stdout).toContain(`  ${c}`);
  });

  it.each(['serve', 'ingest', 'worker', 'migrate', 'emulator', 'simulate', 'demo'])('has --help for %s', async (name) => {
    const { code, stdout } = await cli([name, '--help']);
    expect(code).toBe(0);
    expect(stdout).toContain(`callscribe ${name}`);
  });

  it('says the emulator is an emulator', async () => {
    const { stdout } = await cli(['emulator', '--help']);
    expect(stdout).toMatch(/EMULATOR/);
    expect(stdout).toMatch(/does not recognise speech/);
  });

  it('stops start-up on a bad variable, naming it', async () => {
    const { code, stderr } = await cli(['serve'], { PORT: 'eighty', LOG_LEVEL: 'silent' });
    expect(code).toBe(78);
    expect(stderr).toContain('PORT');
  });

  it('rejects unknown commands and options', async () => {
    expect((await cli(['transmogrify'])).code).toBe(2);
    expect((await cli(['simulate', '--bogus'])).code).toBe(2);
  });
});
