/**
 * The live event protocol (version 1) shared by the Redis channels, the supervisor feed and
 * webhooks: one JSON object per message, `{ v: 1, type, … }`. Times are ISO 8601 UTC strings;
 * call-timeline offsets (`…Ms`) are ms from the call's stream start. Utterance text is already
 * redacted when it is published, but it is still PII: never log it.
 *
 * Redis channels (docs/supervisor.md, docs/webhooks.md):
 * - `${prefix}:events` — every event (the supervisor hub subscribes here);
 * - `${prefix}:alerts` — `alert` and `alert.updated` only, for other consumers.
 * Consumers must ignore unknown fields, and skip unknown `type`s (new types are added
 * without a version bump; `v` changes only for incompatible changes).
 */
import { z } from 'zod';
import type { AlertDelivery, AlertRecord } from '../store.js';
import { ALERT_FEEDBACK, ALERT_STATUSES, DELIVERY_CHANNELS } from '../store.js';

export const EVENT_VERSION = 1;

export interface EventChannels {
  /** Every event. */
  readonly events: string;
  /** Alert events only (`alert`, `alert.updated`). */
  readonly alerts: string;
}

export function eventChannels(prefix: string): EventChannels {
  return { events: `${prefix}:events`, alerts: `${prefix}:alerts` };
}

const iso = z.iso.datetime();
const isoOrNull = iso.nullable();
const role = z.enum(['customer', 'agent']);
const severity = z.enum(['info', 'warning', 'critical']);
const valence = z.union([z.literal(-1), z.literal(0), z.literal(1)]);
const offsetMs = z.number().finite();
const seq = z.number().int().min(0);
/** calls.id is a Postgres uuid. */
export const callIdSchema = z.guid();
const shortText = z.string().min(1).max(256);

const evidenceSchema = z.object({
  role,
  seq,
  startMs: offsetMs,
  endMs: offsetMs,
  text: z.string(),
  emotionRaw: z.string().nullable().optional(),
  emotionConfidence: z.number().min(0).max(1).nullable().optional(),
  valence: valence.nullable().optional(),
  charBegin: z.number().int().min(0).optional(),
  charEnd: z.number().int().min(0).optional(),
});

export const alertJsonSchema = z.object({
  alertId: shortText,
  tenantId: shortText,
  callId: callIdSchema,
  callStartedAt: iso,
  ruleId: shortText,
  ruleVersion: z.number().int(),
  role,
  severity,
  status: z.enum(ALERT_STATUSES),
  reason: z.string(),
  suppressedReason: z.string().nullable(),
  dedupeKey: z.string(),
  evidence: z.array(evidenceSchema).max(1000),
  triggerRole: role,
  triggerSeq: seq,
  triggerEndMs: offsetMs,
  finalReceivedAt: isoOrNull,
  committedAt: iso,
  firstDeliveredAt: isoOrNull,
  ackedBy: z.string().nullable(),
  ackedAt: isoOrNull,
  resolvedBy: z.string().nullable(),
  resolvedAt: isoOrNull,
  feedback: z.enum(ALERT_FEEDBACK).nullable(),
  feedbackBy: z.string().nullable(),
  feedbackAt: isoOrNull,
});
export type AlertJson = z.infer<typeof alertJsonSchema>;

export const ALERT_CHANGES = ['acknowledged', 'resolved', 'feedback'] as const;
export type AlertChange = (typeof ALERT_CHANGES)[number];

const v = z.literal(EVENT_VERSION);

export const alertEventSchema = z.object({ v, type: z.literal('alert'), alert: alertJsonSchema });
export const alertUpdatedEventSchema = z.object({
  v,
  type: z.literal('alert.updated'),
  change: z.enum(ALERT_CHANGES),
  alert: alertJsonSchema,
});
export const callStartedEventSchema = z.object({
  v,
  type: z.literal('call.started'),
  callId: callIdSchema,
  tenantId: shortText,
  source: z.enum(['twilio', 'rtp', 'sip']),
  startedAt: iso,
  /** track → role */
  roles: z.record(z.string(), role),
  /** role → model */
  models: z.partialRecord(role, z.string()),
  agentId: shortText.optional(),
});
export const callEndedEventSchema = z.object({
  v,
  type: z.literal('call.ended'),
  callId: callIdSchema,
  endedAt: iso,
  endReason: z.string().max(256),
  durationMs: z.number().int().min(0),
});
export const utteranceEventSchema = z.object({
  v,
  type: z.literal('utterance'),
  callId: callIdSchema,
  role,
  seq,
  startMs: offsetMs,
  endMs: offsetMs,
  /** Redacted transcript text (PII). */
  text: z.string().max(100_000),
  emotion: z
    .object({ raw: z.string(), valence, confidence: z.number().min(0).max(1).nullable() })
    .nullable(),
});

export const liveEventSchema = z.discriminatedUnion('type', [
  alertEventSchema,
  alertUpdatedEventSchema,
  callStartedEventSchema,
  callEndedEventSchema,
  utteranceEventSchema,
]);
export type LiveEvent = z.infer<typeof liveEventSchema>;
export type AlertEvent = z.infer<typeof alertEventSchema>;
export type AlertUpdatedEvent = z.infer<typeof alertUpdatedEventSchema>;
export type CallStartedEvent = z.infer<typeof callStartedEventSchema>;
export type CallEndedEvent = z.infer<typeof callEndedEventSchema>;
export type UtteranceEvent = z.infer<typeof utteranceEventSchema>;
export type LiveEventType = LiveEvent['type'];

