// What one read of the fleet found (src/main/fleet/layout.ts PresentKeys):
// a client's properties kept as bits under its name instead of 140,000 key
// strings, answering exactly as a Set of the keys read would, for the keys
// a server seeds and the pending requests it forgets.

import { test } from "node:test";
import assert from "node:assert/strict";
import { clientKey, journalKey, parseKey, pendingKey, PresentKeys, SHARED_PROPERTIES, approvalKey } from "../src/main/fleet/layout.js";

const PREFIX = "/mandos/";

test("PresentKeys answers as a Set of the same keys would, client keys or not", () => {
  const names = ["plain", "with/slash", "spaced name", "ünïcode", "100%"];
  const read: string[] = [];
  for (const [i, name] of names.entries()) {
    // Every client has some of its properties in etcd, never all but the first.
    for (const [j, property] of SHARED_PROPERTIES.entries()) if ((i + j) % 3 !== 0) read.push(clientKey(PREFIX, name, property));
  }
  read.push(pendingKey(PREFIX, "plain", "server-a"), approvalKey(PREFIX, "plain"), journalKey(PREFIX, "server-a", 3), `${PREFIX}not/ours`, "/elsewhere/clients/plain/Enabled");
  // Written by no server of ours: the same client and property, the name escaped another way.
  read.push(`${PREFIX}clients/%70lain/Enabled`);

  const present = new PresentKeys(PREFIX);
  for (const key of read) present.add(key);
  const set = new Set(read);

  const asked = [...read, `${PREFIX}clients/plain/Enabled`, pendingKey(PREFIX, "plain", "server-b"), approvalKey(PREFIX, "other"), `${PREFIX}clients/plain/NoSuchProperty`];
  for (const name of [...names, "absent"]) for (const property of SHARED_PROPERTIES) asked.push(clientKey(PREFIX, name, property));
  for (const key of asked) assert.equal(present.has(key), set.has(key), key);
  for (const name of [...names, "absent"]) {
    for (const property of SHARED_PROPERTIES) assert.equal(present.hasClient(name, property), set.has(clientKey(PREFIX, name, property)), `${name} ${property}`);
  }
  // The caller's own parse is taken as it is.
  const other = new PresentKeys(PREFIX);
  const key = clientKey(PREFIX, "plain", SHARED_PROPERTIES[0]!);
  other.add(key, parseKey(PREFIX, key));
  assert.ok(other.hasClient("plain", SHARED_PROPERTIES[0]!));
  assert.ok(!other.hasClient("plain", SHARED_PROPERTIES[1]!));
});
