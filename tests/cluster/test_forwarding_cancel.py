"""A call a follower forwarded to the leader ends on the leader when its caller goes away.

Without that, a worker that cancels a long poll it sent to a follower (a client shutting down,
a retry elsewhere) leaves the forwarded poll holding one of the leader's long-poll slots until
the poll's own timeout (up to 30 s): a few hundred such workers lock every other worker out.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import tasks_pb2, tasks_pb2_grpc

from tests.cluster_support import auth_metadata, make_cluster, wait_for

pytestmark = pytest.mark.cluster

LONG_POLLS = 4
POLL_MS = 30_000  # the longest a poll may wait: what a slot is held for without the cancel


def _poll(timeout_ms: int) -> tasks_pb2.PollTasksRequest:
    return tasks_pb2.PollTasksRequest(
        request_id=uuid.uuid4().hex,
        task_type="fc_idle",
        worker_id="fc-worker",
        count=1,
        timeout_ms=timeout_ms,
    )


def test_a_cancelled_forwarded_long_poll_frees_the_leaders_slot(tmp_path: Any) -> None:
    cluster = make_cluster(tmp_path)
    path = tmp_path / "cluster.json"
    cfg = json.loads(path.read_text())
    cfg["admission"] = {"max_long_polls": LONG_POLLS}
    path.write_text(json.dumps(cfg))
    try:
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        leader = wait_for(cluster.leader, 30, "a leader")
        follower = next(nid for nid in sorted(cluster.replicas) if nid != leader)
        md = auth_metadata(cluster, "worker")

        def leader_poll_code() -> grpc.StatusCode:
            with cluster.channel(cluster.replicas[leader].grpc) as ch:
                try:
                    tasks_pb2_grpc.TaskServiceStub(ch).PollTasks(
                        _poll(100), metadata=md, timeout=10
                    )
                except grpc.RpcError as err:
                    return err.code()  # type: ignore[no-any-return]
                return grpc.StatusCode.OK

        with cluster.channel(cluster.replicas[follower].grpc) as ch:
            stub = tasks_pb2_grpc.TaskServiceStub(ch)

            def send() -> Any:
                return stub.PollTasks.future(_poll(POLL_MS), metadata=md, timeout=60)

            futures = [send() for _ in range(LONG_POLLS)]

            def leader_full() -> bool:
                # A probe holds a leader slot for its 100 ms, so a forwarded poll arriving
                # meanwhile is refused: send that one again until the leader holds them all.
                for i, f in enumerate(futures):
                    if f.done():
                        assert f.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f.details()
                        futures[i] = send()
                return leader_poll_code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            try:
                wait_for(leader_full, 20, "the forwarded polls to fill the leader's slots")
            finally:
                for f in futures:
                    f.cancel()
            # Well before the polls' own 30 s: the cancel reached the leader.
            wait_for(
                lambda: leader_poll_code() == grpc.StatusCode.OK,
                POLL_MS / 2000,
                "the leader to admit a long poll again after the callers went away",
            )
    finally:
        cluster.kill_all()
