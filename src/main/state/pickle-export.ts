// The Python server's state file, left by this one as it stops: so that an
// admin who goes back to the Python server finds the clients as this
// server leaves them (disabled, enabled or removed with mandos-ctl, secrets
// and settings set at run time, checker results), as the Python server
// finds them after its own stop. STATEDIR/clients.pickle as the reference's
// cleanup() writes it: `pickle.dump((clients, client_settings), f,
// protocol=2)`, where `clients` holds each client's saved attributes and
// its secret sealed with `gpg --symmetric` under a passphrase made from its
// clients.conf secret (PGPEngine.password_encode), and `client_settings`
// is clients.conf's settings as its Client.config_parser made them, less
// the secret: what its restore compares with clients.conf to tell what the
// admin changed there meanwhile (docs/STATE.md, "Going back to the Python
// server").
//
// clients.json records this file's SHA-256 (`importedPickle`), so that a
// start of ours never imports what it wrote itself (pickle-import.ts).

import type { ClientRuntime } from "../clients/contract.js";
import type { ClientSettings } from "../clients/settings.js";
import { secretToOpen } from "../clients/secret-to-open.js";
import { passwordEncode } from "./reference-secret.js";
import { FlatDict, pickleChunks, pyTuple, StreamedDict, type PickleBytes } from "./pickle-write.js";
import { deriveSealKey, sealWithKey, type SealKey } from "./symmetric-key.js";
import { PyDatetime, PyTimedelta } from "./unpickle.js";

/**
 * The S2K count of the secrets sealed here (RFC 4880 §3.7.1.3's coded
 * 0x60: 65,536 octets hashed, ~0.1 ms an opening), not gpg's default of
 * 65 MB (~70 ms an opening, 12 minutes of a stop for 10,000 clients). The
 * passphrase is the client's clients.conf secret, itself an OpenPGP
 * message with a random session key: no count adds to what guessing it
 * costs. gpg opens any count.
 */
export const PICKLE_SEAL_COUNT_BYTE = 0x60;

/**
 * The reference's `client_structure` of a client with D-Bus (ClientDBus):
 * its attribute names, which its restore reads back and then makes anew.
 */
const CLIENT_STRUCTURE: readonly string[] = [
  "bus", "name", "server_settings", "key_id", "fingerprint", "created", "checker_initiator_tag", "disable_initiator_tag",
  "checker_callback_tag", "current_checker_command", "approved", "changedstate", "client_structure", "approval_delay",
  "approval_duration", "approvals_pending", "approved_by_default", "checker", "checker_command", "connection", "enabled",
  "expires", "extended_timeout", "host", "interval", "last_approval_request", "last_checked_ok", "last_checker_status",
  "last_enabled", "locations", "secret", "timeout",
];

/**
 * The stop's key derivations, done ahead of it (warmReferencePickle): the
 * S2K key of each clients.conf secret (keyed by its Buffer, a new one at
 * each change, as state-file.ts's sealed pieces are), 40 bytes a client.
 * Each is taken when a pickle uses it, so that no two messages share a
 * salt and key. Derived at the stop, 20,000 clients' keys were ~4 s of
 * its ~10 (docs/BENCHMARK.md, "The stop").
 */
const keysAhead = new WeakMap<Buffer, SealKey>();

const sealKey = (configSecret: Buffer): SealKey => deriveSealKey(passwordEncode(configSecret), PICKLE_SEAL_COUNT_BYTE);

/**
 * Derives the keys that a stop's pickle would seal these clients' secrets
 * with, until `budgetMs` have passed; true once `config` yielded them all.
 * The server does it a slice at a time after its start (as it warms its
 * first save), so that its stop only ciphers.
 */
export function warmReferencePickle(config: Iterator<ClientSettings>, budgetMs: number): boolean {
  const until = performance.now() + budgetMs;
  for (;;) {
    const next = config.next();
    if (next.done) return true;
    const secret = next.value.secret;
    if (!keysAhead.has(secret)) keysAhead.set(secret, sealKey(secret));
    if (performance.now() >= until) return false;
  }
}

/** `secret` sealed under `configSecret` as gpg would open it: with the key derived ahead, if it was. */
function sealForPickle(secret: Buffer, configSecret: Buffer, counts: { ahead: number; now: number }): Buffer {
  let key = keysAhead.get(configSecret);
  if (key) {
    keysAhead.delete(configSecret);
    counts.ahead++;
  } else {
    key = sealKey(configSecret);
    counts.now++;
  }
  const sealed = sealWithKey(secret, key);
  key.key.fill(0);
  return sealed;
}

const time = (ms: number | null): PyDatetime | null => (ms === null ? null : new PyDatetime(ms));

