"use strict";
// A burst from @fluent-org/logger in Message mode with acks at the client's defaults
// (500 ms ack timeout per message): every record its own message and chunk, back to back.
// Usage: node burst.js <socket path> <records>
// Prints {"acked": n, "failed": n, "reasons": [...], "ms": elapsed} once all settled.

const [path, countText] = process.argv.slice(2);
const count = Number(countText);
const { FluentClient } = require("@fluent-org/logger");

async function main() {
  const client = new FluentClient("nodeburst", {
    socket: { path, timeout: -1 },
    eventMode: "Message",
    ack: {},
  });
  await client.connect();
  const started = Date.now();
  const pending = [];
  for (let i = 0; i < count; i++) {
    pending.push(client.emit("burst", { msg: `burst record ${i}` }));
  }
  const results = await Promise.allSettled(pending);
  const ms = Date.now() - started;
  const failed = results.filter((r) => r.status === "rejected");
  const reasons = [...new Set(failed.map((r) => String(r.reason)))].slice(0, 3);
  console.log(JSON.stringify({ acked: count - failed.length, failed: failed.length, reasons, ms }));
  await client.disconnect();
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(String(error));
    process.exit(1);
  },
);
