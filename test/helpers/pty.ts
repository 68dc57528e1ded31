// A program run with a pseudo-terminal as its controlling terminal, as an
// admin runs mandos-keygen --password: for what it writes to /dev/tty and
// what it does with typed bytes. Node has no pty; Python's pty module
// (python3 is on every machine these tests run on) opens one.

import { spawn } from "node:child_process";

export interface PtyRun {
  readonly status: number | null;
  /** Everything written to the terminal (echo, prompts, and stderr unless redirected). */
  readonly terminal: Buffer;
  /** Standard output, kept apart from the terminal. */
  readonly stdout: Buffer;
}

export interface PtyOptions {
  /** Bytes typed at the terminal, each once `after` has shown on it (after what the previous step waited for). */
  readonly typed?: readonly { readonly after: string; readonly bytes: Buffer }[];
  /** Standard input from these bytes (a pipe) instead of the terminal. */
  readonly stdin?: Buffer;
  /** Standard error to /dev/null instead of the terminal. */
  readonly stderrToNull?: boolean;
  readonly timeoutMs?: number;
}

const DRIVER = String.raw`
import json, os, pty, select, sys, time
spec = json.loads(sys.stdin.readline())
stdin_bytes = bytes.fromhex(spec["stdin"]) if spec["stdin"] is not None else None
r_out, w_out = os.pipe()
r_in, w_in = os.pipe() if stdin_bytes is not None else (None, None)
pid, fd = pty.fork()
if pid == 0:
    os.close(r_out)
    os.dup2(w_out, 1)
    if r_in is not None:
        os.dup2(r_in, 0)
    if spec["stderrToNull"]:
        os.dup2(os.open("/dev/null", os.O_WRONLY), 2)
    os.execvp(spec["argv"][0], spec["argv"])
os.close(w_out)
if r_in is not None:
    os.close(r_in)
    os.write(w_in, stdin_bytes)
    os.close(w_in)
term, out = b"", b""
def pump(seconds):
    global term, out
    end = time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select([fd, r_out], [], [], 0.05)
        for f in ready:
            try:
                data = os.read(f, 65536)
            except OSError:
                data = b""
            if f == fd:
                term += data
            else:
                out += data
seen = 0
for step in spec["typed"]:
    want = bytes.fromhex(step["after"])
    end = time.time() + spec["timeoutMs"] / 1000
    while term.find(want, seen) < 0 and time.time() < end:
        pump(0.05)
    seen = term.find(want, seen) + len(want)
    os.write(fd, bytes.fromhex(step["bytes"]))
deadline = time.time() + spec["timeoutMs"] / 1000
status = None
while time.time() < deadline:
    pump(0.1)
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(st)
        break
if status is None:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
pump(0.2)
sys.stdout.write(json.dumps({"status": status, "terminal": term.hex(), "stdout": out.hex()}))
`;

/** Runs `argv` in a new session on a fresh pseudo-terminal. */
export function runOnPty(argv: readonly string[], options: PtyOptions = {}): Promise<PtyRun> {
  const spec = {
    argv,
    typed: (options.typed ?? []).map((t) => ({ after: Buffer.from(t.after).toString("hex"), bytes: t.bytes.toString("hex") })),
    stdin: options.stdin?.toString("hex") ?? null,
    stderrToNull: options.stderrToNull ?? false,
    timeoutMs: options.timeoutMs ?? 60_000,
  };
  return new Promise((resolve, reject) => {
    const child = spawn("python3", ["-c", DRIVER], { stdio: ["pipe", "pipe", "inherit"] });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`pty driver exited ${code}`));
      const r = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { status: number | null; terminal: string; stdout: string };
      resolve({ status: r.status, terminal: Buffer.from(r.terminal, "hex"), stdout: Buffer.from(r.stdout, "hex") });
    });
    child.stdin.end(`${JSON.stringify(spec)}\n`);
  });
}
