/**
 * RTP/RTCP UDP port pairs from a configured range (thin I/O adapter over node:dgram, IPv4).
 *
 * RFC 3550 §11: RTP uses an even port and RTCP the next odd one. Each lease binds both; the
 * RTCP socket's packets are read and ignored (counted) so they do not queue in the kernel or
 * draw ICMP port-unreachable replies. Ports in use by another process (EADDRINUSE, EACCES) are
 * skipped and the next pair tried; the search starts after the last pair handed out, so a
 * just-released port is not reused at once (late packets of the old call would land in the new
 * one). When no pair can be bound the lease fails with ERR_RTP_PORTS_EXHAUSTED.
 */
import { createSocket, type Socket } from 'node:dgram';
import { AppError } from '../../core/errors.js';

export interface UdpPortPoolOptions {
  /** Lowest port (rounded up to even). */
  readonly minPort: number;
  /** Highest port (an RTCP port may use it). */
  readonly maxPort: number;
  /** IPv4 address to bind. Default 0.0.0.0. */
  readonly host?: string;
  /** SO_RCVBUF for RTP sockets, bytes (default: the OS default). */
  readonly recvBufferSize?: number;
}

export interface UdpPortLease {
  readonly host: string;
  /** RTP port (even). */
  readonly port: number;
  readonly rtcpPort: number;
  /** The bound RTP socket; the lease owns it (release() closes it). */
  readonly socket: Socket;
  /** RTCP packets received on the odd port (ignored). */
  readonly rtcpPackets: number;
  /** Socket errors after binding (both sockets). */
  readonly socketErrors: number;
  /** Closes both sockets and returns the pair to the pool. Idempotent. */
  release(): Promise<void>;
}

export interface UdpPortPoolStats {
  leases: number;
  releases: number;
  active: number;
  /** Pairs skipped because a port was taken by someone else. */
  bindRetries: number;
  /** lease() calls that failed with ERR_RTP_PORTS_EXHAUSTED. */
  exhausted: number;
  /** RTCP packets received on released and active leases. */
  rtcpPackets: number;
}

const RETRYABLE_BIND_ERRORS = new Set(['EADDRINUSE', 'EACCES']);

function errCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

