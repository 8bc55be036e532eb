"use strict";
// S6: a real faktory.work() Worker, told to quiet and then to terminate. The Node client never
// sends `current_state` itself, so a side connection sends `BEAT {"wid":<worker's wid>,
// "current_state":...}` for it (any connection may beat for a registered wid); the worker learns
// the new state from the reply to its own next heartbeat. beatInterval (seconds, a documented
// Worker option; default 15) is lowered so that happens quickly.
const test = require("node:test");
const assert = require("node:assert/strict");
const faktory = require("faktory-worker");
const { serverUrl, eventually, within, sleep, tasks, connectedClient } = require("./helpers");

const side = connectedClient();

async function sideBeat(wid, currentState) {
  const reply = await side.send(["BEAT", JSON.stringify({ wid, current_state: currentState })]);
  assert.equal(typeof reply, "string");
  assert.ok(reply.startsWith("{"), `BEAT with current_state ${currentState} answered ${reply}`);
  return JSON.parse(reply).state;
}

test("worker runs jobs, then stops fetching when quieted, then stops when terminated",
  { timeout: 30000 }, async () => {
    await side.flush();
    const done = [];
    faktory.register("S6Job", async (arg) => { done.push(arg); });
    faktory.register("S6Boom", async () => { throw new Error("boom"); });
    const worker = await faktory.work({ url: serverUrl(), queues: ["s6"], concurrency: 3, beatInterval: 1 });
    let stopped = false;
    try {
      assert.equal(typeof worker.wid, "string");
      assert.equal(worker.wid.length, 8, "default wid is the first 8 chars of a uuid");
      assert.equal((await tasks(side)).Workers.size, 1);

      await side.push({ jobtype: "S6Job", args: ["one"], queue: "s6" });
      await eventually(() => done.includes("one"), { what: "the worker to run job one" });
      await eventually(async () => (await side.info()).faktory.total_processed === 1,
        { what: "the worker to ACK job one" });

      // A throwing handler is FAILed by the worker into the retry set.
      await side.push({ jobtype: "S6Boom", args: [], queue: "s6" });
      await eventually(async () => (await tasks(side)).Retries.size === 1,
        { what: "the worker to FAIL the throwing job" });

      // quiet: the reply to the side BEAT is the bulk state; the worker sees it on its next beat.
      assert.equal(await sideBeat(worker.wid, "quiet"), "quiet");
      await eventually(() => worker.quieted, { timeoutMs: 5000, what: "the worker to notice quiet" });
      await side.push({ jobtype: "S6Job", args: ["two"], queue: "s6" });
      await sleep(2500); // longer than one blocking FETCH
      assert.ok(!done.includes("two"), "a quiet worker must not run new jobs");
      const info = (await side.info()).faktory;
      assert.equal(info.queues.s6, 1, "job two is still waiting");
      assert.equal(info.tasks.Workers.size, 1, "a quiet worker is still registered");

      // terminate: the worker stops and closes its connections, so its wid disappears.
      assert.equal(await sideBeat(worker.wid, "terminate"), "terminate");
      await eventually(async () => (await tasks(side)).Workers.size === 0,
        { timeoutMs: 8000, what: "the terminated worker's connections to close" });
      stopped = true;
      assert.ok(!done.includes("two"));
      assert.equal((await side.info()).faktory.queues.s6, 1);
    } finally {
      if (!stopped) await within(15000, faktory.stop(), "worker stop");
    }
  });

test("terminate straight from running stops a worker", { timeout: 30000 }, async () => {
  const instance = faktory.create();
  instance.register("S6Job", async () => {});
  const worker = await instance.work({ url: serverUrl(), queues: ["s6b"], concurrency: 2, beatInterval: 1 });
  let stopped = false;
  try {
    assert.equal((await tasks(side)).Workers.size, 1);
    assert.equal(await sideBeat(worker.wid, "terminate"), "terminate");
    await eventually(async () => (await tasks(side)).Workers.size === 0,
      { timeoutMs: 8000, what: "the terminated worker's connections to close" });
    stopped = true;
  } finally {
    if (!stopped) await within(15000, instance.stop(), "worker stop");
  }
});

test("BEAT for a wid that is not registered is an error", { timeout: 15000 }, async () => {
  await assert.rejects(side.send(["BEAT", JSON.stringify({ wid: "nosuchwid" })]),
    { message: "ERR unknown worker nosuchwid" });
});
