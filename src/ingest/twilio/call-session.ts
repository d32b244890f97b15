/**
 * One Twilio Media Stream = one call on this process (Twilio opens one WebSocket per stream).
 *
 *   awaiting-start ──start──► live ──stop | socket close | idle | drain──► ending ──► ended
 *        │                                                                  ▲
 *        └──────────── socket close / fatal frame (no call recorded) ───────┘
 *
 * The session owns one SpeakerStream per track, maps tracks to roles (customParameters
 * `inboundRole` / `outboundRole`, defaults inbound → customer, outbound → agent), and puts
 * call-start, utterance, stream-status and call-end jobs on the queue. It never throws into
 * the socket layer: every bad frame is counted and dropped, or closes the socket with a code.
 */
import { randomUUID } from 'node:crypto';
import { isRole, type Role } from '../../core/types.js';
import type { Logger } from '../../observability/logger.js';
import type { LiveCall } from '../call-registry.js';
import { MediaCall, type MediaCallDeps } from '../media-call.js';
import { TwilioCloseCode, TwilioStreamParser, type TwilioStartEvent } from './parser.js';

export type { RunnerRequest } from '../media-call.js';

export type CallState = 'awaiting-start' | 'live' | 'ending' | 'ended';

/** The narrow socket interface the session needs (easy to fake). */
export interface CallSocket {
  close(code: number, reason: string): void;
}

export interface TwilioCallDeps extends MediaCallDeps {
  readonly socket: CallSocket;
  readonly idleTimeoutMs: number;
}

const SOURCE = 'twilio';
const DEFAULT_ROLES: Readonly<Record<string, Role>> = { inbound: 'customer', outbound: 'agent' };

/** Resolves the track → role mapping from customParameters, refusing conflicting mappings. */
export function resolveRoles(
  tracks: readonly string[],
  params: Readonly<Record<string, string>>,
): { roles: Record<string, Role>; conflict: boolean } {
  const roles: Record<string, Role> = {};
  for (const track of tracks) {
    const requested = params[`${track}Role`] ?? params[`role_${track}`];
    const fallback = DEFAULT_ROLES[track] ?? 'customer';
    roles[track] = isRole(requested) ? requested : fallback;
  }
  const used = Object.values(roles);
  if (new Set(used).size !== used.length) {
    const defaults: Record<string, Role> = {};
    for (const track of tracks) defaults[track] = DEFAULT_ROLES[track] ?? 'customer';
    return { roles: defaults, conflict: true };
  }
  return { roles, conflict: false };
}

export class TwilioCallSession implements LiveCall {
  private stateValue: CallState = 'awaiting-start';
  private readonly parser = new TwilioStreamParser();
  private call: MediaCall | null = null;
  private readonly now: () => number;
  private log: Logger;
  private callIdValue: string | null = null;
  private startedAt = 0;
  private lastMessageAt: number;
  private endReason = 'unknown';
  private framesDropped: Record<string, number> = {};
  private dtmfCount = 0;
  private marks = 0;
  private readonly donePromise: Promise<void>;
  private resolveDone!: () => void;
  private endingPromise: Promise<void> | null = null;
  /** Pre-bound label set, fed from a plain counter on each tick (the media path runs ~50×/s per track). */
  private readonly framesInCounter;
  private framesSinceTick = 0;
  private ticks = 0;

  constructor(private readonly deps: TwilioCallDeps) {
    this.now = deps.now ?? Date.now;
    this.lastMessageAt = this.now();
    this.log = deps.logger;
    this.framesInCounter = deps.metrics.framesIn.labels({ source: SOURCE });
    this.donePromise = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
  }

  get state(): CallState {
    return this.stateValue;
  }

  get callId(): string | null {
    return this.callIdValue;
  }

  get done(): Promise<void> {
    return this.donePromise;
  }

  /** A WebSocket message from Twilio. */
  onMessage(data: Buffer, isBinary: boolean): void {
    const receivedAt = this.now();
    this.lastMessageAt = receivedAt;
    if (this.stateValue === 'ending' || this.stateValue === 'ended') return;
    const result = this.parser.push(data, isBinary);
    switch (result.kind) {
      case 'drop':
        this.drop(result.code, result.detail);
        return;
      case 'fatal':
        this.deps.metrics.framesDropped.inc({ source: SOURCE, reason: result.code });
        this.log.warn({ code: result.code, closeCode: result.closeCode }, 'twilio stream protocol violation, closing');
        this.deps.socket.close(result.closeCode, result.reason);
        void this.end(`protocol-error:${result.code}`);
        return;
      case 'event':
        break;
    }
    const event = result.event;
    switch (event.type) {
      case 'media': {
        this.framesSinceTick++;
        const stream = this.call?.stream(event.track);
        if (!stream) {
          this.drop('ERR_INGEST_UNEXPECTED_TRACK');
          return;
        }
        stream.pushFrame(event.timestampMs, event.payload, event.codec, receivedAt);
        return;
      }
      case 'connected':
        this.deps.metrics.ingestEvents.inc({ source: SOURCE, event: 'connected' });
        return;
      case 'start':
        this.deps.metrics.ingestEvents.inc({ source: SOURCE, event: 'start' });
        this.begin(event, receivedAt);
        return;
      case 'dtmf':
        this.dtmfCount++;
        this.deps.metrics.ingestEvents.inc({ source: SOURCE, event: 'dtmf' });
        return;
      case 'mark':
        this.marks++;
        this.deps.metrics.ingestEvents.inc({ source: SOURCE, event: 'mark' });
        return;
      case 'stop':
        this.deps.metrics.ingestEvents.inc({ source: SOURCE, event: 'stop' });
        void this.end('stop');
        return;
    }
  }

