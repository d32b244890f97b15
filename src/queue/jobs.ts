/**
 * Queue and job contract between ingest (producer) and workers (consumer).
 * Job ids are deterministic and built from natural keys with "-" separators (BullMQ rejects
 * most custom ids that contain ":"), so a re-enqueue is de-duplicated by BullMQ while the job
 * is retained, and by the database's unique keys after that.
 * Job data sits in Redis in clear text: it carries only what the worker needs, and completed
 * jobs are removed (see producer.ts).
 */
import type { CallSource, Role, Utterance } from '../core/types.js';

export const UTTERANCES_QUEUE = 'utterances';

export const JOB_CALL_START = 'call-start';
export const JOB_UTTERANCE = 'utterance';
export const JOB_STREAM_STATUS = 'stream-status';
export const JOB_CALL_END = 'call-end';

export type StreamStatus = 'pending' | 'active' | 'finished' | 'failed';

/** The routing decision for one role and the rule that made it (src/asr/routing/policy.ts). */
export interface RoleRouting {
  /** Model the stream started on. */
  readonly model: string;
  /** Model it switches to when that one fails (null: none). */
  readonly fallback: string | null;
  /** Rule name, or "customParameters.asrModel", "tenants.<id>", "default", "env-default". */
  readonly rule: string;
  /** Language hint sent to the recogniser (null: none). */
  readonly language: string | null;
}

export interface CallStartJob {
  readonly callId: string;
  readonly source: CallSource;
  /** Wall-clock ms since epoch of the stream start (call timeline 0). */
  readonly startedAt: number;
  readonly tenantId: string;
  /** Provider identifiers: Twilio callSid / streamSid / accountSid, SIP Call-ID, … */
  readonly externalIds: Readonly<Record<string, string>>;
  /** Custom parameters from the telephony side (Twilio <Parameter>s). */
  readonly customParameters: Readonly<Record<string, string>>;
  /** track → role, as applied to this call. */
  readonly roles: Readonly<Record<string, Role>>;
  /** role → model. */
  readonly models: Readonly<Partial<Record<Role, string>>>;
  /** role → routing decision, stored with the call (calls.routing). */
  readonly routing: Readonly<Partial<Record<Role, RoleRouting>>>;
  /** Agent and queue ids from the telephony side (Twilio parameters, SIP headers), if given. */
  readonly agentId?: string;
  readonly queueId?: string;
  /** Non-PII source metadata kept with the call (e.g. SIPREC session id and participants). */
  readonly metadata?: Readonly<Record<string, unknown>>;
}

export interface UtteranceJob {
  readonly callId: string;
  readonly callStartedAt: number;
  readonly utterance: Utterance;
}

export interface StreamStatusJob {
  readonly callId: string;
  readonly callStartedAt: number;
  readonly role: Role;
  readonly track: string;
  readonly model: string;
  readonly status: StreamStatus;
  readonly errorCode: string | null;
  /** Non-PII error message (provider error text). */
  readonly errorMessage: string | null;
  readonly reconnects: number;
  readonly utterances: number;
  /** Wall-clock ms since epoch. */
  readonly at: number;
  /**
   * Per-stream update counter (1, 2, …): part of the job id, so two updates in the same
   * millisecond (a failover right after a status change) are both kept.
   */
  readonly seq?: number;
}

export interface CallEndJob {
  readonly callId: string;
  readonly callStartedAt: number;
  readonly endedAt: number;
  readonly status: 'ended' | 'failed';
  /** Why the call ended, e.g. "stop", "socket-closed", "idle-timeout", "drain". */
  readonly endReason: string;
  readonly durationMs: number;
  /** Counters of the ingest side (frames, drops, gaps), non-PII. */
  readonly stats: Readonly<Record<string, number>>;
}

export type JobName =
  | typeof JOB_CALL_START
  | typeof JOB_UTTERANCE
  | typeof JOB_STREAM_STATUS
  | typeof JOB_CALL_END;

export const jobIds = {
  callStart: (callId: string) => `call-start-${callId}`,
  utterance: (callId: string, role: Role, seq: number) => `utt-${callId}-${role}-${seq}`,
  streamStatus: (callId: string, role: Role, status: StreamStatus, at: number, seq?: number) =>
    seq === undefined ? `stream-${callId}-${role}-${status}-${at}` : `stream-${callId}-${role}-${seq}-${status}-${at}`,
  callEnd: (callId: string) => `call-end-${callId}`,
} as const;
