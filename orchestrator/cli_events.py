"""The `orchestrator events` commands: publish to the replicated event log, read it, manage the
event handlers, and follow it with a consumer group (docs/events.md)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .cli import _client, _load_json_arg, _print
from .cli_ops import duration_ms

# How long `events read --follow` sleeps when it has caught up with the log.
FOLLOW_POLL_S = 0.5


def cmd_publish(ns: argparse.Namespace) -> int:
    payload = _load_json_arg(ns.payload, "--payload") if ns.payload else {}
    if not isinstance(payload, dict):
        raise SystemExit("--payload: a JSON object is expected")
    extra: dict[str, Any] = {}
    # Only sent when asked for, so the command also works with a client without buffering.
    if ns.ttl:
        extra["ttl_ms"] = ns.ttl
    with _client(ns) as c:
        offset = c.publish_event(
            ns.name,
            payload,
            ns.correlation_key,
            request_id=ns.request_id or None,
            **extra,
        )
    print(offset)
    return 0


def _line(event: dict[str, Any]) -> str:
    key = f"  key={event['correlation_key']}" if event.get("correlation_key") else ""
    payload = json.dumps(event.get("payload", {}), separators=(",", ":"), sort_keys=True)
    actions = event.get("actions") or []
    failed = sum(1 for a in actions if a.get("code", "OK") != "OK")
    done = (
        f"  actions={len(actions)}" + (f" ({failed} failed)" if failed else "") if actions else ""
    )
    return f"{event['offset']:>8}  {event['name']}{key}  {payload}{done}"


def _show(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(event, separators=(",", ":"), default=str), flush=True)
    else:
        print(_line(event), flush=True)


def cmd_read(ns: argparse.Namespace) -> int:
    """Reads the log from --from; with --follow, keeps polling for new events until Ctrl-C (a
    plain reader: no consumer group, nothing acknowledged)."""
    wanted = set(ns.event or ())
    shown = 0
    next_offset = ns.from_offset
    with _client(ns) as c:
        while True:
            page = c.read_events(next_offset, ns.page_size)
            for event in page:
                next_offset = int(event["offset"]) + 1
                if wanted and event["name"] not in wanted:
                    continue
                _show(event, ns.json)
                shown += 1
                if ns.limit and shown >= ns.limit:
                    return 0
            if page:
                continue
            if not ns.follow:
                return 0
            time.sleep(FOLLOW_POLL_S)


def cmd_handlers(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        if ns.action == "list":
            handlers = c.list_event_handlers()
            if ns.json:
                _print(handlers)
                return 0
            for h in handlers:
                state = "" if h.get("active", True) else "  (inactive)"
                kinds = ",".join(str(a.get("action", "?")) for a in h.get("actions", []))
                print(f"{h['name']}  on {h['event']}  -> {kinds}{state}")
        elif ns.action == "register":
            if not ns.targets:
                raise SystemExit("events handlers register: name one or more JSON files")
            for path in ns.targets:
                doc = _load_json_arg("@" + path, path)
                for handler in doc if isinstance(doc, list) else [doc]:
                    name = c.register_event_handler(handler, overwrite=ns.overwrite)
                    print(f"registered event handler {name}")
        else:
            if not ns.targets:
                raise SystemExit("events handlers remove: name one or more handlers")
            for name in ns.targets:
                c.remove_event_handler(name)
                print(f"removed event handler {name}")
    return 0


def cmd_subscribe(ns: argparse.Namespace) -> int:
    """Follows the log as a member of a durable consumer group: each event is acknowledged after
    it is printed, so a restart resumes after the last one shown (at least once)."""
    with _client(ns) as c:
        stream = c.subscribe_events(
            ns.group, from_offset=ns.from_offset, names=list(ns.event or ()), auto_ack=False
        )
        with stream:
            for shown, event in enumerate(stream, 1):
                _show(dict(event), ns.json)
                event.ack()
                if ns.limit and shown >= ns.limit:
                    break
    return 0


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "events",
        help="publish, read and follow events; manage event handlers",
        description="The replicated event log (docs/events.md).",
    )
    ev = s.add_subparsers(dest="events_command", required=True, metavar="EVENTS_COMMAND")

    p = ev.add_parser(
        "publish",
        help="append an event and print its offset",
        description="Append an event to the replicated log; the matching handlers act on it "
        "and waiting WAIT_FOR_EVENT tasks with its name and correlation key complete.",
    )
    p.add_argument("name")
    p.add_argument("--payload", help="JSON object, or @file.json")
    p.add_argument("--correlation-key", default="")
    p.add_argument(
        "--ttl",
        type=duration_ms,
        default=0,
        help="keep the event for a WAIT_FOR_EVENT task that starts waiting later (e.g. 10m)",
    )
    p.add_argument(
        "--request-id", default="", help="idempotency id: a retry returns the first offset"
    )
    p.set_defaults(fn=cmd_publish)

    p = ev.add_parser(
        "read",
        help="print events from an offset, oldest first",
        description="Print the events from --from on (only the newest are kept: see "
        "docs/events.md); --follow keeps printing new ones until Ctrl-C.",
    )
    _reader_flags(p)
    p.add_argument("--page-size", type=int, default=100, help="events per call (at most 1000)")
    p.add_argument("--follow", action="store_true", help="keep polling for new events")
    p.set_defaults(fn=cmd_read)

    p = ev.add_parser(
        "handlers",
        help="list, register or remove event handlers",
        description="list; register FILE... (a handler or a list of handlers per JSON file); "
        "remove NAME...",
    )
    p.add_argument("action", choices=["list", "register", "remove"])
    p.add_argument("targets", nargs="*", metavar="FILE|NAME")
    p.add_argument("--overwrite", action="store_true", help="register: replace one of that name")
    p.add_argument("--json", action="store_true", help="list: the handlers as JSON")
    p.set_defaults(fn=cmd_handlers)

    p = ev.add_parser(
        "subscribe",
        help="follow the log with a durable consumer group",
        description="Stream events as a member of a consumer group, acknowledging each after "
        "it is printed: a restart resumes after the last acknowledged one.",
    )
    p.add_argument("--group", required=True, help="consumer group name")
    _reader_flags(p)
    p.set_defaults(fn=cmd_subscribe)


def _reader_flags(p: argparse.ArgumentParser) -> None:
    """The flags `read` and `subscribe` share."""
    p.add_argument("--from", dest="from_offset", type=int, default=0, help="first offset")
    p.add_argument("--event", action="append", help="only events of this name (repeatable)")
    p.add_argument("--limit", type=int, default=0, help="stop after this many (0: no bound)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
