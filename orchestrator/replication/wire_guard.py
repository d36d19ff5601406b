"""Limits on what a Raft connection may make the tick thread buffer.

pysyncobj 0.3.17's TcpConnection reads everything a socket has into one buffer, then cuts
frames out of it by their 4-byte length prefix, on the tick thread that also sends heartbeats
and applies entries. Nothing bounds either: a stranger who sent a 2**31 length prefix followed
by 32 MiB had the tick thread concatenating bytes (quadratically) for long enough that the
followers' election timeouts ran out, before a single byte had been authenticated.

`install()` patches TcpConnection's read and parse steps (as wire_frames.py replaces its zlib):

- A connection that has not yet delivered a message that decrypts with the cluster's password
  (wire_crypto.py verifies every message) may send at most `preauth_budget_bytes` (64 KiB; a
  legitimate peer's key exchange and address take well under 1 KiB), and no frame longer than
  that budget; beyond either it is closed.
- An authenticated connection may not announce a frame over `max_frame_bytes`, and reading
  stops (until the next poll) once that much is buffered, so the buffer stays bounded whatever
  a peer sends.

The largest legitimate frame is an AppendEntries: entries up to pysyncobj's batch size (twice
`batch_max_bytes`) plus the entry that crosses it, and one entry is at most one command that
arrived in a gRPC request of at most 4 MiB (a longer single entry is sent in batch-size chunks;
snapshots go in chunks too). Measured: a 4 MiB request's entry travels in frames of about 4.2
MiB (tests/replication/test_raft_port.py); the default maximum, 16 MiB, leaves room for that.
Both limits are Raft settings (settings.py), set per connection by raft_fixes.FixedTransport.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("replication")

_LENGTH = struct.Struct("i")  # pysyncobj's frame prefix: a native signed int


@dataclass(frozen=True)
class FrameLimits:
    max_frame_bytes: int = 16 * 1024 * 1024
    preauth_budget_bytes: int = 64 * 1024


DEFAULT_LIMITS = FrameLimits()


class _Guard:
    """Per connection: its limits, and what it sent before it authenticated."""

    __slots__ = ("authenticated", "limits", "preauth_bytes")

    def __init__(self, limits: FrameLimits) -> None:
        self.limits = limits
        self.authenticated = False
        self.preauth_bytes = 0


def set_limits(conn: Any, limits: FrameLimits) -> None:
    """The limits of one connection (before it reads anything)."""
    conn._orch_guard = _Guard(limits)


def _guard(conn: Any) -> _Guard:
    guard: _Guard | None = getattr(conn, "_orch_guard", None)
    if guard is None:
        guard = conn._orch_guard = _Guard(DEFAULT_LIMITS)
    return guard


def _close(conn: Any, why: str, **detail: Any) -> bool:
    log.warning("raft_connection_closed", reason=why, **detail)
    conn.disconnect()
    return False


def _within_limits(conn: Any, received: int) -> bool:
    """After a read of `received` bytes: whether to read on (False also after closing)."""
    guard = _guard(conn)
    buffer = conn._TcpConnection__readBuffer
    limits = guard.limits
    cap = limits.max_frame_bytes
    if not guard.authenticated:
        cap = limits.preauth_budget_bytes
        guard.preauth_bytes += received
        if guard.preauth_bytes > cap:
            return _close(conn, "unauthenticated bytes over budget", budget=cap)
    if len(buffer) >= _LENGTH.size:
        length = _LENGTH.unpack_from(buffer)[0]
        if not 0 <= length <= cap:
            what = "frame" if guard.authenticated else "unauthenticated frame"
            return _close(conn, f"{what} over the limit", length=length, limit=cap)
        if not guard.authenticated and len(buffer) >= _LENGTH.size + length:
            return False  # parse (and so authenticate) the first frame before reading more
    # Read on while what is buffered could still be one frame; then parse what is whole.
    return len(buffer) <= _LENGTH.size + cap


def install() -> None:
    """Patch pysyncobj's TcpConnection (idempotent)."""
    from pysyncobj.tcp_connection import TcpConnection

    if getattr(TcpConnection, "_orch_guarded", False):
        return
    read = TcpConnection._TcpConnection__processRead
    parse = TcpConnection._TcpConnection__processParseMessage
    disconnect = TcpConnection.disconnect

    def process_read(self: Any) -> bool:
        before = len(self._TcpConnection__readBuffer)
        if not read(self):
            return False
        return _within_limits(self, len(self._TcpConnection__readBuffer) - before)

    def process_parse_message(self: Any) -> Any:
        message = parse(self)
        if message is not None:
            # pysyncobj returns a message only once it decrypted and verified (wire_crypto).
            _guard(self).authenticated = True
        return message

    def reset_and_disconnect(self: Any) -> None:
        # An outgoing connection object is reused for the next connect: it starts unknown.
        guard: _Guard | None = getattr(self, "_orch_guard", None)
        if guard is not None:
            guard.authenticated, guard.preauth_bytes = False, 0
        disconnect(self)

    TcpConnection.disconnect = reset_and_disconnect
    TcpConnection._TcpConnection__processRead = process_read
    TcpConnection._TcpConnection__processParseMessage = process_parse_message
    TcpConnection._orch_guarded = True
