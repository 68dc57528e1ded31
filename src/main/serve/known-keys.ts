// The registry's key IDs as the table the handshake tasks read, so that an
// unknown key is refused before its signature is checked
// (src/tls/known-keys.ts). Rebuilt when the set of key IDs has changed
// (start-up, a reload, a client removed over D-Bus), at the next task: a
// reload of 10,000 clients builds it once, not 10,000 times.

import { buildKnownKeyTable } from "../../tls/index.js";
import type { Registry } from "../clients/contract.js";
import type { KnownKeys } from "./handshake-runner.js";

export function knownKeysOf(registry: Pick<Registry, "keyIds" | "keyIdGeneration">): KnownKeys {
  let generation = -1;
  let table: SharedArrayBuffer | null = null;
  return () => {
    if (generation !== registry.keyIdGeneration) {
      generation = registry.keyIdGeneration;
      table = buildKnownKeyTable(registry.keyIds());
    }
    return table;
  };
}
