"use strict";
// Shared bits for the scenario files. Every scenario talks to the server named by
// FAKTORY_URL (tcp://[:password@]host:port), which the pytest wrapper starts fresh for each
// scenario file. We always pass the URL to the constructors explicitly: faktory-worker reads
// FAKTORY_URL only once, at module load.
const test = require("node:test");
const assert = require("node:assert/strict");
const { setTimeout: sleep } = require("node:timers/promises");
const faktory = require("faktory-worker");

function serverUrl(name = "FAKTORY_URL") {
  const url = process.env[name];
  if (!url) throw new Error(`${name} is not set: run this file through tests/interop/test_client_node.py`);
  return url;
}

/** Poll `probe` until it returns a truthy value; return that value or throw after `timeoutMs`. */
async function eventually(probe, { timeoutMs = 5000, intervalMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Reject if `promise` has not settled within `ms` (the client itself has no request timeout). */
function within(ms, promise, what = "operation") {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The deprecated INFO `faktory.tasks` block, which the Node client's own tests read. */
async function tasks(client) {
  return (await client.info()).faktory.tasks;
}

/**
 * A producer Client for the scenario file, connected before its tests and closed after them.
 * Call at the top level of the file.
 */
function connectedClient() {
  const client = new faktory.Client({ url: serverUrl() });
  test.before(async () => {
    await client.connect();
  });
  test.after(async () => {
    await within(5000, client.close(), "close");
  });
  return client;
}

/**
 * The usual pair for a scenario file: a producer Client and a worker Client (wid `wid`, plus
 * `workerOptions`), both connected before the file's tests and closed after them, with the
 * server flushed before each test. Call at the top level of the file.
 */
function producerAndWorker(wid, workerOptions = {}) {
  const url = serverUrl();
  const producer = new faktory.Client({ url });
  const worker = new faktory.Client({ url, wid, ...workerOptions });
  test.before(async () => {
    await producer.connect();
    await worker.connect();
  });
  test.after(async () => {
    await within(5000, Promise.all([producer.close(), worker.close()]), "close");
  });
  test.beforeEach(async () => {
    assert.equal(await producer.flush(), "OK");
  });
  return { producer, worker };
}

module.exports = { serverUrl, eventually, within, sleep, tasks, connectedClient, producerAndWorker };
