import { ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import { bucketOfKey } from '../routing/key-bucket.js';
import { PRINTABLE_TEXT, typeOf } from './validation.js';

/** A login identity: who vouches (`provider`) and for whom (`subject`). */
export interface Identity {
  provider: string;
  subject: string;
}

/** How the app wants a provider's subjects compared. */
export interface IdentityProviderOptions {
  /** Case-fold subjects before storing and comparing them (default: false, except `username` and `email`). */
  caseInsensitive?: boolean;
}

/** An identity in its stored form, with its bucket: where its directory row lives. */
export interface IdentityKey extends Identity {
  readonly bucket: number;
}

export const IDENTITY_PROVIDER_PATTERN = /^[a-z0-9_.-]{1,32}$/;
export const IDENTITY_SUBJECT_MAX_LENGTH = 256;
/** Providers compared case-insensitively unless the app says otherwise. */
export const CASE_INSENSITIVE_PROVIDERS: readonly string[] = ['username', 'email'];
export const REQUEST_ID_PATTERN = /^[!-~]{1,128}$/;

// Longer input (UTF-16 units) is refused before normalising it, so a hostile 10 MB string costs nothing.
const RAW_SUBJECT_LIMIT = 4 * IDENTITY_SUBJECT_MAX_LENGTH;
const PROVIDER_OPTION_KEYS: readonly string[] = ['caseInsensitive'];

/**
 * Unicode full case folding (CaseFolding.txt, statuses C and F, without the Turkic T mappings) of
 * NFC text, through the engine's case mappings: lower, upper, lower maps every member of a case
 * class to one string (ß, ẞ and SS to ss; ﬁ to fi; K, k and the Kelvin sign to k), and final
 * sigma is folded to σ as folding does. Dotless ı is the one letter whose upper case (I) it shares
 * with a different letter: folding keeps it apart, so it is passed through untouched. No
 * compatibility mapping (NFKC): full-width and other look-alike letters stay distinct identities.
 */
export function foldCase(text: string): string {
  return text
    .normalize('NFC')
    .split('ı')
    .map((part) => part.toLowerCase().toUpperCase().toLowerCase().replaceAll('ς', 'σ'))
    .join('ı')
    .normalize('NFC');
}

/**
 * The provider rules of one Accounts instance: `username` and `email` case-insensitive, every other
 * provider compared exactly, unless `identityProviders` says otherwise.
 */
export class IdentityRules {
  private readonly caseInsensitive: ReadonlySet<string>;

  constructor(providers: unknown = {}) {
    if (typeof providers !== 'object' || providers === null || Array.isArray(providers)) {
      throw new ValidationError('identityProviders', `must be an object of provider options, got ${showValue(providers)}`);
    }
    const folded = new Set(CASE_INSENSITIVE_PROVIDERS);
    for (const [name, options] of Object.entries(providers as Record<string, unknown>)) {
      const field = `identityProviders.${name}`;
      if (!IDENTITY_PROVIDER_PATTERN.test(name)) throw new ValidationError(field, 'a provider name is 1 to 32 of a-z, 0-9, _ . -');
      if (typeof options !== 'object' || options === null || Array.isArray(options))
        throw new ValidationError(field, `must be an object, got ${showValue(options)}`);
      for (const key of Object.keys(options)) {
        if (!PROVIDER_OPTION_KEYS.includes(key))
          throw new ValidationError(`${field}.${key}`, `is not a provider option (allowed: ${PROVIDER_OPTION_KEYS.join(', ')})`);
      }
      const ci = (options as IdentityProviderOptions).caseInsensitive;
      if (ci !== undefined && typeof ci !== 'boolean') throw new ValidationError(`${field}.caseInsensitive`, `must be a boolean, got ${showValue(ci)}`);
      if (ci === true) folded.add(name);
      if (ci === false) folded.delete(name);
    }
    this.caseInsensitive = folded;
  }

  isCaseInsensitive(provider: string): boolean {
    return this.caseInsensitive.has(provider);
  }

  /** The stored form of an identity, or ValidationError naming the field (`identity.provider`, `identity.subject`). */
  normalize(value: unknown, field = 'identity'): Identity {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new ValidationError(field, `must be { provider, subject }, got ${showValue(value)}`);
    for (const key of Object.keys(value)) {
      if (key !== 'provider' && key !== 'subject') throw new ValidationError(`${field}.${key}`, 'is not a field of an identity (allowed: provider, subject)');
    }
    const { provider, subject } = value as Record<string, unknown>;
    if (typeof provider !== 'string' || !IDENTITY_PROVIDER_PATTERN.test(provider)) {
      throw new ValidationError(`${field}.provider`, `must be 1 to 32 of a-z, 0-9, _ . - (e.g. "username", "steam"), got ${showValue(provider)}`);
    }
    return { provider, subject: this.normalizeSubject(provider, subject, `${field}.subject`) };
  }

  /** The stored form and the bucket. */
  key(value: unknown, field = 'identity'): IdentityKey {
    const id = this.normalize(value, field);
    return { ...id, bucket: identityBucket(id) };
  }

  private normalizeSubject(provider: string, value: unknown, field: string): string {
    if (typeof value !== 'string') throw new ValidationError(field, `must be a string, got ${typeOf(value)}`);
    if (value.length > RAW_SUBJECT_LIMIT) throw new ValidationError(field, `must be at most ${IDENTITY_SUBJECT_MAX_LENGTH} characters`);
    const nfc = value.normalize('NFC');
    const subject = this.isCaseInsensitive(provider) ? foldCase(nfc) : nfc;
    const length = [...subject].length;
    if (length === 0) throw new ValidationError(field, 'must not be empty');
    if (length > IDENTITY_SUBJECT_MAX_LENGTH) throw new ValidationError(field, `must be at most ${IDENTITY_SUBJECT_MAX_LENGTH} characters, got ${length}`);
    if (!PRINTABLE_TEXT.test(subject)) {
      throw new ValidationError(field, 'may hold only letters, digits, punctuation, symbols and spaces (no control, format or invisible characters)');
    }
    if (subject.startsWith(' ') || subject.endsWith(' ')) throw new ValidationError(field, 'must not start or end with a space');
    return subject;
  }
}

/** The bucket of a stored identity: a pure function of it (docs/identities.md); migration 0008 checks the same in SQL. */
export function identityBucket(identity: Identity): number {
  // The provider never holds ':', so provider:subject names one identity only.
  return bucketOfKey(`${identity.provider}:${identity.subject}`);
}

export function validateRequestId(value: unknown, field = 'requestId'): string {
  if (typeof value !== 'string' || !REQUEST_ID_PATTERN.test(value)) {
    throw new ValidationError(field, `must be 1 to 128 printable ASCII characters without spaces (e.g. a UUID), got ${showValue(value)}`);
  }
  return value;
}
