/**
 * The alerts REST API (JSON, bearer API_TOKEN; docs/supervisor.md "REST"), mounted as the
 * prefix route '/v1/alerts' of src/http/server.ts:
 *
 *   GET  /v1/alerts?status=open|acknowledged[&limit=&tenantId=]   (no status: both)
 *   GET  /v1/alerts/:id                                           (with its deliveries)
 *   POST /v1/alerts/:id/acknowledge  {by}
 *   POST /v1/alerts/:id/resolve      {by}
 *   POST /v1/alerts/:id/feedback     {feedback: true_positive|false_positive|not_actionable, by}
 *
 * Errors are `{ error: { code, message, … } }`: 401 ERR_HTTP_UNAUTHORIZED, 400
 * ERR_HTTP_VALIDATION (zod issues) / ERR_HTTP_BAD_JSON, 404 ERR_ALERTS_NOT_FOUND /
 * ERR_HTTP_NOT_FOUND, 405 ERR_HTTP_METHOD_NOT_ALLOWED, 409 ERR_ALERTS_INVALID_TRANSITION
 * (with the current `status`), 413, 415, 500 ERR_HTTP_INTERNAL. Every change publishes
 * `alert.updated`; a failed publish does not undo the change (it is committed) and is logged.
 */
import type http from 'node:http';
import { z } from 'zod';
import { systemClock, type Clock } from '../../core/clock.js';
import { errorMessage } from '../../core/errors.js';
import {
  HttpError,
  parseBody,
  readJsonBody,
  requireBearer,
  sendHttpError,
  sendJson,
  zodIssues,
} from '../../http/json.js';
import type { RouteHandler } from '../../http/server.js';
import type { Logger } from '../../observability/logger.js';
import { ALERT_FEEDBACK, ALERT_STATUSES, type AlertStore, type TransitionOutcome } from '../store.js';
import { alertToJson, alertUpdatedEvent, deliveryToJson, type AlertChange } from './events.js';
import type { EventPublisher } from './publisher.js';

export const ALERTS_BASE_PATH = '/v1/alerts';

export interface AlertsRestOptions {
  /** API_TOKEN. */
  readonly token: string;
  readonly store: AlertStore;
  readonly publisher: Pick<EventPublisher, 'publish'>;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Largest request body (default 16 KiB). */
  readonly maxBodyBytes?: number;
}

export interface AlertsRestStats {
  requests: number;
  unauthorized: number;
  clientErrors: number;
  serverErrors: number;
  changes: number;
  publishErrors: number;
}

export type AlertsRestHandler = RouteHandler & { stats(): AlertsRestStats };

