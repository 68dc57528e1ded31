import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { EMPTY_KEY_ID, normaliseKeyId } from "../src/main/clients/settings.js";

test("key IDs compare case- and space-insensitively", () => {
  assert.equal(normaliseKeyId(" ab cd\tEF "), "ABCDEF");
});

test("the empty key ID is SHA-256 of nothing", () => {
  assert.equal(createHash("sha256").update(Buffer.alloc(0)).digest("hex").toUpperCase(), EMPTY_KEY_ID);
});
