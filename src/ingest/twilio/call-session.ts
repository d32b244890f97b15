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
import type { RoutingDecision, RoutingInput } from '../../asr/routing/policy.js';
import { storedRouting } from '../../asr/routing/policy.js';
import type { AsrStreamRunner, AsrStreamStatusUpdate } from '../../asr/session-runner.js';
import type { G711Codec } from '../../codec/g711.js';
import { errorMessage } from '../../core/errors.js';
import { isRole, type Role, type Utterance } from '../../core/types.js';
import type { RoleRouting } from '../../queue/jobs.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type { Producer } from '../../queue/producer.js';
import type { LiveCall } from '../call-registry.js';
import { SpeakerStream } from '../speaker-stream.js';
import { TwilioCloseCode, TwilioStreamParser, type TwilioStartEvent } from './parser.js';

export type CallState = 'awaiting-start' | 'live' | 'ending' | 'ended';

/** The narrow socket interface the session needs (easy to fake). */
export interface CallSocket {
  close(code: number, reason: string): void;
}

export interface RunnerRequest {
  readonly callId: string;
  readonly role: Role;
  readonly track: string;
  /** The routing decision for this role: model, fallback, language, hotwords. */
  readonly route: RoutingDecision;
  onUtterance(u: Utterance): void;
  onStatus(s: AsrStreamStatusUpdate): void;
}

export interface TwilioCallDeps {
  readonly socket: CallSocket;
  readonly producer: Producer;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly createRunner: (request: RunnerRequest) => AsrStreamRunner;
  /** Chooses the model (and fallback, language, hotwords) for one role of a call. */
  readonly route: (input: Omit<RoutingInput, 'envDefaultModel' | 'envVocabularyId'>) => RoutingDecision;
  readonly keepaliveAfterMs: number;
  readonly idleTimeoutMs: number;
  readonly now?: () => number;
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
  private readonly streams = new Map<string, SpeakerStream>();
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
        const stream = this.streams.get(event.track);
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
      for (const s of this.streams.values()) s.tick(now, syncMetrics);
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
    const tenantId = params['tenant'] ?? params['tenantId'] ?? 'default';
    const models: Partial<Record<Role, string>> = {};
    const routing: Partial<Record<Role, RoleRouting>> = {};
    for (const [track, role] of Object.entries(roles)) {
      const route = this.deps.route({ source: SOURCE, role, tenantId, customParameters: params });
      if (route.rejected.length > 0) {
        this.log.warn({ code: 'ERR_ROUTING_PARAMETER', role, rejected: route.rejected }, 'call parameters ignored by routing');
      }
      models[role] = route.model;
      routing[role] = storedRouting(route);
      const codec: G711Codec = event.codec;
      let statusSeq = 0;
      const runner = this.deps.createRunner({
        callId,
        role,
        track,
        route,
        onUtterance: (u) => {
          void this.deps.producer.enqueueUtterance({ callId, callStartedAt: this.startedAt, utterance: u });
        },
        onStatus: (s) => {
          void this.deps.producer.enqueueStreamStatus({
            callId,
            callStartedAt: this.startedAt,
            role,
            track,
            model: s.model,
            status: s.status,
            errorCode: s.errorCode,
            errorMessage: s.errorMessage,
            reconnects: s.reconnects,
            utterances: s.utterances,
            at: this.now(),
            seq: ++statusSeq,
          });
        },
      });
      this.streams.set(
        track,
        new SpeakerStream({
          role,
          track,
          codec,
          runner,
          metrics: this.deps.metrics,
          source: SOURCE,
          keepaliveAfterMs: this.deps.keepaliveAfterMs,
          now: this.now,
        }),
      );
    }
    this.deps.metrics.activeCalls.inc();
    this.deps.metrics.activeStreams.inc(this.streams.size);
    void this.deps.producer.enqueueCallStart({
      callId,
      source: SOURCE,
      startedAt: this.startedAt,
      tenantId,
      externalIds: {
        callSid: start.callSid,
        streamSid: start.streamSid,
        ...(start.accountSid ? { accountSid: start.accountSid } : {}),
      },
      customParameters: params,
      roles,
      models,
      routing,
    });
    this.log.info({ tracks: start.tracks, roles, models }, 'call started');
    for (const s of this.streams.values()) s.start();
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
    const callId = this.callIdValue;
    if (!callId) return;
    try {
      await Promise.all([...this.streams.values()].map((s) => s.finish()));
    } catch (err) {
      this.log.error({ code: 'ERR_INGEST_FINISH', err: errorMessage(err) }, 'finishing speaker streams failed');
    }
    const endedAt = this.now();
    const stats: Record<string, number> = { dtmf: this.dtmfCount, marks: this.marks };
    for (const [code, n] of Object.entries(this.framesDropped)) stats[`dropped.${code}`] = n;
    for (const s of this.streams.values()) Object.assign(stats, s.stats());
    const failed = [...this.streams.values()].every((s) => s.runner.status === 'failed');
    const durationMs = Math.max(0, ...[...this.streams.values()].map((s) => Math.round(s.positionMs)));
    this.deps.metrics.activeCalls.dec();
    this.deps.metrics.activeStreams.dec(this.streams.size);
    this.deps.metrics.callsTotal.inc({ source: SOURCE, outcome: failed ? 'failed' : 'ended' });
    await this.deps.producer.enqueueCallEnd({
      callId,
      callStartedAt: this.startedAt,
      endedAt,
      status: failed && this.streams.size > 0 ? 'failed' : 'ended',
      endReason: this.endReason,
      durationMs,
      stats,
    });
    this.log.info({ reason: this.endReason, durationMs }, 'call ended');
  }
}
