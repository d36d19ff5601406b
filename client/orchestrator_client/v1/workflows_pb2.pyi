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
    WORKFLOW_STATUS_COMPENSATING: _ClassVar[WorkflowStatus]
    WORKFLOW_STATUS_COMPENSATED: _ClassVar[WorkflowStatus]
    WORKFLOW_STATUS_QUEUED: _ClassVar[WorkflowStatus]

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

class SearchSort(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_SORT_UNSPECIFIED: _ClassVar[SearchSort]
    SEARCH_SORT_CREATE_TIME: _ClassVar[SearchSort]
    SEARCH_SORT_END_TIME: _ClassVar[SearchSort]

class BulkActionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BULK_ACTION_TYPE_UNSPECIFIED: _ClassVar[BulkActionType]
    BULK_ACTION_TYPE_PAUSE: _ClassVar[BulkActionType]
    BULK_ACTION_TYPE_RESUME: _ClassVar[BulkActionType]
    BULK_ACTION_TYPE_RESTART: _ClassVar[BulkActionType]
    BULK_ACTION_TYPE_RETRY: _ClassVar[BulkActionType]
    BULK_ACTION_TYPE_TERMINATE: _ClassVar[BulkActionType]
    BULK_ACTION_TYPE_REMOVE: _ClassVar[BulkActionType]
    BULK_ACTION_TYPE_COMPENSATE: _ClassVar[BulkActionType]
WORKFLOW_STATUS_UNSPECIFIED: WorkflowStatus
WORKFLOW_STATUS_RUNNING: WorkflowStatus
WORKFLOW_STATUS_COMPLETED: WorkflowStatus
WORKFLOW_STATUS_FAILED: WorkflowStatus
WORKFLOW_STATUS_TERMINATED: WorkflowStatus
WORKFLOW_STATUS_TIMED_OUT: WorkflowStatus
WORKFLOW_STATUS_PAUSED: WorkflowStatus
WORKFLOW_STATUS_COMPENSATING: WorkflowStatus
WORKFLOW_STATUS_COMPENSATED: WorkflowStatus
WORKFLOW_STATUS_QUEUED: WorkflowStatus
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
SEARCH_SORT_UNSPECIFIED: SearchSort
SEARCH_SORT_CREATE_TIME: SearchSort
SEARCH_SORT_END_TIME: SearchSort
BULK_ACTION_TYPE_UNSPECIFIED: BulkActionType
BULK_ACTION_TYPE_PAUSE: BulkActionType
BULK_ACTION_TYPE_RESUME: BulkActionType
BULK_ACTION_TYPE_RESTART: BulkActionType
BULK_ACTION_TYPE_RETRY: BulkActionType
BULK_ACTION_TYPE_TERMINATE: BulkActionType
BULK_ACTION_TYPE_REMOVE: BulkActionType
BULK_ACTION_TYPE_COMPENSATE: BulkActionType

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
    __slots__ = ("workflow_id", "workflow_name", "workflow_version", "status", "input_json", "output_json", "reason_for_incompletion", "correlation_id", "create_time_ms", "end_time_ms", "tasks", "variables_json", "idempotency_key", "priority", "task_to_domain", "triggering_workflow_id", "start_time_ms")
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
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
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
    start_time_ms: int
    def __init__(self, workflow_id: _Optional[str] = ..., workflow_name: _Optional[str] = ..., workflow_version: _Optional[int] = ..., status: _Optional[_Union[WorkflowStatus, str]] = ..., input_json: _Optional[str] = ..., output_json: _Optional[str] = ..., reason_for_incompletion: _Optional[str] = ..., correlation_id: _Optional[str] = ..., create_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., variables_json: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., priority: _Optional[int] = ..., task_to_domain: _Optional[_Mapping[str, str]] = ..., triggering_workflow_id: _Optional[str] = ..., start_time_ms: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("workflow_id", "created", "queued")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    created: bool
    queued: bool
    def __init__(self, workflow_id: _Optional[str] = ..., created: _Optional[bool] = ..., queued: _Optional[bool] = ...) -> None: ...

class StartWorkflowsRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StartWorkflowRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[StartWorkflowRequest, _Mapping]]] = ...) -> None: ...

class StartWorkflowResult(_message.Message):
    __slots__ = ("code", "message", "workflow_id", "created", "queued")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    workflow_id: str
    created: bool
    queued: bool
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., workflow_id: _Optional[str] = ..., created: _Optional[bool] = ..., queued: _Optional[bool] = ...) -> None: ...

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

class SearchWorkflowsRequest(_message.Message):
    __slots__ = ("workflow_name", "version", "statuses", "correlation_id", "created_from_ms", "created_to_ms", "ended_from_ms", "ended_to_ms", "failed_task_type", "text", "sort", "ascending", "page_size", "page_token", "skip_total")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_TO_MS_FIELD_NUMBER: _ClassVar[int]
    ENDED_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    ENDED_TO_MS_FIELD_NUMBER: _ClassVar[int]
    FAILED_TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SKIP_TOTAL_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    version: int
    statuses: _containers.RepeatedScalarFieldContainer[WorkflowStatus]
    correlation_id: str
    created_from_ms: int
    created_to_ms: int
    ended_from_ms: int
    ended_to_ms: int
    failed_task_type: str
    text: str
    sort: SearchSort
    ascending: bool
    page_size: int
    page_token: str
    skip_total: bool
    def __init__(self, workflow_name: _Optional[str] = ..., version: _Optional[int] = ..., statuses: _Optional[_Iterable[_Union[WorkflowStatus, str]]] = ..., correlation_id: _Optional[str] = ..., created_from_ms: _Optional[int] = ..., created_to_ms: _Optional[int] = ..., ended_from_ms: _Optional[int] = ..., ended_to_ms: _Optional[int] = ..., failed_task_type: _Optional[str] = ..., text: _Optional[str] = ..., sort: _Optional[_Union[SearchSort, str]] = ..., ascending: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., skip_total: _Optional[bool] = ...) -> None: ...

