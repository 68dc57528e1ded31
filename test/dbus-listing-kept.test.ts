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
import { MarshalledProperties, marshalledProperties, propertiesValue } from "../src/main/dbus/client-properties.js";
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

test("written straight from the view, a client's properties are the bytes its value tree marshals to, for 2,000 random views", () => {
  let seed = 46;
  const random = (): number => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const text = (): string => Array.from({ length: Math.floor(random() * 40) }, () => pick(["a", "Z", "0", " ", "%", "é", "ß", "€", "😀", "\\", "\n"])).join("");
  const date = (): Date | null => (random() < 0.3 ? null : new Date(Math.floor(random() * 2 ** 42) - (random() < 0.5 ? Math.floor(random() * 1000) : 0)));
  for (let i = 0; i < 2_000; i++) {
    const v: ClientView = {
      name: text(), keyId: text(), fingerprint: text(), host: text(), checker: text(),
      timeout: Math.floor(random() * 2 ** 53), extendedTimeout: Math.floor(random() * 1e12), interval: pick([0, 1, 120_000]),
      approvalDelay: Math.floor(random() * 1e9), approvalDuration: pick([0, 1_000, 2 ** 53 - 1]),
      approvedByDefault: random() < 0.5, enabled: random() < 0.5, checkerRunning: random() < 0.5, approvalPending: random() < 0.5,
      created: new Date(Math.floor(random() * 2 ** 42)), lastEnabled: date(), expires: date(), lastCheckedOk: date(), lastApprovalRequest: date(),
      lastCheckerStatus: pick([-2, -1, 0, 1, 255]),
    };
    const path = `/clients/${pick(["a", "machine_00001", "x_2", "Z9"])}`;
    assert.ok(marshalledProperties(v, path).contents.equals(fresh(v, path)), `view ${i}: ${JSON.stringify(v)}`);
  }
  // Refused alike: a NUL the bus would drop us for, an object path that is not one.
  assert.throws(() => marshalledProperties(view("nul\0"), "/clients/a"), /NUL/);
  assert.throws(() => fresh(view("nul\0"), "/clients/a"), /NUL/);
  assert.throws(() => marshalledProperties(view("a"), "/clients/a-b"), /object path/);
  assert.throws(() => fresh(view("a"), "/clients/a-b"), /object path/);
});
