import { describe, expect, it } from 'vitest';
import {
  dbUnavailableError,
  describeDbTarget,
  isDbConnectivityError,
  isDbDataError,
  safeDbErrorMessage,
  scrubSecret,
  sqlState,
  withDatabase,
} from './errors.js';

describe('describeDbTarget', () => {
  it('names host, port and database, never the credentials', () => {
    const s = describeDbTarget('postgres://app:s3cr%40t@db.internal:6543/callscribe');
    expect(s).toBe('db.internal:6543/callscribe');
    expect(describeDbTarget('postgresql://u:p@localhost/x')).toBe('localhost:5432/x');
    expect(describeDbTarget('not a url')).toBe('(unparseable DATABASE_URL)');
  });
});

describe('withDatabase', () => {
  it('keeps credentials and options, swaps the database', () => {
    expect(withDatabase('postgres://u:p@h:1/a?sslmode=require', 'postgres')).toBe('postgres://u:p@h:1/postgres?sslmode=require');
  });
});

describe('error classification', () => {
  const pgError = (code: string) => Object.assign(new Error('x'), { code });

  it('treats network failures, restarts and overload as connectivity', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', '57P01', '57P03', '53300', '08006']) {
      expect(isDbConnectivityError(pgError(code))).toBe(true);
    }
    expect(isDbConnectivityError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isDbConnectivityError(new Error('timeout exceeded when trying to connect'))).toBe(true);
    // drizzle wraps the driver error
    expect(isDbConnectivityError(new Error('Failed query: insert …', { cause: pgError('ECONNREFUSED') }))).toBe(true);
    expect(isDbConnectivityError(new AggregateError([pgError('ECONNREFUSED')]))).toBe(true);
  });

  it('treats data and constraint errors as permanent, not connectivity', () => {
    for (const code of ['23505', '23514', '22P02', '22003']) {
      const err = new Error('Failed query', { cause: pgError(code) });
      expect(isDbDataError(err)).toBe(true);
      expect(isDbConnectivityError(err)).toBe(false);
      expect(sqlState(err)).toBe(code);
    }
    expect(isDbDataError(pgError('42P01'))).toBe(false);
    expect(isDbDataError(pgError('ECONNREFUSED'))).toBe(false);
    expect(sqlState(pgError('ECONNREFUSED'))).toBeUndefined();
  });
});

describe('safeDbErrorMessage', () => {
  const wrapped = (cause: unknown) =>
    new Error('Failed query: insert into "utterances" ("text") values ($1)\nparams: 我要投诉', { cause });

  it('never returns the query parameters drizzle puts in its message', () => {
    const check = Object.assign(new Error('new row for relation "utterances" violates check constraint'), {
      code: '23514',
      constraint: 'utterances_valence_check',
    });
    expect(safeDbErrorMessage(wrapped(check))).toBe('SQLSTATE 23514 (constraint utterances_valence_check)');
    const syntax = Object.assign(new Error('invalid input syntax for type uuid: "我要投诉"'), { code: '22P02' });
    expect(safeDbErrorMessage(wrapped(syntax))).toBe('SQLSTATE 22P02');
    expect(safeDbErrorMessage(wrapped(new Error('Connection terminated unexpectedly')))).toBe('Connection terminated unexpectedly');
    expect(safeDbErrorMessage(wrapped(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })))).toBe(
      'connect ECONNREFUSED 127.0.0.1:5432',
    );
    expect(safeDbErrorMessage(new Error('Failed query: select $1\nparams: 我要投诉'))).toBe('query failed (details withheld)');
    const undefinedTable = Object.assign(new Error('relation "utterances" does not exist'), { code: '42P01' });
    expect(safeDbErrorMessage(wrapped(undefinedTable))).toBe('SQLSTATE 42P01: relation "utterances" does not exist');
  });
});

describe('dbUnavailableError', () => {
  it('has a stable code, names the target and hides the password', () => {
    const url = 'postgres://app:hunter2@10.0.0.5:5432/callscribe';
    const err = dbUnavailableError(url, new Error('password hunter2 rejected'));
    expect(err.code).toBe('ERR_DB_UNAVAILABLE');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('10.0.0.5:5432/callscribe');
    expect(err.message).not.toContain('hunter2');
    expect(scrubSecret('a hunter2 b', url)).toBe('a *** b');
  });
});
