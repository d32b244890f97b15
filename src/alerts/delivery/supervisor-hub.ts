/**
 * GET /supervisor: the supervisors' live WebSocket feed (docs/supervisor.md). Thin adapter on
 * `ws` (noServer, small maxPayload) and one Redis SUBSCRIBE connection per hub:
 *
 *   upgrade (bearer token: header | `bearer.<token>` subprotocol | ?token=, constant-time;
 *   401 otherwise) → `hello` → the open alerts (store.listOpenAlerts) → `snapshot.done` →
 *   live events from `${prefix}:events` (alerts and call.started/ended to everyone, utterances
 *   only for watched calls). Live events that arrive during the snapshot wait (bounded) and
 *   are sent after it, without repeating alerts the snapshot already carried.
 *
 * Backpressure per socket (ws `bufferedAmount`): above `maxBufferedBytes` non-alert events are
 * dropped and counted, and the client is told (`dropped`) with the next message it gets; alert
 * events are never dropped — above `maxAlertBufferedBytes` the socket is closed with 1013 (the
 * client reconnects and gets the open alerts again). Three invalid client messages → 4400.
 * The first time an alert reaches any socket, the 'supervisor' delivery is recorded (once per
 * alert per process).
 */
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Redis } from 'ioredis';
import { WebSocketServer, type WebSocket } from 'ws';
import { systemClock, type Clock } from '../../core/clock.js';
import { errorMessage } from '../../core/errors.js';
import { rejectUpgrade, type UpgradeHandler } from '../../http/server.js';
import { tokensEqual } from '../../http/json.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import { closeRedis, createWorkerConnection } from '../../queue/redis.js';
import type { AlertStore } from '../store.js';
import { EVENT_VERSION, alertEvent, eventChannels, isAlertEvent, parseLiveEvent, type AlertJson, type LiveEvent } from './events.js';
import {
  CLOSE_BAD_MESSAGES,
  CLOSE_GOING_AWAY,
  CLOSE_TRY_AGAIN_LATER,
  SUPERVISOR_PROTOCOL,
  parseClientMessage,
  presentedToken,
  selectProtocol,
  type ControlMessage,
} from './supervisor-protocol.js';

export interface SupervisorHubOptions {
  /** SUPERVISOR_TOKEN: the bearer token every socket must present. */
  readonly token: string;
  readonly store: AlertStore;
  /** Channel prefix (usually QUEUE_PREFIX): the hub subscribes to `${prefix}:events`. */
  readonly prefix: string;
  /** Redis for the subscriber connection (the hub creates and owns it)… */
  readonly redisUrl?: string;
  /** …or a dedicated connection the hub puts in subscriber mode (the caller closes it). */
  readonly subscriber?: Redis;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  readonly clock?: Clock;
  /** Largest client frame (default 4096 bytes; larger → ws closes 1009). */
  readonly maxPayloadBytes?: number;
  /** Above this many buffered bytes non-alert events are dropped (default 1 MiB). */
  readonly maxBufferedBytes?: number;
  /** Above this many buffered bytes even alerts cannot be queued: close 1013 (default 4 MiB). */
  readonly maxAlertBufferedBytes?: number;
  /** Open sockets (default 500; more → 503 on the upgrade). */
  readonly maxSockets?: number;
  /** Calls one socket may watch at once (default 20). */
  readonly maxWatchedCalls?: number;
  /** Open alerts sent on connect (default 500). */
  readonly snapshotLimit?: number;
  /** Live events held per socket while its snapshot loads (default 1000). */
  readonly maxPendingEvents?: number;
  /** Ping interval; a socket that missed the previous pong is terminated (default 30 000 ms; 0 = off). */
  readonly heartbeatMs?: number;
  /** Invalid client messages before close 4400 (default 3). */
  readonly maxStrikes?: number;
  /** Accept `?token=` (default true; see docs/supervisor.md for the trade-off). */
  readonly allowQueryToken?: boolean;
}

export interface SupervisorHubStats {
  sockets: number;
  connections: number;
  rejectedUnauthorized: number;
  rejectedCapacity: number;
  eventsReceived: number;
  eventsInvalid: number;
  messagesSent: number;
  /** Non-alert events dropped for backpressure (all sockets). */
  eventsDropped: number;
  closedBackpressure: number;
  closedBadMessages: number;
  badMessages: number;
  heartbeatTimeouts: number;
  snapshotErrors: number;
  deliveriesRecorded: number;
  recordErrors: number;
}

export interface SupervisorHub {
  readonly handleUpgrade: UpgradeHandler;
  /** Resolves once the Redis SUBSCRIBE is confirmed (rejects if it failed). */
  ready(): Promise<void>;
  stats(): SupervisorHubStats;
  /** Drain: closes every socket with 1001, unsubscribes, waits for pending delivery records. Idempotent. */
  close(): Promise<void>;
}

