/**
 * Loads a shared fixture call (/work/shared/fixtures/calls/<name>/, see its README): the
 * `script.json` ground truth plus one time-aligned mono WAV per role, as μ-law bytes.
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { AppError } from '../core/errors.js';
import { ROLES, isRole, type Role } from '../core/types.js';
import { readWavAsMulaw } from './wav.js';

export type FixtureTwilioTrack = 'inbound' | 'outbound';

/** Project root/../shared/fixtures/calls (the README's "../shared/fixtures"). */
export const FIXTURE_CALLS_DIR = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'shared',
  'fixtures',
  'calls',
);

/** A fixture name (e.g. "zh-billing-complaint") or a directory path → the directory. */
export function resolveFixtureDir(nameOrDir: string): string {
  if (isAbsolute(nameOrDir) || nameOrDir.includes('/') || nameOrDir.startsWith('.')) {
    return resolve(nameOrDir);
  }
  return join(FIXTURE_CALLS_DIR, nameOrDir);
}

const emotionSchema = z
  .looseObject({
    paraformer: z.looseObject({ tag: z.string(), confidence: z.number() }).optional(),
    qwen: z.string().optional(),
  })
  .optional();

const lineSchema = z.looseObject({
  role: z.enum(ROLES),
  text: z.string(),
  startMs: z.number().nonnegative(),
  endMs: z.number().nonnegative(),
  emotion: emotionSchema,
});

const roleSchema = z.object({
  twilioTrack: z.enum(['inbound', 'outbound']),
  file: z
    .string()
    .min(1)
    .refine((f) => basename(f) === f && f !== '..' && f !== '.', 'must be a file name in the fixture folder'),
});

export const fixtureScriptSchema = z.looseObject({
  name: z.string().min(1).optional(),
  language: z.string().optional(),
  roles: z.record(z.string(), roleSchema),
  durationMs: z.number().nonnegative(),
  lines: z.array(lineSchema),
});

export type FixtureScript = z.infer<typeof fixtureScriptSchema>;
export type FixtureLine = z.infer<typeof lineSchema>;

export interface FixtureTrack {
  readonly role: Role;
  readonly track: FixtureTwilioTrack;
  /** The whole track as μ-law bytes (8000 Hz, 1 byte per sample). */
  readonly mulaw: Buffer;
}

export interface FixtureCall {
  readonly name: string;
  readonly dir: string;
  /** Inbound first. */
  readonly tracks: readonly FixtureTrack[];
  readonly script: FixtureScript;
}

function fixtureError(message: string, details: Record<string, unknown> = {}): AppError {
  return new AppError('ERR_SIMULATOR_FIXTURE', message, { category: 'invalid_request', details });
}

/**
 * Loads `script.json` and the role WAVs from `dir` (a path, or a fixture name under
 * FIXTURE_CALLS_DIR). Throws AppError ERR_SIMULATOR_FIXTURE (or ERR_SIMULATOR_WAV_FORMAT).
 */
export async function loadFixtureCall(dirOrName: string): Promise<FixtureCall> {
  const dir = resolveFixtureDir(dirOrName);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(join(dir, 'script.json'), 'utf8'));
  } catch (err) {
    throw new AppError('ERR_SIMULATOR_FIXTURE', `cannot read ${join(dir, 'script.json')}`, {
      category: 'invalid_request',
      cause: err,
    });
  }
  const parsed = fixtureScriptSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw fixtureError(`invalid script.json in ${dir}: ${issue ? `${issue.path.join('.')}: ${issue.message}` : ''}`);
  }
  const script = parsed.data;
  const tracks: FixtureTrack[] = [];
  for (const [role, spec] of Object.entries(script.roles)) {
    if (!isRole(role)) throw fixtureError(`unknown role "${role}" in ${dir}`);
    if (tracks.some((t) => t.track === spec.twilioTrack)) {
      throw fixtureError(`two roles on track ${spec.twilioTrack} in ${dir}`);
    }
    const mulaw = await readWavAsMulaw(join(dir, spec.file));
    tracks.push({ role, track: spec.twilioTrack, mulaw });
  }
  if (tracks.length === 0) throw fixtureError(`no roles in ${dir}`);
  tracks.sort((a, b) => (a.track === b.track ? 0 : a.track === 'inbound' ? -1 : 1));
  return { name: script.name ?? basename(dir), dir, tracks, script };
}

/** The fixture's track for a Twilio track name, if any. */
export function fixtureTrack(call: FixtureCall, track: FixtureTwilioTrack): FixtureTrack | undefined {
  return call.tracks.find((t) => t.track === track);
}
