/**
 * Raw RTP without SIP (Asterisk ARI ExternalMedia, rtpengine forks): an HTTP API creates a
 * call with one or two RTP legs and returns where to send them (docs/sip.md "Raw RTP").
 *
 *   POST   /v1/rtp-sessions        {streams:[{role, codec}], externalId?, tenantId?, agentId?, …}
 *                                   → 201 {callId, host, port, streams:[{role, host, port, codec, payloadType}]}
 *   GET    /v1/rtp-sessions/:id    → 200 {callId, state, streams:[… + packets, lost]}
 *   DELETE /v1/rtp-sessions/:id    → 200 {callId, endReason:'api'} once the last finals are queued
 *
 * Bearer API_TOKEN on every request (503 when none is configured). A session also ends after
 * RTP_INACTIVITY_TIMEOUT_MS without packets, or on drain.
 */
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { z } from 'zod';
import { errorMessage } from '../core/errors.js';
import { HttpError, parseBody, readJsonBody, requireBearer, sendHttpError, sendJson } from '../http/json.js';
import type { Logger } from '../observability/logger.js';
import type { CallRegistry } from './call-registry.js';
import { RtpCall, type RtpCallDeps, type RtpLeg } from './rtp-call.js';
import type { UdpPortLease, UdpPortPool } from './rtp/udp-port-pool.js';

export const RTP_SESSIONS_PATH = '/v1/rtp-sessions';

const STATIC_PT = { pcmu: 0, pcma: 8 } as const;

const createSchema = z
  .object({
    streams: z
      .array(
        z
          .object({
            role: z.enum(['customer', 'agent']),
            codec: z.enum(['pcmu', 'pcma']),
            /** RTP payload type the sender uses for the audio (default: the static 0 / 8). */
            payloadType: z.number().int().min(0).max(127).optional(),
            /** Payload type of RFC 4733 telephone-events, if the sender sends DTMF (default 101). */
            telephoneEventPayloadType: z.number().int().min(96).max(127).optional(),
          })
          .strict(),
      )
      .min(1)
      .max(2)
      .refine((s) => new Set(s.map((x) => x.role)).size === s.length, 'each role at most once'),
    externalId: z.string().min(1).max(200).optional(),
    tenantId: z.string().min(1).max(100).optional(),
    agentId: z.string().min(1).max(200).optional(),
    queueId: z.string().min(1).max(200).optional(),
    customParameters: z.record(z.string().max(100), z.string().max(1000)).optional(),
  })
  .strict();

export interface RtpSessionsOptions {
  readonly registry: CallRegistry;
  readonly pool: UdpPortPool;
  readonly callDeps: RtpCallDeps;
  readonly logger: Logger;
  /** Address returned to clients (where to send RTP). */
  readonly advertisedHost: string;
  readonly apiToken: string | undefined;
  /** Accepting new sessions (false while draining). */
  readonly accepting: () => boolean;
}

export interface RtpSessions {
  readonly handler: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>;
  readonly calls: ReadonlyMap<string, RtpCall>;
}

export function createRtpSessions(options: RtpSessionsOptions): RtpSessions {
  const calls = new Map<string, RtpCall>();
  const { logger } = options;

  const create = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const body = parseBody(createSchema, await readJsonBody(req));
    if (!options.accepting()) throw new HttpError(503, 'ERR_HTTP_DRAINING', 'server is draining');
    if (!options.registry.hasCapacity()) throw new HttpError(503, 'ERR_INGEST_CAPACITY', 'call capacity reached');
    let leases: UdpPortLease[];
    try {
      leases = await options.pool.leaseMany(body.streams.length);
    } catch (err) {
      logger.error({ code: 'ERR_RTP_PORTS_EXHAUSTED', err: errorMessage(err) }, 'no RTP port for a session');
      throw new HttpError(503, 'ERR_RTP_PORTS_EXHAUSTED', 'no free RTP port');
    }
    const callId = randomUUID();
    const legs: RtpLeg[] = body.streams.map((s, i) => {
      const pt = s.payloadType ?? STATIC_PT[s.codec];
      return {
        track: s.role,
        role: s.role,
        codec: s.codec,
        lease: leases[i] as UdpPortLease,
        payloadTypes: { [pt]: s.codec, 13: 'cn', [s.telephoneEventPayloadType ?? 101]: 'telephone-event' },
      };
    });
    const log = logger.child({ callId });
    const call = new RtpCall(
      { ...options.callDeps, logger: log },
      {
        start: {
          callId,
          source: 'rtp',
          startedAt: Date.now(),
          tenantId: body.tenantId ?? 'default',
          externalIds: body.externalId ? { rtpSession: body.externalId } : {},
          customParameters: body.customParameters ?? {},
          agentId: body.agentId ?? null,
          queueId: body.queueId ?? null,
        },
        legs,
      },
    );
    calls.set(callId, call);
    void call.done.finally(() => calls.delete(callId));
    options.registry.add(call);
    call.begin();
    const streams = legs.map((l, i) => ({
      role: l.role,
      host: options.advertisedHost,
      port: l.lease.port,
      codec: l.codec,
      payloadType: body.streams[i]?.payloadType ?? STATIC_PT[l.codec],
    }));
    sendJson(res, 201, { callId, host: options.advertisedHost, port: streams[0]?.port, streams }, {
      location: `${RTP_SESSIONS_PATH}/${callId}`,
    });
  };

  const find = (id: string): RtpCall => {
    const call = calls.get(id.toLowerCase());
    if (!call) throw new HttpError(404, 'ERR_RTP_SESSION_NOT_FOUND', 'no live RTP session with this id');
    return call;
  };

  const handler = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    try {
      if (!options.apiToken) throw new HttpError(503, 'ERR_HTTP_API_DISABLED', 'API_TOKEN is not configured');
      requireBearer(req, options.apiToken);
      const path = new URL(req.url ?? '/', 'http://x').pathname.replace(/\/+$/, '');
      const rest = path.slice(RTP_SESSIONS_PATH.length);
      if (rest === '') {
        if (req.method !== 'POST') throw new HttpError(405, 'ERR_HTTP_METHOD', 'use POST', { headers: { allow: 'POST' } });
        await create(req, res);
        return;
      }
      const id = /^\/([0-9a-fA-F-]{36})$/.exec(rest)?.[1];
      if (!id) throw new HttpError(404, 'ERR_HTTP_NOT_FOUND', 'not found');
      if (req.method === 'GET') {
        const call = find(id);
        sendJson(res, 200, {
          callId: call.callId,
          state: call.state,
          streams: call.legStats().map((l) => ({
            role: l.role,
            port: l.port,
            packets: l.stats.packets,
            lostPackets: l.stats.lostPackets,
            audioMs: Math.round(l.stats.audioMs),
          })),
        });
        return;
      }
      if (req.method === 'DELETE') {
        const call = find(id);
        await call.end('api');
        sendJson(res, 200, { callId: call.callId, endReason: 'api' });
        return;
      }
      throw new HttpError(405, 'ERR_HTTP_METHOD', 'use GET or DELETE', { headers: { allow: 'GET, DELETE' } });
    } catch (err) {
      if (err instanceof HttpError) {
        sendHttpError(res, err);
        return;
      }
      throw err;
    }
  };

  return { handler, calls };
}
