// A client's secret that is not known yet: the one the Python server sealed
// in its clients.pickle (`gpg --symmetric` under a passphrase made from the
// clients.conf secret), which takes gpg's key derivation to open (~70 ms of
// a core; minutes for a big fleet). A server switching from the reference
// serves at once and opens these in the background, each asking client's
// first (state/secret-opening.ts); meanwhile the client's settings hold a
// placeholder in place of its secret.
//
// The placeholder is an empty Buffer of its own, known by its identity: it
// travels with the settings wherever they are copied (a reload, a new key),
// and anything that sets a secret (D-Bus Secret, a reload that changes
// clients.conf's) replaces it, so the new secret wins without bookkeeping.
// The approval gate never gives a placeholder: it waits for the opening.
// Were one given all the same, the client would get an empty secret, never
// another client's.

/** A sealed secret and the clients.conf secret to open it with. */
export interface SecretToOpen {
  readonly sealed: Buffer;
  readonly configSecret: Buffer;
}

const toOpen = new WeakMap<Buffer, SecretToOpen>();

/** A new placeholder for the secret `sealed` holds. */
export function placeholderFor(sealed: SecretToOpen): Buffer {
  const placeholder = Buffer.alloc(0);
  toOpen.set(placeholder, sealed);
  return placeholder;
}

/** What `secret` is waiting for, when it is a placeholder. */
export function secretToOpen(secret: Buffer): SecretToOpen | undefined {
  return toOpen.get(secret);
}
