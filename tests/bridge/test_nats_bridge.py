"""The NATS JetStream bridge on three real replicas and a real nats-server (conftest.py).

Source, exactly once into the log: messages are published to a JetStream stream while the
leader is killed with kill -9 and restarted; every message must then be in the event log once,
in stream order (the core appends only past the replicated mark; the new leader's ordered
consumer starts after it).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import nats
import pytest

from tests.bridge.conftest import NatsServer
from tests.cluster_support import kill_leader, make_cluster, rejoin, wait_for

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
    finally:
        cluster.kill_all()
