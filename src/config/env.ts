/**
 * Configuration comes only from environment variables, parsed here with zod at start-up
 * (the only reader of process.env). A bad value stops start-up with a message naming the
 * variable. Every variable is documented in README.md ("Configuration").
 */
import { z } from 'zod';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const intMs = (def: number, min = 0, max = 24 * 3600_000) =>
  z.coerce.number().int().min(min).max(max).default(def);

const wsUrl = z
  .string()
  .url()
  .refine((u) => /^wss?:\/\//.test(u), 'must be a ws:// or wss:// URL');

export const envSchema = z.object({
  NODE_ENV: z.string().default('production'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** HTTP + WebSocket listener (Twilio ingest, health, metrics). */
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default('0.0.0.0'),
  DATABASE_URL: z
    .string()
    .url()
    .refine((u) => /^postgres(ql)?:\/\//.test(u), 'must be a postgres:// URL')
    .default('postgres://postgres@127.0.0.1:5432/callscribe'),
  REDIS_URL: z
    .string()
    .url()
    .refine((u) => /^rediss?:\/\//.test(u), 'must be a redis:// URL')
    .default('redis://127.0.0.1:6379'),
  /** Prefix of every BullMQ key (lets several deployments or test runs share one Redis). */
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, "_", "." and "-" only')
    .default('callscribe'),
  DASHSCOPE_API_KEY: z.string().min(1).optional(),
  DASHSCOPE_INFERENCE_URL: wsUrl.default('wss://dashscope.aliyuncs.com/api-ws/v1/inference'),
  DASHSCOPE_REALTIME_URL: wsUrl.default('wss://dashscope.aliyuncs.com/api-ws/v1/realtime'),
  DASHSCOPE_WORKSPACE: z.string().min(1).optional(),
  /** Default recogniser model for every role. */
  ASR_MODEL: z.enum(['paraformer-realtime-8k-v2', 'qwen3-asr-flash-realtime']).default('paraformer-realtime-8k-v2'),
  /** Routing policy file (JSON or YAML): model per call and role, fallbacks, hotwords per tenant. */
  ROUTING_FILE: z.string().min(1).optional(),
  /** qwen turn detection: the server's VAD, or turns decided here and committed (manual mode). */
  QWEN_TURN_DETECTION: z.enum(['server_vad', 'manual']).default('server_vad'),
  /** Where the per-model task-start budget lives: shared in Redis (DashScope counts per account) or per process. */
  ASR_START_LIMITER: z.enum(['redis', 'memory']).default('redis'),
  /** Paraformer `vocabulary_id` applied to every call (hotword list). */
  ASR_VOCABULARY_ID: z.string().min(1).optional(),
  ASR_DISFLUENCY_REMOVAL: bool.default(false),
  /** Paraformer `max_sentence_silence`, ms (200..6000). */
  ASR_MAX_SENTENCE_SILENCE_MS: z.coerce.number().int().min(200).max(6000).default(800),
  /** Task starts allowed per second per model (DashScope counts 20 RPS per account and model). */
  ASR_TASK_STARTS_PER_SECOND: z.coerce.number().int().min(1).max(1000).default(20),
  /** Reconnect attempts after a retryable ASR failure before the stream is marked failed. */
  ASR_MAX_RETRIES: z.coerce.number().int().min(0).max(100).default(6),
  ASR_RETRY_MIN_MS: intMs(250, 1),
  ASR_RETRY_MAX_MS: intMs(8000, 1),
  /** Audio kept for resending after a reconnect (audio since the last final sentence). */
  ASR_REPLAY_BUFFER_MS: intMs(120_000, 1000),
  /** Waiting for task-finished after finish-task. */
  ASR_FINISH_TIMEOUT_MS: intMs(10_000, 100),
  /** No telephony audio for this long while a call is live: send silence to the recogniser
   *  (well under its 23 s no-data limit, well over normal delivery stalls, whose late frames
   *  would otherwise be dropped as already covered by the silence). */
  ASR_KEEPALIVE_AFTER_MS: intMs(10_000, 100, 20_000),
  /** Twilio: when set, X-Twilio-Signature is required on the WebSocket upgrade. */
  TWILIO_AUTH_TOKEN: z.string().min(1).optional(),
  /** Public base URL Twilio connects to (e.g. wss://callscribe.example.com); used for signatures. */
  PUBLIC_URL: z
    .string()
    .url()
    .refine((u) => /^(wss?|https?):\/\//.test(u), 'must be a wss:// (or https://) URL')
    .optional(),
  /** Largest WebSocket frame accepted from Twilio, bytes. */
  TWILIO_MAX_FRAME_BYTES: z.coerce.number().int().min(1024).max(1 << 20).default(64 * 1024),
  /** A Twilio socket that sends nothing for this long is closed (ms). */
  TWILIO_IDLE_TIMEOUT_MS: intMs(60_000, 1000),
  /** Maximum concurrent calls; further upgrades are refused with 503. */
  MAX_CALLS: z.coerce.number().int().min(1).max(100_000).default(1000),
  /** Grace period for draining calls on SIGTERM. */
  DRAIN_TIMEOUT_MS: intMs(30_000, 0),
  /** Concurrency of the utterance persistence worker. */
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(8),
  /** Apply pending migrations when `serve` starts. */
  MIGRATE_ON_START: bool.default(true),

  // ── SIP / RTP ingest (docs/sip.md) ──
  /** SIP user agent server: off unless enabled (it listens on UDP and TCP). */
  SIP_ENABLED: bool.default(false),
  SIP_HOST: z.string().default('0.0.0.0'),
  SIP_PORT: z.coerce.number().int().min(0).max(65535).default(5060),
  SIP_TRANSPORTS: z
    .string()
    .default('udp,tcp')
    .transform((v) => v.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean))
    .pipe(z.array(z.enum(['udp', 'tcp'])).min(1)),
  /** Address put in SDP answers (c=) and Contact: where SBCs send RTP. Default: the SIP socket's address, or 127.0.0.1 for 0.0.0.0. */
  SIP_PUBLIC_ADDRESS: z.string().min(1).optional(),
  /** Source networks allowed to send SIP (comma-separated CIDRs); anything else is dropped and counted. */
  SIP_ALLOWED_CIDRS: z
    .string()
    .default('127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7')
    .transform((v) => v.split(',').map((c) => c.trim()).filter(Boolean)),
  /** Optional digest authentication of INVITEs (both or neither). */
  SIP_AUTH_USERNAME: z.string().min(1).optional(),
  SIP_AUTH_PASSWORD: z.string().min(1).optional(),
  SIP_AUTH_REALM: z.string().min(1).default('callscribe'),
  /** Plain SIP: header naming the role of a single-stream call (customer | agent). */
  SIP_ROLE_HEADER: z.string().min(1).default('X-Callscribe-Role'),
  /** SIPREC: which participant is the customer (the trunk side of an inbound call is the caller). */
  SIPREC_CUSTOMER: z.enum(['caller', 'callee']).default('caller'),
  /** SIPREC: participants whose AOR matches this pattern are agents (e.g. ^sip:\d{3,5}@). */
  SIPREC_AGENT_AOR_PATTERN: z
    .string()
    .min(1)
    .optional()
    .refine((v) => {
      if (v === undefined) return true;
      try {
        new RegExp(v);
        return true;
      } catch {
        return false;
      }
    }, 'must be a valid regular expression'),
  /** UDP ports for RTP (even RTP port, odd RTCP port, per stream). */
  RTP_PORT_MIN: z.coerce.number().int().min(1024).max(65534).default(40000),
  RTP_PORT_MAX: z.coerce.number().int().min(1025).max(65535).default(40999),
  RTP_HOST: z.string().default('0.0.0.0'),
  /** Jitter buffer reorder window. */
  RTP_JITTER_MS: intMs(60, 0, 1000),
  /** No RTP on any stream of a call for this long ends it (generous for hold). */
  RTP_INACTIVITY_TIMEOUT_MS: intMs(30_000, 1000),
  /** Bearer token for the HTTP API (/v1/rtp-sessions, /v1/alerts). Unset: the API answers 503. */
  API_TOKEN: z.string().min(16, 'use at least 16 characters').optional(),

  // ── QA analytics and alerts (docs/analytics.md) ──
  /** Rule file (YAML/JSON) loaded into the rules table at start; default: the shipped Chinese starter pack. */
  RULES_FILE: z.string().min(1).default('rules/zh-starter.yaml'),
  /** PII in transcripts: redact before storing (default), keep, or store both (originals in utterance_originals). */
  PII_MODE: z.enum(['redact', 'keep', 'both']).default('redact'),
  /** Non-talk instances shorter than this are not silences. */
  SILENCE_THRESHOLD_MS: intMs(3000, 100),
  /** Overtalk at least this long counts as an interruption (shorter: back-channel). */
  INTERRUPTION_MIN_OVERLAP_MS: intMs(1000, 0),
  /** Time zone of agent_daily days. */
  ANALYTICS_TIME_ZONE: z.string().min(1).default('UTC'),
  /** Bearer token of the supervisor feed GET /supervisor (default: API_TOKEN). */
  SUPERVISOR_TOKEN: z.string().min(16, 'use at least 16 characters').optional(),
  /** Alert webhooks: comma-separated URLs, signed with WEBHOOK_SECRET (HMAC-SHA256). */
  WEBHOOK_URLS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((u) => u.trim()).filter(Boolean))
    .pipe(z.array(z.string().url().refine((u) => /^https?:\/\//.test(u), 'must be http(s)'))),
  WEBHOOK_SECRET: z.string().min(16, 'use at least 16 characters').optional(),
  /** One webhook POST may take this long. */
  WEBHOOK_TIMEOUT_MS: intMs(5000, 100, 60_000),
  /** Attempts per webhook delivery (exponential backoff from WEBHOOK_BACKOFF_MS). */
  WEBHOOK_ATTEMPTS: z.coerce.number().int().min(1).max(50).default(8),
  WEBHOOK_BACKOFF_MS: intMs(5000, 10),
  /** Outbox sweep: re-dispatch alert deliveries still pending after ALERT_SWEEP_AFTER_MS. */
  ALERT_SWEEP_INTERVAL_MS: intMs(15_000, 100),
  ALERT_SWEEP_AFTER_MS: intMs(30_000, 100),
}).superRefine((env, ctx) => {
  if (env.RTP_PORT_MAX <= env.RTP_PORT_MIN) {
    ctx.addIssue({ code: 'custom', path: ['RTP_PORT_MAX'], message: 'must be greater than RTP_PORT_MIN' });
  }
  if ((env.SIP_AUTH_USERNAME === undefined) !== (env.SIP_AUTH_PASSWORD === undefined)) {
    ctx.addIssue({ code: 'custom', path: ['SIP_AUTH_PASSWORD'], message: 'set SIP_AUTH_USERNAME and SIP_AUTH_PASSWORD together' });
  }
  if (env.WEBHOOK_URLS.length > 0 && !env.WEBHOOK_SECRET) {
    ctx.addIssue({ code: 'custom', path: ['WEBHOOK_SECRET'], message: 'required when WEBHOOK_URLS is set' });
  }
});

export type Env = z.infer<typeof envSchema>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Parses the environment; throws ConfigError naming every bad variable. */
export function loadEnv(source: NodeJS.ProcessEnv = process.env): Env {
  // treat empty strings as unset, as docker-compose passes `VAR=` for blank values
  const cleaned: Record<string, string> = {};
  for (const [k, v] of Object.entries(source)) if (v !== undefined && v !== '') cleaned[k] = v;
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map(
      (i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`,
    );
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}

/** The public wss:// URL of the Twilio endpoint, from PUBLIC_URL (never from request headers). */
export function twilioPublicUrl(env: Pick<Env, 'PUBLIC_URL'>): string | undefined {
  if (!env.PUBLIC_URL) return undefined;
  const u = new URL(env.PUBLIC_URL);
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol === 'http:') u.protocol = 'ws:';
  u.pathname = u.pathname.replace(/\/+$/, '') + '/twilio';
  return u.toString();
}
