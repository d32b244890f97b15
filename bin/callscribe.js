#!/usr/bin/env node
// Entry point of the `callscribe` CLI. The sources are TypeScript, run through tsx's loader
// (a runtime dependency), so the same command works from a clone, `npm start` and Docker.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
