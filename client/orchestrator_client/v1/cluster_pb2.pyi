from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClusterSettings(_message.Message):
    __slots__ = ("history_retention_ms", "history_max_workflows")
    HISTORY_RETENTION_MS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_MAX_WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    history_retention_ms: int
    history_max_workflows: int
    def __init__(self, history_retention_ms: _Optional[int] = ..., history_max_workflows: _Optional[int] = ...) -> None: ...

class SetHistoryRetentionRequest(_message.Message):
    __slots__ = ("request_id", "retention_ms", "max_workflows")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RETENTION_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    retention_ms: int
    max_workflows: int
    def __init__(self, request_id: _Optional[str] = ..., retention_ms: _Optional[int] = ..., max_workflows: _Optional[int] = ...) -> None: ...

class SetHistoryRetentionResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: ClusterSettings
    def __init__(self, settings: _Optional[_Union[ClusterSettings, _Mapping]] = ...) -> None: ...

class GetClusterSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClusterSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: ClusterSettings
    def __init__(self, settings: _Optional[_Union[ClusterSettings, _Mapping]] = ...) -> None: ...

class AddReplicaRequest(_message.Message):
    __slots__ = ("request_id", "node_id", "raft_address", "grpc_address")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    node_id: str
    raft_address: str
    grpc_address: str
    def __init__(self, request_id: _Optional[str] = ..., node_id: _Optional[str] = ..., raft_address: _Optional[str] = ..., grpc_address: _Optional[str] = ...) -> None: ...

class AddReplicaResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoveReplicaRequest(_message.Message):
    __slots__ = ("request_id", "node_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    node_id: str
    def __init__(self, request_id: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class RemoveReplicaResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetReplicaStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("node_id", "role", "term", "applied_sequence", "grpc_address", "raft_address", "leader_id", "leader_grpc_address", "commit_index", "raft_log_length", "serving", "detail", "cluster_time_ms", "workflows", "applied_hash")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    RAFT_LOG_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_HASH_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: str
    term: int
    applied_sequence: int
    grpc_address: str
    raft_address: str
    leader_id: str
    leader_grpc_address: str
    commit_index: int
    raft_log_length: int
    serving: bool
    detail: str
    cluster_time_ms: int
    workflows: int
    applied_hash: str
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[str] = ..., term: _Optional[int] = ..., applied_sequence: _Optional[int] = ..., grpc_address: _Optional[str] = ..., raft_address: _Optional[str] = ..., leader_id: _Optional[str] = ..., leader_grpc_address: _Optional[str] = ..., commit_index: _Optional[int] = ..., raft_log_length: _Optional[int] = ..., serving: _Optional[bool] = ..., detail: _Optional[str] = ..., cluster_time_ms: _Optional[int] = ..., workflows: _Optional[int] = ..., applied_hash: _Optional[str] = ...) -> None: ...

class GetClusterStatusResponse(_message.Message):
    __slots__ = ("replicas", "leader_id")
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    leader_id: str
    def __init__(self, replicas: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ..., leader_id: _Optional[str] = ...) -> None: ...
