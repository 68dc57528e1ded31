// The interfaces of DBUS-API (Debian mandos 1.8.16), as data: each method,
// signal and property with its signature, argument names and annotations,
// as the Python reference introspects them. The deprecated
// "se.bsnet.fukt.Mandos" mirrors are derived here, as the reference's
// alternate_dbus_interfaces() derives them. introspect.ts turns these into
// XML; service.ts routes calls by them.

export const BUS_NAME = "se.recompile.Mandos";
/** The reference also owns the pre-1.4 name (mandos(8)); so do we. */
export const OLD_BUS_NAME = "se.bsnet.fukt.Mandos";

export const SERVER_INTERFACE = "se.recompile.Mandos";
export const CLIENT_INTERFACE = "se.recompile.Mandos.Client";
export const OLD_PREFIX = "se.bsnet.fukt.Mandos";
export const NEW_PREFIX = "se.recompile.Mandos";

export const INTROSPECTABLE = "org.freedesktop.DBus.Introspectable";
export const PROPERTIES = "org.freedesktop.DBus.Properties";
export const OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager";
export const PEER = "org.freedesktop.DBus.Peer";

export const DEPRECATED = "org.freedesktop.DBus.Deprecated";
export const EMITS_CHANGED = "org.freedesktop.DBus.Property.EmitsChangedSignal";

export type Annotations = Readonly<Record<string, string>>;

export interface ArgSpec {
  readonly type: string;
  readonly name?: string;
}

export interface MethodSpec {
  readonly name: string;
  readonly in: readonly ArgSpec[];
  readonly out: readonly ArgSpec[];
  readonly annotations?: Annotations;
}

export interface SignalSpec {
  readonly name: string;
  readonly args: readonly ArgSpec[];
  readonly annotations?: Annotations;
}

export type PropertyAccess = "read" | "write" | "readwrite";

export interface PropertySpec {
  readonly name: string;
  readonly type: string;
  readonly access: PropertyAccess;
  readonly annotations?: Annotations;
}

export interface InterfaceSpec {
  readonly name: string;
  readonly methods: readonly MethodSpec[];
  readonly signals: readonly SignalSpec[];
  readonly properties: readonly PropertySpec[];
  readonly annotations?: Annotations;
}

const deprecated: Annotations = { [DEPRECATED]: "true" };
const constant: Annotations = { [EMITS_CHANGED]: "const" };

/** The signature of a list of arguments. */
export function signatureOf(args: readonly ArgSpec[]): string {
  return args.map((a) => a.type).join("");
}

export const INTROSPECTABLE_INTERFACE: InterfaceSpec = {
  name: INTROSPECTABLE,
  methods: [{ name: "Introspect", in: [], out: [{ type: "s", name: "xml_data" }] }],
  signals: [],
  properties: [],
};

export const PROPERTIES_INTERFACE: InterfaceSpec = {
  name: PROPERTIES,
  methods: [
    { name: "Get", in: [{ type: "s", name: "interface_name" }, { type: "s", name: "property_name" }], out: [{ type: "v", name: "value" }] },
    {
      name: "Set",
      in: [{ type: "s", name: "interface_name" }, { type: "s", name: "property_name" }, { type: "v", name: "value" }],
      out: [],
    },
    { name: "GetAll", in: [{ type: "s", name: "interface_name" }], out: [{ type: "a{sv}", name: "props" }] },
  ],
  signals: [
    {
      name: "PropertiesChanged",
      args: [
        { type: "s", name: "interface_name" },
        { type: "a{sv}", name: "changed_properties" },
        { type: "as", name: "invalidated_properties" },
      ],
    },
  ],
  properties: [],
};

export const OBJECT_MANAGER_INTERFACE: InterfaceSpec = {
  name: OBJECT_MANAGER,
  methods: [{ name: "GetManagedObjects", in: [], out: [{ type: "a{oa{sa{sv}}}", name: "objpath_interfaces_and_properties" }] }],
  signals: [
    { name: "InterfacesAdded", args: [{ type: "o", name: "object_path" }, { type: "a{sa{sv}}", name: "interfaces_and_properties" }] },
    { name: "InterfacesRemoved", args: [{ type: "o", name: "object_path" }, { type: "as", name: "interfaces" }] },
  ],
  properties: [],
};

