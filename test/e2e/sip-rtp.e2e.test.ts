/**
 * SIP and RTP ingest against real peers: SIPp (Debian sip-tester) plays the SBC / PBX, the
 * service answers over UDP/TCP, receives RTP, and the usual pipeline runs to Postgres.
 *
 * - plain INVITE + /usr/share/sip-tester/g711a.pcap (PCMA, 30 ms packets): the PCM handed to the
 *   recogniser equals an independent A-law decode of the capture's payloads, zero losses;
 * - plain INVITE + rtp_stream of the zh-billing-complaint customer track (PCMU, 20 ms): the
 *   script's customer lines end up in Postgres;
 * - SIPREC INVITE (multipart SDP + RFC 7865 metadata) with two streams: both roles transcribed,
 *   roles taken from the metadata, the SIPREC session kept with the call;
 * - raw RTP session API (POST /v1/rtp-sessions) fed by the simulator's RTP sender.
 * The zh calls run in real time (65.7 s), concurrently.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { alaw } from 'alawmulaw';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PcmChunk, Role } from '../../src/core/types.js';
import { startEmulator, type EmulatorHandle } from '../../src/emulator/server.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { Service } from '../../src/service.js';
import { readPcapFile } from '../../src/simulator/pcap.js';
import { readWavAsG711, sendRtp } from '../../src/simulator/rtp-sender.js';
import { parseRtp } from '../../src/ingest/rtp/packet.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { deleteKeys, uniquePrefix } from '../support/redis.js';
import { serviceEnv, ZH_CALL, storedLineText } from '../support/harness.js';
import { startService } from '../../src/service.js';
import { describeSippResult, G711A_PCAP, rtpSendCommand, runSipp, writeRawUlaw } from '../support/sipp.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const API_KEY = 'e2e-test-key';
const API_TOKEN = 'e2e-api-token-0123456789';
interface ScriptLine {
  role: Role;
  text: string;
}
const script = JSON.parse(readFileSync(path.join(ZH_CALL, 'script.json'), 'utf8')) as { lines: ScriptLine[] };
/** What Postgres holds for a line: PII redacted by default. */
const stored = (l: ScriptLine) => `${l.role}:${storedLineText(l.text)}`;

interface CallRow {
  id: string;
  status: string;
  end_reason: string;
  source: string;
  roles: Record<string, string>;
  external_ids: Record<string, string>;
  metadata: Record<string, unknown>;
  ingest_stats: Record<string, number>;
}

