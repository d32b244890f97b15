/**
 * SIP over a byte stream (TCP), sans-I/O: splits the stream into messages by Content-Length
 * (RFC 3261 §18.3, mandatory on stream transports), with bounds.
 * - CRLFs before a start line are ignored (§7.5); a CRLFCRLF "ping" between messages is a
 *   RFC 5626 §4.4.1 keep-alive (the adapter answers CRLF);
 * - the header section must end within `maxHeaderBytes`; Content-Length must be present, a
 *   decimal, consistent, and within `maxBodyBytes` / `maxMessageBytes`.
 * A framing error is fatal for the connection (the stream cannot be resynchronised); it carries
 * the header section when one was read, so the adapter can still answer 400/513 before closing.
 */
import { DEFAULT_SIP_LIMITS, SipError, type SipLimits } from './message.js';

export type FramerOutput =
  | { readonly kind: 'message'; readonly data: Buffer }
  | { readonly kind: 'keepalive' }
  | { readonly kind: 'error'; readonly error: SipError; readonly headerSection: Buffer | null };

const CRLFCRLF = Buffer.from('\r\n\r\n');
const LFLF = Buffer.from('\n\n');

export class SipStreamFramer {
  private buffer: Buffer = Buffer.alloc(0);
  private failed = false;

  constructor(private readonly limits: SipLimits = DEFAULT_SIP_LIMITS) {}

  get buffered(): number {
    return this.buffer.length;
  }

  push(chunk: Buffer): FramerOutput[] {
    if (this.failed) return [];
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const out: FramerOutput[] = [];
    for (;;) {
      // leading CRLFs / keep-alive pings
      while (this.buffer.length > 0 && (this.buffer[0] === 0x0d || this.buffer[0] === 0x0a)) {
        if (this.buffer.length >= 4 && this.buffer.subarray(0, 4).equals(CRLFCRLF)) {
          out.push({ kind: 'keepalive' });
          this.buffer = this.buffer.subarray(4);
        } else if (this.buffer.length < 4 && this.buffer.every((b) => b === 0x0d || b === 0x0a)) {
          return out; // maybe the start of a ping: wait
        } else {
          this.buffer = this.buffer.subarray(this.buffer[0] === 0x0d && this.buffer[1] === 0x0a ? 2 : 1);
        }
      }
      if (this.buffer.length === 0) return out;
      const crlf = this.buffer.indexOf(CRLFCRLF);
      const lf = this.buffer.indexOf(LFLF);
      const [end, sepLen] = crlf >= 0 && (lf < 0 || crlf < lf) ? [crlf, 4] : lf >= 0 ? [lf, 2] : [-1, 0];
      if (end < 0) {
        if (this.buffer.length > this.limits.maxHeaderBytes) return this.fail(out, new SipError('ERR_SIP_TOO_LARGE', 'header section too large', { status: 513 }), null);
        return out;
      }
      if (end > this.limits.maxHeaderBytes) return this.fail(out, new SipError('ERR_SIP_TOO_LARGE', 'header section too large', { status: 513 }), null);
      const headerSection = Buffer.from(this.buffer.subarray(0, end + sepLen));
      const values = [...headerSection.toString('latin1').matchAll(/^(?:content-length|l)[ \t]*:[ \t]*(.*?)[ \t]*\r?$/gim)].map((m) => m[1]!);
      if (values.length === 0) {
        return this.fail(out, new SipError('ERR_SIP_MISSING_HEADER', 'Content-Length is required on stream transports', { header: 'content-length' }), headerSection);
      }
      if (!values.every((v) => /^\d{1,9}$/.test(v) && v === values[0])) {
        return this.fail(out, new SipError('ERR_SIP_BAD_HEADER', 'bad Content-Length', { header: 'content-length' }), headerSection);
      }
      const length = Number(values[0]);
      const total = end + sepLen + length;
      if (length > this.limits.maxBodyBytes || total > this.limits.maxMessageBytes) {
        return this.fail(out, new SipError('ERR_SIP_TOO_LARGE', 'message too large', { status: length > this.limits.maxBodyBytes ? 413 : 513 }), headerSection);
      }
      if (this.buffer.length < total) return out;
      out.push({ kind: 'message', data: Buffer.from(this.buffer.subarray(0, total)) });
      this.buffer = this.buffer.subarray(total);
    }
  }

  private fail(out: FramerOutput[], error: SipError, headerSection: Buffer | null): FramerOutput[] {
    this.failed = true;
    this.buffer = Buffer.alloc(0);
    out.push({ kind: 'error', error, headerSection });
    return out;
  }
}
