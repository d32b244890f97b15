/**
 * SIP signalling listeners (UDP + TCP) for callscribe: the thin I/O adapter around the sans-I/O
 * core (uas.ts). It applies the source allow-list (denied sources get no response), drops
 * non-SIP datagrams, frames TCP by Content-Length (framing.ts), parses (message.ts) and routes
 * what the core sends: responses over the TCP connection they came on, or over UDP to
 * received:rport (RFC 3581); requests we originate (BYE) over UDP, or over the dialog's TCP
 * connection (a new one to the target when it has closed). Every drop is counted in stats().
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../observability/logger.js';
import { createSourceAcl } from './acl.js';
import { createDigestAuth } from './digest.js';
import { SipStreamFramer } from './framing.js';
import { DEFAULT_SIP_LIMITS, SipError, parseSipMessage, serializeSipMessage, type SipLimits, type SipMessage } from './message.js';
import type { SiprecRoleOptions } from './siprec.js';
import { DEFAULT_TIMERS, systemScheduler, type Peer, type SipTimers, type SipTransport, type TimerScheduler } from './transactions.js';
import { SipUas, type SipUasStats } from './uas.js';
import type { SipCallHandler } from './types.js';

export interface SipServerOptions {
  /** Bind address; a wildcard (0.0.0.0 / ::) needs `advertisedHost`. */
  readonly host: string;
  /** 0 picks a free port (tests); UDP and TCP share the port number when possible. */
  readonly port: number;
  readonly transports?: readonly SipTransport[];
  /** Host put in Contact and Via (default: `host`). */
  readonly advertisedHost?: string;
  readonly handler: SipCallHandler;
  readonly logger: Logger;
  /** CIDR allow-list for signalling sources, or 'any'. */
  readonly allowFrom: readonly string[] | 'any';
  /** Digest authentication of new INVITEs (401/403). */
  readonly auth?: {
    readonly realm: string;
    readonly secret: string;
    readonly lookupPassword: (username: string) => string | undefined;
    readonly nonceTtlMs?: number;
  };
  readonly siprecRoles?: SiprecRoleOptions;
  readonly timers?: Partial<SipTimers>;
  readonly minSessionExpiresS?: number;
  readonly maxDialogs?: number;
  readonly maxTransactions?: number;
  readonly handlerTimeoutMs?: number;
  readonly limits?: Partial<SipLimits>;
  readonly maxTcpConnections?: number;
  /** Closes TCP connections idle this long (0 = never). */
  readonly tcpIdleTimeoutMs?: number;
  readonly scheduler?: TimerScheduler;
  readonly userAgent?: string;
}

export interface SipServerStats extends SipUasStats {
  readonly udp: { readonly datagrams: number; readonly keepalives: number };
  readonly tcp: { readonly accepted: number; readonly open: number; readonly keepalives: number };
  readonly sendErrors: number;
}

export interface SipServer {
  readonly ports: { readonly udp: number | null; readonly tcp: number | null };
  /** Sends BYE (RTP inactivity, drain); false when the dialog is unknown or already over. */
  hangup(dialogId: string, reason?: string): boolean;
  /** BYE to live dialogs, 503 to pending INVITEs, then closes the sockets. Idempotent. */
  close(): Promise<void>;
  stats(): SipServerStats;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '']);

function plainAddress(address: string): string {
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return m ? m[1]! : address;
}

/** Keep-alives on UDP: CRLF, CRLFCRLF (RFC 5626), or zero bytes some SBCs send. */
function isKeepalive(buf: Buffer): boolean {
  return buf.length <= 4 && buf.every((b) => b === 0x0d || b === 0x0a || b === 0x00);
}

