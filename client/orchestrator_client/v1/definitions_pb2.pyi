from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterWorkflowDefRequest(_message.Message):
    __slots__ = ("request_id", "definition_json", "overwrite")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    definition_json: str
    overwrite: bool
    def __init__(self, request_id: _Optional[str] = ..., definition_json: _Optional[str] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class RegisterWorkflowDefResponse(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetWorkflowDefRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetWorkflowDefResponse(_message.Message):
    __slots__ = ("definition_json",)
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    definition_json: str
    def __init__(self, definition_json: _Optional[str] = ...) -> None: ...

class ListWorkflowDefsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class WorkflowDefSummary(_message.Message):
    __slots__ = ("name", "version", "definition_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    definition_json: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., definition_json: _Optional[str] = ...) -> None: ...

class ListWorkflowDefsResponse(_message.Message):
    __slots__ = ("definitions", "next_page_token")
    DEFINITIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    definitions: _containers.RepeatedCompositeFieldContainer[WorkflowDefSummary]
    next_page_token: str
    def __init__(self, definitions: _Optional[_Iterable[_Union[WorkflowDefSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RegisterTaskDefsRequest(_message.Message):
    __slots__ = ("request_id", "task_def_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_DEF_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task_def_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., task_def_json: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisterTaskDefsResponse(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class GetTaskDefRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetTaskDefResponse(_message.Message):
    __slots__ = ("task_def_json",)
    TASK_DEF_JSON_FIELD_NUMBER: _ClassVar[int]
    task_def_json: str
    def __init__(self, task_def_json: _Optional[str] = ...) -> None: ...

class ListTaskDefsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTaskDefsResponse(_message.Message):
    __slots__ = ("task_def_json", "next_page_token")
    TASK_DEF_JSON_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_def_json: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, task_def_json: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