/** DBUS-API "Mandos Server Interface", with the reference's deprecated members. */
export const SERVER: InterfaceSpec = {
  name: SERVER_INTERFACE,
  methods: [
    { name: "GetAllClients", in: [], out: [{ type: "ao" }], annotations: deprecated },
    { name: "GetAllClientsWithProperties", in: [], out: [{ type: "a{oa{sv}}" }], annotations: deprecated },
    { name: "RemoveClient", in: [{ type: "o", name: "object_path" }], out: [] },
  ],
  signals: [
    // Superseded by ObjectManager.InterfacesAdded; the reference leaves it
    // unmarked, issue 7 asks for the mark.
    { name: "ClientAdded", args: [{ type: "o", name: "objpath" }], annotations: deprecated },
    { name: "ClientNotFound", args: [{ type: "s", name: "key_id" }, { type: "s", name: "address" }] },
    { name: "ClientRemoved", args: [{ type: "o", name: "objpath" }, { type: "s", name: "name" }], annotations: deprecated },
  ],
  properties: [],
};

/** DBUS-API "Mandos Client Interface", with the reference's deprecated members. */
export const CLIENT: InterfaceSpec = {
  name: CLIENT_INTERFACE,
  methods: [
    { name: "Approve", in: [{ type: "b", name: "value" }], out: [] },
    { name: "CheckedOK", in: [], out: [] },
    { name: "Disable", in: [], out: [], annotations: deprecated },
    { name: "Enable", in: [], out: [], annotations: deprecated },
    { name: "StartChecker", in: [], out: [], annotations: deprecated },
    { name: "StopChecker", in: [], out: [], annotations: deprecated },
  ],
  signals: [
    { name: "CheckerCompleted", args: [{ type: "n", name: "exitcode" }, { type: "x", name: "waitstatus" }, { type: "s", name: "command" }] },
    { name: "CheckerStarted", args: [{ type: "s", name: "command" }] },
    { name: "GotSecret", args: [] },
    { name: "NeedApproval", args: [{ type: "t", name: "timeout" }, { type: "b", name: "default" }] },
    { name: "PropertyChanged", args: [{ type: "s", name: "property" }, { type: "v", name: "value" }], annotations: deprecated },
    { name: "Rejected", args: [{ type: "s", name: "reason" }] },
  ],
  properties: [
    { name: "ApprovalDelay", type: "t", access: "readwrite" },
    { name: "ApprovalDuration", type: "t", access: "readwrite" },
    { name: "ApprovalPending", type: "b", access: "read" },
    { name: "ApprovedByDefault", type: "b", access: "readwrite" },
    // The reference's order, here and in GetAll and InterfacesAdded: its
    // attributes' names sorted, and "CheckerRunning_dbus_property" sorts
    // before "Checker_dbus_property".
    { name: "CheckerRunning", type: "b", access: "readwrite" },
    { name: "Checker", type: "s", access: "readwrite" },
    { name: "Created", type: "s", access: "read", annotations: constant },
    { name: "Enabled", type: "b", access: "readwrite" },
    { name: "Expires", type: "s", access: "read" },
    { name: "ExtendedTimeout", type: "t", access: "readwrite" },
    { name: "Fingerprint", type: "s", access: "read", annotations: constant },
    { name: "Host", type: "s", access: "readwrite" },
    { name: "Interval", type: "t", access: "readwrite" },
    { name: "KeyID", type: "s", access: "read", annotations: constant },
    { name: "LastApprovalRequest", type: "s", access: "read" },
    { name: "LastCheckedOK", type: "s", access: "readwrite" },
    { name: "LastCheckerStatus", type: "n", access: "read" },
    { name: "LastEnabled", type: "s", access: "read" },
    { name: "Name", type: "s", access: "read", annotations: constant },
    { name: "ObjectPath", type: "o", access: "read", annotations: { ...constant, ...deprecated } },
    { name: "Secret", type: "ay", access: "write", annotations: { [EMITS_CHANGED]: "invalidates" } },
    { name: "Timeout", type: "t", access: "readwrite" },
  ],
};

/** The same interface under the old prefix, deprecated as a whole. */
export function oldMirror(spec: InterfaceSpec): InterfaceSpec {
  return { ...spec, name: spec.name.replace(NEW_PREFIX, OLD_PREFIX), annotations: { ...spec.annotations, ...deprecated } };
}

export const OLD_SERVER = oldMirror(SERVER);
export const OLD_CLIENT = oldMirror(CLIENT);

/** The interfaces of "/" and of each client object, in the order introspection lists them. */
export const SERVER_OBJECT_INTERFACES: readonly InterfaceSpec[] = [INTROSPECTABLE_INTERFACE, OBJECT_MANAGER_INTERFACE, SERVER, OLD_SERVER];
export const CLIENT_OBJECT_INTERFACES: readonly InterfaceSpec[] = [INTROSPECTABLE_INTERFACE, PROPERTIES_INTERFACE, CLIENT, OLD_CLIENT];

