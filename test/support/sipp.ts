/**
 * SIPp harness for the SIP/RTP ingest tests: runs one scenario from test/sipp/ (or any path)
 * as a child process and reports its exit code, output, SIP message trace and final counters.
 *
 * SIPp 3.6.1 facts this relies on (checked against the Debian sip-tester binary):
 * - no terminal needed: with -nostdin and stdout not a tty it prints its screens once, at exit;
 *   -bg is not used because it forks and the exit code would be lost;
 * - exit codes: 0 all calls succeeded, 1 at least one failed, 97 internal exit, 99 no call
 *   processed, 255 (-1) fatal error (also the -timeout of -timeout_error), 254 (-2) fatal error
 *   binding a socket;
 * - every run binds a SIP port (-p; default 5060, so it is always set here), a media port pair
 *   (-mp, default 6000: an explicit -mp that is taken is fatal, so a free one is probed for) and
 *   a control port (8888 upwards, moved on automatically); automatic log names land in the
 *   working directory, so every log file is named explicitly into a fresh temporary directory;
 * - <exec command> runs `sh -c` in a double-forked child that init adopts, still in SIPp's process
 *   group: SIPp is spawned detached (its own group), and the group is killed when SIPp fails or
 *   the harness times out, so a sender it started does not outlive the test.
 */
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readWavAsMulaw } from '../../src/simulator/wav.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** Where the scenario files live. */
export const SIPP_DIR = path.resolve(HERE, '../sipp');
export const RTP_SEND_SCRIPT = path.join(SIPP_DIR, 'rtp-send.ts');
/** The Debian package's 7.05 s PCMA capture that plain-pcap.xml replays (236 packets, 30 ms). */
export const G711A_PCAP = '/usr/share/sip-tester/g711a.pcap';
export const G711A_PCAP_PACKETS = 236;

/** G.711 at 8 kHz: one byte per sample, 160 bytes per 20 ms packet. */
export const ULAW_BYTES_PER_MS = 8;
export const ULAW_PACKET_BYTES = 160;
const MULAW_SILENCE = 0xff;

const KILL_GRACE_MS = 3_000;
const CLOSE_AFTER_EXIT_MS = 1_000;
const READY_TIMEOUT_MS = 5_000;
const OUTPUT_LIMIT = 256 * 1024;
const TRACE_LIMIT = 512 * 1024;

export type SippTransport = 'u1' | 't1';

export interface SippOptions {
  /** A file name in test/sipp/ ('options.xml') or a path. */
  readonly scenario: string;
  /** 'host:port' to call. Omitted: SIPp runs the scenario as a server (UAS) on localPort. */
  readonly target?: string;
  /** u1 = UDP, one socket; t1 = TCP, one connection. Default u1. */
  readonly transport?: SippTransport;
  /** -i and -mi: address for Via/Contact/SDP and the sockets. Default 127.0.0.1. */
  readonly localIp?: string;
  /** -p. Default: a free port (SIPp itself would take 5060). */
  readonly localPort?: number;
  /** -mp (SIPp binds it and +2; RTP from rtp_stream / play_pcap_audio leaves from it). Default: free. */
  readonly mediaPort?: number;
  /** -set name value, for the scenario's [$name]. */
  readonly vars?: Readonly<Record<string, string>>;
  /** -m: calls to process before exiting. Default 1. */
  readonly calls?: number;
  /** SIPp's own -timeout (rounded up to seconds, with -timeout_error); the group is killed 3 s later. */
  readonly timeoutMs: number;
  /** SIPp's working directory: relative paths in a scenario (rtp_stream's audio.ulaw) resolve here. Default: the log directory. */
  readonly cwd?: string;
  /** -trace_msg into the log directory. Default true. */
  readonly traceMsg?: boolean;
  /** Keep the log directory after a successful run (it is always kept after a failure). */
  readonly keepLogs?: boolean;
  readonly extraArgs?: readonly string[];
}

export interface SippStats {
  readonly successfulCalls: number;
  readonly failedCalls: number;
}

