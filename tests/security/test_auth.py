"""Tokens, roles and the permission table, on a TLS server over the fake replica."""

from __future__ import annotations

import hmac
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orchestrator.api import auth
from orchestrator.api.identity import Principal
from orchestrator.api.rpc import SERVICES
from orchestrator.security import permissions, tokens
from orchestrator.security.permissions import PERMISSIONS, ROLES
from orchestrator.tools.access import add_token, local_access, token_path
from tests.security.security_support import call, details, every_rpc, secure_fake

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[Any]:
    with secure_fake(tmp_path_factory.mktemp("auth")) as srv:
        yield srv


def as_role(server: Any, role: str) -> tuple[tuple[str, str], ...]:
    return local_access(server.cfg, role).metadata()


@pytest.fixture(scope="module")
def channel(server: Any) -> Iterator[grpc.Channel]:
    # TLS without call credentials: each test chooses the metadata it sends.
    ch = grpc.secure_channel(server.grpc_addr, server.access.credentials())
    yield ch
    ch.close()


def test_every_rpc_of_every_service_has_an_entry() -> None:
    paths = {f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods}
    assert len(paths) >= 20
    assert set(PERMISSIONS) == paths
    assert all(PERMISSIONS[p] and permissions.ADMIN in PERMISSIONS[p] for p in paths)


def test_the_documented_table_is_the_table() -> None:
    doc = (ROOT / "docs" / "security.md").read_text()
    rows = re.findall(r"^\| `(\w+)\.(\w+)` \| ([^|]+)\|", doc, re.M)
    documented = {
        f"/orchestrator.v1.{svc}/{rpc}": frozenset(r.strip() for r in roles.split(","))
        for svc, rpc, roles in rows
    }
    assert documented == PERMISSIONS


def test_the_table_refuses_what_it_does_not_know() -> None:
    assert permissions.allowed_roles("/orchestrator.v1.WorkflowService/Nothing") == frozenset()
    assert permissions.allowed_roles("/grpc.reflection.v1alpha.ServerReflection/X") == set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_its_rpcs(server: Any, channel: grpc.Channel, role: str) -> None:
    md = as_role(server, role)
    for path, request in every_rpc():
        code = call(channel, path, request, md)
        if role in PERMISSIONS[path]:
            # Empty requests: refused for what they hold (or served), never for who calls.
            assert code not in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED,
            ), (role, path)
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (role, path, code)


def test_a_refusal_names_the_rpc_and_the_roles_it_needs(server: Any, channel: grpc.Channel) -> None:
    path, request = next((p, r) for p, r in every_rpc() if p.endswith("/AddReplica"))
    message = details(channel, path, request, as_role(server, "operator"))
    assert "ClusterService.AddReplica needs role admin" in message
    assert "'operator' has role 'operator'" in message


def test_no_token_or_a_bad_one_is_unauthenticated(server: Any, channel: grpc.Channel) -> None:
    path, request = next((p, r) for p, r in every_rpc() if p.endswith("/ListWorkflows"))
    assert call(channel, path, request) == grpc.StatusCode.UNAUTHENTICATED
    assert "WorkflowService.ListWorkflows needs credentials" in details(channel, path, request)
    bad = (("authorization", "Bearer not-a-token-of-this-cluster"),)
    assert call(channel, path, request, bad) == grpc.StatusCode.UNAUTHENTICATED
    assert call(channel, path, request, (("authorization", "Basic abc"),)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )


