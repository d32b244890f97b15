/**
 * Redis isolation for tests: a unique BullMQ prefix per test (or file) on the shared Redis,
 * and removal of every key under it afterwards. Also a private redis-server on a free port for
 * tests that need to stop and restart Redis.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';

const run = promisify(execFile);

export const TEST_REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/** A BullMQ prefix no other test uses, e.g. cstest-persist-1a2b3c4d5e6f. */
export function uniquePrefix(tag = 'test'): string {
  return `cstest-${tag.replace(/[^A-Za-z0-9_.-]/g, '_')}-${randomBytes(6).toString('hex')}`;
}

/** Deletes every key under `<prefix>:` (SCAN + UNLINK); returns how many. */
export async function deleteKeys(redisUrl: string, prefix: string): Promise<number> {
  if (!/^[A-Za-z0-9_.-]+$/.test(prefix)) throw new Error(`refusing to delete keys of prefix ${prefix}`);
  const client = new Redis(redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
  client.on('error', () => undefined);
  await client.connect();
  let deleted = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) deleted += await client.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
  return deleted;
}

export interface TestRedis {
  readonly url: string;
  readonly prefix: string;
  /** Deletes the prefix's keys. */
  cleanup(): Promise<number>;
}

export function createTestRedis(tag = 'test', url = TEST_REDIS_URL): TestRedis {
  const prefix = uniquePrefix(tag);
  return { url, prefix, cleanup: () => deleteKeys(url, prefix) };
}

/** A TCP port that was free a moment ago (bind to 0, read, release). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A throwaway redis-server (no persistence) the test can stop and start again. */
export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  start(): Promise<void>;
  /** SHUTDOWN NOSAVE; resolves once the port refuses connections. */
  stop(): Promise<void>;
}

export function privateRedis(port: number): PrivateRedis {
  const url = `redis://127.0.0.1:${port}`;
  const ping = async (): Promise<boolean> => {
    try {
      const { stdout } = await run('redis-cli', ['-p', String(port), 'ping']);
      return stdout.trim() === 'PONG';
    } catch {
      return false;
    }
  };
  const waitFor = async (up: boolean) => {
    for (let i = 0; i < 100; i++) {
      if ((await ping()) === up) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server on ${port} did not ${up ? 'start' : 'stop'}`);
  };
  return {
    port,
    url,
    async start() {
      await run('redis-server', [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--save', '',
        '--appendonly', 'no',
        '--maxmemory-policy', 'noeviction',
        '--daemonize', 'yes',
      ]);
      await waitFor(true);
    },
    async stop() {
      await run('redis-cli', ['-p', String(port), 'shutdown', 'nosave']).catch(() => undefined);
      await waitFor(false);
    },
  };
}
