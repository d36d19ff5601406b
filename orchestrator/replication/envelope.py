"""The one thing that goes into the Raft log: a versioned, checksummed batch of commands.

Layout: b"OE" | version (1 byte) | crc32 of the body (4 bytes, big endian) | body
body   = canonical JSON {"e": proposer epoch, "n": cluster time ms, "c": [command dicts]}

JSON rather than pickle: the journal stays readable by any later code version, and a replica
never unpickles domain objects it received from the network.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

MAGIC = b"OE"
VERSION = 1
_HEADER = struct.Struct(">2sBI")


class EnvelopeError(ValueError):
    pass


@dataclass(frozen=True)
class Envelope:
    epoch: int
    now_ms: int
    commands: list[Any]


def encode(epoch: int, now_ms: int, commands: list[Any]) -> bytes:
    body = json.dumps(
        {"e": epoch, "n": now_ms, "c": commands}, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    return _HEADER.pack(MAGIC, VERSION, zlib.crc32(body)) + body


def encode_commands(epoch: int, now_ms: int, encoded_commands: list[bytes]) -> bytes:
    """Like encode, for commands already serialized to JSON bytes (group commit joins them)."""
    body = b'{"e":%d,"n":%d,"c":[%s]}' % (epoch, now_ms, b",".join(encoded_commands))
    return _HEADER.pack(MAGIC, VERSION, zlib.crc32(body)) + body


def decode(data: bytes) -> Envelope:
    if not isinstance(data, (bytes, bytearray)) or len(data) < _HEADER.size:
        raise EnvelopeError("entry too short or not bytes")
    magic, version, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeError("bad magic")
    if version != VERSION:
        raise EnvelopeError(f"unsupported envelope version {version}")
    body = bytes(data[_HEADER.size :])
    if zlib.crc32(body) != crc:
        raise EnvelopeError("checksum mismatch")
    try:
        obj = json.loads(body)
        env = Envelope(int(obj["e"]), int(obj["n"]), list(obj["c"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise EnvelopeError(f"undecodable body: {exc}") from None
    return env
