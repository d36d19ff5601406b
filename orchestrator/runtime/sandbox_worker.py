"""The script sandbox's worker process: `python -m orchestrator.runtime.sandbox_worker`.

Speaks JSON lines on stdin/stdout, one request at a time. Runs JavaScript in QuickJS (no host
functions are exposed: no `std`/`os` modules, no module loader, no timers, no I/O) and jq (no
module search path; the environment is emptied so `env`/`$ENV` show nothing). Before it reads
the first request it limits itself: address space (RLIMIT_AS), no file writes (RLIMIT_FSIZE 0),
no core dumps, no new file descriptors; and, on Linux, a seccomp filter (`pyseccomp` over
libseccomp) allows only the few system calls evaluating a script needs: no file can be opened, no
socket, process or thread created, nothing signalled but itself. The parent kills it on a
wall-clock deadline as well.

The first line it writes is {"ready": true}, or {"ready": false, "error": str} when it cannot
confine itself (on Linux, seccomp is required: it evaluates nothing without it).

Request:  {"id": n, "op": "js"|"jq"|"check_js"|"check_jq", "source": str, "input": JSON,
           "time_limit_s": float, "memory_limit_bytes": int, "max_result_bytes": int}
Response: {"id": n, "ok": true, "value": JSON} or {"id": n, "ok": false, "kind": kind,
           "error": str} with kind one of syntax, time, memory, runtime, result.
"""

from __future__ import annotations

import errno
import json
import math
import mmap
import os
import re
import resource
import signal
import sys
import time
from typing import Any

import jq
import quickjs

from ..core import codec, limits

JSON = Any

_JS_SYNTAX = re.compile(r"^SyntaxError\b")
_JQ_MODULES = re.compile(r"(^|[^A-Za-z0-9_$])(import|include)\s*\"")

# Results nested deeper than limits.MAX_JSON_DEPTH are refused. The engines' own converters
# (QuickJS's JSON.stringify, jq's conversion to Python) recurse in C and crash the worker some
# 100 000 levels down, so the depth is checked inside the engine first, without recursion.
_JS_DEEPER = """(function (v, limit) {
  var nodes = [v], depths = [1];
  while (nodes.length) {
    var node = nodes.pop(), d = depths.pop();
    if (node === null || typeof node !== "object") continue;
    if (d > limit) return true;
    var keys = Object.keys(node);
    for (var i = 0; i < keys.length; i++) { nodes.push(node[keys[i]]); depths.push(d + 1); }
  }
  return false;
})"""
_JQ_TOO_DEEP = "orchestrator: result too deep"
# jq's result is the list of the program's outputs: one level more than each output.
_JQ_DEEPER = (
    'def __orchestrator_deeper($n): if type == "array" or type == "object" then ($n <= 0)'
    " or any(.[]; __orchestrator_deeper($n - 1)) else false end; "
)
_JQ_CHECK = f'\n) | if __orchestrator_deeper({{depth}}) then error("{_JQ_TOO_DEEP}") else . end'


def _too_deep() -> ScriptFailure:
    return ScriptFailure(
        "result", f"the result is nested more than {limits.MAX_JSON_DEPTH} levels deep"
    )


class ScriptFailure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _limit_self(address_space_bytes: int) -> None:
    if address_space_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # stdin, stdout, stderr and what the interpreter already holds; nothing new can be opened.
    highest = max([int(fd) for fd in os.listdir("/proc/self/fd")] + [2])
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, highest + 1))


class SeccompUnavailable(Exception):
    pass


# Allow-list, deny by default. Measured with strace over JavaScript and jq scripts of every kind
# (results, errors, syntax errors, time and memory limits, dates, randomness, regexes): after
# start-up the worker only reads stdin, writes stdout/stderr, manages memory, takes the CPU clock
# (QuickJS's time limit), arms its alarm and exits. Everything else fails with EPERM rather than
# killing the worker: the script's evaluation then fails with an ordinary error (reported to the
# parent like any other), and glibc goes on where it merely probes (jq's mktime makes tzset
# re-read /etc/localtime: refused, glibc keeps UTC). Killing would be no safer (the call is
# refused either way) and would turn such probes into dead workers with a vaguer reason.
_ALLOWED_SYSCALLS = (
    # I/O on the descriptors already open (stdin, stdout, stderr); opening anything is refused.
    "read",
    "write",
    "close",
    # Memory: malloc, Python's arenas, QuickJS. mmap/mprotect are allowed below without PROT_EXEC.
    "brk",
    "munmap",
    "mremap",
    "madvise",
    # Locks, signals, the SIGALRM deadline (setitimer where there is no alarm system call).
    "futex",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "restart_syscall",
    "alarm",
    "setitimer",
    # Clocks (QuickJS's interrupt handler reads the CPU clock), randomness (Math.random, hashing).
    "clock_gettime",
    "gettimeofday",
    "time",
    "getrandom",
    # Identity and exit; abort() (jq out of memory) signals the process itself.
    "getpid",
    "gettid",
    "exit",
    "exit_group",
)
_SIGNAL_SELF_SYSCALLS = ("kill", "tgkill", "tkill")  # first argument: our own pid only
_NO_EXEC_MEMORY_SYSCALLS = ("mmap", "mprotect")  # third argument: prot without PROT_EXEC


