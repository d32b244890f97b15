import { describe, expect, it } from 'vitest';
import { createSourceAcl } from './acl.js';

describe('createSourceAcl', () => {
  const acl = createSourceAcl(['10.0.0.0/8', '192.0.2.7', '2001:db8::/32', '::ffff:198.51.100.0/120']);

  it.each([
    ['10.1.2.3', true],
    ['11.0.0.1', false],
    ['192.0.2.7', true],
    ['192.0.2.8', false],
    ['2001:db8::1', true],
    ['2001:db9::1', false],
    ['::ffff:10.9.9.9', true], // IPv4-mapped source matched as IPv4
    ['::ffff:11.0.0.1', false],
    ['198.51.100.20', true], // IPv4-mapped range matched as IPv4
    ['198.51.101.1', false],
    ['not-an-ip', false],
  ])('%s → %s', (address, allowed) => {
    expect(acl.allows(address)).toBe(allowed);
  });

  it('allows everything only when told so, nothing for an empty list', () => {
    expect(createSourceAcl('any').allows('203.0.113.1')).toBe(true);
    expect(createSourceAcl([]).allows('127.0.0.1')).toBe(false);
  });

  it('refuses invalid entries at construction', () => {
    expect(() => createSourceAcl(['10.0.0.0/33'])).toThrow('invalid CIDR');
    expect(() => createSourceAcl(['example.com'])).toThrow('invalid CIDR');
  });
});
