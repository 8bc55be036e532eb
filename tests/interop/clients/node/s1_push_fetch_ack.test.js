"use strict";
// S1: producer PUSH, worker FETCH + ACK, FIFO, queue priority, empty FETCH, INFO counters.
const test = require("node:test");
const assert = require("node:assert/strict");
const faktory = require("faktory-worker");
const { within, producerAndWorker } = require("./helpers");

const { producer, worker } = producerAndWorker("node-s1", { labels: ["node"] });

test("a job round-trips jid, jobtype, args, queue and custom", { timeout: 15000 }, async () => {
  const job = producer.job("S1Job", 1, "two", { three: [3] }, null);
  job.queue = "s1";
  job.custom = { trace: "abc", nested: { n: 1 } };
  const jid = await job.push();
  assert.equal(jid, job.jid);
  assert.equal(jid.length, 36, "the Node client's jids are uuid v4 strings");

  const fetched = await worker.fetch("s1");
  assert.equal(fetched.jid, jid);
  assert.equal(fetched.jobtype, "S1Job");
  assert.deepEqual(fetched.args, [1, "two", { three: [3] }, null]);
  assert.equal(fetched.queue, "s1");
  assert.deepEqual(fetched.custom, { trace: "abc", nested: { n: 1 } });
  assert.equal(fetched.retry, 25);
  assert.ok(!Number.isNaN(Date.parse(fetched.created_at)), `created_at ${fetched.created_at}`);
  assert.ok(!Number.isNaN(Date.parse(fetched.enqueued_at)), `enqueued_at ${fetched.enqueued_at}`);
  assert.equal(await worker.ack(jid), "OK");
});

test("ACK bumps INFO total_processed by one", { timeout: 15000 }, async () => {
  const jid = await producer.push({ jobtype: "S1Job", args: [], queue: "s1" });
  const before = (await producer.info()).faktory;
  assert.equal(before.queues.s1, 1);
  const fetched = await worker.fetch("s1");
  assert.equal(fetched.jid, jid);
  await worker.ack(jid);
  const after = (await producer.info()).faktory;
  assert.equal(after.total_processed, before.total_processed + 1);
  assert.equal(after.total_failures, before.total_failures);
  assert.equal(after.queues.s1, 0, "a drained queue stays listed with size 0");
});

test("queues are FIFO", { timeout: 15000 }, async () => {
  const jids = [];
  for (let i = 0; i < 5; i += 1) jids.push(await producer.push({ jobtype: "S1Job", args: [i], queue: "fifo" }));
  const seen = [];
  for (let i = 0; i < 5; i += 1) {
    const job = await worker.fetch("fifo");
    seen.push(job.jid);
    await worker.ack(job.jid);
  }
  assert.deepEqual(seen, jids);
});

test("FETCH takes queues in the order given", { timeout: 15000 }, async () => {
  const low = await producer.push({ jobtype: "S1Job", args: ["low"], queue: "low" });
  const high = await producer.push({ jobtype: "S1Job", args: ["high"], queue: "high" });
  const first = await worker.fetch("high", "low");
  const second = await worker.fetch("high", "low");
  assert.equal(first.jid, high);
  assert.equal(second.jid, low);
  await worker.ack(first.jid);
  await worker.ack(second.jid);
});

test("FETCH on an empty queue gives null (`$-1`) after its 2 s block", { timeout: 15000 }, async () => {
  const jid = await producer.push({ jobtype: "S1Job", args: [], queue: "s1" });
  assert.equal((await worker.fetch("s1")).jid, jid);
  const started = process.hrtime.bigint();
  const nothing = await worker.fetch("s1");
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  assert.equal(nothing, null);
  // after the block, not never: 1 s of slack for a loaded 2-core machine
  assert.ok(elapsed <= 3, `empty FETCH took ${elapsed.toFixed(3)} s`);
  await worker.ack(jid);
});

test("a blocked FETCH wakes up for a job pushed meanwhile", { timeout: 15000 }, async () => {
  const pending = worker.fetch("late");
  await new Promise((resolve) => setTimeout(resolve, 300));
  const jid = await producer.push({ jobtype: "S1Job", args: [], queue: "late" });
  const job = await within(5000, pending, "blocked FETCH"); // not woken: null at 2 s, failing below
  assert.equal(job.jid, jid);
  await worker.ack(jid);
});

test("a job built from faktory.Job defaults is accepted (non-standard priority key)",
  { timeout: 15000 }, async () => {
    // Job.defaults carries the non-standard `priority: 5`; the server must accept it.
    const jid = await producer.push(new faktory.Job("S1Defaults", producer).toJSON());
    const job = await worker.fetch("default");
    assert.equal(job.jid, jid);
    assert.deepEqual(job.args, []);
    await worker.ack(jid);
  });
