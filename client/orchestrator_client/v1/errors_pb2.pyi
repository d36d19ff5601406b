from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class LeaderHint(_message.Message):
    __slots__ = ("address", "replica_id")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    address: str
    replica_id: str
    def __init__(self, address: _Optional[str] = ..., replica_id: _Optional[str] = ...) -> None: ...
