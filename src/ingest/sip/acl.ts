/**
 * Source allow-list for SIP signalling: CIDR ranges (IPv4, IPv6) checked with ipaddr.js.
 * IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket reports for IPv4
 * peers, RFC 4291 §2.5.5.2) are matched as IPv4, and so are IPv4-mapped ranges.
 * A bare address is a /32 or /128. 'any' allows everything (explicit, never a default).
 */
import ipaddr from 'ipaddr.js';
import { AppError } from '../../core/errors.js';

export interface SourceAcl {
  allows(address: string): boolean;
}

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

function parseRange(entry: string): Range {
  const text = entry.trim();
  let range: Range;
  try {
    if (text.includes('/')) range = ipaddr.parseCIDR(text);
    else {
      const a = ipaddr.parse(text);
      range = [a, a.kind() === 'ipv4' ? 32 : 128];
    }
  } catch {
    throw new AppError('ERR_SIP_CONFIG', `invalid CIDR in SIP allow-list: ${text}`, { category: 'invalid_request' });
  }
  const [addr, bits] = range;
  if (addr instanceof ipaddr.IPv6 && addr.isIPv4MappedAddress() && bits >= 96) {
    return [addr.toIPv4Address(), bits - 96];
  }
  return range;
}

export function createSourceAcl(allow: readonly string[] | 'any'): SourceAcl {
  if (allow === 'any') return { allows: () => true };
  const ranges = allow.map(parseRange);
  return {
    allows(address: string): boolean {
      let addr: ipaddr.IPv4 | ipaddr.IPv6;
      try {
        addr = ipaddr.process(address); // IPv4-mapped IPv6 → IPv4
      } catch {
        return false;
      }
      return ranges.some(([net, bits]) => net.kind() === addr.kind() && addr.match(net, bits));
    },
  };
}
