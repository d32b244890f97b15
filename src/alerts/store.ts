/**
 * The alert store contract: what delivery (supervisor socket, Redis pub/sub, webhooks, REST)
 * needs from Postgres. Implemented by src/db/repositories/alerts.ts (`createAlertStore(db)`);
 * tests may use an in-memory fake. Types only.
 *
 * Lifecycle (qa-analytics.md §3.4): open → acknowledged → resolved; `suppressed` rows are kept
 * for tuning (cut by cooldown, cap or dedupe) and are never delivered.
 */
import type { Role } from '../core/types.js';
import type { EvidenceRef, Severity } from '../analytics/types.js';

export const ALERT_STATUSES = ['open', 'acknowledged', 'resolved', 'suppressed'] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];
export const ALERT_FEEDBACK = ['true_positive', 'false_positive', 'not_actionable'] as const;
export type AlertFeedback = (typeof ALERT_FEEDBACK)[number];
export const DELIVERY_CHANNELS = ['supervisor', 'redis', 'webhook'] as const;
export type DeliveryChannel = (typeof DELIVERY_CHANNELS)[number];

/** Evidence as stored on an alert: the sentence reference plus its (redacted) text. */
export interface AlertEvidence extends EvidenceRef {
  readonly text: string;
}

export interface AlertRecord {
  readonly alertId: string;
  readonly tenantId: string;
  readonly callId: string;
  readonly callStartedAt: Date;
  readonly ruleId: string;
  readonly ruleVersion: number;
  /** Role whose speech raised it. */
  readonly role: Role;
  readonly severity: Severity;
  readonly status: AlertStatus;
  /** Why it fired: 'share' | 'streak' | 'escalation-keyword' | 'persistence' | 'agent-negative' | … */
  readonly reason: string;
  /** Set when status is 'suppressed': 'cooldown' | 'cap' | 'dedupe'. */
  readonly suppressedReason: string | null;
  /** `call_id:rule_id:severity` (qa-analytics.md §3.2). */
  readonly dedupeKey: string;
  readonly evidence: readonly AlertEvidence[];
  /** The sentence whose arrival fired it. */
  readonly triggerRole: Role;
  readonly triggerSeq: number;
  /** Call-timeline ms of the trigger sentence's end. */
  readonly triggerEndMs: number;
  /** Latency marks: the trigger sentence's final reached callscribe, the alert row committed, first delivery. */
  readonly finalReceivedAt: Date | null;
  readonly committedAt: Date;
  readonly firstDeliveredAt: Date | null;
  readonly ackedBy: string | null;
  readonly ackedAt: Date | null;
  readonly resolvedBy: string | null;
  readonly resolvedAt: Date | null;
  readonly feedback: AlertFeedback | null;
  readonly feedbackBy: string | null;
  readonly feedbackAt: Date | null;
}

export interface AlertDelivery {
  readonly deliveryId: number;
  readonly alertId: string;
  readonly channel: DeliveryChannel;
  /** 'supervisor' | the Redis channel name | the webhook URL. */
  readonly target: string;
  readonly status: 'pending' | 'delivered' | 'failed';
  readonly attempts: number;
  readonly lastError: string | null;
  readonly createdAt: Date;
  readonly deliveredAt: Date | null;
}

export type DeliveryResult =
  | { readonly ok: true; readonly at: Date }
  /** `final`: no more retries (status 'failed'); otherwise it stays 'pending'. */
  | { readonly ok: false; readonly at: Date; readonly error: string; readonly final: boolean };

export type TransitionOutcome =
  | { readonly ok: true; readonly alert: AlertRecord }
  | { readonly ok: false; readonly error: 'not-found' }
  | { readonly ok: false; readonly error: 'invalid-transition'; readonly status: AlertStatus };

export interface AlertStore {
  /** Open and acknowledged alerts, newest first (the supervisor's wall). */
  listOpenAlerts(options?: { readonly tenantId?: string; readonly limit?: number }): Promise<AlertRecord[]>;
  /** Alerts in one status (any status), newest first. */
  listAlertsByStatus(status: AlertStatus, options?: { readonly tenantId?: string; readonly limit?: number }): Promise<AlertRecord[]>;
  getAlert(alertId: string): Promise<AlertRecord | undefined>;
  listDeliveries(alertId: string): Promise<AlertDelivery[]>;
  /**
   * Outbox sweep: deliveries still 'pending' whose row was created before `createdBefore`
   * (the process that committed the alert died before dispatching, or a retry is overdue).
   */
  listPendingDeliveries(createdBefore: Date, limit: number): Promise<AlertDelivery[]>;
  /**
   * Records one delivery attempt on (alertId, channel, target): upserts the alert_deliveries row,
   * counts the attempt, and on success sets alerts.first_delivered_at if it is still null.
   */
  recordDelivery(alertId: string, channel: DeliveryChannel, target: string, result: DeliveryResult): Promise<void>;
  /** open → acknowledged; open|acknowledged → resolved. Anything else: invalid-transition. */
  transition(alertId: string, action: 'acknowledge' | 'resolve', by: string, at: Date): Promise<TransitionOutcome>;
  /** Feedback on any non-suppressed alert, overwritable. */
  setFeedback(alertId: string, feedback: AlertFeedback, by: string, at: Date): Promise<TransitionOutcome>;
}
