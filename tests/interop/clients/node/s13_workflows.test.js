"use strict";
// S13: job dependencies (protocol/spec.md §14) with the client's own push({ custom }): a job
// pushed before its upstream (its jid chosen by the producer) is held until the upstream's ACK,
// then fetched with the upstream's outcome in custom._after; INFO counts held jobs under
// faktory.workflows, which info() parses.
const test = require("node:test");
const assert = require("node:assert/strict");
const { producerAndWorker } = require("./helpers");

const { producer, worker } = producerAndWorker("node-s13", { labels: ["node"] });

test("a dependent pushed first runs after its upstream, with custom._after", { timeout: 15000 }, async () => {
  const upstream = "node-s13-upstream";
  const downstream = await producer.push({ jobtype: "S13Down", args: [], queue: "s13", custom: { after: [upstream] } });
  await producer.push({ jid: upstream, jobtype: "S13Up", args: [], queue: "s13" });
  assert.equal((await producer.info()).faktory.workflows.held, 1);
  const first = await worker.fetch("s13");
  assert.equal(first.jid, upstream);
  assert.equal(await worker.ack(upstream), "OK");
  const second = await worker.fetch("s13");
  assert.equal(second.jid, downstream);
  assert.deepEqual(second.custom._after, { [upstream]: { outcome: "success" } });
  assert.deepEqual(second.custom.after, [upstream]);
  assert.equal(await worker.ack(downstream), "OK");
  assert.equal((await producer.info()).faktory.workflows.held, 0);
});
