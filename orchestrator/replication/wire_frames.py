"""Raft messages go uncompressed: pysyncobj's zlib step, replaced by stored (plain) zlib frames.

pysyncobj 0.3.17's TcpConnection compresses every message it sends with `zlib.compress(data, 3)`
and decompresses every message it receives with `zlib.decompress`. For our messages (an
AppendEntries carrying about 1 KiB, a reply of about 100 B) setting up deflate costs 20-40 us per
message whatever the level, on the critical path of every commit: the leader compresses its
AppendEntries before it leaves and a follower compresses its reply between its fsync and the
send. Measured at concurrency 1 it was about 0.3 ms per workflow (docs/performance.md, stop 9).

The bytes saved do not matter between replicas on one network, and compressing before
encrypting leaks how compressible the plaintext is through the message length (the CRIME class
of attacks), so we do not compress. `install()` gives pysyncobj's tcp_connection module a zlib
whose `compress` writes the data as stored deflate blocks in a valid zlib stream (RFC 1950 and
1951: a 2-byte header, blocks of at most 65 535 bytes each with its length and the length's
complement, and the Adler-32 of the data). `zlib.decompress` reads that like any other stream,
so replicas with and without this change still understand one another.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

_HEADER = b"\x78\x01"  # deflate, 32 KiB window, "fastest" level; (0x78 * 256 + 0x01) % 31 == 0
_MAX_STORED = 0xFFFF
_BLOCK = struct.Struct("<BHH")  # BFINAL/BTYPE=00 byte, LEN, NLEN (the header byte is aligned)
_ADLER = struct.Struct(">I")


def stored(data: bytes, level: int = -1) -> bytes:
    """A zlib stream holding `data` uncompressed. `level` is accepted and ignored."""
    view = memoryview(data)
    n = len(view)
    parts: list[Any] = [_HEADER]
    pos = 0
    while True:
        chunk = view[pos : pos + _MAX_STORED]
        pos += len(chunk)
        final = pos >= n
        parts.append(_BLOCK.pack(1 if final else 0, len(chunk), len(chunk) ^ 0xFFFF))
        parts.append(chunk)
        if final:
            break
    parts.append(_ADLER.pack(zlib.adler32(view)))
    return b"".join(parts)


class _PlainZlib:
    """What pysyncobj's tcp_connection module sees as `zlib`."""

    compress = staticmethod(stored)
    decompress = staticmethod(zlib.decompress)


def install() -> None:
    """Make pysyncobj send Raft messages uncompressed (idempotent)."""
    import pysyncobj.tcp_connection as tcp_connection

    tcp_connection.zlib = _PlainZlib
