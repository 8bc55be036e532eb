"use strict";
// S2: FAIL → the job is in the retry set (INFO is exact straight away) → MUTATE requeue by jid
// → FETCH shows the failure block. Also the retries.clear() the client's own suite uses.
const test = require("node:test");
const assert = require("node:assert/strict");
const { tasks, producerAndWorker } = require("./helpers");

const { producer, worker } = producerAndWorker("node-s2");

async function fetchAndFail(queue, error) {
  const jid = await producer.push({ jobtype: "S2Job", args: ["x"], queue, retry: 3 });
  const job = await worker.fetch(queue);
  assert.equal(job.jid, jid);
  assert.equal(await worker.fail(jid, error), "OK");
  return jid;
}

test("FAIL puts the job in the retry set, hidden, then MUTATE requeue brings it back",
  { timeout: 20000 }, async () => {
    const error = new Error("it broke");
    error.code = "E_BROKEN";
    const before = (await producer.info()).faktory;
    const jid = await fetchAndFail("s2", error);

    const info = (await producer.info()).faktory;
    assert.equal(info.tasks.Retries.size, 1);
    assert.equal(info.sets.retries, 1);
    assert.equal(info.total_failures, before.total_failures + 1);

    // Retried no sooner than 15 s: a whole blocking FETCH (2 s) finds nothing.
    assert.equal(await worker.fetch("s2"), null);

    assert.equal(await producer.retries.withJids(jid).requeue(), "OK");
    assert.equal((await tasks(producer)).Retries.size, 0);

    const job = await worker.fetch("s2");
    assert.ok(job, "the requeued job is fetchable at once");
    assert.equal(job.jid, jid);
    const failure = job.failure;
    assert.equal(failure.retry_count, 0);
    assert.equal(failure.remaining, 3);
    assert.equal(failure.message, "it broke");
    assert.equal(failure.errtype, "E_BROKEN");
    assert.ok(!Number.isNaN(Date.parse(failure.failed_at)), `failed_at ${failure.failed_at}`);
    assert.ok(!Number.isNaN(Date.parse(failure.next_at)), `next_at ${failure.next_at}`);
    assert.ok(Date.parse(failure.next_at) - Date.parse(failure.failed_at) >= 15000,
      `next_at ${failure.next_at} is at least 15 s after failed_at ${failure.failed_at}`);
    // The Node client always sends the stack as the backtrace.
    assert.ok(Array.isArray(failure.backtrace) && failure.backtrace.length > 0);
    assert.equal(failure.backtrace[0], "Error: it broke");
    assert.equal(await worker.ack(jid), "OK");
  });

test("an error without a code is recorded with errtype \"undefined\"", { timeout: 15000 }, async () => {
  const jid = await fetchAndFail("s2", new Error("no code"));
  await producer.retries.withJids(jid).requeue();
  const job = await worker.fetch("s2");
  assert.equal(job.jid, jid);
  assert.equal(job.failure.errtype, "undefined");
  assert.equal(job.failure.message, "no code");
  // Failing it a second time counts up.
  await worker.fail(jid, new Error("again"));
  await producer.retries.withJids(jid).requeue();
  const again = await worker.fetch("s2");
  assert.equal(again.failure.retry_count, 1);
  assert.equal(again.failure.remaining, 2);
  assert.equal(again.failure.message, "again");
  await worker.ack(jid);
});

test("MUTATE with an empty filter: retries.clear() empties the set", { timeout: 15000 }, async () => {
  await fetchAndFail("s2", new Error("one"));
  await fetchAndFail("s2", new Error("two"));
  assert.equal((await tasks(producer)).Retries.size, 2);
  assert.equal(await producer.retries.clear(), "OK");
  assert.equal((await tasks(producer)).Retries.size, 0);
});

test("MUTATE kill by jobtype moves retries to the dead set", { timeout: 15000 }, async () => {
  await fetchAndFail("s2", new Error("one"));
  assert.equal(await producer.retries.ofType("OtherJob").kill(), "OK");
  assert.equal((await tasks(producer)).Retries.size, 1, "a non-matching jobtype filter changes nothing");
  assert.equal(await producer.retries.ofType("S2Job").kill(), "OK");
  const t = await tasks(producer);
  assert.equal(t.Retries.size, 0);
  assert.equal(t.Dead.size, 1);
  assert.equal(await producer.dead.discard(), "OK");
  assert.equal((await tasks(producer)).Dead.size, 0);
});

test("FAIL for a jid that is not reserved is an error", { timeout: 15000 }, async () => {
  await assert.rejects(worker.fail("0123456789abcdef", new Error("x")), { message: "ERR Job not found 0123456789abcdef" });
});
