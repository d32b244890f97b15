/**
 * RFC 4733 telephone-events (DTMF over RTP), sans-I/O.
 *
 * Payload (§2.3), 4 bytes:  event (8) | E end (1) | R (1) | volume (6, −dBm0) | duration (16)
 * Events 0–9 are the digits, 10 = *, 11 = #, 12–15 = A–D (§3.2); 16 = flash and the RFC 4734
 * tones are not digits. All packets of one event carry the event's start timestamp (§2.5.1.1);
 * the duration (timestamp units, 8 per ms here) grows in each update, and the final packet, with
 * E set, is sent three times (§2.5.1.4) — with new sequence numbers per the RFC, with the same
 * one in SIPp's captures (the jitter buffer drops those as duplicates).
 *
 * `DtmfTracker` reports each event exactly once: on its first end packet, or — if every end
 * packet was lost — when a packet with another timestamp arrives or on flush(). Late copies of
 * recently reported events are ignored. Not handled: events longer than 8.2 s, which §2.5.1.3
 * splits into segments with new timestamps (each segment is reported as its own digit).
 */

/** Digit by event code (index 0–15). */
export const DTMF_DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D'] as const;
export type DtmfDigit = (typeof DTMF_DIGITS)[number];

export interface TelephoneEvent {
  readonly event: number;
  readonly end: boolean;
  /** 0–63, the power level in −dBm0. */
  readonly volume: number;
  /** Timestamp units (samples at 8 kHz) since the event started. */
  readonly duration: number;
}

/** The first event block of a telephone-event payload, or null when shorter than 4 bytes. */
export function parseTelephoneEvent(payload: Uint8Array): TelephoneEvent | null {
  if (payload.length < 4) return null;
  const b1 = payload[1]!;
  return {
    event: payload[0]!,
    end: (b1 & 0x80) !== 0,
    volume: b1 & 0x3f,
    duration: (payload[2]! << 8) | payload[3]!,
  };
}

/** Builds a 4-byte telephone-event payload (simulator and tests). */
export function serializeTelephoneEvent(ev: TelephoneEvent): Uint8Array {
  return Uint8Array.from([ev.event & 0xff, (ev.end ? 0x80 : 0) | (ev.volume & 0x3f), (ev.duration >> 8) & 0xff, ev.duration & 0xff]);
}

export function eventToDigit(event: number): DtmfDigit | null {
  return DTMF_DIGITS[event] ?? null;
}

export function digitToEvent(digit: DtmfDigit): number {
  return DTMF_DIGITS.indexOf(digit);
}

export interface DtmfDetection {
  readonly digit: DtmfDigit;
  /** Where the event started on the call timeline, ms. */
  readonly timelineMs: number;
  readonly durationMs: number;
  readonly volume: number;
  /** False when no end packet was seen (reported on a new event or on flush). */
  readonly ended: boolean;
}

export interface DtmfTrackerStats {
  packets: number;
  /** Payloads shorter than 4 bytes. */
  invalid: number;
  /** Packets for events that are not digits (flash, RFC 4734 tones). */
  nonDigit: number;
  /** Digits reported. */
  reported: number;
  /** Digits reported without an end packet. */
  reportedWithoutEnd: number;
  /** Packets for an event already reported (end retransmissions, late copies). */
  repeats: number;
}

const EMPTY: readonly DtmfDetection[] = Object.freeze([]);
const SAMPLES_PER_MS = 8;
const RECENT = 8;

export class DtmfTracker {
  #active = false;
  #timestamp = 0;
  #event = 0;
  #timelineMs = 0;
  #duration = 0;
  #volume = 0;
  #reported = false;
  /** Timestamps of recently reported events (ring). */
  readonly #recent = new Float64Array(RECENT).fill(Number.NaN);
  #recentNext = 0;
  readonly #stats: DtmfTrackerStats = { packets: 0, invalid: 0, nonDigit: 0, reported: 0, reportedWithoutEnd: 0, repeats: 0 };

  /**
   * One telephone-event packet, in sequence order. `timestamp`: its RTP timestamp (extended or
   * raw, consistently); `timelineMs`: that timestamp's position on the call timeline.
   * Returns the digits completed (usually none).
   */
  push(timestamp: number, timelineMs: number, payload: Uint8Array): readonly DtmfDetection[] {
    const stats = this.#stats;
    stats.packets++;
    const ev = parseTelephoneEvent(payload);
    if (ev === null) {
      stats.invalid++;
      return EMPTY;
    }
    if (eventToDigit(ev.event) === null) {
      stats.nonDigit++;
      return EMPTY;
    }
    let out: DtmfDetection[] | null = null;
    if (!this.#active || timestamp !== this.#timestamp || ev.event !== this.#event) {
      if (this.#isRecent(timestamp)) {
        stats.repeats++;
        return EMPTY;
      }
      const pending = this.#takePending();
      if (pending !== null) out = [pending];
      this.#active = true;
      this.#timestamp = timestamp;
      this.#event = ev.event;
      this.#timelineMs = timelineMs;
      this.#duration = 0;
      this.#reported = false;
    } else if (this.#reported) {
      stats.repeats++;
      return EMPTY;
    }
    if (ev.duration > this.#duration) this.#duration = ev.duration;
    this.#volume = ev.volume;
    if (ev.end) {
      const done = this.#report(true);
      if (out === null) return [done];
      out.push(done);
    }
    return out ?? EMPTY;
  }

  /** Reports the event in progress (its end packets never came), if any. */
  flush(): readonly DtmfDetection[] {
    const pending = this.#takePending();
    return pending === null ? EMPTY : [pending];
  }

  /** Forgets all state (new SSRC: timestamps restart); counters are kept. Call flush() first. */
  reset(): void {
    this.#active = false;
    this.#reported = false;
    this.#recent.fill(Number.NaN);
  }

  stats(): DtmfTrackerStats {
    return { ...this.#stats };
  }

  #takePending(): DtmfDetection | null {
    if (!this.#active || this.#reported) return null;
    return this.#report(false);
  }

  #report(ended: boolean): DtmfDetection {
    this.#reported = true;
    this.#stats.reported++;
    if (!ended) this.#stats.reportedWithoutEnd++;
    this.#recent[this.#recentNext] = this.#timestamp;
    this.#recentNext = (this.#recentNext + 1) % RECENT;
    return {
      digit: DTMF_DIGITS[this.#event]!,
      timelineMs: this.#timelineMs,
      durationMs: this.#duration / SAMPLES_PER_MS,
      volume: this.#volume,
      ended,
    };
  }

  #isRecent(timestamp: number): boolean {
    const r = this.#recent;
    for (let i = 0; i < RECENT; i++) if (r[i] === timestamp) return true;
    return false;
  }
}
