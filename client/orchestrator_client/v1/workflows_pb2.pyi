from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKFLOW_STATUS_UNSPECIFIED: _ClassVar[WorkflowStatus]
    WORKFLOW_STATUS_RUNNING: _ClassVar[WorkflowStatus]
    WORKFLOW_STATUS_COMPLETED: _ClassVar[WorkflowStatus]
    WORKFLOW_STATUS_FAILED: _ClassVar[WorkflowStatus]
    WORKFLOW_STATUS_TERMINATED: _ClassVar[WorkflowStatus]
    WORKFLOW_STATUS_TIMED_OUT: _ClassVar[WorkflowStatus]
    WORKFLOW_STATUS_PAUSED: _ClassVar[WorkflowStatus]

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_SCHEDULED: _ClassVar[TaskStatus]
    TASK_STATUS_IN_PROGRESS: _ClassVar[TaskStatus]
    TASK_STATUS_COMPLETED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED_WITH_TERMINAL_ERROR: _ClassVar[TaskStatus]
    TASK_STATUS_TIMED_OUT: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELED: _ClassVar[TaskStatus]
    TASK_STATUS_COMPLETED_WITH_ERRORS: _ClassVar[TaskStatus]
    TASK_STATUS_SKIPPED: _ClassVar[TaskStatus]

class IdempotencyStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IDEMPOTENCY_STRATEGY_UNSPECIFIED: _ClassVar[IdempotencyStrategy]
    IDEMPOTENCY_STRATEGY_FAIL: _ClassVar[IdempotencyStrategy]
    IDEMPOTENCY_STRATEGY_RETURN_EXISTING: _ClassVar[IdempotencyStrategy]
    IDEMPOTENCY_STRATEGY_FAIL_ON_RUNNING: _ClassVar[IdempotencyStrategy]
WORKFLOW_STATUS_UNSPECIFIED: WorkflowStatus
WORKFLOW_STATUS_RUNNING: WorkflowStatus
WORKFLOW_STATUS_COMPLETED: WorkflowStatus
WORKFLOW_STATUS_FAILED: WorkflowStatus
WORKFLOW_STATUS_TERMINATED: WorkflowStatus
WORKFLOW_STATUS_TIMED_OUT: WorkflowStatus
WORKFLOW_STATUS_PAUSED: WorkflowStatus
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_SCHEDULED: TaskStatus
TASK_STATUS_IN_PROGRESS: TaskStatus
TASK_STATUS_COMPLETED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_FAILED_WITH_TERMINAL_ERROR: TaskStatus
TASK_STATUS_TIMED_OUT: TaskStatus
TASK_STATUS_CANCELED: TaskStatus
TASK_STATUS_COMPLETED_WITH_ERRORS: TaskStatus
TASK_STATUS_SKIPPED: TaskStatus
IDEMPOTENCY_STRATEGY_UNSPECIFIED: IdempotencyStrategy
IDEMPOTENCY_STRATEGY_FAIL: IdempotencyStrategy
IDEMPOTENCY_STRATEGY_RETURN_EXISTING: IdempotencyStrategy
IDEMPOTENCY_STRATEGY_FAIL_ON_RUNNING: IdempotencyStrategy

