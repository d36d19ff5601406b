#!/usr/bin/env node
// A durable subscriber of the orchestrator's event log (SubscriptionService in
// protos/orchestrator/v1/events.proto), from another language than the Python client.
//
//   node subscriber.js --addresses host:port,host:port --group billing [--name order.created]
//                      [--count N] [--ca ca.pem]    (token: ORCHESTRATOR_TOKEN)
//
// Each event is printed as one JSON line, then acked; the stream is paused while the ack is
// in flight, so an event is acked only after it was handled (at least once). When the replica
// it streams from fails, it subscribes again on the next address: the server resumes after
// the group's committed offset, so what was not acked comes again. With --count it exits once
// that many distinct events were handled.
"use strict";

const path = require("path");
const fs = require("fs");
const crypto = require("crypto");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTOS = path.resolve(__dirname, "..", "..", "protos");

function parseArgs(argv) {
  const args = { addresses: "", group: "", name: "", count: 0, ca: "", maxInFlight: 20 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "").replace(/-(\w)/g, (_, c) => c.toUpperCase());
    if (!(key in args)) throw new Error(`unknown option ${argv[i]}`);
    args[key] = typeof args[key] === "number" ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!args.addresses || !args.group) throw new Error("--addresses and --group are required");
  args.addresses = args.addresses.split(",").map((a) => a.trim()).filter(Boolean);
  return args;
}

function loadService() {
  const definition = protoLoader.loadSync(path.join(PROTOS, "orchestrator/v1/events.proto"), {
    includeDirs: [PROTOS],
    keepCase: true,
    longs: Number,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition).orchestrator.v1.SubscriptionService;
}

function credentials(ca) {
  return ca ? grpc.credentials.createSsl(fs.readFileSync(ca)) : grpc.credentials.createInsecure();
}

function metadata() {
  const md = new grpc.Metadata();
  if (process.env.ORCHESTRATOR_TOKEN) {
    md.set("authorization", `Bearer ${process.env.ORCHESTRATOR_TOKEN}`);
  }
  return md;
}

class Subscriber {
  constructor(args) {
    this.args = args;
    this.Service = loadService();
    this.creds = credentials(args.ca);
    this.clients = new Map();
    this.pos = 0;
    this.handled = new Set();
    this.backoffMs = 50;
  }

  client(address) {
    if (!this.clients.has(address)) this.clients.set(address, new this.Service(address, this.creds));
    return this.clients.get(address);
  }

  // Acks on the replica streamed from (a follower forwards it to the leader), else on the
  // others in turn: an ack must not be lost with the replica.
  async ack(offset) {
    const { addresses, group } = this.args;
    const request = { request_id: crypto.randomUUID(), stream: "events", group, offset };
    for (let attempt = 0; attempt < 30; attempt++) {
      const address = addresses[(this.pos + attempt) % addresses.length];
      try {
        return await new Promise((resolve, reject) =>
          this.client(address).Ack(request, metadata(), { deadline: Date.now() + 3000 }, (err, res) =>
            err ? reject(err) : resolve(res)
          )
        );
      } catch (err) {
        if (err.code === grpc.status.INVALID_ARGUMENT) throw err;
        await sleep(100);
      }
    }
    throw new Error(`could not ack offset ${offset}`);
  }

  subscribe() {
    const address = this.args.addresses[this.pos];
    console.error(JSON.stringify({ streaming_from: address }));
    const request = {
      group: this.args.group,
      names: this.args.name ? [this.args.name] : [],
      max_in_flight: this.args.maxInFlight,
    };
    const call = this.client(address).SubscribeEvents(request, metadata());
    let ended = false;
    const reopen = (why) => {
      if (ended) return;
      ended = true;
      call.cancel();
      console.error(JSON.stringify({ stream_ended: address, why }));
      this.pos = (this.pos + 1) % this.args.addresses.length;
      this.backoffMs = Math.min(this.backoffMs * 2, 2000);
      setTimeout(() => this.subscribe(), this.backoffMs);
    };
    call.on("data", async (event) => {
      call.pause(); // one event at a time: handled, then acked
      try {
        const payload = JSON.parse(event.payload_json || "{}");
        console.log(JSON.stringify({ offset: event.offset, name: event.name, payload }));
        await this.ack(event.offset);
        this.backoffMs = 50;
        this.handled.add(event.offset);
        if (this.args.count && this.handled.size >= this.args.count) {
          ended = true;
          call.cancel();
          process.exit(0);
        }
      } catch (err) {
        reopen(String(err));
        return;
      }
      call.resume();
    });
    call.on("error", (err) => {
      if (err.code === grpc.status.OUT_OF_RANGE || err.code === grpc.status.INVALID_ARGUMENT) {
        console.error(JSON.stringify({ fatal: err.details }));
        process.exit(2);
      }
      reopen(`${grpc.status[err.code]}: ${err.details}`);
    });
    call.on("end", () => reopen("the stream ended"));
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

new Subscriber(parseArgs(process.argv.slice(2))).subscribe();
