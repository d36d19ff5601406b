"""The undo journal: a command is applied whole or not at all.

Appliers are the only writers of the state, and each write they make records its inverse here
first (an entry is a tuple: a function and its arguments). The engine drops the journal when a
command ends and replays it backwards when one raises, so an exception anywhere in a command
(a bug, a RecursionError) leaves the state exactly as before the command, on every replica
alike. Entries are plain tuples appended to a list, because a task's lifecycle makes some
thirty writes and the journal must cost little next to apply itself.

Dict order is part of the state (queues are FIFO, workflows are listed in start order), so a
deleted key is put back at its old position. Finding it is a scan (`operator.indexOf`, in C);
deletions are mostly of the oldest entries (a queue's head, the oldest terminal workflow, the
oldest request), which sit near the front. Timers are the exception: their order means nothing
(the heap orders them, snapshots write them sorted), so a cleared timer is put back at the end.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from typing import Any

# The value of a key that was absent: putting it back deletes the key.
MISSING: Any = object()

Undo = list[tuple[Any, ...]]


def put_back(d: dict[Any, Any], key: Any, old: Any) -> None:
    """The inverse of `d[key] = value` where d[key] was `old` (in place: the key kept its
    position) or MISSING."""
    if old is MISSING:
        d.pop(key, None)
    else:
        d[key] = old


def set_key(u: Undo, d: dict[Any, Any], key: Any, value: Any) -> None:
    u.append((put_back, d, key, d.get(key, MISSING)))
    d[key] = value


def pop_key(u: Undo, d: dict[Any, Any], key: Any) -> Any:
    """d.pop(key, None), journaled so that a rollback puts the key back where it was."""
    if key not in d:
        return None
    index = operator.indexOf(d, key)
    value = d.pop(key)
    u.append((insert_at, d, key, value, index))
    return value


def insert_at(d: dict[Any, Any], key: Any, value: Any, index: int) -> None:
    if index >= len(d):
        d[key] = value
    elif index == 0 and isinstance(d, OrderedDict):
        d[key] = value
        d.move_to_end(key, last=False)
    else:  # rebuilt in place: the dict object stays the one others hold
        items = list(d.items())
        items.insert(index, (key, value))
        d.clear()
        d.update(items)


def restore(obj: Any, names: tuple[str, ...], values: tuple[Any, ...]) -> None:
    """The inverse of setting several attributes of one record."""
    for name, value in zip(names, values, strict=True):
        setattr(obj, name, value)


def update(u: Undo, d: dict[Any, Any], values: dict[Any, Any]) -> None:
    """d.update(values), journaled key by key (new keys go, changed ones get their old value)."""
    for key, value in values.items():
        u.append((put_back, d, key, d.get(key, MISSING)))
        d[key] = value


def rollback(u: Undo, mark: int = 0) -> None:
    """Undo every write journaled after `mark`, newest first."""
    while len(u) > mark:
        entry = u.pop()
        entry[0](*entry[1:])
