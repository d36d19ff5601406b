// A small client of the orchestrator's gRPC API for Node.js, written from the protos in
// protos/orchestrator/v1/ and the wire contract in docs/api.md only (no server source):
//
// - one request id per logical mutating call, reused on every retry of that call (the server
//   returns the first outcome of an id it has seen, so a retry never applies anything twice);
// - UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (OVERLOADED, not LIMIT_EXCEEDED nor
//   gRPC's own message-size limit), CANCELLED, UNKNOWN and a NOT_FOUND that says it may be a
//   stale read are retried until a time budget is spent; every other code is final;
// - the error details (a google.rpc.Status in the `grpc-status-details-bin` trailer, see
//   protos/orchestrator/v1/errors.proto) give the reason, the delay the server suggests
//   (RetryInfo) and the leader to go to (LeaderHint); the `x-orchestrator-leader` and
//   `x-orchestrator-retry-after-ms` trailers are the fallback for a server that sends no details;
// - a leader hint is followed at once, once per hint per call; otherwise the next replica of the
//   list is tried after a jittered back-off, so a replica that is down is skipped;
// - the highest `x-orchestrator-seq` seen (trailer, or a stream's initial metadata) is sent as
//   `x-orchestrator-min-seq` on every call, so a read on any replica sees this client's writes.
"use strict";

const path = require("path");
const fs = require("fs");
const crypto = require("crypto");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const PROTOS = path.resolve(__dirname, "..", "..", "protos");
const GOOGLE_PROTOS = path.dirname(require.resolve("google-proto-files/package.json"));
const SERVICE_FILES = ["definitions", "workflows", "tasks", "events", "cluster"];

const SEQ = "x-orchestrator-seq";
const MIN_SEQ = "x-orchestrator-min-seq";
const LEADER = "x-orchestrator-leader";
const RETRY_AFTER_MS = "x-orchestrator-retry-after-ms";
const OLDEST_OFFSET = "x-orchestrator-oldest-offset";
const DETAILS = "grpc-status-details-bin";

const RETRYABLE = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.CANCELLED,
  grpc.status.UNKNOWN,
]);

let services = null;
let detailTypes = null;

// The services of orchestrator.v1, loaded from the protos at run time (no generated code).
function loadServices() {
  if (!services) {
    const files = SERVICE_FILES.map((f) => path.join(PROTOS, "orchestrator", "v1", `${f}.proto`));
    const definition = protoLoader.loadSync(files, {
      includeDirs: [PROTOS],
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
    });
    services = grpc.loadPackageDefinition(definition).orchestrator.v1;
  }
  return services;
}

// google.rpc.Status and its detail messages: Google's protos from google-proto-files, ours from
// protos/orchestrator/v1/errors.proto.
function loadDetailTypes() {
  if (!detailTypes) {
    const root = new protobuf.Root();
    root.resolvePath = (origin, target) =>
      path.join(target.startsWith("google/") ? GOOGLE_PROTOS : PROTOS, target);
    root.loadSync(
      ["google/rpc/status.proto", "google/rpc/error_details.proto", "orchestrator/v1/errors.proto"],
      { keepCase: true }
    );
    detailTypes = root;
  }
  return detailTypes;
}

function first(metadata, key) {
  const values = metadata ? metadata.get(key) : [];
  return values.length ? values[0] : undefined;
}

