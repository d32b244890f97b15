import { mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isAppError } from '../core/errors.js';
import { FIXTURE_CALLS_DIR, fixtureTrack, loadFixtureCall, resolveFixtureDir } from './fixture-call.js';

const ZH = join(FIXTURE_CALLS_DIR, 'zh-billing-complaint');

describe('loadFixtureCall', () => {
  const tmp: string[] = [];
  afterEach(async () => {
    for (const d of tmp.splice(0)) await rm(d, { recursive: true, force: true });
  });

  async function fixtureDir(script: unknown, files: Record<string, string> = { 'a.wav': 'customer.wav' }): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'fixture-'));
    tmp.push(d);
    await writeFile(join(d, 'script.json'), typeof script === 'string' ? script : JSON.stringify(script));
    for (const [to, from] of Object.entries(files)) await copyFile(join(ZH, from), join(d, to));
    return d;
  }

  async function expectFixtureError(dir: string, pattern: RegExp): Promise<void> {
    const err: unknown = await loadFixtureCall(dir).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isAppError(err) && err.code).toBe('ERR_SIMULATOR_FIXTURE');
    expect(err instanceof Error && err.message).toMatch(pattern);
  }

  it('loads zh-billing-complaint: two tracks, inbound = customer, μ-law data = the WAV data chunk', async () => {
    const call = await loadFixtureCall(ZH);
    expect(call.name).toBe('zh-billing-complaint');
    expect(call.tracks.map((t) => [t.role, t.track])).toEqual([
      ['customer', 'inbound'],
      ['agent', 'outbound'],
    ]);
    const wav = await readFile(join(ZH, 'customer.wav'));
    const dataAt = wav.indexOf('data', 12, 'latin1');
    const size = wav.readUInt32LE(dataAt + 4);
    expect(size).toBe(525_506);
    expect(fixtureTrack(call, 'inbound')!.mulaw.equals(wav.subarray(dataAt + 8, dataAt + 8 + size))).toBe(true);
    expect(call.script.lines).toHaveLength(12);
    expect(call.script.durationMs).toBe(65_688);
    expect(call.script.lines[3]).toMatchObject({ role: 'customer', startMs: 24_187 });
  });

  it('resolves a bare fixture name under FIXTURE_CALLS_DIR', async () => {
    expect(resolveFixtureDir('en-auto-repairs')).toBe(join(FIXTURE_CALLS_DIR, 'en-auto-repairs'));
    const call = await loadFixtureCall('en-auto-repairs');
    expect(call.script.lines).toEqual([]);
    expect(call.tracks).toHaveLength(2);
    expect(call.tracks[0]!.mulaw.length).toBe(call.tracks[1]!.mulaw.length);
  });

  it('rejects an invalid script.json', async () => {
    await expectFixtureError(await fixtureDir('{nope'), /cannot read/);
    await expectFixtureError(await fixtureDir({ roles: {}, lines: [] }), /durationMs/);
    await expectFixtureError(
      await fixtureDir({ roles: { customer: { twilioTrack: 'both', file: 'a.wav' } }, durationMs: 1, lines: [] }),
      /twilioTrack/,
    );
    await expectFixtureError(
      await fixtureDir({ roles: { customer: { twilioTrack: 'inbound', file: 'a.wav' } }, durationMs: 1, lines: [{ role: 'boss', text: 'x', startMs: 0, endMs: 1 }] }),
      /lines\.0\.role/,
    );
  });

  it('rejects path traversal, unknown roles, two roles on one track, no roles', async () => {
    await expectFixtureError(
      await fixtureDir({ roles: { customer: { twilioTrack: 'inbound', file: '../customer.wav' } }, durationMs: 1, lines: [] }),
      /file name/,
    );
    await expectFixtureError(
      await fixtureDir({ roles: { supervisor: { twilioTrack: 'inbound', file: 'a.wav' } }, durationMs: 1, lines: [] }),
      /unknown role/,
    );
    await expectFixtureError(
      await fixtureDir({
        roles: { customer: { twilioTrack: 'inbound', file: 'a.wav' }, agent: { twilioTrack: 'inbound', file: 'a.wav' } },
        durationMs: 1,
        lines: [],
      }),
      /two roles on track inbound/,
    );
    await expectFixtureError(await fixtureDir({ roles: {}, durationMs: 1, lines: [] }), /no roles/);
  });

  it('an inbound-only fixture loads with one track', async () => {
    const d = await fixtureDir({ roles: { customer: { twilioTrack: 'inbound', file: 'a.wav' } }, durationMs: 1, lines: [] });
    const call = await loadFixtureCall(d);
    expect(call.tracks.map((t) => t.track)).toEqual(['inbound']);
    expect(fixtureTrack(call, 'outbound')).toBeUndefined();
  });
});
