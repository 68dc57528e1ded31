// Checkers get no descriptor the server inherited: the reference starts
// each with subprocess.Popen(..., close_fds=True), so a checker has its
// standard streams and nothing else, whatever its server was given (a
// file a shell opened with `exec 20<FILE`, a supervisor's pipe, the
// listening socket of --socket). The reference is the oracle: both
// servers start with the same two extra descriptors, a file and the
// socket they serve on, and a checker that lists its own descriptors; the
// lists must be the same. Ours in each place it starts checkers: in the
// server (few clients), in the checker host (many), and in an
// installation whose addon was never built (nothing to mark descriptors
// close-on-exec with).
//
// The descriptors sit above a gap (none at 3..19): Node.js marks the
// inherited ones it finds from 3 up to the first closed number
// close-on-exec itself, so 3, 4, ... would not show the leak.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, closeSync, cpSync, mkdirSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHECKER_HOST_MIN_CLIENTS } from "../src/main/clients/checker-host.js";
import { inheritableDescriptors, keepFromChildren } from "../src/main/clients/inherited-descriptors.js";
import { DBUS_DAEMON, startPrivateBus, startReference, type PrivateBus } from "./helpers/dbus.js";
import { makeFleetDir, type TestClient } from "./helpers/keys.js";
import { MANDOS_KEYGEN, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { REPO, startServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const skip = missing(DBUS_DAEMON, MANDOS_KEYGEN, MANDOS_REFERENCE) ||
  (process.getuid?.() === 0 ? false : "needs root: the reference server must drop to _mandos");

/** The server's descriptor numbers for the extra file and the socket it serves on (--socket). */
const FILE_FD = 20;
const SOCKET_FD = 21;
/** This test's ports (each server's socket). */
const FIRST_PORT = 21_200;

describe("checkers get no descriptor the server inherited, as the reference's get none", { skip }, () => {
  let root = "";
  let client: TestClient;
  let file = -1;
  let reference: string[] = [];
  let nextPort = FIRST_PORT;
  const sockets: Server[] = [];

  /** The stdio of a server given the extra file at FILE_FD and a fresh listening socket at SOCKET_FD; and that socket's port. */
  async function descriptors(): Promise<{ inherit: (number | "ignore")[]; port: number }> {
    const socket = createServer();
    sockets.push(socket);
    const port = nextPort++;
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.listen({ host: "::1", port }, () => resolve());
    });
    const socketFd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
    const inherit: (number | "ignore")[] = [];
    for (let fd = 3; fd <= SOCKET_FD; fd++) inherit.push(fd === FILE_FD ? file : fd === SOCKET_FD ? socketFd : "ignore");
    return { inherit, port };
  }

  /** A configuration directory whose one real client's checker lists its descriptors into `dir`/fds; `fillers` more clients. */
  function configure(name: string, fillers: number): { conf: string; listing: string; state: string } {
    const dir = join(root, name);
    const conf = join(dir, "conf");
    const state = join(dir, "state");
    const out = join(dir, "out");
    mkdirSync(conf, { recursive: true });
    mkdirSync(state);
    mkdirSync(out);
    chmodSync(dir, 0o755);
    chmodSync(out, 0o777);
    const listing = join(out, "fds");
    const checker = `ls /proc/self/fd > ${listing}.new && mv ${listing}.new ${listing}`;
    const filler = (i: number): string =>
      `[filler-${i}]\nkey_id = ${i.toString(16).padStart(64, "0")}\nsecret = ${Buffer.from(`filler ${i}`).toString("base64")}\nchecker = true\ninterval = 1d\n`;
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    writeFileSync(
      join(conf, "clients.conf"),
      [`${client.section}\nchecker = ${checker}\ninterval = 1s\n`, ...Array.from({ length: fillers }, (_, i) => filler(i + 1))].join("\n"),
      { mode: 0o600 },
    );
    return { conf, listing, state };
  }

  /** The descriptor numbers the checker listed (its own `ls` adds one for the directory it reads). */
  const listed = (listing: string): Promise<string[]> =>
    eventually(() => {
      try {
        return readFileSync(listing, "utf8").split("\n").filter((l) => l !== "").sort((a, b) => Number(a) - Number(b));
      } catch {
        return undefined;
      }
    }, { what: `a checker's listing in ${listing}`, timeoutMs: 30_000 });

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-checker-fds-"));
    chmodSync(root, 0o755);
    const fleet = makeFleetDir(join(root, "keys"), 1);
    client = fleet.clients[0]!;
    writeFileSync(join(root, "inherited"), "a file the server's parent opened\n");
    file = openSync(join(root, "inherited"), "r");

    const bus: PrivateBus = await startPrivateBus();
    try {
      const { conf, listing, state } = configure("reference", 0);
      const { inherit, port } = await descriptors();
      const server = await startReference(conf, state, bus.address, false, { inherit, socket: SOCKET_FD });
      try {
        assert.equal(server.port, port, "the reference serves on the socket it was given");
        reference = await listed(listing);
      } finally {
        await server.stop();
      }
    } finally {
      await bus.stop();
    }
  });

  after(() => {
    for (const s of sockets) s.close();
    if (file >= 0) closeSync(file);
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("the reference's checker has its standard streams only (the oracle)", () => {
    assert.ok(!reference.includes(String(FILE_FD)) && !reference.includes(String(SOCKET_FD)), reference.join(" "));
    assert.deepEqual(reference.slice(0, 3), ["0", "1", "2"]);
  });

  /** Our server (`bin`: another installation's) with the same descriptors and `fillers` more clients; its checker's listing and its log. */
  async function ours(name: string, fillers: number, bin?: string): Promise<{ seen: string[]; log: string; comm: string }> {
    const { conf, listing, state } = configure(name, fillers);
    const { inherit, port } = await descriptors();
    const server = await startServer(["--configdir", conf, "--statedir", state, "--no-restore", "--socket", String(SOCKET_FD)], {}, { inherit, ...(bin ? { bin } : {}) });
    try {
      assert.equal(server.port, port, "ours serves on the socket it was given");
      const seen = await listed(listing);
      // The server itself keeps what it was given, as the reference does
      // (a lock a wrapper holds through it stays held).
      assert.equal(readlinkSync(`/proc/${server.process.pid}/fd/${FILE_FD}`), join(root, "inherited"));
      return { seen, log: server.log(), comm: readFileSync(`/proc/${server.process.pid}/comm`, "utf8") };
    } finally {
      await server.stop();
    }
  }

  test("checkers started in the server (few clients) see what the reference's see", async () => {
    assert.deepEqual((await ours("in-server", 0)).seen, reference);
  });

  test(`checkers started in the checker host (${CHECKER_HOST_MIN_CLIENTS} clients) see what the reference's see`, async () => {
    assert.deepEqual((await ours("in-host", CHECKER_HOST_MIN_CLIENTS - 1)).seen, reference);
  });

  test("without the addon (never built), checkers still see what the reference's see", async () => {
    // This checkout's build without its build/ directory, as test/runtimes.test.ts makes one.
    const install = join(root, "unbuilt");
    for (const dir of ["dist", "bin"]) cpSync(join(REPO, dir), join(install, dir), { recursive: true });
    for (const entry of ["node_modules", "package.json", "example"]) symlinkSync(join(REPO, entry), join(install, entry));
    const { seen, log, comm } = await ours("no-addon", 0, join(install, "bin", "mandos"));
    assert.deepEqual(seen, reference);
    // Named as with the addon (through /proc): Debian's init script stops it by that name.
    assert.equal(comm, "mandos\n");
    // For one client: the checker host, which closed them.
    assert.match(log, new RegExp(`Descriptors (\\d+, )*${FILE_FD}, ${SOCKET_FD}\\b.* cannot be marked close-on-exec without the addon; checkers start in the checker host`));
  });
});

test("inheritable descriptors are those above 2 whose fdinfo flags lack O_CLOEXEC", () => {
  const proc = mkdtempSync(join(tmpdir(), "mandos-ts-fdinfo-"));
  try {
    mkdirSync(join(proc, "fdinfo"));
    const info = (flags: string): string => `pos:\t0\nflags:\t${flags}\nmnt_id:\t23\nino:\t5\n`;
    const fds: Record<string, string> = { 0: "0100000", 2: "02", 3: "02000002", 7: "0100000", 12: "02100000", 30: "01", 251: "04002" };
    for (const [fd, flags] of Object.entries(fds)) writeFileSync(join(proc, "fdinfo", fd), info(flags));
    assert.deepEqual(inheritableDescriptors(proc), [7, 30, 251]);
    const marked: number[] = [];
    assert.deepEqual(keepFromChildren((fd) => fd !== 30 && marked.push(fd) > 0, proc), [30], "what could not be marked");
    assert.deepEqual(marked, [7, 251]);
    assert.deepEqual(inheritableDescriptors(join(proc, "nowhere")), [], "no /proc: nothing");
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});
