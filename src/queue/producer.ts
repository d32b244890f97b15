/**
 * The ingest side of the queue: adds jobs with deterministic ids (jobs.ts) to UTTERANCES_QUEUE.
 *
 * The ingest path must not crash or block on Redis: enqueue methods never throw; they return a
 * promise that settles 'queued' once the job is in Redis, or 'dropped'. Adds that fail (Redis
 * unreachable: the producer connection fails fast) wait in a bounded in-memory outbox and are
 * retried in order with backoff; past the bound the oldest job is dropped, counted and logged
 * (ERR_QUEUE_OUTBOX_FULL). Call `flush()` before `close()` to deliver what is pending.
 */
import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { systemClock, type Clock } from '../core/clock.js';
import { errorMessage } from '../core/errors.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import {
  JOB_CALL_END,
  JOB_CALL_START,
  JOB_STREAM_STATUS,
  JOB_UTTERANCE,
  UTTERANCES_QUEUE,
  jobIds,
  type CallEndJob,
  type CallStartJob,
  type JobName,
  type StreamStatusJob,
  type UtteranceJob,
} from './jobs.js';
import { Outbox, type OutboxDropReason, type OutboxOutcome } from './outbox.js';
import { closeRedis, createProducerConnection, settleHandshake } from './redis.js';

export type EnqueueOutcome = OutboxOutcome;

/**
 * Retries with exponential backoff: 500 ms, 1 s, 2 s … (12 attempts ≈ 17 min, enough for a
 * Postgres restart). Completed jobs stay an hour (BullMQ de-duplicates re-adds of a retained
 * id); failed ones a week, for inspection. Job data can hold transcript text (PII): nothing is
 * kept longer than that.
 */
export const DEFAULT_JOB_OPTIONS = {
  attempts: 12,
  backoff: { type: 'exponential', delay: 500 },
  removeOnComplete: { age: 3600, count: 10_000 },
  removeOnFail: { age: 7 * 24 * 3600 },
} as const satisfies JobsOptions;

export interface Producer {
  enqueueCallStart(job: CallStartJob): Promise<EnqueueOutcome>;
  /** Sets utterance.timing.enqueuedAt (on a copy) before adding. */
  enqueueUtterance(job: UtteranceJob): Promise<EnqueueOutcome>;
  enqueueStreamStatus(job: StreamStatusJob): Promise<EnqueueOutcome>;
  enqueueCallEnd(job: CallEndJob): Promise<EnqueueOutcome>;
  /** Resolves when nothing is pending; rejects with ERR_QUEUE_FLUSH_TIMEOUT after timeoutMs. */
  flush(timeoutMs: number): Promise<void>;
  /** Jobs not yet confirmed in Redis (in flight + outbox). */
  readonly pending: number;
  /** Drops what is still pending (logged), closes the queue and its connection. Idempotent. */
  close(): Promise<void>;
}

export interface ProducerOptions {
  readonly redisUrl: string;
  readonly prefix: string;
  readonly metrics: Metrics;
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Outbox bound (default 50 000 jobs). */
  readonly maxOutbox?: number;
  /** Concurrent adds (default 100). */
  readonly maxInFlight?: number;
  /** Outbox retry delays (defaults 200 ms → 5000 ms). */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** Overrides of DEFAULT_JOB_OPTIONS (tests: shorter backoff). */
  readonly jobOptions?: JobsOptions;
  /** A ready-made producer connection (default: createProducerConnection(redisUrl)). */
  readonly connection?: Redis;
}

interface PendingJob {
  readonly name: JobName;
  readonly jobId: string;
  readonly data: object;
  readonly model?: string;
}

/** Redis replies that mean "not now" rather than "never". */
const TRANSIENT_REPLY = /^(OOM|LOADING|BUSY|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|NOREPLICAS|NOSCRIPT)\b/;

const LOG_EVERY_MS = 10_000;

