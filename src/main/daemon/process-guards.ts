// What the server process must not do whatever happens to it, set before
// anything else loads (bin/mandos imports this module first):
// - SIGUSR1: Node's default opens its inspector on 127.0.0.1:9229, with no
//   authentication: any local user could then run code in the process that
//   holds every client's secret. A listener of our own keeps it shut; the
//   signal is otherwise ignored (the reference dies of it, without saving
//   its state). Node 22.14 and later have --disable-sigusr1; Node 20 has not.
// - Standard output and error: a write to a pipe nobody reads any more (a
//   journal stream gone, `mandos --debug | head`) is an EPIPE 'error' event,
//   which unhandled ends the process. The server serves on; what it wanted
//   to say is lost (the reference swallows it the same way).
// - SIGHUP: held from here on until the server's own handler takes it
//   (early-hangup.ts); a reload asked while starting no longer kills it.
// - Signals ignored by whoever started us stay ignored, as the reference
//   leaves them (inherited-signals.ts).
// - Which descriptors were open before Node opened its own, for --socket
//   (passed-socket.ts).

import { holdEarlyHangup } from "./early-hangup.js";
import { keepInheritedIgnores } from "./inherited-signals.js";
import { takeOpenFdsAtStart } from "../serve/passed-socket.js";

holdEarlyHangup();
process.on("SIGUSR1", () => undefined);
keepInheritedIgnores();
takeOpenFdsAtStart();
for (const stream of [process.stdout, process.stderr]) stream.on("error", () => undefined);

export {};
