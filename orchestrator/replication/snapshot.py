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
from typing import Any

MAGIC = b"ORCHSNAP1\n"
_LEN = struct.Struct(">I")


class SnapshotError(ValueError):
    pass


def _entry_out(entry: Any) -> list[Any]:
    command, idx, term = entry
    return [base64.b64encode(bytes(command)).decode("ascii"), int(idx), int(term)]


def _entry_in(raw: Any) -> tuple[bytes, int, int]:
    return (base64.b64decode(raw[0]), int(raw[1]), int(raw[2]))


def write_snapshot(
    path: str, state_bytes: bytes, seq: int, last: Any, prev: Any, cluster: list[str]
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


def make_hooks(
    dump_state: Callable[[], tuple[bytes, int]],
    load_state: Callable[[bytes], None],
    node_factory: Callable[[str], Any],
) -> tuple[Callable[[str, Any], None], Callable[[str], Any]]:
    """The (serializer, deserializer) pair for SyncObjConf."""

    def serializer(tmp_path: str, data: Any) -> None:
        last, prev, cluster = data
        state_bytes, seq = dump_state()
        write_snapshot(tmp_path, state_bytes, seq, last, prev, [n.address for n in cluster])

    def deserializer(path: str) -> Any:
        header, state_bytes = read_snapshot(path)
        load_state(state_bytes)
        cluster = {node_factory(addr) for addr in header["cluster"]}
        return (_entry_in(header["last"]), _entry_in(header["prev"]), cluster)

    return serializer, deserializer
