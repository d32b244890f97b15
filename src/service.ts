/**
 * Composition root: builds the running service from a parsed Env. `serve` runs ingest and
 * workers in one process; `ingest` and `worker` run one side each. The CLI, the demo and the
 * end-to-end tests all start the service through here, so they exercise the same wiring.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { Redis } from 'ioredis';
import type { AsrProvider } from './asr/provider.js';
import { createParaformerProvider } from './asr/providers/paraformer/provider.js';
import { createQwenProvider } from './asr/providers/qwen/provider.js';
import { loadRoutingFile } from './asr/routing/config.js';
import { resolveRouting, type RoutingDecision } from './asr/routing/policy.js';
import { AsrStreamRunner, type AsrCandidate } from './asr/session-runner.js';
import { createMemoryStartLimiter, createRedisStartLimiter, type TaskStartLimiter } from './asr/start-limiter.js';
import { twilioPublicUrl, type Env } from './config/env.js';
import { systemClock } from './core/clock.js';
import { errorMessage } from './core/errors.js';
import { createDb, type Database } from './db/client.js';
import { runMigrations } from './db/migrate.js';
import { createHttpServer, type ReadinessCheck, type RouteHandler, type UpgradeHandler } from './http/server.js';
import { Lifecycle } from './http/lifecycle.js';
import { CallRegistry } from './ingest/call-registry.js';
import type { MediaCallDeps, RunnerRequest } from './ingest/media-call.js';
import type { RtpCallDeps } from './ingest/rtp-call.js';
import { createRtpSessions, RTP_SESSIONS_PATH } from './ingest/rtp-sessions.js';
import { UdpPortPool } from './ingest/rtp/udp-port-pool.js';
import { createSipCallHandler } from './ingest/sip-calls.js';
import { createSipServer, type SipServer } from './ingest/sip/index.js';
import { createTwilioRoute } from './ingest/twilio/ws-route.js';
import type { Logger } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { UTTERANCES_QUEUE } from './queue/jobs.js';
import { createProducer, type Producer } from './queue/producer.js';
import { closeRedis, createProducerConnection } from './queue/redis.js';
import { createPersistWorker, startQueueMetrics } from './workers/persist-utterance.worker.js';
import { createCallAnalytics, startRuleSync } from './workers/analytics.js';
import { createAlertDispatcher } from './alerts/delivery/dispatcher.js';
import { createEventPublisher } from './alerts/delivery/publisher.js';
import { ALERTS_BASE_PATH, createAlertsRestHandler } from './alerts/delivery/rest.js';
import { createSupervisorHub, type SupervisorHub } from './alerts/delivery/supervisor-hub.js';
import { createWebhookQueue, createWebhookWorker } from './alerts/delivery/webhooks.js';
import type { DeliveryChannel } from './alerts/store.js';
import { createAlertStore } from './db/repositories/alerts.js';

export type ServiceMode = 'serve' | 'ingest' | 'worker';

export interface Service {
  readonly mode: ServiceMode;
  readonly lifecycle: Lifecycle;
  readonly metrics: Metrics;
  readonly server: http.Server;
  /** Bound port of the HTTP listener. */
  readonly port: number;
  readonly registry: CallRegistry | null;
  readonly producer: Producer | null;
  /** Bound SIP ports when SIP_ENABLED (udp / tcp). */
  readonly sip: SipServer['ports'] | null;
  /** Graceful drain: stop accepting, finish calls, flush the queue, close pools. Idempotent. */
  stop(): Promise<void>;
}

export interface StartServiceOptions {
  readonly logger: Logger;
  readonly metrics?: Metrics;
  /** Sees the PCM every track hands its recogniser (tests compare it with independent decodes). */
  readonly audioTap?: MediaCallDeps['audioTap'];
}

