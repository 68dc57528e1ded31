// The properties of se.recompile.Mandos.Client (DBUS-API "Properties"):
// how each is read from a registry ClientView and what setting it does,
// through the registry, which persists every change. Durations are
// milliseconds (type t), timestamps the reference's datetime_to_dbus strings.

import type { ClientPatch, ClientView, Registry } from "../clients/contract.js";
import { ERROR_NAME, MethodError } from "./errors.js";
import { CLIENT, type PropertySpec } from "./interfaces.js";
import { integerOf, timestampToDbus, type IncomingVariant, type WireValue } from "./values.js";

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
  /** Applies a Set (absent: read-only). Throws MethodError on a value of the wrong type. */
  readonly set?: (ctx: PropertyContext, value: IncomingVariant) => void;
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

/** Milliseconds. The reference accepts any integer (dbus-python sends Python ints as "i"), not a negative one. */
function asMilliseconds(name: string, v: IncomingVariant): number {
  const ms = integerOf(v);
  if (ms === null) throw wrongType(name, "t", v);
  if (ms < 0) throw new MethodError(ERROR_NAME.invalidArgs, `property ${name} cannot be negative`);
  return ms;
}

/** A property that is one field of ClientPatch. */
function patch(field: keyof ClientPatch, read: (name: string, v: IncomingVariant) => ClientPatch[keyof ClientPatch]) {
  return (ctx: PropertyContext, v: IncomingVariant): void => {
    ctx.registry.update(ctx.name, { [field]: read(FIELD_PROPERTY[field], v) });
  };
}

const FIELD_PROPERTY: Record<keyof ClientPatch, string> = {
  host: "Host",
  timeout: "Timeout",
  extendedTimeout: "ExtendedTimeout",
  interval: "Interval",
  approvalDelay: "ApprovalDelay",
  approvalDuration: "ApprovalDuration",
  approvedByDefault: "ApprovedByDefault",
  checker: "Checker",
  secret: "Secret",
};

const BEHAVIOUR: Record<string, PropertyBehaviour> = {
  ApprovalDelay: { get: (c) => c.approvalDelay, set: patch("approvalDelay", asMilliseconds) },
  ApprovalDuration: { get: (c) => c.approvalDuration, set: patch("approvalDuration", asMilliseconds) },
  ApprovalPending: { get: (c) => c.approvalPending },
  ApprovedByDefault: { get: (c) => c.approvedByDefault, set: patch("approvedByDefault", asBoolean) },
  Checker: { get: (c) => c.checker, set: patch("checker", asString) },
  CheckerRunning: {
    get: (c) => c.checkerRunning,
    // DBUS-API (c): starts a new checker or aborts the running one.
    set: (ctx, v) => (asBoolean("CheckerRunning", v) ? ctx.registry.startChecker(ctx.name) : ctx.registry.stopChecker(ctx.name)),
  },
  Created: { get: (c) => timestampToDbus(c.created) },
  Enabled: {
    get: (c) => c.enabled,
    set: (ctx, v) => (asBoolean("Enabled", v) ? ctx.registry.enable(ctx.name) : ctx.registry.disable(ctx.name)),
  },
  Expires: { get: (c) => timestampToDbus(c.expires) },
  ExtendedTimeout: { get: (c) => c.extendedTimeout, set: patch("extendedTimeout", asMilliseconds) },
  Fingerprint: { get: (c) => c.fingerprint },
  Host: { get: (c) => c.host, set: patch("host", asString) },
  Interval: {
    get: (c) => c.interval,
    set: (ctx, v) => {
      ctx.registry.update(ctx.name, { interval: asMilliseconds("Interval", v) });
      // As the reference: a new interval reschedules the checker and runs one now.
      if (ctx.view.enabled) ctx.registry.startChecker(ctx.name);
    },
  },
  KeyID: { get: (c) => c.keyId },
  LastApprovalRequest: { get: (c) => timestampToDbus(c.lastApprovalRequest) },
  LastCheckedOK: {
    get: (c) => timestampToDbus(c.lastCheckedOk),
    // DBUS-API (h): equivalent to CheckedOK(), whatever the value.
    set: (ctx) => ctx.registry.checkedOk(ctx.name),
  },
  LastCheckerStatus: { get: (c) => c.lastCheckerStatus },
  LastEnabled: { get: (c) => timestampToDbus(c.lastEnabled) },
  Name: { get: (c) => c.name },
  ObjectPath: { get: (_c, path) => path },
  Secret: {
    set: (ctx, v) => {
      // DBUS-API (k): a raw byte array.
      if (v.signature !== "ay" || !Buffer.isBuffer(v.value)) throw wrongType("Secret", "ay", v);
      ctx.registry.update(ctx.name, { secret: v.value });
    },
  },
  Timeout: { get: (c) => c.timeout, set: patch("timeout", asMilliseconds) },
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

/** The readable properties and their values, for GetAll and InterfacesAdded. */
export function readableProperties(view: ClientView, objectPath: string): Array<[string, string, WireValue]> {
  const out: Array<[string, string, WireValue]> = [];
  for (const p of CLIENT_PROPERTIES) if (p.get) out.push([p.name, p.type, p.get(view, objectPath)]);
  return out;
}
