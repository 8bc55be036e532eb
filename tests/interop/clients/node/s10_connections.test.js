"use strict";
// S10: connection hygiene. One wid with many pooled connections, 25 concurrent blocking
// FETCHes, INFO tasks.Workers.size counting wids (not connections), END closing without a
// reply (Client.close() sends END and waits for the server to close), abrupt closes.
const test = require("node:test");
const assert = require("node:assert/strict");
const faktory = require("faktory-worker");
// Not re-exported by the package root; see openOutsidePool below.
const { Connection } = require("faktory-worker/lib/connection");
const { serverUrl, eventually, within, sleep, tasks, connectedClient } = require("./helpers");

const producer = connectedClient();

test("25 concurrent blocking FETCHes from one wid each get a distinct job", { timeout: 30000 }, async () => {
  await producer.flush();
  const worker = new faktory.Client({ url: serverUrl(), wid: "node-s10", poolSize: 25 });
  try {
    const fetches = Array.from({ length: 25 }, () => worker.fetch("s10"));
    // Let them block on the empty queue (the pool opens its connections meanwhile).
    await sleep(300);
    assert.equal((await tasks(producer)).Workers.size, 1, "25 connections, one wid");
    const jids = [];
    for (let i = 0; i < 25; i += 1) jids.push(await producer.push({ jobtype: "S10Job", args: [i], queue: "s10" }));
    const jobs = await within(10000, Promise.all(fetches), "25 FETCHes");
    const got = jobs.map((job) => {
      assert.ok(job, "every FETCH got a job");
      return job.jid;
    });
    assert.equal(new Set(got).size, 25, "no job was handed out twice");
    assert.deepEqual([...got].sort(), [...jids].sort());
    assert.equal(worker.pool.size, 25, "the client really used 25 connections");
    await Promise.all(got.map((jid) => worker.ack(jid)));
    assert.equal((await producer.info()).faktory.total_processed, 25);
  } finally {
    // END on every pooled connection; close() only resolves once the server has closed each.
    await within(5000, worker.close(), "END on 25 connections");
  }
  await eventually(async () => (await tasks(producer)).Workers.size === 0,
    { what: "the wid to go away with its last connection" });
});

test("INFO tasks.Workers.size counts distinct wids; producers do not count", { timeout: 20000 }, async () => {
  const a = new faktory.Client({ url: serverUrl(), wid: "node-s10-a", poolSize: 3 });
  const b = new faktory.Client({ url: serverUrl(), wid: "node-s10-b" });
  try {
    await Promise.all([a.info(), a.info(), a.info(), b.info()]);
    assert.ok(a.pool.size >= 2, `pool a holds ${a.pool.size} connections`);
    assert.equal((await tasks(producer)).Workers.size, 2);
    assert.equal(await a.beat(), "OK");
    assert.equal(await b.beat(), "OK");
  } finally {
    await within(5000, Promise.all([a.close(), b.close()]), "close");
  }
  await eventually(async () => (await tasks(producer)).Workers.size === 0,
    { what: "both wids to go away" });
});

// The client's pool keeps at least one connection open and replaces destroyed ones at once,
// so a pooled connection cannot be cut without a new one (same wid) appearing. Use the
// client's own Connection + handshake outside the pool for the connection that gets cut.
async function openOutsidePool(client) {
  const u = new URL(serverUrl());
  const conn = new Connection(u.port, u.hostname);
  conn.on("error", () => {});
  await client.handshake(conn, await conn.open());
  return conn;
}

test("an abrupt close (no END) is tolerated, and the server still answers", { timeout: 20000 }, async () => {
  const worker = new faktory.Client({ url: serverUrl(), wid: "node-s10-abrupt", poolSize: 2 });
  try {
    const conn = await openOutsidePool(worker);
    assert.equal((await tasks(producer)).Workers.size, 1);
    conn.socket.destroy(); // FIN without END
    await eventually(async () => (await tasks(producer)).Workers.size === 0,
      { what: "the server to drop the abruptly closed worker" });
    // The same client (its pool) connects again and works.
    assert.equal(typeof (await worker.info()).faktory.total_enqueued, "number");
    assert.equal((await tasks(producer)).Workers.size, 1);
  } finally {
    await within(5000, worker.close(), "close");
  }
});

// While a FETCH blocks the server watches the socket: a client that goes away must not
// have the next job reserved for it (it would only come back when the reservation expired).
test("a connection closed during a blocking FETCH does not lose the next job", {
  timeout: 20000,
}, async () => {
  await producer.flush();
  const worker = new faktory.Client({ url: serverUrl(), wid: "node-s10-cut", poolSize: 2 });
  const conn = await openOutsidePool(worker);
  const pending = conn.send(["FETCH", "cut"]);
  pending.catch(() => {}); // rejected when we cut the socket
  await sleep(200);
  conn.socket.destroy();
  await sleep(200);
  const jid = await producer.push({ jobtype: "S10Job", args: [], queue: "cut" });
  try {
    const job = await worker.fetch("cut");
    assert.ok(job, "the job pushed after the cut is still fetchable");
    assert.equal(job.jid, jid);
    await worker.ack(jid);
  } finally {
    await within(5000, worker.close(), "close");
  }
});
