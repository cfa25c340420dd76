// sender.js posts one CloudEvent to a URL with the CloudEvents JavaScript
// SDK's emitter and prints the HTTP status of the answer on stdout (the
// answer's body, if any, goes to stderr).
//
//   node sender.js URL binary|structured EVENT_JSON
//
// EVENT_JSON holds the event's attributes, extensions and data as the SDK's
// CloudEvent constructor takes them (data_base64 for binary data).
"use strict";

const http = require("node:http");
const { CloudEvent, HTTP, Mode, emitterFor } = require("cloudevents");

const TIMEOUT_MS = 10_000;

function usage(msg) {
  console.error(`sender.js: ${msg}\nusage: node sender.js URL binary|structured EVENT_JSON`);
  process.exit(2);
}

const [url, mode, json] = process.argv.slice(2);
if (!url || !json) usage("missing arguments");
if (mode !== "binary" && mode !== "structured") usage(`unknown mode ${JSON.stringify(mode)}`);

// The SDK's own httpTransport resolves with the body and headers only, so
// this transport does the same POST (no Content-Length: Node sends the body
// chunked, as the SDK's transport does) and also keeps the status.
function transport(message) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: message.headers, timeout: TIMEOUT_MS }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url} within ${TIMEOUT_MS} ms`)));
    req.on("error", reject);
    req.end(message.body);
  });
}

let event;
try {
  event = new CloudEvent(JSON.parse(json));
} catch (err) {
  usage(`invalid event: ${err.message}${err.errors ? " " + JSON.stringify(err.errors) : ""}`);
}

const emit = emitterFor(transport, { binding: HTTP, mode: mode === "structured" ? Mode.STRUCTURED : Mode.BINARY });
emit(event).then(
  ({ status, body }) => {
    console.log(status);
    if (body) console.error(body.trim());
  },
  (err) => {
    console.error(`sender.js: ${err.message}`);
    process.exit(1);
  },
);
