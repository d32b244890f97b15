/**
 * A call whose audio arrives as RTP: one leased UDP port (RtpReceiver) per leg, each feeding a
 * track of a MediaCall. Used by SIP/SIPREC dialogs and by raw RTP sessions (POST /v1/rtp-sessions).
 *
 *   live ──BYE | DELETE | rtp-inactivity | drain──► ending ──(last finals queued)──► ended
 *
 * Hold and mute must not end a call (telephony-ingest.md §4 item 5): only the explicit signal
 * or `inactivityTimeoutMs` without a packet on ANY leg does, and the reason is recorded.
 * Each leg's first audio packet fixes the leg's offset on the call timeline (its arrival time
 * minus the call start); from there the RTP timestamps drive the timeline (rtp-stream.ts).
 */
import type { G711Codec } from '../codec/g711.js';
import type { Role } from '../core/types.js';
import type { Logger } from '../observability/logger.js';
import type { LiveCall } from './call-registry.js';
import { MediaCall, type MediaCallDeps, type MediaCallStart } from './media-call.js';
import { RtpReceiver } from './rtp/rtp-receiver.js';
import type { SpeakerStream } from './speaker-stream.js';
import { rtpDropReasons, type RtpPayloadKind, type RtpStreamEvent, type RtpStreamStats } from './rtp/rtp-stream.js';
import type { UdpPortLease } from './rtp/udp-port-pool.js';

export type RtpCallState = 'live' | 'ending' | 'ended';

export interface RtpLeg {
  /** Track label, e.g. 'label-1' (SIPREC), 'm0' (plain SIP), 'customer' (RTP session). */
  readonly track: string;
  readonly role: Role;
  readonly codec: G711Codec;
  readonly lease: UdpPortLease;
  /** Payload type map from the SDP (includes CN and telephone-event). */
  readonly payloadTypes?: Readonly<Record<number, RtpPayloadKind>>;
}

export interface RtpCallDeps extends MediaCallDeps {
  readonly inactivityTimeoutMs: number;
  readonly jitterMs: number;
}

export interface RtpCallOptions {
  readonly start: Omit<MediaCallStart, 'tracks'>;
  readonly legs: readonly RtpLeg[];
  /** Told when the call ends for a reason of its own (inactivity, drain), e.g. to send BYE. */
  readonly onSelfEnd?: (reason: string) => void;
}

interface LegState {
  readonly leg: RtpLeg;
  /** The leg's speaker stream, looked up once (the per-packet path does no map lookups). */
  readonly speaker: SpeakerStream | undefined;
  readonly receiver: RtpReceiver;
  offsetMs: number | null;
  reported: Record<string, number>;
  lostReported: number;
}

export class RtpCall implements LiveCall {
  readonly callId: string;
  private stateValue: RtpCallState = 'live';
  private readonly media: MediaCall;
  private readonly legs: LegState[] = [];
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly createdAt: number;
  private readonly donePromise: Promise<void>;
  private resolveDone!: () => void;
  private ending: Promise<void> | null = null;
  private dtmf = 0;
  private ticks = 0;
  /** Audio frames since the last tick (→ callscribe_ingest_frames_total on the tick, not per packet). */
  private framesSinceTick = 0;

  constructor(
    private readonly deps: RtpCallDeps,
    private readonly options: RtpCallOptions,
  ) {
    this.callId = options.start.callId;
    this.now = deps.now ?? Date.now;
    this.createdAt = this.now();
    this.log = deps.logger;
    this.donePromise = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    this.media = new MediaCall(deps, {
      ...options.start,
      tracks: options.legs.map(({ track, role, codec }) => ({ track, role, codec })),
    });
  }

  get state(): RtpCallState {
    return this.stateValue;
  }

  get done(): Promise<void> {
    return this.donePromise;
  }

  /** Starts the recogniser streams and the receivers. */
  begin(): void {
    this.media.begin();
    for (const leg of this.options.legs) {
      const state: LegState = {
        leg,
        speaker: this.media.stream(leg.track),
        offsetMs: null,
        reported: {},
        lostReported: 0,
        receiver: new RtpReceiver({
          lease: leg.lease,
          windowMs: this.deps.jitterMs,
          ...(leg.payloadTypes ? { payloadTypes: leg.payloadTypes } : {}),
          now: this.now,
          onEvent: (event) => this.onEvent(state, event),
          onError: () => this.deps.metrics.framesDropped.inc({ source: this.options.start.source, reason: 'ERR_RTP_CALLBACK' }),
        }),
      };
      this.legs.push(state);
    }
    this.log.info(
      { legs: this.options.legs.map((l) => ({ track: l.track, role: l.role, codec: l.codec, port: l.lease.port })) },
      'rtp call started',
    );
  }

