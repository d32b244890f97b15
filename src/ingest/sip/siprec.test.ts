import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseSdp } from './sdp.js';
import {
  SiprecError, aorUser, assignSiprecRoles, mapStreamsToParticipants, parseMultipart, parseRecordingMetadata, parseSiprecBody,
} from './siprec.js';

function fixture(name: string, lineEnd: '\n' | '\r\n' = '\n'): Buffer {
  const text = readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
  return Buffer.from(lineEnd === '\n' ? text : text.replace(/\r?\n/g, '\r\n'));
}

const CT = {
  cisco: 'multipart/mixed;boundary=uniqueBoundary',
  sonus: 'multipart/mixed; boundary="sonus-content-delim"',
  acme: 'multipart/mixed;boundary=unique-boundary-1',
};

function body(name: string, ct: string, lineEnd: '\n' | '\r\n' = '\r\n') {
  const parts = parseSiprecBody(fixture(name, lineEnd), ct);
  if (!parts.sdp || !parts.metadata) throw new Error('fixture lacks a part');
  return { sdp: parseSdp(parts.sdp), metadata: parts.metadata };
}

describe('parseMultipart', () => {
  it.each(['\n', '\r\n'] as const)('splits the Cisco body into three parts (line ends %j), without a close delimiter', (eol) => {
    const parts = parseMultipart(fixture('cisco-cube-offer.txt', eol), CT.cisco);
    expect(parts.map((p) => [p.contentType, p.disposition])).toEqual([
      ['application/sdp', 'session'],
      ['application/rs-metadata+xml', 'recording-session'],
      ['application/gtd', 'signal'],
    ]);
    expect(parts[0]!.body.startsWith('v=0')).toBe(true);
    // only the line end right before a delimiter belongs to it: the blank line stays in the part
    expect(parts[1]!.body.endsWith(`</recording>${eol}`)).toBe(true);
    expect(parts[2]!.body).toBe(`IAM,${eol}GCI,5b1f0c2ad93e11eea1b2c3d4e5f60718${eol}`);
  });

  it('stops at the close delimiter (with transport padding) and ignores the epilogue', () => {
    const text = '--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b-- \r\nepilogue\r\n--b\r\n\r\nnot a part';
    const parts = parseMultipart(Buffer.from(text), 'multipart/mixed; boundary=b');
    expect(parts).toHaveLength(1);
    expect(parts[0]!.body).toBe('one');
  });

  it('defaults a part without headers to text/plain', () => {
    const parts = parseMultipart(Buffer.from('preamble\r\n--b\r\n\r\nbody\r\n--b--'), 'multipart/mixed;boundary=b');
    expect(parts[0]).toMatchObject({ contentType: 'text/plain', disposition: null, body: 'body' });
  });

  it.each([
    ['no boundary', 'multipart/mixed', '--b\r\n\r\nx\r\n--b--'],
    ['not multipart', 'application/sdp;boundary=b', '--b\r\n\r\nx\r\n--b--'],
    ['no parts', 'multipart/mixed;boundary=b', 'just text'],
    ['bad part header', 'multipart/mixed;boundary=b', '--b\r\nbroken header\r\n\r\nx\r\n--b--'],
    ['too many parts', 'multipart/mixed;boundary=b', `${'--b\r\n\r\nx\r\n'.repeat(9)}--b--`],
  ])('rejects %s with ERR_SIPREC_MULTIPART', (_name, ct, text) => {
    expect(() => parseMultipart(Buffer.from(text), ct)).toThrow(SiprecError);
  });
});

