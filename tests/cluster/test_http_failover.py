"""An HTTP task whose request is in flight when the leader is killed -9, on three real replicas.

The leader makes HTTP requests outside apply (runtime/http.py); the task stays IN_PROGRESS with
its request in the replicated state until a result is proposed. A test server on loopback
holds the first request open, the leader dies, and the next leader finds the pending request
in the state and makes it again. So the request itself reaches the server twice (at least once,
as docs/events.md says; the remedy is a server that deduplicates, e.g. on the workflow's id),
while the task ends exactly once, with the second response.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.cluster.test_events_cluster import running
from tests.cluster_support import kill_leader, start_node, wait_for

pytestmark = pytest.mark.cluster


class _Held(BaseHTTPRequestHandler):
    """Answers every request once `release` is set; records the order each one is for."""

    hits: list[str] = []
    release = threading.Event()

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n))
        type(self).hits.append(body["order"])
        type(self).release.wait(60)
        data = json.dumps({"charged": body["order"], "attempt": len(self.hits)}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the first caller died with the old leader


@pytest.fixture
def held_server() -> Iterator[str]:
    _Held.hits, _Held.release = [], threading.Event()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Held)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    _Held.release.set()
    srv.shutdown()
    srv.server_close()


def test_a_pending_request_is_made_again_by_the_new_leader_and_the_task_ends_once(
    tmp_path: Any, held_server: str
) -> None:
    with running(tmp_path, http_allow=["127.0.0.1"]) as (cluster, client):
        request = {
            "uri": f"{held_server}/charge",
            "method": "POST",
            "body": {"order": "${workflow.input.order}"},
            "connectionTimeOut": 2000,
            "readTimeOut": 60_000,
        }
        client.register_workflow_def(
            {
                "name": "hf_charge",
                "tasks": [
                    {
                        "name": "charge",
                        "taskReferenceName": "charge",
                        "type": "HTTP",
                        "inputParameters": {"http_request": request},
                    }
                ],
                "outputParameters": {"charged": "${charge.output.response.body}"},
            }
        )
        wid = client.start_workflow("hf_charge", {"order": "o-1"})
        wait_for(lambda: len(_Held.hits) == 1, 30, "the leader's request to arrive")

        killed = kill_leader(cluster)
        new_leader = wait_for(
            lambda: (lambda lead: lead if lead and lead != killed else None)(cluster.leader()),
            30,
            "a new leader",
        )
        wait_for(lambda: len(_Held.hits) == 2, 30, "the new leader to make the request again")
        assert _Held.hits == ["o-1", "o-1"]
        assert client.get_workflow(wid).status == "RUNNING"
        _Held.release.set()
        start_node(cluster, killed)

        wf = client.wait_for_workflow(wid, timeout_s=60)
        assert wf.status == "COMPLETED", wf.reason_for_incompletion
        assert [(t.reference_task_name, t.status) for t in wf.tasks] == [("charge", "COMPLETED")]
        # The second attempt's answer: the old leader's connection died with it.
        assert wf.output == {"charged": {"charged": "o-1", "attempt": 2}}
        assert len(_Held.hits) == 2, "nobody made the request a third time"
        assert cluster.leader() == new_leader