export async function startService(env: Env, mode: ServiceMode, options: StartServiceOptions): Promise<Service> {
  const { logger } = options;
  const metrics = options.metrics ?? createMetrics({ defaultMetrics: true });
  const lifecycle = new Lifecycle();
  const cleanups: Array<{ name: string; run: () => Promise<void> | void }> = [];
  const checks: ReadinessCheck[] = [];

  const runsIngest = mode === 'serve' || mode === 'ingest';
  const runsWorker = mode === 'serve' || mode === 'worker';
  // a bad routing file stops start-up with the file, line and problem (ERR_CONFIG_ROUTING)
  const routingConfig = runsIngest && env.ROUTING_FILE ? loadRoutingFile(env.ROUTING_FILE) : null;
  let limiterRedis: Redis | null = null;

  // Redis client used only for readiness (the queue has its own connections)
  const redisProbe = new Redis(env.REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  redisProbe.on('error', () => undefined); // state is reported by /readyz
  // wait briefly for the first connection so /readyz is right from the start
  await Promise.race([redisProbe.connect().catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
  checks.push({
    name: 'redis',
    check: async () => {
      if (redisProbe.status !== 'ready') throw new Error(`redis connection ${redisProbe.status}`);
      await redisProbe.ping();
    },
  });

  let db: Database | null = null;
  if (runsWorker) {
    if (mode === 'serve' && env.MIGRATE_ON_START) await runMigrations(env.DATABASE_URL, logger);
    db = createDb(env.DATABASE_URL, { logger });
    const pool = db.pool;
    checks.push({ name: 'postgres', check: async () => void (await pool.query('select 1')) });
  }

  let producer: Producer | null = null;
  let registry: CallRegistry | null = null;
  let closeRoute: (() => void) | null = null;
  let rtpPool: UdpPortPool | null = null;
  let sipServer: SipServer | null = null;
  let sipMetrics: NodeJS.Timeout | null = null;
  const upgrades: Record<string, UpgradeHandler> = {};
  const prefixRoutes: Record<string, RouteHandler> = {};

  if (runsIngest) {
    if (!env.DASHSCOPE_API_KEY) {
      logger.warn(
        { code: 'ERR_ASR_NO_API_KEY' },
        'DASHSCOPE_API_KEY is not set: calls are accepted and recorded, but cannot be transcribed until it is set',
      );
    }
    producer = createProducer({ redisUrl: env.REDIS_URL, prefix: env.QUEUE_PREFIX, metrics, logger });
    // one provider per wire protocol; the routing decision picks the model per call and role
    const providers = new Map<string, AsrProvider>();
    for (const provider of [
      createParaformerProvider({ url: env.DASHSCOPE_INFERENCE_URL, apiKey: env.DASHSCOPE_API_KEY, workspace: env.DASHSCOPE_WORKSPACE, logger, metrics }),
      createQwenProvider({
        url: env.DASHSCOPE_REALTIME_URL,
        apiKey: env.DASHSCOPE_API_KEY,
        workspace: env.DASHSCOPE_WORKSPACE,
        logger,
        metrics,
        turnDetection: env.QWEN_TURN_DETECTION,
      }),
    ]) {
      for (const model of provider.models) providers.set(model, provider);
    }
    const candidate = (model: string, route: RoutingDecision, req: RunnerRequest): AsrCandidate => {
      const provider = providers.get(model);
      if (!provider) throw new Error(`no provider for model ${model}`); // routing only knows provider models
      return {
        provider,
        connectOptions: {
          model,
          sampleRateHz: 8000,
          vocabularyId: route.vocabularyId ?? undefined,
          language: route.language ?? undefined,
          corpusText: route.corpusText ?? undefined,
          disfluencyRemoval: env.ASR_DISFLUENCY_REMOVAL,
          maxSentenceSilenceMs: env.ASR_MAX_SENTENCE_SILENCE_MS,
          logContext: { callId: req.callId, role: req.role },
        },
      };
    };
    let limiter: TaskStartLimiter;
    if (env.ASR_START_LIMITER === 'redis') {
      // DashScope counts task starts per account and model: every process shares one budget
      limiterRedis = new Redis(env.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
      limiterRedis.on('error', () => undefined); // outages fall back to the per-process budget
      limiter = createRedisStartLimiter(limiterRedis, env.ASR_TASK_STARTS_PER_SECOND, {
        keyPrefix: `${env.QUEUE_PREFIX}:asr-start`,
        onRedisError: () => metrics.asrErrors.inc({ model: 'all', code: 'ERR_ASR_LIMITER_REDIS' }),
      });
    } else {
      limiter = createMemoryStartLimiter(env.ASR_TASK_STARTS_PER_SECOND);
    }
    registry = new CallRegistry(env.MAX_CALLS);
    const mediaDeps: MediaCallDeps = {
      producer,
      metrics,
      logger,
      keepaliveAfterMs: env.ASR_KEEPALIVE_AFTER_MS,
      audioTap: options.audioTap,
      route: (input) =>
        resolveRouting(routingConfig, {
          ...input,
          envDefaultModel: env.ASR_MODEL,
          envVocabularyId: env.ASR_VOCABULARY_ID,
        }),
      createRunner: (req) =>
        new AsrStreamRunner({
          candidates: [req.route.model, ...(req.route.fallback ? [req.route.fallback] : [])].map((m) =>
            candidate(m, req.route, req),
          ),
          limiter,
          callId: req.callId,
          role: req.role,
          track: req.track,
          metrics,
          logger: logger.child({ callId: req.callId, role: req.role }),
          clock: systemClock,
          maxRetries: env.ASR_MAX_RETRIES,
          retryMinMs: env.ASR_RETRY_MIN_MS,
          retryMaxMs: env.ASR_RETRY_MAX_MS,
          replayBufferMs: env.ASR_REPLAY_BUFFER_MS,
          finishTimeoutMs: env.ASR_FINISH_TIMEOUT_MS,
          onUtterance: req.onUtterance,
          onStatus: req.onStatus,
        }),
    };
    const route = createTwilioRoute({
      registry,
      metrics,
      logger,
      maxFrameBytes: env.TWILIO_MAX_FRAME_BYTES,
      authToken: env.TWILIO_AUTH_TOKEN,
      publicUrl: twilioPublicUrl(env),
      sessionDeps: { ...mediaDeps, idleTimeoutMs: env.TWILIO_IDLE_TIMEOUT_MS },
    });
    upgrades['/twilio'] = route.handleUpgrade;
    closeRoute = route.close;

    // RTP: raw sessions (POST /v1/rtp-sessions) and SIP/SIPREC calls share one port pool
    const reg = registry;
    rtpPool = new UdpPortPool({ minPort: env.RTP_PORT_MIN, maxPort: env.RTP_PORT_MAX, host: env.RTP_HOST });
    const rtpDeps: RtpCallDeps = { ...mediaDeps, inactivityTimeoutMs: env.RTP_INACTIVITY_TIMEOUT_MS, jitterMs: env.RTP_JITTER_MS };
    const mediaAddress = advertisedAddress(env);
    const accepting = () => lifecycle.state === 'running';
    const rtpSessions = createRtpSessions({
      registry: reg,
      pool: rtpPool,
      callDeps: rtpDeps,
      logger: logger.child({ component: 'rtp-sessions' }),
      advertisedHost: mediaAddress,
      apiToken: env.API_TOKEN,
      accepting,
    });
    prefixRoutes[RTP_SESSIONS_PATH] = rtpSessions.handler;
    if (env.SIP_ENABLED) {
      const sipLogger = logger.child({ component: 'sip' });
      const handler = createSipCallHandler({
        registry: reg,
        pool: rtpPool,
        callDeps: rtpDeps,
        logger: sipLogger,
        mediaAddress,
        roleHeader: env.SIP_ROLE_HEADER,
        accepting,
      });
      const authUser = env.SIP_AUTH_USERNAME;
      const authPassword = env.SIP_AUTH_PASSWORD;
      sipServer = await createSipServer({
        host: env.SIP_HOST,
        port: env.SIP_PORT,
        transports: env.SIP_TRANSPORTS,
        advertisedHost: mediaAddress,
        handler,
        logger: sipLogger,
        allowFrom: env.SIP_ALLOWED_CIDRS,
        siprecRoles: {
          customer: env.SIPREC_CUSTOMER,
          ...(env.SIPREC_AGENT_AOR_PATTERN ? { agentAorPattern: new RegExp(env.SIPREC_AGENT_AOR_PATTERN) } : {}),
        },
        ...(authUser && authPassword
          ? {
              auth: {
                realm: env.SIP_AUTH_REALM,
                // stateless nonces must verify on every instance: derive the key from the shared password
                secret: createHash('sha256').update(`callscribe-sip-nonce:${authPassword}`).digest('hex'),
                lookupPassword: (u: string) => (u === authUser ? authPassword : undefined),
              },
            }
          : {}),
      });
      const server = sipServer;
      handler.hangup = (dialogId) => void server.hangup(dialogId, 'rtp-inactivity');
      sipMetrics = startSipMetrics(server, metrics);
      logger.info({ udp: server.ports.udp, tcp: server.ports.tcp, mediaAddress }, 'sip server listening');
    }
  }

  let closeWorker: (() => Promise<void>) | null = null;
  const supervisorToken = env.SUPERVISOR_TOKEN ?? env.API_TOKEN;
  let hub: SupervisorHub | null = null;
  if (runsWorker && db) {
    const database = db;
    // rules: the file is loaded into the rules table (new versions only); SQL edits stay
    const stopRuleSync = startRuleSync(database.db, resolveProjectPath(env.RULES_FILE), logger);
    const store = createAlertStore(database.db);
    const eventsRedis = createProducerConnection(env.REDIS_URL, { logger });
    const publisher = createEventPublisher({ redis: eventsRedis, prefix: env.QUEUE_PREFIX, store, metrics, logger });
    const webhookQueue =
      env.WEBHOOK_URLS.length > 0
        ? createWebhookQueue({ connection: eventsRedis, prefix: env.QUEUE_PREFIX, attempts: env.WEBHOOK_ATTEMPTS, backoffMs: env.WEBHOOK_BACKOFF_MS })
        : null;
    const webhookWorker =
      env.WEBHOOK_URLS.length > 0 && env.WEBHOOK_SECRET
        ? createWebhookWorker({ redisUrl: env.REDIS_URL, prefix: env.QUEUE_PREFIX, store, secret: env.WEBHOOK_SECRET, timeoutMs: env.WEBHOOK_TIMEOUT_MS, metrics, logger })
        : null;
    const dispatcher = createAlertDispatcher({ store, publisher, webhookQueue, webhookUrls: env.WEBHOOK_URLS, logger, metrics });
    const sweeper = dispatcher.startOutboxSweeper(env.ALERT_SWEEP_INTERVAL_MS, { olderThanMs: env.ALERT_SWEEP_AFTER_MS });
    const deliveryTargets: Array<{ channel: DeliveryChannel; target: string }> = [
      { channel: 'redis', target: publisher.channels.alerts },
      ...(supervisorToken ? [{ channel: 'supervisor' as const, target: 'supervisor' }] : []),
      ...env.WEBHOOK_URLS.map((url) => ({ channel: 'webhook' as const, target: url })),
    ];
    const analytics = createCallAnalytics({
      database,
      metrics,
      logger,
      dispatcher,
      publisher,
      options: {
        piiMode: env.PII_MODE,
        timeZone: env.ANALYTICS_TIME_ZONE,
        metricsOptions: { silenceThresholdMs: env.SILENCE_THRESHOLD_MS, interruptionMinOverlapMs: env.INTERRUPTION_MIN_OVERLAP_MS },
        deliveryTargets,
      },
    });
    if (supervisorToken) {
      hub = createSupervisorHub({ token: supervisorToken, store, prefix: env.QUEUE_PREFIX, redisUrl: env.REDIS_URL, logger, metrics });
      upgrades['/supervisor'] = hub.handleUpgrade;
    }
    if (env.API_TOKEN) {
      prefixRoutes[ALERTS_BASE_PATH] = createAlertsRestHandler({ token: env.API_TOKEN, store, publisher, logger });
    }
    const worker = createPersistWorker({
      redisUrl: env.REDIS_URL,
      prefix: env.QUEUE_PREFIX,
      db,
      metrics,
      logger,
      concurrency: env.WORKER_CONCURRENCY,
      piiMode: env.PII_MODE,
      analytics,
    });
    const queueMetrics = startQueueMetrics({
      redisUrl: env.REDIS_URL,
      prefix: env.QUEUE_PREFIX,
      queueName: UTTERANCES_QUEUE,
      metrics,
      intervalMs: 5000,
    });
    closeWorker = async () => {
      stopRuleSync();
      await queueMetrics.close();
      await worker.close();
      await sweeper.stop();
      await webhookWorker?.close();
      await webhookQueue?.close();
      await closeRedis(eventsRedis);
    };
  }

  const server = createHttpServer({ lifecycle, metrics, logger, checks, upgrades, prefixRoutes });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(env.PORT, env.HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  lifecycle.transition('running');
  logger.info({ port, mode }, 'callscribe listening');

  // the order matters: stop intake, finish calls, flush the queue, then close pools
  if (registry) {
    const reg = registry;
    cleanups.push({
      name: 'calls',
      run: async () => {
        const left = await reg.drainAll(env.DRAIN_TIMEOUT_MS);
        if (left > 0) logger.warn({ code: 'ERR_DRAIN_TIMEOUT', left }, 'calls still open after the drain timeout');
        reg.close();
      },
    });
  }
  if (sipServer) {
    const sip = sipServer;
    // BYE to the remaining dialogs, then close the SIP sockets (calls were drained above)
    cleanups.push({ name: 'sip', run: () => sip.close() });
  }
  if (sipMetrics) {
    const t = sipMetrics;
    cleanups.push({ name: 'sip-metrics', run: () => clearInterval(t) });
  }
  if (rtpPool) {
    const pool = rtpPool;
    cleanups.push({ name: 'rtp-ports', run: () => pool.close() });
  }
  if (closeRoute) cleanups.push({ name: 'twilio-route', run: closeRoute });
  if (hub) {
    const h = hub;
    cleanups.push({ name: 'supervisor-hub', run: () => h.close() });
  }
  if (producer) {
    const p = producer;
    cleanups.push({ name: 'producer', run: async () => {
        try {
          await p.flush(10_000);
        } finally {
          await p.close();
        }
      },
    });
  }
  if (closeWorker) cleanups.push({ name: 'worker', run: closeWorker });
  if (db) {
    const d = db;
    cleanups.push({ name: 'postgres', run: () => d.close() });
  }
  cleanups.push({ name: 'redis-probe', run: () => closeRedis(redisProbe) });
  if (limiterRedis) {
    const r = limiterRedis;
    cleanups.push({ name: 'limiter-redis', run: () => closeRedis(r) });
  }
  cleanups.push({
    name: 'http',
    run: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    if (stopping) return stopping;
    lifecycle.transition('draining');
    logger.info({ mode }, 'draining');
    stopping = (async () => {
      // every step runs even if an earlier one failed (BullMQ Worker.close style)
      for (const step of cleanups) {
        try {
          await step.run();
        } catch (err) {
          logger.error({ code: 'ERR_SHUTDOWN_STEP', step: step.name, err: errorMessage(err) }, 'shutdown step failed');
        }
      }
      lifecycle.transition('stopped');
      logger.info({ mode }, 'stopped');
    })();
    return stopping;
  };

  return { mode, lifecycle, metrics, server, port, registry, producer, sip: sipServer?.ports ?? null, stop };
}

/** A relative path from the environment: the working directory first, else the project root (rules/ ships there). */
function resolveProjectPath(p: string): string {
  if (path.isAbsolute(p) || existsSync(p)) return path.resolve(p);
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  return path.join(root, p);
}

/** The address SBCs and RTP senders reach us on (SDP c=, Contact, RTP session answers). */
function advertisedAddress(env: Env): string {
  if (env.SIP_PUBLIC_ADDRESS) return env.SIP_PUBLIC_ADDRESS;
  const host = env.SIP_ENABLED ? env.SIP_HOST : env.RTP_HOST;
  return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
}

/** SIP server counters → Prometheus as deltas every 5 s. */
function startSipMetrics(server: SipServer, metrics: Metrics): NodeJS.Timeout {
  const seen = new Map<string, number>();
  const delta = (key: string, n: number): number => {
    const d = n - (seen.get(key) ?? 0);
    seen.set(key, n);
    return d;
  };
  const timer = setInterval(() => {
    const s = server.stats();
    for (const [method, n] of Object.entries(s.requests)) {
      const d = delta(`req:${method}`, n);
      if (d > 0) metrics.sipRequests.inc({ method }, d);
    }
    for (const [reason, n] of [...Object.entries(s.rejections), ...Object.entries(s.drops)]) {
      const d = delta(`rej:${reason}`, n);
      if (d > 0) metrics.sipRejections.inc({ reason }, d);
    }
  }, 5000);
  timer.unref();
  return timer;
}
