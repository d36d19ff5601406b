from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeEventsRequest(_message.Message):
    __slots__ = ("group", "from_offset", "names", "max_in_flight")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    group: str
    from_offset: int
    names: _containers.RepeatedScalarFieldContainer[str]
    max_in_flight: int
    def __init__(self, group: _Optional[str] = ..., from_offset: _Optional[int] = ..., names: _Optional[_Iterable[str]] = ..., max_in_flight: _Optional[int] = ...) -> None: ...

class WatchWorkflowsRequest(_message.Message):
    __slots__ = ("group", "from_offset", "names", "statuses", "correlation_id", "max_in_flight")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    group: str
    from_offset: int
    names: _containers.RepeatedScalarFieldContainer[str]
    statuses: _containers.RepeatedScalarFieldContainer[str]
    correlation_id: str
    max_in_flight: int
    def __init__(self, group: _Optional[str] = ..., from_offset: _Optional[int] = ..., names: _Optional[_Iterable[str]] = ..., statuses: _Optional[_Iterable[str]] = ..., correlation_id: _Optional[str] = ..., max_in_flight: _Optional[int] = ...) -> None: ...

class WorkflowChange(_message.Message):
    __slots__ = ("offset", "workflow_id", "name", "version", "status", "correlation_id", "time_ms")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    offset: int
    workflow_id: str
    name: str
    version: int
    status: str
    correlation_id: str
    time_ms: int
    def __init__(self, offset: _Optional[int] = ..., workflow_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., status: _Optional[str] = ..., correlation_id: _Optional[str] = ..., time_ms: _Optional[int] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("request_id", "stream", "group", "offset")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    stream: str
    group: str
    offset: int
    def __init__(self, request_id: _Optional[str] = ..., stream: _Optional[str] = ..., group: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ("committed",)
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    committed: int
    def __init__(self, committed: _Optional[int] = ...) -> None: ...

class GetConsumerGroupRequest(_message.Message):
    __slots__ = ("stream", "group")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    stream: str
    group: str
    def __init__(self, stream: _Optional[str] = ..., group: _Optional[str] = ...) -> None: ...

class GetConsumerGroupResponse(_message.Message):
    __slots__ = ("committed", "last_offset", "oldest_offset")
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    LAST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    OLDEST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    committed: int
    last_offset: int
    oldest_offset: int
    def __init__(self, committed: _Optional[int] = ..., last_offset: _Optional[int] = ..., oldest_offset: _Optional[int] = ...) -> None: ...

class PublishEventRequest(_message.Message):
    __slots__ = ("request_id", "name", "payload_json", "correlation_key", "ttl_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    payload_json: str
    correlation_key: str
    ttl_ms: int
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ..., payload_json: _Optional[str] = ..., correlation_key: _Optional[str] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class PublishEventResponse(_message.Message):
    __slots__ = ("offset",)
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    offset: int
    def __init__(self, offset: _Optional[int] = ...) -> None: ...

class RegisterEventHandlerRequest(_message.Message):
    __slots__ = ("request_id", "handler_json", "overwrite")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HANDLER_JSON_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    handler_json: str
    overwrite: bool
    def __init__(self, request_id: _Optional[str] = ..., handler_json: _Optional[str] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class RegisterEventHandlerResponse(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RemoveEventHandlerRequest(_message.Message):
    __slots__ = ("request_id", "name")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RemoveEventHandlerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEventHandlersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEventHandlersResponse(_message.Message):
    __slots__ = ("handler_json",)
    HANDLER_JSON_FIELD_NUMBER: _ClassVar[int]
    handler_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, handler_json: _Optional[_Iterable[str]] = ...) -> None: ...

class ReadEventsRequest(_message.Message):
    __slots__ = ("from_offset", "limit")
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    from_offset: int
    limit: int
    def __init__(self, from_offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("offset", "name", "payload_json", "correlation_key", "time_ms", "actions_json")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_KEY_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    offset: int
    name: str
    payload_json: str
    correlation_key: str
    time_ms: int
    actions_json: str
    def __init__(self, offset: _Optional[int] = ..., name: _Optional[str] = ..., payload_json: _Optional[str] = ..., correlation_key: _Optional[str] = ..., time_ms: _Optional[int] = ..., actions_json: _Optional[str] = ...) -> None: ...

class ReadEventsResponse(_message.Message):
    __slots__ = ("events", "last_offset")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    last_offset: int
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., last_offset: _Optional[int] = ...) -> None: ...
