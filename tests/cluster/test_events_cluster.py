"""The event log on three real replicas: PublishEvent sent to a follower is forwarded to the
leader, appended once, and an event handler's start_workflow runs once, also when the publish is
retried through other replicas and across a leader kill -9."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from orchestrator_client import OrchestratorClient
from orchestrator_client.v1 import events_pb2, events_pb2_grpc

from orchestrator.tools.localcluster import LocalCluster
from tests.cluster_support import auth_metadata, kill_leader, make_cluster, start_node, wait_for

pytestmark = pytest.mark.cluster

FLOW = {
    "name": "ec_fulfil",
    "tasks": [{"name": "ec_gate", "taskReferenceName": "gate", "type": "HUMAN"}],
}
HANDLER = {
    "name": "ec_on_order",
    "event": "ec.order.created",
    "condition": "$.total > 0",
    "actions": [
        {
            "action": "start_workflow",
            "start_workflow": {
                "name": "ec_fulfil",
                "input": {"order": "${payload.order}"},
                "correlationId": "${correlationKey}",
            },
        }
    ],
}


@contextmanager
def running(tmp_path: Any, **settings: Any) -> Iterator[tuple[LocalCluster, OrchestratorClient]]:
    """Three replicas started with these cluster settings added to their configuration, and an
    admin client; everything stopped on exit."""
    cluster = make_cluster(tmp_path)
    if settings:
        path = tmp_path / "cluster.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **settings}))
    try:
        for nid in cluster.replicas:
            start_node(cluster, nid)
        cluster.wait_healthy(timeout_s=60)
        with cluster.client(timeout_s=3.0, retry_budget_s=60.0) as client:
            yield cluster, client
    finally:
        cluster.stop_all()


def _publish(cluster: Any, nid: str, request_id: str, order: str) -> int:
    """PublishEvent on replica `nid` itself (a raw stub: the client would find the leader)."""
    request = events_pb2.PublishEventRequest(
        request_id=request_id,
        name="ec.order.created",
        payload_json=json.dumps({"order": order, "total": 12}),
        correlation_key=order,
    )
    with cluster.channel(cluster.replicas[nid].grpc) as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        response = stub.PublishEvent(request, metadata=auth_metadata(cluster, "operator"))
    return int(response.offset)


def _started(client: Any, order: str) -> list[str]:
    return sorted(wf.workflow_id for wf in client.search(correlation_id=order, limit=10))


def test_a_publish_to_a_follower_is_forwarded_and_its_handler_starts_one_workflow(
    tmp_path: Any,
) -> None:
    with running(tmp_path) as (cluster, client):
        client.register_workflow_def(FLOW)
        client.register_event_handler(HANDLER)
        leader = wait_for(cluster.leader, 30, "a leader")
        followers = sorted(nid for nid in cluster.replicas if nid != leader)

        order, rid = f"o-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
        offset = _publish(cluster, followers[0], rid, order)
        assert offset >= 1
        # The same request through the other follower and the leader: the first outcome.
        assert _publish(cluster, followers[1], rid, order) == offset
        assert _publish(cluster, leader, rid, order) == offset

        # Published through raw stubs, the client has no sequence to read at: a replica may
        # not have applied it yet.
        (event,) = wait_for(lambda: client.read_events(offset, 1), 10, "the event everywhere")
        assert (event["name"], event["correlation_key"]) == ("ec.order.created", order)
        assert [a["code"] for a in event["actions"]] == ["OK"]
        wid = event["actions"][0]["result"]["workflow_id"]
        wf = client.get_workflow(wid)
        assert (wf.status, wf.input, wf.correlation_id) == ("RUNNING", {"order": order}, order)
        assert _started(client, order) == [wid]

        # The leader dies; the retry reaches a survivor, which answers with the first offset
        # (the request id's outcome is replicated) and starts nothing more.
        killed = kill_leader(cluster)
        survivor = next(nid for nid in sorted(cluster.replicas) if nid != killed)
        retried = wait_for(
            lambda: _try(lambda: _publish(cluster, survivor, rid, order)), 30, "a survivor"
        )
        assert retried == offset
        start_node(cluster, killed)
        second = f"o-{uuid.uuid4().hex[:6]}"
        later = _publish(cluster, survivor, uuid.uuid4().hex, second)
        assert later > offset
        (event2,) = wait_for(lambda: client.read_events(later, 1), 10, "the second event")
        assert _started(client, order) == [wid]
        assert _started(client, second) == [event2["actions"][0]["result"]["workflow_id"]]
        assert [e["offset"] for e in client.read_events(offset, 100)] == list(
            range(offset, later + 1)
        ), "no event was appended twice"


def _try(call: Any) -> Any:
    """The call's result, or None while the cluster elects a leader (for wait_for)."""
    import grpc

    try:
        return call()
    except grpc.RpcError as err:
        if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return None
        raise


WAITER = {
    "name": "ec_waiter",
    "tasks": [
        {
            "name": "ec_answer",
            "taskReferenceName": "answer",
            "type": "WAIT_FOR_EVENT",
            "inputParameters": {"event": "ec.answer", "correlationKey": "${workflow.input.key}"},
        }
    ],
    "outputParameters": {"got": "${answer.output.payload}"},
}


def test_a_buffered_message_outlives_the_leader_and_correlates_once(tmp_path: Any) -> None:
    """An answer published (to a follower) before anyone waits is buffered with its ttl in the
    replicated state: after the leader is killed -9, a workflow that starts waiting on the new
    leader takes it at once; a second answer completes a second waiter, never the first again."""
    with running(tmp_path) as (cluster, client):
        client.register_workflow_def(WAITER)
        leader = wait_for(cluster.leader, 30, "a leader")
        follower = next(nid for nid in sorted(cluster.replicas) if nid != leader)
        request = events_pb2.PublishEventRequest(
            request_id=uuid.uuid4().hex,
            name="ec.answer",
            payload_json=json.dumps({"n": 1}),
            correlation_key="k-1",
            ttl_ms=120_000,
        )
        with cluster.channel(cluster.replicas[follower].grpc) as ch:
            first = events_pb2_grpc.EventServiceStub(ch).PublishEvent(
                request, metadata=auth_metadata(cluster, "operator")
            )
        killed = kill_leader(cluster)
        wid = client.start_workflow("ec_waiter", {"key": "k-1"})
        wf = client.wait_for_workflow(wid, timeout_s=30)
        assert (wf.status, wf.output) == ("COMPLETED", {"got": {"n": 1}})
        start_node(cluster, killed)

        second = client.start_workflow("ec_waiter", {"key": "k-1"})
        assert client.get_workflow(second).status == "RUNNING", "the message was taken once"
        offset = client.publish_event("ec.answer", {"n": 2}, "k-1")
        done = client.wait_for_workflow(second, timeout_s=30)
        assert done.output == {"got": {"n": 2}}
        for workflow, expected in ((client.get_workflow(wid), first.offset), (done, offset)):
            waited = workflow.task_by_ref("answer")
            assert waited is not None and waited.output["offset"] == expected
