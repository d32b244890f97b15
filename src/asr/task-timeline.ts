/**
 * Maps a connection's "task time" (ms of audio sent on that connection, which is what the
 * recogniser's begin_time/end_time count) onto the call timeline. Normally the audio sent is
 * contiguous and the map is a single offset (the call time of the first byte sent); a
 * discontinuity (a gap on the call timeline) adds a breakpoint, so times after it still land
 * on the right call position. Sans-I/O.
 */

const EPSILON_MS = 1e-6;
/** Breakpoints kept per connection (one per discontinuity; normally just one). */
const MAX_BREAKPOINTS = 1024;

interface Breakpoint {
  readonly taskMs: number;
  readonly callMs: number;
}

export class TaskTimeline {
  private breakpoints: Breakpoint[] = [];
  private sent = 0;
  private nextCallMs: number | null = null;

  /** Audio sent on this connection so far, ms. */
  get sentMs(): number {
    return this.sent;
  }

  /** Call time of the first byte sent (the task offset), or null before any audio. */
  get offsetMs(): number | null {
    return this.breakpoints[0]?.callMs ?? null;
  }

  /** Records `durationMs` of audio starting at call time `callStartMs` as sent. */
  noteSent(callStartMs: number, durationMs: number): void {
    if (this.nextCallMs === null || Math.abs(callStartMs - this.nextCallMs) > EPSILON_MS) {
      this.breakpoints.push({ taskMs: this.sent, callMs: callStartMs });
      if (this.breakpoints.length > MAX_BREAKPOINTS) this.breakpoints.splice(1, 1);
    }
    this.sent += durationMs;
    this.nextCallMs = callStartMs + durationMs;
  }

  /**
   * Task time → call time; null before any audio was sent. An 'end' edge that falls exactly
   * on a breakpoint belongs to the segment before it (the end of that audio), a 'start' edge
   * to the segment after it.
   */
  toCallMs(taskMs: number, edge: 'start' | 'end'): number | null {
    let bp: Breakpoint | undefined;
    for (let i = this.breakpoints.length - 1; i >= 0; i--) {
      const b = this.breakpoints[i];
      if (!b) continue;
      if (edge === 'start' ? b.taskMs <= taskMs : b.taskMs < taskMs) {
        bp = b;
        break;
      }
    }
    bp ??= this.breakpoints[0];
    if (!bp) return null;
    return bp.callMs + (taskMs - bp.taskMs);
  }
}
