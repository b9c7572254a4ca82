"use strict";
// A Node app logging through a real Fluent client while logd is down, then waiting for
// its backlog to be acknowledged once logd is up.
// Usage: node backlog.js <@fluent-org/logger|fluent-logger> <socket path> <records>
// Prints {"buffered": n} once every record is queued, then {"acked": n, "failed": n, ...}.

const [library, path, countText] = process.argv.slice(2);
const count = Number(countText);
const ACK_TIMEOUT_MS = 60000;

function record(i) {
  return { msg: `backlog record ${i}`, seq: i };
}

function report(results) {
  const failed = results.filter((r) => r.status === "rejected");
  const reasons = [...new Set(failed.map((r) => String(r.reason)))].slice(0, 3);
  console.log(JSON.stringify({ acked: count - failed.length, failed: failed.length, reasons }));
}

function fluentOrg() {
  const { FluentClient } = require("@fluent-org/logger");
  const client = new FluentClient("nodeapp", {
    socket: { path, timeout: -1, reconnect: { delay: 50, minDelay: 50, maxDelay: 200 } },
    eventMode: "PackedForward",
    ack: { ackTimeout: ACK_TIMEOUT_MS },
  });
  client.socketOn("error", () => {}); // refused while logd is down: it reconnects
  const pending = [];
  for (let i = 0; i < count; i++) pending.push(client.emit("backlog", record(i)));
  console.log(JSON.stringify({ buffered: count }));
  return Promise.allSettled(pending).then(async (results) => {
    report(results);
    await client.disconnect();
  });
}

function fluentLogger() {
  const quiet = { error() {}, info() {}, warn() {}, log() {} };
  // createFluentSender() also sets up its reconnecting after errors.
  const sender = require("fluent-logger").createFluentSender("nodeapp", {
    path,
    eventMode: "PackedForward",
    requireAckResponse: true,
    ackResponseTimeout: ACK_TIMEOUT_MS,
    reconnectInterval: 100,
    internalLogger: quiet,
  });
  sender.on("error", () => {}); // refused while logd is down: it reconnects
  const pending = [];
  for (let i = 0; i < count; i++) {
    pending.push(
      new Promise((resolve, reject) => {
        sender.emit("backlog", record(i), (error) => (error ? reject(error) : resolve()));
      }),
    );
  }
  console.log(JSON.stringify({ buffered: count }));
  return Promise.allSettled(pending).then((results) => {
    report(results);
    sender.end();
  });
}

const run = library === "fluent-logger" ? fluentLogger : fluentOrg;
run().then(
  () => process.exit(0),
  (error) => {
    console.error(String(error));
    process.exit(1);
  },
);
