"""Which role may call which RPC: the one permission table, checked against the descriptors.

Roles are not a hierarchy (a worker may not read workflows, a reader may not poll): each RPC
lists the roles allowed to call it. Admin is in every entry. The table is keyed by the RPC's
gRPC path; every method of every service in api/rpc.SERVICES must have an entry, or this module
fails to import (so an RPC added to a proto cannot go unguarded). An RPC outside these services
is refused unless it is in OPEN (the health check, which probes call without credentials).
"""

from __future__ import annotations

from typing import Final

from ..api.rpc import SERVICES

ADMIN: Final = "admin"
OPERATOR: Final = "operator"
WORKER: Final = "worker"
READER: Final = "reader"
ROLES: Final = (ADMIN, OPERATOR, WORKER, READER)

_ANY = frozenset(ROLES)
_ADMIN = frozenset({ADMIN})
_OPERATE = frozenset({ADMIN, OPERATOR})
_WORK = frozenset({ADMIN, WORKER})
_READ = frozenset({ADMIN, OPERATOR, READER})

# (service, method) -> roles; read by docs/security.md's table (tests keep the two equal).
_BY_METHOD: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("DefinitionService", "RegisterWorkflowDef"): _ADMIN,
    ("DefinitionService", "RegisterTaskDefs"): _ADMIN,
    ("DefinitionService", "GetWorkflowDef"): _READ,
    ("DefinitionService", "ListWorkflowDefs"): _READ,
    ("DefinitionService", "GetTaskDef"): _READ,
    ("DefinitionService", "ListTaskDefs"): _READ,
    ("WorkflowService", "StartWorkflow"): _OPERATE,
    ("WorkflowService", "StartWorkflows"): _OPERATE,
    ("WorkflowService", "TerminateWorkflow"): _OPERATE,
    ("WorkflowService", "GetWorkflow"): _READ,
    ("WorkflowService", "ListWorkflows"): _READ,
    ("WorkflowService", "SearchWorkflows"): _READ,
    ("WorkflowService", "PauseWorkflow"): _OPERATE,
    ("WorkflowService", "ResumeWorkflow"): _OPERATE,
    ("WorkflowService", "RestartWorkflow"): _OPERATE,
    ("WorkflowService", "RetryWorkflow"): _OPERATE,
    ("WorkflowService", "RerunWorkflow"): _OPERATE,
    ("WorkflowService", "SkipTask"): _OPERATE,
    ("WorkflowService", "RemoveWorkflow"): _OPERATE,
    ("WorkflowService", "CompensateWorkflow"): _OPERATE,
    ("WorkflowService", "BulkAction"): _OPERATE,
    ("WorkflowService", "ExecuteWorkflow"): _OPERATE,
    ("TaskService", "PollTasks"): _WORK,
    ("TaskService", "CompleteTask"): _WORK,
    ("TaskService", "CompleteTasks"): _WORK,
    ("TaskService", "FailTask"): _WORK,
    ("TaskService", "HeartbeatTask"): _WORK,
    ("ClusterService", "GetClusterStatus"): _ANY,
    ("ClusterService", "GetReplicaStatus"): _ANY,
    ("ClusterService", "AddReplica"): _ADMIN,
    ("ClusterService", "RemoveReplica"): _ADMIN,
    ("ClusterService", "SetHistoryRetention"): _ADMIN,
    ("ClusterService", "GetClusterSettings"): _READ,
    ("EventService", "PublishEvent"): _OPERATE,
    ("EventService", "RegisterEventHandler"): _ADMIN,
    ("EventService", "RemoveEventHandler"): _ADMIN,
    ("EventService", "ListEventHandlers"): _READ,
    ("EventService", "ReadEvents"): _READ,
    ("SubscriptionService", "SubscribeEvents"): _READ,
    ("SubscriptionService", "WatchWorkflows"): _READ,
    ("SubscriptionService", "GetConsumerGroup"): _READ,
    # Moves a group's offset: the role that publishes (an ack is a write to the log's readers).
    ("SubscriptionService", "Ack"): _OPERATE,
}

# Replica-to-replica RPCs, outside api/rpc.SERVICES: only the replica credential calling for
# itself (no asserted caller; api/auth.py) holds this role, which no token can have.
REPLICA_ROLE: Final = "replica"
INTERNAL: Final[dict[str, frozenset[str]]] = {
    "/orchestrator.v1.HistorySyncService/CopyHistory": frozenset({REPLICA_ROLE}),
}

# Open to every caller, authenticated or not.
OPEN: Final = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
# Server reflection tells the API's shape, nothing of its data: any authenticated role.
REFLECTION_PREFIX: Final = "/grpc.reflection."


def _table() -> dict[str, frozenset[str]]:
    table: dict[str, frozenset[str]] = {}
    described: set[tuple[str, str]] = set()
    for service in SERVICES:
        for method in service.methods:
            key = (service.name, method.name)
            described.add(key)
            if key not in _BY_METHOD:
                raise RuntimeError(f"no permission entry for {service.name}.{method.name}")
            table[f"/{service.full_name}/{method.name}"] = _BY_METHOD[key]
    stale = sorted(set(_BY_METHOD) - described)
    if stale:
        raise RuntimeError(f"permission entries for RPCs that do not exist: {stale}")
    return table


PERMISSIONS: Final[dict[str, frozenset[str]]] = _table()


def allowed_roles(path: str) -> frozenset[str]:
    """The roles that may call the RPC at `path` (empty: nobody; see OPEN for the exceptions)."""
    if path.startswith(REFLECTION_PREFIX):
        return _ANY
    return PERMISSIONS.get(path) or INTERNAL.get(path, frozenset())


def method_name(path: str) -> str:
    """`Service.Method` of a gRPC path, for messages."""
    service, _, method = path.strip("/").partition("/")
    return f"{service.rpartition('.')[2]}.{method}"