describe('parseRecordingMetadata', () => {
  it('reads the Cisco (versioned namespace) metadata', () => {
    const { metadata } = body('cisco-cube-offer.txt', CT.cisco);
    expect(metadata.namespace).toBe('urn:ietf:params:xml:ns:recording:1');
    expect(metadata.dataMode).toBe('complete');
    expect(metadata.sessionId).toBe('c2Vzc2lvbi0wMDAwMDAwMQ==');
    expect(metadata.participants).toEqual([
      { id: 'cGFydGljaXBhbnQtY2FsbGVy', aor: 'sip:+15555550142@198.51.100.9', name: null, number: '+15555550142', callingParty: null },
      { id: 'cGFydGljaXBhbnQtYWdlbnQ=', aor: 'sip:7301@203.0.113.5', name: 'Agent 7301', number: '7301', callingParty: null },
    ]);
    expect(metadata.streams).toEqual([{ id: 'c3RyZWFtLWNhbGxlcg==', label: '1' }, { id: 'c3RyZWFtLWFnZW50', label: '2' }]);
    expect(metadata.associations).toEqual([
      { participantId: 'cGFydGljaXBhbnQtY2FsbGVy', send: ['c3RyZWFtLWNhbGxlcg=='], recv: ['c3RyZWFtLWFnZW50'] },
      { participantId: 'cGFydGljaXBhbnQtYWdlbnQ=', send: ['c3RyZWFtLWFnZW50'], recv: ['c3RyZWFtLWNhbGxlcg=='] },
    ]);
    expect(metadata.callData).toBeNull();
  });

  it('reads the Sonus (unversioned, prefixed) metadata with callData and scheme-less AORs', () => {
    const { metadata } = body('sonus-offer.txt', CT.sonus);
    expect(metadata.namespace).toBe('urn:ietf:params:xml:ns:recording');
    // the caller (callData From) is deliberately not the first participant
    expect(metadata.participants.map((p) => [p.aor, p.number, p.name])).toEqual([
      ['5555550199@203.0.113.60', '5555550199', null],
      ['5555550185@198.51.100.40', '5555550185', 'Extension 8500'],
    ]);
    expect(metadata.callData).toEqual({
      from: '"Extension 8500" <sip:5555550185@198.51.100.40>;tag=Xy7qLm2a',
      to: '<sip:5555550199@203.0.113.60>;tag=gK0a1b2c3d',
      callId: '0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9',
    });
  });

  it('reads the pre-RFC Acme shape (id attributes, send inside participant, callingParty)', () => {
    const { metadata } = body('acme-offer.txt', CT.acme);
    expect(metadata.sessionId).toBe('YWNtZS1zZXNzaW9u');
    expect(metadata.participants.map((p) => [p.id, p.callingParty])).toEqual([['YWNtZS1hZ2VudA==', false], ['YWNtZS1jdXN0b21lcg==', true]]);
    expect(metadata.associations).toEqual([
      { participantId: 'YWNtZS1hZ2VudA==', send: ['YWNtZS1zdHJlYW0tYg=='], recv: [] },
      { participantId: 'YWNtZS1jdXN0b21lcg==', send: ['YWNtZS1zdHJlYW0tYQ=='], recv: [] },
    ]);
    expect(metadata.streams.map((s) => s.label)).toEqual(['16777301', '16777302']);
  });

  it('refuses other namespaces, malformed XML and DOCTYPEs (entity expansion)', () => {
    expect(() => parseRecordingMetadata('<recording xmlns="urn:ietf:params:xml:ns:siprec"/>')).toThrow('known namespace');
    expect(() => parseRecordingMetadata('<recording>')).toThrow(SiprecError);
    expect(() => parseRecordingMetadata('<!DOCTYPE r [<!ENTITY a "aaaa">]><recording xmlns="urn:ietf:params:xml:ns:recording:1">&a;</recording>')).toThrow('DOCTYPE');
  });

  it('bounds the number of participants', () => {
    const many = Array.from({ length: 65 }, (_, i) => `<participant participant_id="p${i}"/>`).join('');
    expect(() => parseRecordingMetadata(`<recording xmlns="urn:ietf:params:xml:ns:recording:1">${many}</recording>`)).toThrow('too many');
  });

  it('keeps an unparsable metadata part as an error code next to a usable SDP', () => {
    const text = '--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<recording\r\n--b--';
    const parts = parseSiprecBody(Buffer.from(text), 'multipart/mixed;boundary=b');
    expect(parts).toEqual({ sdp: 'v=0', metadata: null, metadataError: 'ERR_SIPREC_METADATA' });
  });

  it('extracts AOR user parts', () => {
    expect(aorUser('sip:+15555550100@h;user=phone')).toBe('+15555550100');
    expect(aorUser('5555550100@h')).toBe('5555550100');
    expect(aorUser('tel:+15555550100')).toBe('+15555550100');
  });
});

