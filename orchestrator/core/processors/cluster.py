"""The cluster: leader epochs (a new leader's first entry), members added or removed at run
time, and cluster settings (the durable history's retention)."""

from __future__ import annotations

from typing import Any

from .. import events as E
from .. import limits
from ..commands import LeaderEpoch, Noop, RemoveMember, SetHistoryRetention, SetMember
from ..context import Ctx
from ..errors import already_exists, invalid, not_found
from . import retention

JSON = Any


def leader_epoch(ctx: Ctx, cmd: LeaderEpoch) -> dict[str, JSON]:
    st = ctx.st
    if cmd.term > st.epoch:
        ctx.emit(E.EpochRaised(cmd.term))
        # Parked polls were waiting on the old leader's gRPC calls: they must not capture tasks.
        # Their callers get UNAVAILABLE there and retry (same request id) on the new leader.
        for rid in list(st.parked):
            ctx.emit(E.PollSettled(rid))
    ctx.fx.timers_changed = True
    return {"epoch": st.epoch}


def noop(ctx: Ctx, cmd: Noop) -> dict[str, JSON]:
    return {}


def set_member(ctx: Ctx, cmd: SetMember) -> dict[str, JSON]:
    for name, value in (("node_id", cmd.node_id), ("raft", cmd.raft), ("grpc", cmd.grpc)):
        if not value or len(value) > limits.MAX_NAME_LENGTH:
            raise invalid(f"{name}: required, at most {limits.MAX_NAME_LENGTH} characters")
    members = _members(ctx, cmd.configured)
    for nid, (raft, grpc) in members.items():
        if nid == cmd.node_id:
            continue
        if cmd.raft == raft:
            raise already_exists(f"raft address {cmd.raft} belongs to member {nid}")
        if cmd.grpc == grpc:
            raise already_exists(f"grpc address {cmd.grpc} belongs to member {nid}")
    row = ctx.st.members.get(cmd.node_id)
    if row is None:
        at = members[cmd.node_id][0] if cmd.node_id in members else cmd.configured_raft
    else:
        at = "" if row.removed else row.raft
    if at and at != cmd.raft:
        raise already_exists(f"replica {cmd.node_id} is a member at {at}; remove it first")
    ctx.emit(E.MemberSet(cmd.node_id, cmd.raft, cmd.grpc))
    return {}


def remove_member(ctx: Ctx, cmd: RemoveMember) -> dict[str, JSON]:
    if not cmd.node_id:
        raise invalid("node_id: required")
    if cmd.configured and cmd.node_id not in _members(ctx, cmd.configured):
        raise not_found(f"replica {cmd.node_id} is not a member")
    ctx.emit(E.MemberRemoved(cmd.node_id))
    return {}


def _members(ctx: Ctx, configured: JSON) -> dict[str, tuple[str, str]]:
    """node id -> (raft, grpc) of every current member: the proposer's configured replicas, with
    the member table's additions and removals over them (as Replica.members() on the leader)."""
    if not isinstance(configured, list) or len(configured) > limits.MAX_MEMBERS:
        raise invalid(f"configured: a list of at most {limits.MAX_MEMBERS} members")
    out: dict[str, tuple[str, str]] = {}
    for entry in configured:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise invalid("configured: each member is [node_id, raft, grpc]")
        if not all(isinstance(part, str) for part in entry):
            raise invalid("configured: each member is [node_id, raft, grpc]")
        out[entry[0]] = (entry[1], entry[2])
    for nid, m in ctx.st.members.items():
        if m.removed:
            out.pop(nid, None)
        else:
            out[nid] = (m.raft, m.grpc)
    return out


def set_history_retention(ctx: Ctx, cmd: SetHistoryRetention) -> dict[str, JSON]:
    """Archived workflows are kept retention_ms after they ended and, with max_workflows > 0,
    at most that many (the oldest go first). Applied to the history at once."""
    if not 1 <= cmd.retention_ms <= limits.MAX_HISTORY_RETENTION_MS:
        raise invalid(f"retention_ms: between 1 and {limits.MAX_HISTORY_RETENTION_MS}")
    if not 0 <= cmd.max_workflows <= limits.MAX_HISTORY_WORKFLOWS:
        raise invalid(f"max_workflows: between 0 (no bound) and {limits.MAX_HISTORY_WORKFLOWS}")
    ctx.emit(E.HistorySettingsSet(cmd.retention_ms, cmd.max_workflows))
    retention.expire(ctx)
    return retention.settings(ctx)
