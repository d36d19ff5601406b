"""Bearer tokens and certificate subjects mapped to principals (a name and a role).

Sources, read by the server (never logged):
  * a file (`auth.tokens_file` in the cluster config, or env ORCHESTRATOR_TOKENS_FILE), either
    JSON  {"tokens": [{"token": "...", "name": "ci", "role": "operator"},
                      {"sha256": "<hex of the token's SHA-256>", "name": "...", "role": "..."}],
           "subjects": [{"subject": "<certificate CN or SAN>", "name": "...", "role": "..."}]}
    or lines `<token> <name> <role>` (`sha256:<hex>` in place of a token; `#` comments);
  * the environment: ORCHESTRATOR_TOKENS holds the lines format (`;` also separates entries).

A file is read again when it changes (checked by stat on each call: cheap next to a call), so
tokens are rotated without a restart: add the new token under the same name, move the clients,
remove the old one. A file that no longer parses keeps the previous entries, with an error
logged once (without its content).

Only SHA-256 digests are kept. A presented token is hashed and compared with every digest by
hmac.compare_digest, so neither a dict lookup nor an early exit tells an attacker how much of a
guess matched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from ..api.identity import Principal
from ..config import ConfigError
from .permissions import ROLES

log = structlog.get_logger("auth")

TOKENS_FILE_ENV = "ORCHESTRATOR_TOKENS_FILE"
TOKENS_ENV = "ORCHESTRATOR_TOKENS"
MIN_TOKEN_CHARS = 16
FORWARD_CONTEXT = b"orchestrator-forward"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def forward_token(raft_password: str) -> str:
    """The credential replicas present to each other when forwarding a call: derived from the
    cluster's Raft password, which every replica holds and which already guards everything."""
    return hmac.new(raft_password.encode("utf-8"), FORWARD_CONTEXT, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Entries:
    tokens: tuple[tuple[bytes, Principal], ...] = ()
    subjects: tuple[tuple[str, Principal], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tokens or self.subjects)


def _principal(name: Any, role: Any, where: str) -> Principal:
    # Printable ASCII: a name travels in gRPC metadata when a follower forwards a call.
    if not isinstance(name, str) or not (0 < len(name.strip()) <= 128 and name.isascii()):
        raise ConfigError(f"{where}: 'name' must be 1-128 ASCII characters")
    if not name.isprintable():
        raise ConfigError(f"{where}: 'name' must be printable")
    if role not in ROLES:
        raise ConfigError(f"{where}: 'role' must be one of {', '.join(ROLES)}")
    return Principal(name.strip(), str(role))


def _token_digest(token: Any, sha: Any, where: str) -> bytes:
    if sha is not None:
        try:
            raw = bytes.fromhex(str(sha))
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"{where}: 'sha256' must be 64 hexadecimal digits")
        return raw
    if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS or token != token.strip():
        raise ConfigError(
            f"{where}: a token must be a string of at least {MIN_TOKEN_CHARS} characters "
            "without surrounding spaces"
        )
    return digest(token)


def parse_json(raw: Any, where: str) -> Entries:
    doc = {"tokens": raw} if isinstance(raw, list) else raw
    if not isinstance(doc, dict) or set(doc) - {"tokens", "subjects"}:
        raise ConfigError(f"{where}: expected an object with 'tokens' and/or 'subjects'")
    tokens, subjects = [], []
    for i, e in enumerate(doc.get("tokens") or []):
        at = f"{where}: tokens[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{at}: expected an object")
        tokens.append(
            (
                _token_digest(e.get("token"), e.get("sha256"), at),
                _principal(e.get("name"), e.get("role"), at),
            )
        )
    for i, e in enumerate(doc.get("subjects") or []):
        at = f"{where}: subjects[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("subject"), str) or not e["subject"]:
            raise ConfigError(f"{at}: expected an object with a non-empty 'subject'")
        subjects.append((e["subject"], _principal(e.get("name", e["subject"]), e.get("role"), at)))
    return Entries(tuple(tokens), tuple(subjects))


def parse_lines(text: str, where: str) -> Entries:
    tokens = []
    for n, raw in enumerate(text.replace(";", "\n").splitlines(), 1):
        parts = raw.split("#", 1)[0].split()
        if not parts:
            continue
        at = f"{where}: entry {n}"
        if len(parts) != 3:
            raise ConfigError(f"{at}: expected '<token> <name> <role>'")
        secret, name, role = parts
        sha = secret[len("sha256:") :] if secret.startswith("sha256:") else None
        tokens.append((_token_digest(secret, sha, at), _principal(name, role, at)))
    return Entries(tuple(tokens))


def parse(text: str, where: str) -> Entries:
    if text.lstrip().startswith(("{", "[")):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            # The position only: the message could quote a token.
            raise ConfigError(f"{where}: malformed JSON at line {exc.lineno}") from None
        return parse_json(raw, where)
    return parse_lines(text, where)


class TokenStore:
    """The principals the server knows, from a file (reloaded on change) and/or inline text."""

    def __init__(self, path: str = "", inline: str = "") -> None:
        self.path = path
        self._inline = parse(inline, f"${TOKENS_ENV}") if inline else Entries()
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._file = Entries()
        self._reload_failed = False
        if path:
            self._file = self._read(self._stat())
        self._all = self._merged()

    def _merged(self) -> Entries:
        # Built once per (re)load, not per call: every authenticated call reads it.
        return Entries(
            self._file.tokens + self._inline.tokens, self._file.subjects + self._inline.subjects
        )

    @classmethod
    def from_env(cls, configured_file: str = "") -> TokenStore:
        return cls(
            os.environ.get(TOKENS_FILE_ENV, "") or configured_file, os.environ.get(TOKENS_ENV, "")
        )

    def _stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(f"cannot read the tokens file {self.path}: {exc.strerror}") from None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self, stamp: tuple[int, int, int]) -> Entries:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the tokens file {self.path}: {exc}") from None
        entries = parse(text, self.path)
        self._stamp = stamp
        return entries

    def _entries(self) -> Entries:
        if not self.path:
            return self._inline
        try:
            stamp = self._stat()
            if stamp != self._stamp:
                with self._lock:
                    if stamp != self._stamp:
                        self._file = self._read(stamp)
                        self._all = self._merged()
                        self._reload_failed = False
                        log.info("tokens_reloaded", path=self.path)
        except ConfigError as exc:
            if not self._reload_failed:
                self._reload_failed = True
                # The message names the file and the entry, never a token.
                log.error("tokens_reload_failed", error=str(exc), keeping="previous entries")
        return self._all

    @property
    def configured(self) -> bool:
        return bool(self._entries())

    def by_token(self, token: str) -> Principal | None:
        presented = digest(token)
        found: Principal | None = None
        for known, principal in self._entries().tokens:
            # Every entry is compared (no early exit), each in constant time.
            if hmac.compare_digest(presented, known) and found is None:
                found = principal
        return found

    def by_subject(self, identities: Iterable[str]) -> Principal | None:
        """The principal a verified client certificate's CN or SAN maps to."""
        names = set(identities)
        for subject, principal in self._entries().subjects:
            if subject in names:
                return principal
        return None
