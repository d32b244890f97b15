/**
 * Runtime validation of queue job data (jobs.ts is the compile-time contract; Redis content is
 * untrusted input). The `satisfies`-style checks at the bottom fail the typecheck when the
 * schemas and the contract drift apart.
 */
import { z } from 'zod';
import type { Utterance } from '../core/types.js';
import type { CallEndJob, CallStartJob, StreamStatusJob, UtteranceJob } from '../queue/jobs.js';

/** Postgres `uuid` syntax (any version), which is what calls.id stores. */
const callId = z.guid();
/** Wall-clock ms since the epoch, within what timestamptz and Date can hold. */
const epochMs = z.number().int().min(0).max(8.64e15);
/** Call-timeline offset, ms (fits Postgres integer). */
const offsetMs = z.number().finite().min(-2_147_483_648).max(2_147_483_647);
const int32 = z.number().int().min(0).max(2_147_483_647);
const role = z.enum(['customer', 'agent']);
const stringMap = z.record(z.string(), z.string());

const wordSchema = z.object({
  startMs: offsetMs,
  endMs: offsetMs,
  text: z.string(),
  punctuation: z.string(),
});

const emotionSchema = z.object({
  raw: z.string().min(1),
  provider: z.string().min(1),
  confidence: z.number().min(0).max(1).nullable(),
  valence: z.union([z.literal(-1), z.literal(0), z.literal(1)]),
  arousal: z.union([z.literal(0), z.literal(1)]).nullable().optional(),
});

export const utteranceSchema = z.object({
  callId,
  role,
  track: z.string(),
  seq: int32,
  startMs: offsetMs,
  endMs: offsetMs,
  text: z.string(),
  words: z.array(wordSchema).max(10_000),
  emotion: emotionSchema.nullable(),
  model: z.string().min(1),
  asrTaskId: z.string(),
  timing: z.object({
    audioEndAt: epochMs.nullable(),
    finalReceivedAt: epochMs,
    enqueuedAt: epochMs.optional(),
  }),
});

const roleRouting = z.object({
  model: z.string().min(1),
  fallback: z.string().min(1).nullable(),
  rule: z.string().min(1),
  language: z.string().min(1).nullable(),
});

export const callStartJobSchema = z.object({
  callId,
  source: z.enum(['twilio', 'rtp', 'sip']),
  startedAt: epochMs,
  tenantId: z.string().min(1),
  externalIds: stringMap,
  customParameters: stringMap,
  roles: z.record(z.string(), role),
  models: z.object({ customer: z.string().min(1).optional(), agent: z.string().min(1).optional() }),
  // absent in jobs enqueued by a version before routing (rolling deploys): stored as {}
  routing: z.object({ customer: roleRouting.optional(), agent: roleRouting.optional() }).default({}),
  agentId: z.string().min(1).max(200).optional(),
  queueId: z.string().min(1).max(200).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

export const utteranceJobSchema = z
  .object({
    callId,
    callStartedAt: epochMs,
    utterance: utteranceSchema,
  })
  .refine((j) => j.utterance.callId.toLowerCase() === j.callId.toLowerCase(), {
    message: 'utterance.callId differs from callId',
    path: ['utterance', 'callId'],
  });

export const streamStatusJobSchema = z.object({
  callId,
  callStartedAt: epochMs,
  role,
  track: z.string(),
  model: z.string().min(1),
  status: z.enum(['pending', 'active', 'finished', 'failed']),
  errorCode: z.string().nullable(),
  errorMessage: z.string().nullable(),
  reconnects: int32,
  utterances: int32,
  at: epochMs,
  seq: int32.optional(),
});

export const callEndJobSchema = z.object({
  callId,
  callStartedAt: epochMs,
  endedAt: epochMs,
  status: z.enum(['ended', 'failed']),
  endReason: z.string(),
  durationMs: z.number().finite().min(0).max(2_147_483_647),
  stats: z.record(z.string(), z.number().finite()),
});

/** "path (code)" per issue: names the bad fields without echoing their values (PII). */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.slice(0, 10).map((i) => `${i.path.map(String).join('.') || '(root)'} (${i.code})`);
}

// compile-time: parsed data is assignable to the contract types
type Assignable<A, B> = [A] extends [B] ? true : false;
const contractChecks: [
  Assignable<z.infer<typeof utteranceSchema>, Utterance>,
  Assignable<z.infer<typeof callStartJobSchema>, CallStartJob>,
  Assignable<z.infer<typeof utteranceJobSchema>, UtteranceJob>,
  Assignable<z.infer<typeof streamStatusJobSchema>, StreamStatusJob>,
  Assignable<z.infer<typeof callEndJobSchema>, CallEndJob>,
] = [true, true, true, true, true];
void contractChecks;
