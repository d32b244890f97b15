/**
 * Signed alert webhooks through BullMQ (docs/webhooks.md).
 *
 * - Queue `webhooks`; one job per (alert, URL) with the deterministic id
 *   `wh-<alertId>-<first 12 hex of sha1(url)>`, so a re-dispatch (outbox sweeper) while the
 *   job is retained is a no-op. The job carries the JSON body, so every attempt sends the same
 *   bytes; the receiver de-duplicates on X-Callscribe-Delivery.
 * - Each attempt POSTs the body with X-Callscribe-Timestamp (unix ms) and
 *   X-Callscribe-Signature `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
 *   (the Stripe/Slack scheme: the timestamp is signed, so receivers can refuse replays).
 * - 2xx delivered; 408, 429, 5xx, timeouts and network errors are retried with exponential
 *   backoff; any other status (3xx included: redirects are not followed) fails for good
 *   (UnrecoverableError). Every attempt is recorded with store.recordDelivery.
 * - Secrets are never logged; URLs are logged without userinfo or query (they may hold tokens).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { Queue, UnrecoverableError, Worker, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { systemClock, type Clock } from '../../core/clock.js';
import { errorMessage } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import { closeRedis, createWorkerConnection, logWorkerErrors } from '../../queue/redis.js';
import type { AlertStore } from '../store.js';
import { redactUrl } from './events.js';

export const WEBHOOKS_QUEUE = 'webhooks';
export const JOB_WEBHOOK = 'webhook';

export const HEADER_EVENT = 'X-Callscribe-Event';
export const HEADER_DELIVERY = 'X-Callscribe-Delivery';
export const HEADER_TIMESTAMP = 'X-Callscribe-Timestamp';
export const HEADER_SIGNATURE = 'X-Callscribe-Signature';

export interface WebhookJobData {
  readonly alertId: string;
  readonly url: string;
  /** Value of X-Callscribe-Event ('alert'). */
  readonly event: 'alert';
  /** The exact JSON body to POST. */
  readonly body: string;
}

export const webhookJobSchema = z.object({
  alertId: z.string().min(1).max(256),
  url: z.url({ protocol: /^https?$/ }),
  event: z.literal('alert'),
  body: z.string().min(2).max(1 << 20),
});

/** `wh-<alertId>-<sha1(url) first 12 hex>` (BullMQ custom ids must not contain ':'). */
export function webhookJobId(alertId: string, url: string): string {
  return `wh-${alertId}-${createHash('sha1').update(url).digest('hex').slice(0, 12)}`;
}

/** `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. */
export function signWebhook(secret: string, timestamp: number | string, body: string | Buffer): string {
  const mac = createHmac('sha256', secret);
  mac.update(`${timestamp}.`);
  mac.update(body);
  return `sha256=${mac.digest('hex')}`;
}

export type WebhookVerifyFailure = 'missing-signature' | 'missing-timestamp' | 'bad-timestamp' | 'expired' | 'mismatch';
export type WebhookVerifyResult = { readonly ok: true; readonly timestamp: number } | { readonly ok: false; readonly reason: WebhookVerifyFailure };

/** Node's IncomingHttpHeaders (lower-case keys) or a fetch Headers object. */
export type HeaderSource = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

function header(headers: HeaderSource, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const lower = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== lower) continue;
    return typeof value === 'string' ? value : value?.[0];
  }
  return undefined;
}

/**
 * Checks a received webhook (for receivers): the signature over `${timestamp}.${body}` with
 * the shared secret, compared in constant time, and the timestamp within ±toleranceMs of
 * `now` (replay window). Pass the raw body bytes exactly as received.
 */
export function verifyWebhookSignature(
  secret: string,
  headers: HeaderSource,
  body: string | Buffer,
  toleranceMs: number,
  now: number = Date.now(),
): WebhookVerifyResult {
  const signature = header(headers, HEADER_SIGNATURE);
  if (!signature) return { ok: false, reason: 'missing-signature' };
  const tsText = header(headers, HEADER_TIMESTAMP);
  if (!tsText) return { ok: false, reason: 'missing-timestamp' };
  if (!/^\d{1,16}$/.test(tsText)) return { ok: false, reason: 'bad-timestamp' };
  const timestamp = Number(tsText);
  if (Math.abs(now - timestamp) > toleranceMs) return { ok: false, reason: 'expired' };
  const expected = Buffer.from(signWebhook(secret, tsText, body));
  const presented = Buffer.from(signature.trim());
  if (expected.length !== presented.length || !timingSafeEqual(expected, presented)) return { ok: false, reason: 'mismatch' };
  return { ok: true, timestamp };
}

export type AttemptOutcome =
  | { readonly kind: 'delivered'; readonly status: number }
  | { readonly kind: 'retry'; readonly error: string }
  | { readonly kind: 'final'; readonly error: string };

/** 2xx delivered; 408, 429 and 5xx retried; everything else (1xx, 3xx, other 4xx) final. */
export function classifyStatus(status: number): AttemptOutcome {
  if (status >= 200 && status < 300) return { kind: 'delivered', status };
  if (status === 408 || status === 429 || (status >= 500 && status < 600)) return { kind: 'retry', error: `HTTP ${status}` };
  return { kind: 'final', error: `HTTP ${status}` };
}

