"""The Raft message encryptor that replaces pysyncobj's Fernet (orchestrator/replication/wire_crypto.py)."""

from __future__ import annotations

import pytest

from orchestrator.replication.wire_crypto import AeadEncryptor, InvalidToken, install


def test_round_trip_and_timestamp() -> None:
    a, b = AeadEncryptor("secret"), AeadEncryptor("secret")
    token = a.encrypt_at_time(b"hello raft", 1234)
    assert b"hello raft" not in token
    assert b.extract_timestamp(token) == 1234
    assert b.decrypt(token) == b"hello raft"
    assert b.decrypt(token) == b"hello raft", "decrypt without the cached verification works too"


def test_a_forged_or_foreign_message_is_refused_before_its_timestamp_counts() -> None:
    a, b, other = AeadEncryptor("secret"), AeadEncryptor("secret"), AeadEncryptor("other")
    token = bytearray(a.encrypt_at_time(b"payload", 10))
    forged_time = bytes(token[:17]) + (2**40).to_bytes(8, "big") + bytes(token[25:])
    with pytest.raises(InvalidToken):
        b.extract_timestamp(forged_time)
    token[-1] ^= 1
    with pytest.raises(InvalidToken):
        b.decrypt(bytes(token))
    with pytest.raises(InvalidToken):
        other.decrypt(a.encrypt_at_time(b"payload", 10))
    with pytest.raises(InvalidToken):
        b.decrypt(b"\x01short")


def test_nonces_never_repeat_under_one_key_and_each_process_has_its_own_key() -> None:
    a = AeadEncryptor("secret")
    tokens = [a.encrypt_at_time(b"same", 1) for _ in range(1000)]
    headers = {t[:25] for t in tokens}
    nonces = {t[25:37] for t in tokens}
    assert len(headers) == 1 and len(nonces) == 1000
    assert len({t for t in tokens}) == 1000, "equal plaintexts give different messages"
    assert AeadEncryptor("secret").encrypt_at_time(b"x", 1)[1:17] != tokens[0][1:17]


def test_rekeys_before_the_counter_could_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.replication.wire_crypto as wc

    monkeypatch.setattr(wc, "MAX_MESSAGES_PER_KEY", 3)
    a, b = AeadEncryptor("secret"), AeadEncryptor("secret")
    tokens = [a.encrypt_at_time(bytes([i]), 1) for i in range(7)]
    assert len({t[1:17] for t in tokens}) == 3, "a new salt every 3 messages"
    assert [b.decrypt(t) for t in tokens] == [bytes([i]) for i in range(7)]


def test_pysyncobj_builds_ours() -> None:
    import pysyncobj.syncobj as so

    install()
    assert so.getEncryptor is AeadEncryptor
