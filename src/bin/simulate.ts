/** `callscribe simulate`: play a fixture call as Twilio Media Streams. */
import path from 'node:path';
import { computeTwilioSignature } from '../ingest/twilio/signature.js';
import { loadFixtureCall } from '../simulator/fixture-call.js';
import { playManyCalls } from '../simulator/twilio-client.js';

export function parseParams(raw: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const list = Array.isArray(raw) ? raw : [];
  for (const item of list) {
    if (typeof item !== 'string') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new Error(`--param expects k=v, got "${item}"`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

function num(values: Record<string, unknown>, name: string, def: number): number {
  const raw = values[name];
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got "${String(raw)}"`);
  return n;
}

export async function runSimulate(values: Record<string, unknown>): Promise<number> {
  if (typeof values['call'] !== 'string') throw new Error('--call DIR is required (e.g. ../shared/fixtures/calls/zh-billing-complaint)');
  const url = typeof values['url'] === 'string' ? values['url'] : 'ws://127.0.0.1:8080/twilio';
  const fixture = await loadFixtureCall(path.resolve(values['call']));
  const speed = num(values, 'speed', 1);
  const calls = Math.max(1, Math.floor(num(values, 'calls', 1)));
  const tracks = values['tracks'] === 'inbound' ? 'inbound' : 'both';
  const headers: Record<string, string> = {};
  if (typeof values['auth-token'] === 'string') {
    headers['X-Twilio-Signature'] = computeTwilioSignature(values['auth-token'], url);
  }
  const started = Date.now();
  process.stdout.write(`playing ${fixture.name} × ${calls} into ${url} at ${speed === 0 ? 'max' : `${speed}×`} speed\n`);
  const results = await playManyCalls({
    calls,
    staggerMs: num(values, 'stagger-ms', 50),
    fixture,
    url,
    speed: speed === 0 ? Infinity : speed,
    customParameters: parseParams(values['param']),
    tracks,
    headers,
  });
  let failed = 0;
  for (const r of results) {
    if (r.status === 'rejected') {
      failed++;
      process.stderr.write(`call failed: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}\n`);
    } else {
      process.stdout.write(
        `call ${r.value.callSid} stream ${r.value.streamSid}: ${r.value.framesSent} frames, closed ${r.value.closeCode ?? '-'}\n`,
      );
    }
  }
  process.stdout.write(`done in ${Date.now() - started} ms, ${calls - failed}/${calls} calls ok\n`);
  return failed === 0 ? 0 : 1;
}
