// Piscina's entry for the reference-secret worker (./reference-secret.ts),
// as CommonJS, so that the module is loaded through import(), never
// through require(esm): see ./handshake-entry.cts for why.
export = import("./reference-secret.js").then((m) => m.default);
