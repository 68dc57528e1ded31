// The AbortControllers of secret requests are reused when their request
// settled without an abort (src/main/serve/abort-pool.ts); an aborted one
// never comes back, since its signal stays aborted.

import { test } from "node:test";
import assert from "node:assert/strict";
import { returnAbortController, takeAbortController } from "../src/main/serve/abort-pool.js";

test("a controller returned unaborted is handed out again; an aborted one is not", () => {
  const first = takeAbortController();
  returnAbortController(first);
  const again = takeAbortController();
  assert.equal(again, first);
  assert.equal(again.signal.aborted, false);
  again.abort();
  returnAbortController(again);
  const next = takeAbortController();
  assert.notEqual(next, again);
  assert.equal(next.signal.aborted, false);
});
