/**
 * BullMQ worker that persists the ingest jobs of UTTERANCES_QUEUE into Postgres.
 *
 * - Dispatches on job.name (call-start, utterance, stream-status, call-end); job data is
 *   validated with zod: a malformed or unknown job fails at once (UnrecoverableError), counted.
 * - Jobs may run in any order (concurrency > 1, retries): every write is an idempotent upsert,
 *   and a job that arrives before its call-start creates a placeholder call row.
 * - Postgres unreachable → the job throws ERR_DB_UNAVAILABLE and BullMQ retries it with backoff
 *   (12 attempts ≈ 17 min); nothing is lost while Postgres restarts. A statement Postgres
 *   rejects for its data (SQLSTATE class 22/23) cannot succeed later: unrecoverable.
 */
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { z } from 'zod';
import { systemClock, type Clock } from '../core/clock.js';
import { AppError, errorMessage } from '../core/errors.js';
import type { Database } from '../db/client.js';
import { isDbConnectivityError, isDbDataError, safeDbErrorMessage, sqlState } from '../db/errors.js';
import * as callsRepo from '../db/repositories/calls.js';
import * as utterancesRepo from '../db/repositories/utterances.js';
import type { UtteranceExtras } from '../db/repositories/utterances.js';
import type { PiiMode } from '../utterance/pii.js';
import { prepareUtterance, type CallAnalytics } from './analytics.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import {
  JOB_CALL_END,
  JOB_CALL_START,
  JOB_STREAM_STATUS,
  JOB_UTTERANCE,
  UTTERANCES_QUEUE,
  type CallEndJob,
  type CallStartJob,
  type StreamStatusJob,
  type UtteranceJob,
} from '../queue/jobs.js';
import { closeRedis, createMonitorConnection, createWorkerConnection, logWorkerErrors } from '../queue/redis.js';
import {
  callEndJobSchema,
  callStartJobSchema,
  describeIssues,
  streamStatusJobSchema,
  utteranceJobSchema,
} from './job-schemas.js';

/** The writes the worker performs (injectable: tests simulate an outage with a wrapper). */
export interface PersistRepositories {
  upsertCallStart(job: CallStartJob): Promise<void>;
  insertUtterance(job: UtteranceJob, extras?: UtteranceExtras): Promise<{ inserted: boolean }>;
  upsertStreamStatus(job: StreamStatusJob): Promise<boolean>;
  markCallEnded(job: CallEndJob): Promise<void>;
}

export function postgresRepositories(database: Database): PersistRepositories {
  const { db } = database;
  return {
    upsertCallStart: (job) => callsRepo.upsertCallStart(db, job),
    insertUtterance: (job, extras) => utterancesRepo.insertUtterance(db, job, extras),
    upsertStreamStatus: (job) => callsRepo.upsertStreamStatus(db, job),
    markCallEnded: (job) => callsRepo.markCallEnded(db, job),
  };
}

/** What a processed job returns (stored by BullMQ as the job's return value). */
export type PersistResult =
  | { readonly kind: 'call-start' }
  | { readonly kind: 'utterance'; readonly inserted: boolean }
  | { readonly kind: 'stream-status'; readonly applied: boolean }
  | { readonly kind: 'call-end' };

/** The part of a BullMQ Job the processor reads. */
export type PersistJob = Pick<Job, 'name' | 'data'> & { readonly id?: string | undefined };

export interface PersistProcessorOptions {
  readonly repositories: PersistRepositories;
  /** PII in stored text (default 'redact'). */
  readonly piiMode?: PiiMode;
  /** QA analytics and live alerts around the writes (absent: persistence only). */
  readonly analytics?: CallAnalytics;
  readonly metrics: Metrics;
  readonly logger?: Logger;
  readonly clock?: Clock;
}

function parse<S extends z.ZodType>(schema: S, job: PersistJob, logger: Logger): z.infer<S> {
  const result = schema.safeParse(job.data);
  if (result.success) return result.data;
  const issues = describeIssues(result.error);
  logger.error({ code: 'ERR_QUEUE_JOB_INVALID', job: job.name, jobId: job.id, issues }, 'invalid job data');
  throw new UnrecoverableError(`ERR_QUEUE_JOB_INVALID: invalid ${job.name} job: ${issues.join('; ')}`);
}

/**
 * Maps a repository failure to what BullMQ should do with the job. The resulting message is
 * stored in Redis as the job's failedReason and logged, so it never carries query parameters.
 */
