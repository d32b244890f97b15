import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { SipCounters } from './stats.js';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const parsed: unknown = JSON.parse(chunk.toString());
      if (typeof parsed === 'object' && parsed !== null) lines.push(Object.fromEntries(Object.entries(parsed)));
      cb();
    },
  });
  return { lines, logger: pino({ level: 'warn' }, stream) };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('SipCounters', () => {
  it('counts every rejection and drop by code, but logs at most `burst` lines per code per window', async () => {
    const { lines, logger } = capture();
    let now = 0;
    const c = new SipCounters(logger, () => now, 3, 1000);
    for (let i = 0; i < 10; i++) c.reject('ERR_SIP_NO_DIALOG', 481, { method: 'BYE' });
    c.drop('ERR_SIP_NOT_SIP');
    await tick();
    expect(c.snapshot()).toEqual({ rejections: { ERR_SIP_NO_DIALOG: 10 }, drops: { ERR_SIP_NOT_SIP: 1 }, logSuppressed: 7 });
    expect(lines.filter((l) => l['code'] === 'ERR_SIP_NO_DIALOG')).toHaveLength(3);
    expect(lines.filter((l) => l['code'] === 'ERR_SIP_NOT_SIP')).toHaveLength(1);
    now = 1000;
    c.reject('ERR_SIP_NO_DIALOG', 481);
    await tick();
    const last = lines[lines.length - 1]!;
    expect(last).toMatchObject({ code: 'ERR_SIP_NO_DIALOG', status: 481, suppressedSinceLast: 7, msg: 'sip request rejected' });
  });
});
