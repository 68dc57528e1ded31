// A worker thread of the fleet enrollment: OpenPGP.js reads keys and
// encrypts in JavaScript (about 5 ms a machine with RSA-4096 keys), so a
// large fleet is split across the machine's cores. Receives a slice of
// machines, posts back their sections (or the error, with its code and the
// file it names).

import { parentPort, workerData } from "node:worker_threads";
import { enrolleesHere, type Machine } from "./enroll.js";
import { KeygenFileError } from "./errors.js";

interface Job {
  readonly machines: ReadonlyArray<{ name: string; keyDir: string; password: Uint8Array }>;
}

const job = workerData as Job;
const machines: Machine[] = job.machines.map((m) => ({ name: m.name, keyDir: m.keyDir, password: Buffer.from(m.password) }));
enrolleesHere(machines).then(
  (added) => parentPort!.postMessage({ ok: true, added }),
  (error: Error & { code?: string }) => {
    const file = error instanceof KeygenFileError ? { file: { path: error.path, reason: error.reason } } : {};
    parentPort!.postMessage({ ok: false, code: error.code, message: error.message, ...file });
  },
);
