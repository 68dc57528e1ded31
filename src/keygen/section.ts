// The clients.conf section mandos-keygen --password prints, line for line
// as Debian's script prints it (mandos-keygen(8) EXAMPLE), and the
// `checker` line it adds when the host answers ssh-keyscan.

import { spawnSync } from "node:child_process";

export interface SectionFields {
  readonly name: string;
  /** Empty when the key directory has no tls-pubkey.pem. */
  readonly keyId: string;
  readonly fingerprint: string;
  /** The secret's continuation lines (openpgp-key.ts: secretLines). */
  readonly secret: readonly string[];
  readonly ssh: SshHostKey | null;
}

export interface SshHostKey {
  readonly keyType: string;
  /** ssh-keyscan's line without its leading host name: "TYPE BASE64". */
  readonly fingerprint: string;
}

export function formatSection(f: SectionFields): string {
  const lines = [`[${f.name}]`, `host = ${f.name}`];
  if (f.keyId !== "") lines.push(`key_id = ${f.keyId}`);
  lines.push(`fingerprint = ${f.fingerprint}`, "secret =", ...f.secret);
  if (f.ssh) {
    lines.push(
      `checker = ssh-keyscan -t ${f.ssh.keyType} %%(host)s 2>/dev/null | grep --fixed-strings --line-regexp --quiet --regexp=%%(host)s" %(ssh_fingerprint)s"`,
      `ssh_fingerprint = ${f.ssh.fingerprint}`,
    );
  }
  return lines.join("\n") + "\n";
}

// The order Debian's script tries key types in.
const SSH_KEY_TYPES = ["ecdsa-sha2-nistp256", "ed25519", "rsa"] as const;

export type SshKeyscan = (keyType: string) => string | null;

/** Runs the real ssh-keyscan against localhost; null when it fails or is absent. */
export const runSshKeyscan: SshKeyscan = (keyType) => {
  const r = spawnSync("ssh-keyscan", ["-t", keyType, "localhost"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 10_000 });
  return r.status === 0 ? r.stdout : null;
};

/** This host's SSH key, the first type that ssh-keyscan answers for. */
export function localSshHostKey(keyscan: SshKeyscan = runSshKeyscan): SshHostKey | null {
  for (const keyType of SSH_KEY_TYPES) {
    const out = keyscan(keyType);
    if (out === null) continue;
    const line = out.split("\n").find((l) => l.startsWith("localhost "));
    if (line) return { keyType, fingerprint: line.slice("localhost ".length).trim() };
  }
  return null;
}
