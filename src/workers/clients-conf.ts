// The worker thread of a reload's parse of clients.conf
// (src/main/config/clients-off-thread.ts): parses the text it is given and
// posts the clients back packed, their secrets' buffer transferred.

import { parentPort, workerData } from "node:worker_threads";
import { parseJob, type ParseJob } from "../main/config/clients-off-thread.js";

const reply = parseJob(workerData as ParseJob);
parentPort!.postMessage(reply, reply.kind === "parsed" ? [reply.packed.secrets] : []);
