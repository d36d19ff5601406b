from orchestrator_client.v1 import workflows_pb2 as _workflows_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PollTasksRequest(_message.Message):
    __slots__ = ("request_id", "task_type", "worker_id", "count", "timeout_ms", "domain")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task_type: str
    worker_id: str
    count: int
    timeout_ms: int
    domain: str
    def __init__(self, request_id: _Optional[str] = ..., task_type: _Optional[str] = ..., worker_id: _Optional[str] = ..., count: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., domain: _Optional[str] = ...) -> None: ...

class PollTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_workflows_pb2.Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_workflows_pb2.Task, _Mapping]]] = ...) -> None: ...

class CompleteTaskRequest(_message.Message):
    __slots__ = ("request_id", "task_id", "output_json", "worker_id", "workflow_id", "reference_task_name")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task_id: str
    output_json: str
    worker_id: str
    workflow_id: str
    reference_task_name: str
    def __init__(self, request_id: _Optional[str] = ..., task_id: _Optional[str] = ..., output_json: _Optional[str] = ..., worker_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., reference_task_name: _Optional[str] = ...) -> None: ...

class CompleteTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CompleteTasksRequest(_message.Message):
    __slots__ = ("items", "polls")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    POLLS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CompleteTaskRequest]
    polls: _containers.RepeatedCompositeFieldContainer[PollTasksRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[CompleteTaskRequest, _Mapping]]] = ..., polls: _Optional[_Iterable[_Union[PollTasksRequest, _Mapping]]] = ...) -> None: ...

class ItemStatus(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CompleteTasksResponse(_message.Message):
    __slots__ = ("statuses", "polled")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    POLLED_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedCompositeFieldContainer[ItemStatus]
    polled: _containers.RepeatedCompositeFieldContainer[PollTasksResponse]
    def __init__(self, statuses: _Optional[_Iterable[_Union[ItemStatus, _Mapping]]] = ..., polled: _Optional[_Iterable[_Union[PollTasksResponse, _Mapping]]] = ...) -> None: ...

class FailTaskRequest(_message.Message):
    __slots__ = ("request_id", "task_id", "reason", "terminal", "output_json", "worker_id", "workflow_id", "reference_task_name")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task_id: str
    reason: str
    terminal: bool
    output_json: str
    worker_id: str
    workflow_id: str
    reference_task_name: str
    def __init__(self, request_id: _Optional[str] = ..., task_id: _Optional[str] = ..., reason: _Optional[str] = ..., terminal: _Optional[bool] = ..., output_json: _Optional[str] = ..., worker_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., reference_task_name: _Optional[str] = ...) -> None: ...

class FailTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeartbeatTaskRequest(_message.Message):
    __slots__ = ("request_id", "task_id", "worker_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task_id: str
    worker_id: str
    def __init__(self, request_id: _Optional[str] = ..., task_id: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class HeartbeatTaskResponse(_message.Message):
    __slots__ = ("lease_expires_ms",)
    LEASE_EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    lease_expires_ms: int
    def __init__(self, lease_expires_ms: _Optional[int] = ...) -> None: ...