/** A network-level failure as a short, URL-free message (undici's `fetch failed` hides the cause). */
export function describeFetchError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `timeout after ${timeoutMs} ms`;
  const cause = err instanceof Error ? (err as Error & { cause?: unknown }).cause : undefined;
  const code = cause && typeof cause === 'object' && 'code' in cause && typeof cause.code === 'string' ? cause.code : undefined;
  return code ? `network error ${code}` : 'network error';
}

// ── producer side ──────────────────────────────────────────────────────────────────────────

export interface WebhookQueue {
  /** Adds the job (a no-op while a job with the same id is retained). Rejects when Redis refuses. */
  enqueue(job: WebhookJobData): Promise<{ readonly jobId: string }>;
  close(): Promise<void>;
}

export interface WebhookQueueOptions {
  /** A producer connection (enableOfflineQueue false); not closed by close(). */
  readonly connection: Redis;
  readonly prefix: string;
  /** Attempts per job (default 8). */
  readonly attempts?: number;
  /** First retry delay; doubles each time (default 5000 ms: 8 attempts span ≈ 10.6 min). */
  readonly backoffMs?: number;
  /**
   * Bound on one add (default 2000 ms). BullMQ waits for a connection that has never been
   * ready instead of failing fast; past the bound enqueue rejects (ERR_WEBHOOK_ENQUEUE_TIMEOUT)
   * and the add may still land later (harmless: the job id de-duplicates).
   */
  readonly enqueueTimeoutMs?: number;
}

export function createWebhookQueue(options: WebhookQueueOptions): WebhookQueue {
  const jobOptions: JobsOptions = {
    attempts: options.attempts ?? 8,
    backoff: { type: 'exponential', delay: options.backoffMs ?? 5000 },
    // completed jobs stay a day: a sweeper re-dispatch in that time is de-duplicated
    removeOnComplete: { age: 24 * 3600, count: 10_000 },
    removeOnFail: { age: 7 * 24 * 3600 },
  };
  const enqueueTimeoutMs = options.enqueueTimeoutMs ?? 2000;
  const queue = new Queue<WebhookJobData>(WEBHOOKS_QUEUE, { connection: options.connection, prefix: options.prefix });
  queue.on('error', () => undefined); // the connection logs its own state
  return {
    async enqueue(data) {
      const jobId = webhookJobId(data.alertId, data.url);
      const add = queue.add(JOB_WEBHOOK, data, { ...jobOptions, jobId });
      add.catch(() => undefined); // a late rejection after the timeout is not unhandled
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          add,
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`ERR_WEBHOOK_ENQUEUE_TIMEOUT: Redis did not accept the job within ${enqueueTimeoutMs} ms`)),
              enqueueTimeoutMs,
            );
          }),
        ]);
      } finally {
        clearTimeout(timer);
      }
      return { jobId };
    },
    close: () => queue.close(),
  };
}

// ── consumer side ──────────────────────────────────────────────────────────────────────────

export type WebhookJob = Pick<Job, 'data' | 'attemptsMade'> & {
  readonly id?: string | undefined;
  readonly opts: Pick<JobsOptions, 'attempts'>;
};

export interface WebhookProcessorOptions {
  readonly secret: string;
  readonly store: AlertStore;
  /** Per-request timeout (default 5000 ms). */
  readonly timeoutMs?: number;
  readonly metrics?: Metrics;
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** fetch implementation (default the global one). */
  readonly fetch?: typeof fetch;
}

export interface WebhookProcessorStats {
  attempts: number;
  delivered: number;
  retried: number;
  failed: number;
  invalidJobs: number;
  recordErrors: number;
}

export interface WebhookProcessor {
  (job: WebhookJob): Promise<{ readonly status: number }>;
  stats(): WebhookProcessorStats;
}

/**
 * The job processor, independent of a Worker (tests may call it directly). Throws to fail the
 * attempt: UnrecoverableError for final failures, an Error to retry.
 */
