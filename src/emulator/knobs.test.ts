import { describe, expect, it } from 'vitest';
import { isAppError } from '../core/errors.js';
import { DEFAULT_KNOBS, FaultState, applyKnobs, createEmulatorStats, snapshotStats, type EmulatorKnobs } from './knobs.js';

function knobError(patch: Partial<EmulatorKnobs>): string | null {
  try {
    applyKnobs(DEFAULT_KNOBS, patch);
    return null;
  } catch (err) {
    return isAppError(err) ? err.code : 'not an AppError';
  }
}

describe('emulator knobs', () => {
  it('defaults follow the spec', () => {
    const k = applyKnobs(DEFAULT_KNOBS);
    expect(k).toMatchObject({
      authFailureStatus: 401,
      noDataTimeoutMs: 23_000,
      silenceTimeoutMs: 60_000,
      idleTimeoutMs: 60_000,
      heartbeatIntervalMs: 10_000,
      rps: 20,
      taskStartDelayMs: 0,
      resultDelayMs: 0,
      envelopeErrorMode: 'task-failed',
      vadThresholdRms: 300,
      interimEveryMs: 200,
      maxSentenceMs: 20_000,
      faults: { dropAfterFrames: null, dropConnections: 1, dropInSentence: null, failTasks: null, qwenOutage: null },
    });
  });

  it('merges faults field by field', () => {
    const a = applyKnobs(DEFAULT_KNOBS, { faults: { dropAfterFrames: 5 } });
    expect(a.faults).toEqual({ dropAfterFrames: 5, dropConnections: 1, dropInSentence: null, failTasks: null, qwenOutage: null });
    const b = applyKnobs(a, { rps: 3, faults: { dropConnections: 2 } });
    expect(b.faults).toEqual({ dropAfterFrames: 5, dropConnections: 2, dropInSentence: null, failTasks: null, qwenOutage: null });
    expect(b.rps).toBe(3);
    expect(a.rps).toBe(20);
  });

  it('rejects bad values with a stable code', () => {
    expect(knobError({ authFailureStatus: 500 as 401 })).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ noDataTimeoutMs: -1 })).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ envelopeErrorMode: 'x' as 'task-failed' })).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ faults: { dropAfterFrames: 0 } })).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ faults: { failTasks: { code: '', message: 'x', count: 1 } } })).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ nope: 1 } as Partial<EmulatorKnobs>)).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ heartbeatIntervalMs: 50 })).toBeNull();
  });

  it('has Part B (qwen) defaults and validates them', () => {
    expect(applyKnobs(DEFAULT_KNOBS)).toMatchObject({
      qwenIdleTimeoutMs: 60_000,
      qwenMaxSessionMs: 0,
      qwenThrottleMode: 'error-event',
      qwenUnknownEventMode: 'error-event',
      qwenFinishGraceMs: 10_000,
      qwenTextEveryMs: 200,
      qwenTextTiming: 'during-speech',
      qwenCommitEvents: true,
    });
    expect(knobError({ qwenThrottleMode: 'http-500' as 'http-429' })).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ qwenTextEveryMs: 0 })).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ qwenCommitEvents: 'yes' as unknown as boolean })).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ faults: { qwenOutage: { mode: 'http-502' as 'http-503', count: 1 } } })).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ faults: { qwenOutage: { mode: 'close-1011', count: -1 } } })).toBe('ERR_EMULATOR_KNOB_INVALID');
    expect(knobError({ faults: { qwenOutage: { mode: 'close-1011', count: null, dropLive: true } } })).toBeNull();
  });
});

describe('FaultState', () => {
  it('spends the drop budget and restarts it when a drop knob is set', () => {
    const knobs = applyKnobs(DEFAULT_KNOBS, { faults: { dropAfterFrames: 3, dropConnections: 2 } });
    const f = new FaultState(knobs);
    expect([f.tryConsumeDrop(), f.tryConsumeDrop(), f.tryConsumeDrop()]).toEqual([true, true, false]);
    const patch = { faults: { dropInSentence: 2 } };
    Object.assign(knobs, applyKnobs(knobs, patch));
    f.onKnobsChanged(patch);
    expect(f.dropInSentence).toBe(2);
    expect(f.dropAfterFrames).toBe(3);
    expect([f.tryConsumeDrop(), f.tryConsumeDrop(), f.tryConsumeDrop()]).toEqual([true, true, false]);
  });

  it('fails the next `count` run-tasks', () => {
    const knobs = applyKnobs(DEFAULT_KNOBS, { faults: { failTasks: { code: 'X', message: 'm', count: 2 } } });
    const f = new FaultState(knobs);
    expect([f.tryConsumeFailTask()?.code, f.tryConsumeFailTask()?.code, f.tryConsumeFailTask()]).toEqual(['X', 'X', null]);
    const patch = { faults: { failTasks: { code: 'Y', message: 'm', count: 1 } } };
    Object.assign(knobs, applyKnobs(knobs, patch));
    f.onKnobsChanged(patch);
    expect([f.tryConsumeFailTask()?.code, f.tryConsumeFailTask()]).toEqual(['Y', null]);
  });
});

describe('FaultState: qwenOutage', () => {
  it('refuses the next `count` sessions, or all of them with count null, until cleared', () => {
    const knobs = applyKnobs(DEFAULT_KNOBS, { faults: { qwenOutage: { mode: 'http-503', count: 2 } } });
    const f = new FaultState(knobs);
    expect([f.tryConsumeQwenOutage(), f.tryConsumeQwenOutage(), f.tryConsumeQwenOutage()]).toEqual(['http-503', 'http-503', null]);
    const forever = { faults: { qwenOutage: { mode: 'close-1011' as const, count: null } } };
    Object.assign(knobs, applyKnobs(knobs, forever));
    f.onKnobsChanged(forever);
    expect([f.tryConsumeQwenOutage(), f.tryConsumeQwenOutage(), f.tryConsumeQwenOutage()]).toEqual(['close-1011', 'close-1011', 'close-1011']);
    const clear = { faults: { qwenOutage: null } };
    Object.assign(knobs, applyKnobs(knobs, clear));
    f.onKnobsChanged(clear);
    expect(f.tryConsumeQwenOutage()).toBeNull();
  });
});

describe('snapshotStats', () => {
  it('copies the counters, including the per-code failures', () => {
    const live = createEmulatorStats();
    live.tasksFailed['X'] = 1;
    live.qwenErrors['invalid_value'] = 1;
    const snap = snapshotStats(live);
    live.tasksFailed['X'] = 2;
    live.qwenErrors['invalid_value'] = 2;
    live.finalsSent = 5;
    expect(snap.tasksFailed).toEqual({ X: 1 });
    expect(snap.qwenErrors).toEqual({ invalid_value: 1 });
    expect(snap.finalsSent).toBe(0);
  });
});
