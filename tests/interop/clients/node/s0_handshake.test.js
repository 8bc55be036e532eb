"use strict";
// S0: handshake, plain and password-protected (protocol/clients.md §9).
// FAKTORY_URL points at a server without a password, FAKTORY_PASSWORD_URL at one with a
// password (tcp://:<password>@host:port). The Node client parses the greeting with
// `JSON.parse(reply.split(" ")[1])`, so merely connecting proves the HI JSON has no spaces.
const test = require("node:test");
const assert = require("node:assert/strict");
const { once } = require("node:events");
const faktory = require("faktory-worker");
// Not re-exported by the package root; used to keep hold of the socket whose HELLO failed.
const { Connection } = require("faktory-worker/lib/connection");
const { serverUrl, within } = require("./helpers");

function withPassword(url, password) {
  const u = new URL(url);
  u.password = password;
  return u.toString();
}

test("plain server: producer and worker HELLO are answered OK", { timeout: 15000 }, async () => {
  const url = serverUrl();
  const producer = new faktory.Client({ url });
  const worker = new faktory.Client({ url, wid: "node-s0-plain", labels: ["node", "s0"] });
  try {
    assert.equal(await producer.connect(), producer);
    assert.equal(await worker.connect(), worker);
    const info = await producer.info();
    assert.match(info.server.faktory_version, /^\d+\.\d+\.\d+/);
    assert.ok(info.server_utc_time, "server_utc_time is truthy");
  } finally {
    await within(5000, Promise.all([producer.close(), worker.close()]), "close");
  }
});

test("plain server: greeting is v 2 without salt", { timeout: 15000 }, async () => {
  const u = new URL(serverUrl());
  const conn = new Connection(u.port, u.hostname);
  const greeting = await within(5000, conn.open(), "greeting");
  try {
    assert.deepEqual(greeting, { v: 2 });
  } finally {
    await within(5000, conn.close(), "END");
  }
});

test("password server: the right password authenticates", { timeout: 15000 }, async () => {
  const url = serverUrl("FAKTORY_PASSWORD_URL");
  assert.ok(new URL(url).password, "FAKTORY_PASSWORD_URL carries a password");
  const producer = new faktory.Client({ url });
  const worker = new faktory.Client({ url, wid: "node-s0-auth" });
  try {
    await producer.connect();
    await worker.connect();
    const jid = await producer.push({ jobtype: "S0Job", args: [1], queue: "s0" });
    const job = await worker.fetch("s0");
    assert.equal(job.jid, jid);
    assert.equal(await worker.ack(jid), "OK");
  } finally {
    await within(5000, Promise.all([producer.close(), worker.close()]), "close");
  }
});

test("password server: the password can also be given as an option", { timeout: 15000 }, async () => {
  const u = new URL(serverUrl("FAKTORY_PASSWORD_URL"));
  const password = decodeURIComponent(u.password);
  const client = new faktory.Client({ host: u.hostname, port: u.port, password });
  try {
    await client.connect();
  } finally {
    await within(5000, client.close(), "close");
  }
});

test("password server: greeting carries salt and iterations", { timeout: 15000 }, async () => {
  const u = new URL(serverUrl("FAKTORY_PASSWORD_URL"));
  const conn = new Connection(u.port, u.hostname);
  const greeting = await within(5000, conn.open(), "greeting");
  try {
    assert.equal(greeting.v, 2);
    assert.equal(typeof greeting.s, "string");
    assert.ok(greeting.s.length > 0);
    assert.ok(Number.isInteger(greeting.i) && greeting.i >= 1, `i = ${greeting.i}`);
  } finally {
    conn.socket.destroy();
  }
});

for (const [name, password] of [["a wrong password", "not-the-password"], ["no password", ""]]) {
  test(`password server: ${name} gets ERR Invalid password, then a close`, { timeout: 15000 }, async () => {
    const base = serverUrl("FAKTORY_PASSWORD_URL");
    const url = password ? withPassword(base, password) : withPassword(base, "");
    const client = new faktory.Client({ url });
    const u = new URL(url);
    const conn = new Connection(u.port, u.hostname);
    conn.on("error", () => {}); // a reset after the refusal is fine; the close is what we check
    const greeting = await within(5000, conn.open(), "greeting");
    const closed = once(conn, "close");
    await assert.rejects(client.handshake(conn, greeting), (err) => {
      assert.equal(err.message, "ERR Invalid password");
      return true;
    });
    await within(5000, closed, "server closing the connection after the refusal");
    // The public entry point reports the same refusal.
    await assert.rejects(client.connect(), /ERR Invalid password/);
    await client.close();
  });
}
