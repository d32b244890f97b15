/**
 * Classic libpcap file reader (the tcpdump format, https://www.tcpdump.org/manpages/pcap-savefile.5.html;
 * not pcapng), for replaying RTP captures. Pure except readPcapFile().
 *
 * Global header, 24 bytes: magic 0xA1B2C3D4 (µs timestamps) or 0xA1B23C4D (ns), written in the
 * capturing host's byte order (so read either way), version, thiszone, sigfigs, snaplen,
 * link type. Each record: ts_sec, ts_frac, captured length, original length, then the frame.
 * Link types: 1 Ethernet (14-byte header, 802.1Q / 802.1ad tags skipped) and 113 Linux cooked
 * (SLL, 16-byte header, protocol at offset 14). Only IPv4 (RFC 791; non-first fragments and
 * fragmented datagrams skipped) carrying UDP (RFC 768) is returned; everything else is counted.
 */
import { readFile } from 'node:fs/promises';
import { AppError } from '../core/errors.js';

export interface PcapUdpDatagram {
  /** Capture time, ms since the epoch (fractional: µs or ns precision). */
  readonly tsMs: number;
  readonly src: string;
  readonly dst: string;
  readonly srcPort: number;
  readonly dstPort: number;
  /** UDP payload (a view into the file buffer). */
  readonly payload: Uint8Array;
}

export interface PcapStats {
  records: number;
  udp: number;
  /** Not IPv4 (ARP, IPv6, …). */
  notIpv4: number;
  /** IPv4 but not UDP. */
  notUdp: number;
  /** IPv4 fragments (reassembly is not supported). */
  fragments: number;
  /** Frames cut short by the snap length, or malformed headers. */
  truncated: number;
  /** A record header or body past the end of the file (the reader stops there). */
  truncatedFile: boolean;
}

export interface PcapFile {
  readonly linkType: number;
  readonly nanosecond: boolean;
  readonly datagrams: readonly PcapUdpDatagram[];
  readonly stats: PcapStats;
}

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_LINUX_SLL = 113;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;

function pcapError(message: string, details: Record<string, unknown> = {}): AppError {
  return new AppError('ERR_SIMULATOR_PCAP_FORMAT', message, { category: 'invalid_request', details });
}

/** Parses a whole pcap file. Throws AppError ERR_SIMULATOR_PCAP_FORMAT for a bad global header. */
export function readPcap(buf: Uint8Array): PcapFile {
  if (buf.length < 24) throw pcapError('pcap: shorter than the 24-byte global header', { bytes: buf.length });
  const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const magicBE = view.getUint32(0, false);
  let le: boolean;
  let nanosecond: boolean;
  if (magicBE === 0xa1b2c3d4 || magicBE === 0xa1b23c4d) {
    le = false;
    nanosecond = magicBE === 0xa1b23c4d;
  } else {
    const magicLE = view.getUint32(0, true);
    if (magicLE !== 0xa1b2c3d4 && magicLE !== 0xa1b23c4d) {
      throw pcapError('pcap: unknown magic number (pcapng is not supported)', { magic: magicBE.toString(16) });
    }
    le = true;
    nanosecond = magicLE === 0xa1b23c4d;
  }
  const linkType = view.getUint32(20, le) & 0x0fffffff; // upper bits: FCS info
  if (linkType !== LINKTYPE_ETHERNET && linkType !== LINKTYPE_LINUX_SLL) {
    throw pcapError(`pcap: unsupported link type ${linkType} (need 1 Ethernet or 113 Linux cooked)`, { linkType });
  }
  const fracPerMs = nanosecond ? 1e6 : 1e3;
  const stats: PcapStats = { records: 0, udp: 0, notIpv4: 0, notUdp: 0, fragments: 0, truncated: 0, truncatedFile: false };
  const datagrams: PcapUdpDatagram[] = [];
  let off = 24;
  while (off < buf.length) {
    if (off + 16 > buf.length) {
      stats.truncatedFile = true;
      break;
    }
    const tsSec = view.getUint32(off, le);
    const tsFrac = view.getUint32(off + 4, le);
    const inclLen = view.getUint32(off + 8, le);
    const start = off + 16;
    const end = start + inclLen;
    if (end > buf.length) {
      stats.truncatedFile = true;
      break;
    }
    off = end;
    stats.records++;
    const d = parseFrame(buf, view, start, end, linkType, stats, tsSec * 1000 + tsFrac / fracPerMs);
    if (d !== null) datagrams.push(d);
  }
  return { linkType, nanosecond, datagrams, stats };
}

/** The UDP datagrams of a pcap file, in capture order. */
export function parsePcap(buf: Uint8Array): readonly PcapUdpDatagram[] {
  return readPcap(buf).datagrams;
}

export async function readPcapFile(path: string): Promise<PcapFile> {
  return readPcap(await readFile(path));
}

function ipv4(view: DataView, off: number): string {
  return `${view.getUint8(off)}.${view.getUint8(off + 1)}.${view.getUint8(off + 2)}.${view.getUint8(off + 3)}`;
}

function parseFrame(
  buf: Uint8Array,
  view: DataView,
  start: number,
  end: number,
  linkType: number,
  stats: PcapStats,
  tsMs: number,
): PcapUdpDatagram | null {
  let off: number;
  let etherType: number;
  if (linkType === LINKTYPE_ETHERNET) {
    off = start + 14;
    if (off > end) return truncated(stats);
    etherType = view.getUint16(start + 12);
    while (etherType === ETHERTYPE_VLAN || etherType === ETHERTYPE_QINQ) {
      if (off + 4 > end) return truncated(stats);
      etherType = view.getUint16(off + 2);
      off += 4;
    }
  } else {
    off = start + 16;
    if (off > end) return truncated(stats);
    etherType = view.getUint16(start + 14);
  }
  if (etherType !== ETHERTYPE_IPV4) {
    stats.notIpv4++;
    return null;
  }
  if (off + 20 > end) return truncated(stats);
  const vihl = view.getUint8(off);
  const ihl = (vihl & 0x0f) * 4;
  if (vihl >> 4 !== 4 || ihl < 20) {
    stats.notIpv4++;
    return null;
  }
  const totalLen = view.getUint16(off + 2);
  const flagsFrag = view.getUint16(off + 6);
  const protocol = view.getUint8(off + 9);
  if (protocol !== 17) {
    stats.notUdp++;
    return null;
  }
  if ((flagsFrag & 0x3fff) !== 0) {
    // MF set or a non-zero fragment offset
    stats.fragments++;
    return null;
  }
  const ipEnd = off + totalLen;
  const udp = off + ihl;
  if (totalLen < ihl + 8 || ipEnd > end) return truncated(stats);
  const udpLen = view.getUint16(udp + 4);
  if (udpLen < 8 || udp + udpLen > ipEnd) return truncated(stats);
  stats.udp++;
  return {
    tsMs,
    src: ipv4(view, off + 12),
    dst: ipv4(view, off + 16),
    srcPort: view.getUint16(udp),
    dstPort: view.getUint16(udp + 2),
    payload: buf.subarray(udp + 8, udp + udpLen),
  };
}

function truncated(stats: PcapStats): null {
  stats.truncated++;
  return null;
}
