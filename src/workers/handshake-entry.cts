// Piscina's entry for the handshake worker (./handshake.ts), as CommonJS.
// Piscina require()s a worker's file before it tries import(), and on a
// Node with require(esm) (20.19 and later) a worker ended while require()
// still wraps the loaded ES module aborts the whole process (an assertion
// in node::loader::ModuleWrap, seen when a pool closed just after its
// workers said they had loaded). Loaded through import() from here, the
// module never takes that path; Piscina awaits the handler this gives.
export = import("./handshake.js").then((m) => m.default);
