"""The sandbox worker's seccomp filter: what it refuses, and that scripts still run under it.

QuickJS and jq expose no way to open a file, a socket or a process, so the filter is tested
directly: a child process installs exactly the worker's filter and then tries each forbidden
thing itself. The same probes without the filter are the control (they must succeed there, or a
probe that always fails would prove nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.runtime.sandbox import Sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp is Linux")

_ROOT = Path(__file__).resolve().parents[2]

# Everything is imported and loaded before the filter: after it nothing can be opened.
_PROBES = r"""
import ctypes, errno, json, mmap, os, socket, sys, threading
from orchestrator.runtime.sandbox_worker import install_seccomp

target, confine = sys.argv[1], sys.argv[2] == "1"
libc = ctypes.CDLL(None, use_errno=True)
if confine:
    install_seccomp()
results = {}

def probe(name, fn):
    try:
        fn()
        results[name] = "ok"
    except OSError as exc:
        results[name] = errno.errorcode.get(exc.errno, str(exc.errno))
    except Exception as exc:
        results[name] = type(exc).__name__

def libc_call(fn, *args):
    if fn(*args) == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))

def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)

def spawn():
    os.waitpid(os.posix_spawn("/bin/true", ["/bin/true"], {}), 0)

probe("tcp_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
probe("unix_socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
probe("open_write", lambda: os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)))
probe("open_read", lambda: os.close(os.open("/etc/passwd", os.O_RDONLY)))
probe("stat_path", lambda: os.stat("/etc/passwd"))
probe("fork", fork)
probe("spawn", spawn)
probe("thread", lambda: threading.Thread(target=lambda: None).start())
probe("signal_parent", lambda: os.kill(os.getppid(), 0))
probe("signal_self", lambda: os.kill(os.getpid(), 0))
probe("exec_memory", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC).close())
probe("data_memory", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE).close())
probe("setuid", lambda: os.setuid(os.getuid()))
probe("chroot", lambda: os.chroot("/"))
# A mount point that does not exist: unconfined, this fails with ENOENT (or EPERM) and mounts nothing.
probe("mount", lambda: libc_call(libc.mount, b"none", target.encode() + b".d", b"tmpfs", 0, None))
if confine:
    # Unconfined, these would replace the process (the test then fails: no results) and make
    # it traced by its parent, so they only run confined.
    probe("execve", lambda: os.execv("/bin/true", ["/bin/true"]))
    probe("ptrace", lambda: libc_call(libc.ptrace, 0, 0, None, None))  # PTRACE_TRACEME