  /** The sender of a leg moved (re-INVITE after a transfer): latch to the next valid source. */
  relatch(track: string): void {
    const leg = this.legs.find((l) => l.leg.track === track);
    if (!leg) return;
    leg.receiver.stream.relatch();
    this.log.info({ track }, 'rtp leg re-latching after a media change');
  }

  /** Ports the legs listen on, in leg order. */
  get ports(): number[] {
    return this.options.legs.map((l) => l.lease.port);
  }

  private onEvent(state: LegState, event: RtpStreamEvent): void {
    if (this.stateValue === 'ended') return; // 'ending' still takes the frames flushed on close
    switch (event.kind) {
      case 'audio': {
        state.offsetMs ??= Math.max(0, event.arrivalMs - this.options.start.startedAt);
        this.framesSinceTick++;
        state.speaker?.pushFrame(state.offsetMs + event.timelineMs, event.payload, event.codec, event.arrivalMs);
        return;
      }
      case 'dtmf':
        // digits are PII-adjacent (card numbers typed on the keypad): counted, never logged
        this.dtmf++;
        this.deps.metrics.ingestEvents.inc({ source: this.options.start.source, event: 'dtmf' });
        return;
      case 'ssrc-change':
        this.deps.metrics.ingestEvents.inc({ source: this.options.start.source, event: 'ssrc-change' });
        return;
    }
  }

  tick(now: number): void {
    if (this.stateValue !== 'live') return;
    const sync = ++this.ticks % 8 === 0;
    this.flushFrameCount();
    this.media.tick(now, sync);
    if (sync) this.syncMetrics();
    let last = this.createdAt;
    for (const l of this.legs) last = Math.max(last, l.receiver.lastPacketAt ?? 0);
    if (now - last >= this.deps.inactivityTimeoutMs) {
      this.log.warn({ code: 'ERR_RTP_INACTIVITY', idleMs: now - last }, 'no RTP on any leg, ending the call');
      void this.end('rtp-inactivity');
      this.options.onSelfEnd?.('rtp-inactivity');
    }
  }

  /** Ends the call (BYE, DELETE, inactivity, drain). Idempotent. */
  end(reason: string): Promise<void> {
    this.ending ??= this.doEnd(reason);
    return this.ending;
  }

  async drain(): Promise<void> {
    if (this.stateValue === 'live') this.options.onSelfEnd?.('drain');
    await this.end('drain');
  }

  private async doEnd(reason: string): Promise<void> {
    this.stateValue = 'ending';
    try {
      // closing a receiver flushes its held frames into the speaker streams before they finish
      await Promise.all(this.legs.map((l) => l.receiver.close()));
      this.flushFrameCount();
      this.syncMetrics();
      await this.media.finish(reason, this.stats());
    } finally {
      this.stateValue = 'ended';
      this.resolveDone();
    }
  }

  /** Non-PII counters per leg for the call-end record. */
  stats(): Record<string, number> {
    const out: Record<string, number> = { dtmf: this.dtmf };
    for (const l of this.legs) {
      const s = l.receiver.stats();
      const p = `${l.leg.track}.rtp`;
      out[`${p}.packets`] = s.packets;
      out[`${p}.audioMs`] = Math.round(s.audioMs);
      out[`${p}.lostPackets`] = s.lostPackets;
      out[`${p}.lostMs`] = Math.round(s.lostMs);
      out[`${p}.reordered`] = s.reordered;
      out[`${p}.ssrcChanges`] = s.ssrcChanges;
      for (const [code, n] of Object.entries(rtpDropReasons(s))) if (n > 0) out[`${p}.dropped.${code}`] = n;
    }
    return out;
  }

  /** Per-leg RTP counters (tests, the session API). */
  legStats(): Array<{ track: string; role: Role; port: number; stats: RtpStreamStats }> {
    return this.legs.map((l) => ({ track: l.leg.track, role: l.leg.role, port: l.leg.lease.port, stats: l.receiver.stats() }));
  }

  private flushFrameCount(): void {
    if (this.framesSinceTick === 0) return;
    this.deps.metrics.framesIn.inc({ source: this.options.start.source }, this.framesSinceTick);
    this.framesSinceTick = 0;
  }

  /** RTP drops and losses → Prometheus as deltas (on the tick, never per packet). */
  private syncMetrics(): void {
    const source = this.options.start.source;
    for (const l of this.legs) {
      const s = l.receiver.stats();
      for (const [reason, n] of Object.entries(rtpDropReasons(s))) {
        const before = l.reported[reason] ?? 0;
        if (n > before) this.deps.metrics.framesDropped.inc({ source, reason }, n - before);
        l.reported[reason] = n;
      }
      if (s.lostPackets > l.lostReported) {
        this.deps.metrics.rtpLostPackets.inc(s.lostPackets - l.lostReported);
        l.lostReported = s.lostPackets;
      }
    }
  }
}
