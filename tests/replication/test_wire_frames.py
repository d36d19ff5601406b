"""Raft messages travel as stored (uncompressed) zlib frames that any zlib reader accepts."""

from __future__ import annotations

import os
import pickle
import zlib

import pysyncobj.tcp_connection as tcp_connection
import pytest

from orchestrator.replication import wire_frames


@pytest.mark.parametrize("size", [0, 1, 1000, 65_535, 65_536, 200_000])
def test_a_stored_frame_is_a_zlib_stream_of_the_data(size: int) -> None:
    data = os.urandom(size // 2) + b"a" * (size - size // 2)
    frame = wire_frames.stored(data, 3)
    assert zlib.decompress(frame) == data
    # Stored, not compressed: the data plus 2 header bytes, 5 per 65 535-byte block and 4 of
    # checksum, even for the half that deflate would shrink.
    blocks = max(1, -(-size // 65_535))
    assert len(frame) == size + 2 + 5 * blocks + 4


def test_a_damaged_frame_is_refused() -> None:
    frame = bytearray(wire_frames.stored(b"append_entries" * 10))
    frame[10] ^= 0x01
    with pytest.raises(zlib.error):
        zlib.decompress(bytes(frame))


def test_pysyncobj_sends_stored_frames_and_reads_compressed_ones_too() -> None:
    wire_frames.install()
    message = pickle.dumps({"type": "append_entries", "entries": [(b"x" * 500, 7, 1)]})
    sent = tcp_connection.zlib.compress(message, 3)
    assert len(sent) > len(message), "not compressed"
    assert tcp_connection.zlib.decompress(sent) == message
    # A replica without this change still compresses; what it sends is read the same way.
    assert tcp_connection.zlib.decompress(zlib.compress(message, 3)) == message
