/** drizzle-kit: `npx drizzle-kit generate --name <what>` writes reviewed SQL into migrations/. */
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './migrations',
});