sys.stdout.write(json.dumps(results) + "\n")
sys.stdout.flush()
"""


def _run_probes(tmp_path: Path, confine: bool) -> dict[str, str]:
    target = tmp_path / "written-by-the-sandbox"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBES, str(target), "1" if confine else "0"],
        capture_output=True,
        text=True,
        cwd=str(_ROOT),
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(_ROOT)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    if confine:
        assert not target.exists()
    results: dict[str, str] = json.loads(proc.stdout)
    return results


def test_the_filter_refuses_files_sockets_processes_and_signals_to_others(
    tmp_path: Path,
) -> None:
    control = _run_probes(tmp_path, confine=False)
    # What any process may do: the probes work, so a refusal below is the filter's doing.
    for name in (
        "tcp_socket",
        "unix_socket",
        "open_write",
        "open_read",
        "stat_path",
        "fork",
        "spawn",
        "thread",
        "signal_parent",
        "signal_self",
        "exec_memory",
        "data_memory",
        "setuid",
    ):
        assert control[name] == "ok", (name, control)
    os.unlink(tmp_path / "written-by-the-sandbox")

    confined = _run_probes(tmp_path, confine=True)
    refused = {
        name: "EPERM"
        for name in (
            "tcp_socket",
            "unix_socket",
            "open_write",
            "open_read",
            "stat_path",
            "fork",
            "spawn",
            "signal_parent",
            "exec_memory",
            "setuid",
            "ptrace",
            "mount",
            "chroot",
            "execve",
        )
    }
    assert {name: confined[name] for name in refused} == refused
    # pthread_create's clone is refused too; Python reports it as RuntimeError.
    assert confined["thread"] == "RuntimeError"
    # What a script's evaluation needs still works.
    assert confined["signal_self"] == "ok"
    assert confined["data_memory"] == "ok"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    sandbox = Sandbox(workers=1, time_limit_s=0.5, memory_limit_bytes=32 << 20)
    yield sandbox
    sandbox.close()


def test_workers_run_under_the_filter_with_no_new_privileges(sb: Sandbox) -> None:
    assert sb.evaluate("js", "1", {}).ok
    (pid,) = sb.worker_pids()
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
    assert status["Seccomp"].strip() == "2", "filter mode"
    assert status["NoNewPrivs"].strip() == "1"


def test_scripts_that_use_clocks_randomness_regexes_and_dates_run_under_the_filter(
    sb: Sandbox,
) -> None:
    res = sb.evaluate(
        "js",
        "[typeof Math.random(), typeof Date.now(), new Date(0).toISOString(), /a(b+)/.exec('abb')[1]]",
        {},
    )
    assert res.value == ["number", "number", "1970-01-01T00:00:00.000Z", "bb"], res
    res = sb.evaluate(
        "jq",
        '[(now | type), (0 | todate), ("2015-03-05T23:51:47Z" | fromdate),'
        ' (0 | gmtime | mktime), (0 | localtime | type), ("a,b" | [splits(",")]), env]',
        None,
    )
    assert res.value == [["number", "1970-01-01T00:00:00Z", 1425599507, 0, "array", ["a", "b"], {}]]
    # Limits still end scripts the ordinary way, and the worker carries on.
    res = sb.evaluate("js", "var a = []; while (true) { a.push(new Array(1e5).fill(1)); }", {})
    assert not res.ok and res.kind == "memory", res
    res = sb.evaluate("js", "while (true) {}", {})
    assert not res.ok and res.kind == "time", res
    res = sb.evaluate("jq", 'error("boom")', None)
    assert not res.ok and res.kind == "runtime" and res.error == "boom", res
    assert sb.evaluate("jq", ".a + 1", {"a": 1}).value == [2]


@pytest.mark.skipif(
    not Path("/usr/share/zoneinfo/Asia/Tokyo").exists(), reason="needs the tz database"
)
def test_local_time_in_scripts_is_utc_whatever_the_hosts_zone() -> None:
    # Under the filter glibc cannot re-read the zone: without the worker settling on UTC first,
    # jq's localtime would say 9 (the zone loaded at start) until a mktime made it re-read and
    # fall back to 0.
    requests = [
        {"id": 1, "op": "jq", "input": None, "source": "0 | localtime | .[3]"},
        {"id": 2, "op": "jq", "input": None, "source": '0 | strflocaltime("%H")'},
        {"id": 3, "op": "jq", "input": None, "source": "0 | gmtime | mktime"},
        {"id": 4, "op": "jq", "input": None, "source": "0 | localtime | .[3]"},
        {"id": 5, "op": "js", "input": None, "source": "new Date(0).getHours()"},
    ]
    proc = subprocess.run(
        [sys.executable, "-s", "-m", "orchestrator.runtime.sandbox_worker", "0"],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(_ROOT), "TZ": "Asia/Tokyo"},
        timeout=60,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0] == {"ready": True}, proc.stdout
    assert [r.get("value") for r in lines[1:]] == [[0], ["00"], [0], [0], 0], lines


def test_without_libseccomp_the_worker_refuses_to_run_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A binding that cannot find libseccomp, as pyseccomp does on a system without it; the
    # worker's PYTHONPATH is taken from ours, ahead of site-packages.
    (tmp_path / "pyseccomp.py").write_text('raise RuntimeError("Unable to find libseccomp")\n')
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    sandbox = Sandbox(workers=1)
    try:
        res = sandbox.evaluate("js", "1 + 1", {})
        assert not res.ok and res.kind == "sandbox", res
        assert res.error == "seccomp unavailable: Unable to find libseccomp"
        assert sandbox.worker_pids() == []
    finally:
        sandbox.close()
