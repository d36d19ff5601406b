"""The script sandbox: QuickJS and jq in separate, limited worker processes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from orchestrator.runtime.sandbox import Sandbox


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    sandbox = Sandbox(workers=2, time_limit_s=0.5, memory_limit_bytes=32 << 20)
    yield sandbox
    sandbox.close()


def test_javascript_sees_its_input_as_dollar_and_returns_json(sb: Sandbox) -> None:
    assert sb.evaluate("js", "$.value * 2", {"value": 21}).value == 42
    res = sb.evaluate("js", "({n: $.xs.length, up: $.xs.map(x => x.toUpperCase())})", {"xs": ["a"]})
    assert res.ok and res.value == {"n": 1, "up": ["A"]}
    assert sb.evaluate("js", "if ($.a) { 'yes'; } else { 'no'; }", {"a": 0}).value == "no"
    # GraalJS-style top-level return runs as a function body.
    assert sb.evaluate("js", "return $.a + 1;", {"a": 1}).value == 2
    # JSON.stringify's rules: undefined, functions, NaN and Infinity become null.
    for src in ("undefined", "(function () {})", "0/0", "1/0"):
        assert sb.evaluate("js", src, {}).value is None, src
    assert sb.evaluate("js", "2 ** 40", {}).value == 2**40


def test_a_script_error_is_reported_not_raised(sb: Sandbox) -> None:
    res = sb.evaluate("js", "throw new Error('bad input')", {})
    assert not res.ok and res.kind == "runtime" and "bad input" in res.error
    res = sb.evaluate("js", "$.missing.field", {})
    assert not res.ok and "TypeError" in res.error


def test_syntax_errors_at_compile_check_and_at_run_time(sb: Sandbox) -> None:
    res = sb.check("js", "$.value *")
    assert not res.ok and res.kind == "syntax" and res.error.startswith("SyntaxError")
    assert sb.check("js", "return $.a").ok, "a top-level return compiles (as a function body)"
    assert sb.check("js", "while (true) {}").ok, "a check compiles without running"
    res = sb.evaluate("js", "1 +", {})
    assert not res.ok and res.kind == "syntax"
    res = sb.check("jq", ".a |")
    assert not res.ok and res.kind == "syntax" and "syntax error" in res.error
    assert sb.check("jq", "{a: .b}").ok


def test_an_endless_loop_hits_the_time_limit(sb: Sandbox) -> None:
    t0 = time.monotonic()
    res = sb.evaluate("js", "while (true) {}", {})
    took = time.monotonic() - t0
    assert not res.ok and res.kind == "time"
    # In the worker's own interrupt, or (under load) by the pool killing its process.
    assert res.error.startswith("time limit exceeded (0.5 s"), res.error
    assert took < 5, took
    assert sb.evaluate("js", "1 + 1", {}).value == 2, "the pool still works"


def test_a_memory_bomb_hits_the_memory_limit(sb: Sandbox) -> None:
    res = sb.evaluate("js", "var a = []; while (true) { a.push(new Array(1e5).fill(1)); }", {})
    assert not res.ok and res.kind == "memory"
    assert "memory limit exceeded (32 MiB)" in res.error
    res = sb.evaluate("js", "var s = 'x'; while (true) { s = s + s; }", {})
    assert not res.ok and res.kind == "memory"
    assert sb.evaluate("js", "1 + 1", {}).value == 2


def test_no_host_access_from_javascript(sb: Sandbox) -> None:
    names = ["require", "process", "std", "os", "fetch", "XMLHttpRequest", "setTimeout", "print"]
    res = sb.evaluate("js", f"{names!r}.map(n => typeof globalThis[n])", {})
    assert res.value == ["undefined"] * len(names)
    assert sb.evaluate("js", "Object.keys(globalThis)", {}).value == ["$"]
    # No module loader: neither QuickJS's own modules nor files can be imported.
    src = (
        "var r = []; import('std').catch(e => r.push(String(e)));"
        "import('/etc/passwd').catch(e => r.push(String(e))); r"
    )
    res = sb.evaluate("js", src, {})
    assert res.ok  # the promises settle after the script: nothing was loaded either way
    res = sb.evaluate("js", "import * as std from 'std'; std.open('/etc/passwd')", {})
    assert not res.ok and res.kind == "syntax"


def test_no_host_access_from_jq(sb: Sandbox) -> None:
    os.environ["SANDBOX_TEST_SECRET"] = "s3cret"
    try:
        fresh = Sandbox(workers=1, time_limit_s=1.0)
        try:
            assert fresh.evaluate("jq", "env", {}).value == [{}]
            assert fresh.evaluate("jq", "$ENV | length", {}).value == [0]
        finally:
            fresh.close()
    finally:
        del os.environ["SANDBOX_TEST_SECRET"]
    for src in ('import "etc/passwd" as $p; $p', 'include "x"; .'):
        res = sb.evaluate("jq", src, {})
        assert not res.ok and res.kind == "syntax", src
    assert sb.evaluate("jq", "get_search_list", {}).value == [[]]


def test_jq_results(sb: Sandbox) -> None:
    assert sb.evaluate("jq", ".a + 1", {"a": 1}).value == [2]
    assert sb.evaluate("jq", ".[]", [1, 2, 3]).value == [1, 2, 3]
    assert sb.evaluate("jq", "empty", {}).value == []
    res = sb.evaluate("jq", ".a + 1", {"a": "x"})
    assert not res.ok and res.kind == "runtime" and "cannot be added" in res.error


def test_a_runaway_jq_program_is_killed_and_its_worker_replaced(sb: Sandbox) -> None:
    before = set(sb.worker_pids())
    replaced = sb.replaced
    t0 = time.monotonic()
    res = sb.evaluate("jq", "def f: f; f", {})
    took = time.monotonic() - t0
    assert not res.ok and res.kind == "time" and "killed" in res.error
    assert took < 5, took
    assert sb.replaced == replaced + 1
    assert sb.evaluate("jq", ".", 1).value == [1]
    assert set(sb.worker_pids()) != before or not before


def test_the_address_space_limit_kills_a_jq_memory_bomb() -> None:
    sandbox = Sandbox(workers=1, time_limit_s=5.0, address_space_bytes=128 << 20)
    try:
        res = sandbox.evaluate("jq", '"x" | until(length > 1e10; . + .) | length', {})
        assert not res.ok and res.kind == "memory"
        assert "128 MiB" in res.error
        assert sandbox.evaluate("jq", ".", 2).value == [2], "the worker was replaced"
    finally:
        sandbox.close()


def test_a_result_too_large_is_refused() -> None:
    sandbox = Sandbox(workers=1, max_result_bytes=1000)
    try:
        res = sandbox.evaluate("js", "'x'.repeat(5000)", {})
        assert not res.ok and res.kind == "result" and "more than 1000" in res.error
    finally:
        sandbox.close()


@pytest.mark.parametrize("lang", ["js", "jq"])
def test_a_result_nested_too_deep_is_refused_with_a_clear_error(sb: Sandbox, lang: str) -> None:
    def nested(n: int) -> str:
        if lang == "js":
            return f"let o = 1; for (let i = 0; i < {n}; i++) o = [o]; o"
        return f"reduce range({n}) as $i (1; [.])"

    # jq's result is the list of its outputs: one level more than the output itself.
    limit = 100 if lang == "js" else 99
    ok = sb.evaluate(lang, nested(limit), {})
    assert ok.ok, ok.error
    pids = sb.worker_pids()
    # Just over the limit; deeper than Python's JSON parser goes; and deep enough to crash the
    # engine's own converter (QuickJS, jq) were the depth not checked inside the engine first.
    for n in (limit + 1, 5000, 100_000):
        out = sb.evaluate(lang, nested(n), {})
        assert not out.ok and out.kind == "result", out
        assert out.error == "the result is nested more than 100 levels deep"
    assert sb.worker_pids() == pids, "no worker died"


def test_workers_are_separate_processes_without_the_parents_environment(sb: Sandbox) -> None:
    sb.evaluate("js", "1", {})
    pids = sb.worker_pids()
    assert pids and os.getpid() not in pids
    for pid in pids:
        with open(f"/proc/{pid}/environ", "rb") as f:
            names = {kv.split(b"=", 1)[0] for kv in f.read().split(b"\0") if kv}
        assert names <= {b"PATH", b"LANG", b"PYTHONPATH"}, "nothing else of the parent's"
        limits = open(f"/proc/{pid}/limits").read()
        line = next(ln for ln in limits.splitlines() if ln.startswith("Max address space"))
        assert str(512 << 20) in line, line


def test_a_worker_ends_itself_even_if_the_parent_never_kills_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import orchestrator.runtime.sandbox as sandbox_module

    # The parent waits far longer than usual: the worker's own SIGALRM deadline ends it first.
    monkeypatch.setattr(sandbox_module, "KILL_GRACE_S", 30.0)
    sandbox = Sandbox(workers=1, time_limit_s=0.5)
    try:
        t0 = time.monotonic()
        res = sandbox.evaluate("jq", "def f: f; f", {})
        assert not res.ok and res.kind == "time" and "ended itself" in res.error
        assert time.monotonic() - t0 < 10
        assert sandbox.evaluate("jq", ".", 3).value == [3]
    finally:
        sandbox.close()
