"""CopyHistory answers only the replica credential calling for itself: no user role, and no
forwarded call asserting a user, may copy a replica's history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import history_sync_pb2, history_sync_pb2_grpc

from orchestrator.api.auth import PRINCIPAL_KEY, ROLE_KEY
from orchestrator.security.permissions import ROLES
from orchestrator.tools.access import local_access
from tests.security.security_support import secure_fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[Any]:
    with secure_fake(tmp_path_factory.mktemp("sync-auth")) as srv:
        yield srv


def _copy(server: Any, metadata: Any) -> list[Any]:
    with grpc.secure_channel(server.grpc_addr, server.access.credentials()) as ch:
        stub = history_sync_pb2_grpc.HistorySyncServiceStub(ch)
        return list(
            stub.CopyHistory(
                history_sync_pb2.CopyHistoryRequest(min_seq=0), metadata=metadata, timeout=20
            )
        )


@pytest.mark.parametrize("role", ROLES)
def test_no_user_role_may_copy_the_history(server: Any, role: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _copy(server, local_access(server.cfg, role).metadata())
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_the_replica_credential_copies_it_and_no_forwarded_user_does(
    server: Any, tmp_path: Path
) -> None:
    bearer = (("authorization", f"Bearer {server.security.forward_token}"),)
    chunks = _copy(server, bearer)
    assert chunks and chunks[0].size == sum(len(c.data) for c in chunks)
    assert b"SQLite format 3" in chunks[0].data[:16]
    forwarded = (*bearer, (PRINCIPAL_KEY, "someone"), (ROLE_KEY, "admin"))
    with pytest.raises(grpc.RpcError) as info:
        _copy(server, forwarded)
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
