// The properties of se.recompile.Mandos.Client (DBUS-API "Properties"):
// how each is read from a registry ClientView and what setting it does,
// through the registry, which persists every change. Durations are
// milliseconds (type t), timestamps the reference's datetime_to_dbus strings.

import type { ClientView, Registry } from "../clients/contract.js";
import { RUNTIME_SETTINGS, type ClientPatch, type RuntimeSetting, type SettingKind } from "../clients/runtime-settings.js";
import { secretForm, secretWarning } from "../config/openpgp-message.js";
import { ERROR_NAME, MethodError } from "./errors.js";
import { CLIENT, CLIENT_OBJECT_INTERFACES, OLD_CLIENT, type PropertySpec } from "./interfaces.js";
import { marshalProperties } from "./marshal.js";
import { dict, integerOf, isIntegerType, timestampToDbus, variant, type IncomingVariant, type MarshalledArray, type WireValue } from "./values.js";
import { MAX_CLIENT_DURATION_MS } from "../config/duration.js";

export interface PropertyContext {
  readonly registry: Registry;
  /** The client's name in the registry. */
  readonly name: string;
  /** The client's current state. */
  readonly view: ClientView;
  readonly objectPath: string;
}

interface PropertyBehaviour {
  /** The value as GetAll and PropertiesChanged send it (absent: write-only). */
  readonly get?: (c: ClientView, objectPath: string) => WireValue;
  /**
   * Applies a Set (absent: read-only). Throws MethodError on a value of the
   * wrong type. Returns what the admin should be told of a value set all
   * the same, as the reference sets it (the log says it after "Client
   * NAME's "), or null.
   */
  readonly set?: (ctx: PropertyContext, value: IncomingVariant) => string | null;
}

function wrongType(name: string, want: string, got: IncomingVariant): MethodError {
  return new MethodError(ERROR_NAME.invalidArgs, `property ${name} takes a value of type "${want}", not "${got.signature}"`);
}

function asBoolean(name: string, v: IncomingVariant): boolean {
  if (v.signature !== "b" || typeof v.value !== "boolean") throw wrongType(name, "b", v);
  return v.value;
}

function asString(name: string, v: IncomingVariant): string {
  if (v.signature !== "s" || typeof v.value !== "string") throw wrongType(name, "s", v);
  return v.value;
}

/**
 * Milliseconds. The reference accepts any integer (dbus-python sends Python
 * ints as "i"), not a negative one, nor one that takes a time past its
 * datetime's year 9999 (OverflowError). Ours takes what clients.conf takes:
 * up to MAX_CLIENT_DURATION_MS, so that every time made from it (an expiry,
 * the state file's) stays a valid date.
 */
function asMilliseconds(name: string, v: IncomingVariant): number {
  const ms = integerOf(v);
  if (ms === null && !isIntegerType(v)) throw wrongType(name, "t", v);
  if (ms === null || ms > MAX_CLIENT_DURATION_MS) {
    throw new MethodError(ERROR_NAME.invalidArgs, `property ${name} is too large (at most ${MAX_CLIENT_DURATION_MS} ms, 100,000 years)`);
  }
  if (ms < 0) throw new MethodError(ERROR_NAME.invalidArgs, `property ${name} cannot be negative`);
  return ms;
}

function asBytes(name: string, v: IncomingVariant): Buffer {
  // DBUS-API (k): a raw byte array.
  if (v.signature !== "ay" || !Buffer.isBuffer(v.value)) throw wrongType(name, "ay", v);
  return v.value;
}

const READ_KIND: Record<SettingKind, (name: string, v: IncomingVariant) => ClientPatch[keyof ClientPatch]> = {
  string: asString,
  boolean: asBoolean,
  duration: asMilliseconds,
  bytes: asBytes,
};

/**
 * What a duration under a second does, of the three that disable or
 * busy a client: `mandos-ctl` reads a bare number as milliseconds (`-i 5`)
 * and text it cannot parse as 0 (`-i bogus`), and only says so on its
 * own standard error, which a script may not show.
 */
