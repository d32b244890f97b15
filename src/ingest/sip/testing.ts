/**
 * Test helpers for the SIP stack: a manual timer scheduler (deterministic time), a raw message
 * builder, and a scriptable call handler that records what it was asked.
 */
import type { CancelTimer, TimerScheduler } from './transactions.js';
import type { InviteOffer, OfferDecision, SipCallHandler, SipEndReason, SiprecInfo } from './types.js';

export class ManualScheduler implements TimerScheduler {
  private time = 0;
  private seq = 0;
  private readonly timers: Array<{ at: number; seq: number; fn: () => void; cancelled: boolean }> = [];

  now(): number {
    return this.time;
  }

  setTimer(delayMs: number, fn: () => void): CancelTimer {
    const t = { at: this.time + Math.max(0, delayMs), seq: this.seq++, fn, cancelled: false };
    this.timers.push(t);
    return () => {
      t.cancelled = true;
    };
  }

  /** Runs every timer due within `ms`, in time order, advancing the clock to each. */
  advance(ms: number): void {
    const target = this.time + ms;
    for (;;) {
      const live = this.timers.filter((t) => !t.cancelled && t.at <= target);
      if (live.length === 0) break;
      live.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = live[0]!;
      next.cancelled = true;
      this.time = next.at;
      next.fn();
    }
    this.time = target;
  }

  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }
}

/** Joins header lines with CRLF and appends Content-Length (unless `contentLength: false`) and the body. */
export function sipText(lines: readonly string[], body = '', opts: { contentLength?: boolean | number } = {}): Buffer {
  const cl = opts.contentLength ?? true;
  const head = [...lines];
  if (cl !== false) head.push(`Content-Length: ${typeof cl === 'number' ? cl : Buffer.byteLength(body)}`);
  return Buffer.from(`${head.join('\r\n')}\r\n\r\n${body}`);
}

export interface RecordingHandler extends SipCallHandler {
  readonly offers: InviteOffer[];
  readonly reoffers: Array<{ dialogId: string; offer: InviteOffer }>;
  readonly ended: Array<{ dialogId: string; reason: SipEndReason }>;
  readonly metadataUpdates: Array<{ dialogId: string; siprec: SiprecInfo }>;
  /** Decides onInvite (default: accept every line on 40000 + 2·index at 127.0.0.1). */
  decide: (offer: InviteOffer) => Promise<OfferDecision>;
  decideReoffer: (offer: InviteOffer) => Promise<OfferDecision>;
}

export function acceptAll(offer: InviteOffer, address = '127.0.0.1', basePort = 40000): OfferDecision {
  return { accept: { address, media: offer.media.map((m) => ({ index: m.index, port: basePort + 2 * m.index })) } };
}

export function recordingHandler(): RecordingHandler {
  const h: RecordingHandler = {
    offers: [],
    reoffers: [],
    ended: [],
    metadataUpdates: [],
    decide: (offer) => Promise.resolve(acceptAll(offer)),
    decideReoffer: (offer) => Promise.resolve(acceptAll(offer)),
    onInvite(offer) {
      h.offers.push(offer);
      return h.decide(offer);
    },
    onReoffer(dialogId, offer) {
      h.reoffers.push({ dialogId, offer });
      return h.decideReoffer(offer);
    },
    onEnd(dialogId, reason) {
      h.ended.push({ dialogId, reason });
    },
    onMetadataUpdate(dialogId, siprec) {
      h.metadataUpdates.push({ dialogId, siprec });
    },
  };
  return h;
}
