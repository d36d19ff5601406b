"""Which replica a call tries first, and which next after a retryable failure.

The next call starts at the address that last answered (sticky: possibly a leader hint outside
the configured list), else at the configured address the rotation points at. Within one call a
fresh leader hint is followed at once; otherwise the call moves on through the rotation.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

__all__ = ["Route", "Router", "parse_addresses"]


def parse_addresses(addresses: Sequence[str] | str) -> tuple[str, ...]:
    raw = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    seen: dict[str, None] = {}
    for item in raw:
        address = item.strip()
        if address:
            seen.setdefault(address, None)
    if not seen:
        raise ValueError("at least one replica address (host:port) is required")
    return tuple(seen)


class Router:
    """The routing state a client's calls share: the sticky address and the rotation."""

    def __init__(self, addresses: tuple[str, ...]) -> None:
        self.addresses = addresses
        self._lock = threading.Lock()
        self._sticky: str | None = None
        self._rr = 0

    def route(self, pinned_address: str | None) -> Route:
        """The way of one call; a pinned call tries its address only."""
        if pinned_address is not None:
            return Route(self, pinned_address, 0, True)
        with self._lock:
            sticky = self._sticky
            pos = self._rr
        if sticky is None:
            return Route(self, self.addresses[pos], pos, False)
        if sticky in self.addresses:
            # Keep the rotation aligned with the sticky address so a failure moves past it.
            pos = self.addresses.index(sticky)
        return Route(self, sticky, pos, False)

    def _failed(self, address: str, pos: int) -> int:
        """Forgets a failed address and returns the rotation position to try next."""
        if address == self.addresses[pos]:
            pos = (pos + 1) % len(self.addresses)
        with self._lock:
            if self._sticky == address:
                self._sticky = None
            self._rr = pos
        return pos


class Route:
    """Where the attempts of one call go; ``address`` is that of the current attempt."""

    __slots__ = ("_followed", "_pinned", "_pos", "_router", "address")

    def __init__(self, router: Router, address: str, pos: int, pinned: bool) -> None:
        self._router = router
        self.address = address
        self._pos = pos
        self._pinned = pinned
        self._followed: set[str] | None = None  # leader hints followed in this call

    def answered(self) -> None:
        """The replica answered (a response or a definite error): later calls start there."""
        if not self._pinned:
            router = self._router
            with router._lock:
                router._sticky = self.address
                router._rr = self._pos

    def next_address(self, leader_hint: str | None) -> tuple[str | None, bool]:
        """After a retryable failure at ``address``: the address to retry at (None for a pinned
        call) and whether it is a fresh leader hint, worth trying without a pause."""
        if self._pinned:
            return None, False
        self._pos = self._router._failed(self.address, self._pos)
        hint = leader_hint.strip() if leader_hint else None
        followed = self._followed
        if hint and hint != self.address and (followed is None or hint not in followed):
            # A fresh redirect is worth following at once; a hint already followed in this
            # call is stale (e.g. mid-election) and gets the normal rotation.
            if followed is None:
                followed = self._followed = set()
            followed.add(hint)
            return hint, True
        return self._router.addresses[self._pos], False