/** `alert` and `alert.updated`: never dropped by the supervisor feed, also sent on the alerts channel. */
export function isAlertEvent(event: LiveEvent): event is AlertEvent | AlertUpdatedEvent {
  return event.type === 'alert' || event.type === 'alert.updated';
}

const isoTime = (d: Date | null): string | null => (d ? d.toISOString() : null);

/** An AlertRecord as JSON (ISO times). */
export function alertToJson(a: AlertRecord): AlertJson {
  return {
    alertId: a.alertId,
    tenantId: a.tenantId,
    callId: a.callId,
    callStartedAt: a.callStartedAt.toISOString(),
    ruleId: a.ruleId,
    ruleVersion: a.ruleVersion,
    role: a.role,
    severity: a.severity,
    status: a.status,
    reason: a.reason,
    suppressedReason: a.suppressedReason,
    dedupeKey: a.dedupeKey,
    evidence: a.evidence.map((e) => ({ ...e })),
    triggerRole: a.triggerRole,
    triggerSeq: a.triggerSeq,
    triggerEndMs: a.triggerEndMs,
    finalReceivedAt: isoTime(a.finalReceivedAt),
    committedAt: a.committedAt.toISOString(),
    firstDeliveredAt: isoTime(a.firstDeliveredAt),
    ackedBy: a.ackedBy,
    ackedAt: isoTime(a.ackedAt),
    resolvedBy: a.resolvedBy,
    resolvedAt: isoTime(a.resolvedAt),
    feedback: a.feedback,
    feedbackBy: a.feedbackBy,
    feedbackAt: isoTime(a.feedbackAt),
  };
}

export const deliveryJsonSchema = z.object({
  channel: z.enum(DELIVERY_CHANNELS),
  target: z.string(),
  status: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number().int().min(0),
  lastError: z.string().nullable(),
  createdAt: iso,
  deliveredAt: isoOrNull,
});
export type DeliveryJson = z.infer<typeof deliveryJsonSchema>;

/**
 * A delivery row as JSON. Webhook targets lose their query string and credentials (they may
 * hold tokens), as in the logs.
 */
export function deliveryToJson(d: AlertDelivery): DeliveryJson {
  return {
    channel: d.channel,
    target: d.channel === 'webhook' ? redactUrl(d.target) : d.target,
    status: d.status,
    attempts: d.attempts,
    lastError: d.lastError,
    createdAt: d.createdAt.toISOString(),
    deliveredAt: isoTime(d.deliveredAt),
  };
}

/** A URL without userinfo, query or fragment (for logs and API output). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}

export function alertEvent(alert: AlertRecord): AlertEvent {
  return { v: EVENT_VERSION, type: 'alert', alert: alertToJson(alert) };
}

export function alertUpdatedEvent(alert: AlertRecord, change: AlertChange): AlertUpdatedEvent {
  return { v: EVENT_VERSION, type: 'alert.updated', change, alert: alertToJson(alert) };
}

export function callStartedEvent(e: {
  readonly callId: string;
  readonly tenantId: string;
  readonly source: CallStartedEvent['source'];
  readonly startedAt: number | Date;
  readonly roles: Readonly<Record<string, 'customer' | 'agent'>>;
  readonly models: Readonly<Partial<Record<'customer' | 'agent', string>>>;
  readonly agentId?: string | undefined;
}): CallStartedEvent {
  return {
    v: EVENT_VERSION,
    type: 'call.started',
    callId: e.callId,
    tenantId: e.tenantId,
    source: e.source,
    startedAt: new Date(e.startedAt).toISOString(),
    roles: { ...e.roles },
    models: { ...e.models },
    ...(e.agentId !== undefined ? { agentId: e.agentId } : {}),
  };
}

export function callEndedEvent(e: {
  readonly callId: string;
  readonly endedAt: number | Date;
  readonly endReason: string;
  readonly durationMs: number;
}): CallEndedEvent {
  return {
    v: EVENT_VERSION,
    type: 'call.ended',
    callId: e.callId,
    endedAt: new Date(e.endedAt).toISOString(),
    endReason: e.endReason,
    durationMs: Math.max(0, Math.round(e.durationMs)),
  };
}

export function utteranceEvent(e: {
  readonly callId: string;
  readonly role: 'customer' | 'agent';
  readonly seq: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly text: string;
  readonly emotion: { readonly raw: string; readonly valence: -1 | 0 | 1; readonly confidence: number | null } | null;
}): UtteranceEvent {
  return {
    v: EVENT_VERSION,
    type: 'utterance',
    callId: e.callId,
    role: e.role,
    seq: e.seq,
    startMs: e.startMs,
    endMs: e.endMs,
    text: e.text,
    emotion: e.emotion ? { raw: e.emotion.raw, valence: e.emotion.valence, confidence: e.emotion.confidence } : null,
  };
}

export type ParsedEvent =
  | { readonly ok: true; readonly event: LiveEvent }
  | { readonly ok: false; readonly code: 'ERR_EVENT_BAD_JSON' | 'ERR_EVENT_INVALID' | 'ERR_EVENT_VERSION' };

/** Parses one message of a live-event channel (untrusted input: validated, never cast). */
export function parseLiveEvent(text: string): ParsedEvent {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, code: 'ERR_EVENT_BAD_JSON' };
  }
  if (typeof value === 'object' && value !== null && 'v' in value && value.v !== EVENT_VERSION) {
    return { ok: false, code: 'ERR_EVENT_VERSION' };
  }
  const result = liveEventSchema.safeParse(value);
  return result.success ? { ok: true, event: result.data } : { ok: false, code: 'ERR_EVENT_INVALID' };
}
