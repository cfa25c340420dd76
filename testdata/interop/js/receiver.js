// receiver.js is an HTTP subscriber written with the CloudEvents JavaScript
// SDK. It listens on 127.0.0.1 (port 0 unless --port is given), prints its
// port on stdout, and answers each CloudEvent it receives with a reply event:
//
//   - the request is parsed with HTTP.toEvent; anything that is not a valid
//     CloudEvent, or whose type does not start with "dev.flows.interop.",
//     or whose data has no string "message", gets 400 with the reason;
//   - the reply has id "reply-<id>", source "/interop/js-receiver", type
//     "dev.flows.interop.reply", the request's subject, the extensions
//     jsreceiver, receivedmode (binary or structured, as the request came)
//     and inreplyto, and JSON data holding the message with
//     " - handled by js" appended and every attribute and extension of the
//     request as the SDK read it;
//   - the reply is sent in binary mode with status 200, in structured mode
//     with --structured or the query ?reply=structured (?reply=binary
//     overrides --structured).
//
// It exits when its stdin is closed, on SIGINT/SIGTERM, or after
// --max-seconds (60 by default), so that it never outlives the test that
// started it.
"use strict";

const http = require("node:http");
const { CloudEvent, HTTP } = require("cloudevents");

const args = process.argv.slice(2);
let structuredByDefault = false;
let port = 0;
let maxSeconds = 60;
for (let i = 0; i < args.length; i++) {
  switch (args[i]) {
    case "--structured":
      structuredByDefault = true;
      break;
    case "--port":
      port = Number(args[++i]);
      break;
    case "--max-seconds":
      maxSeconds = Number(args[++i]);
      break;
    default:
      console.error(`receiver.js: unknown argument ${JSON.stringify(args[i])}`);
      process.exit(2);
  }
}

function refuse(res, status, reason) {
  console.error(`receiver.js: ${status}: ${reason}`);
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8" });
  res.end(reason + "\n");
}

// check returns why the event is refused, or "" to accept it.
function check(e) {
  if (!e.type.startsWith("dev.flows.interop.")) return `unexpected type ${JSON.stringify(e.type)}`;
  if (e.data === null || typeof e.data !== "object" || typeof e.data.message !== "string") {
    return `data ${JSON.stringify(e.data)} has no string "message"`;
  }
  return "";
}

const server = http.createServer((req, res) => {
  if (req.method !== "POST") {
    res.setHeader("Allow", "POST");
    return refuse(res, 405, "only POST is allowed");
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let incoming;
    try {
      incoming = HTTP.toEvent({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
    } catch (err) {
      return refuse(res, 400, `not a valid CloudEvent: ${err.message}${err.errors ? " " + JSON.stringify(err.errors) : ""}`);
    }
    if (Array.isArray(incoming)) return refuse(res, 400, "batches are not supported");
    const problem = check(incoming);
    if (problem) return refuse(res, 400, problem);

    const contentType = req.headers["content-type"] || "";
    const receivedmode = contentType.startsWith("application/cloudevents") ? "structured" : "binary";
    const seen = incoming.toJSON();
    delete seen.data;
    delete seen.data_base64;
    const reply = new CloudEvent({
      id: `reply-${incoming.id}`,
      source: "/interop/js-receiver",
      type: "dev.flows.interop.reply",
      subject: incoming.subject,
      datacontenttype: "application/json",
      data: { message: `${incoming.data.message} - handled by js`, received: seen },
      jsreceiver: "cloudevents-sdk-javascript",
      receivedmode,
      inreplyto: incoming.id,
    });
    const wanted = new URL(req.url, "http://127.0.0.1").searchParams.get("reply");
    const structured = wanted ? wanted === "structured" : structuredByDefault;
    const msg = structured ? HTTP.structured(reply) : HTTP.binary(reply);
    res.writeHead(200, msg.headers);
    res.end(msg.body);
  });
});

function stop() {
  server.close();
  server.closeAllConnections();
}

server.listen(port, "127.0.0.1", () => console.log(server.address().port));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
setTimeout(() => {
  console.error(`receiver.js: stopping after ${maxSeconds}s`);
  stop();
}, maxSeconds * 1000).unref();
