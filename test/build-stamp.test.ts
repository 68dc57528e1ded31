// The build stamp (scripts/stamp-build.sh, src/build.ts): the same files
// give the same stamp, any built file or the lock file changes it, source
// maps do not, and scripts/prune-dist.sh removes built files whose source
// is gone; a build without one reads as "unstamped". And BuildWatch
// (src/main/daemon/build-watch.ts): one line a change of the installed
// build, none while it stays. The running server's side is in
// upgrade-in-place.test.ts.

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeBuild, installedBuild, UNSTAMPED, type BuildStamp } from "../src/build.js";
import { BuildWatch } from "../src/main/daemon/build-watch.js";
import type { Logger } from "../src/main/daemon/log.js";
import { REPO, run } from "./helpers/server.js";

/** A tree with the stamp script, a package.json and two built files; stamp() runs the script there and reads what it wrote. */
function tree(t: TestContext): { dir: string; stamp: () => Promise<BuildStamp> } {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-stamp-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, "scripts"));
  mkdirSync(join(dir, "dist", "src", "main"), { recursive: true });
  cpSync(join(REPO, "scripts", "stamp-build.sh"), join(dir, "scripts", "stamp-build.sh"));
  writeFileSync(join(dir, "package.json"), '{ "name": "x", "version": "9.8.7" }\n');
  writeFileSync(join(dir, "dist", "src", "main", "main.js"), "export {};\n");
  writeFileSync(join(dir, "dist", "src", "main", "main.js.map"), "{}\n");
  writeFileSync(join(dir, "dist", "src", "entry.cjs"), "module.exports = 1;\n");
  const stamp = async (): Promise<BuildStamp> => {
    const r = await run("sh", [join(dir, "scripts", "stamp-build.sh")], 30_000, {}, "/");
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(readFileSync(join(dir, "dist", "src", "build.json"), "utf8")) as BuildStamp;
  };
  return { dir, stamp };
}

test("the same files, the same stamp; a built file or the lock file changed, another; a source map changed, the same", async (t) => {
  const { dir, stamp } = tree(t);
  const first = await stamp();
  assert.equal(first.version, "9.8.7");
  assert.match(first.build, /^[0-9a-f]{12}$/);
  assert.deepEqual(await stamp(), first, "stamped again: the stamp itself is not hashed");
  writeFileSync(join(dir, "dist", "src", "main", "main.js.map"), '{"x":1}\n');
  assert.deepEqual(await stamp(), first, "a source map is not the build");
  writeFileSync(join(dir, "dist", "src", "entry.cjs"), "module.exports = 2;\n");
  const second = await stamp();
  assert.notEqual(second.build, first.build, "a built file changed");
  writeFileSync(join(dir, "package-lock.json"), '{ "lockfileVersion": 3 }\n');
  assert.notEqual((await stamp()).build, second.build, "the dependencies' versions changed");
});

test("prune-dist.sh removes what tsc built from a deleted source, keeps the rest, and the stamp is then the fresh build's", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-prune-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, "scripts"));
  for (const s of ["prune-dist.sh", "stamp-build.sh"]) cpSync(join(REPO, "scripts", s), join(dir, "scripts", s));
  writeFileSync(join(dir, "package.json"), '{ "name": "x", "version": "1.2.3" }\n');
  const files = (built: Record<string, string>): void => {
    for (const [path, text] of Object.entries(built)) {
      mkdirSync(join(dir, path, ".."), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
  };
  const script = async (name: string): Promise<void> => {
    const r = await run("sh", [join(dir, "scripts", name)], 30_000, {}, "/");
    assert.equal(r.code, 0, r.stderr);
  };
  files({
    "src/main/kept.ts": "export {};\n",
    "src/workers/entry.cts": "module.exports = 1;\n",
    "test/kept.test.ts": "export {};\n",
    "dist/src/main/kept.js": "export {};\n",
    "dist/src/main/kept.js.map": "{}\n",
    "dist/src/workers/entry.cjs": "module.exports = 1;\n",
    "dist/src/workers/entry.cjs.map": "{}\n",
    "dist/test/kept.test.js": "export {};\n",
  });
  await script("stamp-build.sh");
  const fresh = readFileSync(join(dir, "dist", "src", "build.json"), "utf8");
  files({
    "dist/src/main/renamed.js": "export {};\n",
    "dist/src/main/renamed.js.map": "{}\n",
    "dist/src/gone/old.cjs": "module.exports = 0;\n",
    "dist/test/deleted.test.js": "throw new Error('a deleted test');\n",
  });
  await script("stamp-build.sh");
  assert.notEqual(readFileSync(join(dir, "dist", "src", "build.json"), "utf8"), fresh, "without the prune, stale files are hashed");
  await script("prune-dist.sh");
  await script("stamp-build.sh");
  assert.equal(readFileSync(join(dir, "dist", "src", "build.json"), "utf8"), fresh);
  const left = (await run("find", [".", "-type", "f"], 30_000, {}, dir)).stdout.toString().split("\n").filter(Boolean).sort();
  assert.deepEqual(left, [
    "./dist/src/build.json",
    "./dist/src/main/kept.js",
    "./dist/src/main/kept.js.map",
    "./dist/src/workers/entry.cjs",
    "./dist/src/workers/entry.cjs.map",
    "./dist/test/kept.test.js",
    "./package.json",
    "./scripts/prune-dist.sh",
    "./scripts/stamp-build.sh",
    "./src/main/kept.ts",
    "./src/workers/entry.cts",
    "./test/kept.test.ts",
  ]);
});

