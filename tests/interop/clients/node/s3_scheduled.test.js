"use strict";
// S3: scheduled jobs (`at`, set by the Node client from a Date with toISOString()).
const test = require("node:test");
const assert = require("node:assert/strict");
const { tasks, producerAndWorker } = require("./helpers");

const { producer, worker } = producerAndWorker("node-s3");

function scheduledJob(at, ...args) {
  const job = producer.job("S3Job", ...args);
  job.queue = "s3";
  job.at = at;
  return job;
}

test("at = now + 1 day: scheduled, not fetchable; MUTATE kill by pattern moves it to dead",
  { timeout: 20000 }, async () => {
    const at = new Date(Date.now() + 24 * 3600 * 1000);
    const jid = await scheduledJob(at, "a-marker-arg").push();
    await scheduledJob(new Date(Date.now() + 24 * 3600 * 1000), "other").push();

    let t = await tasks(producer);
    assert.equal(t.Scheduled.size, 2);
    assert.equal((await producer.info()).faktory.sets.scheduled, 2);
    assert.equal(await worker.fetch("s3"), null);

    assert.equal(await producer.scheduled.matching("*marker*").kill(), "OK");
    t = await tasks(producer);
    assert.equal(t.Scheduled.size, 1);
    assert.equal(t.Dead.size, 1);

    // Requeue it from the dead set to look at it: `at` survived the round trip.
    assert.equal(await producer.dead.withJids(jid).requeue(), "OK");
    const job = await worker.fetch("s3");
    assert.equal(job.jid, jid);
    assert.deepEqual(job.args, ["a-marker-arg"]);
    assert.equal((await tasks(producer)).Dead.size, 0);
    await worker.ack(jid);
  });

test("at = now + 2 s: fetchable once due, not before", { timeout: 20000 }, async () => {
  const pushedAt = Date.now();
  const jid = await scheduledJob(new Date(pushedAt + 2000), "soon").push();
  assert.equal((await tasks(producer)).Scheduled.size, 1);
  let job = null;
  // The real server polls its scheduled set every 5 s; allow 2 s + that.
  while (job === null && Date.now() - pushedAt < 7500) job = await worker.fetch("s3");
  const waited = (Date.now() - pushedAt) / 1000;
  assert.ok(job, `the job did not become fetchable within ${waited} s`);
  assert.equal(job.jid, jid);
  assert.ok(waited >= 1.9, `fetched after ${waited} s, before it was due`);
  assert.equal((await tasks(producer)).Scheduled.size, 0);
  await worker.ack(jid);
});

test("at in the past is enqueued immediately", { timeout: 15000 }, async () => {
  const jid = await scheduledJob(new Date(Date.now() - 60 * 1000), "past").push();
  assert.equal((await tasks(producer)).Scheduled.size, 0);
  const started = Date.now();
  const job = await worker.fetch("s3");
  assert.ok(job);
  assert.equal(job.jid, jid);
  assert.ok(Date.now() - started < 1000, "no blocking wait for a due job");
  await worker.ack(jid);
});

test("at = \"\" is enqueued immediately", { timeout: 15000 }, async () => {
  const jid = await scheduledJob("", "empty").push();
  const job = await worker.fetch("s3");
  assert.ok(job);
  assert.equal(job.jid, jid);
  assert.equal(job.at, undefined, "an empty `at` is not echoed back");
  await worker.ack(jid);
});

test("a malformed at is refused", { timeout: 15000 }, async () => {
  await assert.rejects(scheduledJob("tomorrow-ish").push(), { message: /^ERR invalid timestamp for 'at': "tomorrow-ish"/ });
  assert.equal((await producer.info()).faktory.total_enqueued, 0);
});
