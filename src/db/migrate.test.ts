/** Needs the local Postgres (trust auth); every database it creates is dropped afterwards. */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { TEST_POSTGRES_URL, dropDatabase, uniqueDatabaseName } from '../../test/support/postgres.js';
import { withDatabase } from './errors.js';
import { MIGRATIONS_FOLDER, ensureDatabase, runMigrations } from './migrate.js';

const created: string[] = [];
function newDbUrl(): string {
  const name = uniqueDatabaseName('migtest');
  created.push(name);
  return withDatabase(TEST_POSTGRES_URL, name);
}

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

afterAll(async () => {
  for (const name of created) await dropDatabase(name);
});

describe('ensureDatabase', () => {
  it('creates a missing database once', async () => {
    const url = newDbUrl();
    expect(await ensureDatabase(url)).toEqual({ created: true });
    expect(await ensureDatabase(url)).toEqual({ created: false });
    expect(await query<{ one: number }>(url, 'select 1 as one')).toEqual([{ one: 1 }]);
  });

  it('tolerates concurrent creation', async () => {
    const url = newDbUrl();
    const results = await Promise.all([1, 2, 3, 4].map(() => ensureDatabase(url)));
    expect(results.filter((r) => r.created)).toHaveLength(1);
  });

  it('fails with ERR_DB_UNAVAILABLE naming host:port, not the password, when Postgres is down', async () => {
    const err: unknown = await ensureDatabase('postgres://app:hunter2@127.0.0.1:1/x').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_DB_UNAVAILABLE' });
    expect(String((err as Error).message)).toContain('127.0.0.1:1');
    expect(String((err as Error).message)).not.toContain('hunter2');
  });
});

describe('runMigrations', () => {
  it('applies the migrations, and a second run is a no-op', async () => {
    const url = newDbUrl();
    await ensureDatabase(url);
    const first = await runMigrations(url);
    expect(first.applied).toBeGreaterThan(0);
    expect(first.total).toBe(first.applied);
    const tables = await query<{ table_name: string; table_type: string }>(
      url,
      "select table_name, table_type from information_schema.tables where table_schema = 'public' order by 1",
    );
    expect(tables.filter((t) => t.table_type === 'BASE TABLE').map((t) => t.table_name)).toEqual([
      'agent_daily',
      'alert_deliveries',
      'alerts',
      'call_metrics',
      'call_streams',
      'calls',
      'rule_hits',
      'rules',
      'utterance_originals',
      'utterances',
    ]);
    expect(tables.filter((t) => t.table_type === 'VIEW').map((t) => t.table_name)).toEqual([
      'v_agent_daily',
      'v_alert_latency',
      'v_alert_precision',
      'v_call_summary',
      'v_transcript',
    ]);
    // every column of every table has a description (dashboards read them)
    const undocumented = await query<{ col: string }>(
      url,
      `select c.relname || '.' || a.attname as col
       from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'public' and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped
         and col_description(c.oid, a.attnum) is null
       order by 1`,
    );
    expect(undocumented.map((u) => u.col)).toEqual([]);
    expect(await runMigrations(url)).toEqual({ applied: 0, total: first.total });
  });

  it('applies each migration once when processes start together', async () => {
    const url = newDbUrl();
    await ensureDatabase(url);
    const results = await Promise.all([1, 2, 3].map(() => runMigrations(url)));
    const total = results[0]?.total ?? 0;
    expect(total).toBeGreaterThan(0);
    expect(results.reduce((sum, r) => sum + r.applied, 0)).toBe(total);
    const rows = await query<{ n: number }>(url, 'select count(*)::int as n from drizzle.__drizzle_migrations');
    expect(rows[0]?.n).toBe(total);
  });

  it('upgrades a database that has data at 0003_routing_comments to the QA analytics schema', async () => {
    // the migrations as they were before the QA analytics work: the journal cut after 0003
    const old = mkdtempSync(join(tmpdir(), 'callscribe-mig-'));
    try {
      cpSync(MIGRATIONS_FOLDER, old, { recursive: true });
      const journalPath = join(old, 'meta', '_journal.json');
      const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: { tag: string }[] };
      const cut = journal.entries.findIndex((e) => e.tag === '0003_routing_comments');
      expect(cut).toBeGreaterThanOrEqual(0);
      writeFileSync(journalPath, JSON.stringify({ ...journal, entries: journal.entries.slice(0, cut + 1) }));
      const url = newDbUrl();
      await ensureDatabase(url);
      const before = await runMigrations(url, undefined, { migrationsFolder: old });
      expect(before.total).toBe(cut + 1);
      await query(url, `insert into calls (id, source, started_at) values ('00000000-0000-4000-8000-000000000001', 'twilio', now())`);
      await query(
        url,
        `insert into utterances (call_id, call_started_at, role, track, seq, start_ms, end_ms, text, char_count, model, asr_task_id, final_received_at)
         values ('00000000-0000-4000-8000-000000000001', now(), 'customer', 'inbound', 1, 0, 900, '我要投诉', 4, 'm', 't', now())`,
      );
      const after = await runMigrations(url);
      expect(after.applied).toBeGreaterThan(0);
      const rows = await query<{ seg: string | null; tsv: string; pii_redacted: boolean; metadata: unknown }>(
        url,
        `select u.seg, u.tsv::text as tsv, u.pii_redacted, c.metadata from utterances u join calls c on c.id = u.call_id`,
      );
      expect(rows).toEqual([{ seg: null, tsv: '', pii_redacted: false, metadata: {} }]);
    } finally {
      rmSync(old, { recursive: true, force: true });
    }
  });

  it('fails with ERR_DB_UNAVAILABLE when Postgres is down', async () => {
    await expect(runMigrations('postgres://postgres@127.0.0.1:1/x')).rejects.toMatchObject({ code: 'ERR_DB_UNAVAILABLE' });
  });
});
