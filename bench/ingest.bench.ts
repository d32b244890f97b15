/**
 * Ingest benchmark (not a test): N concurrent two-track calls of the en-auto-repairs fixture,
 * in real time, through `callscribe ingest` → DashScope emulator; then the same traffic into a
 * bare `ws` receiver (the floor). Prints calls sustained, CPU % and RSS of the receiving
 * process, event-loop delay p50/p99, frame-in → ASR-send latency p50/p99, and frame counts.
 *
 *   npm run bench -- [--calls 250] [--window-s 60] [--stagger-ms 100]
 *
 * Each process runs separately (simulator, emulator, receiver), all on this machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, sleep, waitForHttp } from './support.js';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'bin/callscribe.js');
const FIXTURE = path.resolve(ROOT, '../shared/fixtures/calls/en-auto-repairs');
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '250' },
    'window-s': { type: 'string', default: '60' },
    'stagger-ms': { type: 'string', default: '100' },
    'skip-floor': { type: 'boolean', default: false },
    /** twilio: the call simulator over GET /twilio; rtp: two-stream RTP sessions (POST /v1/rtp-sessions). */
    source: { type: 'string', default: 'twilio' },
  },
});
const CALLS = Number(values.calls);
const WINDOW_MS = Number(values['window-s']) * 1000;
const STAGGER_MS = Number(values['stagger-ms']);
const RAMP_MS = CALLS * STAGGER_MS + 8000;
const SOURCE = values.source === 'rtp' ? 'rtp' : 'twilio';
const API_TOKEN = 'bench-api-token-0123456789';



/**
 * Starts a node process. Load generators (simulator, emulator) run under `nice -n 10`: on a
 * 2-core machine they share the cores with the process under test, and the figures should
 * describe that process, not the scheduler's choices between them.
 */
