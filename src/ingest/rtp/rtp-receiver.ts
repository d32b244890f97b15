/**
 * Binds one leased RTP socket to an RtpStream (thin I/O adapter): datagrams → stream.push()
 * with the injected clock, events → the callback, in order.
 *
 * In-order packets come out of push() directly. Frames waiting behind a gap (or in the start
 * window) need a poll: a single timer is armed for the stream's next deadline (not sooner than
 * `minPollIntervalMs`) only while something is held, so a clean stream costs no timer wake-ups.
 * close() flushes the stream (held frames and an unfinished DTMF event are delivered), then
 * releases the lease. A throwing callback is counted and reported to `onError`, never allowed to
 * escape into the socket's event loop.
 */
import type { RemoteInfo } from 'node:dgram';
import type { UdpPortLease } from './udp-port-pool.js';
import { RtpStream, type RtpStreamEvent, type RtpStreamOptions, type RtpStreamStats, type RtpSource } from './rtp-stream.js';

export interface RtpReceiverOptions extends RtpStreamOptions {
  readonly lease: UdpPortLease;
  readonly onEvent: (event: RtpStreamEvent) => void;
  /** Callback failures (the event is skipped). */
  readonly onError?: (err: unknown) => void;
  /** Clock for arrival times, ms. Default Date.now (so audio events carry wall-clock arrivalMs). */
  readonly now?: () => number;
  /** Shortest delay between timer polls, ms. Default 10. */
  readonly minPollIntervalMs?: number;
}

export interface RtpReceiverStats extends RtpStreamStats {
  rtcpPortPackets: number;
  socketErrors: number;
  callbackErrors: number;
  timerPolls: number;
}

export class RtpReceiver {
  readonly stream: RtpStream;
  readonly #lease: UdpPortLease;
  readonly #onEvent: (event: RtpStreamEvent) => void;
  readonly #onError: ((err: unknown) => void) | undefined;
  readonly #now: () => number;
  readonly #minPollMs: number;
  readonly #onMessage: (msg: Buffer, rinfo: RemoteInfo) => void;
  #timer: NodeJS.Timeout | null = null;
  #closed: Promise<void> | null = null;
  #callbackErrors = 0;
  #timerPolls = 0;

  constructor(opts: RtpReceiverOptions) {
    this.stream = new RtpStream(opts);
    this.#lease = opts.lease;
    this.#onEvent = opts.onEvent;
    this.#onError = opts.onError;
    this.#now = opts.now ?? Date.now;
    this.#minPollMs = opts.minPollIntervalMs ?? 10;
    this.#onMessage = (msg, rinfo) => {
      this.#deliver(this.stream.push(msg, rinfo, this.#now()));
      this.#schedule();
    };
    this.#lease.socket.on('message', this.#onMessage);
  }

  get port(): number {
    return this.#lease.port;
  }

  get source(): RtpSource | null {
    return this.stream.source;
  }

  get lastPacketAt(): number | null {
    return this.stream.lastPacketAt;
  }

  stats(): RtpReceiverStats {
    return {
      ...this.stream.stats(),
      rtcpPortPackets: this.#lease.rtcpPackets,
      socketErrors: this.#lease.socketErrors,
      callbackErrors: this.#callbackErrors,
      timerPolls: this.#timerPolls,
    };
  }

  /** Stops receiving, delivers what the stream still holds, releases the ports. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#lease.socket.off('message', this.#onMessage);
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    try {
      this.#deliver(this.stream.flush());
    } finally {
      await this.#lease.release();
    }
  }

  readonly #onTimer = (): void => {
    this.#timer = null;
    if (this.#closed !== null) return;
    this.#timerPolls++;
    this.#deliver(this.stream.poll(this.#now()));
    this.#schedule();
  };

  #schedule(): void {
    if (this.#timer !== null || this.#closed !== null) return;
    const deadline = this.stream.nextDeadlineMs;
    if (deadline === Number.POSITIVE_INFINITY) return;
    const delay = Math.max(this.#minPollMs, Math.ceil(deadline - this.#now()));
    this.#timer = setTimeout(this.#onTimer, delay);
    this.#timer.unref();
  }

  #deliver(events: readonly RtpStreamEvent[]): void {
    for (let i = 0; i < events.length; i++) {
      try {
        this.#onEvent(events[i]!);
      } catch (err) {
        this.#callbackErrors++;
        this.#onError?.(err);
      }
    }
  }
}