test("this checkout's built files read their own stamp; describeBuild names it", () => {
  const stamp = installedBuild();
  if (stamp.build === UNSTAMPED) {
    assert.equal(describeBuild(stamp), "an unstamped build");
  } else {
    assert.deepEqual(stamp, JSON.parse(readFileSync(join(REPO, "dist", "src", "build.json"), "utf8")));
    assert.equal(describeBuild(stamp), `${stamp.version} (build ${stamp.build})`);
  }
});

test("a stamp this process may not read is no build: readableBuild() says null, installedBuild() unstamped", { skip: process.getuid?.() === 0 ? false : "needs root, to read as nobody" }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-stamp-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  cpSync(new URL("../src/build.js", import.meta.url), join(dir, "build.js"));
  writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
  writeFileSync(join(dir, "build.json"), '{"version":"1.0.0","build":"aaaaaaaaaaaa"}\n', { mode: 0o600 });
  const script = `import("${join(dir, "build.js")}").then((m) => console.log(JSON.stringify([m.readableBuild(), m.installedBuild()])))`;
  const read = async (...as: string[]): Promise<unknown> => {
    const r = await run(as.length ? "runuser" : process.execPath, [...as, ...(as.length ? ["--", process.execPath] : []), "-e", script], 30_000);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.toString());
  };
  const stamp = { version: "1.0.0", build: "aaaaaaaaaaaa" };
  assert.deepEqual(await read(), [stamp, stamp], "root reads it");
  assert.deepEqual(await read("-u", "nobody"), [null, { version: UNSTAMPED, build: UNSTAMPED }]);
});

test("BuildWatch: one WARNING when another build is installed, none while it stays or cannot be read, one INFO when the server's own is back", () => {
  const lines: string[] = [];
  const add = (level: string) => (m: string): void => void lines.push(`${level}: ${m}`);
  const logger: Logger = { debug: add("DEBUG"), info: add("INFO"), warning: add("WARNING"), error: add("ERROR"), critical: add("CRITICAL") };
  const running = { version: "1.0.0", build: "aaaaaaaaaaaa" };
  let installed: BuildStamp | null = running;
  const watch = new BuildWatch(running, logger, () => installed);
  watch.check();
  assert.deepEqual(lines, []);
  installed = { version: "1.1.0", build: "bbbbbbbbbbbb" };
  watch.check();
  watch.check();
  installed = null; // not readable: nothing said
  watch.check();
  installed = { version: UNSTAMPED, build: UNSTAMPED };
  watch.check();
  installed = running;
  watch.check();
  watch.check();
  assert.deepEqual(lines, [
    "WARNING: The installed mandos-ts is 1.1.0 (build bbbbbbbbbbbb), not this server's 1.0.0 (build aaaaaaaaaaaa): restart mandos to run it",
    "WARNING: The installed mandos-ts is an unstamped build, not this server's 1.0.0 (build aaaaaaaaaaaa): restart mandos to run it",
    "INFO: The installed mandos-ts is this server's build again",
  ]);
});
