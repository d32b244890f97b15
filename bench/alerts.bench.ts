/**
 * Alert latency benchmark (not a test): N concurrent zh-billing-complaint calls in real time
 * through `callscribe serve` (a child process) → DashScope emulator; a supervisor holds
 * GET /supervisor open. Every call raises one alert (line 7). Prints, per alert:
 *   final received → alert committed (Postgres),
 *   final received → first delivered (Postgres, first channel),
 *   final received → on the supervisor socket (measured by the client),
 * as p50 / p95 / max, plus the webhook hop from a local receiver.
 *
 *   npx tsx bench/alerts.bench.ts [--calls 40] [--stagger-ms 250]
 *
 * The simulator, the supervisor client and the webhook receiver run in this process; the
 * emulator runs under nice (a load generator); all on this machine.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, sleep, waitForHttp } from './support.js';
import { parseArgs } from 'node:util';
import pg from 'pg';
import WebSocket from 'ws';
import { loadFixtureCall } from '../src/simulator/fixture-call.js';
import { playManyCalls } from '../src/simulator/twilio-client.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'bin/callscribe.js');
const FIXTURE = path.resolve(ROOT, '../shared/fixtures/calls/zh-billing-complaint');
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const DB_NAME = 'callscribe_bench_alerts';
const DATABASE_URL = `postgres://postgres@127.0.0.1:5432/${DB_NAME}`;
const TOKEN = 'bench-supervisor-token-0123';
const SECRET = 'bench-webhook-secret-0123';

const { values } = parseArgs({
  options: { calls: { type: 'string', default: '40' }, 'stagger-ms': { type: 'string', default: '250' } },
});
const CALLS = Number(values.calls);
const STAGGER_MS = Number(values['stagger-ms']);


function start(args: string[], env: Record<string, string>, nice = false): ChildProcess {
  const [cmd, argv] = nice ? ['nice', ['-n', '10', process.execPath, CLI, ...args]] : [process.execPath, [CLI, ...args]];
  const child = spawn(cmd, argv, { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(d.toString().slice(0, 400)));
  return child;
}


function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
}
const fmt = (v: number[]) => `p50 ${pct(v, 50).toFixed(1)}  p95 ${pct(v, 95).toFixed(1)}  max ${Math.max(...v).toFixed(1)} ms  (n=${v.length})`;

async function main(): Promise<void> {
  spawnSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-qc', `DROP DATABASE IF EXISTS ${DB_NAME}`], { stdio: 'ignore' });
  const mig = spawnSync(process.execPath, [CLI, 'migrate'], { cwd: ROOT, env: { ...process.env, DATABASE_URL, LOG_LEVEL: 'warn' } });
  if (mig.status !== 0) throw new Error(`migrate failed: ${mig.stderr.toString()}`);

  const hookArrivals: number[] = [];
  const hookLatency: number[] = [];
  const hook = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = Date.now();
      hookArrivals.push(at);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { alert?: { finalReceivedAt?: string } };
      const f = body.alert?.finalReceivedAt;
      if (f) hookLatency.push(at - Date.parse(f));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const hookPort = (hook.address() as net.AddressInfo).port;

  const emuPort = await freePort();
  const emulator = start(['emulator', '--host', '127.0.0.1', '--port', String(emuPort), '--api-key', 'bench', '--script', FIXTURE], {}, true);
  const port = await freePort();
  const prefix = `bench-alerts-${Date.now()}`;
  const svc = start(['serve'], {
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL,
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    DASHSCOPE_API_KEY: 'bench',
    DASHSCOPE_INFERENCE_URL: `ws://127.0.0.1:${emuPort}/api-ws/v1/inference`,
    SUPERVISOR_TOKEN: TOKEN,
    WEBHOOK_URLS: `http://127.0.0.1:${hookPort}/hook`,
    WEBHOOK_SECRET: SECRET,
    MIGRATE_ON_START: 'false',
  });
  try {
    await waitForHttp(`http://127.0.0.1:${port}/readyz`);
    const socketLatency: number[] = [];
    const ws = new WebSocket(`ws://127.0.0.1:${port}/supervisor`, { headers: { authorization: `Bearer ${TOKEN}` } });
    ws.on('message', (data: Buffer) => {
      const at = Date.now();
      const m = JSON.parse(data.toString('utf8')) as { type: string; alert?: { finalReceivedAt?: string | null } };
      if (m.type === 'alert' && m.alert?.finalReceivedAt) socketLatency.push(at - Date.parse(m.alert.finalReceivedAt));
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const fixture = await loadFixtureCall(FIXTURE);
    console.log(`playing ${CALLS} calls of ${fixture.name} in real time (stagger ${STAGGER_MS} ms)…`);
    const results = await playManyCalls({ fixture, url: `ws://127.0.0.1:${port}/twilio`, calls: CALLS, staggerMs: STAGGER_MS, speed: 1 });
    const failed = results.filter((r) => r.status === 'rejected').length;
    await sleep(5000);
    ws.close();

    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    const rows = await pool.query<{ commit_ms: number; deliver_ms: number | null }>(
      `select extract(epoch from committed_at - final_received_at) * 1000 as commit_ms,
              extract(epoch from first_delivered_at - final_received_at) * 1000 as deliver_ms
         from alerts where status = 'open'`,
    );
    const counts = await pool.query<{ status: string; n: number }>(`select status, count(*)::int as n from alerts group by status order by status`);
    await pool.end();
    const commit = rows.rows.map((r) => Number(r.commit_ms));
    const deliver = rows.rows.filter((r) => r.deliver_ms !== null).map((r) => Number(r.deliver_ms));
    console.log(`calls: ${CALLS} (${failed} failed to play); alerts by status: ${counts.rows.map((r) => `${r.status} ${r.n}`).join(', ')}`);
    console.log(`final received → committed (Postgres):      ${fmt(commit)}`);
    console.log(`final received → first delivered (Postgres): ${fmt(deliver)}`);
    console.log(`final received → supervisor socket (client): ${fmt(socketLatency)}`);
    console.log(`final received → webhook received:           ${fmt(hookLatency)}`);
  } finally {
    svc.kill('SIGTERM');
    emulator.kill('SIGTERM');
    hook.close();
    await sleep(1500);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
