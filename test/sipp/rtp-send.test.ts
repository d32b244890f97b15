/**
 * Tests of the SIPREC scenario's external sender (rtp-send.ts, a CLI over
 * src/simulator/rtp-sender.ts): argv validation, WAV/raw input, the CLI's exit code, and one
 * short real-socket run (port-0 skip, --max-ms cut, per-stream SSRC and source port, RFC 3550
 * header fields).
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import dgram from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { readWavAsMulaw } from '../../src/simulator/wav.js';
import { loadMulaw, parseSendArgs, sendStreams } from './rtp-send.js';

const CUSTOMER_WAV = fileURLToPath(new URL('../../../shared/fixtures/calls/zh-billing-complaint/customer.wav', import.meta.url));

describe('rtp-send', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('parses streams and options', () => {
    expect(parseSendArgs(['--host', '127.0.0.1', '--stream', '40000:/tmp/a:b.ulaw', '--stream', '0:x', '--ptime-ms', '30', '--max-ms', '500'])).toEqual({
      host: '127.0.0.1',
      streams: [
        { port: 40000, file: '/tmp/a:b.ulaw' },
        { port: 0, file: 'x' },
      ],
      ptimeMs: 30,
      maxMs: 500,
    });
    expect(parseSendArgs(['--stream', '5:f', '--host', '10.0.0.1'])).toMatchObject({ host: '10.0.0.1', ptimeMs: 20, maxMs: null });
  });

  it.each([
    [[], /--host is required/],
    [['--host', '127.0.0.1'], /at least one --stream/],
    [['--host', 'localhost', '--stream', '1:f'], /IPv4 address/],
    [['--host', '::1', '--stream', '1:f'], /IPv4 address/],
    [['--host', '127.0.0.1', '--stream', '70000:f'], /bad port/],
    [['--host', '127.0.0.1', '--stream', 'x:f'], /bad port/],
    [['--host', '127.0.0.1', '--stream', ':f'], /<port>:<file>/],
    [['--host', '127.0.0.1', '--stream', '5:'], /<port>:<file>/],
    [['--host', '127.0.0.1', '--stream', '5:f', '--ptime-ms', '25'], /10, 20 or 30/],
    [['--host', '127.0.0.1', '--stream', '5:f', '--max-ms', '0'], /positive integer/],
    [['--host', '127.0.0.1', '--stream', '5:f', '--loop', '1'], /unknown option --loop/],
    [['--host'], /missing value/],
  ])('rejects %j', (argv, message) => {
    expect(() => parseSendArgs(argv)).toThrow(message);
  });

  it('exits 2 with the usage line on bad arguments (the CLI SIPp runs)', () => {
    const script = fileURLToPath(new URL('./rtp-send.ts', import.meta.url));
    const loader = createRequire(import.meta.url).resolve('tsx');
    const r = spawnSync(process.execPath, ['--import', loader, script, '--host', '127.0.0.1'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('at least one --stream is required');
    expect(r.stderr).toContain('usage: rtp-send.ts');
  });

  it('reads a WAV as μ-law and any other file as raw bytes', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'callscribe-rtp-send-'));
    dirs.push(dir);
    expect((await loadMulaw(CUSTOMER_WAV)).equals(await readWavAsMulaw(CUSTOMER_WAV))).toBe(true);
    await writeFile(path.join(dir, 'raw.ulaw'), Buffer.from('RIF not a header'));
    expect((await loadMulaw(path.join(dir, 'raw.ulaw'))).toString()).toBe('RIF not a header');
  });

  it('sends each stream from its own socket, paced, cut at --max-ms, skipping port 0', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'callscribe-rtp-send-'));
    dirs.push(dir);
    const file = path.join(dir, 'a.ulaw');
    await writeFile(file, Buffer.alloc(80 * 6, 0x55)); // six 10 ms frames
    const sockets = [dgram.createSocket('udp4'), dgram.createSocket('udp4')];
    const seen: Array<Array<{ from: number; msg: Buffer }>> = [[], []];
    await Promise.all(
      sockets.map(
        (s, i) =>
          new Promise<void>((resolve) => {
            s.on('message', (msg, rinfo) => seen[i]!.push({ from: rinfo.port, msg }));
            s.bind(0, '127.0.0.1', resolve);
          }),
      ),
    );
    try {
      const [a, b] = sockets.map((s) => s.address().port);
      const started = performance.now();
      const report = await sendStreams({
        host: '127.0.0.1',
        streams: [
          { port: a!, file },
          { port: b!, file },
          { port: 0, file: path.join(dir, 'missing.ulaw') },
        ],
        ptimeMs: 10,
        maxMs: 40,
      });
      expect(performance.now() - started).toBeGreaterThanOrEqual(30); // 4 frames, 10 ms apart
      expect(report.map((r) => [r.packets, r.payloadBytes, r.skipped, r.sendErrors])).toEqual([
        [4, 320, false, 0],
        [4, 320, false, 0],
        [0, 0, true, 0],
      ]);
      await new Promise((r) => setTimeout(r, 50));
      expect(seen.map((s) => s.length)).toEqual([4, 4]);
      expect(seen[0]![0]!.from).not.toBe(seen[1]![0]!.from);
      expect(report.map((r) => r.localPort)).toEqual([seen[0]![0]!.from, seen[1]![0]!.from, null]);
      for (const [i, packets] of seen.entries()) {
        expect(packets.every((p) => p.msg.length === 12 + 80 && p.msg[0] === 0x80 && p.msg.readUInt32BE(8) === report[i]!.ssrc)).toBe(true);
        expect(packets.every((p) => (p.msg[1]! & 0x7f) === 0)).toBe(true); // PT 0 PCMU
        expect(packets.map((p) => p.msg[1]! & 0x80)).toEqual([0x80, 0, 0, 0]);
        const ts = packets.map((p) => p.msg.readUInt32BE(4));
        expect(ts.slice(1).map((t, k) => (t - ts[k]!) >>> 0)).toEqual([80, 80, 80]);
      }
      expect(report[0]!.ssrc).not.toBe(report[1]!.ssrc);
    } finally {
      for (const s of sockets) s.close();
    }
  });
});