/** clients.conf's settings of one client as the reference's Client.config_parser makes them, less the secret. */
function configSettings(conf: ClientSettings): FlatDict {
  return new FlatDict([
    "host", conf.host,
    "approved_by_default", conf.approvedByDefault,
    "enabled", conf.enabled,
    "key_id", conf.keyId,
    "fingerprint", conf.fingerprint,
    "timeout", new PyTimedelta(conf.timeout),
    "extended_timeout", new PyTimedelta(conf.extendedTimeout),
    "interval", new PyTimedelta(conf.interval),
    "approval_delay", new PyTimedelta(conf.approvalDelay),
    "approval_duration", new PyTimedelta(conf.approvalDuration),
    "checker_command", conf.checker,
    "last_approval_request", null,
    "last_checked_ok", null,
    "last_checker_status", -2,
  ]);
}

/**
 * One client's saved attributes, as the reference's cleanup() keeps them:
 * its settings in effect, its run-time values, and its secret sealed under
 * its clients.conf secret. A secret still sealed by the Python server
 * (not yet opened after a switch) goes back as it came.
 */
function clientAttributes(conf: ClientSettings, settings: ClientSettings, runtime: ClientRuntime, now: number, counts: { ahead: number; now: number }): FlatDict {
  const toOpen = secretToOpen(settings.secret);
  const sealed = toOpen ? toOpen.sealed : sealForPickle(settings.secret, conf.secret, counts);
  const enabled = runtime.enabled;
  // The reference's restore compares an enabled client's expiry with the
  // time; a disabled client has none, as the reference's disable() leaves it.
  const expires = enabled ? new PyDatetime(runtime.expires ?? now) : null;
  return new FlatDict([
    "encrypted_secret", sealed,
    "name", settings.name,
    "key_id", settings.keyId,
    "fingerprint", settings.fingerprint,
    "created", new PyDatetime(runtime.created),
    "checker_initiator_tag", null,
    "disable_initiator_tag", null,
    "checker_callback_tag", null,
    "current_checker_command", null,
    "approved", null,
    "client_structure", CLIENT_STRUCTURE,
    "approval_delay", new PyTimedelta(settings.approvalDelay),
    "approval_duration", new PyTimedelta(settings.approvalDuration),
    "approvals_pending", 0,
    "approved_by_default", settings.approvedByDefault,
    "checker_command", settings.checker,
    "enabled", enabled,
    "expires", expires,
    "extended_timeout", new PyTimedelta(settings.extendedTimeout),
    "host", settings.host,
    "interval", new PyTimedelta(settings.interval),
    "last_approval_request", time(runtime.lastApprovalRequest),
    "last_checked_ok", time(runtime.lastCheckedOk),
    "last_checker_status", runtime.lastCheckerStatus,
    "last_enabled", enabled ? new PyDatetime(runtime.lastEnabled ?? now) : time(runtime.lastEnabled),
    "timeout", new PyTimedelta(settings.timeout),
  ]);
}

/** The pickle's bytes (in chunks, pickle-write.ts) and their SHA-256 (hex), for clients.json's `importedPickle`. */
export interface ReferencePickle {
  readonly data: PickleBytes;
  readonly sha256: string;
  /** Secrets sealed with a key derived ahead (warmReferencePickle), and with one derived in the export. */
  readonly keys: { readonly ahead: number; readonly now: number };
}

/**
 * The reference's clients.pickle for these clients: those clients.conf
 * (`config`) has, each with its attributes; clients.conf's settings for
 * every section, so that a client removed at run time (in clients.conf,
 * not among the clients) stays removed there, as the reference keeps one.
 * Each client's attributes (and its sealed secret) are made as the pickle
 * reaches it, and dropped once written (StreamedDict).
 */
export function referencePickle(
  config: readonly ClientSettings[],
  clients: Iterable<{ readonly settings: ClientSettings; readonly runtime: ClientRuntime }>,
  now: number,
): ReferencePickle {
  // Maps, as the pickled dicts are: a name twice keeps its first place and its last value.
  const byName = new Map(config.map((c) => [c.name, c]));
  const kept = new Map<string, { readonly conf: ClientSettings; readonly settings: ClientSettings; readonly runtime: ClientRuntime }>();
  for (const { settings, runtime } of clients) {
    const conf = byName.get(settings.name);
    if (conf) kept.set(settings.name, { conf, settings, runtime });
  }
  const keys = { ahead: 0, now: 0 };
  const saved = new StreamedDict(kept.size, function* () {
    for (const [name, { conf, settings, runtime }] of kept) yield [name, clientAttributes(conf, settings, runtime, now, keys)] as const;
  });
  const settings = new StreamedDict(byName.size, function* () {
    for (const [name, c] of byName) yield [name, configSettings(c)] as const;
  });
  const data = pickleChunks(pyTuple([saved, settings]));
  return { data, sha256: data.sha256, keys };
}