export interface SippResult {
  /** 0 = every call succeeded. null when killed by a signal. */
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The harness killed the process group (SIPp's own -timeout did not end it in time). */
  readonly timedOut: boolean;
  readonly durationMs: number;
  readonly command: readonly string[];
  readonly stdout: string;
  readonly stderr: string;
  /** -trace_msg: every SIP message sent and received (empty when traceMsg is false). */
  readonly messages: string;
  /** -trace_err: unexpected messages and errors. */
  readonly errors: string;
  readonly stats?: SippStats;
  /** The SIP (-p) and media (-mp) ports this run used. */
  readonly localPort: number;
  readonly mediaPort: number;
  readonly logDir: string;
}

export interface SippProcess {
  readonly pid: number;
  readonly localPort: number;
  readonly mediaPort: number;
  readonly logDir: string;
  readonly command: readonly string[];
  /** Resolves once the SIP socket is bound (UDP) or listening (TCP); rejects if SIPp exits first. */
  readonly ready: Promise<void>;
  readonly done: Promise<SippResult>;
  /** Kills the process group (SIPp and anything its <exec> started); a no-op once `done` has settled. */
  stop(): void;
}

let available: boolean | undefined;

/** True when a `sipp` binary (Debian package sip-tester) is on PATH. */
export function sippAvailable(): boolean {
  if (available === undefined) {
    const r = spawnSync('sipp', ['-v'], { encoding: 'utf8', timeout: 5_000 });
    available = r.error === undefined && /SIPp v\d/.test(r.stdout ?? '');
  }
  return available;
}

/** The command prefix for rtp_send in siprec-two-streams.xml: node + tsx loader + rtp-send.ts, absolute. */
export function rtpSendCommand(): string {
  const loader = createRequire(import.meta.url).resolve('tsx'); // tsx's "." export: its ESM loader
  const parts = [process.execPath, '--import', loader, RTP_SEND_SCRIPT];
  // SIPp hands the command line to sh -c: refuse anything that would need quoting
  for (const p of parts) if (!/^[\w./@+-]+$/.test(p)) throw new Error(`rtpSendCommand: path needs shell quoting: ${p}`);
  return parts.join(' ');
}

export interface RawUlawFile {
  readonly path: string;
  /** File size: the audio, cut to maxMs, padded to whole 160-byte packets. */
  readonly bytes: number;
  readonly packets: number;
  readonly durationMs: number;
}

/**
 * Converts a WAV (whatever src/simulator/wav.ts accepts) into a raw μ-law file for SIPp's
 * rtp_stream or rtp-send.ts, cut to maxMs and padded with μ-law silence (0xFF) to a whole number
 * of 20 ms packets: SIPp 3.6.1 fills a short last packet from the start of the file.
 */
export async function writeRawUlaw(wavPath: string, outPath: string, opts: { maxMs?: number } = {}): Promise<RawUlawFile> {
  let audio = await readWavAsMulaw(wavPath);
  if (opts.maxMs !== undefined) audio = audio.subarray(0, Math.max(0, Math.floor(opts.maxMs)) * ULAW_BYTES_PER_MS);
  const packets = Math.ceil(audio.length / ULAW_PACKET_BYTES);
  const out = Buffer.alloc(packets * ULAW_PACKET_BYTES, MULAW_SILENCE);
  audio.copy(out);
  await writeFile(outPath, out);
  return { path: outPath, bytes: out.length, packets, durationMs: out.length / ULAW_BYTES_PER_MS };
}

function canBind(kind: 'udp' | 'tcp', host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (kind === 'udp') {
      const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
      s.once('error', () => {
        s.close();
        resolve(false);
      });
      s.bind(port, host, () => s.close(() => resolve(true)));
    } else {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, host, () => s.close(() => resolve(true)));
    }
  });
}

/**
 * A free even port P with P..P+span-1 bindable (UDP, plus TCP when asked), picked at random in
 * 20000-31999 (below Linux's ephemeral range, so no outgoing socket takes it meanwhile).
 */