// What a failed call says about itself: {reason, metadata, retryDelayMs, leader, replicaId,
// oldestOffset}, from the status details, else from the trailers.
function describeError(err) {
  const out = { reason: "", metadata: {}, retryDelayMs: null, leader: "", replicaId: "" };
  const raw = first(err.metadata, DETAILS);
  if (raw) {
    const root = loadDetailTypes();
    const status = root.lookupType("google.rpc.Status").decode(raw);
    for (const any of status.details) {
      const name = any.type_url.slice(any.type_url.lastIndexOf("/") + 1);
      const type = root.lookup(name);
      if (!type) continue; // a detail this client does not know: ignore it
      const detail = type.toObject(type.decode(any.value), { longs: Number, defaults: true });
      if (name === "google.rpc.ErrorInfo") {
        out.reason = detail.reason;
        out.metadata = detail.metadata || {};
      } else if (name === "google.rpc.RetryInfo" && detail.retry_delay) {
        out.retryDelayMs = detail.retry_delay.seconds * 1000 + detail.retry_delay.nanos / 1e6;
      } else if (name === "orchestrator.v1.LeaderHint") {
        out.leader = detail.address;
        out.replicaId = detail.replica_id;
      }
    }
  }
  if (!raw) {
    out.leader = String(first(err.metadata, LEADER) || "");
    const after = first(err.metadata, RETRY_AFTER_MS);
    if (after !== undefined) out.retryDelayMs = Number(after);
  }
  const oldest = out.metadata.oldest_offset ?? first(err.metadata, OLDEST_OFFSET);
  out.oldestOffset = oldest === undefined ? null : Number(oldest);
  return out;
}

// By the table in docs/api.md "Retrying".
function isRetryable(err, info) {
  if (err.code === grpc.status.NOT_FOUND) return info.reason === "POSSIBLY_STALE_READ";
  if (!RETRYABLE.has(err.code)) return false;
  if (err.code !== grpc.status.RESOURCE_EXHAUSTED) return true;
  // OVERLOADED is worth a retry; a configured limit (LIMIT_EXCEEDED) is not, nor gRPC's own
  // message-size limit (no details; without details only the retry-after trailer says retry).
  return info.reason ? info.reason !== "LIMIT_EXCEEDED" : info.retryDelayMs !== null;
}

// A final error: the gRPC code and message plus what the details said.
class OrchestratorError extends Error {
  constructor(err, info, method) {
    super(
      `${method}: ${grpc.status[err.code]}${info.reason ? ` (${info.reason})` : ""}: ${err.details}`
    );
    this.code = err.code;
    this.details = err.details;
    Object.assign(this, info);
  }
}

