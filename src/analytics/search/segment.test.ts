import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Jieba } from '@node-rs/jieba';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test/support/postgres.js';
import { buildSearchQuery, MAX_TOKEN_CHARS, searchSegmentStats, SEGMENTER_VERSION, segmentForIndex } from './segment.js';

const tokens = (text: string) => segmentForIndex(text).split(' ');

/** tsquery AND semantics over a seg string (the Postgres test below checks the real thing). */
function matches(text: string, query: string): boolean {
  const lexemes = query.split(' & ').map((q) => q.slice(1, -1));
  const have = new Set(tokens(text));
  return lexemes.length > 0 && lexemes.every((l) => have.has(l));
}

const COMPLAINT = '我要投诉你们，退款到现在还没到账';
const SENTENCES = [
  COMPLAINT,
  '您好，这里是星河通信客服中心，我是工号1025的客服。',
  '查到了，这笔费用是您上个月开通的视频会员包月业务。',
  '我要打１２３１５举报你们！',
  'My REFUND is still pending, VIP 会员也没用',
  '收到账单了，谢谢。',
];

describe('segmentForIndex', () => {
  it('gives words, CJK unigrams and bigrams, without punctuation', () => {
    const t = tokens(COMPLAINT);
    for (const w of ['投诉', '到账', '退款', '你们', '现在', '投', '账', '没到']) expect(t).toContain(w);
    expect(t.join('')).not.toMatch(/[，。\s]/);
    expect(new Set(t).size).toBe(t.length);
  });

  it('uses the domain dictionary (jieba alone splits 到账 and keeps no 客服中心)', () => {
    const plain = Jieba.withDict((createRequire(import.meta.url)('@node-rs/jieba/dict') as { dict: Uint8Array }).dict);
    expect(plain.cut(COMPLAINT, false)).not.toContain('到账');
    expect(plain.cutForSearch('星河通信客服中心视频会员', false)).not.toContain('客服中心');
    const t = tokens('星河通信客服中心视频会员');
    expect(t).toContain('客服中心');
    expect(t).toContain('视频会员');
  });

  it('keeps Latin words lower-cased, digit runs, and folds full-width', () => {
    expect(tokens('My REFUND is pending, VIP会员')).toEqual(expect.arrayContaining(['my', 'refund', 'is', 'pending', 'vip', '会员']));
    expect(tokens('拨打１２３１５，工号1025')).toEqual(expect.arrayContaining(['12315', '1025']));
    expect(segmentForIndex('，。！？ ')).toBe('');
  });

  it('drops (and counts) absurdly long tokens', () => {
    const before = searchSegmentStats().droppedLongTokens;
    expect(tokens(`ok ${'x'.repeat(MAX_TOKEN_CHARS + 1)}`)).toEqual(['ok']);
    expect(searchSegmentStats().droppedLongTokens).toBe(before + 1);
  });
});

describe('buildSearchQuery', () => {
  it('matches 1–2 character queries, words, digits and English case-insensitively', () => {
    expect(buildSearchQuery('到账')).toBe("'到账'");
    const hits = (q: string) => SENTENCES.filter((s) => matches(s, buildSearchQuery(q)));
    expect(hits('到账')).toEqual([COMPLAINT, SENTENCES[5]]); // bigrams: 收到账单 contains 到账 too
    expect(hits('投诉')).toEqual([COMPLAINT]);
    expect(hits('账')).toEqual([COMPLAINT, SENTENCES[5]]);
    expect(hits('12315')).toEqual([SENTENCES[3]]);
    expect(hits('refund')).toEqual([SENTENCES[4]]);
    expect(hits('Refund VIP')).toEqual([SENTENCES[4]]);
    expect(hits('ｖｉｐ会员')).toEqual([SENTENCES[4]]);
    expect(hits('视频会员')).toEqual([SENTENCES[2]]);
    expect(hits('客服中心')).toEqual([SENTENCES[1]]);
    expect(hits('经理')).toEqual([]);
  });

  it('ANDs the words of a longer query, in any order', () => {
    expect(buildSearchQuery('退款到账')).toBe("'退款' & '到账'");
    expect(matches(COMPLAINT, buildSearchQuery('退款到账'))).toBe(true);
    expect(matches(COMPLAINT, buildSearchQuery('到账 退款'))).toBe(true);
    expect(matches(COMPLAINT, buildSearchQuery('退款 经理'))).toBe(false);
  });

  it('neutralises tsquery syntax', () => {
    const nasty = ["到账' | '投诉", "&|!:*()'\\", "投诉:* | !到账 & (退款)", "a'b\\c<->d", "'' & ! 12315 <2> x"];
    for (const q of nasty) {
      const out = buildSearchQuery(q);
      expect(out).toMatch(/^$|^'[^'\\\s&|!:*()<>]+'( & '[^'\\\s&|!:*()<>]+')*$/);
    }
    expect(buildSearchQuery("到账' | '投诉")).toBe("'到账' & '投诉'");
    expect(buildSearchQuery("&|!:*()'\\")).toBe('');
  });
});

