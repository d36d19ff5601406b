from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CopyHistoryRequest(_message.Message):
    __slots__ = ("min_seq",)
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    min_seq: int
    def __init__(self, min_seq: _Optional[int] = ...) -> None: ...

class HistoryChunk(_message.Message):
    __slots__ = ("data", "seq", "size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    seq: int
    size: int
    def __init__(self, data: _Optional[bytes] = ..., seq: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...
