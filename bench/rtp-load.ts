/**
 * RTP load generator for `npm run bench -- --source rtp` (not a test): creates N two-stream
 * RTP sessions on callscribe (POST /v1/rtp-sessions) and streams a fixture call's customer and
 * agent tracks to them as PCMU, 20 ms packets, in real time, staggered.
 *
 *   node --import tsx bench/rtp-load.ts --url http://127.0.0.1:8080 --token T --fixture DIR --calls N --stagger-ms MS
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readWavAsG711, sendRtp } from '../src/simulator/rtp-sender.js';
import { sleep } from './support.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    fixture: { type: 'string' },
    calls: { type: 'string', default: '100' },
    'stagger-ms': { type: 'string', default: '100' },
  },
});
const url = values.url ?? 'http://127.0.0.1:8080';
const fixture = values.fixture ?? '';
const calls = Number(values.calls);
const stagger = Number(values['stagger-ms']);

async function one(customer: Buffer, agent: Buffer): Promise<void> {
  const res = await fetch(`${url}/v1/rtp-sessions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${values.token ?? ''}`, 'content-type': 'application/json' },
    body: JSON.stringify({ streams: [{ role: 'customer', codec: 'pcmu' }, { role: 'agent', codec: 'pcmu' }] }),
  });
  if (res.status !== 201) throw new Error(`session refused: ${res.status} ${await res.text()}`);
  const s = (await res.json()) as { callId: string; streams: Array<{ host: string; port: number }> };
  const [c, a] = s.streams;
  if (!c || !a) throw new Error('two streams expected');
  await Promise.all([
    sendRtp({ host: c.host, port: c.port, audio: customer, codec: 'pcmu', ptimeMs: 20 }),
    sendRtp({ host: a.host, port: a.port, audio: agent, codec: 'pcmu', ptimeMs: 20 }),
  ]);
  await fetch(`${url}/v1/rtp-sessions/${s.callId}`, { method: 'DELETE', headers: { authorization: `Bearer ${values.token ?? ''}` } });
}

async function main(): Promise<void> {
  const customer = await readWavAsG711(path.join(fixture, 'customer.wav'), 'pcmu');
  const agent = await readWavAsG711(path.join(fixture, 'agent.wav'), 'pcmu');
  const runs: Promise<void>[] = [];
  for (let i = 0; i < calls; i++) {
    runs.push(one(customer, agent).catch((err: unknown) => console.error(String(err))));
    await sleep(stagger);
  }
  await Promise.all(runs);
}

void main();
