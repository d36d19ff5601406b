"""The NATS JetStream bridge on three real replicas and a real nats-server (conftest.py).

Source, exactly once into the log: messages are published to a JetStream stream while the
leader is killed with kill -9 and restarted; every message must then be in the event log once,
in stream order (the core appends only past the replicated mark; the new leader's ordered
consumer starts after it). Sink, at least once out: EVENT tasks publishing to "nats:<subject>"
while the leader is killed; every one must reach the stream at least once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from typing import Any

import nats
import pytest

from tests.bridge.conftest import NatsServer
from tests.cluster_support import kill_leader, make_cluster, read_log, rejoin, wait_for

pytestmark = pytest.mark.cluster

IN_STREAM, IN_SUBJECTS = "ORDERS_IN", ["orders.>"]
OUT_STREAM, OUT_SUBJECTS = "SHIP_OUT", ["ship.>"]


def bridged_cluster(tmp_path: Any, server: NatsServer) -> Any:
    cluster = make_cluster(tmp_path)
    raw = json.loads(open(cluster.config_path).read())
    raw["bridges"] = [
        {
            "name": "nats",
            "kind": "nats",
            "url": server.url,
            "source": {"stream": IN_STREAM, "subjects": IN_SUBJECTS},
            "sink": {"stream": OUT_STREAM, "subjects": OUT_SUBJECTS},
        }
    ]
    open(cluster.config_path, "w").write(json.dumps(raw))
    return cluster


async def _publish(url: str, messages: list[tuple[str, dict[str, Any]]], pause_s: float) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=IN_STREAM, subjects=IN_SUBJECTS)
    for subject, payload in messages:
        await js.publish(subject, json.dumps(payload).encode(), headers={"Correlation-Key": "k"})
        await asyncio.sleep(pause_s)
    await nc.close()


async def _read_stream(url: str, stream: str) -> list[Any]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        last = (await js.stream_info(stream)).state.last_seq
        return [await js.get_msg(stream, seq) for seq in range(1, last + 1)]
    finally:
        await nc.close()


def read_all_events(client: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        page = client.read_events(from_offset=len(events) + 1, limit=500)
        if not page:
            return events
        events.extend(page)


def test_messages_enter_the_log_once_in_order_across_a_leader_kill(
    tmp_path: Any, nats_server: NatsServer
) -> None:
    n = 300
    cluster = bridged_cluster(tmp_path, nats_server)
    messages = [(f"orders.{'created' if i % 3 else 'paid'}", {"i": i}) for i in range(n)]
    publisher = threading.Thread(
        target=asyncio.run, args=(_publish(nats_server.url, messages, 0.01),), daemon=True
    )
    try:
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        client = cluster.client(timeout_s=3.0, retry_budget_s=60.0)
        publisher.start()
        wait_for(lambda: len(client.read_events(limit=500)) >= n // 4, 60, "a quarter ingested")
        killed = kill_leader(cluster)
        at_kill = len(read_all_events(client))
        rejoin(cluster, killed)
        publisher.join(60)
        wait_for(lambda: len(read_all_events(client)) >= n, 90, "every message ingested")
        time.sleep(1.0)  # a duplicate, had there been one, would show by now
        events = read_all_events(client)
        assert at_kill < n, "the leader was killed after everything was in: proved nothing"
        assert [e["payload"]["i"] for e in events] == list(range(n))
        assert [e["name"] for e in events] == [s for s, _ in messages]
        assert {e["correlation_key"] for e in events} == {"k"}
        assert [e["offset"] for e in events] == list(range(1, n + 1))
        connected = [
            json.loads(line)
            for nid in cluster.replicas
            for line in read_log(cluster, nid).splitlines()
            if '"bridge_connected"' in line
        ]
        assert len(connected) >= 2, "the first and the new leader each ran the bridge"
        assert {c["role"] for c in connected} == {"LEADER"}, "a follower ran the bridge"
    finally:
        cluster.kill_all()


SHIP = {
    "name": "ship_order",
    "version": 1,
    "tasks": [
        {
            "name": "announce",
            "taskReferenceName": "announce",
            "type": "EVENT",
            "inputParameters": {"sink": "nats:ship.requested", "order": "${workflow.input.n}"},
        }
    ],
}


def test_event_tasks_reach_nats_at_least_once_across_a_leader_kill(
    tmp_path: Any, nats_server: NatsServer
) -> None:
    """A third of the events go out at once; the next third is appended while NATS is frozen
    (SIGSTOP), so the leader cannot send them, and the leader is killed with them unsent; the
    last third goes to the new leader. Once NATS runs again, every one must be in the stream."""
    m = 60
    cluster = bridged_cluster(tmp_path, nats_server)
    assert nats_server.proc is not None
    nats_pid = nats_server.proc.pid

    def orders() -> list[int]:
        msgs = asyncio.run(_read_stream(nats_server.url, OUT_STREAM))
        return [json.loads(msg.data)["order"] for msg in msgs]

    try:
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        client = cluster.client(timeout_s=3.0, retry_budget_s=60.0)
        client.register_workflow_def(SHIP)
        for i in range(m // 3):
            client.start_workflow("ship_order", input={"n": i})
        wait_for(lambda: set(orders()) == set(range(m // 3)), 60, "the first third in NATS")
        os.kill(nats_pid, signal.SIGSTOP)
        try:
            for i in range(m // 3, 2 * m // 3):
                client.start_workflow("ship_order", input={"n": i})
            killed = kill_leader(cluster)
            for i in range(2 * m // 3, m):
                client.start_workflow("ship_order", input={"n": i})
            rejoin(cluster, killed)
        finally:
            os.kill(nats_pid, signal.SIGCONT)
        wait_for(lambda: set(orders()) == set(range(m)), 90, "every EVENT task's event in NATS")
        sent = asyncio.run(_read_stream(nats_server.url, OUT_STREAM))
        assert {msg.subject for msg in sent} == {"ship.requested"}
        ids = [msg.headers["Nats-Msg-Id"] for msg in sent]
        assert len(set(ids)) == len(ids), "the duplicate window hides a re-sent offset"
        resumed = [
            json.loads(line)["after"]
            for nid in cluster.replicas
            for line in read_log(cluster, nid).splitlines()
            if '"bridge_sink_started"' in line
        ]
        assert any(0 < after < m for after in resumed), f"no leader resumed mid-way: {resumed}"
    finally:
        cluster.kill_all()
