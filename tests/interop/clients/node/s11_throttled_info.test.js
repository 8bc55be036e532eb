"use strict";
// S11: INFO with throttles configured (protocol/spec.md §11.4, A-T14). test_client_node.py
// starts this file's server with a conf.d holding a concurrency, a worker and a rate throttle,
// a named limit partitioned by tenant and a yearly cron entry; the test pushes a job held on a
// jid never pushed (after the helper's FLUSH, so here, not from the pytest side, as the other
// clients' harnesses do), so INFO carries faktory.throttles, .limits, .cron and .workflows: the client's
// info() still parses it, and the document keeps its four top-level keys (all under `faktory`).
const test = require("node:test");
const assert = require("node:assert/strict");
const { producerAndWorker } = require("./helpers");

const { producer, worker } = producerAndWorker("node-s11", { labels: ["node"] });

test("info() parses INFO with throttles configured, four top-level keys", { timeout: 15000 }, async () => {
  const jid = await producer.push({ jobtype: "S11Job", args: [], queue: "bulk" });
  await producer.push({ jobtype: "TenantJob", args: [], queue: "bulk",
                        custom: { tenant: "acme", after: ["never-pushed-jid"] } });
  const fetched = await worker.fetch("bulk");
  assert.equal(fetched.jid, jid);

  const info = await producer.info();
  assert.deepEqual(Object.keys(info).sort(), ["faktory", "now", "server", "server_utc_time"]);
  assert.equal(info.faktory.queues.bulk, 0);
  const { throttles } = info.faktory;
  assert.equal(throttles.bulk.concurrency, 2);
  assert.equal(throttles.bulk.in_use, 1);
  assert.equal(throttles["image-processing"].worker, 1);
  assert.deepEqual(throttles.api.rate, { limit: 100, period: 60 });
  assert.equal(info.faktory.limits.tenants.concurrency, 1);
  assert.equal(info.faktory.limits.tenants.waiting, 0); // its one job is held, not waiting
  assert.equal(info.faktory.cron.entries, 1);
  assert.equal(info.faktory.workflows.held, 1);
  assert.equal(await worker.ack(jid), "OK");
  assert.equal((await producer.info()).faktory.throttles.bulk.in_use, 0);
});
