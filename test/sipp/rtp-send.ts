/**
 * RTP sender CLI for the SIPp scenarios: siprec-two-streams.xml starts it with <exec>, because
 * SIPp streams at most one m-line itself. A thin wrapper around src/simulator/rtp-sender.ts
 * (sendRtp: RFC 3550 header, random sequence/timestamp/SSRC per stream, marker on the first
 * packet, PT 0 PCMU at 8 kHz so the timestamp advances by the payload bytes, drift-free pacing).
 * All streams start in the same tick, each from its own socket as an SBC sends each m-line, so
 * the two SIPREC labels stay time-aligned.
 *
 *   node --import tsx test/sipp/rtp-send.ts --host 127.0.0.1 \
 *     --stream 40000:customer.ulaw --stream 40002:agent.wav [--ptime-ms 20] [--max-ms 65000]
 *
 * A file is a WAV when it starts with RIFF (anything src/simulator/wav.ts reads, transcoded to
 * μ-law), raw μ-law otherwise. A stream on port 0 is skipped (a rejected m-line, RFC 3264 §6).
 * Prints one JSON line with per-stream counts on stdout; exit 0 = sent, 1 = runtime error or
 * send errors, 2 = bad arguments.
 */
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { pathToFileURL } from 'node:url';
import { readWavAsG711, sendRtp, type RtpPtimeMs } from '../../src/simulator/rtp-sender.js';

/** Refuse files above this size (about 70 min of 8 kHz μ-law): the whole file is held in memory. */
export const MAX_FILE_BYTES = 32 * 1024 * 1024;
const BYTES_PER_MS = 8;
const RTP_HEADER_BYTES = 12;

export interface StreamSpec {
  readonly port: number;
  readonly file: string;
}

export interface SendArgs {
  readonly host: string;
  readonly streams: readonly StreamSpec[];
  readonly ptimeMs: RtpPtimeMs;
  /** Stop after this much audio (ms); null = whole files. */
  readonly maxMs: number | null;
}

export interface StreamReport {
  readonly port: number;
  readonly ssrc: number | null;
  readonly packets: number;
  readonly payloadBytes: number;
  readonly sendErrors: number;
  readonly localPort: number | null;
  readonly skipped: boolean;
}

export const USAGE =
  'usage: rtp-send.ts --host <ip> --stream <port>:<file> [--stream <port>:<file> ...] [--ptime-ms 10|20|30] [--max-ms <n>]';

function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new Error(`bad port "${text}"`);
  return Number(text);
}

/** Strict argv parser (everything after the script path). Throws Error on anything unexpected. */
export function parseSendArgs(argv: readonly string[]): SendArgs {
  let host: string | null = null;
  const streams: StreamSpec[] = [];
  let ptimeMs: RtpPtimeMs = 20;
  let maxMs: number | null = null;
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value after ${String(flag)}`);
    switch (flag) {
      case '--host':
        if (isIP(value) !== 4) throw new Error(`--host must be an IPv4 address, got "${value}"`);
        host = value;
        break;
      case '--stream': {
        const colon = value.indexOf(':');
        if (colon <= 0 || colon === value.length - 1) throw new Error(`--stream must be <port>:<file>, got "${value}"`);
        streams.push({ port: parsePort(value.slice(0, colon)), file: value.slice(colon + 1) });
        break;
      }
      case '--ptime-ms':
        if (value !== '10' && value !== '20' && value !== '30') throw new Error('--ptime-ms must be 10, 20 or 30');
        ptimeMs = value === '10' ? 10 : value === '20' ? 20 : 30;
        break;
      case '--max-ms':
        if (!/^\d{1,9}$/.test(value) || Number(value) === 0) throw new Error(`--max-ms must be a positive integer, got "${value}"`);
        maxMs = Number(value);
        break;
      default:
        throw new Error(`unknown option ${String(flag)}`);
    }
  }
  if (host === null) throw new Error('--host is required');
  if (streams.length === 0) throw new Error('at least one --stream is required');
  return { host, streams, ptimeMs, maxMs };
}

/** A WAV file as μ-law (transcoded when needed); anything not starting with RIFF as raw μ-law. */
export async function loadMulaw(file: string): Promise<Buffer> {
  const info = await stat(file);
  if (info.size > MAX_FILE_BYTES) throw new Error(`${file}: ${info.size} bytes is above the ${MAX_FILE_BYTES}-byte limit`);
  const buf = await readFile(file);
  if (buf.length >= 12 && buf.toString('latin1', 0, 4) === 'RIFF') return readWavAsG711(file, 'pcmu');
  return buf;
}

/** Sends every stream at once, paced; resolves when all are done. */
export async function sendStreams(args: SendArgs): Promise<StreamReport[]> {
  const audios = await Promise.all(args.streams.map((s) => (s.port === 0 ? null : loadMulaw(s.file))));
  const cut = args.maxMs === null ? Infinity : args.maxMs * BYTES_PER_MS;
  return Promise.all(
    args.streams.map(async (spec, i): Promise<StreamReport> => {
      const audio = audios[i];
      if (audio === null || audio === undefined) {
        return { port: spec.port, ssrc: null, packets: 0, payloadBytes: 0, sendErrors: 0, localPort: null, skipped: true };
      }
      const r = await sendRtp({
        host: args.host,
        port: spec.port,
        codec: 'pcmu',
        ptimeMs: args.ptimeMs,
        audio: audio.subarray(0, Math.min(audio.length, cut)),
      });
      return {
        port: spec.port,
        ssrc: r.ssrc,
        packets: r.sent,
        payloadBytes: r.bytesSent - r.sent * RTP_HEADER_BYTES,
        sendErrors: r.sendErrors,
        localPort: r.localPort,
        skipped: false,
      };
    }),
  );
}

async function main(argv: readonly string[]): Promise<number> {
  let args: SendArgs;
  try {
    args = parseSendArgs(argv);
  } catch (err) {
    process.stderr.write(`rtp-send: ${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
    return 2;
  }
  try {
    const streams = await sendStreams(args);
    process.stdout.write(`${JSON.stringify({ rtpSend: { host: args.host, ptimeMs: args.ptimeMs, streams } })}\n`);
    return streams.some((s) => s.sendErrors > 0) ? 1 : 0;
  } catch (err) {
    process.stderr.write(`rtp-send: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  process.exitCode = await main(process.argv.slice(2));
}
