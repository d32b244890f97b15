/**
 * `npm run demo`: the whole pipeline offline. Starts the DashScope emulator with the fixture's
 * script, starts callscribe (ingest + workers) pointed at it, plays the fixture call as a
 * Twilio Media Stream, and prints the call's transcript as stored in Postgres.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { loadEnv, type Env } from '../config/env.js';
import { errorMessage } from '../core/errors.js';
import { ensureDatabase, runMigrations } from '../db/migrate.js';
import { startEmulator } from '../emulator/server.js';
import { createLogger } from '../observability/logger.js';
import { UTTERANCES_QUEUE } from '../queue/jobs.js';
import { startService } from '../service.js';
import { loadFixtureCall } from '../simulator/fixture-call.js';
import { playTwilioCall } from '../simulator/twilio-client.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEFAULT_DEMO_CALL = path.resolve(REPO_ROOT, '../shared/fixtures/calls/zh-billing-complaint');

function describeTarget(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || (u.protocol.startsWith('postgres') ? '5432' : '6379')}`;
}

/** Fails with a clear message when Postgres or Redis is not answering. */
export async function checkServices(env: Env): Promise<void> {
  const problems: string[] = [];
  // the maintenance database: the demo's own database may not exist yet (migrate creates it)
  const maintenance = new URL(env.DATABASE_URL);
  maintenance.pathname = '/postgres';
  const client = new pg.Client({ connectionString: maintenance.toString(), connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (err) {
    problems.push(`Postgres is not reachable at ${describeTarget(env.DATABASE_URL)} (${errorMessage(err)}). Start it, e.g. pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`);
  } finally {
    await client.end().catch(() => undefined);
  }
  const redis = new Redis(env.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 3000 });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    problems.push(`Redis is not reachable at ${describeTarget(env.REDIS_URL)} (${errorMessage(err)}). Start it, e.g. redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no`);
  } finally {
    redis.disconnect();
  }
  if (problems.length) throw new Error(`cannot run the demo:\n  - ${problems.join('\n  - ')}`);
}

function fmtMs(ms: number): string {
  const s = ms / 1000;
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, '0')}`;
}

export async function runDemo(values: Record<string, unknown>): Promise<number> {
  const callDir = typeof values['call'] === 'string' ? path.resolve(values['call']) : DEFAULT_DEMO_CALL;
  const speed = typeof values['speed'] === 'string' ? Number(values['speed']) : 4;
  if (!Number.isFinite(speed) || speed <= 0) throw new Error('--speed must be a positive number');
  const apiKey = 'demo-emulator-key';
  const base = loadEnv();
  const logger = createLogger(process.env['LOG_LEVEL'] ?? 'warn');
  await checkServices(base);
  const out = (line: string) => process.stdout.write(`${line}\n`);

  out('callscribe demo — everything runs locally; the recogniser is the DashScope EMULATOR,');
  out('which answers from the fixture script instead of recognising speech.\n');
  await ensureDatabase(base.DATABASE_URL);
  await runMigrations(base.DATABASE_URL, logger);
  out(`✓ database ready (${describeTarget(base.DATABASE_URL)})`);

  const emulator = await startEmulator({ host: '127.0.0.1', port: 0, apiKey, script: { dir: callDir }, logger });
  out(`✓ DashScope emulator on ${emulator.url}`);
  const env = loadEnv({
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    DASHSCOPE_API_KEY: apiKey,
    DASHSCOPE_INFERENCE_URL: `${emulator.url}/api-ws/v1/inference`,
    DASHSCOPE_REALTIME_URL: `${emulator.url}/api-ws/v1/realtime`,
    QUEUE_PREFIX: 'callscribe-demo',
    MIGRATE_ON_START: 'false',
  });
  const service = await startService(env, 'serve', { logger });
  const twilioUrl = `ws://127.0.0.1:${service.port}/twilio`;
  out(`✓ callscribe serving ${twilioUrl}${env.ROUTING_FILE ? ` (routing: ${env.ROUTING_FILE})` : ''}`);

  const fixture = await loadFixtureCall(callDir);
  out(`▶ playing ${fixture.name} (${(fixture.script.durationMs / 1000).toFixed(1)} s of audio, both tracks) at ${speed}× speed …`);
  const played = await playTwilioCall({
    fixture,
    url: twilioUrl,
    speed,
    customParameters: { tenant: 'demo', agentId: 'agent-1025', queue: 'billing' },
  });

  const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
  const queue = new Queue(UTTERANCES_QUEUE, { connection: { url: env.REDIS_URL }, prefix: env.QUEUE_PREFIX });
  try {
    // wait for the call to end in Postgres and the queue to empty
    const deadline = Date.now() + 60_000;
    let call: { id: string; status: string; duration_ms: number | null } | undefined;
    for (;;) {
      const res = await pool.query<{ id: string; status: string; duration_ms: number | null }>(
        'select id, status, duration_ms from calls where stream_sid = $1',
        [played.streamSid],
      );
      call = res.rows[0];
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      const busy = Object.values(counts).reduce((a, b) => a + b, 0);
      if (call && call.status !== 'active' && busy === 0) break;
      if (Date.now() > deadline) throw new Error('the call did not reach Postgres within 60 s');
      await new Promise((r) => setTimeout(r, 250));
    }
    const utts = await pool.query<{
      role: string; start_ms: number; end_ms: number; text: string;
      emotion_raw: string | null; emotion_confidence: number | null; model: string;
    }>(
      'select role, start_ms, end_ms, text, emotion_raw, emotion_confidence, model from utterances where call_id = $1 order by start_ms, role',
      [call.id],
    );
    const streams = await pool.query<{ role: string; status: string; error_code: string | null }>(
      'select role, status, error_code from call_streams where call_id = $1 order by role',
      [call.id],
    );
    out(`\n■ call ${call.id} — ${call.status}, ${((call.duration_ms ?? 0) / 1000).toFixed(1)} s; streams: ${streams.rows.map((s) => `${s.role} ${s.status}${s.error_code ? ` (${s.error_code})` : ''}`).join(', ')}`);
    out(`  transcript from Postgres (${utts.rows.length} utterances):\n`);
    for (const u of utts.rows) {
      const emo = u.emotion_raw ? `${u.emotion_raw}${u.emotion_confidence != null ? ` ${u.emotion_confidence.toFixed(2)}` : ''}` : '-';
      out(`  ${fmtMs(u.start_ms)}–${fmtMs(u.end_ms)}  ${u.role.padEnd(8)}  [${emo.padEnd(13)}]  ${u.text}   (${u.model})`);
    }
    await printQa(pool, call.id, out);
    out('');
    return utts.rows.length > 0 ? 0 : 1;
  } finally {
    await queue.close();
    await pool.end();
    await service.stop();
    await emulator.close();
  }
}

