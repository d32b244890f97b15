/**
 * Writes and reads of `utterances`. The primary key (call_id, role, seq) is the utterance's
 * natural key, so a job processed twice (retry after a lost ack, a re-enqueue after the
 * completed job was removed) leaves one row. In PII mode 'both' the unredacted text goes to
 * `utterance_originals` (same key) in the same transaction.
 */
import { asc, eq, lt } from 'drizzle-orm';
import type { Utterance } from '../../core/types.js';
import type { UtteranceJob } from '../../queue/jobs.js';
import { countSpokenChars } from '../../utterance/char-count.js';
import type { Db, DbExecutor } from '../client.js';
import { utteranceOriginals, utterances, type NewUtteranceRow, type UtteranceRow } from '../schema.js';
import { ensureCallRow } from './calls.js';

const dateOrNull = (ms: number | null | undefined): Date | null =>
  ms === null || ms === undefined ? null : new Date(ms);

/** What the worker adds to a sentence before storing it (search tokens, PII handling). */
export interface UtteranceExtras {
  /** segmentForIndex(stored text): space-separated search tokens; null/absent: not indexed. */
  readonly seg?: string | null;
  /** SEGMENTER_VERSION of the segmenter that produced `seg`. */
  readonly segVersion?: string | null;
  /** The stored text (job.utterance.text) had PII replaced by [TYPE] tokens. */
  readonly piiRedacted?: boolean;
  /** PII types found (PHONE, ID, …), whatever the mode. */
  readonly piiTypes?: readonly string[];
  /** PII mode 'both': the unredacted text, written to utterance_originals. */
  readonly originalText?: string | null;
  /** Spoken characters of the unredacted text (so [PHONE] tokens do not skew CPM); default: counted on the stored text. */
  readonly charCount?: number;
}

export function utteranceRow(
  callId: string,
  callStartedAt: number,
  u: Utterance,
  extras: UtteranceExtras = {},
): NewUtteranceRow {
  return {
    callId,
    callStartedAt: new Date(callStartedAt),
    role: u.role,
    track: u.track,
    seq: u.seq,
    startMs: Math.round(u.startMs),
    endMs: Math.round(u.endMs),
    text: u.text,
    charCount: extras.charCount ?? countSpokenChars(u.text),
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
    seg: extras.seg ?? null,
    segVersion: extras.seg === undefined || extras.seg === null ? null : (extras.segVersion ?? null),
    piiRedacted: extras.piiRedacted ?? false,
    piiTypes: [...(extras.piiTypes ?? [])],
  };
}

/**
 * Inserts the utterance of an utterance job, creating a placeholder call row first when the
 * call-start job has not been persisted yet. `job.utterance.text` is stored as given (pass the
 * redacted text). Returns `inserted: false` when the row existed.
 */
export async function insertUtterance(db: Db, job: UtteranceJob, extras: UtteranceExtras = {}): Promise<{ inserted: boolean }> {
  await ensureCallRow(db, job.callId, job.callStartedAt);
  const row = utteranceRow(job.callId, job.callStartedAt, job.utterance, extras);
  const original = extras.originalText ?? null;
  const write = async (tx: DbExecutor) => {
    const rows = await tx
      .insert(utterances)
      .values(row)
      .onConflictDoNothing({ target: [utterances.callId, utterances.role, utterances.seq] })
      .returning({ seq: utterances.seq });
    if (original !== null) {
      await tx
        .insert(utteranceOriginals)
        .values({ callId: job.callId, role: job.utterance.role, seq: job.utterance.seq, text: original })
        .onConflictDoNothing({ target: [utteranceOriginals.callId, utteranceOriginals.role, utteranceOriginals.seq] });
    }
    return { inserted: rows.length > 0 };
  };
  return original === null ? write(db) : db.transaction(write);
}

/** A call's transcript in timeline order (ties: role, then seq). */
export async function listUtterances(db: Db, callId: string): Promise<UtteranceRow[]> {
  return db
    .select()
    .from(utterances)
    .where(eq(utterances.callId, callId))
    .orderBy(asc(utterances.startMs), asc(utterances.role), asc(utterances.seq));
}

/**
 * Retention of unredacted text (PII mode 'both'): deletes utterance_originals rows written
 * before `before`. Returns how many went. Run it daily with a cut-off shorter than the
 * transcript retention (docs/schema.md).
 */
export async function deleteUtteranceOriginalsBefore(db: Db, before: Date): Promise<number> {
  const rows = await db
    .delete(utteranceOriginals)
    .where(lt(utteranceOriginals.createdAt, before))
    .returning({ seq: utteranceOriginals.seq });
  return rows.length;
}
