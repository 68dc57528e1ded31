// A client's D-Bus object path, as the reference derives it from the name.
// It lives here, not in dbus/, because the checker's %(dbus_object_path)s
// expansion needs it whether or not D-Bus is on (mandos-clients.conf(5)
// EXPANSION); dbus/ imports it from here.

/** The reference's object path for a client: "/clients/" + the name with "." and "-" as "_". */
export function clientObjectPath(name: string): string {
  // Other characters are not allowed in an object path element (D-Bus
  // specification, "Valid Object Paths"); the reference would fail on them.
  return "/clients/" + (name.replace(/[^A-Za-z0-9_]/g, "_") || "_");
}
