// ClientSettings for unit tests, with short, explicit durations.
import type { ClientSettings } from "../../src/main/clients/settings.js";

/** The key ID clientSettings(name) gives, unless told another. */
export function keyIdOf(name: string): string {
  return name.toUpperCase().replace(/[^0-9A-F]/g, "A").padEnd(64, "0");
}

export function clientSettings(name: string, over: Partial<ClientSettings> = {}): ClientSettings {
  return {
    name,
    keyId: keyIdOf(name),
    fingerprint: "",
    secret: Buffer.from(`secret of ${name}`),
    host: `${name}.example.org`,
    timeout: 5_000,
    extendedTimeout: 15_000,
    interval: 2_000,
    checker: "true",
    approvedByDefault: true,
    approvalDelay: 0,
    approvalDuration: 1_000,
    enabled: true,
    ...over,
  };
}
