/**
 * End-to-end harness: a fresh database, a unique queue prefix, the DashScope emulator and the
 * service itself (the same startService() the CLI uses), on ephemeral ports.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import type pg from 'pg';
import { loadEnv, type Env } from '../../src/config/env.js';
import { silentLogger } from '../../src/observability/logger.js';
import { UTTERANCES_QUEUE } from '../../src/queue/jobs.js';
import { startService, type Service } from '../../src/service.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const FIXTURES = path.resolve(HERE, '../../../shared/fixtures/calls');
export const ZH_CALL = path.join(FIXTURES, 'zh-billing-complaint');
export const EN_CALL = path.join(FIXTURES, 'en-auto-repairs');

export function serviceEnv(vars: Record<string, string>): Env {
  return loadEnv({
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    MIGRATE_ON_START: 'false',
    ASR_RETRY_MIN_MS: '50',
    ASR_RETRY_MAX_MS: '400',
    DRAIN_TIMEOUT_MS: '10000',
    ...vars,
  });
}

export async function startTestService(vars: Record<string, string>, mode: 'serve' | 'ingest' | 'worker' = 'serve'): Promise<Service> {
  return startService(serviceEnv(vars), mode, { logger: silentLogger });
}

export interface StoredUtterance {
  call_id: string;
  role: string;
  track: string;
  seq: number;
  start_ms: number;
  end_ms: number;
  text: string;
  char_count: number;
  words: Array<{ startMs: number; endMs: number; text: string; punctuation: string }>;
  emotion_raw: string | null;
  emotion_confidence: number | null;
  valence: number | null;
  model: string;
  audio_end_at: Date | null;
  final_received_at: Date | null;
  enqueued_at: Date | null;
}

export interface StoredCall {
  id: string;
  status: string;
  end_reason: string | null;
  duration_ms: number | null;
  custom_parameters: Record<string, string>;
  roles: Record<string, string>;
  call_sid: string | null;
  stream_sid: string | null;
}

/** Waits until the call of `streamSid` has ended in Postgres and the queue is idle. */
export async function waitForCall(
  pool: pg.Pool,
  redisUrl: string,
  prefix: string,
  streamSid: string,
  timeoutMs = 30_000,
): Promise<{ call: StoredCall; utterances: StoredUtterance[]; streams: Array<Record<string, unknown>> }> {
  const queue = new Queue(UTTERANCES_QUEUE, { connection: { url: redisUrl }, prefix });
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await pool.query<StoredCall>('select * from calls where stream_sid = $1', [streamSid]);
      const call = res.rows[0];
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      const busy = Object.values(counts).reduce((a, b) => a + b, 0);
      if (call && call.status !== 'active' && busy === 0) {
        const utts = await pool.query<StoredUtterance>(
          'select * from utterances where call_id = $1 order by start_ms, role',
          [call.id],
        );
        const streams = await pool.query('select * from call_streams where call_id = $1 order by role', [call.id]);
        return { call, utterances: utts.rows, streams: streams.rows };
      }
      if (Date.now() > deadline) {
        throw new Error(`call ${streamSid} did not finish in ${timeoutMs} ms (call=${JSON.stringify(call)}, queue=${JSON.stringify(counts)})`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await queue.close();
  }
}

/**
 * What Postgres stores for a zh-billing-complaint line under the default PII_MODE=redact: the
 * mobile number of line 4 becomes [PHONE] (written out here, independent of the redactor).
 */
export function storedLineText(text: string): string {
  return text.replace('13812345678', '[PHONE]');
}