const by = z.string().trim().min(1).max(200);
const actorSchema = z.object({ by });
const feedbackSchema = z.object({ feedback: z.enum(ALERT_FEEDBACK), by });
const listQuerySchema = z.object({
  status: z.enum(ALERT_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  tenantId: z.string().min(1).max(256).optional(),
});
/** alerts.alert_id is a Postgres uuid: anything else is a 404 without a database round trip. */
const alertIdSchema = z.guid();

const notFound = () => new HttpError(404, 'ERR_HTTP_NOT_FOUND', 'no such resource');
const methodNotAllowed = (allow: string) =>
  new HttpError(405, 'ERR_HTTP_METHOD_NOT_ALLOWED', `use ${allow}`, { headers: { allow } });

export function createAlertsRestHandler(options: AlertsRestOptions): AlertsRestHandler {
  if (!options.token) throw new Error('API token is empty');
  const { store, publisher } = options;
  const clock = options.clock ?? systemClock;
  const log = options.logger.child({ component: 'alerts-rest' });
  const maxBytes = options.maxBodyBytes ?? 16 * 1024;
  const stats: AlertsRestStats = { requests: 0, unauthorized: 0, clientErrors: 0, serverErrors: 0, changes: 0, publishErrors: 0 };

  const applied = async (outcome: TransitionOutcome, alertId: string, change: AlertChange) => {
    if (!outcome.ok) {
      if (outcome.error === 'not-found') throw new HttpError(404, 'ERR_ALERTS_NOT_FOUND', 'no alert with this id');
      throw new HttpError(409, 'ERR_ALERTS_INVALID_TRANSITION', `cannot apply ${change} to an alert that is ${outcome.status}`, {
        details: { status: outcome.status },
      });
    }
    stats.changes++;
    try {
      await publisher.publish(alertUpdatedEvent(outcome.alert, change));
    } catch (err) {
      stats.publishErrors++;
      log.warn({ code: 'ERR_EVENTS_PUBLISH', alertId, change, err: errorMessage(err) }, 'alert.updated not published');
    }
    return { alert: alertToJson(outcome.alert) };
  };

  const route = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    requireBearer(req, options.token);
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (!url.pathname.startsWith(ALERTS_BASE_PATH)) throw notFound();
    const rest = url.pathname.slice(ALERTS_BASE_PATH.length);
    const parts = rest.split('/').filter(Boolean);
    const method = req.method ?? 'GET';
    if (rest !== '' && !rest.startsWith('/')) throw notFound();

    if (parts.length === 0) {
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed('GET');
      const q = listQuerySchema.safeParse(Object.fromEntries(url.searchParams));
      if (!q.success) throw new HttpError(400, 'ERR_HTTP_VALIDATION', 'query is invalid', { issues: zodIssues(q.error) });
      const { status, limit, tenantId } = q.data;
      const scope = { limit, ...(tenantId !== undefined ? { tenantId } : {}) };
      const alerts = status === undefined ? await store.listOpenAlerts(scope) : await store.listAlertsByStatus(status, scope);
      sendJson(res, 200, { alerts: alerts.map(alertToJson) });
      return;
    }

    const alertId = decodeSegment(parts[0] ?? '');
    if (!alertIdSchema.safeParse(alertId).success) throw new HttpError(404, 'ERR_ALERTS_NOT_FOUND', 'no alert with this id');
    if (parts.length === 1) {
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed('GET');
      const alert = await store.getAlert(alertId);
      if (!alert) throw new HttpError(404, 'ERR_ALERTS_NOT_FOUND', 'no alert with this id');
      const deliveries = await store.listDeliveries(alertId);
      sendJson(res, 200, { alert: alertToJson(alert), deliveries: deliveries.map(deliveryToJson) });
      return;
    }
    const action = parts[1];
    if (parts.length !== 2 || (action !== 'acknowledge' && action !== 'resolve' && action !== 'feedback')) throw notFound();
    if (method !== 'POST') throw methodNotAllowed('POST');
    const body = await readJsonBody(req, { maxBytes });
    const at = new Date(clock.now());
    if (action === 'feedback') {
      const input = parseBody(feedbackSchema, body);
      sendJson(res, 200, await applied(await store.setFeedback(alertId, input.feedback, input.by, at), alertId, 'feedback'));
      return;
    }
    const input = parseBody(actorSchema, body);
    const outcome = await store.transition(alertId, action, input.by, at);
    sendJson(res, 200, await applied(outcome, alertId, action === 'acknowledge' ? 'acknowledged' : 'resolved'));
  };

  const handler = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    stats.requests++;
    try {
      await route(req, res);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        if (err.status === 401) stats.unauthorized++;
        else stats.clientErrors++;
        sendHttpError(res, err);
        return;
      }
      stats.serverErrors++;
      log.error({ code: 'ERR_ALERTS_API', method: req.method, err: errorMessage(err) }, 'alerts API request failed');
      sendHttpError(res, new HttpError(500, 'ERR_HTTP_INTERNAL', 'internal error'));
    }
  };

  return Object.assign(handler, { stats: () => ({ ...stats }) });
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return '';
  }
}