export function createWebhookProcessor(options: WebhookProcessorOptions): WebhookProcessor {
  const { store, metrics, secret } = options;
  if (!secret) throw new Error('webhook secret is empty');
  const logger = (options.logger ?? silentLogger).child({ component: 'webhooks' });
  const clock = options.clock ?? systemClock;
  const timeoutMs = options.timeoutMs ?? 5000;
  const doFetch = options.fetch ?? fetch;
  const stats: WebhookProcessorStats = { attempts: 0, delivered: 0, retried: 0, failed: 0, invalidJobs: 0, recordErrors: 0 };

  const record = async (data: WebhookJobData, ok: boolean, error: string, final: boolean) => {
    const at = new Date(clock.now());
    try {
      await store.recordDelivery(data.alertId, 'webhook', data.url, ok ? { ok: true, at } : { ok: false, at, error, final });
    } catch (err) {
      stats.recordErrors++;
      logger.error(
        { code: 'ERR_ALERTS_RECORD_DELIVERY', alertId: data.alertId, channel: 'webhook', err: errorMessage(err) },
        'could not record an alert delivery',
      );
    }
  };

  const processor = async (job: WebhookJob): Promise<{ status: number }> => {
    const parsed = webhookJobSchema.safeParse(job.data);
    if (!parsed.success) {
      stats.invalidJobs++;
      logger.error({ code: 'ERR_WEBHOOK_JOB_INVALID', jobId: job.id }, 'invalid webhook job');
      throw new UnrecoverableError('ERR_WEBHOOK_JOB_INVALID: invalid webhook job data');
    }
    const data = parsed.data;
    const attempt = job.attemptsMade + 1;
    const lastAttempt = attempt >= (job.opts.attempts ?? 1);
    const target = redactUrl(data.url);
    const timestamp = String(clock.now());
    const headers = {
      'Content-Type': 'application/json',
      'User-Agent': 'callscribe-webhooks/1',
      [HEADER_EVENT]: data.event,
      [HEADER_DELIVERY]: job.id ?? webhookJobId(data.alertId, data.url),
      [HEADER_TIMESTAMP]: timestamp,
      [HEADER_SIGNATURE]: signWebhook(secret, timestamp, data.body),
    };
    stats.attempts++;

    let outcome: AttemptOutcome;
    try {
      const res = await doFetch(data.url, {
        method: 'POST',
        headers,
        body: data.body,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.body?.cancel().catch(() => undefined); // the reply body is not needed
      outcome = classifyStatus(res.status);
    } catch (err) {
      outcome = { kind: 'retry', error: describeFetchError(err, timeoutMs) };
    }

    if (outcome.kind === 'delivered') {
      stats.delivered++;
      metrics?.alertsDelivered.inc({ channel: 'webhook' });
      const alertCommitted = await committedAt(store, data.alertId);
      if (alertCommitted !== null) {
        metrics?.alertLatencyMs.observe({ hop: 'deliver', channel: 'webhook' }, Math.max(0, clock.now() - alertCommitted));
      }
      await record(data, true, '', true);
      logger.debug({ alertId: data.alertId, target, attempt, status: outcome.status }, 'webhook delivered');
      return { status: outcome.status };
    }
    const final = outcome.kind === 'final' || lastAttempt;
    metrics?.alertDeliveryFailures.inc({ channel: 'webhook', final: String(final) });
    await record(data, false, outcome.error, final);
    if (final) {
      stats.failed++;
      logger.error(
        { code: 'ERR_WEBHOOK_FAILED', alertId: data.alertId, target, attempt, err: outcome.error },
        'webhook delivery failed for good',
      );
      throw new UnrecoverableError(`ERR_WEBHOOK_FAILED: ${outcome.error}`);
    }
    stats.retried++;
    logger.warn({ code: 'ERR_WEBHOOK_RETRY', alertId: data.alertId, target, attempt, err: outcome.error }, 'webhook attempt failed; will retry');
    throw new Error(`ERR_WEBHOOK_RETRY: ${outcome.error}`);
  };

  return Object.assign(processor, { stats: () => ({ ...stats }) });
}

async function committedAt(store: AlertStore, alertId: string): Promise<number | null> {
  try {
    return (await store.getAlert(alertId))?.committedAt.getTime() ?? null;
  } catch {
    return null;
  }
}

export interface WebhookWorkerOptions extends WebhookProcessorOptions {
  readonly redisUrl: string;
  readonly prefix: string;
  /** Parallel deliveries (default 4). */
  readonly concurrency?: number;
  /** A ready-made worker connection (default: createWorkerConnection(redisUrl)); not closed by close(). */
  readonly connection?: Redis;
}

export interface WebhookWorker {
  readonly worker: Worker<WebhookJobData>;
  stats(): WebhookProcessorStats;
  /** Waits for running deliveries, then closes the worker (and its own connection). Idempotent. */
  close(): Promise<void>;
}

export function createWebhookWorker(options: WebhookWorkerOptions): WebhookWorker {
  const logger = (options.logger ?? silentLogger).child({ component: 'webhooks' });
  const connection = options.connection ?? createWorkerConnection(options.redisUrl, { logger });
  const ownsConnection = options.connection === undefined;
  const processor = createWebhookProcessor(options);
  const worker = new Worker<WebhookJobData>(WEBHOOKS_QUEUE, (job: Job<WebhookJobData>) => processor(job), {
    connection,
    prefix: options.prefix,
    concurrency: options.concurrency ?? 4,
  });
  worker.on('failed', (job, err) => {
    // attempts are logged by the processor; this catches failures outside it (stalled jobs)
    if (job && !err.message.startsWith('ERR_WEBHOOK_')) {
      logger.error({ code: 'ERR_WEBHOOK_JOB_FAILED', jobId: job.id, attempts: job.attemptsMade, err: errorMessage(err) }, 'webhook job failed');
    }
  });
  logWorkerErrors(worker, logger, 'ERR_WEBHOOK_WORKER', 'webhook worker error');
  let closing: Promise<void> | null = null;
  return {
    worker,
    stats: () => processor.stats(),
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
