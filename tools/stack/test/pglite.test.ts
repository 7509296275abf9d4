/**
 * The embedded PostgreSQL (PGlite behind the session-serializing server): a client pool of many
 * connections running extended-protocol queries and transactions at once gets correct answers,
 * a connection that dies inside a transaction has it rolled back, and the ReadyForQuery parser.
 */
import pg from 'pg';
import t from 'tap';
import { lastReadyForQuery, startPgliteServer } from '../src/pglite.js';

t.setTimeout(180_000);

t.test('lastReadyForQuery reads the status of the last Z message, across chunk boundaries', async (t) => {
  const z = (s: string) => Buffer.from([0x5a, 0, 0, 0, 5, s.charCodeAt(0)]);
  const cmd = Buffer.concat([Buffer.from('C'), Buffer.from([0, 0, 0, 13]), Buffer.from('SELECT 1\0')]);
  t.equal(lastReadyForQuery([]), null, 'no output');
  t.equal(lastReadyForQuery([cmd]), null, 'no ReadyForQuery');
  t.equal(lastReadyForQuery([cmd, z('I')]), 'I', 'idle');
  t.equal(lastReadyForQuery([Buffer.concat([z('T'), cmd, z('E')])]), 'E', 'the last one wins');
  const both = Buffer.concat([cmd, z('T')]);
  t.equal(lastReadyForQuery([both.subarray(0, 7), both.subarray(7)]), 'T', 'split across chunks');
});

t.test('a pool of 10 connections: concurrent queries and transactions are answered correctly', async (t) => {
  const srv = await startPgliteServer({ dataDir: 'memory://' });
  t.teardown(() => srv.close());
  const pool = new pg.Pool({ connectionString: srv.url, max: 10 });
  t.teardown(() => pool.end());
  await pool.query('CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)');
  const jobs = Array.from({ length: 60 }, async (_, i) => {
    if (i % 3 === 0) {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        await c.query('INSERT INTO items VALUES ($1, $2)', [i, `v${i}`]);
        const r = await c.query<{ v: string }>('SELECT v FROM items WHERE id = $1', [i]);
        await c.query('COMMIT');
        return r.rows[0]?.v === `v${i}`;
      } finally {
        c.release();
      }
    }
    await pool.query('INSERT INTO items VALUES ($1, $2)', [i, `v${i}`]);
    const r = await pool.query<{ v: string; n: number }>('SELECT v, $2::int AS n FROM items WHERE id = $1', [i, i]);
    return r.rows[0]?.v === `v${i}` && r.rows[0]?.n === i;
  });
  const results = await Promise.all(jobs);
  t.equal(results.filter(Boolean).length, 60, 'every query saw its own parameters and rows');
  t.equal(Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM items')).rows[0]?.n), 60, '60 rows');
  t.ok(pool.totalCount > 1, `the pool really used several connections (${pool.totalCount})`);
});

t.test('a connection that dies inside a transaction: rolled back, the others go on', async (t) => {
  const srv = await startPgliteServer({ dataDir: 'memory://' });
  t.teardown(() => srv.close());
  const a = new pg.Client({ connectionString: srv.url });
  const b = new pg.Client({ connectionString: srv.url });
  await a.connect();
  await b.connect();
  t.teardown(() => b.end());
  await a.query('CREATE TABLE t (id int)');
  await a.query('BEGIN');
  await a.query('INSERT INTO t VALUES (1)');
  // b waits for the session while a's transaction is open; a then disappears.
  const bRead = b.query<{ n: string }>('SELECT count(*) AS n FROM t');
  (a as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  a.on('error', () => undefined);
  const r = await bRead;
  t.equal(r.rows[0]?.n, '0', "the dead connection's insert was rolled back");
  await b.query('INSERT INTO t VALUES (2)');
  t.equal((await b.query<{ n: string }>('SELECT count(*) AS n FROM t')).rows[0]?.n, '1', 'the session is usable afterwards');
});