function bindUdp(port: number, host: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: 'udp4' });
    const onError = (err: Error): void => {
      try {
        socket.close();
      } catch {
        // never bound
      }
      reject(err);
    };
    socket.once('error', onError);
    socket.bind({ port, address: host, exclusive: true }, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

function closeUdp(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

class Lease implements UdpPortLease {
  rtcpPackets = 0;
  socketErrors = 0;
  #released: Promise<void> | null = null;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly socket: Socket,
    private readonly rtcp: Socket,
    private readonly onRelease: (lease: Lease) => void,
  ) {
    rtcp.on('message', () => {
      this.rtcpPackets++;
    });
    const onError = (): void => {
      this.socketErrors++;
    };
    rtcp.on('error', onError);
    socket.on('error', onError);
  }

  get rtcpPort(): number {
    return this.port + 1;
  }

  release(): Promise<void> {
    this.#released ??= Promise.all([closeUdp(this.socket), closeUdp(this.rtcp)]).then(() => this.onRelease(this));
    return this.#released;
  }
}

export class UdpPortPool {
  readonly #host: string;
  readonly #firstPort: number;
  readonly #pairs: number;
  readonly #recvBufferSize: number | undefined;
  /** Even ports leased or being bound. */
  readonly #busy = new Set<number>();
  readonly #leases = new Set<Lease>();
  #cursor = 0;
  readonly #stats = { leases: 0, releases: 0, bindRetries: 0, exhausted: 0, rtcpPackets: 0 };

  constructor(opts: UdpPortPoolOptions) {
    const { minPort, maxPort } = opts;
    if (!Number.isInteger(minPort) || !Number.isInteger(maxPort) || minPort < 1 || maxPort > 65535 || minPort > maxPort) {
      throw new RangeError(`RTP port range must be integers within 1..65535 with min ≤ max, got ${minPort}..${maxPort}`);
    }
    this.#firstPort = minPort + (minPort & 1);
    this.#pairs = this.#firstPort + 1 <= maxPort ? Math.floor((maxPort - 1 - this.#firstPort) / 2) + 1 : 0;
    if (this.#pairs === 0) throw new RangeError(`RTP port range ${minPort}..${maxPort} holds no even/odd pair`);
    this.#host = opts.host ?? '0.0.0.0';
    this.#recvBufferSize = opts.recvBufferSize;
  }

  /** Port pairs in the range. */
  get capacity(): number {
    return this.#pairs;
  }

  get active(): number {
    return this.#leases.size;
  }

  /** Binds the next free even/odd pair. Rejects with AppError ERR_RTP_PORTS_EXHAUSTED when none is left. */
  /** `n` leases, all or none: on failure the ones already taken are released and the error rethrown. */
  async leaseMany(n: number): Promise<UdpPortLease[]> {
    const leases: UdpPortLease[] = [];
    try {
      for (let i = 0; i < n; i++) leases.push(await this.lease());
      return leases;
    } catch (err) {
      await Promise.all(leases.map((l) => l.release()));
      throw err;
    }
  }

  async lease(): Promise<UdpPortLease> {
    for (let attempt = 0; attempt < this.#pairs; attempt++) {
      const index = (this.#cursor + attempt) % this.#pairs;
      const port = this.#firstPort + index * 2;
      if (this.#busy.has(port)) continue;
      this.#busy.add(port);
      const pair = await this.#bindPair(port);
      if (pair === null) {
        this.#busy.delete(port);
        this.#stats.bindRetries++;
        continue;
      }
      this.#cursor = (index + 1) % this.#pairs;
      const lease = new Lease(this.#host, port, pair[0], pair[1], (l) => this.#onRelease(l));
      this.#leases.add(lease);
      this.#stats.leases++;
      return lease;
    }
    this.#stats.exhausted++;
    throw new AppError('ERR_RTP_PORTS_EXHAUSTED', 'no free RTP port pair in the configured range', {
      category: 'server',
      details: { firstPort: this.#firstPort, pairs: this.#pairs, active: this.#leases.size },
    });
  }

  stats(): UdpPortPoolStats {
    let rtcp = this.#stats.rtcpPackets;
    for (const l of this.#leases) rtcp += l.rtcpPackets;
    return { ...this.#stats, active: this.#leases.size, rtcpPackets: rtcp };
  }

  /** Releases every active lease. */
  async close(): Promise<void> {
    await Promise.all([...this.#leases].map((l) => l.release()));
  }

  /** Both sockets, or null when a port is taken (retry with the next pair). */
  async #bindPair(port: number): Promise<[Socket, Socket] | null> {
    let rtp: Socket;
    try {
      rtp = await bindUdp(port, this.#host);
    } catch (err) {
      if (RETRYABLE_BIND_ERRORS.has(errCode(err) ?? '')) return null;
      throw this.#bindError(err, port);
    }
    let rtcp: Socket;
    try {
      rtcp = await bindUdp(port + 1, this.#host);
    } catch (err) {
      await closeUdp(rtp);
      if (RETRYABLE_BIND_ERRORS.has(errCode(err) ?? '')) return null;
      throw this.#bindError(err, port + 1);
    }
    if (this.#recvBufferSize !== undefined) {
      try {
        rtp.setRecvBufferSize(this.#recvBufferSize);
      } catch (err) {
        await Promise.all([closeUdp(rtp), closeUdp(rtcp)]);
        throw this.#bindError(err, port);
      }
    }
    return [rtp, rtcp];
  }

  #bindError(err: unknown, port: number): AppError {
    return new AppError('ERR_RTP_BIND', 'cannot bind an RTP/RTCP socket', {
      category: 'server',
      cause: err,
      details: { port, host: this.#host, code: errCode(err) },
    });
  }

  #onRelease(lease: Lease): void {
    if (!this.#leases.delete(lease)) return;
    this.#busy.delete(lease.port);
    this.#stats.releases++;
    this.#stats.rtcpPackets += lease.rtcpPackets;
  }
}
