/** The CLI as a user runs it: help texts, config errors that name the variable. */
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createTestDatabase } from '../support/postgres.js';
import { deleteKeys, uniquePrefix } from '../support/redis.js';

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

  it('says which service is down when the demo cannot run', async () => {
    const { code, stderr } = await cli(['demo'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/callscribe', LOG_LEVEL: 'silent' });
    expect(code).toBe(1);
    expect(stderr).toContain('Postgres is not reachable at 127.0.0.1:1');
    expect(stderr).not.toContain('Redis is not reachable');
  });

  it('serve applies migrations, listens, and drains on SIGTERM with exit code 0', async () => {
    const db = await createTestDatabase({ migrate: false });
    const prefix = uniquePrefix('sigterm');
    try {
      const child = spawn(process.execPath, [CLI, 'serve'], {
        env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DATABASE_URL: db.url, QUEUE_PREFIX: prefix, LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`serve did not start: ${out}`)), 20_000);
        child.stdout.on('data', () => {
          const m = /"port":(\d+)[^\n]*callscribe listening/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
      });
      // no API key: the service starts and says calls cannot be transcribed
      expect(out).toContain('ERR_ASR_NO_API_KEY');
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(out).toContain('"msg":"draining"');
      expect(out).toContain('"msg":"stopped"');
      // the migrations ran against the fresh database
      const pg = await import('pg');
      const client = new pg.default.Client({ connectionString: db.url });
      await client.connect();
      const res = await client.query("select to_regclass('public.utterances') as t");
      await client.end();
      expect(res.rows[0].t).toBe('utterances');
    } finally {
      await db.drop();
      await deleteKeys('redis://127.0.0.1:6379', prefix);
    }
  });
});
