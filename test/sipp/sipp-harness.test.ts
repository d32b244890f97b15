/**
 * Tests of the SIPp scenarios and test/support/sipp.ts against SIPp itself: uas-stub.xml stands
 * in for callscribe's SIP UAS (answering with the ports of UDP sockets this file opens), and the
 * RTP that arrives there is checked packet by packet (RFC 3550 §5.1 header, PT 8 / 0).
 * Needs `sipp` (apt-get install sip-tester); the pcap replay also needs root or CAP_NET_RAW.
 * Audio is cut to 2-3 s here; the full 65.7 s runs belong to the e2e tests.
 */
import dgram from 'node:dgram';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readWavAsMulaw } from '../../src/simulator/wav.js';
import {
  G711A_PCAP_PACKETS,
  describeSippResult,
  rtpSendCommand,
  runSipp,
  sippAvailable,
  startSipp,
  writeRawUlaw,
  type SippProcess,
  type SippResult,
  type SippTransport,
} from '../support/sipp.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZH_CALL = path.resolve(HERE, '../../../shared/fixtures/calls/zh-billing-complaint');
const CUSTOMER_WAV = path.join(ZH_CALL, 'customer.wav');
const AGENT_WAV = path.join(ZH_CALL, 'agent.wav');
const TIMEOUT_MS = 30_000;

interface RtpSeen {
  readonly atMs: number;
  readonly fromPort: number;
  readonly marker: boolean;
  readonly pt: number;
  readonly seq: number;
  readonly ts: number;
  readonly ssrc: number;
  readonly payload: Buffer;
}

interface RtpSink {
  readonly port: number;
  readonly packets: RtpSeen[];
  close(): void;
}

async function openSink(): Promise<RtpSink> {
  const socket = dgram.createSocket('udp4');
  const packets: RtpSeen[] = [];
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 12 || msg[0] !== 0x80) throw new Error(`not a plain RTP v2 packet: ${msg.subarray(0, 12).toString('hex')}`);
    packets.push({
      atMs: performance.now(),
      fromPort: rinfo.port,
      marker: (msg[1]! & 0x80) !== 0,
      pt: msg[1]! & 0x7f,
      seq: msg.readUInt16BE(2),
      ts: msg.readUInt32BE(4),
      ssrc: msg.readUInt32BE(8),
      payload: Buffer.from(msg.subarray(12)),
    });
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, packets, close: () => socket.close() };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Consecutive (mod 2^16) sequence numbers and a timestamp step of `step` on every packet. */
function expectContiguous(packets: readonly RtpSeen[], step: number): void {
  packets.forEach((p, i) => {
    if (i === 0) return;
    const prev = packets[i - 1]!;
    expect((p.seq - prev.seq) & 0xffff, `seq after packet ${i - 1}`).toBe(1);
    expect((p.ts - prev.ts) >>> 0, `timestamp step after packet ${i - 1}`).toBe(step);
    expect(p.ssrc).toBe(prev.ssrc);
  });
}

/** The first SIP request of `method` in a -trace_msg log: header block and body. */
function tracedRequest(messages: string, method: string): { head: string; body: string } {
  const start = messages.indexOf(`\n${method} sip:`);
  if (start < 0) throw new Error(`no ${method} in the trace`);
  const end = messages.indexOf('\n-----------------------------------------------', start);
  const text = messages.slice(start + 1, end < 0 ? undefined : end);
  const split = text.indexOf('\r\n\r\n');
  return { head: text.slice(0, split), body: text.slice(split + 4) };
}

function viaBranch(head: string): string {
  const m = /^Via: [^\r\n]*;branch=([^;\r\n]+)/m.exec(head);
  if (!m?.[1]) throw new Error('no Via branch');
  return m[1];
}