function classifyDbError(err: unknown, job: PersistJob, logger: Logger): Error {
  if (err instanceof UnrecoverableError || err instanceof AppError) return err;
  const safe = safeDbErrorMessage(err);
  if (isDbConnectivityError(err)) {
    logger.warn({ code: 'ERR_DB_UNAVAILABLE', job: job.name, jobId: job.id, err: safe }, 'postgres unavailable; job will be retried');
    return new AppError('ERR_DB_UNAVAILABLE', `ERR_DB_UNAVAILABLE: Postgres unavailable: ${safe}`, { category: 'connectivity' });
  }
  if (isDbDataError(err)) {
    logger.error({ code: 'ERR_DB_REJECTED', job: job.name, jobId: job.id, sqlState: sqlState(err), err: safe }, 'postgres rejected job data');
    return new UnrecoverableError(`ERR_DB_REJECTED: Postgres rejected the ${job.name} job: ${safe}`);
  }
  logger.error({ code: 'ERR_DB_WRITE', job: job.name, jobId: job.id, err: safe }, 'job failed; will be retried');
  return new AppError('ERR_DB_WRITE', `ERR_DB_WRITE: ${safe}`, { category: 'server' });
}

/**
 * The job processor, independent of a Worker (tests call it directly). Throws to fail the
 * attempt: UnrecoverableError for jobs that can never succeed, anything else to retry.
 */
export function createPersistProcessor(options: PersistProcessorOptions): (job: PersistJob) => Promise<PersistResult> {
  const { repositories: repos, metrics } = options;
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const piiMode = options.piiMode ?? 'redact';
  const analytics = options.analytics;

  const run = async (job: PersistJob): Promise<PersistResult> => {
    switch (job.name) {
      case JOB_CALL_START: {
        const data = parse(callStartJobSchema, job, logger);
        await repos.upsertCallStart(data);
        await analytics?.onCallStart(data);
        return { kind: 'call-start' };
      }
      case JOB_UTTERANCE: {
        const parsed = parse(utteranceJobSchema, job, logger);
        // PII is redacted before the text is stored anywhere (docs/analytics.md)
        const { text, extras } = prepareUtterance(parsed.utterance, piiMode);
        const data: UtteranceJob = { ...parsed, utterance: { ...parsed.utterance, text } };
        const { inserted } = await repos.insertUtterance(data, extras);
        if (inserted) {
          metrics.utterancesPersisted.inc();
          const enqueuedAt = data.utterance.timing.enqueuedAt;
          if (enqueuedAt !== undefined) metrics.enqueuedToPersistedMs.observe(Math.max(0, clock.now() - enqueuedAt));
        } else {
          metrics.utteranceDuplicates.inc();
        }
        await analytics?.onUtterance(data, text, inserted);
        return { kind: 'utterance', inserted };
      }
      case JOB_STREAM_STATUS: {
        const data = parse(streamStatusJobSchema, job, logger);
        const applied = await repos.upsertStreamStatus(data);
        return { kind: 'stream-status', applied };
      }
      case JOB_CALL_END: {
        const data = parse(callEndJobSchema, job, logger);
        await repos.markCallEnded(data);
        await analytics?.onCallEnd(data);
        return { kind: 'call-end' };
      }
      default:
        logger.error({ code: 'ERR_QUEUE_JOB_UNKNOWN', job: job.name, jobId: job.id }, 'unknown job name');
        throw new UnrecoverableError(`ERR_QUEUE_JOB_UNKNOWN: unknown job name "${job.name}"`);
    }
  };

  return async (job) => {
    try {
      return await run(job);
    } catch (err) {
      throw classifyDbError(err, job, logger);
    }
  };
}

export interface PersistWorkerOptions {
  readonly redisUrl: string;
  readonly prefix: string;
  readonly db: Database;
  readonly metrics: Metrics;
  readonly logger?: Logger;
  readonly concurrency: number;
  readonly clock?: Clock;
  /** Replaces the Postgres writes (tests). */
  readonly repositories?: PersistRepositories;
  /** A ready-made worker connection (default: createWorkerConnection(redisUrl)). */
  readonly connection?: Redis;
  readonly piiMode?: PiiMode;
  readonly analytics?: CallAnalytics;
}

export interface PersistWorker {
  readonly worker: Worker;
  /** Waits for running jobs, then closes the worker and its connection. Idempotent. */
  close(): Promise<void>;
}