describe('SIP / SIPREC / RTP ingest with SIPp', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let emulator: EmulatorHandle;
  let svc: Service;
  let prefix: string;
  let sipTarget: string;
  let work: string;
  const taps = new Map<string, Buffer[]>();

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = new pg.Pool({ connectionString: db.url, max: 3 });
    emulator = await startEmulator({ host: '127.0.0.1', port: 0, apiKey: API_KEY, script: { dir: ZH_CALL }, logger: silentLogger });
    prefix = uniquePrefix('e2e-sip');
    work = mkdtempSync(path.join(os.tmpdir(), 'callscribe-sip-'));
    svc = await startService(
      serviceEnv({
        DATABASE_URL: db.url,
        REDIS_URL,
        QUEUE_PREFIX: prefix,
        DASHSCOPE_API_KEY: API_KEY,
        DASHSCOPE_INFERENCE_URL: `${emulator.url}/api-ws/v1/inference`,
        SIP_ENABLED: 'true',
        SIP_HOST: '127.0.0.1',
        SIP_PORT: '0',
        RTP_HOST: '127.0.0.1',
        RTP_PORT_MIN: '31000',
        RTP_PORT_MAX: '31199',
        RTP_INACTIVITY_TIMEOUT_MS: '4000',
        API_TOKEN,
      }),
      'serve',
      {
        logger: silentLogger,
        audioTap: (callId: string, role: Role, chunk: PcmChunk) => {
          const key = `${callId}:${role}`;
          const list = taps.get(key) ?? [];
          list.push(Buffer.from(chunk.pcm));
          taps.set(key, list);
        },
      },
    );
    expect(svc.sip?.udp).toBeGreaterThan(0);
    sipTarget = `127.0.0.1:${svc.sip?.udp}`;
  }, 60_000);

  afterAll(async () => {
    await svc?.stop();
    await pool?.end();
    await emulator?.close();
    await db?.drop();
    await deleteKeys(REDIS_URL, prefix);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Waits until the call whose external id matches has ended and its utterances are stored. */
  async function waitForEndedCall(where: string, value: string, timeoutMs = 120_000): Promise<{ call: CallRow; utterances: Array<{ role: string; text: string; seq: number }> }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await pool.query<CallRow>(`select * from calls where ${where} = $1`, [value]);
      const call = res.rows[0];
      if (call && call.status !== 'active') {
        // let trailing utterance jobs land
        await new Promise((r) => setTimeout(r, 1500));
        const utts = await pool.query('select role, text, seq from utterances where call_id = $1 order by start_ms, role', [call.id]);
        return { call, utterances: utts.rows };
      }
      if (Date.now() > deadline) throw new Error(`call ${value} did not end (${JSON.stringify(call)})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('plain INVITE replaying g711a.pcap: the PCM fed to the recogniser equals an independent decode, no loss', async () => {
    const callref = `pcap-${randomBytes(4).toString('hex')}`;
    const result = await runSipp({
      scenario: 'plain-pcap.xml',
      target: sipTarget,
      vars: { callref, role: 'customer', audio_ms: '7600' },
      timeoutMs: 30_000,
    });
    expect(result.exitCode, describeSippResult(result)).toBe(0);
    const { call } = await waitForEndedCall("external_ids->>'callRef'", callref, 30_000);
    expect(call.source).toBe('sip');
    expect(call.end_reason).toBe('bye');
    expect(Object.values(call.roles)).toEqual(['customer']);
    const track = Object.keys(call.roles)[0]!;
    expect(call.ingest_stats[`${track}.rtp.lostPackets`]).toBe(0);
    expect(call.ingest_stats[`${track}.rtp.packets`]).toBe(236);

    // independent decode: every RTP payload of the capture, A-law → PCM16 with alawmulaw
    const payloads = (await readPcapFile(G711A_PCAP)).datagrams
      .map((d) => parseRtp(d.payload))
      .filter((p) => p.ok)
      .map((p) => (p.ok ? Buffer.from(p.packet.payload) : Buffer.alloc(0)));
    const expected = Buffer.from(alaw.decode(Buffer.concat(payloads)).buffer);
    const fed = Buffer.concat(taps.get(`${call.id}:customer`) ?? []);
    const leadInSamples = Math.round((call.ingest_stats[`${track}.leadInFillMs`] ?? 0) * 8);
    const audio = fed.subarray(leadInSamples * 2);
    expect(fed.subarray(0, leadInSamples * 2).every((b) => b === 0)).toBe(true);
    expect(audio.length).toBe(expected.length);
    expect(audio.equals(expected)).toBe(true);
  }, 60_000);

  it('bad SIP from SIPp gets the right answers and the server keeps working', async () => {
    for (const scenario of ['bad-no-sdp.xml', 'bad-codec.xml', 'bye-unknown.xml', 'options.xml']) {
      const r = await runSipp({ scenario, target: sipTarget, vars: scenario.startsWith('bad') ? { callref: 'bad' } : {}, timeoutMs: 15_000 });
      expect(r.exitCode, `${scenario}\n${describeSippResult(r)}`).toBe(0);
    }
    const tcp = await runSipp({ scenario: 'options.xml', target: `127.0.0.1:${svc.sip?.tcp}`, transport: 't1', timeoutMs: 15_000 });
    expect(tcp.exitCode, describeSippResult(tcp)).toBe(0);
  }, 60_000);

  it('rtp_stream of the customer track and a SIPREC call with two streams are transcribed', async () => {
    // plain INVITE streaming the customer track as PCMU 20 ms
    const plainDir = mkdtempSync(path.join(work, 'plain-'));
    const raw = await writeRawUlaw(path.join(ZH_CALL, 'customer.wav'), path.join(plainDir, 'audio.ulaw'));
    const callref = `zh-${randomBytes(4).toString('hex')}`;
    const sessionId = randomBytes(16).toString('base64');
    const [plain, siprec] = await Promise.all([
      runSipp({
        scenario: 'plain-rtp-stream.xml',
        target: sipTarget,
        cwd: plainDir,
        vars: { callref, role: 'customer', audio_ms: String(Math.ceil(raw.durationMs) + 600) },
        timeoutMs: 100_000,
      }),
      runSipp({
        scenario: 'siprec-two-streams.xml',
        target: `127.0.0.1:${svc.sip?.tcp}`,
        transport: 't1',
        vars: {
          rtp_send: rtpSendCommand(),
          label1_audio: path.join(ZH_CALL, 'customer.wav'),
          label2_audio: path.join(ZH_CALL, 'agent.wav'),
          audio_ms: String(Math.ceil(raw.durationMs) + 1000),
          rs_session_id: sessionId,
        },
        timeoutMs: 100_000,
      }),
    ]);
    expect(plain.exitCode, describeSippResult(plain)).toBe(0);
    expect(siprec.exitCode, describeSippResult(siprec)).toBe(0);

    const customerLines = script.lines.filter((l) => l.role === 'customer').map(stored);
    const p = await waitForEndedCall("external_ids->>'callRef'", callref);
    expect(p.call.end_reason).toBe('bye');
    expect(p.utterances.map((u) => `${u.role}:${u.text}`)).toEqual(customerLines);

    const s = await waitForEndedCall("metadata->'siprec'->>'sessionId'", sessionId);
    expect(s.call.source).toBe('sip');
    expect(s.call.roles).toEqual({ 'label-1': 'customer', 'label-2': 'agent' });
    expect(s.utterances.map((u) => `${u.role}:${u.text}`)).toEqual(script.lines.map(stored));
    const siprecMd = s.call.metadata['siprec'] as { participants: unknown[]; streams: Array<{ basis: string }> };
    expect(siprecMd.participants).toHaveLength(2);
    expect(siprecMd.streams.map((x) => x.basis)).toEqual(['association', 'association']);
  }, 180_000);

  it('a session whose RTP stops ends by itself with the reason rtp-inactivity (hold-length silence is configurable)', async () => {
    const res = await fetch(`http://127.0.0.1:${svc.port}/v1/rtp-sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ streams: [{ role: 'agent', codec: 'pcma' }] }),
    });
    expect(res.status).toBe(201);
    const session = (await res.json()) as { callId: string; host: string; port: number };
    const audio = Buffer.alloc(8000, 0xd5); // 1 s of A-law silence
    await sendRtp({ host: session.host, port: session.port, audio, codec: 'pcma', ptimeMs: 20 });
    const { call } = await waitForEndedCall('id::text', session.callId, 20_000);
    expect(call.end_reason).toBe('rtp-inactivity');
    expect(call.ingest_stats['agent.rtp.packets']).toBe(50);
  }, 30_000);

  it('a raw RTP session (POST /v1/rtp-sessions) receives audio until DELETE', async () => {
    const base = `http://127.0.0.1:${svc.port}/v1/rtp-sessions`;
    const unauth = await fetch(base, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(unauth.status).toBe(401);
    const bad = await fetch(base, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ streams: [{ role: 'customer', codec: 'g729' }] }),
    });
    expect(bad.status).toBe(400);
    const res = await fetch(base, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ externalId: 'ari-1700000000.42', agentId: '1025', streams: [{ role: 'customer', codec: 'pcmu' }] }),
    });
    expect(res.status).toBe(201);
    const session = (await res.json()) as { callId: string; host: string; port: number };
    const audio = (await readWavAsG711(path.join(ZH_CALL, 'customer.wav'), 'pcmu')).subarray(0, 8000 * 3);
    const sent = await sendRtp({ host: session.host, port: session.port, audio, codec: 'pcmu', ptimeMs: 20 });
    expect(sent.sent).toBe(150);
    const status = (await (await fetch(`${base}/${session.callId}`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json()) as {
      streams: Array<{ packets: number; lostPackets: number }>;
    };
    expect(status.streams[0]?.packets).toBe(150);
    expect(status.streams[0]?.lostPackets).toBe(0);
    const del = await fetch(`${base}/${session.callId}`, { method: 'DELETE', headers: { authorization: `Bearer ${API_TOKEN}` } });
    expect(del.status).toBe(200);
    const { call } = await waitForEndedCall('id::text', session.callId, 20_000);
    expect(call.source).toBe('rtp');
    expect(call.end_reason).toBe('api');
    expect(call.external_ids).toEqual({ rtpSession: 'ari-1700000000.42' });
    const fed = Buffer.concat(taps.get(`${session.callId}:customer`) ?? []);
    expect(fed.length).toBeGreaterThanOrEqual(3 * 8000 * 2);
  }, 60_000);
});