function start(name: string, args: string[], env: Record<string, string> = {}, loadGenerator = false): ChildProcess {
  const [cmd, argv] = loadGenerator ? ['nice', ['-n', '10', process.execPath, ...args]] : [process.execPath, args];
  const child = spawn(cmd, argv, {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr?.on('data', (d: Buffer) => {
    const text = d.toString();
    if (/error|fatal/i.test(text)) process.stderr.write(`[${name}] ${text.slice(0, 500)}`);
  });
  return child;
}

async function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}`)), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = buf.match(pattern);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.once('exit', (code) => reject(new Error(`process exited (${code}) before ${pattern}`)));
  });
}


interface ProcSample { cpuTicks: number; at: number; rssMb: number }
function sampleProc(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuTicks = Number(fields[11]) + Number(fields[12]); // utime + stime
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuTicks, at: Date.now(), rssMb: rssKb / 1024 };
}
const cpuPercent = (a: ProcSample, b: ProcSample) => ((b.cpuTicks - a.cpuTicks) / 100 / ((b.at - a.at) / 1000)) * 100;

function parseProm(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}
function sumMetric(m: Map<string, number>, name: string): number {
  let s = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) s += v;
  return s;
}
/** Percentile from the delta of a Prometheus histogram between two scrapes (linear in-bucket). */
function histPercentile(a: Map<string, number>, b: Map<string, number>, name: string, p: number): number {
  const buckets: Array<[number, number]> = [];
  for (const [k, v] of b) {
    const m = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\}$`).exec(k);
    if (!m) continue;
    const le = m[1] === '+Inf' ? Infinity : Number(m[1]);
    buckets.push([le, v - (a.get(k) ?? 0)]);
  }
  buckets.sort((x, y) => x[0] - y[0]);
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total === 0) return NaN;
  const target = (p / 100) * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= target) {
      if (le === Infinity) return prevLe;
      return prevLe + ((target - prevCount) / Math.max(1, count - prevCount)) * (le - prevLe);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

/** GC time of one kind in the window, ms (prom-client's nodejs_gc_duration_seconds). */
function gcMs(a: Map<string, number>, b: Map<string, number>, kind: string): number {
  const key = `callscribe_nodejs_gc_duration_seconds_sum{kind="${kind}"}`;
  return ((b.get(key) ?? 0) - (a.get(key) ?? 0)) * 1000;
}

/** "code=count, …" for one label of a counter, e.g. the ASR error codes. */
function labelBreakdown(m: Map<string, number>, name: string, label: string): string {
  const out: string[] = [];
  for (const [k, v] of m) {
    if (!k.startsWith(`${name}{`) || v === 0) continue;
    const value = new RegExp(`${label}="([^"]*)"`).exec(k)?.[1] ?? '?';
    out.push(`${value}=${v}`);
  }
  return out.length ? out.join(', ') : 'none';
}

async function scrape(url: string): Promise<Map<string, number>> {
  return parseProm(await (await fetch(url)).text());
}

function simulate(url: string): ChildProcess {
  return start('simulator', [CLI, 'simulate', '--call', FIXTURE, '--url', url, '--calls', String(CALLS), '--speed', '1', '--stagger-ms', String(STAGGER_MS)], {}, true);
}

function rtpLoad(baseUrl: string): ChildProcess {
  const args = ['--import', 'tsx', path.join(ROOT, 'bench/rtp-load.ts'), '--url', baseUrl, '--token', API_TOKEN, '--fixture', FIXTURE];
  return start('rtp-load', [...args, '--calls', String(CALLS), '--stagger-ms', String(STAGGER_MS)], {}, true);
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(15_000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

async function benchService(): Promise<Record<string, string>> {
  const emuPort = await freePort();
  const svcPort = await freePort();
  const prefix = `bench-${process.pid}`;
  const emulator = start('emulator', [CLI, 'emulator', '--port', String(emuPort), '--script', FIXTURE, '--api-key', 'bench'], {}, true);
  await waitForLine(emulator, /listening/);
  const service = start('ingest', [CLI, 'ingest'], {
    PORT: String(svcPort),
    HOST: '127.0.0.1',
    DASHSCOPE_API_KEY: 'bench',
    DASHSCOPE_INFERENCE_URL: `ws://127.0.0.1:${emuPort}/api-ws/v1/inference`,
    QUEUE_PREFIX: prefix,
    MAX_CALLS: String(CALLS + 10),
    API_TOKEN,
    RTP_HOST: '127.0.0.1',
    RTP_PORT_MIN: '42000',
    RTP_PORT_MAX: String(42000 + 4 * (CALLS + 10)),
    ...(process.env['SERVICE_NODE_OPTIONS'] ? { NODE_OPTIONS: process.env['SERVICE_NODE_OPTIONS'] } : {}),
  });
  let sim: ChildProcess | undefined;
  try {
    await waitForHttp(`http://127.0.0.1:${svcPort}/healthz`);
    const metricsUrl = `http://127.0.0.1:${svcPort}/metrics`;
    sim = SOURCE === 'rtp' ? rtpLoad(`http://127.0.0.1:${svcPort}`) : simulate(`ws://127.0.0.1:${svcPort}/twilio`);
    process.stdout.write(`  ramping up ${CALLS} calls (${(RAMP_MS / 1000).toFixed(0)} s) …\n`);
    await sleep(RAMP_MS);
    const m0 = await scrape(metricsUrl);
    const p0 = sampleProc(service.pid!);
    let rssMax = p0.rssMb;
    const end = Date.now() + WINDOW_MS;
    while (Date.now() < end) {
      await sleep(2000);
      rssMax = Math.max(rssMax, sampleProc(service.pid!).rssMb);
    }
    const p1 = sampleProc(service.pid!);
    const m1 = await scrape(metricsUrl);
    const framesIn = sumMetric(m1, 'callscribe_ingest_frames_total') - sumMetric(m0, 'callscribe_ingest_frames_total');
    const dropped = sumMetric(m1, 'callscribe_ingest_frames_dropped_total');
    return {
      'calls sustained': String(sumMetric(m1, 'callscribe_active_calls')),
      'ASR sessions open': String(sumMetric(m1, 'callscribe_asr_active_sessions')),
      'frames/s in': fmt(framesIn / (WINDOW_MS / 1000), 0),
      'CPU %': fmt(cpuPercent(p0, p1)),
      'RSS MB (max)': fmt(rssMax, 0),
      'event-loop delay p50 ms': fmt(sumMetric(m1, 'callscribe_nodejs_eventloop_lag_p50_seconds') * 1000),
      'event-loop delay p99 ms': fmt(sumMetric(m1, 'callscribe_nodejs_eventloop_lag_p99_seconds') * 1000),
      'frame-in → ASR-send p50 ms': fmt(histPercentile(m0, m1, 'callscribe_frame_to_asr_send_ms', 50), 2),
      'frame-in → ASR-send p99 ms': fmt(histPercentile(m0, m1, 'callscribe_frame_to_asr_send_ms', 99), 2),
      'frames dropped (whole run)': String(dropped),
      'ASR reconnects (whole run)': String(sumMetric(m1, 'callscribe_asr_reconnects_total')),
      'replay audio dropped ms': String(sumMetric(m1, 'callscribe_asr_replay_dropped_ms_total')),
      'ASR errors by code': labelBreakdown(m1, 'callscribe_asr_errors_total', 'code'),
      'heap used MB': fmt(sumMetric(m1, 'callscribe_nodejs_heap_size_used_bytes') / 2 ** 20, 0),
      'GC ms/s (major, minor)': `${fmt(gcMs(m0, m1, 'major') / (WINDOW_MS / 1000))}, ${fmt(gcMs(m0, m1, 'minor') / (WINDOW_MS / 1000))}`,
    };
  } finally {
    await stop(sim);
    await stop(service);
    await stop(emulator);
    const q = new Queue('utterances', { connection: { url: REDIS_URL }, prefix });
    await q.obliterate({ force: true }).catch(() => undefined);
    await q.close();
  }
}

async function benchFloor(): Promise<Record<string, string>> {
  const port = await freePort();
  // `node --import tsx` keeps the receiver in this one process (the tsx CLI would fork a child)
  const recv = start('bare-ws', ['--import', 'tsx', path.join(ROOT, 'bench/bare-ws-receiver.ts')], { PORT: String(port) });
  await waitForLine(recv, /READY/);
  let sim: ChildProcess | undefined;
  try {
    sim = simulate(`ws://127.0.0.1:${port}/twilio`);
    await sleep(RAMP_MS);
    const statsUrl = `http://127.0.0.1:${port}/stats`;
    const s0 = (await (await fetch(statsUrl)).json()) as { messages: number };
    const p0 = sampleProc(recv.pid!);
    let rssMax = p0.rssMb;
    const end = Date.now() + WINDOW_MS;
    while (Date.now() < end) {
      await sleep(2000);
      rssMax = Math.max(rssMax, sampleProc(recv.pid!).rssMb);
    }
    const p1 = sampleProc(recv.pid!);
    const s1 = (await (await fetch(statsUrl)).json()) as { eldP50Ms: number; eldP99Ms: number; messages: number };
    return {
      'frames/s in': fmt((s1.messages - s0.messages) / (WINDOW_MS / 1000), 0),
      'CPU %': fmt(cpuPercent(p0, p1)),
      'RSS MB (max)': fmt(rssMax, 0),
      'event-loop delay p50 ms': fmt(s1.eldP50Ms),
      'event-loop delay p99 ms': fmt(s1.eldP99Ms),
    };
  } finally {
    await stop(sim);
    await stop(recv);
  }
}

async function main(): Promise<void> {
  process.stdout.write(`ingest benchmark: ${CALLS} two-track calls (en-auto-repairs, real time, ${SOURCE === 'rtp' ? 'RTP sessions' : 'Twilio Media Streams'}), ${WINDOW_MS / 1000} s window\n`);
  process.stdout.write('(simulator and emulator run on the same machine under nice -n 10)\n');
  process.stdout.write('\n[callscribe ingest → DashScope emulator]\n');
  const svc = await benchService();
  for (const [k, v] of Object.entries(svc)) process.stdout.write(`  ${k.padEnd(30)} ${v}\n`);
  if (!values['skip-floor'] && SOURCE === 'twilio') {
    process.stdout.write('\n[floor: bare ws receiver, same traffic]\n');
    const floor = await benchFloor();
    for (const [k, v] of Object.entries(floor)) process.stdout.write(`  ${k.padEnd(30)} ${v}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
