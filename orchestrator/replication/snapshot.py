"""Our own snapshot format, plugged into pysyncobj's serializer hooks.

File layout:
    b"ORCHSNAP1\n" | header length (4 bytes BE) | header JSON | zlib(state JSON)
header = {"last": entry, "prev": entry, "cluster": [raft addresses], "crc": crc32 of the
          compressed body, "size": its length, "seq": applied sequence}
where an entry is [base64 of pysyncobj's raw entry bytes, index, term].

pysyncobj needs the two last applied log entries and the membership back when it loads a dump;
those are its own values (bytes and addresses), never our domain objects, and the state itself
is canonical JSON. A corrupt or truncated file raises SnapshotError at load.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any, Protocol

MAGIC = b"ORCHSNAP1\n"
_LEN = struct.Struct(">I")
# How long a snapshot waits for the durable history to hold everything it covers.
BARRIER_TIMEOUT_S = 30.0


class Gate(Protocol):
    """history/writer.py's Barrier: opens once the history holds everything up to the seq the
    snapshot covers; waitable in a forked child (a pipe)."""

    def wait(self, timeout_s: float) -> bool: ...

    def detach(self) -> None: ...


class SnapshotError(ValueError):
    pass


def _entry_out(entry: Any) -> list[Any]:
    command, idx, term = entry
    return [base64.b64encode(bytes(command)).decode("ascii"), int(idx), int(term)]


def _entry_in(raw: Any) -> tuple[bytes, int, int]:
    return (base64.b64decode(raw[0]), int(raw[1]), int(raw[2]))


def write_snapshot(
    path: str,
    state_bytes: bytes,
    seq: int,
    last: Any,
    prev: Any,
    cluster: list[str],
    log_hash: str = "",
) -> None:
    body = zlib.compress(state_bytes, 1)
    header = json.dumps(
        {
            "last": _entry_out(last),
            "prev": _entry_out(prev),
            "cluster": sorted(cluster),
            "crc": zlib.crc32(body),
            "size": len(body),
            "seq": seq,
            "log_hash": log_hash,
        }
    ).encode()
    with open(path, "wb") as f:
        f.write(MAGIC + _LEN.pack(len(header)) + header + body)
        f.flush()
        os.fsync(f.fileno())


def read_snapshot(path: str) -> tuple[dict[str, Any], bytes]:
    """Returns (header, state bytes); raises SnapshotError naming the problem."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        raise SnapshotError(f"{path}: not an orchestrator snapshot (bad magic)")
    pos = len(MAGIC)
    if len(data) < pos + _LEN.size:
        raise SnapshotError(f"{path}: truncated header")
    (hlen,) = _LEN.unpack_from(data, pos)
    pos += _LEN.size
    try:
        header = json.loads(data[pos : pos + hlen])
    except ValueError:
        raise SnapshotError(f"{path}: corrupt header") from None
    body = data[pos + hlen :]
    if len(body) != header.get("size"):
        raise SnapshotError(f"{path}: truncated body ({len(body)} of {header.get('size')} bytes)")
    if zlib.crc32(body) != header.get("crc"):
        raise SnapshotError(f"{path}: checksum mismatch")
    return header, zlib.decompress(body)


class SnapshotDeferred(Exception):
    """Raised by our serializer to tell pysyncobj the snapshot continues in a child process.

    pysyncobj 0.3.17 calls a custom serializer synchronously on the Raft tick thread (which also
    sends heartbeats) and renames its tmp file onto the dump right after. Raising here makes it
    skip that rename and record a failed attempt; it then polls our serializeChecker every tick
    and truncates the Raft log only once the checker reports SUCCESS, i.e. once the child has
    written, fsynced and renamed the new dump. A crash at any point leaves either the old dump
    (with the log it still needs) or the new one.
    """


class ForkingSnapshotter:
    """Writes snapshots in a forked child: copy-on-write gives it a frozen state for free."""

    def __init__(
        self,
        dump_path: str,
        dump_state: Callable[[], tuple[bytes, int, str]],
        load_state: Callable[[bytes, dict[str, Any]], None],
        node_factory: Callable[[str], Any],
        use_fork: bool = True,
        barrier: Callable[[], Gate | None] | None = None,
    ) -> None:
        self.dump_path = dump_path
        # The durable history's barrier: the snapshot, and with it the truncation of the Raft
        # log that could rebuild the history, waits until the history holds what it covers.
        self.barrier = barrier
        self.dump_state = dump_state
        self.load_state = load_state
        self.node_factory = node_factory
        self.use_fork = use_fork and hasattr(os, "fork")
        self.child_pid = 0
        self.completed = 0
        self.failed = 0
        self._sync_result: int | None = None

    def _write(self, data: Any) -> None:
        last, prev, cluster = data
        state_bytes, seq, log_hash = self.dump_state()
        tmp = self.dump_path + ".writing"
        write_snapshot(tmp, state_bytes, seq, last, prev, [n.address for n in cluster], log_hash)
        os.replace(tmp, self.dump_path)
        dir_fd = os.open(os.path.dirname(os.path.abspath(self.dump_path)), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def serializer(self, tmp_path: str, data: Any) -> None:
        # Taken on the tick thread, where the state stands at the seq the snapshot covers; the
        # waiting happens in the child, so the tick thread never waits for the history.
        gate = self.barrier() if self.barrier is not None else None
        if not self.use_fork:
            try:
                if gate is not None and not gate.wait(BARRIER_TIMEOUT_S):
                    raise SnapshotError("the history did not reach the snapshot's seq in time")
                self._write(data)
                self._sync_result = 2
            except Exception:
                self._sync_result = 3
            finally:
                if gate is not None:
                    gate.detach()
            raise SnapshotDeferred("written synchronously")
        pid = os.fork()
        if pid == 0:  # child: no locks, no logging, no grpc; write and leave without cleanup
            code = 1
            try:
                if gate is None or gate.wait(BARRIER_TIMEOUT_S):
                    self._write(data)
                    code = 0
            finally:
                os._exit(code)
        if gate is not None:
            gate.detach()
        self.child_pid = pid
        raise SnapshotDeferred(f"snapshot continues in child {pid}")

    def checker(self) -> int:
        # SERIALIZER_STATE: 0 not serializing, 1 serializing, 2 success, 3 failed
        if self._sync_result is not None:
            result, self._sync_result = self._sync_result, None
            self._count(result)
            return result
        if not self.child_pid:
            return 0
        try:
            pid, status = os.waitpid(self.child_pid, os.WNOHANG)
        except ChildProcessError:
            self.child_pid = 0
            self._count(3)
            return 3
        if pid == 0:
            return 1
        self.child_pid = 0
        result = 2 if os.waitstatus_to_exitcode(status) == 0 else 3
        self._count(result)
        return result

    def _count(self, result: int) -> None:
        if result == 2:
            self.completed += 1
        else:
            self.failed += 1

    def deserializer(self, path: str) -> Any:
        header, state_bytes = read_snapshot(path)
        self.load_state(state_bytes, header)
        cluster = {self.node_factory(addr) for addr in header["cluster"]}
        return (_entry_in(header["last"]), _entry_in(header["prev"]), cluster)
