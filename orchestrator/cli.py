"""The `orchestrator` command: serve a replica, run a local cluster, and talk to a cluster."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from typing import Any

DEFAULT_ADDRESSES = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053"
# The workflow statuses the CLI lists and searches by.
STATUSES = (
    "RUNNING",
    "PAUSED",
    "COMPENSATING",
    "QUEUED",
    "COMPLETED",
    "FAILED",
    "TERMINATED",
    "TIMED_OUT",
    "COMPENSATED",
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_CONFIG = os.path.join(ROOT, "deploy", "local", "cluster.json")


def access(ns: argparse.Namespace) -> Any:
    """How the commands reach the cluster: --addresses with the TLS and token flags (or their
    environment variables). The CA defaults to the local cluster's (`make run`), if it has one;
    --insecure talks plaintext."""
    from .tools.access import Access

    addresses = [a.strip() for a in ns.addresses.split(",") if a.strip()]
    if ns.insecure:
        return Access(addresses)
    ca = ns.ca or _local_ca()
    if not ca:
        raise SystemExit(
            "orchestrator: no CA to verify the replicas with: pass --ca (or set ORCHESTRATOR_CA), "
            "or --insecure for a cluster started with --insecure"
        )
    return Access(
        addresses,
        ca_file=ca,
        token_file=ns.token_file or "",
        cert_file=ns.cert or "",
        key_file=ns.key or "",
        token_value=ns.token or "",
    )


def _local_ca() -> str:
    from .config import ConfigError, load

    try:
        tls = load(LOCAL_CONFIG, require_password=False).tls
    except ConfigError:
        return ""
    return tls.ca if tls is not None and os.path.exists(tls.ca) else ""


def _client(ns: argparse.Namespace) -> Any:
    return access(ns).client(timeout_s=5.0, retry_budget_s=ns.retry_budget)


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=str))


def _load_json_arg(text: str, what: str) -> Any:
    if text.startswith("@"):
        with open(text[1:]) as f:
            text = f.read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"{what}: malformed JSON: {exc}") from None


def cmd_serve(ns: argparse.Namespace) -> int:
    from .config import ConfigError, load
    from .server import serve

    try:
        cfg = load(ns.config)
        cfg.replica(ns.node)
        return serve(
            cfg,
            ns.node,
            ns.data_dir,
            ns.log_level,
            bootstrap=ns.bootstrap,
            join=ns.join,
            insecure=ns.insecure,
        )
    except ConfigError as exc:
        print(f"orchestrator serve: {exc}", file=sys.stderr)
        return 2


def ensure_password_file(config_path: str) -> None:
    with open(config_path) as f:
        raw = json.load(f)
    if (
        raw.get("password")
        or not raw.get("password_file")
        or os.environ.get("ORCHESTRATOR_RAFT_PASSWORD")
    ):
        return
    pf = os.path.join(os.path.dirname(os.path.abspath(config_path)), raw["password_file"])
    if not os.path.exists(pf):
        os.makedirs(os.path.dirname(pf), exist_ok=True)
        fd = os.open(pf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_local_cluster(ns: argparse.Namespace) -> int:
    from .tools.localcluster import AlreadyRunning, LocalCluster

    # Ctrl-C, and `kill <pid>` too, stop the replicas before exiting (SIGINT is set explicitly:
    # a shell starting this in the background would otherwise leave it ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    ensure_password_file(ns.config)
    cluster = LocalCluster(ns.config, insecure=ns.insecure)
    try:
        cluster.claim()
    except AlreadyRunning as exc:
        print(f"orchestrator local-cluster: {exc}", file=sys.stderr)
        return 3
    print(f"starting {len(cluster.replicas)} replicas (logs in {cluster.log_dir}) ...", flush=True)
    cluster.start_all()
    try:
        cluster.wait_healthy(timeout_s=60)
        addrs = ",".join(cluster.addresses)
        print(f"cluster up: gRPC on {addrs}", flush=True)
        if urls := cluster.ui_urls():
            print(f"web UI (log in with a token file's content): {' '.join(urls.values())}")
        if ns.demo:
            from .tools.demo import run_demo

            run_demo(cluster.access(), workflows=ns.workflows)
        print(_how_to_connect(cluster, ns.config), flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        cluster.stop_all()
    return 0


def _how_to_connect(cluster: Any, config: str) -> str:
    """What `make run` prints: the commands to try and, for a secure cluster, where the tokens
    are (the path, never a token)."""
    prefix = ".venv/bin/orchestrator" + (" --insecure" if cluster.insecure else "")
    auth = ""
    if not cluster.insecure:
        access = cluster.access()
        token_dir = os.path.dirname(access.token_file)
        auth = (
            f"\nThe replicas serve TLS (CA {access.ca_file}) and want a token. One per role "
            f"(admin, operator, worker, reader) is in {token_dir}/<role>.token. The CLI reads\n"
            "it from --token-file or ORCHESTRATOR_TOKEN_FILE (or the token itself from\n"
            "--token / ORCHESTRATOR_TOKEN), and trusts the local CA by itself:\n"
            f"  export ORCHESTRATOR_TOKEN_FILE={access.token_file}\n"
            "The Python client: OrchestratorClient(addresses, credentials=tls_credentials("
            "<the CA>),\n  token=read_token_file(<a token file>)) (docs/security.md).\n"
        )
    if config != LOCAL_CONFIG:
        prefix += f" --addresses {','.join(cluster.addresses)}"
        if not cluster.insecure:
            prefix += f" --ca {cluster.access().ca_file}"
    return (
        f"{auth}\nThe cluster keeps running until Ctrl-C. Try, in another terminal:\n"
        f"  {prefix} status\n"
        f"  {prefix} start order_fulfillment --input "
        """'{"orderId": "o-42", "items": ["book"]}'\n"""
        f"  {prefix} get <workflow id>\n"
        f"  {prefix} list\n"
        f"  {prefix} events read --event order.created   (the saga's events)\n"
        "  kill -9 <pid of the leader> and watch the others carry on:\n"
        + "".join(
            f"    {nid}: pid {cluster.pid(nid)} gRPC {rp.grpc}\n"
            for nid, rp in cluster.replicas.items()
        )
    )


def cmd_demo(ns: argparse.Namespace) -> int:
    from .tools.demo import run_demo

    run_demo(access(ns), workflows=ns.workflows, keep_workers=ns.keep_workers)
    return 0


def cmd_register(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        for path in ns.files:
            doc = _load_json_arg("@" + path, path)
            if isinstance(doc, dict) and "tasks" in doc:
                name, version = c.register_workflow_def(doc, overwrite=ns.overwrite)
                print(f"registered workflow {name} version {version}")
            else:
                defs = doc if isinstance(doc, list) else [doc]
                names = c.register_task_defs(defs)
                print(f"registered task definitions: {', '.join(names)}")
    return 0


def cmd_defs(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        if ns.tasks:
            _print(c.list_task_defs())
        elif ns.name:
            _print(c.get_workflow_def(ns.name, ns.version))
        else:
            _print([{"name": d["name"], "version": d["version"]} for d in c.list_workflow_defs()])
    return 0


def cmd_start(ns: argparse.Namespace) -> int:
    wf_input = _load_json_arg(ns.input, "--input") if ns.input else {}
    with _client(ns) as c:
        wid = c.start_workflow(
            ns.name,
            wf_input,
            version=ns.version,
            correlation_id=ns.correlation_id,
            idempotency_key=ns.idempotency_key,
            idempotency_strategy=ns.strategy,
        )
        print(wid)
        if ns.wait:
            wf = c.wait_for_workflow(wid, timeout_s=ns.wait)
            _print({"status": wf.status, "output": wf.output})
    return 0


def _wf_dict(wf: Any) -> dict[str, Any]:
    import dataclasses

    d = dataclasses.asdict(wf)
    return d


def cmd_get(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        _print(_wf_dict(c.get_workflow(ns.workflow_id, include_tasks=True)))
    return 0


def cmd_list(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        for wf in c.list_workflows(name=ns.name or "", status=ns.status or "", limit=ns.limit):
            print(f"{wf.workflow_id}  {wf.workflow_name}:{wf.workflow_version}  {wf.status}")
    return 0


def cmd_terminate(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        c.terminate_workflow(ns.workflow_id, ns.reason)
        print(f"terminated {ns.workflow_id}")
    return 0


def cmd_status(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        rows = c.cluster_status()
    if ns.json:
        _print(rows)
        return 0
    print(
        f"{'node':6} {'role':11} {'term':>5} {'seq':>8} {'raft-idx':>8} {'serving':8} {'grpc':22} {'raft':22} detail"
    )
    for r in rows:
        print(
            f"{r.get('node_id', ''):6} {r.get('role', ''):11} {int(r.get('term', 0)):>5} "
            f"{int(r.get('applied_sequence', 0)):>8} {int(r.get('commit_index', 0)):>8} "
            f"{bool(r.get('serving'))!s:8} {r.get('grpc_address', ''):22} {r.get('raft_address', ''):22} "
            f"{r.get('detail', '')}"
        )
    return 0


def cmd_members(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        if ns.action == "add":
            if not (ns.raft and ns.grpc):
                raise SystemExit("members add: --raft and --grpc are required")
            c.add_replica(ns.node_id, raft_address=ns.raft, grpc_address=ns.grpc)
            print(
                f"added {ns.node_id}; now start it with: orchestrator serve --config <file> --node {ns.node_id} --join"
            )
        else:
            c.remove_replica(ns.node_id)
            print(f"removed {ns.node_id}; stop its process")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orchestrator",
        description="A highly available workflow orchestrator (Conductor-style workflows replicated with Raft).",
    )
    p.add_argument(
        "--addresses",
        default=os.environ.get("ORCHESTRATOR_ADDRESSES", DEFAULT_ADDRESSES),
        help="comma-separated gRPC addresses of the replicas (env ORCHESTRATOR_ADDRESSES)",
    )
    p.add_argument(
        "--retry-budget", type=float, default=20.0, help="seconds to keep retrying a call"
    )
    _add_credential_flags(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_replica_commands(sub)
    _add_definition_commands(sub)
    _add_workflow_commands(sub)
    _add_cluster_commands(sub)
    # Commands that live in their own modules register themselves here.
    for module in (
        "orchestrator.tools.bench",
        "orchestrator.tools.failover",
        "orchestrator.tools.chaos",
        "orchestrator.cli_ops",
        "orchestrator.cli_events",
    ):
        try:
            mod = __import__(module, fromlist=["add_parser"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.add_parser(sub)
    return p


def _add_credential_flags(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument(
        "--token",
        default=env("ORCHESTRATOR_TOKEN"),
        help="bearer token (env ORCHESTRATOR_TOKEN); prefer --token-file, which keeps it out "
        "of the process list",
    )
    p.add_argument(
        "--token-file",
        default=env("ORCHESTRATOR_TOKEN_FILE"),
        help="file holding the bearer token (env ORCHESTRATOR_TOKEN_FILE); `make run` writes "
        ".local-cluster/tokens/<role>.token",
    )
    p.add_argument(
        "--ca",
        default=env("ORCHESTRATOR_CA"),
        help="CA certificate (PEM) the replicas' certificates are verified with (env "
        "ORCHESTRATOR_CA; default: the local cluster's, .local-cluster/tls/ca.pem)",
    )
    p.add_argument("--cert", default=env("ORCHESTRATOR_CERT"), help="client certificate (mTLS)")
    p.add_argument("--key", default=env("ORCHESTRATOR_KEY"), help="its private key (mTLS)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gRPC without a token (a cluster started with --insecure)",
    )


def _insecure_flag(s: argparse.ArgumentParser, what: str) -> None:
    s.add_argument(
        "--insecure",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"{what} plaintext gRPC without authentication (a warning is logged): only for a "
        "trusted network or a test",
    )


def _add_replica_commands(sub: Any) -> None:
    """serve, local-cluster and demo: running replicas, and the demo against them."""
    s = sub.add_parser("serve", help="run one replica", description="Run one replica of a cluster.")
    s.add_argument(
        "--config", required=True, help="cluster configuration JSON (every replica's addresses)"
    )
    s.add_argument("--node", required=True, help="this replica's id in the configuration")
    s.add_argument("--data-dir", help="override the data folder (default <data_root>/<node>)")
    s.add_argument("--log-level", default=os.environ.get("ORCHESTRATOR_LOG_LEVEL", "INFO"))
    mode = s.add_mutually_exclusive_group()
    mode.add_argument(
        "--bootstrap",
        action="store_true",
        help="first start of a brand-new cluster (empty data folder)",
    )
    mode.add_argument(
        "--join", action="store_true", help="first start of a replica just added with `members add`"
    )
    _insecure_flag(s, "serve")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser(
        "local-cluster",
        help="run a local three-replica cluster until Ctrl-C",
        description="Start every replica of a config on this machine and keep them up until Ctrl-C.",
    )
    s.add_argument("--config", default=LOCAL_CONFIG)
    s.add_argument(
        "--demo",
        action="store_true",
        help="register the demo workflow, run workers, start workflows",
    )
    s.add_argument("--workflows", type=int, default=5, help="demo workflows to start")
    _insecure_flag(s, "run the replicas with")
    s.set_defaults(fn=cmd_local_cluster)

    s = sub.add_parser(
        "demo",
        help="run the order demo against a running cluster",
        description="Register the demo order workflow, start workers and workflows, show progress.",
    )
    s.add_argument("--workflows", type=int, default=5)
    s.add_argument(
        "--keep-workers", action="store_true", help="keep the demo workers running until Ctrl-C"
    )
    s.set_defaults(fn=cmd_demo)


def _add_definition_commands(sub: Any) -> None:
    """register and defs: workflow and task definitions."""
    s = sub.add_parser(
        "register",
        help="register workflow or task definitions from JSON files",
        description="Register definitions. A file holding an object with 'tasks' is a workflow "
        "definition; otherwise it holds one task definition or a list of them.",
    )
    s.add_argument("files", nargs="+")
    s.add_argument("--overwrite", action="store_true", help="replace an existing workflow version")
    s.set_defaults(fn=cmd_register)

    s = sub.add_parser(
        "defs", help="show definitions", description="List workflow definitions, or show one."
    )
    s.add_argument("name", nargs="?")
    s.add_argument("--version", type=int, default=0)
    s.add_argument("--tasks", action="store_true", help="list task definitions instead")
    s.set_defaults(fn=cmd_defs)


def _add_workflow_commands(sub: Any) -> None:
    """start, get, list and terminate: workflows."""
    s = sub.add_parser(
        "start", help="start a workflow", description="Start a workflow and print its id."
    )
    s.add_argument("name")
    s.add_argument("--input", help="JSON object, or @file.json")
    s.add_argument("--version", type=int, default=0)
    s.add_argument("--correlation-id", default="")
    s.add_argument("--idempotency-key", default="")
    s.add_argument(
        "--strategy", default="FAIL", choices=["FAIL", "RETURN_EXISTING", "FAIL_ON_RUNNING"]
    )
    s.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for the end")
    s.set_defaults(fn=cmd_start)

    s = sub.add_parser(
        "get", help="show a workflow with its tasks", description="Show a workflow with its tasks."
    )
    s.add_argument("workflow_id")
    s.set_defaults(fn=cmd_get)

    s = sub.add_parser(
        "list", help="list workflows, newest first", description="List workflows, newest first."
    )
    s.add_argument("--name")
    s.add_argument(
        "--status",
        choices=STATUSES,
    )
    s.add_argument("--limit", type=int, default=20)
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser(
        "terminate", help="terminate a workflow", description="Terminate a running workflow."
    )
    s.add_argument("workflow_id")
    s.add_argument("--reason", default="terminated from the CLI")
    s.set_defaults(fn=cmd_terminate)


def _add_cluster_commands(sub: Any) -> None:
    """status and members: the replicas and their membership."""
    s = sub.add_parser(
        "status", help="show every replica's status", description="Show every replica's status."
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_status)

    s = sub.add_parser(
        "members",
        help="add or remove a replica",
        description="Change the Raft membership one replica at a time (3 -> 5 -> 3, or replace a lost one).",
    )
    s.add_argument("action", choices=["add", "remove"])
    s.add_argument("node_id")
    s.add_argument("--raft", help="the new replica's Raft address host:port (add)")
    s.add_argument("--grpc", help="the new replica's gRPC address host:port (add)")
    s.set_defaults(fn=cmd_members)


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return int(ns.fn(ns) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except Exception as exc:
        from orchestrator_client import OrchestratorError

        if isinstance(exc, OrchestratorError):
            print(f"orchestrator: {exc}", file=sys.stderr)
            return 1
        raise
