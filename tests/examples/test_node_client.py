"""examples/node/orchestrator.js without a cluster: it reads the error details a replica sends
(a google.rpc.Status built here with the Python protos, as the server builds it), falls back to
the trailers without them, decides what to retry by docs/api.md's table, and fills request ids
once. Runs when node and npm are present; skipped otherwise, except under CI=true."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from orchestrator_client.v1 import errors_pb2

from tests.examples.node_support import EXAMPLE, node_ready

# Reads one JSON case per line from stdin: {code, details, trailers: {key: value}, bin: base64
# of grpc-status-details-bin}; prints what describeError and isRetryable make of it.
_SCRIPT = """
const grpc = require("@grpc/grpc-js");
const o = require("./orchestrator");
const cases = require("fs").readFileSync(0, "utf8").trim().split("\\n").map(JSON.parse);
for (const c of cases) {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(c.trailers || {})) md.set(k, v);
  if (c.bin) md.set("grpc-status-details-bin", Buffer.from(c.bin, "base64"));
  const err = { code: c.code, details: c.details || "", metadata: md };
  const info = o.describeError(err);
  console.log(JSON.stringify({ ...info, retry: o.isRetryable(err, info) }));
}
"""


def _status(code: int, reason: str, *, delay_ms: int = 0, leader: str = "", **meta: str) -> str:
    details = [error_details_pb2.ErrorInfo(reason=reason, domain="orchestrator.v1", metadata=meta)]
    if delay_ms:
        delay = duration_pb2.Duration(seconds=delay_ms // 1000, nanos=delay_ms % 1000 * 1_000_000)
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    if leader:
        details.append(errors_pb2.LeaderHint(address=leader, replica_id="n2"))
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    status = status_pb2.Status(code=code, message="m", details=packed)
    return base64.b64encode(status.SerializeToString()).decode()


def _describe(*cases: dict[str, Any]) -> list[dict[str, Any]]:
    node_ready()
    out = subprocess.run(
        ["node", "-e", _SCRIPT],
        cwd=EXAMPLE,
        input="\n".join(json.dumps(c) for c in cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_details_are_read_and_trailers_are_the_fallback() -> None:
    stale = {"x-orchestrator-leader": "127.0.0.1:9"}  # a trailer the details overrule
    hinted, fallback, expired = _describe(
        {"code": 14, "bin": _status(14, "NOT_LEADER", delay_ms=1500, leader="127.0.0.1:7")},
        {"code": 14, "trailers": {**stale, "x-orchestrator-retry-after-ms": "200"}},
        {"code": 11, "bin": _status(11, "OFFSET_EXPIRED", oldest_offset="42"), "trailers": stale},
    )
    assert hinted["reason"] == "NOT_LEADER"
    assert (hinted["leader"], hinted["replicaId"], hinted["retryDelayMs"]) == (
        "127.0.0.1:7",
        "n2",
        1500,
    )
    assert hinted["retry"]
    assert (fallback["reason"], fallback["leader"], fallback["retryDelayMs"]) == (
        "",
        "127.0.0.1:9",
        200,
    )
    # With details, no LeaderHint means no leader to go to, whatever a trailer says.
    assert (expired["leader"], expired["oldestOffset"], expired["retry"]) == ("", 42, False)


def test_what_is_retried_follows_the_contract() -> None:
    cases = [
        ({"code": 14}, True),  # UNAVAILABLE, even without details (a dead replica)
        ({"code": 4}, True),  # DEADLINE_EXCEEDED
        ({"code": 8, "bin": _status(8, "OVERLOADED", delay_ms=200)}, True),
        ({"code": 8, "bin": _status(8, "LIMIT_EXCEEDED")}, False),
        ({"code": 8, "details": "Received message larger than max (5 vs. 4)"}, False),
        ({"code": 5, "bin": _status(5, "POSSIBLY_STALE_READ", applied_seq="3")}, True),
        ({"code": 5, "bin": _status(5, "NOT_FOUND")}, False),
        ({"code": 9, "bin": _status(9, "FAILED_PRECONDITION")}, False),
        ({"code": 3}, False),  # INVALID_ARGUMENT
    ]
    got = _describe(*(c for c, _ in cases))
    assert [g["retry"] for g in got] == [want for _, want in cases]


def test_request_ids_are_filled_once_and_kept() -> None:
    node_ready()
    script = """
const o = require("./orchestrator");
const c = new o.Client({ addresses: ["127.0.0.1:1"], budgetMs: 300, timeoutMs: 100 });
const seen = [];
c.once = async (service, method, request) => {
  seen.push(JSON.stringify(request));
  const err = new Error("down"); err.code = 14; err.details = "down"; throw err;
};
const start = { name: "w" };
const batch = { items: [{ task_id: "a" }, { task_id: "b", request_id: "mine" }] };
(async () => {
  for (const [svc, m, r] of [["WorkflowService", "StartWorkflow", start],
                             ["TaskService", "CompleteTasks", batch],
                             ["WorkflowService", "GetWorkflow", { workflow_id: "x" }]]) {
    seen.length = 0;
    await c.call(svc, m, r).catch(() => {});
    console.log(JSON.stringify({ attempts: seen.length, distinct: new Set(seen).size, last: JSON.parse(seen.at(-1)) }));
  }
})();
"""
    out = subprocess.run(
        ["node", "-e", script], cwd=EXAMPLE, capture_output=True, text=True, timeout=60, check=True
    )
    start, batch, read = (json.loads(line) for line in out.stdout.splitlines())
    for call in (start, batch, read):
        assert call["attempts"] > 1 and call["distinct"] == 1  # retried, the same request
    assert len(start["last"]["request_id"]) == 36
    assert [len(i["request_id"]) for i in batch["last"]["items"]] == [36, 4]
    assert "request_id" not in read["last"]
