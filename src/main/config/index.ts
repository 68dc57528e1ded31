// The configuration files: mandos.conf and clients.conf, read as the
// Python server reads them.
export { loadServerConfig, parseServerConfig, type ServerConfig, type ServerConfigFile } from "./server-config.js";
export { clientsConfRefusal, loadClientsConfig, parseClientsConfig, readClientsConfig, clientKeyWarnings, LOGGED_WARNINGS_PER_KIND, type ClientsConfigOptions } from "./clients-config.js";
export { ConfigError, type ConfigErrorCode } from "./errors.js";
export { parseDuration } from "./duration.js";