  /** The socket closed (with or without a prior `stop`). */
  onClose(): void {
    if (this.stateValue === 'awaiting-start') {
      this.stateValue = 'ended';
      this.resolveDone();
      return;
    }
    void this.end('socket-closed');
  }

  tick(now: number): void {
    this.flushFrameCount();
    if (this.stateValue === 'live' || this.stateValue === 'awaiting-start') {
      if (now - this.lastMessageAt >= this.deps.idleTimeoutMs) {
        this.log.warn({ code: 'ERR_INGEST_IDLE_TIMEOUT' }, 'twilio stream idle, closing');
        this.deps.socket.close(TwilioCloseCode.IDLE_TIMEOUT, 'idle timeout');
        if (this.stateValue === 'awaiting-start') this.onClose();
        else void this.end('idle-timeout');
        return;
      }
    }
    if (this.stateValue === 'live') {
      // timeline counters → Prometheus every 8th tick (~2 s); keep-alive checks every tick
      const syncMetrics = ++this.ticks % 8 === 0;
      this.call?.tick(now, syncMetrics);
    }
  }

  private flushFrameCount(): void {
    if (this.framesSinceTick > 0) {
      this.framesInCounter.inc(this.framesSinceTick);
      this.framesSinceTick = 0;
    }
  }

  async drain(): Promise<void> {
    if (this.stateValue === 'ended') return;
    this.deps.socket.close(TwilioCloseCode.GOING_AWAY, 'server draining');
    if (this.stateValue === 'awaiting-start') {
      this.onClose();
      return;
    }
    await this.end('drain');
  }

  private drop(code: string, detail?: string): void {
    this.framesDropped[code] = (this.framesDropped[code] ?? 0) + 1;
    if (code === 'ERR_INGEST_UNKNOWN_EVENT') {
      // one label value for all unknown names: a peer must not be able to grow the label set
      this.deps.metrics.ingestEvents.inc({ source: SOURCE, event: 'unknown' });
      this.log.debug({ code, event: detail }, 'unknown twilio event ignored');
    }
    this.deps.metrics.framesDropped.inc({ source: SOURCE, reason: code });
  }

  private begin(event: TwilioStartEvent, receivedAt: number): void {
    const start = event;
    const callId = randomUUID();
    this.callIdValue = callId;
    this.startedAt = receivedAt;
    this.stateValue = 'live';
    this.log = this.deps.logger.child({ callId });
    const params = start.customParameters;
    const { roles, conflict } = resolveRoles(start.tracks, params);
    if (conflict) {
      this.log.warn({ code: 'ERR_INGEST_ROLE_CONFLICT' }, 'customParameters map two tracks to one role; using defaults');
    }
    this.call = new MediaCall(
      { ...this.deps, logger: this.log, now: this.now },
      {
        callId,
        source: SOURCE,
        startedAt: this.startedAt,
        tenantId: params['tenant'] ?? params['tenantId'] ?? 'default',
        externalIds: {
          callSid: start.callSid,
          streamSid: start.streamSid,
          ...(start.accountSid ? { accountSid: start.accountSid } : {}),
        },
        customParameters: params,
        tracks: Object.entries(roles).map(([track, role]) => ({ track, role, codec: event.codec })),
        agentId: params['agentId'] ?? params['agent'] ?? null,
        queueId: params['queueId'] ?? params['queue'] ?? null,
      },
    );
    const { models } = this.call.begin();
    this.log.info({ tracks: start.tracks, roles, models }, 'call started');
  }

  private end(reason: string): Promise<void> {
    if (this.endingPromise) return this.endingPromise;
    if (this.stateValue === 'awaiting-start') {
      this.stateValue = 'ended';
      this.resolveDone();
      this.endingPromise = Promise.resolve();
      return this.endingPromise;
    }
    this.endReason = reason;
    this.stateValue = 'ending';
    this.endingPromise = this.finishStreams().finally(() => {
      // after `stop` Twilio usually closes first; otherwise end the stream politely
      this.deps.socket.close(TwilioCloseCode.NORMAL, 'stream ended');
      this.stateValue = 'ended';
      this.resolveDone();
    });
    return this.endingPromise;
  }

  private async finishStreams(): Promise<void> {
    this.flushFrameCount();
    if (!this.call) return;
    const stats: Record<string, number> = { dtmf: this.dtmfCount, marks: this.marks };
    for (const [code, n] of Object.entries(this.framesDropped)) stats[`dropped.${code}`] = n;
    await this.call.finish(this.endReason, stats);
  }
}