const SUB_SECOND: Partial<Record<RuntimeSetting, string>> = {
  interval: "its checker starts again as soon as one ends",
  timeout: "it is disabled that soon after its last successful check",
  extendedTimeout: "once served, it is disabled unless a checker succeeds that soon",
};

/** What the admin is told of a setting set over D-Bus all the same, or null. */
function settingWarning(field: RuntimeSetting, value: ClientPatch[keyof ClientPatch]): string | null {
  if (field === "secret" && Buffer.isBuffer(value)) {
    const warning = secretWarning(secretForm(value));
    return warning === null ? null : `secret set over D-Bus ${warning}; it is served as set, until another is set over D-Bus or in clients.conf`;
  }
  const effect = SUB_SECOND[field];
  if (effect === undefined || typeof value !== "number" || value >= 1000) return null;
  return `${field === "extendedTimeout" ? "extended timeout" : field} set over D-Bus is ${value} ms, under a second: ${effect} (mandos-ctl reads a bare number as milliseconds and text it cannot parse as 0; PT5M or 5m is five minutes)`;
}

/**
 * The properties of the runtime settings (clients/runtime-settings.ts): a
 * Set is a registry update of that one setting. The secret is write-only.
 */
const SETTING_BEHAVIOUR: Record<string, PropertyBehaviour> = Object.fromEntries(
  RUNTIME_SETTINGS.map((row): [string, PropertyBehaviour] => {
    const set = (ctx: PropertyContext, v: IncomingVariant): string | null => {
      const value = READ_KIND[row.kind](row.property, v);
      ctx.registry.update(ctx.name, { [row.field]: value });
      return settingWarning(row.field, value);
    };
    return [row.property, row.field === "secret" ? { set } : { get: (c) => c[row.field], set }];
  }),
);

const BEHAVIOUR: Record<string, PropertyBehaviour> = {
  ...SETTING_BEHAVIOUR,
  ApprovalPending: { get: (c) => c.approvalPending },
  CheckerRunning: {
    get: (c) => c.checkerRunning,
    // DBUS-API (c): starts a new checker or aborts the running one.
    set: (ctx, v) => {
      if (asBoolean("CheckerRunning", v)) ctx.registry.startChecker(ctx.name);
      else ctx.registry.stopChecker(ctx.name);
      return null;
    },
  },
  Created: { get: (c) => timestampToDbus(c.created) },
  Expires: { get: (c) => timestampToDbus(c.expires) },
  Fingerprint: { get: (c) => c.fingerprint },
  Interval: {
    get: (c) => c.interval,
    set: (ctx, v) => {
      const warning = SETTING_BEHAVIOUR.Interval!.set!(ctx, v);
      // As the reference: a new interval reschedules the checker and runs one now.
      if (ctx.view.enabled) ctx.registry.startChecker(ctx.name);
      return warning;
    },
  },
  KeyID: { get: (c) => c.keyId },
  LastApprovalRequest: { get: (c) => timestampToDbus(c.lastApprovalRequest) },
  LastCheckedOK: {
    get: (c) => timestampToDbus(c.lastCheckedOk),
    // DBUS-API (h): equivalent to CheckedOK(), whatever the value.
    set: (ctx) => {
      ctx.registry.checkedOk(ctx.name);
      return null;
    },
  },
  LastCheckerStatus: { get: (c) => c.lastCheckerStatus },
  LastEnabled: { get: (c) => timestampToDbus(c.lastEnabled) },
  Name: { get: (c) => c.name },
  ObjectPath: { get: (_c, path) => path },
};

export interface DbusProperty extends PropertySpec, PropertyBehaviour {}

/** Every property of the client interface, in introspection order. */
export const CLIENT_PROPERTIES: readonly DbusProperty[] = CLIENT.properties.map((spec) => {
  const behaviour = BEHAVIOUR[spec.name];
  if (!behaviour) throw new Error(`no behaviour for property ${spec.name}`);
  return { ...spec, ...behaviour };
});

