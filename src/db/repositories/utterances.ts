/**
 * Writes and reads of `utterances`. The primary key (call_id, role, seq) is the utterance's
 * natural key, so a job processed twice (retry after a lost ack, a re-enqueue after the
 * completed job was removed) leaves one row.
 */
import { asc, eq } from 'drizzle-orm';
import type { Utterance } from '../../core/types.js';
import type { UtteranceJob } from '../../queue/jobs.js';
import { countSpokenChars } from '../../utterance/char-count.js';
import type { Db } from '../client.js';
import { utterances, type NewUtteranceRow, type UtteranceRow } from '../schema.js';
import { ensureCallRow } from './calls.js';

const dateOrNull = (ms: number | null | undefined): Date | null =>
  ms === null || ms === undefined ? null : new Date(ms);

export function utteranceRow(callId: string, callStartedAt: number, u: Utterance): NewUtteranceRow {
  return {
    callId,
    callStartedAt: new Date(callStartedAt),
    role: u.role,
    track: u.track,
    seq: u.seq,
    startMs: Math.round(u.startMs),
    endMs: Math.round(u.endMs),
    text: u.text,
    charCount: countSpokenChars(u.text),
    words: u.words.map((w) => ({ startMs: w.startMs, endMs: w.endMs, text: w.text, punctuation: w.punctuation })),
    emotionRaw: u.emotion?.raw ?? null,
    emotionProvider: u.emotion?.provider ?? null,
    emotionConfidence: u.emotion?.confidence ?? null,
    valence: u.emotion?.valence ?? null,
    arousal: u.emotion?.arousal ?? null,
    model: u.model,
    asrTaskId: u.asrTaskId,
    audioEndAt: dateOrNull(u.timing.audioEndAt),
    finalReceivedAt: new Date(u.timing.finalReceivedAt),
    enqueuedAt: dateOrNull(u.timing.enqueuedAt),
  };
}

/**
 * Inserts the utterance of an utterance job, creating a placeholder call row first when the
 * call-start job has not been persisted yet. Returns `inserted: false` when the row existed.
 */
export async function insertUtterance(db: Db, job: UtteranceJob): Promise<{ inserted: boolean }> {
  await ensureCallRow(db, job.callId, job.callStartedAt);
  const rows = await db
    .insert(utterances)
    .values(utteranceRow(job.callId, job.callStartedAt, job.utterance))
    .onConflictDoNothing({ target: [utterances.callId, utterances.role, utterances.seq] })
    .returning({ seq: utterances.seq });
  return { inserted: rows.length > 0 };
}

/** A call's transcript in timeline order (ties: role, then seq). */
export async function listUtterances(db: Db, callId: string): Promise<UtteranceRow[]> {
  return db
    .select()
    .from(utterances)
    .where(eq(utterances.callId, callId))
    .orderBy(asc(utterances.startMs), asc(utterances.role), asc(utterances.seq));
}
