/**
 * Quick-failure detection (pipecat's QuickFailureTracker): a connection that ended with an
 * error soon after it started, without delivering anything, counts as a failed attempt, so
 * consecutive quick failures exhaust the retry budget and a rejected key or a broken endpoint
 * stops the loop. A healthy connection (it delivered a final sentence, or lived at least
 * `healthyAfterMs`) resets the count: its drop is a fresh incident with a fresh budget.
 */
export class QuickFailureTracker {
  private consecutiveFailures = 0;

  constructor(readonly healthyAfterMs: number = 30_000) {}

  /** Failures since the last healthy connection. */
  get consecutive(): number {
    return this.consecutiveFailures;
  }

  isHealthy(connection: { readonly livedMs: number; readonly deliveredFinal: boolean }): boolean {
    return connection.deliveredFinal || connection.livedMs >= this.healthyAfterMs;
  }

  /** Records how a connection (attempt) ended; returns true when it was healthy. */
  record(connection: { readonly livedMs: number; readonly deliveredFinal: boolean } | null): boolean {
    if (connection && this.isHealthy(connection)) {
      this.consecutiveFailures = 0;
      return true;
    }
    this.consecutiveFailures++;
    return false;
  }
}