export function createProducer(options: ProducerOptions): Producer {
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const { metrics } = options;
  const connection = options.connection ?? createProducerConnection(options.redisUrl, { logger });
  const ownsConnection = options.connection === undefined;
  const queue = new Queue(UTTERANCES_QUEUE, {
    connection,
    prefix: options.prefix,
    defaultJobOptions: { ...DEFAULT_JOB_OPTIONS, ...options.jobOptions },
  });
  queue.on('error', (err: Error & { code?: string }) => {
    logger.debug({ code: 'ERR_QUEUE_REDIS', redisCode: err.code }, 'queue connection error');
  });
  const extra = { dropped: metrics.outboxDropped, size: metrics.outboxJobs };

  let lastDropLog = 0;
  let dropsSinceLog = 0;
  const logDrop = (job: PendingJob, reason: OutboxDropReason, err: unknown) => {
    if (reason === 'rejected') {
      logger.error(
        { code: 'ERR_QUEUE_ADD_REJECTED', job: job.name, jobId: job.jobId, err: errorMessage(err) },
        'queue rejected a job; dropped it',
      );
      return;
    }
    if (reason === 'closed') return; // summarised by close()
    dropsSinceLog++;
    const now = clock.monotonicMs();
    if (lastDropLog === 0 || now - lastDropLog >= LOG_EVERY_MS) {
      logger.error(
        { code: 'ERR_QUEUE_OUTBOX_FULL', job: job.name, jobId: job.jobId, dropped: dropsSinceLog, outbox: outbox.size },
        'queue outbox full: dropped the oldest job',
      );
      lastDropLog = now;
      dropsSinceLog = 0;
    }
  };

  const outbox: Outbox<PendingJob> = new Outbox<PendingJob>({
    maxSize: options.maxOutbox ?? 50_000,
    maxInFlight: options.maxInFlight ?? 100,
    retryMinMs: options.retryMinMs ?? 200,
    retryMaxMs: options.retryMaxMs ?? 5000,
    send: async (job) => {
      await queue.add(job.name, job.data, { jobId: job.jobId });
    },
    classify: (err, attempts) => {
      // while the connection is up, a failure that is not a transient Redis reply will not
      // go away by retrying (e.g. a job id BullMQ refuses): drop it after a few tries
      if (connection.status !== 'ready') return 'retry';
      if (TRANSIENT_REPLY.test(errorMessage(err))) return 'retry';
      return attempts >= 3 ? 'reject' : 'retry';
    },
    onSent: (job) => {
      if (job.name === JOB_UTTERANCE) metrics.utterancesEnqueued.inc({ model: job.model ?? 'unknown' });
      extra.size.set(outbox.size);
    },
    onSendFailed: (job, _err, first) => {
      if (first) metrics.enqueueErrors.inc({ job: job.name });
      extra.size.set(outbox.size);
    },
    onDropped: (job, reason, err) => {
      extra.dropped.inc({ job: job.name, reason });
      extra.size.set(outbox.size);
      logDrop(job, reason, err);
    },
    onStateChange: (state, waiting) => {
      if (state === 'backoff') {
        logger.warn(
          { code: 'ERR_QUEUE_ENQUEUE', waiting, redisStatus: connection.status },
          'queue adds failing: keeping jobs in the outbox and retrying',
        );
      } else {
        logger.info({ waiting }, 'queue adds succeeding again: sending the outbox');
      }
    },
  });

  const enqueue = (job: PendingJob): Promise<EnqueueOutcome> => {
    try {
      const p = outbox.push(job);
      extra.size.set(outbox.size);
      return p;
    } catch (err) {
      // never throw into the ingest path
      logger.error({ code: 'ERR_QUEUE_ENQUEUE', job: job.name, err: errorMessage(err) }, 'enqueue failed');
      return Promise.resolve('dropped');
    }
  };

  let closing: Promise<void> | null = null;

  return {
    enqueueCallStart(job) {
      return enqueue({ name: JOB_CALL_START, jobId: jobIds.callStart(job.callId), data: job });
    },
    enqueueUtterance(job) {
      const enqueuedAt = clock.now();
      const u = job.utterance;
      metrics.finalToEnqueuedMs.observe(Math.max(0, enqueuedAt - u.timing.finalReceivedAt));
      const data: UtteranceJob = { ...job, utterance: { ...u, timing: { ...u.timing, enqueuedAt } } };
      return enqueue({ name: JOB_UTTERANCE, jobId: jobIds.utterance(job.callId, u.role, u.seq), data, model: u.model });
    },
    enqueueStreamStatus(job) {
      return enqueue({
        name: JOB_STREAM_STATUS,
        jobId: jobIds.streamStatus(job.callId, job.role, job.status, job.at, job.seq),
        data: job,
      });
    },
    enqueueCallEnd(job) {
      return enqueue({ name: JOB_CALL_END, jobId: jobIds.callEnd(job.callId), data: job });
    },
    flush(timeoutMs) {
      return outbox.flush(timeoutMs);
    },
    get pending() {
      return outbox.pending;
    },
    close() {
      closing ??= (async () => {
        const pending = outbox.pending;
        const dropped = outbox.close();
        if (pending > 0) {
          logger.error(
            { code: 'ERR_QUEUE_CLOSED_PENDING', dropped, inFlight: pending - dropped },
            'producer closed with jobs not yet in Redis',
          );
        }
        extra.size.set(0);
        // let a connection that is still connecting finish (BullMQ sends INFO on ready), then
        // drop it first when it is down: a queue close would wait for it
        if (ownsConnection) await settleHandshake(connection);
        if (ownsConnection && connection.status !== 'ready') connection.disconnect();
        await queue.close().catch(() => undefined);
        if (ownsConnection) await closeRedis(connection);
      })();
      return closing;
    },
  };
}
