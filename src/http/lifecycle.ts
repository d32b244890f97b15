/**
 * The service state machine (AudioHook's service-lifecycle plugin):
 * starting → running → draining → stopped. Readiness is false outside `running`.
 * Signal wiring lives in the composition root (src/bin/), not here.
 */
export type ServiceState = 'starting' | 'running' | 'draining' | 'stopped';

const NEXT: Readonly<Record<ServiceState, readonly ServiceState[]>> = {
  starting: ['running', 'draining', 'stopped'],
  running: ['draining', 'stopped'],
  draining: ['stopped'],
  stopped: [],
};

export class Lifecycle {
  private current: ServiceState = 'starting';
  private readonly listeners = new Set<(s: ServiceState) => void>();

  get state(): ServiceState {
    return this.current;
  }

  get accepting(): boolean {
    return this.current === 'running';
  }

  /** Moves to `next`; returns false (and changes nothing) when the move is not allowed. */
  transition(next: ServiceState): boolean {
    if (!NEXT[this.current].includes(next)) return false;
    this.current = next;
    for (const l of this.listeners) l(next);
    return true;
  }

  onChange(listener: (s: ServiceState) => void): void {
    this.listeners.add(listener);
  }
}