class SearchWorkflowsResponse(_message.Message):
    __slots__ = ("workflows", "next_page_token", "total_count", "total_at_least")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[Workflow]
    next_page_token: str
    total_count: int
    total_at_least: bool
    def __init__(self, workflows: _Optional[_Iterable[_Union[Workflow, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_count: _Optional[int] = ..., total_at_least: _Optional[bool] = ...) -> None: ...

class PauseWorkflowRequest(_message.Message):
    __slots__ = ("request_id", "workflow_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow_id: str
    def __init__(self, request_id: _Optional[str] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class PauseWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResumeWorkflowRequest(_message.Message):
    __slots__ = ("request_id", "workflow_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow_id: str
    def __init__(self, request_id: _Optional[str] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class ResumeWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RestartWorkflowRequest(_message.Message):
    __slots__ = ("request_id", "workflow_id", "use_latest_definition")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    USE_LATEST_DEFINITION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow_id: str
    use_latest_definition: bool
    def __init__(self, request_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., use_latest_definition: _Optional[bool] = ...) -> None: ...

class RestartWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RetryWorkflowRequest(_message.Message):
    __slots__ = ("request_id", "workflow_id", "resume_subworkflow_tasks")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_SUBWORKFLOW_TASKS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow_id: str
    resume_subworkflow_tasks: bool
    def __init__(self, request_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., resume_subworkflow_tasks: _Optional[bool] = ...) -> None: ...

class RetryWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RerunWorkflowRequest(_message.Message):
    __slots__ = ("request_id", "workflow_id", "task_id", "task_input_json", "workflow_input_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow_id: str
    task_id: str
    task_input_json: str
    workflow_input_json: str
    def __init__(self, request_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., task_id: _Optional[str] = ..., task_input_json: _Optional[str] = ..., workflow_input_json: _Optional[str] = ...) -> None: ...

class RerunWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SkipTaskRequest(_message.Message):
    __slots__ = ("request_id", "workflow_id", "task_reference_name", "output_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_REFERENCE_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow_id: str
    task_reference_name: str
    output_json: str
    def __init__(self, request_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., task_reference_name: _Optional[str] = ..., output_json: _Optional[str] = ...) -> None: ...

class SkipTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoveWorkflowRequest(_message.Message):
    __slots__ = ("request_id", "workflow_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow_id: str
    def __init__(self, request_id: _Optional[str] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class RemoveWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CompensateWorkflowRequest(_message.Message):
    __slots__ = ("request_id", "workflow_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CompensateWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BulkActionRequest(_message.Message):
    __slots__ = ("request_id", "action", "workflow_ids", "search", "reason", "use_latest_definition", "resume_subworkflow_tasks")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_IDS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    USE_LATEST_DEFINITION_FIELD_NUMBER: _ClassVar[int]
    RESUME_SUBWORKFLOW_TASKS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    action: BulkActionType
    workflow_ids: _containers.RepeatedScalarFieldContainer[str]
    search: SearchWorkflowsRequest
    reason: str
    use_latest_definition: bool
    resume_subworkflow_tasks: bool
    def __init__(self, request_id: _Optional[str] = ..., action: _Optional[_Union[BulkActionType, str]] = ..., workflow_ids: _Optional[_Iterable[str]] = ..., search: _Optional[_Union[SearchWorkflowsRequest, _Mapping]] = ..., reason: _Optional[str] = ..., use_latest_definition: _Optional[bool] = ..., resume_subworkflow_tasks: _Optional[bool] = ...) -> None: ...

class BulkItemResult(_message.Message):
    __slots__ = ("workflow_id", "code", "message")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    code: int
    message: str
    def __init__(self, workflow_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class BulkActionResponse(_message.Message):
    __slots__ = ("results", "next_page_token")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BulkItemResult]
    next_page_token: str
    def __init__(self, results: _Optional[_Iterable[_Union[BulkItemResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExecuteWorkflowRequest(_message.Message):
    __slots__ = ("start", "wait_timeout_ms", "include_tasks")
    START_FIELD_NUMBER: _ClassVar[int]
    WAIT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TASKS_FIELD_NUMBER: _ClassVar[int]
    start: StartWorkflowRequest
    wait_timeout_ms: int
    include_tasks: bool
    def __init__(self, start: _Optional[_Union[StartWorkflowRequest, _Mapping]] = ..., wait_timeout_ms: _Optional[int] = ..., include_tasks: _Optional[bool] = ...) -> None: ...

class ExecuteWorkflowResponse(_message.Message):
    __slots__ = ("workflow", "ended", "created")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    ended: bool
    created: bool
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ..., ended: _Optional[bool] = ..., created: _Optional[bool] = ...) -> None: ...