interface Client {
  readonly id: string;
  readonly ws: WebSocket;
  readonly watched: Set<string>;
  strikes: number;
  alive: boolean;
  closing: boolean;
  /** Snapshot in progress: live events wait here. */
  syncing: boolean;
  readonly pending: Array<{ readonly event: LiveEvent; readonly text: string }>;
  readonly snapshotIds: Set<string>;
  droppedSinceNotice: number;
}

type SendClass = 'event' | 'alert' | 'control';

/** Alerts remembered as delivered (per process) before the oldest are forgotten. */
const DELIVERED_MEMORY = 10_000;

export function createSupervisorHub(options: SupervisorHubOptions): SupervisorHub {
  if (!options.token) throw new Error('supervisor token is empty');
  if (!options.subscriber && !options.redisUrl) throw new Error('supervisor hub needs redisUrl or subscriber');
  const { store, metrics } = options;
  const clock = options.clock ?? systemClock;
  const log = options.logger.child({ component: 'supervisor-hub' });
  const channel = eventChannels(options.prefix).events;
  const maxPayload = options.maxPayloadBytes ?? 4096;
  const softLimit = options.maxBufferedBytes ?? 1024 * 1024;
  const hardLimit = Math.max(options.maxAlertBufferedBytes ?? 4 * 1024 * 1024, softLimit);
  const maxSockets = options.maxSockets ?? 500;
  const maxWatched = options.maxWatchedCalls ?? 20;
  const snapshotLimit = options.snapshotLimit ?? 500;
  const maxPending = options.maxPendingEvents ?? 1000;
  const heartbeatMs = options.heartbeatMs ?? 30_000;
  const maxStrikes = options.maxStrikes ?? 3;
  const allowQuery = options.allowQueryToken ?? true;

  const stats: SupervisorHubStats = {
    sockets: 0,
    connections: 0,
    rejectedUnauthorized: 0,
    rejectedCapacity: 0,
    eventsReceived: 0,
    eventsInvalid: 0,
    messagesSent: 0,
    eventsDropped: 0,
    closedBackpressure: 0,
    closedBadMessages: 0,
    badMessages: 0,
    heartbeatTimeouts: 0,
    snapshotErrors: 0,
    deliveriesRecorded: 0,
    recordErrors: 0,
  };
  const clients = new Set<Client>();
  /** alertId → true once recorded (Map keeps insertion order: the oldest is forgotten first). */
  const delivered = new Map<string, true>();
  const inflight = new Set<Promise<void>>();
  let closed = false;

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => selectProtocol(protocols),
  });

  // ── Redis subscription ──
  const ownsSubscriber = options.subscriber === undefined;
  const subscriber = options.subscriber ?? createWorkerConnection(options.redisUrl ?? '', { logger: log });
  const onRedisMessage = (ch: string, text: string) => {
    if (ch !== channel || closed) return;
    stats.eventsReceived++;
    const parsed = parseLiveEvent(text);
    if (!parsed.ok) {
      stats.eventsInvalid++;
      metrics?.liveEventsDropped.inc({ reason: 'invalid' });
      if (stats.eventsInvalid === 1 || stats.eventsInvalid % 100 === 0) {
        log.warn({ code: parsed.code, count: stats.eventsInvalid }, 'invalid live event on the events channel; dropped');
      }
      return;
    }
    fanOut(parsed.event, text);
  };
  subscriber.on('message', onRedisMessage);
  const subscribed = subscriber.subscribe(channel).then(() => undefined);
  subscribed.catch((err: unknown) => {
    if (closed) return; // closing the connection rejects a SUBSCRIBE still waiting for Redis
    log.error({ code: 'ERR_SUPERVISOR_SUBSCRIBE', err: errorMessage(err) }, 'could not subscribe to the events channel');
  });

  // ── sending ──
  const track = (p: Promise<void>) => {
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };

  const recordDelivered = (alert: AlertJson, live: boolean) => {
    if (delivered.has(alert.alertId)) return;
    delivered.set(alert.alertId, true);
    if (delivered.size > DELIVERED_MEMORY) {
      const oldest = delivered.keys().next().value;
      if (oldest !== undefined) delivered.delete(oldest);
    }
    const now = clock.now();
    metrics?.alertsDelivered.inc({ channel: 'supervisor' });
    // backlog alerts reached a supervisor only because one connected: not pipeline latency
    if (live) metrics?.alertLatencyMs.observe({ hop: 'deliver', channel: 'supervisor' }, Math.max(0, now - Date.parse(alert.committedAt)));
    track(
      store.recordDelivery(alert.alertId, 'supervisor', 'supervisor', { ok: true, at: new Date(now) }).then(
        () => {
          stats.deliveriesRecorded++;
        },
        (err: unknown) => {
          stats.recordErrors++;
          delivered.delete(alert.alertId); // try again with the next socket that gets it
          log.error({ code: 'ERR_ALERTS_RECORD_DELIVERY', alertId: alert.alertId, channel: 'supervisor', err: errorMessage(err) }, 'could not record an alert delivery');
        },
      ),
    );
  };

  const closeClient = (client: Client, code: number, reason: string) => {
    if (client.closing) return;
    client.closing = true;
    client.pending.length = 0;
    client.ws.close(code, reason);
  };

  /** Queues `text` on the socket under the backpressure policy; false when not sent. */
  const transmit = (client: Client, text: string, cls: SendClass, onSent?: () => void): boolean => {
    const { ws } = client;
    if (client.closing || ws.readyState !== ws.OPEN) return false;
    const buffered = ws.bufferedAmount;
    if (cls === 'event' && buffered > softLimit) {
      client.droppedSinceNotice++;
      stats.eventsDropped++;
      metrics?.liveEventsDropped.inc({ reason: 'backpressure' });
      return false;
    }
    if (buffered > hardLimit) {
      stats.closedBackpressure++;
      log.warn({ code: 'ERR_SUPERVISOR_BACKPRESSURE', connectionId: client.id, buffered }, 'supervisor socket cannot keep up; closing');
      closeClient(client, CLOSE_TRY_AGAIN_LATER, 'backpressure');
      return false;
    }
    if (client.droppedSinceNotice > 0) {
      const count = client.droppedSinceNotice;
      client.droppedSinceNotice = 0;
      ws.send(JSON.stringify({ v: EVENT_VERSION, type: 'dropped', count } satisfies ControlMessage));
      stats.messagesSent++;
    }
    ws.send(text, onSent ? (err) => (err ? undefined : onSent()) : undefined);
    stats.messagesSent++;
    return true;
  };

  const control = (client: Client, message: ControlMessage) => {
    transmit(client, JSON.stringify(message), 'control');
  };

  /** A live event for one socket: held during the snapshot, filtered by watch, then sent. */
  const deliverLive = (client: Client, event: LiveEvent, text: string) => {
    if (event.type === 'utterance' && !client.watched.has(event.callId)) return;
    const alert = isAlertEvent(event);
    if (client.syncing) {
      if (client.pending.length < maxPending) {
        client.pending.push({ event, text });
      } else if (alert) {
        stats.closedBackpressure++;
        closeClient(client, CLOSE_TRY_AGAIN_LATER, 'backpressure');
      } else {
        client.droppedSinceNotice++;
        stats.eventsDropped++;
        metrics?.liveEventsDropped.inc({ reason: 'backpressure' });
      }
      return;
    }
    const onSent = event.type === 'alert' ? () => recordDelivered(event.alert, true) : undefined;
    transmit(client, text, alert ? 'alert' : 'event', onSent);
  };

  const fanOut = (event: LiveEvent, text: string) => {
    for (const client of clients) deliverLive(client, event, text);
  };

  const snapshot = async (client: Client) => {
    let count = 0;
    try {
      const alerts = await store.listOpenAlerts({ limit: snapshotLimit });
      for (const alert of alerts) {
        const event = alertEvent(alert);
        client.snapshotIds.add(alert.alertId);
        if (transmit(client, JSON.stringify(event), 'alert', () => recordDelivered(event.alert, false))) count++;
      }
    } catch (err) {
      stats.snapshotErrors++;
      log.error({ code: 'ERR_SUPERVISOR_SNAPSHOT', err: errorMessage(err) }, 'could not load open alerts for a supervisor');
      control(client, { v: 1, type: 'error', code: 'ERR_SUPERVISOR_SNAPSHOT', message: 'open alerts are unavailable; live events follow' });
    }
    control(client, { v: 1, type: 'snapshot.done', alerts: count });
    client.syncing = false;
    const held = client.pending.splice(0);
    for (const { event, text } of held) {
      if (event.type === 'alert' && client.snapshotIds.has(event.alert.alertId)) continue;
      deliverLive(client, event, text);
    }
    client.snapshotIds.clear();
  };

  // ── client messages ──
  const strike = (client: Client, code: string, message: string) => {
    client.strikes++;
    stats.badMessages++;
    control(client, { v: 1, type: 'error', code, message });
    if (client.strikes >= maxStrikes) {
      stats.closedBadMessages++;
      log.info({ code: 'ERR_SUPERVISOR_BAD_MESSAGES', connectionId: client.id }, 'closing a supervisor socket after repeated invalid messages');
      closeClient(client, CLOSE_BAD_MESSAGES, 'too many invalid messages');
    }
  };

  const onClientMessage = (client: Client, data: Buffer, isBinary: boolean) => {
    if (client.closing) return;
    const parsed = parseClientMessage(data, isBinary);
    if (!parsed.ok) {
      strike(client, parsed.code, parsed.message);
      return;
    }
    const msg = parsed.message;
    switch (msg.type) {
      case 'ping':
        control(client, msg.id === undefined ? { v: 1, type: 'pong' } : { v: 1, type: 'pong', id: msg.id });
        return;
      case 'watch':
        if (!client.watched.has(msg.callId) && client.watched.size >= maxWatched) {
          control(client, { v: 1, type: 'error', code: 'ERR_SUPERVISOR_WATCH_LIMIT', message: `at most ${maxWatched} calls can be watched at once` });
          return;
        }
        client.watched.add(msg.callId);
        control(client, { v: 1, type: 'watching', callIds: [...client.watched] });
        return;
      case 'unwatch':
        client.watched.delete(msg.callId);
        control(client, { v: 1, type: 'watching', callIds: [...client.watched] });
        return;
    }
  };

  // ── connections ──
  const onConnection = (ws: WebSocket) => {
    const client: Client = {
      id: randomUUID(),
      ws,
      watched: new Set(),
      strikes: 0,
      alive: true,
      closing: false,
      syncing: true,
      pending: [],
      snapshotIds: new Set(),
      droppedSinceNotice: 0,
    };
    clients.add(client);
    stats.connections++;
    stats.sockets = clients.size;
    metrics?.supervisorSockets.set(clients.size);
    ws.on('message', (data, isBinary) => {
      onClientMessage(client, Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data), isBinary);
    });
    ws.on('pong', () => {
      client.alive = true;
    });
    ws.on('error', (err) => {
      // e.g. a frame over maxPayload: ws closes with 1009 and reports it here
      log.info({ code: 'ERR_SUPERVISOR_SOCKET', connectionId: client.id, err: err.message }, 'supervisor socket error');
    });
    ws.on('close', () => {
      client.closing = true;
      clients.delete(client);
      stats.sockets = clients.size;
      metrics?.supervisorSockets.set(clients.size);
    });
    control(client, {
      v: EVENT_VERSION,
      type: 'hello',
      protocol: SUPERVISOR_PROTOCOL,
      connectionId: client.id,
      serverTime: new Date(clock.now()).toISOString(),
      heartbeatMs,
      limits: { maxMessageBytes: maxPayload, maxWatchedCalls: maxWatched },
    });
    track(snapshot(client));
  };

  const handleUpgrade: UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (closed) {
      rejectUpgrade(socket, 503, 'supervisor feed is shutting down');
      return;
    }
    const presented = presentedToken(req, allowQuery);
    if (!presented || !tokensEqual(options.token, presented.token)) {
      stats.rejectedUnauthorized++;
      metrics?.upgradesRejected.inc({ reason: 'supervisor-unauthorized' });
      log.info({ code: 'ERR_SUPERVISOR_UNAUTHORIZED', present: presented !== undefined, source: presented?.source }, 'supervisor upgrade refused');
      rejectUpgrade(socket, 401, 'unauthorized', { 'WWW-Authenticate': 'Bearer' });
      return;
    }
    if (clients.size >= maxSockets) {
      stats.rejectedCapacity++;
      metrics?.upgradesRejected.inc({ reason: 'supervisor-capacity' });
      rejectUpgrade(socket, 503, 'too many supervisor connections');
      return;
    }
    wss.handleUpgrade(req, socket, head, onConnection);
  };

  const heartbeat =
    heartbeatMs > 0
      ? setInterval(() => {
          for (const client of clients) {
            if (!client.alive) {
              stats.heartbeatTimeouts++;
              client.ws.terminate();
              continue;
            }
            client.alive = false;
            client.ws.ping();
          }
        }, heartbeatMs)
      : undefined;
  heartbeat?.unref();

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      closed = true;
      if (heartbeat) clearInterval(heartbeat);
      const sockets = [...clients];
      const allClosed = Promise.all(
        sockets.map((c) => new Promise<void>((resolve) => (c.ws.readyState === c.ws.CLOSED ? resolve() : c.ws.once('close', () => resolve())))),
      );
      for (const c of sockets) closeClient(c, CLOSE_GOING_AWAY, 'server shutting down');
      // a client that does not answer the close handshake is cut after 2 s
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([allClosed, new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
      for (const c of clients) c.ws.terminate();
      subscriber.off('message', onRedisMessage);
      if (ownsSubscriber) {
        await closeRedis(subscriber);
      } else if (subscriber.status === 'ready') {
        await subscriber.unsubscribe(channel).catch(() => undefined);
      }
      wss.close();
      await Promise.allSettled([...inflight]);
    })();
    return closing;
  };

  return {
    handleUpgrade,
    ready: () => subscribed,
    stats: () => ({ ...stats }),
    close,
  };
}
