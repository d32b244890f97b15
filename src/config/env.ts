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
