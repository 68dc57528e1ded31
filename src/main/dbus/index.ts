// The D-Bus interface of the server (DBUS-API), for main.ts.

export { startDbusService, type DbusService, type DbusServiceOptions } from "./service.js";
export { BUS_NAME, OLD_BUS_NAME } from "./interfaces.js";
export { clientObjectPath } from "../clients/object-path.js";
