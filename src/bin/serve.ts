/** `callscribe serve | ingest | worker`: runs the service until SIGTERM/SIGINT, then drains. */
import { loadEnv } from '../config/env.js';
import { createLogger } from '../observability/logger.js';
import { startService, type ServiceMode } from '../service.js';

export async function runService(mode: ServiceMode): Promise<number> {
  const env = loadEnv();
  const logger = createLogger(env.LOG_LEVEL);
  const service = await startService(env, mode, { logger });
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: exiting without finishing the drain');
        process.exit(1);
      }
      logger.info({ signal }, 'signal received, draining');
      void service.stop().then(() => resolve(0));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
