/** Role assignment of SIP calls (pure part of src/ingest/sip-calls.ts). */
import { describe, expect, it } from 'vitest';
import { assignRoles } from './sip-calls.js';
import type { InviteOffer, OfferedMedia } from './sip/types.js';

function media(index: number, label: string | null = null): OfferedMedia {
  return {
    index,
    media: 'audio',
    label,
    remoteAddress: '10.0.0.1',
    remotePort: 20000 + index * 2,
    codec: { name: 'PCMU', payloadType: 0 },
    telephoneEventPt: 101,
    ptimeMs: 20,
    maxptimeMs: null,
    direction: 'sendonly',
  };
}

function offer(headers: Record<string, string>, siprecRoles?: Array<'customer' | 'agent' | null>): InviteOffer {
  return {
    headers,
    siprec: siprecRoles
      ? {
          metadata: null,
          metadataError: null,
          roles: {
            callerId: 'p1',
            basis: 'sip-from',
            streams: siprecRoles.map((role, index) => ({ index, label: String(index + 1), role, participant: null, basis: 'association' as const })),
          },
        }
      : null,
  } as unknown as InviteOffer;
}

describe('assignRoles', () => {
  const two = [media(0, '1'), media(1, '2')];

  it('takes SIPREC roles from the metadata mapping', () => {
    expect(assignRoles(offer({}, ['agent', 'customer']), two, 'X-Callscribe-Role')).toEqual(['agent', 'customer']);
  });

  it('falls back to m-line order when the metadata cannot tell or maps both streams to one role', () => {
    expect(assignRoles(offer({}, [null, 'agent']), two, 'X-Callscribe-Role')).toEqual(['customer', 'agent']);
    expect(assignRoles(offer({}, ['agent', 'agent']), two, 'X-Callscribe-Role')).toEqual(['customer', 'agent']);
  });

  it('plain SIP: X-Callscribe-Roles per m-line, the role header for one stream, else order', () => {
    expect(assignRoles(offer({ 'x-callscribe-roles': 'agent, customer' }), two, 'X-Callscribe-Role')).toEqual(['agent', 'customer']);
    expect(assignRoles(offer({ 'x-callscribe-role': 'agent' }), [media(0)], 'X-Callscribe-Role')).toEqual(['agent']);
    expect(assignRoles(offer({ 'x-leg': 'agent' }), [media(0)], 'X-Leg')).toEqual(['agent']);
    expect(assignRoles(offer({ 'x-callscribe-role': 'boss' }), [media(0)], 'X-Callscribe-Role')).toEqual(['customer']);
    expect(assignRoles(offer({ 'x-callscribe-roles': 'agent,agent' }), two, 'X-Callscribe-Role')).toEqual(['customer', 'agent']);
    expect(assignRoles(offer({}), two, 'X-Callscribe-Role')).toEqual(['customer', 'agent']);
  });
});
