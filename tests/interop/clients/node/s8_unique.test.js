"use strict";
// S8: unique jobs (Enterprise semantics, built into faktory_py per protocol/spec.md §9.1).
// The Node client has no unique API; it simply sends `custom.unique_for` / `unique_until` and
// sees the refusal as a rejected push(): ReplyError "NOTUNIQUE Job not unique".
const test = require("node:test");
const assert = require("node:assert/strict");
const { producerAndWorker } = require("./helpers");

const { producer, worker } = producerAndWorker("node-s8");

function uniqueJob(args, custom) {
  const job = producer.job("S8Job", ...args);
  job.queue = "s8";
  job.custom = custom;
  return job;
}

test("a second identical push with unique_for is refused with NOTUNIQUE", { timeout: 15000 }, async () => {
  await uniqueJob([1, "a"], { unique_for: 60 }).push();
  await assert.rejects(uniqueJob([1, "a"], { unique_for: 60 }).push(), { message: "NOTUNIQUE Job not unique" });
  // Different args, or no unique_for at all, are not affected by the lock.
  await uniqueJob([2, "a"], { unique_for: 60 }).push();
  await uniqueJob([1, "a"], {}).push();
  assert.equal((await producer.info()).faktory.queues.s8, 3);
});

test("unique_until start releases the lock at FETCH", { timeout: 15000 }, async () => {
  const jid = await uniqueJob(["s"], { unique_for: 60, unique_until: "start" }).push();
  await assert.rejects(uniqueJob(["s"], { unique_for: 60, unique_until: "start" }).push(),
    { message: "NOTUNIQUE Job not unique" });
  const job = await worker.fetch("s8");
  assert.equal(job.jid, jid);
  await uniqueJob(["s"], { unique_for: 60, unique_until: "start" }).push();
  await worker.ack(jid);
});

test("the default (success) lock is released by ACK", { timeout: 15000 }, async () => {
  const jid = await uniqueJob(["d"], { unique_for: 60 }).push();
  const job = await worker.fetch("s8");
  assert.equal(job.jid, jid);
  await assert.rejects(uniqueJob(["d"], { unique_for: 60 }).push(), { message: "NOTUNIQUE Job not unique" });
  await worker.ack(jid);
  await uniqueJob(["d"], { unique_for: 60 }).push();
});
