/**
 * pino logger. Messages are static strings; variable data goes into structured fields.
 * Transcript text, phone numbers and payloads only ever go under a `pii` key, which is
 * redacted here; secrets are redacted wherever they might appear.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'pii',
  '*.pii',
  '*.*.pii',
  'apiKey',
  '*.apiKey',
  'authToken',
  '*.authToken',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.headers["x-twilio-signature"]',
  'password',
  '*.password',
];

export function createLogger(level: string, name = 'callscribe'): Logger {
  return pino({
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A logger that writes nothing (tests). */
export const silentLogger: Logger = pino({ level: 'silent' });
