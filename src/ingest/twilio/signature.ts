/**
 * X-Twilio-Signature (spec telephony-ingest.md §1.6; https://www.twilio.com/docs/usage/webhooks/webhooks-security):
 * base64(HMAC-SHA1(authToken, url + Σ sorted(name) name+value)).
 *
 * For the Media Streams WebSocket upgrade there is no body: the signed string is the URL alone
 * (`params = {}`), and the URL is the PUBLIC `wss://` form Twilio connected to, built from
 * configuration (env `PUBLIC_URL`), never from request headers — behind a TLS-terminating
 * proxy the request looks like `http://internal-host/...` and would never match.
 *
 * Pitfalls this module does not hide: the URL must be byte-identical to what Twilio requested
 * (scheme, host, port, path, query, percent-encoding); use the primary Auth Token; the
 * signature has no timestamp or nonce (replayable), so pair it with a per-call token in a
 * `<Parameter>` checked after `start`.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export type TwilioSignatureParams = Readonly<Record<string, string | readonly string[]>>;

/**
 * The string Twilio signs: the URL, then every parameter sorted by name (code-unit order, as
 * Twilio's helper libraries do) as `name + value` with no separators. A parameter with several
 * values contributes `name + value` once per distinct value, values sorted (as twilio-node).
 */
export function twilioSignedString(url: string, params: TwilioSignatureParams = {}): string {
  let s = url;
  const names = Object.keys(params).sort();
  for (const name of names) {
    const value = params[name];
    if (value === undefined) continue;
    if (typeof value === 'string') {
      s += name + value;
    } else {
      for (const v of [...new Set(value)].sort()) s += name + v;
    }
  }
  return s;
}

/** base64(HMAC-SHA1(authToken, url + sorted params)). */
export function computeTwilioSignature(
  authToken: string,
  url: string,
  params: TwilioSignatureParams = {},
): string {
  return createHmac('sha1', authToken).update(twilioSignedString(url, params), 'utf8').digest('base64');
}

/**
 * Validates an X-Twilio-Signature value in constant time. False when the signature is missing
 * or empty, when its length differs from the expected one, or when it does not match.
 */
export function validateTwilioSignature(
  authToken: string,
  url: string,
  signature: string | undefined,
  params: TwilioSignatureParams = {},
): boolean {
  if (typeof signature !== 'string' || signature.length === 0 || authToken.length === 0) return false;
  const expected = Buffer.from(computeTwilioSignature(authToken, url, params), 'utf8');
  const given = Buffer.from(signature, 'utf8');
  if (given.length !== expected.length) return false;
  return timingSafeEqual(given, expected);
}
