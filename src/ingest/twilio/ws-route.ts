/**
 * GET /twilio: the WebSocket endpoint Twilio's <Stream> connects to. Thin adapter: checks the
 * upgrade (signature, capacity), then hands every message to a TwilioCallSession.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import { rejectUpgrade, type UpgradeHandler } from '../../http/server.js';
import type { CallRegistry } from '../call-registry.js';
import { TwilioCallSession, type TwilioCallDeps } from './call-session.js';
import { validateTwilioSignature } from './signature.js';

export interface TwilioRouteOptions {
  readonly registry: CallRegistry;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly maxFrameBytes: number;
  /** When set, X-Twilio-Signature is required and checked against `publicUrl`. */
  readonly authToken?: string | undefined;
  /** The public wss:// URL of this endpoint as Twilio calls it (from PUBLIC_URL). */
  readonly publicUrl?: string | undefined;
  readonly sessionDeps: Omit<TwilioCallDeps, 'socket' | 'logger'>;
}

export interface TwilioRoute {
  readonly handleUpgrade: UpgradeHandler;
  /** Closes the WebSocket server (live sockets are closed by draining their calls). */
  close(): void;
}

export function createTwilioRoute(options: TwilioRouteOptions): TwilioRoute {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxFrameBytes,
    perMessageDeflate: false,
    clientTracking: false,
  });
  const { metrics, registry } = options;
  const log = options.logger.child({ component: 'twilio' });

  if (options.authToken && !options.publicUrl) {
    throw new Error('TWILIO_AUTH_TOKEN is set but PUBLIC_URL is not: signatures cannot be checked');
  }

  const onConnection = (ws: WebSocket): void => {
    const session = new TwilioCallSession({ ...options.sessionDeps, socket: ws, logger: log });
    registry.add(session);
    ws.on('message', (data, isBinary) => {
      // ws gives a Buffer for single frames (fragmented messages arrive concatenated)
      session.onMessage(Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data), isBinary);
    });
    ws.on('error', (err) => {
      // e.g. a frame over maxPayload: ws closes with 1009 and reports it here
      metrics.framesDropped.inc({ source: 'twilio', reason: 'ERR_INGEST_SOCKET' });
      log.warn({ code: 'ERR_INGEST_SOCKET', err: err.message }, 'twilio socket error');
    });
    ws.on('close', () => session.onClose());
  };

  const handleUpgrade: UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (options.authToken && options.publicUrl) {
      const header = req.headers['x-twilio-signature'];
      const signature = Array.isArray(header) ? header[0] : header;
      if (!validateTwilioSignature(options.authToken, options.publicUrl, signature)) {
        metrics.upgradesRejected.inc({ reason: signature ? 'bad-signature' : 'missing-signature' });
        log.warn({ code: 'ERR_INGEST_SIGNATURE', present: Boolean(signature) }, 'twilio upgrade refused: bad signature');
        rejectUpgrade(socket, 403, 'invalid X-Twilio-Signature');
        return;
      }
    }
    if (!registry.hasCapacity()) {
      metrics.upgradesRejected.inc({ reason: 'capacity' });
      log.warn({ code: 'ERR_INGEST_CAPACITY' }, 'twilio upgrade refused: at capacity');
      rejectUpgrade(socket, 503, 'at capacity');
      return;
    }
    wss.handleUpgrade(req, socket, head, onConnection);
  };

  return {
    handleUpgrade,
    close: () => wss.close(),
  };
}