describe('SEGMENTER_VERSION', () => {
  it('names the jieba version in use', () => {
    const pkg: unknown = createRequire(import.meta.url)('@node-rs/jieba/package.json');
    const version = pkg !== null && typeof pkg === 'object' && 'version' in pkg ? String(pkg.version) : '';
    expect(SEGMENTER_VERSION).toContain(`jieba-${version}+`);
  });

  it('is bumped with the dictionary: update both when dict.txt changes', () => {
    const hash = createHash('sha256').update(readFileSync(new URL('./dict.txt', import.meta.url))).digest('hex');
    expect({ SEGMENTER_VERSION, hash }).toEqual({
      SEGMENTER_VERSION: 'jieba-2.0.2+dict-1+bigram-1',
      hash: 'fad6c7913393e3c59769edb8a9e3d575b7d31d7ba8ef56e8c2155f823e6e84d1',
    });
  });
});

describe('against Postgres: to_tsvector / to_tsquery (simple)', () => {
  let db: TestDatabase;
  let client: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(`CREATE TEMP TABLE seg_test (
      id int PRIMARY KEY,
      seg text NOT NULL,
      tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(seg, ''))) STORED)`);
    for (const [i, s] of SENTENCES.entries()) {
      await client.query('INSERT INTO seg_test (id, seg) VALUES ($1, $2)', [i, segmentForIndex(s)]);
    }
  });

  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  async function search(q: string): Promise<number[]> {
    const r = await client.query<{ id: number }>(
      "SELECT id FROM seg_test WHERE tsv @@ to_tsquery('simple', $1) ORDER BY id",
      [buildSearchQuery(q)],
    );
    return r.rows.map((row) => row.id);
  }

  it('indexes one lexeme per token', async () => {
    const r = await client.query<{ n: number; m: number }>(
      "SELECT length(tsv) AS n, array_length(regexp_split_to_array(seg, ' '), 1) AS m FROM seg_test WHERE id = 0",
    );
    expect(r.rows[0]!.n).toBe(r.rows[0]!.m);
  });

  it('finds what the unit tests expect', async () => {
    expect(await search('到账')).toEqual([0, 5]);
    expect(await search('投诉')).toEqual([0]);
    expect(await search('退款到账')).toEqual([0]);
    expect(await search('12315')).toEqual([3]);
    expect(await search('REFUND')).toEqual([4]);
    expect(await search('vip 会员')).toEqual([4]);
    expect(await search('客服中心 1025')).toEqual([1]);
    expect(await search('视频会员')).toEqual([2]);
    expect(await search('经理')).toEqual([]);
  });

  it('takes hostile queries as plain words', async () => {
    expect(await search("到账' | '投诉")).toEqual([0]);
    expect(await search("投诉:* | !到账 & (退款)")).toEqual([0]);
    expect(await search("&|!:*()'\\")).toEqual([]);
    expect(await search("'' & ! 12315 <2> x")).toEqual([]);
  });
});
