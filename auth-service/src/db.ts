/**
 * The Prisma client over PostgreSQL through `@prisma/adapter-pg` (no query-engine binary).
 * https://www.prisma.io/docs/orm/overview/databases/postgresql#using-the-node-postgres-driver
 */
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from './generated/prisma/client.js';

export type { PrismaClient } from './generated/prisma/client.js';

/** Pool settings of {@link createPrisma}. */
export interface PrismaOptions {
  /** Maximum pool connections (default 10). */
  poolMax?: number;
  /** Time to wait for a new connection before failing, milliseconds (default 2000). */
  connectionTimeoutMs?: number;
}

/**
 * Creates a Prisma client for `databaseUrl` (`postgresql://...`). Connects lazily; an
 * unreachable database surfaces as a Prisma `P1001` error on the first query (mapped to 503
 * by the app), not as a crash.
 */
export function createPrisma(databaseUrl: string, opts: PrismaOptions = {}): PrismaClient {
  const adapter = new PrismaPg({
    connectionString: databaseUrl,
    max: opts.poolMax ?? 10,
    connectionTimeoutMillis: opts.connectionTimeoutMs ?? 2000,
  });
  return new PrismaClient({ adapter });
}
