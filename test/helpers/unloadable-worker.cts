// A worker that cannot load its files, as one started in the middle of an
// installation might find them: Piscina's entry rejects, as
// ../../src/workers/handshake-entry.cts (or reference-secret-entry.cts)
// does when the module it imports is gone. For test/handshake-runner and
// test/migrate-pickle.

export = Promise.reject(new Error("Cannot find module 'a file an upgrade removed'"));
