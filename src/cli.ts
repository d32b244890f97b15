/**
 * `callscribe <command>`: the one CLI. Each command has --help.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from './config/env.js';

interface Command {
  readonly summary: string;
  readonly usage: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  readonly allowPositionals?: boolean;
  run(values: Record<string, unknown>, positionals: string[]): Promise<number | void>;
}

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

const commands: Record<string, Command> = {
  serve: {
    summary: 'run ingest and workers in one process (the default for npm start)',
    usage: `callscribe serve

Starts the HTTP/WebSocket listener (GET /twilio, /healthz, /readyz, /metrics) and the
BullMQ workers that write utterances to Postgres. Applies pending migrations first
(MIGRATE_ON_START=false to skip). Configuration: environment variables (see README).
SIGTERM/SIGINT drain: no new streams, running calls are finished, the queue is flushed.`,
    options: { ...HELP },
    run: async () => (await import('./bin/serve.js')).runService('serve'),
  },
  ingest: {
    summary: 'run only the telephony ingest and ASR side',
    usage: `callscribe ingest

Accepts Twilio Media Streams, transcribes them and enqueues utterances; writes nothing to
Postgres itself (run \`callscribe worker\` for that). Configuration: environment variables.`,
    options: { ...HELP },
    run: async () => (await import('./bin/serve.js')).runService('ingest'),
  },
  worker: {
    summary: 'run only the queue workers (utterances → Postgres)',
    usage: `callscribe worker

Consumes the utterances queue and writes calls, streams and utterances to Postgres.
Serves /healthz, /readyz and /metrics on PORT. Configuration: environment variables.`,
    options: { ...HELP },
    run: async () => (await import('./bin/serve.js')).runService('worker'),
  },
  migrate: {
    summary: 'create the database if needed and apply the SQL migrations',
    usage: `callscribe migrate

Creates the database named in DATABASE_URL if it does not exist, then applies every pending
migration from migrations/ (safe to run concurrently: guarded by an advisory lock).`,
    options: { ...HELP },
    run: async () => (await import('./bin/migrate.js')).runMigrate(),
  },
  emulator: {
    summary: 'run the DashScope emulator (NOT a speech recogniser)',
    usage: `callscribe emulator --port P [--script DIR_OR_FILE] [--api-key K] [--host H]

Serves a local, protocol-faithful imitation of DashScope's real-time ASR WebSocket APIs at
ws://HOST:P/api-ws/v1/inference (paraformer duplex protocol) and
ws://HOST:P/api-ws/v1/realtime?model=qwen3-asr-flash-realtime (qwen realtime protocol), for
tests, the offline demo and benchmarks. It is an EMULATOR: it does not recognise speech. It segments the audio with an
energy VAD and answers each segment from a fixture call's script.json (the line the audio
belongs to), or with a placeholder text that says it is simulated.

Options:
  --port P            port to listen on (0 = any free port; default 8765)
  --host H            address to bind (default 127.0.0.1)
  --script PATH       fixture call folder (or its script.json) to answer from
  --api-key K         accept only this key (default: any non-empty Bearer key)
  --rps N             run-task limit per second per key and model (default 20)
  --drop-after-frames N   fault: drop the connection after N audio frames (first connection only)
  --fail-task CODE    fault: the next run-task fails with this error_code
  --result-delay-ms N fault: delay every result by N ms`,
    options: {
      ...HELP,
      port: { type: 'string' },
      host: { type: 'string' },
      script: { type: 'string' },
      'api-key': { type: 'string' },
      rps: { type: 'string' },
      'drop-after-frames': { type: 'string' },
      'fail-task': { type: 'string' },
      'result-delay-ms': { type: 'string' },
    },
    run: async (v) => (await import('./bin/emulator.js')).runEmulator(v),
  },
  simulate: {
    summary: 'play a fixture call into callscribe as a Twilio Media Stream',
    usage: `callscribe simulate --call DIR --url ws://HOST:PORT/twilio [--speed 1] [--calls N] [--param k=v ...]

Plays a fixture call (a folder with script.json naming each role's WAV and Twilio track, as in
../shared/fixtures/calls/) as a Twilio Media Stream: connected, start with customParameters,
20 ms media frames per track at real time (or --speed times faster), stop.

Options:
  --call DIR          fixture call folder
  --url URL           the callscribe Twilio endpoint (default ws://127.0.0.1:8080/twilio)
  --speed X           playback speed (1 = real time; 0 = as fast as possible)
  --calls N           concurrent calls (default 1)
  --stagger-ms N      delay between call starts (default 50)
  --tracks both|inbound   which tracks to send (default both)
  --param k=v         a customParameter (repeatable)
  --auth-token T      sign the upgrade with X-Twilio-Signature for this URL (Twilio auth token)`,
    options: {
      ...HELP,
      call: { type: 'string' },
      url: { type: 'string' },
      speed: { type: 'string' },
      calls: { type: 'string' },
      'stagger-ms': { type: 'string' },
      tracks: { type: 'string' },
      param: { type: 'string', multiple: true },
      'auth-token': { type: 'string' },
    },
    run: async (v) => (await import('./bin/simulate.js')).runSimulate(v),
  },
  demo: {
    summary: 'offline demo: emulator + service + the zh-billing-complaint call → transcript',
    usage: `callscribe demo [--call DIR] [--speed X]

Applies migrations, starts the DashScope emulator with the fixture's script and the service
pointed at it, plays the call as a Twilio stream, prints the transcript from Postgres, exits.
Needs Postgres and Redis (DATABASE_URL, REDIS_URL).`,
    options: { ...HELP, call: { type: 'string' }, speed: { type: 'string' } },
    run: async (v) => (await import('./bin/demo.js')).runDemo(v),
  },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `callscribe — live call transcription into QA analytics

Usage: callscribe <command> [options]   (callscribe <command> --help for details)

Commands:
${lines.join('\n')}
`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 1;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`unknown command: ${name}\n\n${usage()}`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: command.options, allowPositionals: command.allowPositionals ?? false, strict: true });
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n\n${command.usage}\n`);
    return 2;
  }
  if (parsed.values['help']) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  const code = await command.run(parsed.values, parsed.positionals);
  return typeof code === 'number' ? code : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    // bad environment (ConfigError) or a bad file it names (ERR_CONFIG_*, e.g. ROUTING_FILE)
    const code = err instanceof Error && 'code' in err ? err.code : undefined;
    if (err instanceof ConfigError || (err instanceof Error && typeof code === 'string' && code.startsWith('ERR_CONFIG'))) {
      process.stderr.write(`callscribe: ${err.message}\n`);
      process.exitCode = 78; // EX_CONFIG
      return;
    }
    process.stderr.write(`callscribe: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