function looksLikeSip(buf: Buffer): boolean {
  const head = buf.subarray(0, 128).toString('latin1').replace(/^[\r\n]+/, '');
  return /^(?:[A-Za-z0-9\-.!%*_+`'~]{1,32} [^ \r\n]+ SIP\/|SIP\/\d\.\d \d{3} )/.test(head);
}

export async function createSipServer(options: SipServerOptions): Promise<SipServer> {
  const transports = options.transports ?? ['udp', 'tcp'];
  if (WILDCARDS.has(options.host) && !options.advertisedHost) {
    throw new AppError('ERR_SIP_CONFIG', 'SIP host is a wildcard: set advertisedHost for Contact/Via', { category: 'invalid_request' });
  }
  const log = options.logger.child({ component: 'sip' });
  const limits: SipLimits = { ...DEFAULT_SIP_LIMITS, ...options.limits };
  const acl = createSourceAcl(options.allowFrom);
  const scheduler = options.scheduler ?? systemScheduler;
  const counts = { datagrams: 0, udpKeepalives: 0, tcpAccepted: 0, tcpKeepalives: 0, sendErrors: 0 };
  const connections = new Map<string, net.Socket>();
  let connectionSeq = 0;
  let udp: dgram.Socket | null = null;
  let tcp: net.Server | null = null;
  const ports: { udp: number | null; tcp: number | null } = { udp: null, tcp: null };
  const advertised = options.advertisedHost ?? options.host;
  let closing: Promise<void> | null = null;
  let socketsClosed = false;

  const uas = new SipUas({
    handler: options.handler,
    send: (msg, peer) => send(msg, peer),
    scheduler,
    timers: { ...DEFAULT_TIMERS, ...options.timers },
    logger: log,
    localAddress: (transport) => ({ host: advertised, port: (transport === 'tcp' ? ports.tcp : ports.udp) ?? ports.udp ?? ports.tcp ?? 5060 }),
    auth: options.auth ? createDigestAuth({ ...options.auth, now: () => scheduler.now() }) : undefined,
    siprecRoles: options.siprecRoles ?? { customer: 'caller' },
    minSessionExpiresS: Math.max(90, options.minSessionExpiresS ?? 90),
    maxDialogs: options.maxDialogs ?? 1000,
    maxTransactions: options.maxTransactions ?? 10_000,
    handlerTimeoutMs: options.handlerTimeoutMs ?? 5000,
    userAgent: options.userAgent ?? 'callscribe',
  });

  const sendError = (err: unknown): void => {
    counts.sendErrors++;
    uas.counters.drop('ERR_SIP_SEND_FAILED', { err: err instanceof Error ? err.message : String(err) });
  };

  function send(msg: SipMessage, peer: Peer): void {
    if (socketsClosed) return; // a late handler result after close()
    const data = serializeSipMessage(msg);
    if (peer.transport === 'udp') {
      if (!udp) return sendError(new Error('no UDP socket'));
      try {
        const address = udp.address().family === 'IPv6' && net.isIPv4(peer.address) ? `::ffff:${peer.address}` : peer.address;
        udp.send(data, peer.port, address, (err) => {
          if (err) sendError(err);
        });
      } catch (err) {
        sendError(err);
      }
      return;
    }
    const existing = peer.connectionId === undefined ? undefined : connections.get(peer.connectionId);
    if (existing && !existing.destroyed) {
      existing.write(data);
      return;
    }
    if (msg.kind === 'response') {
      uas.counters.drop('ERR_SIP_NO_CONNECTION');
      return;
    }
    // a request (BYE) whose connection has gone: open a new one to the target
    const socket = net.connect({ host: peer.address, port: peer.port });
    socket.once('connect', () => socket.write(data));
    attach(socket, plainAddress(peer.address), peer.port);
  }

  function attach(socket: net.Socket, address: string, port: number): void {
    const id = `tcp-${++connectionSeq}`;
    connections.set(id, socket);
    const source: Peer = { transport: 'tcp', address, port, connectionId: id };
    const framer = new SipStreamFramer(limits);
    socket.setNoDelay(true);
    if (options.tcpIdleTimeoutMs) socket.setTimeout(options.tcpIdleTimeoutMs, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      for (const out of framer.push(chunk)) {
        if (out.kind === 'keepalive') {
          counts.tcpKeepalives++;
          socket.write('\r\n');
        } else if (out.kind === 'message') {
          handle(out.data, source, true);
        } else {
          // answer from the header section when possible, then close: the stream cannot resync
          let partial: SipMessage | null = null;
          if (out.headerSection) {
            try {
              partial = parseSipMessage(out.headerSection, { limits: { ...limits, maxMessageBytes: Number.MAX_SAFE_INTEGER } });
            } catch {
              partial = null;
            }
          }
          const error = partial?.kind === 'request' ? out.error.withPartial(partial) : out.error;
          uas.rejectUnparsable(error, source);
          socket.end();
        }
      }
    });
    socket.on('error', (err) => uas.counters.drop('ERR_SIP_TCP_ERROR', { err: err.message }));
    socket.on('close', () => connections.delete(id));
  }

  function handle(data: Buffer, source: Peer, stream: boolean): void {
    let msg: SipMessage;
    try {
      msg = parseSipMessage(data, { limits, requireContentLength: stream });
    } catch (err) {
      if (err instanceof SipError) uas.rejectUnparsable(err, source);
      else uas.counters.drop('ERR_SIP_MALFORMED');
      return;
    }
    try {
      uas.receive(msg, source);
    } catch (err) {
      log.error({ code: 'ERR_SIP_INTERNAL', err: err instanceof Error ? err.message : String(err) }, 'sip core threw');
      uas.counters.drop('ERR_SIP_INTERNAL');
    }
  }

  const onDatagram = (buf: Buffer, rinfo: dgram.RemoteInfo): void => {
    counts.datagrams++;
    const address = plainAddress(rinfo.address);
    if (!acl.allows(address)) return uas.counters.drop('ERR_SIP_SOURCE_DENIED', { transport: 'udp', address });
    if (isKeepalive(buf)) {
      counts.udpKeepalives++;
      return;
    }
    if (!looksLikeSip(buf)) return uas.counters.drop('ERR_SIP_NOT_SIP', { transport: 'udp', bytes: buf.length });
    handle(buf, { transport: 'udp', address, port: rinfo.port }, false);
  };

  const onConnection = (socket: net.Socket): void => {
    const address = plainAddress(socket.remoteAddress ?? '');
    if (!address || !acl.allows(address)) {
      uas.counters.drop('ERR_SIP_SOURCE_DENIED', { transport: 'tcp', address });
      socket.destroy();
      return;
    }
    if (connections.size >= (options.maxTcpConnections ?? 256)) {
      uas.counters.drop('ERR_SIP_TCP_CAPACITY');
      socket.destroy();
      return;
    }
    counts.tcpAccepted++;
    attach(socket, address, socket.remotePort ?? 0);
  };

  async function bindUdp(port: number): Promise<dgram.Socket> {
    const socket = dgram.createSocket({ type: net.isIPv6(options.host) ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, options.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', (err) => log.error({ code: 'ERR_SIP_SOCKET', err: err.message }, 'sip udp socket error'));
    socket.on('message', onDatagram);
    return socket;
  }

  async function bindTcp(port: number): Promise<net.Server> {
    const server = net.createServer(onConnection);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => log.error({ code: 'ERR_SIP_SOCKET', err: err.message }, 'sip tcp server error'));
    return server;
  }

  for (let attempt = 0; ; attempt++) {
    try {
      if (transports.includes('udp')) {
        udp = await bindUdp(options.port);
        ports.udp = udp.address().port;
      }
      if (transports.includes('tcp')) {
        tcp = await bindTcp(ports.udp ?? options.port);
        const addr = tcp.address();
        ports.tcp = typeof addr === 'object' && addr ? addr.port : null;
      }
      break;
    } catch (err) {
      udp?.close();
      udp = null;
      ports.udp = null;
      // with port 0 the TCP port chosen by UDP may be taken: try another pair
      if (options.port !== 0 || attempt >= 5) throw err;
    }
  }
  log.info({ host: options.host, udpPort: ports.udp, tcpPort: ports.tcp, acl: options.allowFrom === 'any' ? 'any' : options.allowFrom.length }, 'sip server listening');

  return {
    ports,
    hangup: (dialogId, reason) => uas.hangup(dialogId, reason),
    close() {
      closing ??= (async () => {
        await uas.close();
        socketsClosed = true;
        await Promise.all([
          udp ? new Promise<void>((resolve) => udp!.close(() => resolve())) : Promise.resolve(),
          tcp ? new Promise<void>((resolve) => {
            tcp!.close(() => resolve());
            for (const s of connections.values()) s.destroy();
          }) : Promise.resolve(),
        ]);
      })();
      return closing;
    },
    stats() {
      return {
        ...uas.stats(),
        udp: { datagrams: counts.datagrams, keepalives: counts.udpKeepalives },
        tcp: { accepted: counts.tcpAccepted, open: connections.size, keepalives: counts.tcpKeepalives },
        sendErrors: counts.sendErrors,
      };
    },
  };
}
