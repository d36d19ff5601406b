"""examples/node/subscriber.js against three real replicas: it subscribes with a group, acks,
and when the replica it streams from is killed -9 it resubscribes on another and every event
is handled at least once. Runs when node and npm are present (npm ci from the registry
into examples/node/node_modules, ignored by git); skipped otherwise, except under CI=true."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import uuid
from typing import Any

import pytest

from tests.cluster_support import make_cluster, start_node, wait_for
from tests.examples.node_support import EXAMPLE, node_ready

pytestmark = pytest.mark.cluster

EVENTS = 60


def _lines(stream: Any, out: queue.Queue[tuple[str, dict[str, Any]]], tag: str) -> None:
    for line in stream:
        try:
            out.put((tag, json.loads(line)))
        except ValueError:
            out.put((tag, {"text": line.rstrip()}))


def test_the_node_subscriber_fails_over_and_loses_nothing(tmp_path: Any) -> None:
    node_ready()
    cluster = make_cluster(tmp_path, insecure=True)
    client = proc = None
    try:
        for nid in cluster.replicas:
            start_node(cluster, nid)
        cluster.wait_healthy(timeout_s=60)
        client = cluster.client(timeout_s=3.0, retry_budget_s=60.0)
        name = f"node_{uuid.uuid4().hex[:6]}"
        published = [client.publish_event(name, {"i": i}) for i in range(EVENTS // 2)]
        proc = subprocess.Popen(
            [
                "node",
                "subscriber.js",
                "--addresses",
                ",".join(cluster.addresses),
                "--group",
                "node_group",
                "--name",
                name,
                "--count",
                str(EVENTS),
            ],
            cwd=EXAMPLE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
            threading.Thread(target=_lines, args=(stream, lines, tag), daemon=True).start()
        handled: list[int] = []
        seen: list[dict[str, Any]] = []
        streaming = ""
        killed = ""
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                tag, msg = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.append(msg)
            if "streaming_from" in msg:
                streaming = msg["streaming_from"]
            if "offset" in msg:
                handled.append(msg["offset"])
            if not killed and len(handled) >= EVENTS // 4 and streaming:
                killed = next(n for n, r in cluster.replicas.items() if r.grpc == streaming)
                cluster.kill(killed)  # -9, mid-stream
                threading.Thread(
                    target=lambda: published.extend(
                        client.publish_event(name, {"i": i}) for i in range(EVENTS // 2, EVENTS)
                    ),
                    daemon=True,
                ).start()
        assert killed, f"the subscriber never handled a quarter of the events: {seen[-10:]}"
        wait_for(
            lambda: proc.poll() is not None or None,
            30,
            lambda: f"the subscriber to exit ({len(handled)} handled; {seen[-10:]})",
        )
        while not lines.empty():
            tag, msg = lines.get()
            seen.append(msg)
            if "offset" in msg:
                handled.append(msg["offset"])
        assert proc.returncode == 0
        assert len(published) == EVENTS
        assert set(handled) == set(published), "an event was lost"
        # It did fail over: the stream from the killed replica ended and another one served.
        dead = cluster.replicas[killed].grpc
        ended = next(i for i, m in enumerate(seen) if m.get("stream_ended") == dead)
        assert any(m.get("streaming_from", dead) != dead for m in seen[ended:])
        start_node(cluster, killed)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if client is not None:
            client.close()
        cluster.stop_all()