class Task(_message.Message):
    __slots__ = ("task_id", "task_type", "reference_task_name", "workflow_id", "workflow_type", "status", "input_json", "output_json", "retry_count", "poll_count", "scheduled_time_ms", "start_time_ms", "end_time_ms", "reason_for_incompletion", "worker_id", "response_timeout_seconds", "lease_expires_ms", "seq", "retried_task_id", "correlation_id", "domain")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    POLL_COUNT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FOR_INCOMPLETION_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RETRIED_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_type: str
    reference_task_name: str
    workflow_id: str
    workflow_type: str
    status: TaskStatus
    input_json: str
    output_json: str
    retry_count: int
    poll_count: int
    scheduled_time_ms: int
    start_time_ms: int
    end_time_ms: int
    reason_for_incompletion: str
    worker_id: str
    response_timeout_seconds: int
    lease_expires_ms: int
    seq: int
    retried_task_id: str
    correlation_id: str
    domain: str
    def __init__(self, task_id: _Optional[str] = ..., task_type: _Optional[str] = ..., reference_task_name: _Optional[str] = ..., workflow_id: _Optional[str] = ..., workflow_type: _Optional[str] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., input_json: _Optional[str] = ..., output_json: _Optional[str] = ..., retry_count: _Optional[int] = ..., poll_count: _Optional[int] = ..., scheduled_time_ms: _Optional[int] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., reason_for_incompletion: _Optional[str] = ..., worker_id: _Optional[str] = ..., response_timeout_seconds: _Optional[int] = ..., lease_expires_ms: _Optional[int] = ..., seq: _Optional[int] = ..., retried_task_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("workflow_id", "workflow_name", "workflow_version", "status", "input_json", "output_json", "reason_for_incompletion", "correlation_id", "create_time_ms", "end_time_ms", "tasks", "variables_json", "idempotency_key", "priority", "task_to_domain", "triggering_workflow_id")
    class TaskToDomainEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    REASON_FOR_INCOMPLETION_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_JSON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TASK_TO_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TRIGGERING_WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    workflow_name: str
    workflow_version: int
    status: WorkflowStatus
    input_json: str
    output_json: str
    reason_for_incompletion: str
    correlation_id: str
    create_time_ms: int
    end_time_ms: int
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    variables_json: str
    idempotency_key: str
    priority: int
    task_to_domain: _containers.ScalarMap[str, str]
    triggering_workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., workflow_name: _Optional[str] = ..., workflow_version: _Optional[int] = ..., status: _Optional[_Union[WorkflowStatus, str]] = ..., input_json: _Optional[str] = ..., output_json: _Optional[str] = ..., reason_for_incompletion: _Optional[str] = ..., correlation_id: _Optional[str] = ..., create_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., variables_json: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., priority: _Optional[int] = ..., task_to_domain: _Optional[_Mapping[str, str]] = ..., triggering_workflow_id: _Optional[str] = ...) -> None: ...

class StartWorkflowRequest(_message.Message):
    __slots__ = ("request_id", "name", "version", "input_json", "correlation_id", "idempotency_key", "idempotency_strategy", "priority", "task_to_domain")
    class TaskToDomainEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TASK_TO_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    version: int
    input_json: str
    correlation_id: str
    idempotency_key: str
    idempotency_strategy: IdempotencyStrategy
    priority: int
    task_to_domain: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., input_json: _Optional[str] = ..., correlation_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., idempotency_strategy: _Optional[_Union[IdempotencyStrategy, str]] = ..., priority: _Optional[int] = ..., task_to_domain: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StartWorkflowResponse(_message.Message):
    __slots__ = ("workflow_id", "created")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    created: bool
    def __init__(self, workflow_id: _Optional[str] = ..., created: _Optional[bool] = ...) -> None: ...

class StartWorkflowsRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StartWorkflowRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[StartWorkflowRequest, _Mapping]]] = ...) -> None: ...

class StartWorkflowResult(_message.Message):
    __slots__ = ("code", "message", "workflow_id", "created")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    workflow_id: str
    created: bool
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., workflow_id: _Optional[str] = ..., created: _Optional[bool] = ...) -> None: ...

class StartWorkflowsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StartWorkflowResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StartWorkflowResult, _Mapping]]] = ...) -> None: ...

class GetWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "include_tasks")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TASKS_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    include_tasks: bool
    def __init__(self, workflow_id: _Optional[str] = ..., include_tasks: _Optional[bool] = ...) -> None: ...

class GetWorkflowResponse(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ...) -> None: ...

class TerminateWorkflowRequest(_message.Message):
    __slots__ = ("request_id", "workflow_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TerminateWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkflowsRequest(_message.Message):
    __slots__ = ("workflow_name", "status", "limit", "page_size", "page_token")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    status: WorkflowStatus
    limit: int
    page_size: int
    page_token: str
    def __init__(self, workflow_name: _Optional[str] = ..., status: _Optional[_Union[WorkflowStatus, str]] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkflowsResponse(_message.Message):
    __slots__ = ("workflows", "next_page_token")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[Workflow]
    next_page_token: str
    def __init__(self, workflows: _Optional[_Iterable[_Union[Workflow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