describe('SIPp scenarios against a SIPp UAS stand-in', () => {
  const running: SippProcess[] = [];
  const sinks: RtpSink[] = [];
  const dirs: string[] = [];

  beforeAll(() => {
    if (!sippAvailable()) throw new Error('sipp is not installed (apt-get install sip-tester)');
  });
  afterEach(() => {
    for (const p of running.splice(0)) {
      p.stop();
      dirs.push(p.logDir); // a stopped run keeps its logs; assertion messages already carry them
    }
    for (const s of sinks.splice(0)) s.close();
  });
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function uas(vars: { rtp1?: number; rtp2?: number } = {}, transport: SippTransport = 'u1'): Promise<SippProcess> {
    const p = await startSipp({
      scenario: 'uas-stub.xml',
      transport,
      vars: { rtp1: String(vars.rtp1 ?? 9), rtp2: String(vars.rtp2 ?? 9) },
      timeoutMs: TIMEOUT_MS,
    });
    running.push(p);
    await p.ready;
    return p;
  }

  async function sink(): Promise<RtpSink> {
    const s = await openSink();
    sinks.push(s);
    return s;
  }

  async function tempDir(): Promise<string> {
    const d = await mkdtemp(path.join(tmpdir(), 'callscribe-sipp-test-'));
    dirs.push(d);
    return d;
  }

  function expectOk(r: SippResult): void {
    expect(r.exitCode, describeSippResult(r)).toBe(0);
    expect(r.stats?.successfulCalls, describeSippResult(r)).toBe(1);
    expect(r.stats?.failedCalls).toBe(0);
  }

  it.each<SippTransport>(['u1', 't1'])('options.xml gets 200 (transport %s)', async (transport) => {
    const server = await uas({}, transport);
    const client = await runSipp({
      scenario: 'options.xml',
      target: `127.0.0.1:${server.localPort}`,
      transport,
      timeoutMs: TIMEOUT_MS,
    });
    expectOk(client);
    const srv = await server.done;
    expectOk(srv);
    expect(tracedRequest(srv.messages, 'OPTIONS').head).toContain(`Via: SIP/2.0/${transport === 't1' ? 'TCP' : 'UDP'} `);
  });

  it.each([
    { scenario: 'bad-no-sdp.xml', status: 488, acked: true },
    { scenario: 'bad-codec.xml', status: 488, acked: true },
    { scenario: 'bye-unknown.xml', status: 481, acked: false },
  ])('$scenario is rejected with $status', async ({ scenario, status, acked }) => {
    const server = await uas();
    const client = await runSipp({
      scenario,
      target: `127.0.0.1:${server.localPort}`,
      vars: acked ? { callref: 'neg-1' } : {},
      timeoutMs: TIMEOUT_MS,
    });
    expectOk(client);
    expect(client.messages).toContain(`SIP/2.0 ${status} `);
    const srv = await server.done;
    expectOk(srv); // the stub's 488 branch ends only once the ACK has arrived
    if (acked) {
      const invite = tracedRequest(srv.messages, 'INVITE');
      const ack = tracedRequest(srv.messages, 'ACK');
      // RFC 3261 §17.1.1.3: the ACK for a non-2xx response reuses the INVITE's branch
      expect(viaBranch(ack.head)).toBe(viaBranch(invite.head));
      expect(ack.head).toMatch(/^To: [^\r\n]*;tag=/m);
      if (scenario === 'bad-codec.xml') expect(invite.body).toMatch(/^m=audio \d+ RTP\/AVP 18\r$/m);
      else expect(invite.head).toMatch(/^Content-Length: +0\r?$/m);
    }
  });

  it('reports a call that gets no answer as failed, with the trace, within its timeout', async () => {
    const unused = dgram.createSocket('udp4'); // a bound port that never answers
    await new Promise<void>((resolve) => unused.bind(0, '127.0.0.1', resolve));
    try {
      const r = await runSipp({ scenario: 'options.xml', target: `127.0.0.1:${unused.address().port}`, timeoutMs: 2_000 });
      dirs.push(r.logDir); // kept by the harness because the run failed
      expect(r.exitCode).not.toBe(0);
      expect(r.durationMs).toBeLessThan(2_000 + 3_000 + 1_000);
      expect(r.messages.match(/^OPTIONS sip:/gm)?.length ?? 0).toBeGreaterThan(1); // retransmitted
      expect(describeSippResult(r)).toContain('OPTIONS sip:callscribe@');
    } finally {
      unused.close();
    }
  });

  it('ends what <exec> started when SIPp stops early (its own -timeout)', async () => {
    const [rtp1, rtp2] = [await sink(), await sink()];
    const server = await uas({ rtp1: rtp1.port, rtp2: rtp2.port });
    const r = await runSipp({
      scenario: 'siprec-two-streams.xml',
      target: `127.0.0.1:${server.localPort}`,
      vars: {
        rtp_send: rtpSendCommand(),
        label1_audio: CUSTOMER_WAV,
        label2_audio: AGENT_WAV,
        audio_ms: '60000',
        rs_session_id: 'kQNhKFdEEeeJ9tD/VsPGWA==',
      },
      timeoutMs: 2_000,
    });
    dirs.push(r.logDir, server.logDir);
    expect(r.exitCode, describeSippResult(r)).toBe(255); // -timeout with -timeout_error
    expect(r.timedOut).toBe(false);
    expect(rtp1.packets.length).toBeGreaterThan(0); // the sender was running
    await new Promise((res) => setTimeout(res, 200));
    const count = rtp1.packets.length + rtp2.packets.length;
    await new Promise((res) => setTimeout(res, 400));
    expect(rtp1.packets.length + rtp2.packets.length).toBe(count);
  });

  it('writeRawUlaw keeps the WAV audio and pads to whole 20 ms packets with 0xFF', async () => {
    const dir = await tempDir();
    const full = await writeRawUlaw(CUSTOMER_WAV, path.join(dir, 'full.ulaw'));
    const mulaw = await readWavAsMulaw(CUSTOMER_WAV);
    expect(full.bytes % 160).toBe(0);
    expect(full.packets).toBe(Math.ceil(mulaw.length / 160));
    expect(full.durationMs).toBeCloseTo(65_700, -2); // 525,506 bytes of audio = 65.69 s
    const cut = await writeRawUlaw(CUSTOMER_WAV, path.join(dir, 'cut.ulaw'), { maxMs: 1_010 });
    const bytes = await readFile(cut.path);
    expect(cut).toMatchObject({ bytes: 8_160, packets: 51, durationMs: 1_020 });
    expect(bytes.subarray(0, 8_080).equals(mulaw.subarray(0, 8_080))).toBe(true);
    expect([...bytes.subarray(8_080)].every((b) => b === 0xff)).toBe(true);
  });

  it(`plain-pcap.xml delivers the ${G711A_PCAP_PACKETS}-packet PCMA capture to the answered port`, async () => {
    const rtp = await sink();
    const server = await uas({ rtp1: rtp.port });
    const client = await runSipp({
      scenario: 'plain-pcap.xml',
      target: `127.0.0.1:${server.localPort}`,
      vars: { callref: 'pcap-call-1', role: 'customer', audio_ms: '7600' },
      timeoutMs: TIMEOUT_MS,
    });
    expectOk(client);
    expectOk(await server.done);
    await waitFor('the pcap packets', () => rtp.packets.length >= G711A_PCAP_PACKETS, 2_000);
    expect(rtp.packets).toHaveLength(G711A_PCAP_PACKETS);
    expect(rtp.packets.every((p) => p.pt === 8 && p.payload.length === 240 && p.fromPort === client.mediaPort)).toBe(true);
    expect(rtp.packets[0]!.marker).toBe(true);
    expectContiguous(rtp.packets, 240);
    const invite = tracedRequest(client.messages, 'INVITE');
    expect(invite.head).toMatch(/^X-Callscribe-Role: customer\r?$/m);
    expect(invite.head).toMatch(/^X-Callscribe-Call-Ref: pcap-call-1\r?$/m);
    expect(invite.body).toMatch(/^m=audio \d+ RTP\/AVP 8 0 101\r$/m);
    expect(invite.body).toMatch(/^a=sendonly\r$/m);
  });

  it('plain-rtp-stream.xml streams a raw μ-law file exactly; two calls at once do not collide', async () => {
    const legs = await Promise.all(
      [CUSTOMER_WAV, AGENT_WAV].map(async (wav, i) => {
        const dir = await tempDir();
        const file = await writeRawUlaw(wav, path.join(dir, 'audio.ulaw'), { maxMs: 2_000 });
        const rtp = await sink();
        const server = await uas({ rtp1: rtp.port });
        return { dir, file, rtp, server, role: i === 0 ? 'customer' : 'agent' };
      }),
    );
    const clients = await Promise.all(
      legs.map((leg) =>
        startSipp({
          scenario: 'plain-rtp-stream.xml',
          target: `127.0.0.1:${leg.server.localPort}`,
          cwd: leg.dir,
          vars: { callref: 'two-legs-1', role: leg.role, audio_ms: String(leg.file.durationMs + 600) },
          timeoutMs: TIMEOUT_MS,
        }),
      ),
    );
    running.push(...clients);
    expect(new Set(clients.map((c) => c.mediaPort)).size).toBe(2);
    const results = await Promise.all(clients.map((c) => c.done));
    results.forEach((r) => expectOk(r));
    for (const [i, leg] of legs.entries()) {
      expectOk(await leg.server.done);
      await waitFor('the stream', () => leg.rtp.packets.length >= leg.file.packets, 2_000);
      expect(leg.rtp.packets).toHaveLength(leg.file.packets);
      expect(leg.rtp.packets.every((p) => p.pt === 0 && p.fromPort === clients[i]!.mediaPort)).toBe(true);
      expectContiguous(leg.rtp.packets, 160);
      const received = Buffer.concat(leg.rtp.packets.map((p) => p.payload));
      expect(received.equals(await readFile(leg.file.path))).toBe(true);
      expect(tracedRequest(results[i]!.messages, 'INVITE').head).toMatch(new RegExp(`^X-Callscribe-Role: ${leg.role}\\r?$`, 'm'));
    }
  });

  it.each<SippTransport>(['u1', 't1'])('siprec-two-streams.xml (%s): a valid SIPREC offer, both answered ports get their label, time-aligned', async (transport) => {
    const dir = await tempDir();
    const label1 = await writeRawUlaw(CUSTOMER_WAV, path.join(dir, 'customer.ulaw'), { maxMs: 2_000 });
    const label2 = await writeRawUlaw(AGENT_WAV, path.join(dir, 'agent.ulaw'), { maxMs: 2_000 });
    const [rtp1, rtp2] = [await sink(), await sink()];
    const server = await uas({ rtp1: rtp1.port, rtp2: rtp2.port }, transport);
    const client = await runSipp({
      scenario: 'siprec-two-streams.xml',
      target: `127.0.0.1:${server.localPort}`,
      transport,
      vars: {
        rtp_send: rtpSendCommand(),
        label1_audio: label1.path,
        label2_audio: label2.path,
        audio_ms: String(label1.durationMs + 1_000),
        rs_session_id: 'kQNhKFdEEeeJ9tD/VsPGWA==',
      },
      timeoutMs: TIMEOUT_MS,
    });
    expectOk(client);
    expectOk(await server.done);

    // the offer as the UAS received it
    const invite = tracedRequest(client.messages, 'INVITE');
    expect(invite.head).toMatch(/^Require: siprec\r?$/m);
    expect(invite.head).toMatch(/^Contact: <[^>]+>;\+sip\.src\r?$/m);
    const boundary = /^Content-Type: multipart\/mixed;boundary=(\S+)\r?$/m.exec(invite.head)?.[1];
    expect(boundary).toBe('uniqueBoundary');
    const length = Number(/^Content-Length: +(\d+)\r?$/m.exec(invite.head)?.[1]);
    expect(Buffer.byteLength(invite.body)).toBeGreaterThanOrEqual(length);
    const parts = invite.body.slice(0, length).split(`--${boundary!}`);
    expect(parts.at(-1)).toMatch(/^--\r\n$/);
    const [sdpPart, xmlPart] = [parts[1]!, parts[2]!];
    expect(sdpPart).toContain('Content-Type: application/sdp\r\n');
    expect(sdpPart.match(/^a=sendonly\r$/gm)).toHaveLength(2);
    expect(sdpPart.match(/^m=audio \d+ RTP\/AVP 0 101\r$/gm)).toHaveLength(2);
    expect(sdpPart).toMatch(/a=label:1\r\n[\s\S]*a=label:2\r\n/);
    expect(xmlPart).toMatch(/^\r\nContent-Type: application\/rs-metadata\+xml\r\nContent-Disposition: recording-session\r\n\r\n/);
    const xml = xmlPart.slice(xmlPart.indexOf('<?xml')).trimEnd();
    expect(XMLValidator.validate(xml)).toBe(true);
    const doc: unknown = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(xml);
    expect(doc).toMatchObject({
      recording: {
        xmlns: 'urn:ietf:params:xml:ns:recording:1',
        datamode: 'complete',
        session: { session_id: 'kQNhKFdEEeeJ9tD/VsPGWA==' },
        participant: [
          { nameID: { aor: expect.stringMatching(/^sip:\+8613800000000@/) } },
          { nameID: { aor: expect.stringMatching(/^sip:1025@/) } },
        ],
        stream: [{ label: 1 }, { label: 2 }],
      },
    });
    // label 1's stream is sent by the customer (participantstreamassoc send)
    expect(xml).toMatch(/<participantstreamassoc participant_id="Q3VzdG9tZXJQYXJ0aWNpcA==">\r?\n<send>U3RyZWFtTGFiZWxPbmUxMQ==<\/send>/);

    // the media: label 1 → rtp1 (customer), label 2 → rtp2 (agent), one clock
    await waitFor('both streams', () => rtp1.packets.length >= label1.packets && rtp2.packets.length >= label2.packets, 3_000);
    for (const [rtp, file] of [
      [rtp1, label1],
      [rtp2, label2],
    ] as const) {
      expect(rtp.packets).toHaveLength(file.packets);
      expect(rtp.packets.every((p) => p.pt === 0 && p.payload.length === 160)).toBe(true);
      expect(rtp.packets[0]!.marker).toBe(true);
      expectContiguous(rtp.packets, 160);
      expect(Buffer.concat(rtp.packets.map((p) => p.payload)).equals(await readFile(file.path))).toBe(true);
    }
    expect(rtp1.packets[0]!.ssrc).not.toBe(rtp2.packets[0]!.ssrc);
    expect(rtp1.packets[0]!.fromPort).not.toBe(rtp2.packets[0]!.fromPort);
    expect(Math.abs(rtp1.packets[0]!.atMs - rtp2.packets[0]!.atMs)).toBeLessThan(15);
  });
});
