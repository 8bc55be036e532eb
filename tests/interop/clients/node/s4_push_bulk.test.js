"use strict";
// S4: PUSHB through Client.pushBulk, with a mix of valid and invalid jobs. The client fills
// in jid/queue/args/priority/retry defaults, so the invalid jobs must override them.
const test = require("node:test");
const assert = require("node:assert/strict");
const { producerAndWorker } = require("./helpers");

const { producer, worker } = producerAndWorker("node-s4");

test("all valid: an empty rejection map, every job enqueued in order", { timeout: 15000 }, async () => {
  const jobs = [0, 1, 2].map((i) => producer.job("S4Job", i));
  jobs.forEach((job) => { job.queue = "s4"; });
  assert.deepEqual(await producer.pushBulk(jobs), {});
  for (const job of jobs) {
    const fetched = await worker.fetch("s4");
    assert.equal(fetched.jid, job.jid);
    await worker.ack(fetched.jid);
  }
});

test("a mix: rejected jobs come back with the exact reasons, valid ones are enqueued",
  { timeout: 15000 }, async () => {
    const good1 = producer.job("S4Job", "good1");
    good1.queue = "s4";
    const good2 = producer.job("S4Job", "good2");
    good2.queue = "s4";
    const shortJid = { jid: "short", jobtype: "S4Job", args: [], queue: "s4" };
    const noJobtype = { jid: "nojobtype-0001", args: [], queue: "s4" };
    const nullArgs = { jid: "nullargs-00001", jobtype: "S4Job", args: null, queue: "s4" };
    const scheduled = producer.job("S4Job", "later");
    scheduled.queue = "s4";
    scheduled.at = new Date(Date.now() + 3600 * 1000);

    const rejected = await producer.pushBulk([good1, shortJid, noJobtype, good2, nullArgs, scheduled]);
    assert.deepEqual(Object.keys(rejected).sort(), ["nojobtype-0001", "nullargs-00001", "short"]);
    assert.equal(rejected.short.reason, "jobs must have a reasonable jid parameter");
    assert.equal(rejected["nojobtype-0001"].reason, "jobs must have a jobtype parameter");
    assert.equal(rejected["nullargs-00001"].reason, "jobs must have an args parameter");
    assert.equal(rejected.short.payload.jid, "short", "the client maps reasons back to payloads");

    const info = (await producer.info()).faktory;
    assert.equal(info.queues.s4, 2);
    assert.equal(info.tasks.Scheduled.size, 1);
    const first = await worker.fetch("s4");
    const second = await worker.fetch("s4");
    assert.deepEqual([first.jid, second.jid], [good1.jid, good2.jid]);
    await worker.ack(first.jid);
    await worker.ack(second.jid);
  });

test("an empty batch is accepted", { timeout: 15000 }, async () => {
  assert.deepEqual(await producer.pushBulk([]), {});
});
