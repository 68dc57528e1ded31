// The breaker in front of each etcd member (src/main/fleet/member-policy.ts):
// the only member passed over after three recoverable failures in a row,
// one of several at its first, tried again a second later (etcd3's own
// default waited five), never broken by an answer that says no (a denied
// permission is etcd answering); while its trial request is out, other
// requests pass the member over rather than wait for it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { isBrokenCircuitError } from "cockatiel";
import { EtcdPermissionDeniedError, GRPCUnavailableError } from "etcd3";
import { LONE_MEMBER_FAILURES, MEMBER_RETRY_MS, memberPolicy } from "../src/main/fleet/member-policy.js";

/** Runs `policy` once over a call that throws `error`, or answers when `error` is null; says whether the call ran and how it ended. */
async function attempt(policy: ReturnType<typeof memberPolicy>, error: Error | null): Promise<{ ran: boolean; outcome: unknown }> {
  let ran = false;
  try {
    await policy.execute(() => {
      ran = true;
      if (error) throw error;
      return Promise.resolve("answer");
    });
    return { ran, outcome: "answer" };
  } catch (caught) {
    return { ran, outcome: caught };
  }
}

test("the only member, failed three times in a row, is passed over, and tried again a second later", async () => {
  const policy = memberPolicy(1);
  for (let i = 0; i < LONE_MEMBER_FAILURES; i++) {
    const r = await attempt(policy, new GRPCUnavailableError("14 UNAVAILABLE: Connection dropped"));
    assert.ok(r.ran, `failure ${i + 1} did not reach the member`);
  }
  const skipped = await attempt(policy, null);
  assert.equal(skipped.ran, false, "a request reached a member just found failing three times");
  assert.ok(isBrokenCircuitError(skipped.outcome), `passed over with ${String(skipped.outcome)}`);

  await sleep(MEMBER_RETRY_MS + 300);
  const trial = await attempt(policy, null);
  assert.ok(trial.ran, `no request reached the member ${MEMBER_RETRY_MS + 300} ms after it was passed over`);
  assert.equal(trial.outcome, "answer");
  assert.equal((await attempt(policy, null)).ran, true, "the member answered its trial, yet is still passed over");
});

test("one member of three is passed over at its first failure, and tried again a second later", async () => {
  const policy = memberPolicy(3);
  assert.equal((await attempt(policy, new GRPCUnavailableError("14 UNAVAILABLE: Connection dropped"))).ran, true);
  const skipped = await attempt(policy, null);
  assert.equal(skipped.ran, false, "a request reached a member of three that had just failed");
  assert.ok(isBrokenCircuitError(skipped.outcome), `passed over with ${String(skipped.outcome)}`);
  await sleep(MEMBER_RETRY_MS + 300);
  assert.equal((await attempt(policy, null)).ran, true, `no request reached the member ${MEMBER_RETRY_MS + 300} ms after it was passed over`);
});

test("a member that answers no is not a failing member", async () => {
  const policy = memberPolicy(3);
  for (let i = 0; i < LONE_MEMBER_FAILURES + 2; i++) {
    const r = await attempt(policy, new EtcdPermissionDeniedError("etcdserver: permission denied"));
    assert.ok(r.ran, `request ${i + 1} after ${i} denials was passed over`);
    assert.ok(r.outcome instanceof EtcdPermissionDeniedError);
  }
});

test("while a member's trial request is out, another request passes it over at once instead of waiting for the trial", async () => {
  const policy = memberPolicy(1);
  for (let i = 0; i < LONE_MEMBER_FAILURES; i++) await attempt(policy, new GRPCUnavailableError("14 UNAVAILABLE: Connection dropped"));
  await sleep(MEMBER_RETRY_MS + 300);
  let answer!: (value: string) => void;
  const trial = policy.execute(() => new Promise<string>((resolve) => (answer = resolve)));
  // etcd3 makes a request again from inside the trial when etcd refused
  // its auth token: waiting for the trial, it would wait for itself.
  const during = await attempt(policy, null);
  assert.equal(during.ran, false, "a request reached the member while its trial was out");
  assert.ok(isBrokenCircuitError(during.outcome), `passed over with ${String(during.outcome)}`);
  answer("answer");
  assert.equal(await trial, "answer");
  assert.equal((await attempt(policy, null)).ran, true, "the member answered its trial, yet is still passed over");
});