describe('mapStreamsToParticipants', () => {
  it('maps each labelled m-line to the participant that sends it', () => {
    const { sdp, metadata } = body('sonus-offer.txt', CT.sonus);
    const map = mapStreamsToParticipants(metadata, sdp);
    // Sonus: participant a sends stream 2, participant b sends stream 1
    expect(map.map((m) => [m.index, m.label, m.sender?.number])).toEqual([[0, '1', '5555550199'], [1, '2', '5555550185']]);
  });
});

describe('assignSiprecRoles', () => {
  it('Cisco: no callData → SIP From decides; default customer = caller', () => {
    const { sdp, metadata } = body('cisco-cube-offer.txt', CT.cisco);
    const fromCaller = assignSiprecRoles(metadata, sdp, { customer: 'caller' }, '<sip:+15555550142@192.0.2.20>;tag=1');
    expect(fromCaller.basis).toBe('sip-from');
    expect(fromCaller.streams.map((s) => [s.label, s.role, s.basis])).toEqual([['1', 'customer', 'association'], ['2', 'agent', 'association']]);
    // the same body with an unrelated From: first participant is the caller
    const first = assignSiprecRoles(metadata, sdp, { customer: 'caller' }, '<sip:cube@192.0.2.20>;tag=1');
    expect(first.basis).toBe('first-participant');
    expect(first.callerId).toBe('cGFydGljaXBhbnQtY2FsbGVy');
    // outbound campaigns: the callee is the customer
    const outbound = assignSiprecRoles(metadata, sdp, { customer: 'callee' });
    expect(outbound.streams.map((s) => s.role)).toEqual(['agent', 'customer']);
  });

  it('Sonus: callData From names the caller, who sends label 2', () => {
    const { sdp, metadata } = body('sonus-offer.txt', CT.sonus);
    const r = assignSiprecRoles(metadata, sdp, { customer: 'caller' }, '<sip:sbc@192.0.2.31>;tag=x');
    expect(r.basis).toBe('call-data');
    expect(r.streams.map((s) => [s.label, s.role, s.participant?.number])).toEqual([
      ['1', 'agent', '5555550199'],
      ['2', 'customer', '5555550185'],
    ]);
  });

  it('Acme: callingParty beats participant order', () => {
    const { sdp, metadata } = body('acme-offer.txt', CT.acme);
    const r = assignSiprecRoles(metadata, sdp, { customer: 'caller' });
    expect(r.basis).toBe('calling-party');
    expect(r.streams.map((s) => [s.label, s.role])).toEqual([['16777301', 'customer'], ['16777302', 'agent']]);
  });

  it('agentAorPattern overrides the caller rule when it separates the participants', () => {
    const { sdp, metadata } = body('sonus-offer.txt', CT.sonus);
    const r = assignSiprecRoles(metadata, sdp, { customer: 'caller', agentAorPattern: /^5555550185$/ });
    expect(r.basis).toBe('agent-pattern');
    expect(r.streams.map((s) => s.role)).toEqual(['customer', 'agent']);
    // AOR patterns see Sonus's scheme-less AORs with sip: added
    const byAor = assignSiprecRoles(metadata, sdp, { customer: 'caller', agentAorPattern: /^sip:5555550185@/ });
    expect(byAor.streams.map((s) => s.role)).toEqual(['customer', 'agent']);
    // a pattern matching everyone does not decide
    const all = assignSiprecRoles(metadata, sdp, { customer: 'caller', agentAorPattern: /5555/g });
    expect(all.basis).toBe('call-data');
  });

  it('falls back to m-line order when no stream association exists (hold re-INVITE)', () => {
    const { sdp, metadata } = body('cisco-cube-hold-offer.txt', CT.cisco);
    const r = assignSiprecRoles(metadata, sdp, { customer: 'caller' });
    expect(r.streams.map((s) => [s.role, s.basis, s.participant?.number])).toEqual([
      ['customer', 'order', '+15555550177'],
      ['agent', 'order', '7302'],
    ]);
  });

  it('reports no role when the metadata cannot tie a line to anyone', () => {
    const { sdp } = body('cisco-cube-offer.txt', CT.cisco);
    const meta = parseRecordingMetadata('<recording xmlns="urn:ietf:params:xml:ns:recording:1"><participant participant_id="x"/></recording>');
    const r = assignSiprecRoles(meta, sdp, { customer: 'caller' });
    expect(r.streams.map((s) => [s.role, s.basis])).toEqual([[null, 'none'], [null, 'none']]);
  });
});
