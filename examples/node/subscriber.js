#!/usr/bin/env node
// A durable subscriber of the orchestrator's event log (SubscriptionService in
// protos/orchestrator/v1/events.proto), from another language than the Python client.
//
//   node subscriber.js --addresses host:port,host:port --group billing [--name order.created]
//                      [--count N] [--max-in-flight 20] [--ca ca.pem]   (token: ORCHESTRATOR_TOKEN)
//
// Each event is printed as one JSON line, then acked; the stream is paused while the ack is
// in flight, so an event is acked only after it was handled (at least once). When the stream
// ends (its replica failed, fell behind or shut down) it subscribes again: on the replica the
// error's leader hint names, else on the next address; the server resumes after the group's
// committed offset, so what was not acked comes again. Acks go through orchestrator.js (request
// id reused on retries, leader hints followed), and the stream asks for at least the sequence
// this client has seen (x-orchestrator-min-seq), so a replica that has not applied its own acks
// yet does not serve it. When the group's offset is behind retention (OUT_OF_RANGE), it says so
// on stderr and resumes from the oldest offset the error names: the events in between are gone.
// With --count it exits once that many distinct events were handled.
"use strict";

const { clientFromArgs, describeError, parseArgs, sleep, status } = require("./orchestrator");

const FATAL = [status.INVALID_ARGUMENT, status.PERMISSION_DENIED, status.UNAUTHENTICATED];

class Subscriber {
  constructor(args) {
    if (!args.group) throw new Error("--group is required");
    this.args = args;
    this.client = clientFromArgs(args, { budgetMs: 60000 });
    this.address = args.addresses[0];
    this.fromOffset = 0;
    this.handled = new Set();
    this.backoffMs = 50;
  }

  ack(offset) {
    const request = { stream: "events", group: this.args.group, offset };
    return this.client.call("SubscriptionService", "Ack", request);
  }

  subscribe() {
    const address = this.address;
    console.error(JSON.stringify({ streaming_from: address }));
    const request = {
      group: this.args.group,
      from_offset: this.fromOffset,
      names: this.args.name ? [this.args.name] : [],
      max_in_flight: this.args.maxInFlight,
    };
    const stub = this.client.stub("SubscriptionService", address);
    const call = stub.SubscribeEvents(request, this.client.metadata());
    call.on("metadata", (md) => this.client.observe(md));
    let ended = false;
    const reopen = (why, info = {}) => {
      if (ended) return;
      ended = true;
      call.cancel();
      const hint = info.leader && info.leader !== address ? info.leader : "";
      this.address = hint || this.client.next(address);
      console.error(
        JSON.stringify({ stream_ended: address, why, reason: info.reason, to: this.address })
      );
      // A fresh hint at once; else back off (at least RetryInfo's delay), doubling to 2 s.
      const delayMs = hint ? 0 : Math.max(this.backoffMs, info.retryDelayMs || 0);
      if (!hint) this.backoffMs = Math.min(this.backoffMs * 2, 2000);
      setTimeout(() => this.subscribe(), delayMs);
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
          this.client.close();
          process.exit(0);
        }
      } catch (err) {
        reopen(`the ack failed: ${err.message}`);
        return;
      }
      call.resume();
    });
    call.on("error", (err) => {
      const info = describeError(err);
      if (err.code === status.OUT_OF_RANGE) return this.skipGap(err, info, () => (ended = true));
      if (FATAL.includes(err.code)) {
        console.error(JSON.stringify({ fatal: `${status[err.code]}: ${err.details}` }));
        process.exit(2);
      }
      reopen(`${status[err.code]}: ${err.details}`, info);
    });
    call.on("end", () => reopen("the stream ended"));
  }

  // The group's next event is no longer kept: resume from the oldest one that is, and say so
  // (the events in between were never handled by this group).
  skipGap(err, info, end) {
    end();
    if (info.oldestOffset === null || info.oldestOffset <= this.fromOffset) {
      console.error(JSON.stringify({ fatal: err.details }));
      process.exit(2);
    }
    console.error(
      JSON.stringify({
        skipped_to: info.oldestOffset,
        reason: info.reason || "OUT_OF_RANGE",
        why: err.details,
      })
    );
    this.fromOffset = info.oldestOffset;
    sleep(0).then(() => this.subscribe());
  }
}

new Subscriber(
  parseArgs(process.argv.slice(2), { group: "", name: "", count: 0, maxInFlight: 20 })
).subscribe();
