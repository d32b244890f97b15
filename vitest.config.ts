import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // unit tests sit beside the code; integration and end-to-end tests use real sockets,
    // a real Redis and a real Postgres (each file gets its own database and queue prefix)
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          testTimeout: 90_000,
          hookTimeout: 60_000,
          // the end-to-end files each play calls in real time (sped up): keep them from
          // starving each other on a 2-core machine
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