def test_the_health_check_needs_no_credentials(channel: grpc.Channel) -> None:
    resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_tokens_never_reach_the_log(
    server: Any, channel: grpc.Channel, capfd: pytest.CaptureFixture[str]
) -> None:
    good = local_access(server.cfg, "admin").bearer()
    assert good
    bad = "bad-token-that-must-not-be-logged-0123456789"
    with structlog.testing.capture_logs() as logs:
        for path, request in every_rpc():
            call(channel, path, request, (("authorization", f"Bearer {bad}"),))
            call(channel, path, request, (("authorization", f"Bearer {good}"),))
    out = capfd.readouterr()
    text = json.dumps(logs, default=str) + out.out + out.err
    assert bad not in text and good not in text
    assert tokens.digest(good).hex() not in text


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    store = tokens.TokenStore(
        inline="; ".join(f"token-number-{i:04d}-xxxxxxxx name{i} reader" for i in range(5))
    )
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    assert store.by_token("token-number-0001-xxxxxxxx") == Principal("name1", "reader")
    # Every entry compared, as digests (a match does not end the loop early).
    assert len(seen) == 5 and all(len(a) == len(b) == 32 for a, b in seen)
    seen.clear()
    assert store.by_token("token-number-0009-xxxxxxxx") is None
    assert len(seen) == 5


def test_a_token_added_or_removed_takes_effect_without_a_restart(
    server: Any, channel: grpc.Channel
) -> None:
    path, request = next((p, r) for p, r in every_rpc() if p.endswith("/ListWorkflowDefs"))
    add_token(server.cfg, "rotated-reader", "reader")
    md = local_access(server.cfg, "rotated-reader").metadata()
    assert call(channel, path, request, md) == grpc.StatusCode.OK
    doc = json.loads(Path(server.cfg.auth.tokens_file).read_text())
    doc["tokens"] = [t for t in doc["tokens"] if t["name"] != "rotated-reader"]
    tmp = server.cfg.auth.tokens_file + ".new"
    Path(tmp).write_text(json.dumps(doc))
    os.replace(tmp, server.cfg.auth.tokens_file)
    assert call(channel, path, request, md) == grpc.StatusCode.UNAUTHENTICATED
    os.remove(token_path(server.cfg, "rotated-reader"))


class _Context:
    def __init__(self, metadata: Any) -> None:
        self.metadata = tuple(metadata)

    def invocation_metadata(self) -> Any:
        return self.metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


def test_an_asserted_caller_is_honoured_only_with_the_replica_credential() -> None:
    store = tokens.TokenStore(inline="an-operator-token-0123 alice operator")
    forward = tokens.forward_token("the raft password")
    authn = auth.Authenticator(store, forward)
    path = "/orchestrator.v1.TaskService/PollTasks"
    as_worker = ((auth.PRINCIPAL_KEY, "w1"), (auth.ROLE_KEY, "worker"))
    by_replica = (("authorization", f"Bearer {forward}"), *as_worker)
    assert authn.principal(path, _Context(by_replica)) == Principal("w1", "worker")
    # A user's token cannot claim to be someone else.
    by_user = (("authorization", "Bearer an-operator-token-0123"), *as_worker)
    code, _ = authn.principal(path, _Context(by_user))  # type: ignore[misc]
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # The replica credential without a caller is a reader (a replica's own status calls).
    bare = (("authorization", f"Bearer {forward}"),)
    status = "/orchestrator.v1.ClusterService/GetReplicaStatus"
    assert authn.principal(status, _Context(bare)) == auth.REPLICA
    code, _ = authn.principal(path, _Context(bare))  # type: ignore[misc]
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # Derived from the password: another cluster's replicas are strangers.
    other = (("authorization", f"Bearer {tokens.forward_token('another')}"), *as_worker)
    code, _ = authn.principal(path, _Context(other))  # type: ignore[misc]
    assert code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("short alice admin", "at least 16"),
        ("a-long-enough-token-1 alice superuser", "'role' must be one of"),
        ("a-long-enough-token-1 alice", "expected '<token> <name> <role>'"),
        ('{"tokens": [{"token": "a-long-enough-token-1", "role": "admin"}]}', "'name'"),
        ('{"tokens": [{"sha256": "abc", "name": "a", "role": "admin"}]}', "64 hexadecimal"),
        ('{"tokens": [', "malformed JSON"),
    ],
)
def test_a_bad_tokens_source_is_a_clear_error(text: str, error: str) -> None:
    from orchestrator.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(error)) as info:
        tokens.parse(text, "tokens.json")
    assert "a-long-enough-token-1" not in str(info.value)