// Mutating requests carry request_id (field 1); batches carry one per item, ExecuteWorkflow in
// its start. Filled once, before the first attempt, so every retry sends the same ids.
function assignRequestIds(request, fields) {
  const fill = (r) => {
    if (!r.request_id) r.request_id = crypto.randomUUID();
  };
  if (fields.includes("request_id")) fill(request);
  for (const key of ["items", "polls"]) {
    if (fields.includes(key)) (request[key] || []).forEach(fill);
  }
  if (fields.includes("start") && request.start) fill(request.start);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class Client {
  // addresses: ["host:port", ...]; ca: a PEM file (TLS) or "" (plaintext, an --insecure
  // cluster); token: the bearer token or ""; timeoutMs: one attempt's deadline; budgetMs: how
  // long one call may keep retrying; log(obj): told about each retry.
  constructor({ addresses, ca = "", token = "", timeoutMs = 5000, budgetMs = 30000, log }) {
    if (!addresses || !addresses.length) throw new Error("at least one replica address is needed");
    this.addresses = addresses;
    this.creds = ca
      ? grpc.credentials.createSsl(fs.readFileSync(ca))
      : grpc.credentials.createInsecure();
    this.token = token;
    this.timeoutMs = timeoutMs;
    this.budgetMs = budgetMs;
    this.log = log || (() => {});
    this.stubs = new Map();
    this.preferred = addresses[0]; // the replica that answered last
    this.seq = 0; // the highest x-orchestrator-seq seen
    this.closed = false;
  }

  stub(service, address) {
    const key = `${service}@${address}`;
    if (!this.stubs.has(key))
      this.stubs.set(key, new (loadServices()[service])(address, this.creds));
    return this.stubs.get(key);
  }

  // Call metadata: the token, and the sequence this client has seen.
  metadata() {
    const md = new grpc.Metadata();
    if (this.token) md.set("authorization", `Bearer ${this.token}`);
    if (this.seq > 0) md.set(MIN_SEQ, String(this.seq));
    return md;
  }

  observe(metadata) {
    const seq = Number(first(metadata, SEQ));
    if (Number.isFinite(seq) && seq > this.seq) this.seq = seq;
  }

  // The address after `address` in the list (the first one when it is not in the list, e.g. a
  // leader hint).
  next(address) {
    const i = this.addresses.indexOf(address);
    return this.addresses[(i + 1) % this.addresses.length];
  }

  once(service, method, request, address, timeoutMs) {
    return new Promise((resolve, reject) => {
      let outcome;
      const call = this.stub(service, address)[method](
        request,
        this.metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, response) => {
          outcome = { err, response };
        }
      );
      // grpc-js reports the status (with the trailers) right after the callback.
      call.on("status", (status) => {
        this.observe(status.metadata);
        if (outcome.err) reject(outcome.err);
        else resolve(outcome.response);
      });
    });
  }

  // One logical call: `service` and `method` as the protos name them; the request's ids are
  // filled in once. opts.timeoutMs overrides one attempt's deadline (a long poll needs more).
  async call(service, method, request, opts = {}) {
    const methodDef = loadServices()[service].service[method];
    if (!methodDef) throw new Error(`${service} has no method ${method}`);
    const fields = methodDef.requestType.type.field.map((f) => f.name);
    assignRequestIds(request, fields);
    const timeoutMs = opts.timeoutMs || this.timeoutMs;
    const stopAt = Date.now() + (opts.budgetMs || this.budgetMs);
    const followed = new Set();
    let address = this.preferred;
    let backoffMs = 50;
    for (;;) {
      try {
        const response = await this.once(service, method, request, address, timeoutMs);
        this.preferred = address;
        return response;
      } catch (err) {
        if (err.code === undefined) throw err;
        const info = describeError(err);
        if (this.closed || !isRetryable(err, info) || Date.now() >= stopAt) {
          throw new OrchestratorError(err, info, method);
        }
        let delayMs = 0;
        let to;
        if (info.leader && info.leader !== address && !followed.has(info.leader)) {
          followed.add(info.leader); // a fresh hint: go there at once
          to = info.leader;
        } else {
          to = this.next(address);
          const cap = err.code === grpc.status.UNAVAILABLE ? 250 : 1000;
          delayMs =
            info.retryDelayMs !== null
              ? info.retryDelayMs * (1 + Math.random() * 0.2)
              : backoffMs / 2 + (Math.random() * backoffMs) / 2;
          backoffMs = Math.min(backoffMs * 2, cap);
        }
        this.log({
          retry: method,
          at: address,
          code: grpc.status[err.code],
          reason: info.reason,
          to,
          delay_ms: Math.round(delayMs),
        });
        address = to;
        if (delayMs) await sleep(Math.min(delayMs, Math.max(0, stopAt - Date.now())));
      }
    }
  }

  close() {
    this.closed = true;
    for (const stub of this.stubs.values()) stub.close();
  }
}

// Options shared by the example programs: --addresses a,b,c [--ca ca.pem]; the token from
// ORCHESTRATOR_TOKEN. `defaults` names the program's own options (numbers parse as numbers).
function parseArgs(argv, defaults) {
  const args = { addresses: "", ca: "", ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "").replace(/-(\w)/g, (_, c) => c.toUpperCase());
    if (!(key in args)) throw new Error(`unknown option ${argv[i]}`);
    args[key] = typeof args[key] === "number" ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!args.addresses) throw new Error("--addresses host:port[,host:port...] is required");
  args.addresses = args.addresses
    .split(",")
    .map((a) => a.trim())
    .filter(Boolean);
  return args;
}

function clientFromArgs(args, extra = {}) {
  return new Client({
    addresses: args.addresses,
    ca: args.ca,
    token: process.env.ORCHESTRATOR_TOKEN || "",
    log: (obj) => console.error(JSON.stringify(obj)),
    ...extra,
  });
}

module.exports = {
  Client,
  OrchestratorError,
  clientFromArgs,
  describeError,
  isRetryable,
  parseArgs,
  sleep,
  status: grpc.status,
};