export async function freePortBlock(host: string, span: number, tcp = false): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 20_000 + 2 * Math.floor((Math.random() * (12_000 - span)) / 2);
    let free = true;
    for (let p = base; free && p < base + span; p++) {
      free = (await canBind('udp', host, p)) && (!tcp || (await canBind('tcp', host, p)));
    }
    if (free) return base;
  }
  throw new Error(`no free block of ${span} ports on ${host}`);
}

/** Keeps the last `limit` characters of a growing text. */
class TailBuffer {
  private text = '';
  constructor(private readonly limit: number) {}
  push(chunk: string): void {
    this.text += chunk;
    if (this.text.length > this.limit * 2) this.text = this.text.slice(-this.limit);
  }
  toString(): string {
    return this.text.length > this.limit ? this.text.slice(-this.limit) : this.text;
  }
}

function lastInt(text: string, re: RegExp): number | null {
  let value: number | null = null;
  for (const m of text.matchAll(re)) value = Number(m[1]);
  return value;
}

/** Final counters from SIPp's exit screens (stdout). */
export function parseSippStats(stdout: string): SippStats | undefined {
  const successfulCalls = lastInt(stdout, /Successful call\s*\|\s*\d+\s*\|\s*(\d+)/g);
  const failedCalls = lastInt(stdout, /Failed call\s*\|\s*\d+\s*\|\s*(\d+)/g);
  if (successfulCalls === null || failedCalls === null) return undefined;
  // (the exit screen has no RTP counters: count packets at the receiver)
  return { successfulCalls, failedCalls };
}

function procNetHasPort(file: string, port: number, listenOnly: boolean): boolean {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return false;
  }
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  return text.split('\n').some((line) => {
    const cols = line.trim().split(/\s+/);
    const local = cols[1];
    return local !== undefined && `${local} `.endsWith(hexPort) && (!listenOnly || cols[3] === '0A');
  });
}

function resolveScenario(scenario: string): string {
  const file = scenario.includes('/') ? path.resolve(scenario) : path.join(SIPP_DIR, scenario);
  if (!existsSync(file)) throw new Error(`SIPp scenario not found: ${file}`);
  return file;
}

