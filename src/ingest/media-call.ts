/**
 * The source-neutral half of a live call: tracks → roles → routing → one SpeakerStream and one
 * AsrStreamRunner per track → call-start / utterance / stream-status / call-end jobs.
 *
 * Every ingest source (Twilio Media Streams, SIP/SIPREC + RTP, raw RTP sessions) owns its own
 * protocol state machine and hands audio here as (track, timeline ms, G.711 payload). This
 * class never touches a socket: the source decides when the call starts and ends.
 */
import type { RoutingDecision, RoutingInput } from '../asr/routing/policy.js';
import { storedRouting } from '../asr/routing/policy.js';
import type { AsrStreamRunner, AsrStreamStatusUpdate } from '../asr/session-runner.js';
import type { G711Codec } from '../codec/g711.js';
import { errorMessage } from '../core/errors.js';
import type { CallSource, PcmChunk, Role, Utterance } from '../core/types.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { CallStartJob, RoleRouting } from '../queue/jobs.js';
import type { Producer } from '../queue/producer.js';
import { SpeakerStream } from './speaker-stream.js';

export interface RunnerRequest {
  readonly callId: string;
  readonly role: Role;
  readonly track: string;
  /** The routing decision for this role: model, fallback, language, hotwords. */
  readonly route: RoutingDecision;
  onUtterance(u: Utterance): void;
  onStatus(s: AsrStreamStatusUpdate): void;
}

/** What every ingest source needs to run the ASR half of a call (built once in service.ts). */
export interface MediaCallDeps {
  readonly producer: Producer;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly createRunner: (request: RunnerRequest) => AsrStreamRunner;
  /** Chooses the model (and fallback, language, hotwords) for one role of a call. */
  readonly route: (input: Omit<RoutingInput, 'envDefaultModel' | 'envVocabularyId'>) => RoutingDecision;
  readonly keepaliveAfterMs: number;
  readonly now?: () => number;
  /** Sees the PCM each track hands its recogniser (a test seam: `startService({ audioTap })`). */
  readonly audioTap?: ((callId: string, role: Role, chunk: PcmChunk) => void) | undefined;
}

export interface MediaTrack {
  /** Track / stream label, e.g. 'inbound', 'label-1', 'rtp'. */
  readonly track: string;
  readonly role: Role;
  readonly codec: G711Codec;
}

/** What a source knows when a call starts: the call-start job's fields minus what routing decides. */
export interface MediaCallStart
  extends Pick<CallStartJob, 'callId' | 'source' | 'startedAt' | 'tenantId' | 'externalIds' | 'customParameters' | 'metadata'> {
  readonly tracks: readonly MediaTrack[];
  /** From the telephony side, if given (null: unknown). */
  readonly agentId?: string | null;
  readonly queueId?: string | null;
}

export class MediaCall {
  readonly callId: string;
  readonly source: CallSource;
  readonly startedAt: number;
  private readonly streams = new Map<string, SpeakerStream>();
  private readonly now: () => number;
  private readonly log: Logger;
  private finished: Promise<void> | null = null;

  constructor(
    private readonly deps: MediaCallDeps,
    private readonly start: MediaCallStart,
  ) {
    this.callId = start.callId;
    this.source = start.source;
    this.startedAt = start.startedAt;
    this.now = deps.now ?? Date.now;
    this.log = deps.logger;
  }

  /** Routes every track, enqueues call-start and starts the recogniser streams. Call once. */
  begin(): { models: Partial<Record<Role, string>>; roles: Record<string, Role> } {
    const { callId, source, tenantId, customParameters: params } = this.start;
    const models: Partial<Record<Role, string>> = {};
    const routing: Partial<Record<Role, RoleRouting>> = {};
    const roles: Record<string, Role> = {};
    for (const { track, role, codec } of this.start.tracks) {
      roles[track] = role;
      const route = this.deps.route({ source, role, tenantId, customParameters: params });
      if (route.rejected.length > 0) {
        this.log.warn({ code: 'ERR_ROUTING_PARAMETER', role, rejected: route.rejected }, 'call parameters ignored by routing');
      }
      models[role] = route.model;
      routing[role] = storedRouting(route);
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
          source,
          keepaliveAfterMs: this.deps.keepaliveAfterMs,
          now: this.now,
          tap: this.deps.audioTap ? (chunk) => this.deps.audioTap?.(callId, role, chunk) : undefined,
        }),
      );
    }
    this.deps.metrics.activeCalls.inc();
    this.deps.metrics.activeStreams.inc(this.streams.size);
    void this.deps.producer.enqueueCallStart({
      callId,
      source,
      startedAt: this.startedAt,
      tenantId,
      externalIds: this.start.externalIds,
      customParameters: params,
      roles,
      models,
      routing,
      ...(this.start.agentId ? { agentId: this.start.agentId } : {}),
      ...(this.start.queueId ? { queueId: this.start.queueId } : {}),
      ...(this.start.metadata ? { metadata: this.start.metadata } : {}),
    });
    for (const s of this.streams.values()) s.start();
    return { models, roles };
  }

  stream(track: string): SpeakerStream | undefined {
    return this.streams.get(track);
  }

  get trackCount(): number {
    return this.streams.size;
  }

  /** Keep-alive silence and metric sync for every track. */
  tick(now: number, syncMetrics: boolean): void {
    for (const s of this.streams.values()) s.tick(now, syncMetrics);
  }

  /**
   * Finishes every recogniser stream (waits for the last finals) and enqueues call-end.
   * Idempotent: a second call returns the first promise.
   */
  finish(endReason: string, extraStats: Readonly<Record<string, number>> = {}): Promise<void> {
    this.finished ??= this.doFinish(endReason, extraStats);
    return this.finished;
  }

  private async doFinish(endReason: string, extraStats: Readonly<Record<string, number>>): Promise<void> {
    const streams = [...this.streams.values()];
    try {
      await Promise.all(streams.map((s) => s.finish()));
    } catch (err) {
      this.log.error({ code: 'ERR_INGEST_FINISH', err: errorMessage(err) }, 'finishing speaker streams failed');
    }
    const stats: Record<string, number> = { ...extraStats };
    for (const s of streams) Object.assign(stats, s.stats());
    const failed = streams.length > 0 && streams.every((s) => s.runner.status === 'failed');
    const durationMs = Math.max(0, ...streams.map((s) => Math.round(s.positionMs)));
    this.deps.metrics.activeCalls.dec();
    this.deps.metrics.activeStreams.dec(streams.length);
    this.deps.metrics.callsTotal.inc({ source: this.source, outcome: failed ? 'failed' : 'ended' });
    await this.deps.producer.enqueueCallEnd({
      callId: this.callId,
      callStartedAt: this.startedAt,
      endedAt: this.now(),
      status: failed ? 'failed' : 'ended',
      endReason,
      durationMs,
      stats,
    });
    this.log.info({ reason: endReason, durationMs }, 'call ended');
  }
}
