"""The Raft port's limits (replication/wire_guard.py): a stranger's bytes cannot make the tick
thread buffer without bound, and frames over the maximum close the connection."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import pysyncobj.pickle as pickle
import pytest

from orchestrator.core import commands as C
from orchestrator.replication import envelope, wire_crypto, wire_frames, wire_guard
from orchestrator.replication.settings import RaftSettings
from tests.cluster_support import wait_for
from tests.replication.test_replication import _three_replicas

# 2**31 as a little-endian length prefix, negative as pysyncobj reads it.
ATTACK_PREFIX = b"\x00\x00\x00\x80"
ATTACK_BYTES = 32 * 1024 * 1024


def _attack(addr: str, prefix: bytes, closed: list[str]) -> None:
    """Sends `prefix` and 32 MiB; records how the replica ended the connection."""
    host, _, port = addr.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    chunk = b"\x00" * (1024 * 1024)
    try:
        sock.sendall(prefix)
        for _ in range(ATTACK_BYTES // len(chunk)):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        closed.append("eof" if sock.recv(1) == b"" else "data")
    except OSError as exc:  # reset or broken pipe: closed while we were still sending
        closed.append(type(exc).__name__)
    finally:
        sock.close()


@pytest.mark.parametrize(
    "prefix",
    [ATTACK_PREFIX, struct.pack("i", 2**31 - 1), struct.pack("i", 60_000)],
    ids=["2^31", "max-int", "under-budget"],
)
def test_a_strangers_huge_frame_is_cut_off_without_an_election(
    tmp_path: Any, prefix: bytes
) -> None:
    replicas = _three_replicas(tmp_path, fsync=False)
    try:
        wait_for(lambda: any(r.leader_ready() for r in replicas), 30, "a leader")
        leader = next(r for r in replicas if r.leader_ready())
        assert leader.propose(C.Noop()).result(timeout=30).ok
        terms = [r.term() for r in replicas]
        closed: list[str] = []
        threads = [
            threading.Thread(target=_attack, args=(r.address, prefix, closed)) for r in replicas
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # Every replica closed the connection long before 32 MiB could have been buffered.
        assert len(closed) == 3 and "data" not in closed, closed
        # Over a few election timeouts: no election anywhere, and the cluster commits.
        deadline = time.monotonic() + 3 * replicas[0].settings.election_max_s
        while time.monotonic() < deadline:
            assert leader.propose(C.Noop()).result(timeout=30).ok
        assert [r.term() for r in replicas] == terms
        assert leader.is_leader()
    finally:
        for r in replicas:
            r.stop()


# ---- the guard's rules on a connection stand-in


class _Conn:
    def __init__(self, limits: wire_guard.FrameLimits, authenticated: bool = False) -> None:
        self._TcpConnection__readBuffer = b""
        self.closed = False
        wire_guard.set_limits(self, limits)
        wire_guard._guard(self).authenticated = authenticated

    def receive(self, data: bytes) -> bool:
        self._TcpConnection__readBuffer += data
        return wire_guard._within_limits(self, len(data))

    def disconnect(self) -> None:
        self.closed = True


LIMITS = wire_guard.FrameLimits(max_frame_bytes=1000, preauth_budget_bytes=100)


def test_an_unauthenticated_connection_gets_a_small_budget() -> None:
    conn = _Conn(LIMITS)
    assert conn.receive(struct.pack("i", 50)) and not conn.closed
    assert not conn.receive(b"x" * 50) and not conn.closed  # a whole frame: parse it first
    conn = _Conn(LIMITS)
    assert not conn.receive(struct.pack("i", 101)) and conn.closed  # a frame over the budget
    conn = _Conn(LIMITS)
    assert conn.receive(struct.pack("i", 90) + b"x" * 40)
    assert not conn.receive(b"x" * 60) and conn.closed  # more than the budget in all


def test_an_authenticated_connection_may_send_frames_up_to_the_maximum() -> None:
    conn = _Conn(LIMITS, authenticated=True)
    assert conn.receive(struct.pack("i", 1000) + b"x" * 500) and not conn.closed
    assert not conn.receive(b"x" * 600) and not conn.closed  # bounded: parse before reading on
    assert not _Conn(LIMITS, authenticated=True).receive(struct.pack("i", 1001))
    assert not _Conn(LIMITS, authenticated=True).receive(struct.pack("i", -5))


def test_the_largest_legitimate_frame_fits_under_the_default_maximum() -> None:
    """An AppendEntries carrying entries up to pysyncobj's batch size (twice batch_max_bytes)
    and then the largest single entry: one command from a 4 MiB gRPC request (a RegisterTaskDefs
    of 16 task definitions of 256 KiB), measured as it goes on the wire."""
    settings = RaftSettings(self_addr="127.0.0.1:1", peers=[], password="pw", data_dir="")
    big = C.RegisterTaskDefs(
        request_id="r",
        task_defs=[{"name": f"t{i}", "description": "é" * (128 * 1024)} for i in range(16)],
    )
    small = envelope.encode(1, 0, [C.Noop().to_dict()] * 300)
    batch = 2 * settings.batch_max_bytes
    entries = [(small, i, 1) for i in range(1, batch // len(small) + 1)]
    entries.append((envelope.encode(1, 0, [big.to_dict()]), len(entries) + 1, 1))
    message = {
        "type": "append_entries",
        "term": 1,
        "commit_index": 1,
        "entries": entries,
        "prevLogIdx": 0,
        "prevLogTerm": 0,
    }
    token = wire_crypto.AeadEncryptor("pw").encrypt_at_time(
        wire_frames.stored(pickle.dumps((b"k" * 32, message))), 1
    )
    assert 4 * 1024 * 1024 < len(token) < settings.max_frame_bytes