const BY_NAME = new Map(CLIENT_PROPERTIES.map((p) => [p.name, p]));

export function clientProperty(name: string): DbusProperty | undefined {
  return BY_NAME.get(name);
}

/** The properties that can be read, in introspection order (the secret is write-only). */
const READABLE = CLIENT_PROPERTIES.filter((p) => p.get !== undefined);

/** Whether `iface` is the client interface or its deprecated mirror. */
export function isClientInterface(iface: string): boolean {
  return iface === CLIENT.name || iface === OLD_CLIENT.name;
}

/**
 * The readable properties as variants ("a{sv}"), built as a value: what
 * marshalledProperties writes straight, which the tests and the bench
 * hold it to.
 */
export function propertiesValue(view: ClientView, objectPath: string): WireValue {
  return dict(READABLE.map((p) => [p.name, variant(p.type, p.get!(view, objectPath))]));
}

/**
 * propertiesValue, marshalled: written straight from the view, with no
 * value tree between (a listing or the start-up announcement makes one for
 * every client; docs/DBUS.md, "Listing the clients").
 */
export function marshalledProperties(view: ClientView, objectPath: string): MarshalledArray {
  return marshalProperties((property) => {
    for (const p of READABLE) property(p.name, p.type, p.get!(view, objectPath));
  });
}

/**
 * GetManagedObjects' and InterfacesAdded's value ("a{sa{sv}}"): every
 * interface of the object with its properties (`props`, a propertiesValue
 * or the same marshalled). `withMirror` false leaves the deprecated
 * mirror's properties out (its entry stays, empty), which halves the
 * value: for a GetManagedObjects the bus would not take whole.
 */
export function interfacesAndPropertiesValue(props: WireValue, withMirror = true): WireValue {
  return dict(CLIENT_OBJECT_INTERFACES.map((i) => [i.name, i.name === CLIENT.name || (withMirror && i.name === OLD_CLIENT.name) ? props : []]));
}

/** Whether two views of a client give the same properties: every field the same, dates by their time. */
function sameView(a: ClientView, b: ClientView): boolean {
  for (const key of Object.keys(a) as Array<keyof ClientView>) {
    const x = a[key];
    const y = b[key];
    if (x === y) continue;
    if (!(x instanceof Date && y instanceof Date && x.getTime() === y.getTime())) return false;
  }
  return true;
}

/**
 * Every client's readable properties, marshalled ("a{sv}"), kept from one
 * listing to the next for each client whose view has not changed since
 * (docs/DBUS.md, "Listing the clients"): mandos-ctl asks for every
 * client's properties at each call, even for one client, and building and
 * marshalling them again for 10,000 clients is most of a call's cost on
 * the main thread. What was not used for `keepMs` is let go.
 */
export class MarshalledProperties {
  #kept = new Map<string, { readonly view: ClientView; readonly props: MarshalledArray }>();
  #timer: NodeJS.Timeout | null = null;

  constructor(private readonly keepMs = 60_000) {}

  /**
   * Each client's object path and properties, in order ("a{oa{sv}}"'s
   * entries): kept ones where the view is the same, the rest marshalled now.
   */
  list(clients: ReadonlyArray<readonly [objectPath: string, view: ClientView]>): Array<[objectPath: string, props: MarshalledArray]> {
    const before = this.#kept;
    const kept = new Map<string, { readonly view: ClientView; readonly props: MarshalledArray }>();
    const out = clients.map(([path, view]): [string, MarshalledArray] => {
      const old = before.get(path);
      const entry = old && sameView(old.view, view) ? old : { view, props: marshalledProperties(view, path) };
      kept.set(path, entry);
      return [path, entry.props];
    });
    // Only what this listing used: a removed client's properties go with it.
    this.#kept = kept;
    if (this.#timer) this.#timer.refresh();
    else this.#timer = setTimeout(() => this.clear(), this.keepMs).unref();
    return out;
  }

  /** Lets every kept property go. */
  clear(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#kept = new Map();
  }
}
