// The client listings' kept properties (MarshalledProperties in
// src/main/dbus/client-properties.ts): mandos-ctl lists every client at
// each call, and a client whose view has not changed since the last
// listing is sent as then, without building or marshalling it again. What
// this must never do is send a property as it was: any field of the view
// that changes, a client removed and added again, or a listing after the
// kept ones were let go, marshals afresh, and what is sent is what a fresh
// marshalling gives. mandos-ctl's view of changes through the real bus is
// in dbus-mandos-ctl.test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import type { ClientView } from "../src/main/clients/contract.js";
import { MarshalledProperties, propertiesValue } from "../src/main/dbus/client-properties.js";
import { marshalArray } from "../src/main/dbus/marshal.js";
import type { MarshalledArray, WireValue } from "../src/main/dbus/values.js";

function view(name: string, change: Partial<ClientView> = {}): ClientView {
  return {
    name,
    keyId: "ab".repeat(32),
    fingerprint: "CD".repeat(20),
    host: `${name}.example.org`,
    timeout: 300_000,
    extendedTimeout: 900_000,
    interval: 120_000,
    approvalDelay: 0,
    approvalDuration: 1_000,
    approvedByDefault: true,
    checker: "fping -q -- %%(host)s",
    enabled: true,
    checkerRunning: false,
    approvalPending: false,
    created: new Date(Date.UTC(2026, 11, 5, 10, 0, 0, 123)),
    lastEnabled: new Date(Date.UTC(2026, 11, 5, 10, 0, 0, 456)),
    expires: new Date(Date.UTC(2026, 11, 5, 10, 5, 0, 456)),
    lastCheckedOk: null,
    lastApprovalRequest: null,
    lastCheckerStatus: -2,
    ...change,
  };
}

/** The properties a listing of `clients` sends, in order; the paths come back as given. */
function listed(kept: MarshalledProperties, clients: ReadonlyArray<readonly [string, ClientView]>): MarshalledArray[] {
  const entries = kept.list(clients);
  assert.deepEqual(entries.map(([path]) => path), clients.map(([path]) => path));
  return entries.map(([, props]) => props);
}

/** What a fresh marshalling of `v` at `path` gives. */
function fresh(v: ClientView, path: string): Buffer {
  return marshalArray("{sv}", propertiesValue(v, path) as WireValue[]).contents;
}

/** `v`'s field `key` changed to another value of its type. */
function changed(v: ClientView, key: keyof ClientView): ClientView {
  const x = v[key];
  let y: unknown;
  if (typeof x === "string") y = `${x}x`;
  else if (typeof x === "number") y = x + 1;
  else if (typeof x === "boolean") y = !x;
  else if (x instanceof Date) y = new Date(x.getTime() + 1);
  else y = new Date(Date.UTC(2026, 11, 5, 11, 0, 0, 789)); // null: now set
  return { ...v, [key]: y };
}

test("an unchanged client is sent as marshalled before; any field changed, it is marshalled afresh", () => {
  const kept = new MarshalledProperties();
  try {
    const a = view("alpha");
    const b = view("bravo");
    const [pa, pb] = listed(kept, [["/clients/alpha", a], ["/clients/bravo", b]]) as [MarshalledArray, MarshalledArray];
    assert.ok(pa.contents.equals(fresh(a, "/clients/alpha")));
    assert.ok(pb.contents.equals(fresh(b, "/clients/bravo")));

    // Views are made anew for each listing: equal ones, dates included, are the same client.
    const again = listed(kept, [["/clients/alpha", view("alpha")], ["/clients/bravo", view("bravo")]]);
    assert.equal(again[0], pa);
    assert.equal(again[1], pb);

    // Every field of the view, each on its own.
    const keys = Object.keys(a) as Array<keyof ClientView>;
    assert.equal(keys.length, 20, "a field added to ClientView: check it is one of the properties");
    for (const key of keys) {
      const c = changed(a, key);
      const [pc, pb2] = listed(kept, [["/clients/alpha", c], ["/clients/bravo", b]]) as [MarshalledArray, MarshalledArray];
      assert.notEqual(pc, pa, key);
      assert.equal(pb2, pb, `${key}: bravo unchanged`);
      assert.ok(pc.contents.equals(fresh(c, "/clients/alpha")), key);
      // Changed back: marshalled afresh again, as it was.
      const [back] = listed(kept, [["/clients/alpha", a], ["/clients/bravo", b]]) as [MarshalledArray];
      assert.ok(back.contents.equals(pa.contents), key);
    }

    // The same view under another path (ObjectPath is a property) is another entry.
    const [moved] = listed(kept, [["/clients/alpha_2", a]]) as [MarshalledArray];
    assert.ok(moved.contents.equals(fresh(a, "/clients/alpha_2")));
    assert.ok(!moved.contents.equals(pa.contents));
  } finally {
    kept.clear();
  }
});

test("a client left out of a listing is not kept; what was not listed for keepMs is let go", async () => {
  const kept = new MarshalledProperties(100);
  try {
    const a = view("alpha");
    const b = view("bravo");
    const [pa, pb] = listed(kept, [["/clients/alpha", a], ["/clients/bravo", b]]);
    // bravo removed, then back with the same view: marshalled again.
    listed(kept, [["/clients/alpha", a]]);
    const [, pb2] = listed(kept, [["/clients/alpha", a], ["/clients/bravo", b]]);
    assert.notEqual(pb2, pb);
    // Listed again within keepMs: kept, and the time starts again.
    await new Promise((r) => setTimeout(r, 60));
    const [pa2] = listed(kept, [["/clients/alpha", a]]);
    assert.equal(pa2, pa);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(listed(kept, [["/clients/alpha", a]])[0], pa, "60 ms after the last listing");
    // Not listed for longer: let go.
    await new Promise((r) => setTimeout(r, 250));
    const [pa3] = listed(kept, [["/clients/alpha", a]]);
    assert.notEqual(pa3, pa);
    assert.ok(pa3!.contents.equals(pa!.contents));
  } finally {
    kept.clear();
  }
});