def seccomp_filter() -> Any:
    """The worker's seccomp filter, built but not loaded (`.load()` installs it for good).

    Raises SeccompUnavailable when libseccomp (or the binding) is missing or refuses the filter.
    Loading sets no_new_privs first (libseccomp's default, asked for explicitly), so that a
    process without privileges may install it and nothing it runs later can gain any.
    """
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError, OSError) as exc:  # RuntimeError: libseccomp not found
        raise SeccompUnavailable(f"seccomp unavailable: {exc}") from None
    try:
        flt = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
        flt.set_attr(sc.Attr.CTL_NNP, 1)
        flt.set_attr(sc.Attr.CTL_TSYNC, 1)  # every thread, should the interpreter hold any
        # System calls of another ABI (i386 `int 0x80`, x32 on x86-64) would bypass the rules.
        flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)

        def add(name: str, *args: Any) -> None:
            # Names this architecture lacks (alarm, time on arm64) resolve to -1: nothing to allow.
            if sc.resolve_syscall(sc.Arch.NATIVE, name) != -1:
                flt.add_rule(sc.ALLOW, name, *args)

        for name in _ALLOWED_SYSCALLS:
            add(name)
        for name in _NO_EXEC_MEMORY_SYSCALLS:
            add(name, sc.Arg(2, sc.MASKED_EQ, mmap.PROT_EXEC, 0))
        for name in _SIGNAL_SELF_SYSCALLS:
            add(name, sc.Arg(0, sc.EQ, os.getpid()))
    except OSError as exc:
        raise SeccompUnavailable(f"seccomp unavailable: cannot build the filter: {exc}") from None
    return flt


