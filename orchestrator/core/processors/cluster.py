"""The cluster: leader epochs (a new leader's first entry) and members added or removed at run
time."""

from __future__ import annotations

from typing import Any

from .. import events as E
from .. import limits
from ..commands import LeaderEpoch, Noop, RemoveMember, SetMember
from ..context import Ctx
from ..errors import already_exists, invalid

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
    for nid, m in ctx.st.members.items():
        if nid != cmd.node_id and not m.removed and cmd.raft == m.raft:
            raise already_exists(f"raft address {cmd.raft} belongs to member {nid}")
    row = ctx.st.members.get(cmd.node_id)
    at = cmd.configured_raft if row is None else ("" if row.removed else row.raft)
    if at and at != cmd.raft:
        raise already_exists(f"replica {cmd.node_id} is a member at {at}; remove it first")
    ctx.emit(E.MemberSet(cmd.node_id, cmd.raft, cmd.grpc))
    return {}


def remove_member(ctx: Ctx, cmd: RemoveMember) -> dict[str, JSON]:
    if not cmd.node_id:
        raise invalid("node_id: required")
    ctx.emit(E.MemberRemoved(cmd.node_id))
    return {}