/** Starts SIPp; use `runSipp` for a client run, this for a server (UAS) the test talks to. */
export async function startSipp(opts: SippOptions): Promise<SippProcess> {
  const localIp = opts.localIp ?? '127.0.0.1';
  const transport = opts.transport ?? 'u1';
  const localPort = opts.localPort ?? (await freePortBlock(localIp, 1, true));
  const mediaPort = opts.mediaPort ?? (await freePortBlock(localIp, 4));
  const logDir = await mkdtemp(path.join(tmpdir(), 'callscribe-sipp-'));
  const cwd = opts.cwd ?? logDir;
  const timeoutS = Math.max(1, Math.ceil(opts.timeoutMs / 1000));
  const log = (name: string): string => path.join(logDir, name);

  const args: string[] = [];
  if (opts.target !== undefined) args.push(opts.target);
  args.push('-sf', resolveScenario(opts.scenario));
  args.push('-t', transport, '-i', localIp, '-mi', localIp, '-p', String(localPort), '-mp', String(mediaPort));
  const calls = opts.calls ?? 1;
  args.push('-m', String(calls), '-l', String(calls), '-nostdin');
  args.push('-timeout', `${timeoutS}s`, '-timeout_error');
  args.push('-trace_err', '-error_file', log('errors.log'));
  if (opts.traceMsg ?? true) args.push('-trace_msg', '-message_file', log('messages.log'));
  for (const [name, value] of Object.entries(opts.vars ?? {})) {
    if (!/^[A-Za-z_]\w*$/.test(name)) throw new Error(`bad SIPp variable name "${name}"`);
    if (/[\r\n]/.test(value)) throw new Error(`SIPp variable ${name} contains a line break`);
    args.push('-set', name, value);
  }
  args.push(...(opts.extraArgs ?? []));
  const command = ['sipp', ...args];

  const child = spawn('sipp', args, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error('sipp did not start (is the sip-tester package installed?)');
  const stdout = new TailBuffer(OUTPUT_LIMIT);
  const stderr = new TailBuffer(OUTPUT_LIMIT);
  child.stdout.setEncoding('utf8').on('data', (c: string) => stdout.push(c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => stderr.push(c));

  const started = performance.now();
  let timedOut = false;
  let exited = false;
  let settled = false; // after the result is out, the group id is not ours to signal any more
  const killGroup = (): void => {
    if (settled) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // the group is already gone
    }
  };
  const killTimer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, opts.timeoutMs + KILL_GRACE_MS);

  const done = new Promise<SippResult>((resolve) => {
    let exitCode: number | null = null;
    let signal: NodeJS.Signals | null = null;
    let finished = false;
    const finish = async (): Promise<void> => {
      if (finished) return;
      finished = true;
      settled = true;
      clearTimeout(killTimer);
      const read = async (name: string): Promise<string> => {
        try {
          const text = await readFile(log(name), 'utf8');
          return text.length > TRACE_LIMIT ? text.slice(-TRACE_LIMIT) : text;
        } catch {
          return '';
        }
      };
      const out = stdout.toString();
      const result: SippResult = {
        exitCode,
        signal,
        timedOut,
        durationMs: Math.round(performance.now() - started),
        command,
        stdout: out,
        stderr: stderr.toString(),
        messages: await read('messages.log'),
        errors: await read('errors.log'),
        stats: parseSippStats(out),
        localPort,
        mediaPort,
        logDir,
      };
      if (exitCode === 0 && !(opts.keepLogs ?? false)) await rm(logDir, { recursive: true, force: true });
      resolve(result);
    };
    child.once('exit', (code, sig) => {
      exited = true;
      exitCode = code;
      signal = sig;
      // a failed run (e.g. SIPp's own -timeout) leaves what <exec> started running: end it
      if (code !== 0) killGroup();
      // processes started by <exec> may hold the pipes open: do not wait for them forever
      setTimeout(() => void finish(), CLOSE_AFTER_EXIT_MS);
    });
    child.once('close', () => void finish());
    child.once('error', (err) => {
      stderr.push(String(err));
      exited = true;
      void finish();
    });
  });

  const ready = (async (): Promise<void> => {
    const files = transport === 't1' ? ['/proc/net/tcp', '/proc/net/tcp6'] : ['/proc/net/udp', '/proc/net/udp6'];
    const deadline = performance.now() + READY_TIMEOUT_MS;
    while (performance.now() < deadline) {
      if (exited) throw new Error(`sipp exited before it was ready\n${stdout.toString().slice(-2000)}`);
      if (files.some((f) => procNetHasPort(f, localPort, transport === 't1'))) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`sipp did not bind port ${localPort} within ${READY_TIMEOUT_MS} ms`);
  })();
  ready.catch(() => undefined); // observed by the caller, or by done

  return { pid, localPort, mediaPort, logDir, command, ready, done, stop: killGroup };
}

/** Runs a scenario to the end (a UAC call against opts.target). */
export async function runSipp(opts: SippOptions): Promise<SippResult> {
  return (await startSipp(opts)).done;
}

/** A diagnostic text for assertion messages: command, exit, counters, errors and the SIP trace. */
export function describeSippResult(r: SippResult): string {
  const hints: string[] = [];
  if (/raw IPv4 socket/.test(r.stdout + r.stderr)) {
    hints.push('play_pcap_audio needs root or CAP_NET_RAW: sudo setcap cap_net_raw+ep "$(command -v sipp)"');
  }
  if (r.exitCode === 254) hints.push('exit 254: SIPp could not bind a socket (-p or -mp taken)');
  return [
    `sipp exit=${String(r.exitCode)} signal=${String(r.signal)} timedOut=${String(r.timedOut)} ${r.durationMs} ms`,
    `command: ${r.command.join(' ')}`,
    `stats: ${JSON.stringify(r.stats ?? null)}`,
    ...hints,
    `--- errors (${r.logDir}) ---`,
    r.errors.slice(-4000),
    '--- stderr ---',
    r.stderr.slice(-2000),
    '--- stdout (tail) ---',
    r.stdout.slice(-3000),
    '--- SIP messages (tail) ---',
    r.messages.slice(-8000),
  ].join('\n');
}