def install_seccomp(flt: Any = None) -> None:
    """Confine this process for good with `flt` (by default `seccomp_filter()`).

    Raises SeccompUnavailable if it cannot.
    """
    flt = seccomp_filter() if flt is None else flt
    try:
        flt.load()
    except OSError as exc:
        raise SeccompUnavailable(f"seccomp unavailable: cannot load the filter: {exc}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _js_value(value: Any) -> JSON:
    """A QuickJS result as JSON, with JSON.stringify's rules (functions, symbols -> null)."""
    if isinstance(value, quickjs.Object):
        text = value.json()
        return None if text is None else json.loads(text)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
    return value


def _js_error(exc: Exception, time_limit_s: float, memory_limit_bytes: int) -> ScriptFailure:
    text = str(exc)
    head = _first_line(text)
    if "interrupted" in head:
        return ScriptFailure("time", f"time limit exceeded ({time_limit_s:g} s)")
    if "out of memory" in head:
        return ScriptFailure(
            "memory", f"memory limit exceeded ({memory_limit_bytes // (1024 * 1024)} MiB)"
        )
    if _JS_SYNTAX.match(head):
        return ScriptFailure("syntax", head)
    return ScriptFailure("runtime", head[:2000])


def _context(time_limit_s: float, memory_limit_bytes: int) -> Any:
    ctx = quickjs.Context()
    ctx.set_memory_limit(memory_limit_bytes)
    ctx.set_time_limit(time_limit_s)
    return ctx


def run_js(source: str, input_json: str, time_limit_s: float, memory_limit_bytes: int) -> JSON:
    # A fresh context per script: nothing one script leaves behind is seen by the next.
    ctx = _context(time_limit_s, memory_limit_bytes)
    try:
        ctx.set("$", ctx.parse_json(input_json))
        try:
            result = ctx.eval(source)
        except quickjs.JSException as exc:
            # Conductor scripts often `return` at the top level (GraalJS evaluates them as a
            # function body): a parse error for that runs the source as a function body instead.
            if not ("return" in source and "return not in a function" in str(exc)):
                raise
            result = ctx.eval("(function () {\n" + source + "\n})()")
        if isinstance(result, quickjs.Object) and ctx.eval(_JS_DEEPER)(
            result, limits.MAX_JSON_DEPTH
        ):
            raise _too_deep()
        return _js_value(result)
    except quickjs.JSException as exc:
        raise _js_error(exc, time_limit_s, memory_limit_bytes) from None
    except (MemoryError, OverflowError) as exc:
        raise ScriptFailure(
            "memory", f"memory limit exceeded ({memory_limit_bytes // (1024 * 1024)} MiB)"
        ) from exc
    except quickjs.StackOverflow:
        raise ScriptFailure("runtime", "stack overflow") from None


def check_js(source: str, time_limit_s: float, memory_limit_bytes: int) -> None:
    """Compile without running: `new Function(source)` parses the body and executes nothing."""
    ctx = _context(time_limit_s, memory_limit_bytes)
    try:
        ctx.set("__source", source)
        ctx.eval("new Function(__source); undefined")
    except quickjs.JSException as exc:
        raise _js_error(exc, time_limit_s, memory_limit_bytes) from None


def _jq_program(source: str) -> Any:
    if _JQ_MODULES.search(source):
        raise ScriptFailure("syntax", "jq modules (import/include) are not available")
    try:
        return jq.compile(source)
    except ValueError as exc:
        raise ScriptFailure("syntax", " ".join(str(exc).split())[:2000]) from None


def run_jq(source: str, input_value: JSON) -> JSON:
    if _JQ_MODULES.search(source):
        _jq_program(source)  # refuses it
    try:  # one compile (about 1 ms each here), of the script with the depth check after it
        program = jq.compile(
            _JQ_DEEPER + "(" + source + _JQ_CHECK.format(depth=limits.MAX_JSON_DEPTH - 1)
        )
    except ValueError:
        # Errors are told about the script as written; one that compiles only alone (say, a
        # script of nothing but a comment) runs alone, checked by Python after it.
        program = _jq_program(source)
    try:
        return program.input_value(input_value).all()
    except MemoryError:
        raise ScriptFailure("memory", "memory limit exceeded") from None
    except (ValueError, TypeError) as exc:
        if _JQ_TOO_DEEP in str(exc):
            raise _too_deep() from None
        raise ScriptFailure("runtime", " ".join(str(exc).split())[:2000]) from None


def handle(req: dict[str, JSON]) -> dict[str, JSON]:
    op = req.get("op")
    source = req.get("source")
    time_limit_s = float(req.get("time_limit_s", 4.0))
    memory_limit_bytes = int(req.get("memory_limit_bytes", 64 * 1024 * 1024))
    max_result_bytes = int(req.get("max_result_bytes", 256 * 1024))
    if not isinstance(source, str):
        return {"ok": False, "kind": "syntax", "error": "the script must be a string"}
    try:
        value: JSON = None
        if op == "js":
            value = run_js(source, json.dumps(req.get("input")), time_limit_s, memory_limit_bytes)
        elif op == "jq":
            value = run_jq(source, req.get("input"))
        elif op == "check_js":
            check_js(source, time_limit_s, memory_limit_bytes)
        elif op == "check_jq":
            _jq_program(source)
        else:
            return {"ok": False, "kind": "runtime", "error": f"unknown op {op!r}"}
        if codec.deeper_than(value, limits.MAX_JSON_DEPTH):
            raise RecursionError
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ScriptFailure as exc:
        return {"ok": False, "kind": exc.kind, "error": exc.message}
    except RecursionError:  # here, or converting a result too deep for Python's JSON
        failure = _too_deep()
        return {"ok": False, "kind": failure.kind, "error": failure.message}
    except ValueError as exc:  # e.g. NaN inside a jq result
        return {"ok": False, "kind": "result", "error": f"the result is not JSON: {exc}"}
    if len(text) > max_result_bytes:
        return {
            "ok": False,
            "kind": "result",
            "error": f"the result is {len(text)} bytes, more than {max_result_bytes}",
        }
    return {"ok": True, "value": value}


def main() -> int:
    address_space = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    stdin, stdout = sys.stdin, sys.stdout
    try:
        # Built before the limits: loading the binding finds libseccomp with a subprocess and
        # opens it, which the limits (and the filter) forbid.
        flt = seccomp_filter() if sys.platform.startswith("linux") else None
        # Local time is UTC, whatever the host's zone or TZ: glibc loads it now, while it still
        # may, and no later tzset (jq's mktime runs one) can re-read /etc/localtime under the
        # filter; without this a script's local time would depend on the host and on the order
        # of the calls before it.
        os.environ["TZ"] = "UTC"
        time.tzset()
        os.environ.clear()  # jq's env / $ENV read the C environment: leave nothing in it
        _limit_self(address_space)
        if flt is not None:
            install_seccomp(flt)
    except SeccompUnavailable as exc:
        stdout.write(json.dumps({"ready": False, "error": str(exc)}) + "\n")
        stdout.flush()
        return 1
    stdout.write(json.dumps({"ready": True}) + "\n")
    stdout.flush()
    for line in stdin:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        # A deadline of our own, with SIGALRM's default action (end the process): it works even
        # inside a long C call (jq has no limit) and even if the parent died and cannot kill us.
        signal.alarm(math.ceil(float(req.get("time_limit_s", 4.0))) + 2)
        try:
            resp = handle(req)
        except MemoryError:
            resp = {"ok": False, "kind": "memory", "error": "memory limit exceeded"}
        except Exception as exc:  # e.g. a call the filter refused: an error, not a dead worker
            resp = {"ok": False, "kind": "runtime", "error": f"{type(exc).__name__}: {exc}"[:2000]}
        finally:
            signal.alarm(0)
        resp["id"] = req.get("id")
        stdout.write(json.dumps(resp, separators=(",", ":")) + "\n")
        stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