export function createPersistWorker(options: PersistWorkerOptions): PersistWorker {
  const logger = options.logger ?? silentLogger;
  const { metrics } = options;
  const connection = options.connection ?? createWorkerConnection(options.redisUrl, { logger });
  const ownsConnection = options.connection === undefined;
  const processor = createPersistProcessor({
    repositories: options.repositories ?? postgresRepositories(options.db),
    metrics,
    logger,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.piiMode ? { piiMode: options.piiMode } : {}),
    ...(options.analytics ? { analytics: options.analytics } : {}),
  });
  const worker = new Worker(UTTERANCES_QUEUE, (job: Job) => processor(job), {
    connection,
    prefix: options.prefix,
    concurrency: options.concurrency,
  });
  worker.on('failed', (job, err) => {
    const name = job?.name ?? 'unknown';
    metrics.jobsFailed.inc({ job: name });
    const willRetry =
      job !== undefined && !(err instanceof UnrecoverableError) && job.attemptsMade < (job.opts.attempts ?? 1);
    if (!willRetry) {
      logger.error(
        { code: 'ERR_QUEUE_JOB_FAILED', job: name, jobId: job?.id, attempts: job?.attemptsMade, err: errorMessage(err) },
        'job failed permanently',
      );
    }
  });
  logWorkerErrors(worker, logger, 'ERR_QUEUE_WORKER', 'queue worker error');

  let closing: Promise<void> | null = null;
  return {
    worker,
    close() {
      closing ??= (async () => {
        try {
          await worker.close();
        } finally {
          if (ownsConnection) await closeRedis(connection);
        }
      })();
      return closing;
    },
  };
}

export type QueueMetricsOptions = {
  readonly metrics: Metrics;
  /** Polling interval (default 5000 ms). */
  readonly intervalMs?: number;
  readonly logger?: Logger;
} & (
  | { readonly queue: Queue }
  | { readonly redisUrl: string; readonly prefix: string; readonly queueName?: string }
);

export interface QueueMetricsHandle {
  /** Stops polling (and closes the queue it opened, if any). Idempotent. */
  close(): Promise<void>;
  /** One update now (tests). */
  refresh(): Promise<void>;
}

/**
 * Periodically sets metrics.queueWaiting (jobs ready to run) and metrics.queueLagMs (age of
 * the oldest of them; 0 when none wait). Errors (Redis down) leave the last values in place.
 */
export function startQueueMetrics(options: QueueMetricsOptions): QueueMetricsHandle {
  const { metrics } = options;
  const logger = options.logger ?? silentLogger;
  let queue: Queue;
  let owned: { queue: Queue; connection: Redis } | null = null;
  if ('queue' in options) {
    queue = options.queue;
  } else {
    const connection = createMonitorConnection(options.redisUrl, { logger });
    queue = new Queue(options.queueName ?? UTTERANCES_QUEUE, { connection, prefix: options.prefix });
    queue.on('error', () => undefined); // connection state is logged by the connection itself
    owned = { queue, connection };
  }
  const labels = { queue: queue.name };
  let stopped = false;
  let inFlight: Promise<void> | null = null;

  const update = async (): Promise<void> => {
    const counts = await queue.getJobCounts('wait', 'prioritized');
    const waiting = (counts['wait'] ?? 0) + (counts['prioritized'] ?? 0);
    let lagMs = 0;
    if (waiting > 0) {
      const [oldest] = await queue.getWaiting(0, 0);
      if (oldest) lagMs = Math.max(0, Date.now() - oldest.timestamp);
    }
    if (stopped) return;
    metrics.queueWaiting.set(labels, waiting);
    metrics.queueLagMs.set(labels, lagMs);
  };

  const refresh = (): Promise<void> => {
    inFlight ??= update()
      .catch((err: unknown) => {
        logger.debug({ code: 'ERR_QUEUE_METRICS', err: errorMessage(err) }, 'queue metrics update failed');
      })
      .finally(() => {
        inFlight = null;
      });
    return inFlight;
  };

  const timer = setInterval(() => {
    if (!stopped && !queue.closing) void refresh();
  }, options.intervalMs ?? 5000);
  timer.unref();
  void refresh();

  let closing: Promise<void> | null = null;
  return {
    refresh,
    close() {
      closing ??= (async () => {
        stopped = true;
        clearInterval(timer);
        await inFlight;
        if (owned) {
          if (owned.connection.status !== 'ready') owned.connection.disconnect();
          await owned.queue.close().catch(() => undefined);
          await closeRedis(owned.connection);
        }
      })();
      return closing;
    },
  };
}