/** The call's QA results as stored: metrics (call_metrics), alerts, rule hits. */
async function printQa(pool: pg.Pool, callId: string, out: (line: string) => void): Promise<void> {
  const m = (
    await pool.query<{
      talk_ms_agent: number; talk_ms_customer: number; non_talk_ms: number; longest_silence_ms: number;
      overtalks_by_agent: number; interruptions_by_agent: number; cpm_agent: number | null; cpm_customer: number | null;
      neg_ratio_customer: number | null; sentiment_trend_customer: string | null;
    }>('select * from call_metrics where call_id = $1', [callId])
  ).rows[0];
  if (m) {
    out('\n  QA metrics (call_metrics):');
    out(`    talk: agent ${(m.talk_ms_agent / 1000).toFixed(1)} s, customer ${(m.talk_ms_customer / 1000).toFixed(1)} s; ` +
      `non-talk ${(m.non_talk_ms / 1000).toFixed(1)} s (longest silence ${(m.longest_silence_ms / 1000).toFixed(1)} s)`);
    out(`    overtalk by the agent: ${m.overtalks_by_agent} (interruptions: ${m.interruptions_by_agent}); ` +
      `speech rate: agent ${m.cpm_agent?.toFixed(0) ?? '-'} / customer ${m.cpm_customer?.toFixed(0) ?? '-'} characters per minute`);
    out(`    customer: negative share ${m.neg_ratio_customer?.toFixed(2) ?? '-'}, trend ${m.sentiment_trend_customer ?? '-'}`);
  }
  const alerts = await pool.query<{ severity: string; status: string; rule_id: string; reason: string; suppressed_reason: string | null; trigger_end_ms: number; latency_ms: number | null }>(
    `select severity, status, rule_id, reason, suppressed_reason, trigger_end_ms,
            extract(epoch from first_delivered_at - final_received_at) * 1000 as latency_ms
       from alerts where call_id = $1 order by trigger_end_ms`,
    [callId],
  );
  out(`  alerts (${alerts.rows.length}):`);
  for (const a of alerts.rows) {
    const latency = a.latency_ms !== null ? `, delivered ${Math.round(Number(a.latency_ms))} ms after the final` : '';
    out(`    ${fmtMs(a.trigger_end_ms)}  ${a.severity.padEnd(8)} ${a.status}${a.suppressed_reason ? ` (${a.suppressed_reason})` : ''}  ${a.rule_id} — ${a.reason}${latency}`);
  }
  const hits = await pool.query<{ rule_id: string; n: number }>(
    'select rule_id, count(*)::int as n from rule_hits where call_id = $1 group by rule_id order by rule_id',
    [callId],
  );
  out(`  rule hits: ${hits.rows.map((h) => `${h.rule_id}${h.n > 1 ? ` ×${h.n}` : ''}`).join(', ') || 'none'}`);
}
