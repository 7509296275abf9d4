/**
 * Prisma 7 configuration (https://www.prisma.io/docs/orm/reference/prisma-config-reference).
 * Used by the `prisma` CLI (`prisma generate`, and `prisma migrate deploy` where the schema-engine
 * binary can be downloaded). The offline migration tool (scripts/migrate.ts) reads the same
 * schema and migrations folder. The URL is DATABASE_URL, defaulting to the local development
 * database.
 */
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: {
    url: process.env['DATABASE_URL'] ?? 'postgresql://postgres@127.0.0.1:5432/jwt_mesh',
  },
});
